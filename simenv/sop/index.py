"""SOP folders imported by id (``simenv import sop``): the id -> folder index, read and written.

The index lives in ``$SIMENV_HOME/sop_imports.json`` (default ``~/.simenv``).
:func:`remember` adds a folder under its id (:func:`simenv.registration.import_sop` does it,
after registering the folder's scenario); :func:`find_imported` rebuilds one by id in another
process, and :func:`imported_scenarios` is the ``simenv.scenarios`` entry point that makes
every imported id runnable.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from simenv.errors import ScenarioError
from simenv.scenario import Scenario
from simenv.sop.build import load_sop

__all__ = ["INDEX_FILE", "find_imported", "imported_scenarios", "remember"]

log = logging.getLogger(__name__)
INDEX_FILE = "sop_imports.json"


def _index_path() -> Path:
    home = os.environ.get("SIMENV_HOME") or str(Path.home() / ".simenv")
    return Path(home) / INDEX_FILE


def _read_index() -> dict[str, str]:
    path = _index_path()
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except ValueError:
        log.warning("%s is not valid JSON; ignoring the SOP imports it lists", path)
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def remember(scenario_id: str, path: str | Path) -> None:
    """Record that ``scenario_id`` is the SOP folder at ``path`` (written atomically)."""
    index = _read_index()
    index[scenario_id] = str(Path(path).resolve())
    target = _index_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(json.dumps(index, indent=1, sort_keys=True) + "\n")
    tmp.replace(target)


def find_imported(scenario_id: str) -> Scenario | None:
    """The scenario imported earlier as ``scenario_id`` (rebuilt from its folder), or ``None``.

    Raises:
        ScenarioError: The folder was imported but is now broken or gone.
    """
    path = _read_index().get(scenario_id)
    if path is None:
        return None
    if not Path(path).is_dir():
        raise ScenarioError(
            f"{scenario_id} was imported from {path}, which no longer exists; import it again "
            "with `simenv import sop PATH --id ID`"
        )
    return load_sop(path, scenario_id)


def imported_scenarios() -> list[Scenario]:
    """Every imported SOP scenario whose folder still loads (others are logged and skipped)."""
    out = []
    for scenario_id in sorted(_read_index()):
        try:
            found = find_imported(scenario_id)
        except ScenarioError as exc:
            log.warning("skipping imported SOP scenario: %s", exc)
            continue
        if found is not None:
            out.append(found)
    return out
