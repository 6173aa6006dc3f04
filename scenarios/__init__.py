"""Scenarios bundled with simenv; each module reads like a spec (see its docstring).

simenv finds them through the ``simenv.scenarios`` entry point, which calls :func:`bundled`.
Importing this package also registers their ids with Gymnasium, which is what
``gymnasium.make("scenarios:<id>")`` relies on; nothing heavier happens at import.
"""

from __future__ import annotations

import importlib
from typing import Any

import gymnasium

from scenarios.sop_domains import DOMAINS as SOP_DOMAINS

BUNDLED: dict[str, str] = {
    "support/Refunds-v1": "scenarios.support_desk:SCENARIO",
    "support/Triage-v1": "scenarios.triage:SCENARIO",
    "support/TriageSteps-v1": "scenarios.triage:STEPS_SCENARIO",
    "sql/Analyst-v1": "scenarios.sql_analyst:SCENARIO",
    "lookup/Knowledge-v1": "scenarios.knowledge_lookup:SCENARIO",
    "code/Repair-v1": "scenarios.code_repair:SCENARIO",
    "service/Bookings-v1": "scenarios.customer_service:SCENARIO",
}
"""Scenario id -> ``module:attribute`` of its ``Scenario``."""


def bundled() -> list[Any]:
    """Every bundled scenario (imports their modules)."""
    out = []
    for target in BUNDLED.values():
        module, _, attribute = target.partition(":")
        out.append(getattr(importlib.import_module(module), attribute))
    from scenarios.sop_domains import scenarios as sop_scenarios

    return out + sop_scenarios()


for _id in [*BUNDLED, *SOP_DOMAINS]:
    if _id not in gymnasium.registry:
        gymnasium.register(
            id=_id,
            entry_point="simenv.registration:gymnasium_entry_point",
            kwargs={"scenario_id": _id},
            disable_env_checker=True,
            order_enforce=False,
        )
