"""Wrappers, one job each; :func:`simenv.make` stacks them around a ``MultiTurnEnv``.

* :class:`TimeLimit` truncates at ``max_turns`` and scores the episode there.
* :class:`OrderEnforcing` raises :class:`~simenv.errors.ResetNeeded` on a step before ``reset``
  or after the episode ended.
* :class:`RecordEpisode` keeps each finished :class:`~simenv.types.Episode` and hands it to a sink.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, SupportsFloat

import gymnasium as gym

from simenv.env import MultiTurnEnv
from simenv.errors import ResetNeeded
from simenv.types import Action, Episode, Message

__all__ = ["OrderEnforcing", "RecordEpisode", "TimeLimit"]

_Env = gym.Env[list[Message], Action]
_StepResult = tuple[list[Message], SupportsFloat, bool, bool, dict[str, Any]]


def _base(env: _Env) -> MultiTurnEnv:
    inner = env.unwrapped
    if not isinstance(inner, MultiTurnEnv):
        raise TypeError(f"simenv wrappers need a MultiTurnEnv inside, got {type(inner).__name__}")
    return inner


class TimeLimit(gym.Wrapper[list[Message], Action, list[Message], Action]):
    """Truncate the episode after ``max_turns`` assistant turns, scoring it as it stands.

    On the last allowed turn, if the agent did not end the episode itself, ``truncated`` is True
    and the reward is that turn's reward plus the scenario's outcome reward of the state reached
    (``termination="max_turns"``).
    """

    def __init__(self, env: _Env, max_turns: int | None = None) -> None:
        """Wrap ``env``; ``max_turns`` defaults to the scenario's."""
        super().__init__(env)
        self._base = _base(env)
        self.max_turns = max_turns if max_turns is not None else self._base.scenario.max_turns
        if self.max_turns < 1:
            raise ValueError(f"max_turns must be at least 1, got {self.max_turns}")
        self._turns = 0

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[list[Message], dict[str, Any]]:
        """Reset the turn counter and the wrapped env."""
        self._turns = 0
        observation, info = self.env.reset(seed=seed, options=options)
        info["max_turns"] = self.max_turns
        return observation, info

    def step(self, action: Action) -> _StepResult:
        """Step, and truncate when the turn budget is spent."""
        observation, reward, terminated, truncated, info = self.env.step(action)
        self._turns += 1
        if self._turns >= self.max_turns and not (terminated or truncated):
            final, end = self._base.end_episode("max_turns")
            info.update(end)
            return observation, float(reward) + final, False, True, info
        return observation, reward, terminated, truncated, info


class OrderEnforcing(gym.Wrapper[list[Message], Action, list[Message], Action]):
    """Raise :class:`ResetNeeded` on ``step`` before ``reset`` or after the episode ended."""

    def __init__(self, env: _Env) -> None:
        """Wrap ``env``."""
        super().__init__(env)
        self._ready = False

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[list[Message], dict[str, Any]]:
        """Reset and allow steps again."""
        result = self.env.reset(seed=seed, options=options)
        self._ready = True
        return result

    def step(self, action: Action) -> _StepResult:
        """Step, refusing when no episode is running."""
        if not self._ready:
            raise ResetNeeded(
                "step() called before reset() or after the episode ended; call reset() first"
            )
        result = self.env.step(action)
        if result[2] or result[3]:
            self._ready = False
        return result

    @property
    def has_reset(self) -> bool:
        """Whether an episode is running."""
        return self._ready


class RecordEpisode(gym.Wrapper[list[Message], Action, list[Message], Action]):
    """Keep each finished episode as an :class:`Episode` and pass it to ``sink`` if given.

    Attributes:
        last_episode: The most recent finished episode, or ``None``.
        policy: Policy description stored in every record.
    """

    def __init__(
        self,
        env: _Env,
        sink: Callable[[Episode], None] | None = None,
        policy: dict[str, Any] | None = None,
    ) -> None:
        """Wrap ``env``; ``sink`` receives every finished episode (e.g. a JSONL writer)."""
        super().__init__(env)
        self._base = _base(env)
        self.sink = sink
        self.policy = dict(policy or {})
        self.last_episode: Episode | None = None

    def step(self, action: Action) -> _StepResult:
        """Step; when the episode ends, build its record."""
        result = self.env.step(action)
        if result[2] or result[3]:
            episode = self._base.episode(self.policy)
            self.last_episode = episode
            if self.sink is not None:
                self.sink(episode)
        return result
