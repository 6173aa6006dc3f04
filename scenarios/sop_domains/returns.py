"""Returns authorisation: lookups plus stateful writes (refund, replacement, escalation).

Four read-only lookups and three write tools. The procedure decides the outcome *and* the one
write it needs (none for a denial); the evaluation checks the decision fields and that exactly
the expected write was made, on the episode's final state. :func:`decide` computes both.
"""

from __future__ import annotations

import random
from typing import Any

from scenarios.sop_domains.common import spec, split_of

NAME = "returns_authorisation"
SCENARIO_ID = "sop/ReturnsAuth-v1"
N_TASKS = 240
SEED = 37
WINDOW_DAYS = {"standard": 30, "plus": 45, "vip": 60}
WRONG_ITEM_WINDOW = 90
RESTOCKING = {"electronics": 0.15}
SUPERVISOR_LIMIT = 500.0
REASONS = ("damaged", "defective", "wrong_item", "no_longer_needed", "arrived_late")
ISSUE_REASONS = ("damaged", "defective")

SOP = """
Returns Merchandise Authorisation (RMA) - Standard Operating Procedure RT-09 (rev. 3)

1. PURPOSE AND ORDER OF WORK
An RMA agent decides every return request: refund, replacement, denial, or escalation to a
specialist queue, and then carries the decision out with the tools. Apply the sections in
order; the first section that reaches a decision ends the review. Carry out exactly one action
for the decision (a denial needs no action), then report the decision.

2. LOOKUPS
- get_order(order_id): item category, price paid, days since delivery, final-sale flag.
- get_customer(customer_id): loyalty tier (standard, plus, vip), returns in the last 90 days,
  fraud watch flag.
- get_inspection(rma_id): the photo review result (none, inconclusive, confirms_issue).
- check_stock(order_id): whether a replacement unit is in stock.

3. ACTIONS
- issue_refund(order_id, amount): refunds the amount (dollars and cents).
- ship_replacement(order_id): ships a replacement unit at no charge.
- escalate_case(rma_id, queue): hands the case to the fraud_review or supervisor queue.

4. RISK SCREEN
4.1 Customers on fraud watch, and customers with 5 or more returns in the last 90 days, are
    escalated to the fraud_review queue (decision escalate, refund_amount 0). Nothing else is
    reviewed.

5. EVIDENCE FOR DAMAGED OR DEFECTIVE ITEMS
5.1 A damaged or defective claim needs photo evidence. No photos (none): deny.
5.2 Inconclusive photos: escalate to the supervisor queue (refund_amount 0).
5.3 Photos that confirm the issue: continue.

6. ELIGIBILITY
6.1 Perishable items can only be returned when they arrived damaged (with confirmed photos);
    every other perishable return is denied. Perishables are never replaced: refund them.
6.2 Final-sale items can only be returned for damaged, defective or wrong_item reasons;
    other reasons are denied.
6.3 The return window counts days since delivery: 30 days for standard customers, 45 for plus,
    60 for vip. Outside the window the return is denied, except wrong_item returns, which are
    accepted up to 90 days after delivery for every tier.

7. RESOLUTION
7.1 If the customer asked for a replacement and a unit is in stock (and the item is not
    perishable), ship a replacement: decision replacement, refund_amount 0.
7.2 Otherwise refund. The refund is the price paid, minus a restocking fee of 15% of the price
    for electronics returned as no_longer_needed or arrived_late. vip customers never pay the
    restocking fee. Round the refund to cents.
7.3 Refunds above 500.00 need a supervisor: escalate to the supervisor queue instead of
    refunding (decision escalate, refund_amount 0).

8. OUTPUT
decision (refund, replacement, deny or escalate) and refund_amount (the amount refunded; 0
unless the decision is refund).
"""

TOOLSPECS = [
    spec("get_order", "An order: item category, price paid, days since delivery and whether it "
         "was a final sale.", order_id=("string", "The order id, e.g. ORD-204377.")),
    spec("get_customer", "A customer: loyalty tier, returns in the last 90 days, fraud watch.",
         customer_id=("string", "The customer id, e.g. CUS-55120.")),
    spec("get_inspection", "The photo review of a return request.",
         rma_id=("string", "The RMA id, e.g. RMA-31007.")),
    spec("check_stock", "Whether a replacement unit for the order's item is in stock.",
         order_id=("string", "The order id, e.g. ORD-204377.")),
    spec("issue_refund", "Refund money on an order. Irreversible: check the procedure first.",
         order_id=("string", "The order to refund."),
         amount=("number", "Dollars and cents to refund, e.g. 84.15.")),
    spec("ship_replacement", "Ship a replacement unit for an order at no charge.",
         order_id=("string", "The order to replace.")),
    spec("escalate_case", "Hand the return request to a specialist queue.",
         rma_id=("string", "The RMA id."),
         queue=("string", "fraud_review or supervisor.")),
]  # fmt: skip
TOOLSPECS[-1]["toolSpec"]["inputSchema"]["json"]["properties"]["queue"]["enum"] = [
    "fraud_review",
    "supervisor",
]

MAPPING = f"""
id: {SCENARIO_ID}
task_id_column: rma_id
split_column: split
answer: either
tools:
  get_order:
    keys: [order_id]
    returns: [item_category, price, days_since_delivery, final_sale]
  get_customer:
    keys: [customer_id]
    returns: [loyalty_tier, returns_last_90_days, fraud_watch]
  get_inspection:
    keys: [rma_id]
    returns: [photo_evidence]
  check_stock:
    keys: [order_id]
    returns: [replacement_in_stock]
  issue_refund:
    effect: write
    keys: [order_id]
    expect: expected_refund
  ship_replacement:
    effect: write
    keys: [order_id]
    expect: expected_replacement
  escalate_case:
    effect: write
    keys: [rma_id]
    expect: expected_escalation
outputs:
  decision: "refund, replacement, deny or escalate"
  refund_amount: "The amount refunded; 0 unless the decision is refund."
"""

INPUTS = ("rma_id", "order_id", "customer_id", "return_reason", "preferred_resolution")
OUTPUTS = ("decision", "refund_amount")
TOOL_COLUMNS = (
    "item_category", "price", "days_since_delivery", "final_sale", "loyalty_tier",
    "returns_last_90_days", "fraud_watch", "photo_evidence", "replacement_in_stock",
)  # fmt: skip
WRITES = ("expected_refund", "expected_replacement", "expected_escalation")


def decide(r: dict[str, Any]) -> dict[str, Any]:
    """The SOP applied to one row: gold outputs and the expected write (one column each)."""
    none: dict[str, Any] = {w: None for w in WRITES}

    def escalate(queue: str) -> dict[str, Any]:
        call = {"rma_id": r["rma_id"], "queue": queue}
        return {**none, "decision": "escalate", "refund_amount": 0, "expected_escalation": call}

    deny = {**none, "decision": "deny", "refund_amount": 0}
    if r["fraud_watch"] or r["returns_last_90_days"] >= 5:
        return escalate("fraud_review")
    reason = r["return_reason"]
    if reason in ISSUE_REASONS:
        if r["photo_evidence"] == "none":
            return deny
        if r["photo_evidence"] == "inconclusive":
            return escalate("supervisor")
    perishable = r["item_category"] == "perishable"
    if perishable and reason != "damaged":
        return deny
    if r["final_sale"] and reason not in (*ISSUE_REASONS, "wrong_item"):
        return deny
    window = WRONG_ITEM_WINDOW if reason == "wrong_item" else WINDOW_DAYS[r["loyalty_tier"]]
    if r["days_since_delivery"] > window:
        return deny
    if r["preferred_resolution"] == "replacement" and r["replacement_in_stock"] and not perishable:
        call = {"order_id": r["order_id"]}
        return {**none, "decision": "replacement", "refund_amount": 0, "expected_replacement": call}
    fee = 0.0
    if reason in ("no_longer_needed", "arrived_late") and r["loyalty_tier"] != "vip":
        fee = RESTOCKING.get(r["item_category"], 0.0) * r["price"]
    amount = round(r["price"] - fee, 2)
    if amount > SUPERVISOR_LIMIT:
        return escalate("supervisor")
    refund = {"order_id": r["order_id"], "amount": amount}
    return {**none, "decision": "refund", "refund_amount": amount, "expected_refund": refund}


def make_rows(n: int = N_TASKS, seed: int = SEED) -> list[dict[str, Any]]:
    """``n`` seeded return requests with their gold outputs and expected writes."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        category = rng.choices(("electronics", "apparel", "home", "perishable"), (4, 3, 3, 1))[0]
        r: dict[str, Any] = {
            "rma_id": f"RMA-{31000 + 11 * i + rng.randint(0, 9)}",
            "order_id": f"ORD-{204000 + 41 * i + rng.randint(0, 30)}",
            "customer_id": f"CUS-{55000 + 17 * i + rng.randint(0, 12)}",
            "return_reason": rng.choice(REASONS),
            "preferred_resolution": rng.choice(("refund", "replacement")),
            "item_category": category,
            "price": round(rng.choice((rng.uniform(8, 120), rng.uniform(40, 400),
                                       rng.uniform(300, 900))), 2),
            "days_since_delivery": rng.choice((rng.randint(1, 30), rng.randint(1, 30),
                                               rng.randint(1, 30), rng.randint(25, 100))),
            "final_sale": rng.random() < 0.12,
            "loyalty_tier": rng.choices(("standard", "plus", "vip"), (5, 3, 2))[0],
            "returns_last_90_days": rng.choices((0, 1, 2, 3, 5, 7), (6, 5, 3, 2, 1, 0.5))[0],
            "fraud_watch": rng.random() < 0.06,
            "photo_evidence": rng.choices(("none", "inconclusive", "confirms_issue"),
                                          (1, 1, 5))[0],
            "replacement_in_stock": rng.random() < 0.7,
            "split": split_of(i, n),
        }  # fmt: skip
        rows.append({**r, **decide(r)})
    return rows
