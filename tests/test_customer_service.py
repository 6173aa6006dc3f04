"""service/Bookings-v1: the customer-service scenario with a seeded rule-based customer.

Every test plays real episodes through ``simenv.make`` (the customer in the loop), or talks to
the customer the way the environment does, through a ``UserContext``.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import replace

import numpy as np
import pytest

import simenv
import simenv.checks
from scenarios import customer_service as cs
from scenarios.booking_caller import PATIENCE, Customer
from simenv.checks.episodes import comparable
from simenv.parsing import format_tool_call
from simenv.rollouts.policies import Null, Oracle, Scripted
from simenv.users import UserContext

ID = "service/Bookings-v1"


@pytest.fixture(scope="module")
def env() -> simenv.MultiTurnEnv:
    return simenv.make(ID)


def _task(case: str, split: str = "train") -> simenv.Task:
    return next(t for t in cs.TASKS if t.data["case"] == case and t.split == split)


def _start(env, task_id: str, seed: int) -> tuple[cs.Bookings, list[str]]:
    """The starting state and the oracle's turns of an episode."""
    env.reset(seed=seed, options={"task_id": task_id})
    base = env.unwrapped
    return base.initial_state(), base.gold_turns()


def _call(name: str, **arguments) -> str:
    return format_tool_call(name, arguments)


def _replace_call(turns: list[str], name: str, **changes) -> list[str]:
    """The turns with the arguments of the call to ``name`` changed."""
    out = []
    for turn in turns:
        if turn.startswith("<tool_call>") and f'"name": "{name}"' in turn:
            payload = json.loads(turn.removeprefix("<tool_call>").removesuffix("</tool_call>"))
            turn = format_tool_call(name, {**payload["arguments"], **changes})
        out.append(turn)
    return out


def _context(customer: Customer, answer: str, user_turn: int = 0, seed: int = 0) -> UserContext:
    messages = (
        {"role": "system", "content": cs.SYSTEM_PROMPT},
        {"role": "assistant", "content": answer},
    )
    return UserContext(
        task=cs.TASKS[0],
        messages=messages,
        answer=answer,
        turn=1,
        user_turn=user_turn,
        state=None,
        rng=np.random.default_rng(seed),
    )


FACTS = {
    "booking_ref": "HB-4821",
    "full_name": "Mei Nakamura",
    "date_of_birth": "1979-11-23",
    "reason": "illness",
    "refund_method": "credit",
    "new_check_in": "2025-07-14",
}
SPOKEN = {
    "booking_ref": "HB-4821",
    "full_name": "Mei Nakamura",
    "date_of_birth": "1979-11-23",
    "reason": r"ill|doctor",
    "refund_method": r"credit",
    "new_check_in": "2025-07-14",
}


def _revealed(reply: str | None) -> set[str]:
    return {fact for fact, said in SPOKEN.items() if reply and re.search(said, reply)}


# ----------------------------------------------------------------------------- the scenario
def test_registered_with_200_tasks_every_case_in_both_splits() -> None:
    assert ID in simenv.registry()
    scenario = simenv.load_scenario(ID)
    assert scenario is cs.SCENARIO and len(scenario.tasks) >= 200
    for split in ("train", "eval"):
        cases = Counter(t.data["case"] for t in scenario.split(split))
        assert set(cases) == set(cs.CASES), split
    assert len(scenario.split("eval")) == len(scenario.tasks) // 4


def test_oracle_earns_the_ceiling_and_null_nothing_on_every_task(env) -> None:
    for i, task in enumerate(cs.TASKS):
        gold = simenv.rollout(env, Oracle(), seed=i, task_id=task.id)
        assert gold.valid and gold.reward == 1.0 and gold.success, (task.id, gold.reward)
        assert gold.termination == "user_end", task.id
        assert sum(m["role"] == "user" for m in gold.messages) >= 2  # opening + replies
        null = simenv.rollout(env, Null(), seed=i, task_id=task.id)
        assert null.reward == 0.0 and not null.success, (task.id, null.reward)
        assert null.termination == "user_end" and null.turns == 1  # "I can't help": refused


def test_every_oracle_call_uses_what_the_customer_said_before_it(env) -> None:
    for i, task in enumerate(cs.TASKS[:44]):
        episode = simenv.rollout(env, Oracle(), seed=i, task_id=task.id)
        heard = ""
        for message in episode.messages:
            if message["role"] == "user":
                heard += " " + message["content"]
            for call in message.get("tool_calls") or ():
                arguments = json.loads(call["function"]["arguments"])
                for key in ("booking_ref", "full_name", "date_of_birth", "new_check_in"):
                    if key in arguments:
                        assert arguments[key] in heard, (task.id, key)


def test_the_starting_state_varies_with_the_seed_and_hides_the_facts(env) -> None:
    task = _task("cancel_flexible_early")
    refs = set()
    for seed in range(10):
        observation, info = env.reset(seed=seed, options={"task_id": task.id})
        state = env.unwrapped.state
        refs.add(state._ref)
        shown = json.dumps(observation) + json.dumps(info["tools"])
        for fact in ("booking_ref", "full_name", "date_of_birth", "new_check_in"):
            assert state._caller[fact] not in shown, fact
    assert len(refs) == 10


# ----------------------------------------------------------------------------- the customer
def test_customer_reveals_each_fact_only_when_asked() -> None:
    change, cancel = Customer("change", FACTS), Customer("cancel", FACTS)
    assert _revealed(change.reply(_context(change, "Hello! Let me look into this."))) == set()
    asks = {
        "What is your booking reference?": {"booking_ref"},
        "Could you tell me the full name on the booking?": {"full_name"},
        "Please give me the lead guest's date of birth.": {"date_of_birth"},
        "Which date would you like to check in on instead?": {"new_check_in"},
        "May I ask why you want to change it?": {"reason"},
        "Could you give me the booking reference, the name and date of birth?": {
            "booking_ref",
            "full_name",
            "date_of_birth",
        },
    }
    for question, facts in asks.items():
        assert _revealed(change.reply(_context(change, question))) == facts, question
    refund = "Would you like the refund on your card or as hotel credit?"
    assert _revealed(cancel.reply(_context(cancel, refund))) == {"refund_method"}
    # a change has no refund method, a cancellation no new date
    assert _revealed(change.reply(_context(change, refund))) == set()
    assert _revealed(cancel.reply(_context(cancel, "Which new date suits you?"))) == set()


def test_customer_does_not_answer_a_statement_that_names_a_fact() -> None:
    customer = Customer("cancel", FACTS)
    # no question, no request: a nudge that tells nothing
    statement = "Your booking reference is in the confirmation email."
    nudge = customer.reply(_context(customer, statement))
    assert nudge is not None and _revealed(nudge) == set()
    settled = "Cancelled: $300 refunded to your card, not credit."
    assert customer.reply(_context(customer, settled)) is None
    # the date of birth is not a check-in date
    change = Customer("change", FACTS)
    assert _revealed(change.reply(_context(change, "What is your date of birth?"))) == {
        "date_of_birth"
    }


def test_customer_ends_when_settled_or_refused_and_loses_patience_otherwise() -> None:
    customer = Customer("cancel", FACTS)
    for ending in (
        "Booking HB-4821 is cancelled. You get $550 in hotel credit.",
        "I'm sorry, I can't help with that.",
        "I'm unable to change a saver booking.",
    ):
        assert customer.reply(_context(customer, ending)) is None, ending
    nudge = customer.reply(_context(customer, "Let me see.", user_turn=PATIENCE - 1))
    assert nudge is not None and _revealed(nudge) == set()
    assert customer.reply(_context(customer, "Let me see.", user_turn=PATIENCE)) is None


def test_customer_is_deterministic_from_the_generator() -> None:
    customer = Customer("cancel", FACTS)
    ask = "Please give me your booking reference, name and date of birth."
    replies = {customer.reply(_context(customer, ask, seed=s)) for s in range(20)}
    assert all(
        customer.reply(_context(customer, ask, seed=3))
        == customer.reply(_context(customer, ask, seed=3))
        for _ in range(3)
    )
    assert len(replies) > 1  # the wording varies with the seed; the facts do not
    assert all(_revealed(r) == {"booking_ref", "full_name", "date_of_birth"} for r in replies)


def test_same_seed_same_conversation(env) -> None:
    for i, task in enumerate(cs.TASKS[:22]):
        a = simenv.rollout(env, Oracle(), seed=100 + i, task_id=task.id)
        b = simenv.rollout(env, Oracle(), seed=100 + i, task_id=task.id)
        assert comparable(a) == comparable(b)
    users = [
        tuple(
            m["content"]
            for m in simenv.rollout(env, Oracle(), seed=s, task_id="booking-000").messages
            if m["role"] == "user"
        )
        for s in range(8)
    ]
    assert len(set(users)) > 1


# ----------------------------------------------------------------------------- identity
def test_nothing_is_looked_up_or_changed_before_verification(env) -> None:
    task = _task("cancel_flexible_early")
    state, _ = _start(env, task.id, 5)
    ref = state._ref
    before = env.unwrapped.state.state_hash()
    for action in (
        _call("lookup_booking", booking_ref=ref),
        _call("cancel_booking", booking_ref=ref, reason="work", refund_method="card", amount=10),
        _call("change_booking", booking_ref=ref, new_check_in="2025-09-01", fee=0),
    ):
        observation, *_ = env.step(action)
        assert "not verified in this conversation" in observation[-1]["content"]
    assert env.unwrapped.state.state_hash() == before


def test_a_failed_verification_unlocks_nothing_and_only_a_refusal_earns(env) -> None:
    task = _task("wrong_date_of_birth")
    state, gold = _start(env, task.id, 9)
    caller, ref = state._caller, state._ref
    assert (
        caller["date_of_birth"] != state.guests[state.bookings[ref]["lead_guest"]]["date_of_birth"]
    )
    observation, *_ = env.step(gold[1])  # verify with what the caller says
    assert observation[-1]["content"].startswith("Not verified")
    observation, *_ = env.step(_call("lookup_booking", booking_ref=ref))
    assert "not verified" in observation[-1]["content"]
    assert gold[2] == _call("decline_request", booking_ref=ref, rule="identity_not_verified")
    # retrying with other details is a side effect; guessing the right ones is not allowed
    lead = state.guests[state.bookings[ref]["lead_guest"]]
    retry = _call(
        "verify_identity",
        booking_ref=ref,
        full_name=lead["name"],
        date_of_birth=lead["date_of_birth"],
    )
    episode = simenv.rollout(env, Scripted([*gold[:2], retry, *gold[2:]]), seed=9, task_id=task.id)
    assert episode.reward == 0.75 and not episode.success


def test_wrong_name_is_an_identity_failure(env) -> None:
    task = _task("wrong_name")
    state, _ = _start(env, task.id, 4)
    lead = state.guests[state.bookings[state._ref]["lead_guest"]]
    assert state._caller["full_name"] != lead["name"]
    assert state._caller["date_of_birth"] == lead["date_of_birth"]
    episode = simenv.rollout(env, Oracle(), seed=4, task_id=task.id)
    assert episode.success and episode.reward == 1.0
    calls = [c.name for s in episode.steps for c in s.tool_calls]
    assert calls == ["verify_identity", "decline_request"]


# ----------------------------------------------------------------------------- fees
FEES = {
    "cancel_flexible_early": lambda b: 0,
    "cancel_flexible_late": lambda b: b["nightly_price"],
    "cancel_standard_early": lambda b: b["nightly_price"],
    "cancel_standard_late": lambda b: b["total_paid"] // 2,
}


@pytest.mark.parametrize("case", sorted(FEES))
def test_cancellation_fees_and_credit(env, case: str) -> None:
    for seed in range(6):
        task = _task(case)
        state, gold = _start(env, task.id, seed)
        booking = state.bookings[state._ref]
        refund = booking["total_paid"] - FEES[case](booking)
        expected = refund + refund // 10 if task.data["refund_method"] == "credit" else refund
        (cancel,) = [t for t in gold if '"cancel_booking"' in t]
        assert f'"amount": {expected}' in cancel, (case, seed)
        for wrong in (expected - 1, expected + 1, booking["total_paid"]):
            if wrong == expected:
                continue
            bad = _replace_call(gold, "cancel_booking", amount=wrong)
            episode = simenv.rollout(env, Scripted(bad), seed=seed, task_id=task.id)
            # a wrong amount within bounds is a wrong cancellation; one above them is refused
            assert episode.reward <= 0.0 and not episode.success, (case, seed, wrong)


@pytest.mark.parametrize(("case", "fee"), [("change_flexible", 0), ("change_standard", 40)])
def test_change_fees(env, case: str, fee: int) -> None:
    task = _task(case)
    _, gold = _start(env, task.id, 2)
    assert f'"fee": {fee}' in next(t for t in gold if '"change_booking"' in t)
    bad = _replace_call(gold, "change_booking", fee=fee + 40)
    episode = simenv.rollout(env, Scripted(bad), seed=2, task_id=task.id)
    assert episode.reward == -0.25 and not episode.success
    other_day = _replace_call(gold, "change_booking", new_check_in="2025-12-24")
    episode = simenv.rollout(env, Scripted(other_day), seed=2, task_id=task.id)
    assert episode.reward == -0.25 and not episode.success  # not the date the customer asked


# ----------------------------------------------------------------------------- negative cases
@pytest.mark.parametrize("case", ["saver_rate", "too_late", "already_cancelled"])
def test_an_ineligible_booking_is_declined_by_its_rule(env, case: str) -> None:
    task = _task(case)
    state, gold = _start(env, task.id, 3)
    ref = state._ref
    assert gold[-2] == _call("decline_request", booking_ref=ref, rule=case)
    wrong_rule = next(r for r in cs.RULES if r != case)
    episode = simenv.rollout(
        env,
        Scripted(_replace_call(gold, "decline_request", rule=wrong_rule)),
        seed=3,
        task_id=task.id,
    )
    assert episode.reward == -0.25 and not episode.success
    if case != "already_cancelled":  # a cancelled booking cannot be cancelled at all
        cancel = _call(
            "cancel_booking", booking_ref=ref, reason="work", refund_method="card", amount=1
        )
        episode = simenv.rollout(
            env, Scripted([*gold[:3], cancel, "Cancelled: $1 refunded."]), seed=3, task_id=task.id
        )
        assert episode.reward == -0.25 and not episode.success


def test_what_the_agent_tells_the_customer_is_scored(env) -> None:
    task = _task("cancel_standard_early")
    state, gold = _start(env, task.id, 1)
    booking = state.bookings[state._ref]
    right = gold[-1]
    (amount,) = re.findall(r"\$(\d+)", right)
    for told, reward in (
        (right, 1.0),
        (right.replace(f"${amount}", f"${int(amount) + 5}"), 0.75),  # the wrong figure
        ("Your booking is cancelled.", 0.75),  # no figure at all
        (right + " " + " ".join(f"${n}" for n in range(1, 400)), 0.75),  # a spray of figures
        (right + f" Your stay cost ${booking['total_paid']}.", 1.0),  # a true figure is fine
    ):
        episode = simenv.rollout(env, Scripted([*gold[:-1], told]), seed=1, task_id=task.id)
        assert episode.reward == reward, told
        assert episode.success == (reward == 1.0), told


def test_refusals_must_give_the_reason(env) -> None:
    task = _task("saver_rate")
    _, gold = _start(env, task.id, 6)
    vague = simenv.rollout(
        env, Scripted([*gold[:-1], "Sorry, I cannot do that."]), seed=6, task_id=task.id
    )
    assert vague.reward == 0.75 and not vague.success


def test_an_agent_that_never_asks_loses_the_customer_and_earns_nothing(env) -> None:
    episode = simenv.rollout(env, Scripted(["Let me check."] * 12), seed=0, task_id="booking-000")
    assert episode.termination == "user_end" and episode.reward == 0.0
    assert episode.turns == PATIENCE + 1
    replies = [m["content"] for m in episode.messages if m["role"] == "user"][1:]
    assert len(replies) == PATIENCE and not any(re.search(r"HB-\d{4}", r) for r in replies)


def test_the_examples_earn_what_they_state(env) -> None:
    for example in cs.EXAMPLES:
        episode = simenv.rollout(
            env, Scripted(example.actions), seed=example.seed, task_id=example.task_id
        )
        assert episode.reward == example.reward, example.title


# ----------------------------------------------------------------------------- simenv check
def test_simenv_check_passes() -> None:
    report = simenv.checks.check(ID, fast=True)
    assert report.ok, report.summary()
    statuses = {r.check: r.status for r in report.results}
    assert set(statuses.values()) <= {"pass", "skip"} and statuses["replay"] == "skip", statuses


class _Blurts(Customer):
    """Never hangs up, and gives its booking reference with every reply, asked or not: a leak."""

    def reply(self, context: UserContext) -> str | None:
        said = super().reply(context) or "Thanks."
        return f"{said} By the way, my booking is {self.facts['booking_ref']}."


class _Moody(Customer):
    """Words its replies by a generator of its own, not the episode's: not deterministic."""

    def reply(self, context: UserContext) -> str | None:
        return super().reply(replace(context, rng=np.random.default_rng()))


@pytest.mark.parametrize(("kind", "check"), [(_Blurts, "leaks"), (_Moody, "determinism")])
def test_simenv_check_fails_a_broken_customer(kind: type[Customer], check: str) -> None:
    def factory(task: simenv.Task, desk: cs.Bookings, rng: np.random.Generator) -> Customer:
        return kind(task.data["goal"], desk._caller)

    broken = replace(cs.SCENARIO, user=factory)
    (result,) = simenv.checks.check(broken, only=[check], fast=True).results
    assert result.status == "fail", result.message
