"""Rollouts: one episode with :func:`rollout`, many in lockstep batches with :func:`run`.

:func:`run` plays N tasks x G samples. Episodes advance in lockstep: every turn, the
conversations of all running episodes go to the policy as ONE batch (one batched generate
call for a model), then each environment steps; when an episode ends its slot is refilled
from the queue. Blocking tool calls (a sandbox that declares ``blocking_io``, or
``workers > 1``) run concurrently in threads. Each finished episode goes to the store at once,
so ``resume`` continues a killed run with no episode lost or repeated.

Where the environments live is a backend with three methods (start, step a batch, finish):
:class:`~simenv.rollouts.pools.LocalPool` in this process, :class:`simenv.rollouts.ray.RayPool`
on a Ray cluster (:mod:`simenv.rollouts.pools`). Jobs are planned in :mod:`simenv.rollouts.jobs`.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import gymnasium as gym

from simenv.env import MultiTurnEnv
from simenv.errors import SimenvError
from simenv.registration import load_scenario
from simenv.rollouts.jobs import Job
from simenv.rollouts.policies.base import Conversation, Policy
from simenv.rollouts.pools import EnvPool, HostedEnv, LocalPool
from simenv.rollouts.store import EpisodeStore
from simenv.scenario import Scenario
from simenv.types import Action, Episode, Message

__all__ = ["rollout", "run"]


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
                metadata = {**episode.metadata, "job": {"key": job.key, "sample": job.sample}}
                episode = replace(
                    episode,
                    episode_id=f"{episode.episode_id}-{job.sample}",
                    metadata=metadata,
                    group=job.group,
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
