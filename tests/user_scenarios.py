"""Conversational scenarios for the user tests, built through simenv's public API only.

``test/Bank-v1`` wraps an external multi-turn benchmark's task shape (BFCL multi-turn: an
``initial_config``, a ``question`` list with one user instruction per turn, a ``ground_truth``
list of function-call strings per turn) read from ``tests/data/multi_turn_bank.json``, as a
user of simenv would: each instruction becomes a scripted user turn whose check is BFCL's own
pair of checks, state-based (the accounts equal those the ground truth leaves after that turn)
and response-based (the ground truth's calls were made while the agent worked on it), plus the
answer the instruction asks for, if any. The reward is the per-instruction scores
(:func:`simenv.users.instruction_reward`); the evaluation, apart from it, replays the whole
ground truth and compares the final accounts and every answer.
"""

from __future__ import annotations

import ast
import copy
import json
from pathlib import Path
from typing import Any

import numpy as np

from simenv import Outcome, Sandbox, Scenario, Task, ToolError, tool
from simenv.parsing import format_tool_call
from simenv.users import (
    Fact,
    Goal,
    Persona,
    PersonaUser,
    ScriptedUser,
    instruction_reward,
    scripted_task,
)

DATA = Path(__file__).parent / "data" / "multi_turn_bank.json"


class Bank(Sandbox):
    """The accounts of the task's ``initial_config`` (the benchmark's starting state)."""

    def setup(self, rng: np.random.Generator, task: Task) -> None:
        self.accounts: dict[str, int] = dict(task.data["initial_config"]["BankAPI"]["accounts"])


@tool
def balance(bank: Bank, account: str) -> int:
    """The balance of one account.

    Args:
        account: The account name, e.g. "checking".
    """
    if account not in bank.accounts:
        raise ToolError(f"no account {account!r}; accounts: {sorted(bank.accounts)}")
    return bank.accounts[account]


@tool(effect="write")
def transfer(bank: Bank, source: str, target: str, amount: int) -> str:
    """Move money between two accounts.

    Args:
        source: The account to take from.
        target: The account to put it in.
        amount: How much, a positive whole number.
    """
    for name in (source, target):
        if name not in bank.accounts:
            raise ToolError(f"no account {name!r}; accounts: {sorted(bank.accounts)}")
    if amount <= 0 or bank.accounts[source] < amount:
        raise ToolError(f"cannot move {amount} from {source} (balance {bank.accounts[source]})")
    bank.accounts[source] -= amount
    bank.accounts[target] += amount
    return "ok"


@tool(effect="write")
def open_account(bank: Bank, name: str) -> str:
    """Open a new, empty account.

    Args:
        name: The new account's name.
    """
    if name in bank.accounts:
        raise ToolError(f"account {name!r} exists already")
    bank.accounts[name] = 0
    return "ok"


TOOLS = {"balance": balance, "transfer": transfer, "open_account": open_account}


def parse_call(text: str) -> tuple[str, dict[str, Any]]:
    """BFCL's ground-truth call string ``name(arg='x', n=3)`` as (name, arguments)."""
    node = ast.parse(text, mode="eval").body
    assert isinstance(node, ast.Call) and isinstance(node.func, ast.Name), text
    return node.func.id, {k.arg: ast.literal_eval(k.value) for k in node.keywords if k.arg}


def simulate(accounts: dict[str, int], calls: list[str]) -> dict[str, int]:
    """The accounts after the ground truth's calls (the benchmark's state-based reference)."""
    bank = Bank()
    bank.accounts = copy.deepcopy(accounts)
    for text in calls:
        name, arguments = parse_call(text)
        TOOLS[name].fn(bank=bank, **arguments)
    return bank.accounts


def bank_task(entry: dict[str, Any], split: str = "train") -> Task:
    """One benchmark entry as a scripted task: an instruction and a check per turn."""
    accounts = entry["initial_config"]["BankAPI"]["accounts"]
    turns = []
    for k, (question, truth) in enumerate(
        zip(entry["question"], entry["ground_truth"], strict=True)
    ):
        accounts = simulate(accounts, truth)
        called = [{"name": n, "arguments": a} for n, a in map(parse_call, truth)]
        check: dict[str, Any] = {
            "called": called,
            "state": {f"accounts.{name}": value for name, value in accounts.items()},
        }
        if entry["answers"][k] is not None:
            check["answer_contains"] = entry["answers"][k]
        turns.append({"content": question[0]["content"], "check": check})
    return scripted_task(
        entry["id"],
        turns,
        split=split,  # type: ignore[arg-type]
        data={k: entry[k] for k in ("initial_config", "ground_truth", "answers")},
    )


def oracle(task: Task, state: Any) -> list[Any]:
    """Each turn's ground-truth calls, one per assistant turn, then its answer."""
    plan: list[Any] = []
    for truth, answer in zip(task.data["ground_truth"], task.data["answers"], strict=True):
        plan += [format_tool_call(*parse_call(text)) for text in truth]
        plan.append(f"Done: the result is {answer}." if answer is not None else "Done.")
    return plan


def evaluate(o: Outcome) -> bool:
    """The whole ground truth's final accounts, and every answer the user asked for."""
    start = o.task.data["initial_config"]["BankAPI"]["accounts"]
    final = simulate(start, [c for turn in o.task.data["ground_truth"] for c in turn])
    answers = [
        str(m.get("content") or "")
        for i, m in enumerate(o.messages)
        if m.get("role") == "assistant"
        and (i + 1 == len(o.messages) or o.messages[i + 1].get("role") == "user")
    ]
    wanted = o.task.data["answers"]
    said = len(answers) == len(wanted) and all(
        w is None or str(w) in a for w, a in zip(wanted, answers, strict=True)
    )
    return said and o.final.accounts == final


def bank_scenario(**overrides: Any) -> Scenario:
    """``test/Bank-v1`` over the benchmark fixture (``overrides`` replace Scenario fields)."""
    entries = json.loads(DATA.read_text())
    fields: dict[str, Any] = {
        "id": "test/Bank-v1",
        "system_prompt": "You are a banking assistant. Use the tools, then answer the user.",
        "tools": list(TOOLS.values()),
        "tasks": [bank_task(e, "eval" if i == 2 else "train") for i, e in enumerate(entries)],
        "reward": lambda o: 0.0,
        "turn_reward": instruction_reward,
        "evaluate": evaluate,
        "sandbox": Bank,
        "oracle": oracle,
        "user": ScriptedUser,
        "max_turns": 12,
        "random_state": False,
    }
    fields.update(overrides)
    return Scenario(**fields)


# ----------------------------------------------------------------------------- a persona
class Desk(Sandbox):
    """Eight orders with seeded ids; the customer's is one of them (drawn from the seed)."""

    def setup(self, rng: np.random.Generator, task: Task) -> None:
        ids = [f"O-{int(n)}" for n in rng.choice(np.arange(1000, 9999), size=8, replace=False)]
        self.orders = {i: "open" for i in ids}
        self.customer_order = ids[int(rng.integers(0, 8))]

    def state(self) -> dict[str, Any]:
        return {"orders": self.orders}


@tool(effect="write")
def cancel_order(desk: Desk, order_id: str) -> str:
    """Cancel an order.

    Args:
        order_id: The id the customer gave, e.g. "O-1234".
    """
    if order_id not in desk.orders:
        raise ToolError(f"no order {order_id!r}; ask the customer for the id")
    desk.orders[order_id] = "cancelled"
    return f"order {order_id} cancelled"


def customer(task: Task, desk: Any) -> Persona:
    """The caller: knows their order id and why; wants it cancelled."""
    return Persona(
        facts=(
            Fact("order id", desk.customer_order, (r"order (id|number)", r"which order")),
            Fact("reason", task.data["reason"], (r"\bwhy\b", r"reason")),
        ),
        goals=(Goal(done_when=(r"\bcancell?ed\b",)),),
        patience=1,
        instructions=f"You want order {desk.customer_order} cancelled: {task.data['reason']}.",
    )


def desk_oracle(task: Task, desk: Any) -> list[Any]:
    return [
        "Could you tell me your order id, please?",
        format_tool_call("cancel_order", {"order_id": desk.customer_order}),
        "Your order is cancelled.",
    ]


def desk_reward(o: Outcome) -> float:
    return float(
        o.final.orders[o.final.customer_order] == "cancelled"
        and sum(v == "cancelled" for v in o.final.orders.values()) == 1
    )


def desk_evaluate(o: Outcome) -> bool:
    """The customer's order, and only it, is cancelled; the customer was told."""
    cancelled = [i for i, status in o.final.orders.items() if status == "cancelled"]
    return cancelled == [o.final.customer_order] and "cancel" in o.answer.lower()


def desk_scenario(**overrides: Any) -> Scenario:
    """``test/Desk-v1``: cancel the caller's order; the caller must be asked for its id."""
    reasons = ["it arrived late", "I ordered the wrong size", "I found it cheaper"]
    fields: dict[str, Any] = {
        "id": "test/Desk-v1",
        "system_prompt": "You are a support agent. Ask the customer for what you need.",
        "tools": [cancel_order],
        "tasks": [
            Task(f"cancel-{i}", "Hi, I want to cancel an order.", data={"reason": r})
            for i, r in enumerate(reasons)
        ],
        "reward": desk_reward,
        "evaluate": desk_evaluate,
        "sandbox": Desk,
        "oracle": desk_oracle,
        "user": PersonaUser.factory(customer),
        "max_turns": 8,
    }
    fields.update(overrides)
    return Scenario(**fields)
