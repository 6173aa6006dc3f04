"""SOP folders imported by id (``simenv import sop``), and checks and metrics of SOP scenarios.

The id -> folder index lives in ``$SIMENV_HOME/sop_imports.json``; :func:`imported_scenarios`
is the ``simenv.scenarios`` entry point that makes imported ids runnable in any process.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from simenv.errors import ScenarioError
from simenv.registration import register
from simenv.scenario import SCORE_TOL, Scenario
from simenv.sop.build import load_sop
from simenv.sop.grading import SUBMIT, _decision, _field_results, _last_answer, normalise
from simenv.tools.sandbox import canonical_json
from simenv.types import Episode, Task

log = logging.getLogger(__name__)
INDEX_FILE = "sop_imports.json"


# ----------------------------------------------------------------------------- imports by id
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


def import_sop(path: str | Path, scenario_id: str | None = None) -> Scenario:
    """Check an SOP folder, register its scenario and remember it so its id works later.

    The id -> folder pair is kept in ``$SIMENV_HOME/sop_imports.json`` (default
    ``~/.simenv``); :func:`find_imported` reads it back in another process.

    Raises:
        ScenarioError: The folder is broken (the message names the file and the fix).
    """
    scenario = load_sop(path, scenario_id)
    register(scenario, source=f"SOP folder {path}", override=True)
    index = _read_index()
    index[scenario.id] = str(Path(path).resolve())
    target = _index_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(json.dumps(index, indent=1, sort_keys=True) + "\n")
    tmp.replace(target)
    return scenario


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


# ----------------------------------------------------------------------------- checks, metrics
def self_test(scenario: Scenario, tasks: Sequence[Task] | None = None, seed: int = 0) -> list[str]:
    """Play the oracle and a do-nothing answer on each task; list what went wrong.

    The oracle must earn reward 1.0 and pass the evaluation; a prose answer must earn 0 and fail.
    This is the quick proof ``simenv import sop`` runs; ``simenv check`` runs the full one.
    """
    from simenv.env import MultiTurnEnv

    if scenario.oracle is None:
        return [f"{scenario.id} has no oracle"]
    problems: list[str] = []
    env = MultiTurnEnv(scenario)
    try:
        for task in tasks if tasks is not None else scenario.tasks:
            env.reset(seed=seed, options={"task_id": task.id})
            reward, info = 0.0, dict[str, Any]()
            for turn, action in enumerate(scenario.oracle(task, env.state)):
                _, reward, terminated, _, info = env.step(action)
                if terminated or turn + 1 >= scenario.max_turns:
                    break
            evaluation = info.get("evaluation")
            if reward < 1.0 - SCORE_TOL or evaluation is None or evaluation < 1.0 - SCORE_TOL:
                problems.append(
                    f"task {task.id}: the oracle earned {reward} (evaluation "
                    f"{info.get('evaluation')}, {info.get('error') or 'no error'})"
                )
            env.reset(seed=seed, options={"task_id": task.id})
            _, reward, _, _, info = env.step("I cannot decide this case.")
            evaluation = info.get("evaluation")
            if reward > SCORE_TOL or (evaluation is not None and evaluation > SCORE_TOL):
                problems.append(f"task {task.id}: a prose non-answer earned {reward}")
    finally:
        env.close()
    return problems


def _scenario_tasks(scenario: Scenario) -> dict[str, Task]:
    return {t.id: t for t in scenario.tasks}


def _mode(scenario: Scenario) -> str:
    if SUBMIT not in scenario.finish_tools:
        return "message"
    return "submit" if "reply without calling a tool" not in scenario.system_prompt else "either"


def sop_metrics(scenario: Scenario, episodes: Iterable[Episode]) -> dict[str, Any]:
    """SOP-Bench style metrics of episodes of an SOP scenario, from the records alone.

    Returns:
        ``sop/task_success`` (every field and write right: the evaluation),
        ``sop/execution_completion`` (a decision object was given),
        ``sop/field_accuracy/<field>`` and ``sop/field_accuracy`` (mean over fields),
        ``sop/tool_error_rate`` (tool calls answered with an error / all tool calls, submit
        excluded) and ``sop/episodes`` (valid episodes counted).
    """
    tasks = _scenario_tasks(scenario)
    mode = _mode(scenario)
    valid = [e for e in episodes if e.valid]
    fields = [c for c in next(iter(tasks.values())).data["outputs"]]
    right = dict.fromkeys(fields, 0)
    success = completed = calls = errors = 0
    for episode in valid:
        pairs = [
            (c, r) for s in episode.steps for c, r in zip(s.tool_calls, s.tool_results, strict=True)
        ]
        tool_pairs = [(c, r) for c, r in pairs if c.name != SUBMIT]
        calls += len(tool_pairs)
        errors += sum(r.is_error for _, r in tool_pairs)
        success += episode.success
        decision = _decision(_last_answer(episode.messages), pairs, mode)
        if decision is None:
            continue
        completed += 1
        for col, ok in _field_results(decision, tasks[episode.task_id].data["outputs"]).items():
            right[col] += ok
    n = max(len(valid), 1)
    out: dict[str, Any] = {
        "sop/episodes": len(valid),
        "sop/task_success": success / n,
        "sop/execution_completion": completed / n,
        "sop/field_accuracy": sum(right.values()) / (n * max(len(fields), 1)),
        "sop/tool_error_rate": errors / calls if calls else 0.0,
    }
    out.update({f"sop/field_accuracy/{c}": right[c] / n for c in fields})
    return out


def constant_answer_rate(scenario: Scenario) -> tuple[float, dict[str, Any]]:
    """The best success rate any one fixed answer reaches over all tasks, and that answer.

    A fixed answer (the same decision object for every task, no tool calls) succeeds on a task
    when it equals the task's gold after normalisation and the task expects no writes. The most
    frequent such gold is the best constant; its share of the tasks is the rate.
    """
    counts: dict[str, int] = {}
    examples: dict[str, dict[str, Any]] = {}
    for task in scenario.tasks:
        if any(w is not None for w in task.data["writes"].values()):
            continue
        key = canonical_json({k: normalise(v) for k, v in task.data["outputs"].items()})
        counts[key] = counts.get(key, 0) + 1
        examples.setdefault(key, task.data["outputs"])
    if not counts:
        return 0.0, {}
    best = max(sorted(counts), key=lambda k: counts[k])
    return counts[best] / len(scenario.tasks), examples[best]
