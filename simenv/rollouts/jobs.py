"""Jobs: one episode to play each, and the plan of a run (N tasks x G samples, one seed a group).

A *group* is the G samples of one task that start from one identical state (the same task and
seed): a GRPO group. :class:`Job` carries its group number; the runner records it on the
episode (:attr:`simenv.Episode.group`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from simenv.errors import SimenvError
from simenv.scenario import Scenario

__all__ = ["Job", "plan_jobs"]


@dataclass(frozen=True)
class Job:
    """One episode to play.

    Attributes:
        task_id: The task.
        seed: The episode seed; every sample of a task shares it (a GRPO group starts from one
            identical state).
        group: The group number: the samples of one task that start from one state share it
            (the task's position in the run); recorded as :attr:`simenv.Episode.group`.
        sample: Index of the sample within its group.
        tag: Distinguishes runs that share one store (e.g. the policy's name).
    """

    task_id: str
    seed: int
    group: int
    sample: int = 0
    tag: str = ""

    @property
    def key(self) -> str:
        """Unique within a run; stored in the episode's metadata for resuming."""
        key = f"{self.task_id}#{self.sample}@{self.seed}"
        return f"{self.tag}:{key}" if self.tag else key


def plan_jobs(
    scenario: Scenario,
    *,
    split: Literal["train", "eval"] | None = "eval",
    task_ids: Sequence[str] | None = None,
    samples: int = 1,
    seed: int = 0,
    limit: int | None = None,
) -> list[Job]:
    """Every task of the split (or the given ones) x ``samples``; task ``i`` gets seed ``seed+i``.

    ``limit`` keeps the first ``limit`` tasks, cycling through the split if it is larger than
    the split (with new seeds), so ``-n 500`` on a 35-task split gives 500 distinct episodes.
    """
    if samples < 1:
        raise ValueError(f"samples must be at least 1, got {samples}")
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be at least 1 (or None for the whole split), got {limit}")
    tasks = [scenario.task(t) for t in task_ids] if task_ids else list(scenario.split(split))
    if not tasks:
        raise SimenvError(f"scenario {scenario.id!r} has no tasks in split {split!r}")
    count = len(tasks) if limit is None else limit
    return [
        Job(tasks[i % len(tasks)].id, seed + i, i, g) for i in range(count) for g in range(samples)
    ]
