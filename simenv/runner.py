"""Rollouts: one episode with :func:`rollout`, many in lockstep batches with :func:`run`.

:func:`run` plays N tasks x G samples. Episodes advance in lockstep: every turn, the
conversations of all running episodes go to the policy as ONE batch (one batched generate
call for a model), then each environment steps; when an episode ends its slot is refilled
from the queue. Blocking tool calls (a sandbox that declares ``blocking_io``, or
``workers > 1``) run concurrently in threads. Each finished episode goes to the store at once,
so ``resume`` continues a killed run with no episode lost or repeated.

Where the environments live is a backend with three methods (start, step a batch, finish):
:class:`LocalPool` here, :class:`simenv.ray_backend.RayPool` on a Ray cluster.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol, runtime_checkable

import gymnasium as gym

from simenv.env import MultiTurnEnv
from simenv.errors import SimenvError
from simenv.policies.base import Conversation, Policy
from simenv.registration import load_scenario, make
from simenv.scenario import Scenario
from simenv.store import EpisodeStore
from simenv.types import Action, Episode, Message

__all__ = [
    "EnvPool",
    "HostedEnv",
    "Job",
    "LocalPool",
    "StepResult",
    "plan_jobs",
    "rollout",
    "run",
]


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


def rollout(
    env: gym.Env[list[Message], Action],
    policy: Policy,
    *,
    seed: int | None = None,
    task_id: str | None = None,
) -> Episode:
    """Play one episode and return its record.

    Args:
        env: An environment from :func:`simenv.make` (or a bare ``MultiTurnEnv``), or one that
            lives elsewhere (a :class:`HostedEnv` such as :class:`simenv.server.RemoteEnv`).
        policy: Anything with ``act(conversations) -> actions``.
        seed: The episode seed (``None``: drawn from the environment's generator).
        task_id: Run this task (``None``: the seed picks one).
    """
    base = env.unwrapped
    if not isinstance(base, MultiTurnEnv | HostedEnv):
        raise SimenvError(f"rollout() needs a simenv environment, got {type(base).__name__}")
    options: dict[str, Any] | None = {"task_id": task_id} if task_id is not None else None
    observation, info = env.reset(seed=seed, options=options)
    if isinstance(base, MultiTurnEnv):
        conversation = Conversation(messages=list(observation), info=info, env=base)
    else:
        conversation = Conversation(list(observation), info, None, oracle=base.oracle)
    while True:
        action = policy.act([conversation])[0]
        observation, _, terminated, truncated, _ = env.step(action)
        conversation.messages.extend(observation)
        if terminated or truncated:
            break
    return _with_memo(base.episode(_describe(policy)), conversation)


# ----------------------------------------------------------------------------- jobs
@dataclass(frozen=True)
class Job:
    """One episode to play.

    Attributes:
        task_id: The task.
        seed: The episode seed; every sample of a task shares it (a GRPO group starts from one
            identical state).
        task_index: Position of the task in the run (the group number).
        sample: Index of the sample within its group.
        tag: Distinguishes runs that share one store (e.g. the policy's name).
    """

    task_id: str
    seed: int
    task_index: int
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


# ----------------------------------------------------------------------------- backends
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


# ----------------------------------------------------------------------------- the loop
@dataclass
class _Slot:
    job: Job
    handle: Any
    conversation: Conversation
    started: float = field(default_factory=time.monotonic)


def _describe(policy: Policy) -> dict[str, Any]:
    describe = getattr(policy, "describe", None)
    return dict(describe()) if callable(describe) else {"name": type(policy).__name__}


def _with_memo(episode: Episode, conversation: Conversation) -> Episode:
    turns = conversation.memo.get("turns")
    if not turns:
        return episode
    return replace(episode, metadata={**episode.metadata, "turns": turns})


def run(
    scenario: str | Scenario,
    policy: Policy,
    jobs: Sequence[Job],
    *,
    batch_size: int = 64,
    store: EpisodeStore | None = None,
    pool: EnvPool | None = None,
    workers: int | None = None,
    time_limit_s: float | None = None,
    on_episode: Callable[[Episode], None] | None = None,
) -> list[Episode]:
    """Play every job; return the episodes (those already in ``store`` included, job order).

    Args:
        scenario: Id, path or ``Scenario``.
        policy: Acts on a batch of conversations.
        jobs: What to play, e.g. from :func:`plan_jobs`.
        batch_size: Episodes running at once (the policy's batch).
        store: Receives each episode as it finishes; jobs it already holds are skipped.
        pool: Where environments live (default: a :class:`LocalPool`). A pool with a
            ``capacity`` attribute (a rollout server's ``RemotePool``) caps ``batch_size``.
        workers: Threads of the default pool.
        time_limit_s: Wall time allowed per episode; past it the episode ends, scored as it
            stands, with ``termination="time_limit"``.
        on_episode: Called with each new episode (progress display, logging).
    """
    resolved = scenario if isinstance(scenario, Scenario) else load_scenario(scenario)
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    keys = [job.key for job in jobs]
    if len(set(keys)) != len(keys):
        raise SimenvError("two jobs share a key (task, sample, seed); each must be unique")
    done: dict[str, Episode] = dict(store.done) if store is not None else {}
    queue = deque(job for job in jobs if job.key not in done)
    owned = pool is None
    envs: EnvPool = pool if pool is not None else LocalPool(resolved, workers)
    capacity = getattr(envs, "capacity", None)  # e.g. a rollout server's max_envs
    if isinstance(capacity, int) and capacity > 0:
        batch_size = min(batch_size, capacity)
    described = _describe(policy)
    active: list[_Slot] = []
    try:
        while queue or active:
            while queue and len(active) < batch_size:
                job = queue.popleft()
                handle, conversation = envs.start(job)
                active.append(_Slot(job, handle, conversation))
            actions = policy.act([slot.conversation for slot in active])
            results = envs.step([slot.handle for slot in active], actions)
            still: list[_Slot] = []
            now = time.monotonic()
            for slot, result in zip(active, results, strict=True):
                slot.conversation.messages.extend(result.observation)
                late = time_limit_s is not None and now - slot.started > time_limit_s
                if not (result.done or late):
                    still.append(slot)
                    continue
                episode = envs.finish(slot.handle, described, late and not result.done)
                episode = _with_memo(episode, slot.conversation)
                job = slot.job
                metadata = {
                    **episode.metadata,
                    "job": {"key": job.key, "task_index": job.task_index, "sample": job.sample},
                }
                episode = replace(
                    episode, episode_id=f"{episode.episode_id}-{job.sample}", metadata=metadata
                )
                done[job.key] = episode
                if store is not None:
                    store.write(episode)
                if on_episode is not None:
                    on_episode(episode)
            active = still
    finally:
        if owned:
            envs.close()
    return [done[key] for key in keys if key in done]
