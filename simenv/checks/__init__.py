"""Environment validation: each ``check_*`` proves one property; :func:`check` runs them all.

| check | proves |
|---|---|
| ``api`` | Gymnasium's ``check_env`` and simenv's contract (truncation at ``max_turns`` ...) |
| ``tools`` | valid schemas, descriptions, hidden injections, read tools that don't write |
| ``determinism`` | same seed and actions, same episode; different seeds, different states |
| ``isolation`` | episodes interleaved or in threads end as they do alone; snapshot/restore |
| ``robustness`` | thousands of malformed actions: nothing raises, every call is answered |
| ``reward`` | null <= floor, oracle >= ceiling on every task; random mean; agreement |
| ``leaks`` | no gold answer or reward in what the agent sees for free |
| ``replay`` | every oracle call is in the cassettes; unused entries listed |
| ``resources`` | nothing left behind after ``close()`` |
| ``examples`` | the spec's worked examples earn the rewards they state |

:func:`simenv.checks.sop.self_test` is the quick proof of an SOP scenario that
``simenv import sop`` runs first (the oracle earns 1.0 and a non-answer 0 on every task).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym

from simenv.checks.contract import check_api, check_tools
from simenv.checks.determinism import check_determinism, check_isolation
from simenv.checks.episodes import CheckOptions, resolve
from simenv.checks.report import CheckResult, Report
from simenv.checks.resources import check_replay_coverage, check_resources
from simenv.checks.rewards import check_examples, check_leaks, check_reward_sanity
from simenv.checks.robustness import check_robustness
from simenv.scenario import Scenario

__all__ = [
    "CHECKS",
    "CheckOptions",
    "CheckResult",
    "Report",
    "check",
    "check_api",
    "check_determinism",
    "check_examples",
    "check_isolation",
    "check_leaks",
    "check_replay_coverage",
    "check_resources",
    "check_reward_sanity",
    "check_robustness",
    "check_tools",
]

CheckFn = Callable[[Scenario, CheckOptions], CheckResult]

CHECKS: dict[str, CheckFn] = {
    "api": check_api,
    "tools": check_tools,
    "determinism": check_determinism,
    "isolation": check_isolation,
    "robustness": check_robustness,
    "reward": check_reward_sanity,
    "leaks": check_leaks,
    "replay": check_replay_coverage,
    "resources": check_resources,
    "examples": check_examples,
}
"""Every check by name, in the order :func:`check` runs them."""


def check(
    target: str | Scenario | gym.Env[Any, Any],
    *,
    fast: bool = False,
    only: Sequence[str] | None = None,
    seed: int = 0,
    on_result: Callable[[CheckResult], None] | None = None,
) -> Report:
    """Run the checks on one scenario and return the report (it never raises for a failure).

    Args:
        target: A scenario id, a path to a scenario file, a ``Scenario`` or an environment.
        fast: Fewer tasks, seeds and fuzzing steps.
        only: Names of the checks to run (default: all of :data:`CHECKS`).
        seed: Base seed of every episode the checks play.
        on_result: Called with each result as soon as it is known (progress display).
    """
    scenario, env_class = resolve(target)
    options = CheckOptions.for_mode(fast, seed, env_class)
    names = list(only) if only else list(CHECKS)
    unknown = [n for n in names if n not in CHECKS]
    if unknown:
        raise ValueError(f"unknown checks {unknown}; known: {', '.join(CHECKS)}")
    report = Report(scenario.id)
    start = time.perf_counter()
    for name in names:
        try:
            result = CHECKS[name](scenario, options)
        except Exception as exc:
            result = CheckResult(name, "fail", f"the check crashed: {type(exc).__name__}: {exc}")
        report.results.append(result)
        if on_result is not None:
            on_result(result)
    report.seconds = time.perf_counter() - start
    return report
