"""Hotel bookings desk: change or cancel a customer's booking by the policy, after verifying them.

## Description
A customer writes to a hotel chain's reservations desk to cancel a booking or to move it to
other dates. The opening message says only what they want. The agent must ASK the customer for
what it needs (the booking reference, the full name on the booking, the lead guest's date of
birth; then the reason and refund preference for a cancellation, or the new check-in date for
a change), verify their identity, look the booking up, apply the policy in the system prompt
(eligibility rules, cancellation fees, change fees, hotel credit), make exactly one decision
(cancel, change, or decline citing the rule) and tell the customer the outcome with the exact
amounts. Each task takes 4-6 assistant turns and 2-3 customer replies.

## Tools
All five are seeded-sandbox tools (pattern: seeded stateful sandbox). Every tool but
``decline_request`` refuses a booking that has not been verified in this conversation.

| tool | effect | does |
|---|---|---|
| `verify_identity(booking_ref, full_name, date_of_birth)` | write | checks the lead guest; logged |
| `lookup_booking(booking_ref)` | read | the booking: rate, nights, price paid, check-in, status |
| `cancel_booking(booking_ref, reason, refund_method, amount)` | write | cancels and pays back |
| `change_booking(booking_ref, new_check_in, fee)` | write | moves the stay, charging `fee` |
| `decline_request(booking_ref, rule)` | write | records a refusal citing the policy rule |

## User
A seeded rule-based customer (``Customer``) who holds the hidden facts and reveals each one
only when the agent's message asks for it (keyword matching on the agent's sentences that are
questions or requests): the booking reference, the full name, the date of birth, the reason,
the refund preference (card or credit) or the preferred new check-in date. Asked for several,
it answers all of them in one message. When the agent's message asks for nothing it knows, the
customer ends the conversation if the matter sounds settled (a dollar amount, "cancelled",
"moved" ...) or clearly refused ("cannot", "unable" ...), and otherwise nudges, up to
``PATIENCE`` replies. What it says is fixed by the starting state (so the oracle knows it);
only its wording is drawn from the episode's generator. In identity-failure tasks it gives a
wrong name (the caller is not the lead guest) or a mistaken date of birth.

## Observation
The system prompt (the policy below), the customer's opening message; then tool messages and
the customer's replies (role ``user``).

## Starting state
6-9 guests with seeded names, dates of birth and emails, 1-3 bookings each with a seeded
reference (``HB-`` and four digits), hotel, rate, nights, nightly price and check-in date.
The task fixes the case (which rule decides, which fee applies) and the customer's goal,
reason and preference; the seed fixes every reference, name, date and price, so nothing can be
memorised.

## Reward
Computed on the final state and on the agent's last message, as components that sum to it:
``resolution`` (0.75) when the first identity check was the right one and exactly the right
write was made (the right cancellation with the right amount, reason and method; the right new
date and fee; or a refusal citing the first rule that applies); ``told`` (0.25), only with the
resolution, when the last message states the amount the customer gets back (cancellation) or
pays (change), or the reason for a refusal, and no dollar figure that is not the booking's;
``side_effects``: -0.25 for every other write (extra identity checks, cancellations, changes,
refusals). A do-nothing agent earns 0; the oracle earns 1.0.

## Evaluation
Independent of the reward's code: applies the policy to the *initial* state to build the
expected final database, compares state hashes, and checks the last message for the expected
figure (or the refusal's reason) with its own parser.

## Episode end
The customer ends the conversation (terminated: the matter is settled or refused, or its
patience ran out), or 12 assistant turns pass (truncated).

## Example
See ``EXAMPLES`` at the bottom: a golden cancellation of a standard-rate booking within 14
days taken as hotel credit (reward 1.0), and one that credits the full price, ignoring the fee
(reward -0.25: no resolution, and the wrong cancellation is a side effect).

## Version history
- v1: first release.
"""

from __future__ import annotations

import copy
import re
from datetime import date, timedelta
from typing import Any, Literal

import numpy as np

from scenarios.booking_caller import OPENINGS, Customer
from simenv import Example, Outcome, Sandbox, Scenario, Task, ToolError, tool
from simenv.parsing import format_tool_call

TODAY = date(2025, 6, 2)
RULES = ("identity_not_verified", "already_cancelled", "saver_rate", "too_late")
MIN_DAYS_BEFORE = 3
FREE_CANCEL_DAYS = 14
CHANGE_FEE_STANDARD = 40
CREDIT_BONUS = 10  # percent
REASONS = ("change_of_plans", "illness", "travel_disruption", "work")
CASES = (
    "cancel_flexible_early",
    "cancel_flexible_late",
    "cancel_standard_early",
    "cancel_standard_late",
    "change_flexible",
    "change_standard",
    "saver_rate",
    "too_late",
    "already_cancelled",
    "wrong_date_of_birth",
    "wrong_name",
)
N_TASKS = 220
EVAL_FRACTION = 0.25
FIRST = (
    "Amara", "Bruno", "Carmen", "Daniel", "Esther", "Farid", "Greta", "Hugo", "Irene", "Jamal",
    "Keiko", "Luis", "Mei", "Nadia", "Oskar", "Paula", "Rahul", "Sofia", "Tomas", "Yara",
)  # fmt: skip
LAST = (
    "Andersen", "Bianchi", "Costa", "Dimitrov", "Eriksen", "Fernandes", "Gruber", "Hansen",
    "Iqbal", "Kaur", "Laine", "Moreau", "Nakamura", "Olsen", "Petrov", "Quist", "Reyes", "Sato",
)  # fmt: skip
HOTELS = (
    "Harbour Hotel Lisbon", "Harbour Hotel Porto", "Harbour Hotel Seville", "Harbour Hotel Nice",
    "Harbour Hotel Genoa", "Harbour Hotel Split", "Harbour Hotel Valletta",
)  # fmt: skip
RATES = ("flexible", "standard", "saver")

SYSTEM_PROMPT = f"""\
You are a reservations agent for Harbour Hotels. Today is {TODAY.isoformat()}. A customer wants
to cancel a booking or change its dates. Help them by this policy, using the tools.

Identity. Before you look up, change or cancel a booking, verify the caller: ask for the
booking reference, the full name on the booking and the lead guest's date of birth
(YYYY-MM-DD), and call verify_identity with exactly what they said. Verify once. If it fails,
do not try other details: decline with rule identity_not_verified.

Eligibility (after looking the booking up; the first rule that applies decides):
1. already_cancelled: a booking whose status is "cancelled" cannot be changed or cancelled.
2. saver_rate: bookings on the "saver" rate are non-refundable and cannot be changed or
   cancelled.
3. too_late: nothing can be changed or cancelled when check-in is fewer than
   {MIN_DAYS_BEFORE} days away (days_until_check_in < {MIN_DAYS_BEFORE}).
If a rule applies, call decline_request with it and tell the customer why.

Cancellation fees (whole dollars; total_paid and nightly_price from the booking):
- flexible rate: free at {FREE_CANCEL_DAYS} or more days before check-in; otherwise one night
  (nightly_price).
- standard rate: one night at {FREE_CANCEL_DAYS} or more days before check-in; otherwise half the
  total, rounded down (total_paid // 2).
The refund is total_paid minus the fee. Ask the customer why they cancel (record it as
change_of_plans, illness, travel_disruption or work) and whether they want the refund on
their card or as hotel credit, which is worth {CREDIT_BONUS}% more: credit = refund +
refund // 10. Pass the amount they get (card refund or credit) to cancel_booking.

Date changes: ask for the new check-in date (at least {MIN_DAYS_BEFORE} days from today); the
number of nights and the price stay the same. The change fee is $0 on the flexible rate and
${CHANGE_FEE_STANDARD} on the standard rate.

Make exactly one decision (cancel, change or decline) on the customer's booking. Then tell the
customer the outcome in one message without calling a tool: for a cancellation the amount they
get back (e.g. "$405 refunded to your card"), for a change the new date and the fee (e.g. "a $40
change fee"), for a refusal the reason."""


# ----------------------------------------------------------------------------- state
class Bookings(Sandbox):
    """Guests, bookings, and every verification, cancellation, change and refusal made."""

    guests: dict[str, dict[str, Any]]
    bookings: dict[str, dict[str, Any]]
    verifications: list[dict[str, Any]]
    cancellations: list[dict[str, Any]]
    changes: list[dict[str, Any]]
    declines: list[dict[str, Any]]

    def setup(self, rng: np.random.Generator, task: Task) -> None:
        self.guests, self.bookings = {}, {}
        self.verifications, self.cancellations, self.changes, self.declines = [], [], [], []
        n_guests = int(rng.integers(6, 10))
        firsts = rng.choice(len(FIRST), size=n_guests, replace=False).tolist()
        refs = (1000 + rng.choice(9000, size=3 * n_guests, replace=False)).tolist()
        for g in range(n_guests):
            first, last = FIRST[firsts[g]], LAST[int(rng.integers(0, len(LAST)))]
            gid = f"G-{100 + g}"
            born = date(1950, 1, 1) + timedelta(days=int(rng.integers(0, 365 * 55)))
            self.guests[gid] = {
                "name": f"{first} {last}",
                "date_of_birth": born.isoformat(),
                "email": f"{first.lower()}.{last.lower()}@example.com",
            }
            for _ in range(int(rng.integers(1, 4))):
                nights, price = int(rng.integers(1, 8)), int(rng.integers(80, 401))
                self.bookings[f"HB-{refs.pop()}"] = {
                    "lead_guest": gid,
                    "hotel": HOTELS[int(rng.integers(0, len(HOTELS)))],
                    "rate": RATES[int(rng.integers(0, 3))],
                    "nights": nights,
                    "nightly_price": price,
                    "total_paid": nights * price,
                    "status": "confirmed",
                    "refunded": 0,
                    "credit_issued": 0,
                    "fees_charged": 0,
                    **_dates(int(rng.integers(0, 121))),
                }
        self._stage(rng, task.data)

    def _stage(self, rng: np.random.Generator, d: dict[str, Any]) -> None:
        """Set the task's booking up as its case says, and fix what the caller will say."""
        ref = list(self.bookings)[d["booking"] % len(self.bookings)]
        booking, case = self.bookings[ref], d["case"]
        guest = self.guests[booking["lead_guest"]]
        if case.startswith(("cancel_", "change_")):
            booking["rate"] = case.split("_")[1]
            late = case.endswith("_late")
            low, high = (
                (MIN_DAYS_BEFORE, FREE_CANCEL_DAYS)
                if late
                else (FREE_CANCEL_DAYS if case.startswith("cancel") else MIN_DAYS_BEFORE, 121)
            )
            booking.update(_dates(int(rng.integers(low, high))))
        elif case == "saver_rate":
            booking["rate"] = "saver"
            booking.update(_dates(int(rng.integers(MIN_DAYS_BEFORE, 121))))
        elif case == "too_late":
            booking["rate"] = RATES[int(rng.integers(0, 2))]
            booking.update(_dates(int(rng.integers(0, MIN_DAYS_BEFORE))))
        elif case == "already_cancelled":
            booking["status"], booking["refunded"] = "cancelled", booking["total_paid"]
        name, born = guest["name"], guest["date_of_birth"]
        if case == "wrong_name":
            others = [g["name"] for g in self.guests.values() if g["name"] != name]
            name = others[int(rng.integers(0, len(others)))]
        elif case == "wrong_date_of_birth":
            slip = int(rng.integers(1, 28)) * (1 if rng.random() < 0.5 else -1)
            born = (date.fromisoformat(born) + timedelta(days=slip)).isoformat()
        shift = int(rng.integers(1, 31)) * (1 if rng.random() < 0.5 else -1)
        new_days = booking["days_until_check_in"] + shift
        if new_days < MIN_DAYS_BEFORE:
            new_days = booking["days_until_check_in"] + abs(shift)
        self._ref = ref
        self._caller = {
            "booking_ref": ref,
            "full_name": name,
            "date_of_birth": born,
            "reason": d["reason"],
            "refund_method": d["refund_method"],
            "new_check_in": _dates(new_days)["check_in"],
        }


def _dates(days_until: int) -> dict[str, Any]:
    check_in = TODAY + timedelta(days=days_until)
    return {"check_in": check_in.isoformat(), "days_until_check_in": days_until}


# ----------------------------------------------------------------------------- tools
def _booking(desk: Bookings, booking_ref: str, *, verified: bool = True) -> dict[str, Any]:
    ref = booking_ref.strip().upper()
    if ref not in desk.bookings:
        raise ToolError(
            f"No booking {booking_ref!r}. References look like 'HB-4821'; ask the customer to "
            "read it again."
        )
    if verified and not any(v["booking_ref"] == ref and v["ok"] for v in desk.verifications):
        raise ToolError(
            f"Booking {ref} is not verified in this conversation. Ask the customer for the full "
            "name on the booking and the lead guest's date of birth, then call verify_identity."
        )
    return desk.bookings[ref]


def _confirmed(booking: dict[str, Any], ref: str) -> None:
    if booking["status"] != "confirmed":
        raise ToolError(f"Booking {ref} is {booking['status']}; it cannot be changed.")


@tool(effect="write")
def verify_identity(desk: Bookings, booking_ref: str, full_name: str, date_of_birth: str) -> str:
    """Verify that the caller is the lead guest of a booking. Every attempt is recorded.

    Args:
        booking_ref: The booking reference the customer gave, e.g. "HB-4821".
        full_name: The full name on the booking, as the customer said it.
        date_of_birth: The lead guest's date of birth as the customer said it, YYYY-MM-DD.

    Returns:
        Whether the details match the booking.
    """
    ref = booking_ref.strip().upper()
    guest = desk.guests[_booking(desk, ref, verified=False)["lead_guest"]]
    ok = (
        " ".join(full_name.lower().split()) == guest["name"].lower()
        and date_of_birth.strip() == guest["date_of_birth"]
    )
    desk.verifications.append({"booking_ref": ref, "ok": ok})
    if ok:
        return f"Verified: the caller is the lead guest of {ref}."
    return f"Not verified: the name or date of birth does not match booking {ref}."


@tool
def lookup_booking(desk: Bookings, booking_ref: str) -> dict[str, Any]:
    """Look up a verified booking.

    Args:
        booking_ref: The booking reference, e.g. "HB-4821".

    Returns:
        The booking: lead guest's name, hotel, rate ("flexible", "standard" or "saver"), nights,
        nightly_price and total_paid (dollars), check_in (YYYY-MM-DD), days_until_check_in,
        status ("confirmed" or "cancelled"), and what was refunded, credited or charged since.
    """
    booking = _booking(desk, booking_ref)
    name = desk.guests[booking["lead_guest"]]["name"]
    shown = {k: v for k, v in booking.items() if k != "lead_guest"}
    return {"booking_ref": booking_ref.strip().upper(), "lead_guest_name": name, **shown}


@tool(effect="write")
def cancel_booking(
    desk: Bookings,
    booking_ref: str,
    reason: Literal["change_of_plans", "illness", "travel_disruption", "work"],
    refund_method: Literal["card", "credit"],
    amount: int,
) -> str:
    """Cancel a verified booking and pay back what the policy allows. Check the policy first.

    Args:
        booking_ref: The booking to cancel, e.g. "HB-4821".
        reason: Why the customer cancels, as they told you.
        refund_method: "card" (refund to the original card) or "credit" (hotel credit).
        amount: Whole dollars the customer gets: the card refund, or the credit.
    """
    ref = booking_ref.strip().upper()
    booking = _booking(desk, ref)
    _confirmed(booking, ref)
    paid = booking["total_paid"]
    most = paid if refund_method == "card" else paid + paid * CREDIT_BONUS // 100
    if not 0 <= amount <= most:
        raise ToolError(f"amount must be between 0 and {most} dollars for a {refund_method} refund")
    booking["status"] = "cancelled"
    booking["refunded" if refund_method == "card" else "credit_issued"] = amount
    desk.cancellations.append(
        {"booking_ref": ref, "reason": reason, "refund_method": refund_method, "amount": amount}
    )
    where = "refunded to the card" if refund_method == "card" else "issued as hotel credit"
    return f"Cancelled {ref}; ${amount} {where}."


@tool(effect="write")
def change_booking(desk: Bookings, booking_ref: str, new_check_in: str, fee: int) -> str:
    """Move a verified booking to a new check-in date (same nights, same price).

    Args:
        booking_ref: The booking to change, e.g. "HB-4821".
        new_check_in: The new check-in date the customer asked for, YYYY-MM-DD.
        fee: The change fee in whole dollars, by the policy.
    """
    ref = booking_ref.strip().upper()
    booking = _booking(desk, ref)
    _confirmed(booking, ref)
    try:
        when = date.fromisoformat(new_check_in.strip())
    except ValueError:
        raise ToolError(f"new_check_in {new_check_in!r} is not a date; use YYYY-MM-DD") from None
    days = (when - TODAY).days
    if days < MIN_DAYS_BEFORE:
        raise ToolError(f"the new check-in must be at least {MIN_DAYS_BEFORE} days from today")
    if fee < 0:
        raise ToolError("fee must be zero or more dollars")
    booking.update(_dates(days))
    booking["fees_charged"] += fee
    desk.changes.append({"booking_ref": ref, "new_check_in": when.isoformat(), "fee": fee})
    return f"Moved {ref} to check in on {when.isoformat()}; fee ${fee} charged."


@tool(effect="write")
def decline_request(
    desk: Bookings,
    booking_ref: str,
    rule: Literal["identity_not_verified", "already_cancelled", "saver_rate", "too_late"],
) -> str:
    """Record that the customer's request is refused, citing the policy rule that decides it.

    Args:
        booking_ref: The booking the customer asked about.
        rule: The first rule of the policy that applies.
    """
    ref = booking_ref.strip().upper()
    _booking(desk, ref, verified=False)
    desk.declines.append({"booking_ref": ref, "rule": rule})
    return f"Refusal recorded for {ref} ({rule})."


# ----------------------------------------------------------------------------- the customer
def customer(task: Task, desk: Bookings, rng: np.random.Generator) -> Customer:
    """The user of an episode: the caller the starting state describes."""
    return Customer(task.data["goal"], desk._caller)


# ----------------------------------------------------------------------------- tasks
def make_tasks(n: int = N_TASKS, seed: int = 0) -> list[Task]:
    """``n`` calls cycling through every case; the last quarter is the eval split."""
    rng = np.random.default_rng(seed)
    tasks = []
    for i in range(n):
        case = CASES[i % len(CASES)]
        goal = case.split("_")[0] if case.startswith(("cancel", "change")) else None
        data = {
            "case": case,
            "goal": goal or ("cancel", "change")[int(rng.integers(0, 2))],
            "reason": REASONS[int(rng.integers(0, len(REASONS)))],
            "refund_method": ("card", "credit")[int(rng.integers(0, 2))],
            "booking": int(rng.integers(0, 27)),
            "style": int(rng.integers(0, 3)),
        }
        split: Literal["train", "eval"] = "eval" if i >= n * (1 - EVAL_FRACTION) else "train"
        tasks.append(Task(id=f"booking-{i:03d}", prompt="", split=split, data=data))
    return tasks


def render_prompt(task: Task, desk: Bookings) -> str:
    return OPENINGS[task.data["goal"]][task.data["style"]]


# ----------------------------------------------------------------------------- scoring
def decide(desk: Bookings, goal: str) -> dict[str, Any]:
    """The policy, applied to a state: what the agent should do and say.

    Returns ``check`` (the identity check's record), ``write`` (``{"cancel" | "change" |
    "decline": record}``, the one write), ``tell`` (the dollar figure the customer must hear;
    ``None`` for a refusal) and ``figures`` (every dollar figure that is true to say).
    """
    caller, ref = desk._caller, desk._ref
    booking = desk.bookings[ref]
    guest = desk.guests[booking["lead_guest"]]
    ok = (caller["full_name"], caller["date_of_birth"]) == (guest["name"], guest["date_of_birth"])
    gold: dict[str, Any] = {
        "check": {"booking_ref": ref, "ok": ok},
        "tell": None,
        "figures": {booking["total_paid"], booking["nightly_price"]},
    }
    blocked = {
        "identity_not_verified": not ok,
        "already_cancelled": booking["status"] == "cancelled",
        "saver_rate": booking["rate"] == "saver",
        "too_late": booking["days_until_check_in"] < MIN_DAYS_BEFORE,
    }
    for rule in RULES:
        if blocked[rule]:
            return gold | {"write": {"decline": {"booking_ref": ref, "rule": rule}}}
    early = booking["days_until_check_in"] >= FREE_CANCEL_DAYS
    if goal == "change":
        fee = CHANGE_FEE_STANDARD if booking["rate"] == "standard" else 0
        record = {"booking_ref": ref, "new_check_in": caller["new_check_in"], "fee": fee}
        return gold | {"write": {"change": record}, "tell": fee, "figures": {*gold["figures"], fee}}
    if booking["rate"] == "flexible":
        fee = 0 if early else booking["nightly_price"]
    else:
        fee = booking["nightly_price"] if early else booking["total_paid"] // 2
    refund = booking["total_paid"] - fee
    amount = refund + refund // 10 if caller["refund_method"] == "credit" else refund
    record = {
        "booking_ref": ref,
        "reason": caller["reason"],
        "refund_method": caller["refund_method"],
        "amount": amount,
    }
    figures = {*gold["figures"], fee, refund, amount}
    return gold | {"write": {"cancel": record}, "tell": amount, "figures": figures}


REFUSAL_WORDS = {
    "identity_not_verified": r"verif|identity",
    "already_cancelled": r"already",
    "saver_rate": r"saver|non-?refundable",
    "too_late": r"\b(3|three) days\b|\b72 hours\b|too (close|late|near|soon)",
}
"""What a refusal must say, per rule (the reward's and the evaluation's shared vocabulary)."""
_DOLLARS = re.compile(r"\$\s?(\d[\d,]*)")
_FREE = re.compile(r"\bno (change )?fee\b|\bfree\b|\bno charge\b")


def _told(text: str, gold: dict[str, Any]) -> bool:
    """Whether ``text`` says what ``gold`` needs, and no dollar figure that is not true."""
    text = text.lower()
    stated = {int(m.replace(",", "")) for m in _DOLLARS.findall(text)}
    if not stated <= gold["figures"]:
        return False
    if gold["tell"] is None:
        (record,) = gold["write"].values()
        return bool(re.search(REFUSAL_WORDS[record["rule"]], text))
    return gold["tell"] in stated or (gold["tell"] == 0 and bool(_FREE.search(text)))


def reward(o: Outcome) -> dict[str, float]:
    start: Bookings = o.initial
    gold = decide(start, o.task.data["goal"])
    final: Bookings = o.final
    writes = (
        [{"cancel": r} for r in final.cancellations]
        + [{"change": r} for r in final.changes]
        + [{"decline": r} for r in final.declines]
    )
    right = final.verifications[:1] == [gold["check"]] and gold["write"] in writes
    extra = len(writes) - (1 if right else 0) + max(0, len(final.verifications) - 1)
    return {
        "resolution": 0.75 if right else 0.0,
        "told": 0.25 if right and _told(o.answer, gold) else 0.0,
        "side_effects": -0.25 * extra,
    }


def evaluate(o: Outcome) -> bool:
    """Rebuild the expected final database from the initial one; compare; read the answer."""
    expected: Bookings = copy.deepcopy(o.initial)
    said, ref = expected._caller, expected._ref
    booking = expected.bookings[ref]
    lead = expected.guests[booking["lead_guest"]]
    verified = said["full_name"] == lead["name"] and said["date_of_birth"] == lead["date_of_birth"]
    expected.verifications.append({"booking_ref": ref, "ok": verified})
    goal, days, rate = o.task.data["goal"], booking["days_until_check_in"], booking["rate"]
    text = o.answer.lower()
    figures = {int(x.replace(",", "")) for x in re.findall(r"\$\s?([0-9][0-9,]*)", text)}
    allowed = {booking["total_paid"], booking["nightly_price"]}
    refusal = [
        rule
        for rule, applies in (
            ("identity_not_verified", not verified),
            ("already_cancelled", booking["status"] != "confirmed"),
            ("saver_rate", rate == "saver"),
            ("too_late", days < MIN_DAYS_BEFORE),
        )
        if applies
    ]
    if refusal:
        expected.declines.append({"booking_ref": ref, "rule": refusal[0]})
        said_ok = re.search(REFUSAL_WORDS[refusal[0]], text) is not None and figures <= allowed
    elif goal == "cancel":
        kept = {
            ("flexible", True): 0,
            ("flexible", False): booking["nightly_price"],
            ("standard", True): booking["nightly_price"],
            ("standard", False): booking["total_paid"] // 2,
        }[rate, days >= FREE_CANCEL_DAYS]
        card = said["refund_method"] == "card"
        back = booking["total_paid"] - kept
        allowed |= {kept, back}
        back = back if card else back * (100 + CREDIT_BONUS) // 100
        booking["status"] = "cancelled"
        booking["refunded" if card else "credit_issued"] = back
        expected.cancellations.append(
            {
                "booking_ref": ref,
                "reason": said["reason"],
                "refund_method": said["refund_method"],
                "amount": back,
            }
        )
        said_ok = back in figures and figures <= allowed | {back}
    else:
        fee = {"flexible": 0, "standard": CHANGE_FEE_STANDARD}[rate]
        new = date.fromisoformat(said["new_check_in"])
        booking["check_in"], booking["days_until_check_in"] = new.isoformat(), (new - TODAY).days
        booking["fees_charged"] += fee
        expected.changes.append({"booking_ref": ref, "new_check_in": new.isoformat(), "fee": fee})
        free = fee == 0 and re.search(r"no (change )?fee|free|no charge", text) is not None
        said_ok = (fee in figures or free) and figures <= allowed | {fee}
    return expected.state_hash() == o.final.state_hash() and said_ok


# ----------------------------------------------------------------------------- oracle
ASK_IDENTITY = (
    "I can help with that. First I need to verify your identity: could you give me your "
    "booking reference, the full name on the booking and the lead guest's date of birth?"
)
ASK_CANCEL = (
    "Thank you, you're verified. Why are you cancelling, and would you like the refund on your "
    "card or as hotel credit, which is worth 10% more?"
)
ASK_CHANGE = "Thank you, you're verified. Which date would you like to move your check-in to?"
REFUSALS = {
    "identity_not_verified": "I'm sorry, but I couldn't verify your identity with those "
    "details, so I can't make any changes to this booking.",
    "already_cancelled": "I'm sorry, but booking {ref} has already been cancelled, so it can't "
    "be changed or cancelled again.",
    "saver_rate": "I'm sorry, but booking {ref} is on our non-refundable saver rate, so it can't "
    "be changed or cancelled.",
    "too_late": "I'm sorry, but check-in is less than 3 days away, so booking {ref} can no "
    "longer be changed or cancelled.",
}


def oracle(task: Task, desk: Bookings) -> list[str]:
    """Gold turns. The customer's replies are fixed by the starting state and by these questions
    (only their wording is drawn), so a fixed list of turns holds the whole conversation: each
    tool call uses what the customer has just said in reply to the turn before it."""
    said, ref = desk._caller, desk._ref
    gold = decide(desk, task.data["goal"])
    verify = {k: said[k] for k in ("booking_ref", "full_name", "date_of_birth")}
    turns = [ASK_IDENTITY, format_tool_call("verify_identity", verify)]
    ((kind, record),) = gold["write"].items()
    if kind == "decline":
        if record["rule"] != "identity_not_verified":
            turns.append(format_tool_call("lookup_booking", {"booking_ref": ref}))
        turns.append(format_tool_call("decline_request", record))
        return [*turns, REFUSALS[record["rule"]].format(ref=ref)]
    turns.append(format_tool_call("lookup_booking", {"booking_ref": ref}))
    if kind == "change":
        turns += [ASK_CHANGE, format_tool_call("change_booking", record)]
        fee = f"The change fee is ${record['fee']}." if record["fee"] else "There is no change fee."
        return [
            *turns,
            f"Done: I've moved booking {ref} to check in on {record['new_check_in']}. {fee}",
        ]
    turns += [ASK_CANCEL, format_tool_call("cancel_booking", record)]
    where = "refunded to your card" if record["refund_method"] == "card" else "in hotel credit"
    return [*turns, f"Booking {ref} is cancelled. You get ${record['amount']} {where}."]


TASKS = make_tasks()

_GOLDEN_START = (
    ASK_IDENTITY,
    format_tool_call(
        "verify_identity",
        {"booking_ref": "HB-2937", "full_name": "Oskar Eriksen", "date_of_birth": "1958-04-04"},
    ),
    format_tool_call("lookup_booking", {"booking_ref": "HB-2937"}),
    ASK_CANCEL,
)
_CANCEL = {"booking_ref": "HB-2937", "reason": "travel_disruption", "refund_method": "credit"}
EXAMPLES = (
    Example(
        title="golden: 6 nights on the standard rate ($1,248), 12 days out: half kept as the fee, "
        "the $624 refund taken as $686 of hotel credit",
        task_id="booking-003",
        seed=7,
        actions=(
            *_GOLDEN_START,
            format_tool_call("cancel_booking", {**_CANCEL, "amount": 686}),
            "Booking HB-2937 is cancelled. You get $686 in hotel credit.",
        ),
        reward=1.0,
    ),
    Example(
        title="failing: credits the full $1,248 plus 10%, ignoring the late-cancellation fee",
        task_id="booking-003",
        seed=7,
        actions=(
            *_GOLDEN_START,
            format_tool_call("cancel_booking", {**_CANCEL, "amount": 1372}),
            "Booking HB-2937 is cancelled. You get $1372 in hotel credit.",
        ),
        reward=-0.25,
    ),
)

SCENARIO = Scenario(
    id="service/Bookings-v1",
    doc=__doc__ or "",
    system_prompt=SYSTEM_PROMPT,
    sandbox=Bookings,
    tools=[verify_identity, lookup_booking, cancel_booking, change_booking, decline_request],
    tasks=TASKS,
    render_prompt=render_prompt,
    reward=reward,
    evaluate=evaluate,
    oracle=oracle,
    user=customer,
    max_turns=12,
    examples=EXAMPLES,
)
