"""The policy protocol and the conversation it acts on."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from simenv.env import MultiTurnEnv
from simenv.types import Action, Message

__all__ = ["Conversation", "Policy"]


@dataclass
class Conversation:
    """One running episode, as a policy sees it.

    Attributes:
        messages: The whole conversation so far (system, user, assistant, tool ...).
        info: The ``info`` that ``reset`` returned (tools, task id, seed ...).
        env: The unwrapped environment, for scripted policies that need the task or state
            (the oracle). Model policies must not look at it.
        memo: Scratch space a policy may keep per episode (e.g. the oracle's plan, or the token
            ids a model policy recorded); the runner stores ``memo["turns"]`` in the episode's
            metadata.
        oracle: Returns the scenario's gold turns for this episode, computed where the
            environment lives (set by the runner; for a remote environment, a remote call).
    """

    messages: list[Message]
    info: dict[str, Any]
    env: MultiTurnEnv | None = None
    memo: dict[str, Any] = field(default_factory=dict)
    oracle: Callable[[], list[Action]] | None = None

    @property
    def turn(self) -> int:
        """Assistant turns taken so far."""
        return sum(1 for m in self.messages if m.get("role") == "assistant")


@runtime_checkable
class Policy(Protocol):
    """Anything that answers a batch of conversations with one action each."""

    def act(self, conversations: Sequence[Conversation]) -> list[Action]:
        """Return the next assistant turn for each conversation, in order."""
        ...

    def describe(self) -> dict[str, Any]:
        """A JSON-ready description stored in episode records (name, parameters)."""
        ...
