"""Scripted users: a task carries its user instructions, delivered one after another.

The shape of multi-instruction benchmarks (BFCL multi-turn, tau-bench's task lists): the user
gives an instruction, the agent works (tool calls) and answers, then the user gives the next
one. A task lists every instruction in order under ``task.data["user_turns"]``; the first is
the opening message, so it must be the task's prompt (:func:`scripted_task` builds such a
task). Each item is a string or ``{"content": str, "check": ...}``::

    scripted_task("bank-007", [
        {"content": "What is my balance?", "check": {"answer_contains": "1,250"}},
        {"content": "Move 200 to savings.", "check": {"called": [{"name": "transfer"}],
                                                       "state": {"savings": 700}}},
    ])

A check scores the agent's work on its instruction, as the state and answer stand when the
agent answers it (a turn without a tool call). It is a function ``check(outcome) -> float |
bool`` of the episode so far (an :class:`~simenv.scenario.Outcome`, as a turn reward sees
it), or a dict of conditions that all must hold (score 1.0, else 0.0), which keeps task files
plain JSON (see :data:`CONDITIONS`).

Scores land as per-turn rewards through the scenario's ``turn_reward``:
:func:`instruction_reward` pays each instruction's score divided by the number of
instructions on the turn that answers it, so a task solved throughout earns 1.0 in all.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from simenv.errors import ScenarioError
from simenv.scenario import Outcome, User, UserContext
from simenv.types import Step, Task

__all__ = [
    "CONDITIONS",
    "USER_TURNS_KEY",
    "Check",
    "Instruction",
    "ScriptedUser",
    "instruction_index",
    "instruction_reward",
    "instructions",
    "scripted_task",
]

USER_TURNS_KEY = "user_turns"
"""The ``task.data`` key that holds a task's instructions."""

Check = Callable[[Outcome], "float | bool"] | Mapping[str, Any]
"""A function of the episode so far, or a dict of :data:`CONDITIONS`."""

CONDITIONS = {
    "answer_contains": "a string or list of strings that must all be in the answer "
    "(case-insensitive)",
    "answer_excludes": "a string or list of strings none of which may be in the answer",
    "called": "a list of {'name', 'arguments'?} calls that must each have succeeded while the "
    "agent worked on this instruction (arguments: a subset that must match)",
    "state": "{path: value}: the sandbox's state() at each dotted path (keys, list indices) "
    "must equal the value",
}
"""The conditions a dict check may hold, and what each means."""


@dataclass(frozen=True)
class Instruction:
    """One user instruction of a scripted task.

    Attributes:
        content: The user message.
        check: What scores the agent's work on it, or ``None`` (it earns nothing).
    """

    content: str
    check: Check | None = None


def instructions(task: Task) -> tuple[Instruction, ...]:
    """The instructions a task carries under ``data["user_turns"]``, checked.

    Raises:
        ScenarioError: They are missing or malformed, or the first is not the task's prompt;
            the message names the task, the item and the fix.
    """
    raw = task.data.get(USER_TURNS_KEY)
    where = f"task {task.id!r}: data[{USER_TURNS_KEY!r}]"
    if not isinstance(raw, list | tuple) or not raw:
        raise ScenarioError(
            f"{where} must be a non-empty list of the user's instructions (strings or "
            f"{{'content', 'check'}} dicts), got {raw!r:.80}; build the task with "
            "simenv.users.scripted_task(id, turns)"
        )
    out = []
    for i, item in enumerate(raw):
        if isinstance(item, str):
            out.append(Instruction(item))
            continue
        if not isinstance(item, Mapping) or not isinstance(item.get("content"), str):
            raise ScenarioError(
                f"{where}[{i}] must be a string or a dict with a string 'content' (and an "
                f"optional 'check'), got {item!r:.80}"
            )
        unknown = sorted(set(item) - {"content", "check"})
        if unknown:
            raise ScenarioError(
                f"{where}[{i}] has unknown fields {unknown}; an instruction has 'content' and "
                "an optional 'check'"
            )
        check = item.get("check")
        _validate_check(check, f"{where}[{i}]['check']")
        out.append(Instruction(item["content"], check))
    if out[0].content != task.prompt:
        raise ScenarioError(
            f"{where}[0] is the opening message and must be the task's prompt: "
            f"{out[0].content!r:.60} != {task.prompt!r:.60}; build the task with "
            "simenv.users.scripted_task(id, turns), which sets the prompt"
        )
    return tuple(out)


def _validate_check(check: Any, where: str) -> None:
    if check is None or callable(check):
        return
    if not isinstance(check, Mapping):
        raise ScenarioError(
            f"{where} must be a function of one Outcome or a dict of conditions "
            f"({', '.join(CONDITIONS)}), got {check!r:.80}"
        )
    unknown = sorted(set(check) - set(CONDITIONS))
    if unknown:
        known = "; ".join(f"{k}: {v}" for k, v in CONDITIONS.items())
        raise ScenarioError(f"{where} has unknown conditions {unknown}; known ones: {known}")
    for key in ("answer_contains", "answer_excludes"):
        if key in check and not _texts(check[key]):
            raise ScenarioError(f"{where}[{key!r}] must be a string or a list of strings")
    calls = check.get("called", [])
    if not isinstance(calls, list) or not all(
        isinstance(c, Mapping)
        and isinstance(c.get("name"), str)
        and isinstance(c.get("arguments", {}), Mapping)
        for c in calls
    ):
        raise ScenarioError(
            f"{where}['called'] must be a list of {{'name': str, 'arguments'?: dict}}, got "
            f"{calls!r:.80}"
        )
    if not isinstance(check.get("state", {}), Mapping):
        raise ScenarioError(f"{where}['state'] must be a dict of dotted path -> value")


def _texts(value: Any) -> list[str] | None:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return list(value)
    return None


def scripted_task(
    id: str,
    turns: Sequence[str | Mapping[str, Any]],
    *,
    split: Literal["train", "eval"] = "train",
    data: Mapping[str, Any] | None = None,
) -> Task:
    """A task whose user speaks ``turns`` in order (the first one opens the episode).

    Args:
        id: The task id.
        turns: The instructions: strings or ``{"content", "check"}`` dicts.
        split: ``train`` or ``eval``.
        data: More hidden data (gold answers, the oracle's plan ...).

    Raises:
        ScenarioError: The turns are malformed (see :func:`instructions`).
    """
    items = list(turns)
    if not items:
        raise ScenarioError(f"task {id!r}: give at least one user turn")
    first = items[0]
    prompt = first if isinstance(first, str) else first.get("content")
    if not isinstance(prompt, str):
        raise ScenarioError(f"task {id!r}: user turn 0 has no string 'content': {first!r:.80}")
    task = Task(id, prompt, split, {**dict(data or {}), USER_TURNS_KEY: items})
    instructions(task)  # refuse a malformed task now, not at its first reset
    return task


class ScriptedUser(User):
    """Gives a task's instructions one after another, then ends the conversation.

    The class is its own factory: ``Scenario(user=ScriptedUser, ...)``. After the agent
    answers instruction ``k`` it sends instruction ``k + 1``; after the last one it says
    nothing more (``termination="user_end"``). Deterministic: it never draws from the rng.
    """

    def __init__(self, task: Task, initial_state: Any = None, rng: Any = None) -> None:
        """Read the task's instructions (``initial_state`` and ``rng`` are not used)."""
        self.instructions = instructions(task)

    def reply(self, context: UserContext) -> str | None:
        """The next instruction, or ``None`` after the last."""
        following = context.user_turn + 1
        if following < len(self.instructions):
            return self.instructions[following].content
        return None


# ----------------------------------------------------------------------------- scoring
def instruction_index(outcome: Outcome) -> int:
    """Which instruction the agent is working on: user messages so far minus the opening one."""
    return sum(1 for m in outcome.messages if m.get("role") == "user") - 1


def _steps_since_instruction(outcome: Outcome) -> tuple[Step, ...]:
    """The steps played since the current instruction was given (the answering one included)."""
    count = 0
    for message in reversed(outcome.messages):
        role = message.get("role")
        if role == "user":
            break
        count += role == "assistant"
    return outcome.steps[len(outcome.steps) - count :] if count else ()


def _at(value: Any, path: str) -> Any:
    for part in path.split("."):
        if isinstance(value, Mapping) and part in value:
            value = value[part]
        elif isinstance(value, list | tuple) and re.fullmatch(r"-?\d+", part):
            index = int(part)
            if not -len(value) <= index < len(value):
                return _MISSING
            value = value[index]
        else:
            return _MISSING
    return value


_MISSING = object()


def _subset(wanted: Mapping[str, Any], given: Mapping[str, Any]) -> bool:
    return all(k in given and given[k] == v for k, v in wanted.items())


def score_conditions(check: Mapping[str, Any], outcome: Outcome) -> float:
    """1.0 when every condition of a dict check holds for the episode so far, else 0.0."""
    answer = outcome.answer.casefold()
    for text in _texts(check.get("answer_contains")) or ():
        if text.casefold() not in answer:
            return 0.0
    for text in _texts(check.get("answer_excludes")) or ():
        if text.casefold() in answer:
            return 0.0
    made = [
        (c.name, c.arguments)
        for s in _steps_since_instruction(outcome)
        for c, r in zip(s.tool_calls, s.tool_results, strict=True)
        if not r.is_error
    ]
    for wanted in check.get("called", ()):
        if not any(
            name == wanted["name"] and _subset(wanted.get("arguments", {}), args)
            for name, args in made
        ):
            return 0.0
    wanted_state = check.get("state")
    if wanted_state:
        state = outcome.final.state() if outcome.final is not None else {}
        for path, value in wanted_state.items():
            if _at(state, str(path)) != value:
                return 0.0
    return 1.0


def score_instruction(instruction: Instruction, outcome: Outcome) -> float:
    """The score in [0, 1] of one instruction's check (0.0 without a check).

    Raises:
        ScenarioError: A check function returned something that is not a number in [0, 1].
    """
    check = instruction.check
    if check is None:
        return 0.0
    if isinstance(check, Mapping):
        return score_conditions(check, outcome)
    raw = check(outcome)
    value = float(raw) if isinstance(raw, bool | int | float | np.number) else math.nan
    if not 0.0 <= value <= 1.0:
        raise ScenarioError(
            f"task {outcome.task.id!r}: the check of user turn {instruction_index(outcome)} "
            f"returned {raw!r:.60}; a check returns a bool or a number in [0, 1]"
        )
    return value


def instruction_reward(outcome: Outcome) -> float:
    """A scenario ``turn_reward`` for scripted tasks: each instruction's score, on its answer.

    On a turn that answers (no tool call), the check of the instruction being answered scores
    it, divided by the number of instructions, so the turn rewards of a task solved
    throughout sum to 1.0. Turns with tool calls earn 0.0; so does an instruction the agent
    never answers (it ran out of turns, or a finish tool ended the episode first).
    """
    if not outcome.steps or outcome.steps[-1].tool_calls:
        return 0.0
    turns = instructions(outcome.task)
    index = instruction_index(outcome)
    if not 0 <= index < len(turns):
        return 0.0
    return score_instruction(turns[index], outcome) / len(turns)
