"""Support desk: settle one refund request by the refund policy, and nothing else.

## Description
A customer writes to the support desk asking for their money back on one order. The agent looks
the customer and the order up, applies the refund policy in the system prompt, and either issues
the refund (with the right amount) or records a denial citing the rule that applies. Each
request needs 3-5 turns: identify the customer, find the order (by id, or by the item's name
through the customer's order list), decide, act, answer.

## Tools
All four are seeded-sandbox tools (pattern: seeded stateful sandbox).

| tool | effect | does |
|---|---|---|
| `find_customer(email)` | read | the customer's id, name, tier and order ids |
| `list_orders(customer_id)` | read | the customer's orders (id, item, status, total) |
| `lookup_order(order_id)` | read | one order in full (owner, status, total, age, refunded) |
| `issue_refund(order_id, amount, reason)` | write | refunds dollars (`damaged` / `unwanted`) |
| `deny_refund(order_id, rule)` | write | records a denial citing the rule that applies |

## Observation
The system prompt (the policy below) and the customer's message; then tool messages.

## Starting state
5-8 customers with seeded names, emails and tiers, 2-3 orders each with seeded items, totals
and ages. The task fixes who writes, about which order, and what kind of case it is (eligible,
or which rule blocks it); the seed fixes every number, so the amounts and ages differ per seed
and cannot be memorised.

## Reward
Computed on the final state, as components that sum to the reward:
``resolution`` is 1.0 when exactly the right write was made on the right order (the right
refund amount and reason, or a denial citing the first rule that applies), else 0;
``side_effects`` is -0.25 for every other write (extra refunds or denials, other orders).
A do-nothing agent earns 0; the oracle earns 1.0.

## Evaluation
Independent of the reward's code: applies the policy to the *initial* state to derive the
expected final state, and compares it with the final state (equal state hashes = success).

## Episode end
The agent answers without a tool call (terminated), or 10 turns pass (truncated).

## Example
See ``EXAMPLES`` at the bottom: a golden transcript (reward 1.0) and one that refunds the full
price of an unwanted item instead of deducting the restocking fee (reward 0.0).

## Version history
- v1: first release.
"""

from __future__ import annotations

import copy
from typing import Any, Literal

import numpy as np

from simenv import Example, Outcome, Sandbox, Scenario, Task, ToolError, tool
from simenv.parsing import format_tool_call

WINDOW_DAYS = {"standard": 30, "gold": 60}
RESTOCKING_FEE = 0.10
RULE_ORDER = ("not_owner", "already_refunded", "not_delivered", "outside_window")
CASES = (
    "damaged",
    "unwanted",
    "gold_late",
    "not_owner",
    "already_refunded",
    "not_delivered",
    "outside_window",
)
N_TASKS = 140
EVAL_FRACTION = 0.25
FIRST = (
    "Ana", "Ben", "Chloe", "Dev", "Elif", "Femi", "Grace", "Hiro", "Ines", "Jonas", "Kai",
    "Lena", "Marta", "Noor", "Omar", "Priya", "Quinn", "Rosa", "Sven", "Tariq", "Uma", "Vik",
)  # fmt: skip
LAST = (
    "Alvarez", "Brown", "Chen", "Dubois", "Evans", "Fischer", "Garcia", "Haddad", "Ito",
    "Jensen", "Kowalski", "Lopez", "Mensah", "Novak", "Okafor", "Patel", "Rossi", "Silva",
)  # fmt: skip
ITEMS = (
    "desk lamp", "kettle", "backpack", "headphones", "yoga mat", "coffee grinder", "blender",
    "rain jacket", "monitor stand", "water bottle", "toaster", "bike light", "keyboard",
    "phone case", "umbrella", "sleeping bag", "office chair", "frying pan",
)  # fmt: skip

MIN_CUSTOMERS, MAX_CUSTOMERS = 5, 8
MIN_ORDERS, MAX_ORDERS = 2, 3
_HIGHS = np.array(
    [MAX_CUSTOMERS - MIN_CUSTOMERS + 1]
    + [
        high
        for c in range(MAX_CUSTOMERS)
        for high in (
            (len(FIRST) - c, len(LAST), 10, len(ITEMS), MAX_ORDERS - MIN_ORDERS + 1)
            + (468, 27) * MAX_ORDERS
        )
    ]
)
"""Exclusive upper bound of every number ``Desk.setup`` draws, in the order it uses them."""
_STRIDE = 5 + 2 * MAX_ORDERS

SYSTEM_PROMPT = """\
You are a support agent for an online shop. Settle the customer's refund request using the tools.

Refund policy (apply the rules in this order; the first one that applies decides):
1. not_owner: the order must belong to the customer who writes (match them by email).
2. already_refunded: an order that was already refunded (refunded > 0) cannot be refunded again.
3. not_delivered: only orders with status "delivered" can be refunded.
4. outside_window: the request must come within 30 days of delivery (days_since_delivery),
   or within 60 days for customers of the "gold" tier.
If a rule applies, call deny_refund with that rule. Otherwise call issue_refund:
- reason "damaged": refund the full total;
- reason "unwanted": refund the total minus a 10% restocking fee, i.e. total - floor(total / 10).
Make exactly one decision, on the order the customer asked about, then reply to the customer
briefly without calling a tool."""


# ----------------------------------------------------------------------------- state
class Desk(Sandbox):
    """Customers, orders, and the refunds and denials made so far."""

    customers: dict[str, dict[str, Any]]
    orders: dict[str, dict[str, Any]]
    refunds: list[dict[str, Any]]
    denials: list[dict[str, Any]]

    def setup(self, rng: np.random.Generator, task: Task) -> None:
        # One numpy call draws every number of the state (see _HIGHS), the rest is plain Python.
        v = rng.integers(0, _HIGHS).tolist()
        self.customers, self.orders, self.refunds, self.denials = {}, {}, [], []
        orders = self.orders
        firsts = list(FIRST)
        for c in range(MIN_CUSTOMERS + v[0]):
            at = 1 + c * _STRIDE
            first, last, gold, item, extra = v[at : at + 5]
            first_name, last_name = firsts.pop(first), LAST[last]
            cid = f"C-{100 + c}"
            self.customers[cid] = {
                "name": f"{first_name} {last_name}",
                "email": f"{first_name.lower()}.{last_name.lower()}@example.com",
                "tier": "gold" if gold < 3 else "standard",
            }
            for j in range(MIN_ORDERS + extra):
                orders[f"O-{1000 + len(orders)}"] = {
                    "customer_id": cid,
                    "item": ITEMS[(item + 5 * j) % len(ITEMS)],
                    "status": "delivered",
                    "total": 12 + v[at + 5 + 2 * j],
                    "days_since_delivery": 1 + v[at + 6 + 2 * j],
                    "refunded": 0,
                }
        self._stage(rng, task.data)

    def _stage(self, rng: np.random.Generator, d: dict[str, Any]) -> None:
        """Make the task's customer write about the task's order, set up as its case says."""
        ids = list(self.customers)
        writer = ids[d["writer"] % len(ids)]
        owner = writer
        if d["case"] == "not_owner":
            owner = ids[(d["writer"] + 1 + d["other"] % (len(ids) - 1)) % len(ids)]
        owned = [o for o, v in self.orders.items() if v["customer_id"] == owner]
        order = self.orders[owned[d["order"] % len(owned)]]
        tier = self.customers[writer]["tier"]
        if d["case"] == "gold_late":
            self.customers[writer]["tier"] = tier = "gold"
            order["days_since_delivery"] = int(rng.integers(31, 61))
        elif d["case"] == "outside_window":
            order["days_since_delivery"] = int(rng.integers(WINDOW_DAYS[tier] + 1, 120))
        elif d["case"] == "not_delivered":
            order["status"] = "shipped"
            order["days_since_delivery"] = None
        elif d["case"] == "already_refunded":
            order["refunded"] = order["total"]
        self._writer, self._order_id = writer, owned[d["order"] % len(owned)]


# ----------------------------------------------------------------------------- tools
def _order(desk: Desk, order_id: str) -> dict[str, Any]:
    if order_id not in desk.orders:
        raise ToolError(f"No order {order_id!r}. Order ids look like 'O-1003'; check the id.")
    return desk.orders[order_id]


@tool
def find_customer(desk: Desk, email: str) -> dict[str, Any]:
    """Find a customer by email address.

    Args:
        email: The customer's email address, exactly as they gave it.

    Returns:
        The customer's id, name, tier ("standard" or "gold") and the ids of their orders.
    """
    for cid, c in desk.customers.items():
        if c["email"] == email.strip().lower():
            orders = [o for o, v in desk.orders.items() if v["customer_id"] == cid]
            return {"customer_id": cid, "name": c["name"], "tier": c["tier"], "orders": orders}
    raise ToolError(f"No customer with email {email!r}. Use the address the customer wrote from.")


@tool
def list_orders(desk: Desk, customer_id: str) -> list[dict[str, Any]]:
    """List a customer's orders.

    Args:
        customer_id: The customer id from find_customer, e.g. "C-104".

    Returns:
        One entry per order: order_id, item, status and total.
    """
    if customer_id not in desk.customers:
        raise ToolError(f"No customer {customer_id!r}. Get the id from find_customer first.")
    return [
        {"order_id": o, "item": v["item"], "status": v["status"], "total": v["total"]}
        for o, v in desk.orders.items()
        if v["customer_id"] == customer_id
    ]


@tool
def lookup_order(desk: Desk, order_id: str) -> dict[str, Any]:
    """Look up one order in full.

    Args:
        order_id: The order id, e.g. "O-1004".

    Returns:
        The order: customer_id, item, status, total (dollars), days_since_delivery (null if not
        delivered) and refunded (dollars already refunded).
    """
    return {"order_id": order_id, **_order(desk, order_id)}


@tool(effect="write")
def issue_refund(
    desk: Desk, order_id: str, amount: int, reason: Literal["damaged", "unwanted"]
) -> str:
    """Refund money on an order. Check the refund policy before calling this.

    Args:
        order_id: The order to refund, e.g. "O-1004".
        amount: Whole dollars to refund; at most the order total minus what was already refunded.
        reason: "damaged" if the item arrived damaged or faulty, "unwanted" otherwise.
    """
    order = _order(desk, order_id)
    if amount <= 0:
        raise ToolError("amount must be a positive number of dollars")
    if amount > order["total"] - order["refunded"]:
        raise ToolError(
            f"amount {amount} is more than the refundable {order['total'] - order['refunded']}"
        )
    order["refunded"] += amount
    desk.refunds.append({"order_id": order_id, "amount": amount, "reason": reason})
    return f"Refunded ${amount} on {order_id}."


@tool(effect="write")
def deny_refund(
    desk: Desk,
    order_id: str,
    rule: Literal["not_owner", "already_refunded", "not_delivered", "outside_window"],
) -> str:
    """Record that a refund request is denied, citing the policy rule that applies.

    Args:
        order_id: The order the customer asked about.
        rule: The first rule of the refund policy that applies.
    """
    _order(desk, order_id)
    desk.denials.append({"order_id": order_id, "rule": rule})
    return f"Denial recorded for {order_id} ({rule})."


# ----------------------------------------------------------------------------- tasks
def make_tasks(n: int = N_TASKS, seed: int = 0) -> list[Task]:
    """``n`` requests cycling through every case, phrased several ways; the last quarter is eval."""
    rng = np.random.default_rng(seed)
    tasks = []
    for i in range(n):
        case = CASES[i % len(CASES)]
        reason = (
            "damaged"
            if case == "damaged"
            else (
                "unwanted"
                if case == "unwanted"
                else ("damaged", "unwanted")[int(rng.integers(0, 2))]
            )
        )
        by_item = bool(rng.random() < 0.4)
        data = {
            "case": case,
            "reason": reason,
            "by_item": by_item,
            "writer": int(rng.integers(0, 8)),
            "order": int(rng.integers(0, 4)),
            "other": int(rng.integers(0, 8)),
            "style": int(rng.integers(0, 3)),
        }
        split: Literal["train", "eval"] = "eval" if i >= n * (1 - EVAL_FRACTION) else "train"
        tasks.append(Task(id=f"refund-{i:03d}", prompt="", split=split, data=data))
    return tasks


def render_prompt(task: Task, desk: Desk) -> str:
    d = task.data
    email = desk.customers[desk._writer]["email"]
    order = desk.orders[desk._order_id]
    what = (
        f"the {order['item']} I ordered"
        if d["by_item"] and order["customer_id"] == desk._writer
        else f"order {desk._order_id}"
    )
    why = "it arrived broken" if d["reason"] == "damaged" else "I don't need it anymore"
    styles = (
        f"Hi, I'm writing from {email}. I'd like a refund for {what}: {why}.",
        f"Hello support, {what} - {why}. Can I get my money back? My email is {email}.",
        f"From: {email}\nRefund request for {what}. Reason: {why}. Thanks!",
    )
    return styles[d["style"]]


# ----------------------------------------------------------------------------- scoring
def decide(
    customers: dict[str, Any], orders: dict[str, Any], writer: str, order_id: str, reason: str
) -> dict[str, Any]:
    """The policy, applied to a state: the one write the agent should make."""
    order = orders[order_id]
    checks = {
        "not_owner": order["customer_id"] != writer,
        "already_refunded": order["refunded"] > 0,
        "not_delivered": order["status"] != "delivered",
        "outside_window": order["status"] == "delivered"
        and order["days_since_delivery"] > WINDOW_DAYS[customers[writer]["tier"]],
    }
    for rule in RULE_ORDER:
        if checks[rule]:
            return {"deny": {"order_id": order_id, "rule": rule}}
    fee = order["total"] // 10 if reason == "unwanted" else 0
    return {"refund": {"order_id": order_id, "amount": order["total"] - fee, "reason": reason}}


def reward(o: Outcome) -> dict[str, float]:
    start: Desk = o.initial
    gold = decide(
        start.customers, start.orders, start._writer, start._order_id, o.task.data["reason"]
    )
    writes = [("refund", r) for r in o.final.refunds] + [("deny", r) for r in o.final.denials]
    ((kind, target),) = gold.items()
    right = [w for w in writes if w == (kind, target)]
    return {
        "resolution": 1.0 if right else 0.0,
        "side_effects": 0.25 * -(len(writes) - min(len(right), 1)),
    }


def evaluate(o: Outcome) -> bool:
    expected: Desk = copy.deepcopy(o.initial)
    order = expected.orders[expected._order_id]
    tier = expected.customers[expected._writer]["tier"]
    refundable = (
        order["customer_id"] == expected._writer
        and order["refunded"] == 0
        and order["status"] == "delivered"
        and order["days_since_delivery"] <= WINDOW_DAYS[tier]
    )
    if refundable:
        amount = order["total"]
        if o.task.data["reason"] == "unwanted":
            amount -= int(order["total"] * RESTOCKING_FEE + 1e-9)
        order["refunded"] += amount
        expected.refunds.append(
            {"order_id": expected._order_id, "amount": amount, "reason": o.task.data["reason"]}
        )
    else:
        blocking = next(
            r
            for r, hit in (
                ("not_owner", order["customer_id"] != expected._writer),
                ("already_refunded", order["refunded"] > 0),
                ("not_delivered", order["status"] != "delivered"),
                ("outside_window", True),
            )
            if hit
        )
        expected.denials.append({"order_id": expected._order_id, "rule": blocking})
    return bool(expected.state_hash() == o.final.state_hash())


def oracle(task: Task, desk: Desk) -> list[str]:
    email = desk.customers[desk._writer]["email"]
    turns = [format_tool_call("find_customer", {"email": email})]
    if task.data["by_item"] and desk.orders[desk._order_id]["customer_id"] == desk._writer:
        turns.append(format_tool_call("list_orders", {"customer_id": desk._writer}))
    turns.append(format_tool_call("lookup_order", {"order_id": desk._order_id}))
    gold = decide(desk.customers, desk.orders, desk._writer, desk._order_id, task.data["reason"])
    if "refund" in gold:
        turns.append(format_tool_call("issue_refund", gold["refund"]))
        turns.append(f"Done: I refunded ${gold['refund']['amount']} on {desk._order_id}.")
    else:
        turns.append(format_tool_call("deny_refund", gold["deny"]))
        turns.append(f"I'm sorry, {desk._order_id} can't be refunded ({gold['deny']['rule']}).")
    return turns


TASKS = make_tasks()

_GOLDEN_START = (
    format_tool_call("find_customer", {"email": "uma.alvarez@example.com"}),
    format_tool_call("list_orders", {"customer_id": "C-101"}),
    format_tool_call("lookup_order", {"order_id": "O-1004"}),
)
EXAMPLES = (
    Example(
        title="golden: an unwanted kettle (total $230) refunded minus the $23 fee",
        task_id="refund-001",
        seed=7,
        actions=(
            *_GOLDEN_START,
            format_tool_call(
                "issue_refund", {"order_id": "O-1004", "amount": 207, "reason": "unwanted"}
            ),
            "Done: I refunded $207 on O-1004.",
        ),
        reward=1.0,
    ),
    Example(
        title="failing: refunds the full $230, forgetting the restocking fee",
        task_id="refund-001",
        seed=7,
        actions=(
            *_GOLDEN_START,
            format_tool_call(
                "issue_refund", {"order_id": "O-1004", "amount": 230, "reason": "unwanted"}
            ),
            "Done: I refunded $230 on O-1004.",
        ),
        reward=-0.25,
    ),
)

SCENARIO = Scenario(
    id="support/Refunds-v1",
    doc=__doc__ or "",
    system_prompt=SYSTEM_PROMPT,
    sandbox=Desk,
    tools=[find_customer, list_orders, lookup_order, issue_refund, deny_refund],
    tasks=TASKS,
    render_prompt=render_prompt,
    reward=reward,
    evaluate=evaluate,
    oracle=oracle,
    max_turns=10,
    examples=EXAMPLES,
)
