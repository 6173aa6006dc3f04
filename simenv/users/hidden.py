"""What a user knows that the agent must not see for free: the leak check's list.

A persona's facts are hidden until the agent asks for them (then the user tells them, as it
should); a user's hidden instructions (a persona's, an LLM user's) are hidden always, as is the
task's gold answer (which the leak check finds in ``task.data`` by itself). :func:`hidden`
lists them for the users simenv ships; a user of another kind declares its own with a
``hidden`` attribute holding :class:`Hidden` items.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from simenv.scenario import User
from simenv.users.llm import LLMUser
from simenv.users.persona import PersonaUser

__all__ = ["MIN_HIDDEN_CHARS", "Hidden", "hidden"]

MIN_HIDDEN_CHARS = 4
"""Shorter values are not looked for (they would be found everywhere by chance)."""

_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")
_MIN_SENTENCE_CHARS = 24


@dataclass(frozen=True)
class Hidden:
    """One text the agent must not see unless it asked for it.

    Attributes:
        what: What it is, for the report ("fact 'order id'", "hidden instructions").
        text: The text looked for in what the agent sees.
        asked_by: Regular expressions (case insensitive) that, in an agent message, ask for it:
            from then on the text may appear. Empty: it must never appear.
    """

    what: str
    text: str
    asked_by: tuple[str, ...] = ()


def _instructions(text: str) -> list[Hidden]:
    """The instructions, whole and sentence by sentence (a leak often quotes one sentence)."""
    parts = [text.strip()] + [
        p.strip() for p in _SENTENCE.split(text) if len(p.strip()) >= _MIN_SENTENCE_CHARS
    ]
    return [Hidden("hidden instructions", p) for p in dict.fromkeys(parts) if p]


def hidden(user: User | None) -> list[Hidden]:
    """What ``user`` knows that the agent must not see for free (nothing for ``None``)."""
    found: list[Hidden] = []
    if isinstance(user, PersonaUser):
        persona = user.persona
        found += [Hidden(f"fact {f.name!r}", f.value, f.asked_by) for f in persona.facts]
        if persona.instructions:
            found += _instructions(persona.instructions)
    elif isinstance(user, LLMUser):
        found += _instructions(user.instructions)
    declared = getattr(user, "hidden", ())
    if isinstance(declared, Sequence):
        found += [h for h in declared if isinstance(h, Hidden)]
    return [h for h in found if len(h.text) >= MIN_HIDDEN_CHARS]
