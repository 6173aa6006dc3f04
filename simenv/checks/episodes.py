"""Running and comparing episodes for the checks: the shared machinery, kept small."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym

from simenv.env import MultiTurnEnv
from simenv.errors import ScenarioError
from simenv.registration import load_scenario, make
from simenv.rollouts.policies.base import Conversation, Policy
from simenv.scenario import Scenario
from simenv.types import Action, Episode, Message, Task

__all__ = [
    "CheckOptions",
    "comparable",
    "first_difference",
    "opened",
    "play",
    "resolve",
    "sample_tasks",
    "state_hash",
]


FAST_BUDGET_S = 10.0
"""With ``--fast``, the determinism and robustness checks stop adding work after this long."""


@dataclass(frozen=True)
class CheckOptions:
    """How hard the checks work.

    Attributes:
        fast: Fewer tasks, seeds and fuzzing steps (for a quick pass; CI runs the full set).
        tasks: Tasks sampled by the per-task checks (``None``: every task in full mode).
        seeds: Seeds per task for the determinism and isolation checks.
        fuzz_steps: Random and malformed actions sent by the robustness check.
        seed: Base seed, so a failing run can be repeated exactly.
        env_class: The environment class checked (a ``MultiTurnEnv`` subclass for custom envs).
        budget_s: Seconds after which the determinism and robustness checks stop adding work
            (after a minimum), and say so; ``None`` (full mode) never stops early. With
            ``--fast`` it keeps a quick pass quick on scenarios with slow resets (a container
            per episode).
    """

    fast: bool = False
    tasks: int | None = None
    seeds: int = 3
    fuzz_steps: int = 5_000
    seed: int = 0
    env_class: type[MultiTurnEnv] = field(default=MultiTurnEnv)
    budget_s: float | None = None

    def over_budget(self, started: float, done: int, minimum: int) -> bool:
        """Whether a check should stop adding work now.

        ``started`` is when it began (``time.perf_counter()``), ``done`` the units of work it
        has done; the first ``minimum`` units always run.
        """
        if self.budget_s is None or done < minimum:
            return False
        return time.perf_counter() - started > self.budget_s

    @classmethod
    def for_mode(
        cls, fast: bool, seed: int = 0, env_class: type[MultiTurnEnv] = MultiTurnEnv
    ) -> CheckOptions:
        """The defaults of ``--fast`` or of a full run."""
        if fast:
            return cls(True, 8, 2, 1_000, seed, env_class, budget_s=FAST_BUDGET_S)
        return cls(False, None, 3, 5_000, seed, env_class)


def resolve(target: str | Scenario | gym.Env[Any, Any]) -> tuple[Scenario, type[MultiTurnEnv]]:
    """The scenario (and environment class) behind an id, a path, a ``Scenario`` or an env."""
    if isinstance(target, Scenario):
        return target, MultiTurnEnv
    if isinstance(target, str):
        return load_scenario(target), MultiTurnEnv
    base = target.unwrapped
    if isinstance(base, MultiTurnEnv):
        return base.scenario, type(base)
    raise ScenarioError(f"cannot check {type(target).__name__}: give an id, a Scenario or an env")


def sample_tasks(scenario: Scenario, options: CheckOptions) -> list[Task]:
    """Every task, or an evenly spread sample of ``options.tasks`` of them."""
    tasks = list(scenario.tasks)
    if options.tasks is None or options.tasks >= len(tasks):
        return tasks
    step = len(tasks) / options.tasks
    return [tasks[int(i * step)] for i in range(options.tasks)]


@contextmanager
def opened(scenario: Scenario, options: CheckOptions) -> Iterator[gym.Env[list[Message], Action]]:
    """An environment of ``scenario`` that is closed afterwards, whatever happens."""
    env = make(scenario, env_class=options.env_class)
    try:
        yield env
    finally:
        env.close()


def play(
    env: gym.Env[list[Message], Action],
    task_id: str,
    seed: int,
    policy: Policy | None = None,
    actions: Sequence[Action] | None = None,
) -> tuple[Episode, list[Action]]:
    """One episode with a policy or a fixed action list; returns it and the actions played."""
    base = env.unwrapped
    assert isinstance(base, MultiTurnEnv)
    observation, info = env.reset(seed=seed, options={"task_id": task_id})
    conversation = Conversation(list(observation), info, base)
    played: list[Action] = []
    script = list(actions or [])
    while True:
        if policy is not None:
            action = policy.act([conversation])[0]
        elif len(played) < len(script):
            action = script[len(played)]
        else:
            action = "Done."
        played.append(action)
        observation, _, terminated, truncated, _ = env.step(action)
        conversation.messages.extend(observation)
        if terminated or truncated:
            return base.episode(), played


def state_hash(env: gym.Env[Any, Any]) -> str | None:
    """The current sandbox's state hash, or ``None`` for a scenario without a sandbox."""
    base = env.unwrapped
    assert isinstance(base, MultiTurnEnv)
    return None if base.state is None else base.state.state_hash()


def comparable(episode: Episode) -> dict[str, Any]:
    """The episode as a dict with wall-clock fields zeroed, for equality checks."""
    record = episode.to_dict()
    for step in record["steps"]:
        for result in step["tool_results"]:
            result["latency_s"] = 0.0
    record["policy"] = {}
    return record


def first_difference(a: Any, b: Any, path: str = "") -> str | None:
    """Where two JSON-like values first differ, as ``path: a != b``; ``None`` if equal."""
    if type(a) is not type(b):
        return f"{path or '<root>'}: {a!r:.80} != {b!r:.80}"
    if isinstance(a, dict):
        for key in sorted(set(a) | set(b), key=str):
            if key not in a or key not in b:
                return f"{path}.{key}: present on one side only"
            found = first_difference(a[key], b[key], f"{path}.{key}")
            if found:
                return found
        return None
    if isinstance(a, list | tuple):
        if len(a) != len(b):
            return f"{path}: length {len(a)} != {len(b)}"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            found = first_difference(x, y, f"{path}[{i}]")
            if found:
                return found
        return None
    return None if a == b else f"{path or '<root>'}: {a!r:.80} != {b!r:.80}"
