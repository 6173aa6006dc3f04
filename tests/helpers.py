"""A small, self-contained scenario for the core tests (nothing from ``scenarios/``).

``test/Shelf-v1``: a shelf of four items with seeded counts. The agent counts an item (read),
may restock one (write), may roll a die (a tool that draws from the injected episode generator)
and submits its answer (write; a finishing tool unless ``finish_tools=()``). The reward pays a
submitted count that matches the final shelf; the evaluation, independently, compares it with the
starting shelf rebuilt from the seed. The oracle counts then submits.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, ClassVar, TypeVar

import numpy as np

from simenv import InfraError, Outcome, Sandbox, Scenario, Task, ToolError, tool
from simenv.parsing import format_tool_call
from simenv.types import Episode


class Shelf(Sandbox):
    """Item counts drawn from the episode seed, a log of writes and the submitted answer."""

    open_tokens: ClassVar[set[int]] = set()
    """One token per sandbox set up and not yet closed (tests check nothing leaks)."""
    _tokens: ClassVar[itertools.count[int]] = itertools.count()

    def setup(self, rng: np.random.Generator, task: Task) -> None:
        self.items = {f"I-{i}": int(rng.integers(0, 9)) for i in range(4)}
        self.log: list[str] = []
        self.submitted: str | None = None
        self._secret = "not part of the state"
        self._token = next(Shelf._tokens)
        Shelf.open_tokens.add(self._token)

    def close(self) -> None:
        Shelf.open_tokens.discard(self._token)


@tool
def count(shelf: Shelf, item: str) -> int:
    """Count one item on the shelf.

    Args:
        item: Item id such as "I-2".
    """
    if item not in shelf.items:
        raise ToolError(f"no item {item!r}; ids look like I-0")
    return shelf.items[item]


@tool(effect="write")
def restock(shelf: Shelf, item: str, amount: int = 1) -> int:
    """Put more of an item on the shelf.

    Args:
        item: Item id such as "I-2".
        amount: How many to add, at least 1.

    Returns:
        The new count.
    """
    if item not in shelf.items:
        raise ToolError(f"no item {item!r}; ids look like I-0")
    if amount < 1:
        raise ToolError("amount must be at least 1")
    shelf.items[item] += amount
    shelf.log.append(f"restock {item} {amount}")
    return shelf.items[item]


@tool
def roll(rng: np.random.Generator, sides: int = 6) -> int:
    """Roll a die.

    Args:
        sides: Number of faces.
    """
    if sides < 1:
        raise ToolError("a die needs at least one side")
    return int(rng.integers(1, sides + 1))


@tool(effect="write")
def submit(shelf: Shelf, answer: str) -> str:
    """Submit the final answer.

    Args:
        answer: The count, as digits.
    """
    if not answer.strip():
        raise ToolError("the answer is empty; submit the count as digits")
    shelf.submitted = answer
    return "submitted"


@tool(effect="write")
def explode(shelf: Shelf) -> str:
    """A tool with a bug: it raises an exception that is not a ToolError."""
    raise KeyError("boom")


@tool
def outage(shelf: Shelf) -> str:
    """A tool whose backend is down."""
    raise InfraError("the inventory service is down; retry later")


def reward(o: Outcome) -> dict[str, float]:
    item = o.task.data["item"]
    return {
        "correct": float(o.final.submitted == str(o.final.items[item])),
        "restocks": -0.25 * len(o.called("restock")),
    }


def evaluate(o: Outcome) -> bool:
    return bool(o.final.submitted == str(o.initial.items[o.task.data["item"]]))


def oracle(task: Task, shelf: Shelf) -> list[str]:
    item = task.data["item"]
    return [
        format_tool_call("count", {"item": item}),
        format_tool_call("submit", {"answer": str(shelf.items[item])}),
    ]


TASKS = [
    Task(
        f"t{i}",
        f"How many I-{i % 4} are on the shelf?",
        "eval" if i >= 6 else "train",
        {"item": f"I-{i % 4}"},
    )
    for i in range(8)
]


def make_scenario(**changes: Any) -> Scenario:
    """The Shelf scenario, with any field replaced."""
    fields: dict[str, Any] = {
        "id": "test/Shelf-v1",
        "system_prompt": "You count things on a shelf. Submit the count with `submit`.",
        "tools": [count, restock, roll, submit, explode],
        "tasks": TASKS,
        "sandbox": Shelf,
        "reward": reward,
        "evaluate": evaluate,
        "oracle": oracle,
        "max_turns": 4,
        "finish_tools": ["submit"],
    }
    fields.update(changes)
    return Scenario(**fields)


def call(name: str, **arguments: Any) -> str:
    """One Hermes-format tool call, as model text."""
    return format_tool_call(name, arguments)


def comparable(episode: Episode) -> dict[str, Any]:
    """``episode.to_dict()`` without the wall-clock ``latency_s`` fields."""
    record = episode.to_dict()
    for step in record["steps"]:
        for result in step["tool_results"]:
            del result["latency_s"]
    return record


_Server = TypeVar("_Server")


@contextmanager
def serving(server: _Server, join_s: float | None = None) -> Iterator[_Server]:
    """Run ``server.serve_forever()`` on a thread; shut it down and close it afterwards."""
    thread = threading.Thread(target=server.serve_forever, daemon=True)  # type: ignore[attr-defined]
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()  # type: ignore[attr-defined]
        server.server_close()  # type: ignore[attr-defined]
        thread.join(join_s)
