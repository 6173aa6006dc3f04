"""Gymnasium spaces for chat observations and assistant actions.

An observation is a list of OpenAI chat messages (the new ones of a turn). An action is either
the model's raw text or an assistant message dict. Both spaces can ``sample`` (text with and
without tool calls, for smoke tests and ``check_env``) and check membership with ``contains``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np

from simenv.types import Action, Message

__all__ = ["AssistantAction", "ChatObservation", "is_message"]

ROLES = frozenset({"system", "user", "assistant", "tool"})
_WORDS = ("order", "refund", "please", "status", "ok", "thanks", "help", "the", "id", "{", "}")


def is_message(value: Any) -> bool:
    """Whether ``value`` is a well-formed chat message dict."""
    if not isinstance(value, dict):
        return False
    role = value.get("role")
    if role not in ROLES or not isinstance(value.get("content"), str):
        return False
    if role == "tool" and not isinstance(value.get("tool_call_id"), str):
        return False
    calls = value.get("tool_calls")
    return calls is None or (role == "assistant" and isinstance(calls, list))


def _text(rng: np.random.Generator, max_words: int = 12) -> str:
    n = int(rng.integers(0, max_words + 1))
    return " ".join(_WORDS[int(i)] for i in rng.integers(0, len(_WORDS), size=n))


class ChatObservation(gym.Space[list[Message]]):
    """A list of chat messages; ``contains`` checks roles, content and tool-call ids."""

    def __init__(self, max_messages: int = 256, seed: int | np.random.Generator | None = None):
        self.max_messages = max_messages
        super().__init__(shape=None, dtype=None, seed=seed)

    @property
    def is_np_flattenable(self) -> bool:
        """Chat messages cannot be flattened into an array."""
        return False

    def contains(self, x: Any) -> bool:
        """Whether ``x`` is a list of at most ``max_messages`` well-formed messages."""
        return isinstance(x, list) and len(x) <= self.max_messages and all(is_message(m) for m in x)

    def sample(self, mask: Any = None, probability: Any = None) -> list[Message]:
        """A random short conversation (roles and text only)."""
        n = int(self.np_random.integers(1, 4))
        messages: list[Message] = []
        for i in range(n):
            role = ("user", "assistant", "tool")[int(self.np_random.integers(0, 3))]
            message: Message = {"role": role, "content": _text(self.np_random)}
            if role == "tool":
                message["tool_call_id"] = f"call_{i}"
            messages.append(message)
        return messages

    def __repr__(self) -> str:
        return f"ChatObservation(max_messages={self.max_messages})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ChatObservation) and other.max_messages == self.max_messages


class AssistantAction(gym.Space[Action]):
    """An assistant turn: raw text (with ``<tool_call>`` blocks) or an assistant message dict.

    Every string is a valid action (the environment answers malformed tool calls with an error
    message), as is every dict with ``role == "assistant"``.
    """

    def __init__(
        self,
        tool_names: Sequence[str] = (),
        max_chars: int = 1_000_000,
        seed: int | np.random.Generator | None = None,
    ):
        self.tool_names = tuple(tool_names)
        self.max_chars = max_chars
        super().__init__(shape=None, dtype=None, seed=seed)

    @property
    def is_np_flattenable(self) -> bool:
        """Text cannot be flattened into an array."""
        return False

    def contains(self, x: Any) -> bool:
        """Whether ``x`` is text within ``max_chars`` or an assistant message dict."""
        if isinstance(x, str):
            return len(x) <= self.max_chars
        return isinstance(x, dict) and x.get("role") == "assistant"

    def sample(self, mask: Any = None, probability: Any = None) -> str:
        """Random text; half the time with one call to a known tool (random arguments)."""
        text = _text(self.np_random)
        if self.tool_names and self.np_random.random() < 0.5:
            name = self.tool_names[int(self.np_random.integers(0, len(self.tool_names)))]
            args = {"x": _text(self.np_random, 2)}
            text += f"\n<tool_call>{json.dumps({'name': name, 'arguments': args})}</tool_call>"
        return text

    def __repr__(self) -> str:
        return f"AssistantAction(tools={list(self.tool_names)})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AssistantAction) and other.tool_names == self.tool_names
