"""Seeded rule-based users: a persona with hidden facts it gives only when asked, and goals.

A support customer knows their order id, why they are calling and what they want; they say
what they want, and answer the agent's questions, one fact at a time, as they are asked. A
:class:`Persona` declares that:

- **facts**: hidden values (an order id, a reason, a preference), each with the patterns (case
  insensitive regular expressions) that, found in the agent's message, mean the agent asked for
  it. A fact is told only when asked for, so an agent that never asks never learns it.
- **goals**: what the user wants, in order. Each has the patterns (or a function of the
  :class:`~simenv.scenario.UserContext`, e.g. on the sandbox) that mean it was met, and the
  request that opens it (the first goal's is the task's prompt). When the last is met the user
  says nothing more and the episode ends (``termination="user_end"``).
- **patience**: how many answers that neither ask for a fact nor meet the goal the user takes
  before giving up (ending the conversation unserved).

Each reply is chosen by rules, its wording from a few templates drawn from the user's own
generator, so it is deterministic from the episode seed. Write a persona in ``task.data``
(``{"persona": {"facts": {...}, "goals": [...], "patience": 3}}``, plain JSON) and use
``Scenario(user=PersonaUser)``, or build it from the seeded state with
``PersonaUser.factory(build)`` where ``build(task, initial_state) -> Persona``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from simenv.errors import ScenarioError
from simenv.scenario import User, UserContext, UserFactory
from simenv.types import Task

__all__ = ["NUDGES", "PERSONA_KEY", "Fact", "Goal", "Persona", "PersonaUser"]

PERSONA_KEY = "persona"
"""The ``task.data`` key a :class:`PersonaUser` reads its persona from."""

NUDGES = (
    "Sorry, I'm not sure that helps. Can you help me with my request?",
    "I still need help with this, please.",
    "Could you please sort this out for me?",
)
"""What a persona says to an answer that asks for nothing it knows and meets no goal."""

DoneWhen = Sequence[str] | Callable[[UserContext], bool]


@dataclass(frozen=True)
class Fact:
    """Something the user knows and tells only when asked.

    Attributes:
        name: What it is ("order id"), used by the default wording.
        value: The value the agent needs.
        asked_by: Regular expressions (case insensitive, searched in the agent's message)
            that mean the agent asked for it.
        say: How the user tells it: templates with ``{name}`` and ``{value}``, one drawn per
            telling.
    """

    name: str
    value: str
    asked_by: tuple[str, ...]
    say: tuple[str, ...] = ("My {name} is {value}.", "It's {value}.", "Sure: {value}.")


@dataclass(frozen=True)
class Goal:
    """Something the user wants done.

    Attributes:
        done_when: Regular expressions of which one, found in the agent's answer, means the
            goal is met; or a function of the :class:`UserContext` (the state, the transcript).
        say: The request that opens this goal, sent when the previous one is met (the first
            goal's request is the task's prompt, and its ``say`` is not used).
    """

    done_when: DoneWhen
    say: str = ""


@dataclass(frozen=True)
class Persona:
    """A rule-based user: hidden facts, goals in order, and patience.

    Attributes:
        facts: What the user knows.
        goals: What the user wants, in order (none: the user only answers questions, until
            its patience runs out).
        patience: Answers in a row that neither ask for a fact nor meet the goal that the
            user takes; one more and it ends the conversation.
        nudges: What the user says to such an answer (one drawn per reply).
        instructions: A hidden description of the persona, for the author and the leak
            check (never shown to the agent).
    """

    facts: tuple[Fact, ...] = ()
    goals: tuple[Goal, ...] = ()
    patience: int = 2
    nudges: tuple[str, ...] = NUDGES
    instructions: str = ""

    def __post_init__(self) -> None:
        if self.patience < 0:
            raise ScenarioError(f"persona patience must be 0 or more, got {self.patience}")
        if not self.nudges:
            raise ScenarioError("a persona needs at least one nudge (what it says when stuck)")
        for fact in self.facts:
            if not fact.asked_by or not fact.say:
                raise ScenarioError(
                    f"persona fact {fact.name!r} needs at least one asked_by pattern and one "
                    "say template"
                )
            for pattern in fact.asked_by:
                _compile(pattern, f"persona fact {fact.name!r}")
        for i, goal in enumerate(self.goals):
            if not callable(goal.done_when):
                if isinstance(goal.done_when, str) or not goal.done_when:
                    raise ScenarioError(
                        f"persona goal {i}: done_when must be a list of patterns or a function "
                        f"of the UserContext, got {goal.done_when!r:.60}"
                    )
                for pattern in goal.done_when:
                    _compile(pattern, f"persona goal {i}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "persona") -> Persona:
        """A persona from plain JSON (the shape the module docstring shows).

        Raises:
            ScenarioError: A field is missing or of the wrong type; the message names it.
        """
        if not isinstance(data, Mapping):
            raise ScenarioError(f"{where} must be a dict with facts, goals, patience")
        unknown = sorted(set(data) - {"facts", "goals", "patience", "nudges", "instructions"})
        if unknown:
            raise ScenarioError(
                f"{where} has unknown fields {unknown}; known: facts, goals, patience, nudges, "
                "instructions"
            )
        facts = []
        raw_facts = data.get("facts", {})
        if not isinstance(raw_facts, Mapping):
            raise ScenarioError(f"{where}['facts'] must be a dict of name -> fact")
        for name, spec in raw_facts.items():
            at = f"{where}['facts'][{name!r}]"
            if not isinstance(spec, Mapping) or not isinstance(spec.get("value"), str | int):
                raise ScenarioError(f"{at} must be a dict with a 'value' (a string)")
            asked = _strings(spec.get("asked_by"), f"{at}['asked_by']")
            say = spec.get("say")
            templates = Fact.say if say is None else _strings(say, f"{at}['say']")
            facts.append(Fact(str(name), str(spec["value"]), asked, templates))
        goals = []
        raw_goals = data.get("goals", [])
        if not isinstance(raw_goals, list):
            raise ScenarioError(f"{where}['goals'] must be a list of {{'done_when', 'say'}}")
        for i, spec in enumerate(raw_goals):
            at = f"{where}['goals'][{i}]"
            if not isinstance(spec, Mapping) or not isinstance(spec.get("say", ""), str):
                raise ScenarioError(f"{at} must be a dict with 'done_when' and a string 'say'")
            goals.append(
                Goal(_strings(spec.get("done_when"), f"{at}['done_when']"), spec.get("say", ""))
            )
        patience = data.get("patience", 2)
        if not isinstance(patience, int) or isinstance(patience, bool):
            raise ScenarioError(f"{where}['patience'] must be a whole number")
        nudges = _strings(data["nudges"], f"{where}['nudges']") if "nudges" in data else NUDGES
        instructions = data.get("instructions", "")
        if not isinstance(instructions, str):
            raise ScenarioError(f"{where}['instructions'] must be a string")
        return cls(tuple(facts), tuple(goals), patience, nudges, instructions)


def _strings(value: Any, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list | tuple) and value and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise ScenarioError(
        f"{where} must be a string or a non-empty list of strings, got {value!r:.60}"
    )


def _compile(pattern: str, where: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern, re.IGNORECASE)
    except re.error as exc:
        raise ScenarioError(
            f"{where}: pattern {pattern!r} is not a regular expression: {exc}"
        ) from exc


def asks_for(fact: Fact, text: str) -> bool:
    """Whether ``text`` (an agent's message) asks for ``fact``."""
    return any(re.search(p, text, re.IGNORECASE) for p in fact.asked_by)


@dataclass
class _Progress:
    goal: int = 0
    stuck: int = 0
    told: set[str] = field(default_factory=set)


class PersonaUser(User):
    """A seeded rule-based user playing a :class:`Persona`.

    The class is its own factory, reading ``task.data["persona"]``: ``Scenario(user=
    PersonaUser)``; :meth:`factory` builds the persona from the task and the seeded state.

    Each reply, in this order: the facts the agent's answer asks for (all of them, one
    sentence each); else, if the answer meets the current goal, the next goal's request, or
    the end of the conversation after the last; else a nudge, until the patience runs out
    and the user ends the conversation. Wording is drawn from the episode's user generator.
    """

    def __init__(
        self,
        task: Task,
        initial_state: Any,
        rng: np.random.Generator,
        *,
        persona: Persona | None = None,
    ) -> None:
        """Play ``persona``, or the one in ``task.data["persona"]``."""
        if persona is None:
            if PERSONA_KEY not in task.data:
                raise ScenarioError(
                    f"task {task.id!r} has no data[{PERSONA_KEY!r}]; give each task a persona "
                    "or build one with PersonaUser.factory(build)"
                )
            raw = task.data[PERSONA_KEY]
            where = f"task {task.id!r}: data[{PERSONA_KEY!r}]"
            persona = raw if isinstance(raw, Persona) else Persona.from_dict(raw, where)
        self.persona = persona
        self._progress = _Progress()

    @classmethod
    def factory(cls, build: Callable[[Task, Any], Persona]) -> UserFactory:
        """A user factory whose persona ``build(task, initial_state)`` makes per episode."""

        def make(task: Task, initial_state: Any, rng: np.random.Generator) -> PersonaUser:
            persona = build(task, initial_state)
            if not isinstance(persona, Persona):
                raise ScenarioError(
                    f"the persona builder returned {persona!r:.80} for task {task.id!r}; it "
                    "must return a simenv.users.Persona"
                )
            return cls(task, initial_state, rng, persona=persona)

        return make

    def reply(self, context: UserContext) -> str | None:
        """Tell what was asked, follow the goals, or nudge; ``None``: done, or out of patience."""
        persona, progress, rng = self.persona, self._progress, context.rng
        asked = [f for f in persona.facts if asks_for(f, context.answer)]
        if asked:
            progress.stuck = 0
            progress.told.update(f.name for f in asked)
            return " ".join(_pick(f.say, rng).format(name=f.name, value=f.value) for f in asked)
        if progress.goal < len(persona.goals) and _met(persona.goals[progress.goal], context):
            progress.goal += 1
            progress.stuck = 0
            if progress.goal == len(persona.goals):
                return None
            return persona.goals[progress.goal].say
        progress.stuck += 1
        if progress.stuck > persona.patience:
            return None
        return _pick(persona.nudges, rng)

    @property
    def told(self) -> frozenset[str]:
        """The names of the facts told so far."""
        return frozenset(self._progress.told)


def _pick(options: Sequence[str], rng: np.random.Generator) -> str:
    return options[int(rng.integers(0, len(options)))] if len(options) > 1 else options[0]


def _met(goal: Goal, context: UserContext) -> bool:
    if callable(goal.done_when):
        return bool(goal.done_when(context))
    return any(re.search(p, context.answer, re.IGNORECASE) for p in goal.done_when)
