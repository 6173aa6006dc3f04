"""The quick proof of an SOP scenario: its oracle earns 1.0 and a non-answer 0, on every task.

``simenv import sop`` runs it before registering a folder; ``simenv check`` runs the full
validation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from simenv.env import MultiTurnEnv
from simenv.scenario import SCORE_TOL, Scenario
from simenv.types import Task

__all__ = ["self_test"]


def self_test(scenario: Scenario, tasks: Sequence[Task] | None = None, seed: int = 0) -> list[str]:
    """Play the oracle and a do-nothing answer on each task; list what went wrong.

    The oracle must earn reward 1.0 and pass the evaluation; a prose answer must earn 0 and fail.
    This is the quick proof ``simenv import sop`` runs; ``simenv check`` runs the full one.
    """
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
