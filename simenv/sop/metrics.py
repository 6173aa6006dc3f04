"""Metrics of runs of an SOP scenario, from the episode records alone, and its best constant answer.

:func:`sop_metrics` is every SOP scenario's ``Scenario.metrics`` (shown by ``simenv eval``);
:func:`constant_answer_rate` is how far one fixed answer gets, the floor a policy must beat.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from simenv.scenario import Scenario
from simenv.sop.grading import SUBMIT, _decision, _field_results, _last_answer, normalise
from simenv.tools.sandbox import canonical_json
from simenv.types import Episode, Task

__all__ = ["constant_answer_rate", "sop_metrics"]


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
