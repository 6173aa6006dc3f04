"""Rolling out episodes: ``rollout`` plays one episode of an environment with a policy."""

from __future__ import annotations

from typing import Any

import gymnasium as gym

from simenv.env import MultiTurnEnv
from simenv.errors import SimenvError
from simenv.policies.base import Conversation, Policy
from simenv.types import Action, Episode, Message

__all__ = ["rollout"]


def rollout(
    env: gym.Env[list[Message], Action],
    policy: Policy,
    *,
    seed: int | None = None,
    task_id: str | None = None,
) -> Episode:
    """Play one episode and return its record.

    Args:
        env: An environment from :func:`simenv.make` (or a bare ``MultiTurnEnv``).
        policy: Anything with ``act(conversations) -> actions``.
        seed: The episode seed (``None``: drawn from the environment's generator).
        task_id: Run this task (``None``: the seed picks one).
    """
    base = env.unwrapped
    if not isinstance(base, MultiTurnEnv):
        raise SimenvError(f"rollout() needs a simenv environment, got {type(base).__name__}")
    options: dict[str, Any] | None = {"task_id": task_id} if task_id is not None else None
    observation, info = env.reset(seed=seed, options=options)
    conversation = Conversation(messages=list(observation), info=info, env=base)
    while True:
        action = policy.act([conversation])[0]
        observation, _, terminated, truncated, _ = env.step(action)
        conversation.messages.extend(observation)
        if terminated or truncated:
            break
    describe = getattr(policy, "describe", None)
    return base.episode(describe() if callable(describe) else {"name": type(policy).__name__})
