"""Where environments live: the :class:`EnvPool` interface and :class:`LocalPool` (this process).

A pool has three methods that matter (start an episode, step a batch, finish one) and
``close``. :class:`LocalPool` keeps environments in this process; a Ray cluster
(:class:`simenv.rollouts.ray.RayPool`) and a rollout server
(:class:`simenv.server.RemotePool`) are the others. :class:`HostedEnv` is an environment that
lives elsewhere (:class:`simenv.server.RemoteEnv`).
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import gymnasium as gym

from simenv.env import MultiTurnEnv
from simenv.registration import make
from simenv.rollouts.jobs import Job
from simenv.rollouts.policies.base import Conversation
from simenv.scenario import Scenario
from simenv.types import Action, Episode, Message

__all__ = ["EnvPool", "HostedEnv", "LocalPool", "StepResult", "step_envs"]


@runtime_checkable
class HostedEnv(Protocol):
    """An environment that lives elsewhere, e.g. :class:`simenv.server.RemoteEnv`.

    It cannot hand a policy its task or state, so it records its own episodes and computes the
    oracle's gold turns where it lives.
    """

    def episode(self, policy: dict[str, Any] | None = None) -> Episode:
        """The record of the current episode, with ``policy`` stored in it."""
        ...

    def oracle(self) -> list[Action]:
        """The scenario's gold turns for the current episode."""
        ...


@dataclass
class StepResult:
    """What one environment step returned, as the runner needs it."""

    observation: list[Message]
    done: bool


class EnvPool(Protocol):
    """Where environments live. A handle names one running episode."""

    def start(self, job: Job) -> tuple[Any, Conversation]:
        """Reset an environment for ``job``; return its handle and the opening conversation."""
        ...

    def step(self, handles: Sequence[Any], actions: Sequence[Action]) -> list[StepResult]:
        """Step each handle's environment with its action."""
        ...

    def finish(self, handle: Any, policy: dict[str, Any], deadline_hit: bool) -> Episode:
        """End the episode (scoring it now if ``deadline_hit``), free the slot, return it."""
        ...

    def close(self) -> None:
        """Release every environment."""
        ...


def _step_env(env: gym.Env[list[Message], Action], action: Action) -> StepResult:
    observation, _, terminated, truncated, _ = env.step(action)
    return StepResult(observation, terminated or truncated)


def step_envs(
    envs: Sequence[gym.Env[list[Message], Action]],
    actions: Sequence[Action],
    threads: ThreadPoolExecutor | None = None,
) -> list[StepResult]:
    """Step each environment with its action; on ``threads`` at once when there are several."""
    if threads is None or len(envs) == 1:
        return [_step_env(env, action) for env, action in zip(envs, actions, strict=True)]
    return list(threads.map(_step_env, envs, actions))


class LocalPool:
    """Environments in this process; blocking tool calls run in a thread pool."""

    def __init__(self, scenario: Scenario, workers: int | None = None) -> None:
        """Create the pool.

        Args:
            scenario: The scenario every environment runs.
            workers: Threads stepping environments (default: 8 if the sandbox declares
                ``blocking_io``, else 1, i.e. no threads).
        """
        self.scenario = scenario
        blocking = bool(getattr(scenario.sandbox, "blocking_io", False))
        self.workers = workers if workers is not None else (8 if blocking else 1)
        self._free: list[gym.Env[list[Message], Action]] = []
        self._all: list[gym.Env[list[Message], Action]] = []
        self._threads = ThreadPoolExecutor(self.workers) if self.workers > 1 else None

    def start(self, job: Job) -> tuple[Any, Conversation]:
        """Reset a free (or new) environment for ``job``."""
        if self._free:
            env = self._free.pop()
        else:
            env = make(self.scenario)
            self._all.append(env)
        observation, info = env.reset(seed=job.seed, options={"task_id": job.task_id})
        info["sample"] = job.sample
        base = env.unwrapped
        assert isinstance(base, MultiTurnEnv)
        conversation = Conversation(list(observation), info, base)
        return env, conversation

    def step(self, handles: Sequence[Any], actions: Sequence[Action]) -> list[StepResult]:
        """Step every environment, concurrently when the pool has threads."""
        return step_envs(handles, actions, self._threads)

    def finish(self, handle: Any, policy: dict[str, Any], deadline_hit: bool) -> Episode:
        """Score the episode if the deadline cut it, and recycle the environment."""
        base = handle.unwrapped
        if deadline_hit:
            base.end_episode("time_limit")
        episode: Episode = base.episode(policy)
        self._free.append(handle)
        return episode

    def close(self) -> None:
        """Close every environment and stop the threads."""
        for env in self._all:
            env.close()
        if self._threads is not None:
            self._threads.shutdown()
