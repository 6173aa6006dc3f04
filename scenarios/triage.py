"""Ticket triage: route a support ticket to the right team, at the right priority.

## Description
A ticket arrives from a customer. The agent looks up the customer's plan, then routes the
ticket to the team its topic belongs to, with the priority the plan calls for. Two turns and an
answer; small enough that a model trained from scratch on a CPU learns it in minutes, which is
why the README's main job trains on it.

## Tools
| tool | effect | pattern | does |
|---|---|---|---|
| `get_plan()` | read | seeded sandbox | the sender's plan: `free`, `pro` or `enterprise` |
| `route(team, priority)` | write | seeded sandbox | routes the ticket (ends the episode) |

## Observation
The system prompt (the routing rules) and the ticket; then tool messages.

## Starting state
Nine customers, C-1 to C-9, each with a plan drawn from the seed: the same ticket needs a
different priority under different seeds, so the plan must be looked up, not guessed.

## Reward
``team``: 0.5 when the team is right; ``priority``: 0.5 when the priority is right (a routed
ticket only; unrouted earns 0).

## Evaluation
All or nothing, computed apart from the reward: the routing recorded in the final state must
equal the one derived from the ticket's topic and the plan in the starting state.

## Episode end
A successful ``route`` call (terminated), an answer without a tool call (terminated), or 4 turns
(truncated).

## Example
``get_plan()`` -> ``"enterprise"``, ``route("billing", "high")`` earns 1.0 on a billing
ticket from an enterprise customer; routing it to ``tech`` earns 0.5.

## Version history
- v1: first release.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from simenv import Example, Outcome, Sandbox, Scenario, Task, ToolError, tool
from simenv.parsing import format_tool_call

PLANS = ("free", "pro", "enterprise")
PRIORITY = {"free": "normal", "pro": "normal", "enterprise": "high"}
TOPICS: dict[str, tuple[str, ...]] = {
    "billing": ("invoice", "charge", "refund", "payment", "receipt", "bill"),
    "tech": ("crash", "error", "login", "bug", "password", "outage"),
    "sales": ("upgrade", "pricing", "quote", "demo", "discount", "license"),
}
PHRASES = (
    "Hi, I have a question about my {w}.",
    "There is a problem with the {w}, please help.",
    "Can someone look at my {w} today?",
    "Urgent: {w} issue on my account.",
    "Hello team, my {w} needs attention.",
    "Quick one about a {w}, thanks.",
    "Something is wrong with the {w} again.",
    "Please check the {w} for me.",
)
SYSTEM_PROMPT = """\
Route the ticket. Call get_plan, then route with the team (billing, tech or sales) for the
ticket's topic and the priority: high for the enterprise plan, normal otherwise."""


class Desk(Sandbox):
    """Customers' plans and the routing made."""

    def setup(self, rng: np.random.Generator, task: Task) -> None:
        self.plans = {f"C-{i + 1}": PLANS[int(p)] for i, p in enumerate(rng.integers(0, 3, 9))}
        self.routed: dict[str, str] | None = None
        self._sender = task.data["customer"]


@tool
def get_plan(desk: Desk) -> str:
    """Look up the plan of the customer who sent the ticket.

    Returns:
        The plan: free, pro or enterprise.
    """
    return desk.plans[desk._sender]


@tool(effect="write")
def route(
    desk: Desk, team: Literal["billing", "tech", "sales"], priority: Literal["normal", "high"]
) -> str:
    """Route the ticket. Call it once, after get_plan.

    Args:
        team: The team for the ticket's topic.
        priority: high for enterprise customers, normal otherwise.
    """
    if desk.routed is not None:
        raise ToolError("the ticket is already routed")
    desk.routed = {"team": team, "priority": priority}
    return f"Routed to {team} ({priority})."


def make_tasks() -> list[Task]:
    """Every (topic word, phrasing) pair once; a quarter of the pairs are held out for eval.

    Each word and each phrasing also appears in training, in other pairs: solving an eval
    ticket takes reading the topic word, not remembering the ticket.
    """
    tasks = []
    rng = np.random.default_rng(0)
    for team, words in TOPICS.items():
        for w, word in enumerate(words):
            for p, phrase in enumerate(PHRASES):
                customer = f"C-{int(rng.integers(1, 10))}"
                held_out = (w + p + len(team)) % 4 == 0
                tasks.append(
                    Task(
                        id=f"{team}-{w}-{p}",
                        prompt=f"Ticket from {customer}: {phrase.format(w=word)}\nSubject: {word}",
                        split="eval" if held_out else "train",
                        data={"customer": customer, "team": team},
                    )
                )
    return tasks


def reward(o: Outcome) -> dict[str, float]:
    routed = o.final.routed or {}
    plan = o.initial.plans[o.task.data["customer"]]
    return {
        "team": 0.5 * (routed.get("team") == o.task.data["team"]),
        "priority": 0.5 * (bool(routed) and routed.get("priority") == PRIORITY[plan]),
    }


def evaluate(o: Outcome) -> bool:
    calls = o.called("route")
    if len(calls) != 1:
        return False
    start: Desk = o.initial
    expected = {
        "team": next(t for t, words in TOPICS.items() if any(w in o.task.prompt for w in words)),
        "priority": "high" if start.plans[o.task.data["customer"]] == "enterprise" else "normal",
    }
    return calls[0] == expected == o.final.routed


def oracle(task: Task, desk: Desk) -> list[str]:
    plan = desk.plans[task.data["customer"]]
    return [
        format_tool_call("get_plan", {}),
        format_tool_call("route", {"team": task.data["team"], "priority": PRIORITY[plan]}),
    ]


TASKS = make_tasks()

EXAMPLES = (
    Example(
        title="golden: look up the plan, route to billing",
        task_id="billing-0-0",
        seed=1,
        actions=(
            format_tool_call("get_plan", {}),
            format_tool_call("route", {"team": "billing", "priority": "high"}),
        ),
        reward=1.0,
    ),
    Example(
        title="failing: right priority, wrong team",
        task_id="billing-0-0",
        seed=1,
        actions=(
            format_tool_call("get_plan", {}),
            format_tool_call("route", {"team": "tech", "priority": "high"}),
        ),
        reward=0.5,
    ),
)

SCENARIO = Scenario(
    id="support/Triage-v1",
    doc=__doc__ or "",
    system_prompt=SYSTEM_PROMPT,
    tools=[get_plan, route],
    tasks=TASKS,
    sandbox=Desk,
    reward=reward,
    evaluate=evaluate,
    oracle=oracle,
    max_turns=4,
    finish_tools=["route"],
    examples=EXAMPLES,
)


# ----------------------------------------------------------------------------- TriageSteps-v1
STEPS_DOC = """\
Ticket triage with a reward per turn: Triage-v1, paying 0.2 for looking up the plan first.

## Description
The same sandbox, tools, tasks, evaluation and oracle as ``support/Triage-v1``; only the reward
differs. Part of it is paid on the turn that earns it (a scenario ``turn_reward``), so a policy
learns from the lookup turn itself, not only from the routing at the end.

## Tools
| tool | effect | pattern | does |
|---|---|---|---|
| `get_plan()` | read | seeded sandbox | the sender's plan: `free`, `pro` or `enterprise` |
| `route(team, priority)` | write | seeded sandbox | routes the ticket (ends the episode) |

## Observation
The system prompt (the routing rules) and the ticket; then tool messages.

## Starting state
Nine customers, C-1 to C-9, each with a plan drawn from the seed (as in Triage-v1).

## Reward
Per turn: 0.2 on the turn that makes the episode's first tool call, when that call is a
successful ``get_plan()`` (at most once; every other turn earns 0). At the end: ``team`` 0.4
when the team is right, ``priority`` 0.4 when the priority is right (a routed ticket only). The
total is at most 1.0; ``reward_components`` are ``team``, ``priority`` and ``turns`` (the
per-turn part).

## Evaluation
As Triage-v1: the routing recorded in the final state must equal the one derived from the
ticket's topic and the plan in the starting state. Routing right without the lookup is a
success that earns 0.8, so the success line (``reward_ceiling``) is 0.8.

## Episode end
A successful ``route`` call (terminated), an answer without a tool call (terminated), or 4 turns
(truncated).

## Example
``get_plan()`` -> ``"enterprise"`` earns 0.2 on that turn, then ``route("billing", "high")``
earns 0.8 on a billing ticket from an enterprise customer: 1.0 in all. Routing it to ``tech``
instead earns 0.4 at the end (0.6 in all); routing right without the lookup earns 0.8.

## Version history
- v1: first release.
"""

PLAN_FIRST = 0.2
OUTCOME_SHARE = 1.0 - PLAN_FIRST


def plan_first(o: Outcome) -> float:
    """The turn reward: PLAN_FIRST on the turn whose call opens the episode, if it is get_plan."""
    turn = o.steps[-1]
    if not turn.tool_calls or any(s.tool_calls for s in o.steps[:-1]):
        return 0.0
    call, result = turn.tool_calls[0], turn.tool_results[0]
    return PLAN_FIRST if call.name == "get_plan" and not result.is_error else 0.0


def steps_reward(o: Outcome) -> dict[str, float]:
    return {name: OUTCOME_SHARE * value for name, value in reward(o).items()}


STEPS_EXAMPLES = (
    Example(
        title="golden: look up the plan (0.2), route to billing (0.8)",
        task_id="billing-0-0",
        seed=1,
        actions=(
            format_tool_call("get_plan", {}),
            format_tool_call("route", {"team": "billing", "priority": "high"}),
        ),
        reward=1.0,
    ),
    Example(
        title="routes right without looking the plan up: no turn reward",
        task_id="billing-0-0",
        seed=1,
        actions=(format_tool_call("route", {"team": "billing", "priority": "high"}),),
        reward=0.8,
    ),
    Example(
        title="failing: looks the plan up, then routes to the wrong team",
        task_id="billing-0-0",
        seed=1,
        actions=(
            format_tool_call("get_plan", {}),
            format_tool_call("route", {"team": "tech", "priority": "high"}),
        ),
        reward=0.6,
    ),
)

STEPS_SCENARIO = Scenario(
    id="support/TriageSteps-v1",
    doc=STEPS_DOC,
    system_prompt=SYSTEM_PROMPT,
    tools=[get_plan, route],
    tasks=TASKS,
    sandbox=Desk,
    reward=steps_reward,
    turn_reward=plan_first,
    evaluate=evaluate,
    oracle=oracle,
    max_turns=4,
    finish_tools=["route"],
    reward_ceiling=OUTCOME_SHARE,
    examples=STEPS_EXAMPLES,
)
