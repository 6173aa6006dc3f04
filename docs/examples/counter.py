"""Tally counter: bring a counter to the target the user asks for.

## Description
The counter starts at a seeded value between 0 and 39. The user asks for a target between 40
and 79 (so no task is done before the agent acts); the agent reads the counter, adds the
difference, and says it is done.

## Tools
- `read_counter()` (read, seeded sandbox): the current value.
- `add(amount)` (write, seeded sandbox): adds `amount` (between -100 and 100).

## Observation
The system prompt and the user's request; then tool messages.

## Starting state
`value`, drawn from the episode's seed.

## Reward
1.0 when the final value equals the target, else 0.0.

## Evaluation
The calls to `add`, summed, must equal target minus the starting value (computed from the
transcript, not from the final state).

## Episode end
An answer without a tool call, or 5 turns.

## Example
Task `target-42`, seed 1: `read_counter()` -> 18, `add(amount=24)` -> 42, "Done." earns 1.0;
`add(amount=25)` without reading first ends at 43 and earns 0.0.

## Version history
- v1: first release.
"""

from __future__ import annotations

import numpy as np

from simenv import Example, Outcome, Sandbox, Scenario, Task, ToolError, tool
from simenv.parsing import format_tool_call

MAX_STEP = 100


class Counter(Sandbox):
    """The counter's value."""

    def setup(self, rng: np.random.Generator, task: Task) -> None:
        self.value = int(rng.integers(0, 40))


@tool
def read_counter(counter: Counter) -> int:
    """Read the counter's current value."""
    return counter.value


@tool(effect="write")
def add(counter: Counter, amount: int) -> int:
    """Add to the counter (use a negative amount to subtract).

    Args:
        amount: How much to add, between -100 and 100.

    Returns:
        The new value.
    """
    if abs(amount) > MAX_STEP:
        raise ToolError(f"amount must be between -{MAX_STEP} and {MAX_STEP}; call add twice")
    counter.value += amount
    return counter.value


def reward(o: Outcome) -> float:
    return float(o.final.value == o.task.data["target"])


def evaluate(o: Outcome) -> bool:
    added = sum(call["amount"] for call in o.called("add"))
    return o.initial.value + added == o.task.data["target"]


def oracle(task: Task, counter: Counter) -> list[str]:
    return [
        format_tool_call("read_counter", {}),
        format_tool_call("add", {"amount": task.data["target"] - counter.value}),
        "Done.",
    ]


TASKS = [
    Task(
        id=f"target-{t}",
        prompt=f"Please set the counter to {t}.",
        split="eval" if t % 4 == 0 else "train",
        data={"target": t},
    )
    for t in range(40, 80)
]

EXAMPLES = [
    Example(
        title="golden: read, then add the difference",
        task_id="target-42",
        seed=1,
        actions=(
            format_tool_call("read_counter", {}),
            format_tool_call("add", {"amount": 24}),
            "Done.",
        ),
        reward=1.0,
    ),
    Example(
        title="failing: adds a guess without reading",
        task_id="target-42",
        seed=1,
        actions=(format_tool_call("add", {"amount": 25}), "Done."),
        reward=0.0,
    ),
]

SCENARIO = Scenario(
    id="demo/Counter-v1",
    doc=__doc__ or "",
    system_prompt="You operate a tally counter with tools. Do what the user asks.",
    tools=[read_counter, add],
    tasks=TASKS,
    sandbox=Counter,
    reward=reward,
    evaluate=evaluate,
    oracle=oracle,
    max_turns=5,
    examples=EXAMPLES,
)
