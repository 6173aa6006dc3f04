"""Seeded rule-based users and LLM users, and the checks that cover users.

``test/Desk-v1`` (tests/user_scenarios.py): a caller who wants an order cancelled and gives its
id only when asked. The LLM user runs the real tiny HF model (built in code) through a cassette
in ``tmp_path``; the negative tests break one property on purpose (a user that leaks its facts
or its instructions, a user that draws from module ``random``) and the check must fail.
"""

from __future__ import annotations

import json
import random
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from user_scenarios import bank_scenario, customer, desk_scenario

import simenv
import simenv.checks
from simenv import Episode, InfraError, ScenarioError, Task
from simenv.checks.rewards import _user_leak
from simenv.parsing import format_tool_call
from simenv.rollouts.policies import HF, Null, Oracle, Scripted
from simenv.rollouts.recording import coverage, record_scenario
from simenv.tools.replay import Cassette, replay_mode
from simenv.users import (
    STOP,
    LLMUser,
    Persona,
    PersonaUser,
    ScriptedUser,
    User,
    UserContext,
    hidden,
)


def play(scenario: simenv.Scenario, task_id: str, policy: Any, seed: int = 0) -> Episode:
    env = simenv.make(scenario)
    try:
        return simenv.rollout(env, policy, seed=seed, task_id=task_id)
    finally:
        env.close()


def said(episode: Episode, role: str = "user") -> list[str]:
    return [str(m["content"]) for m in episode.messages if m["role"] == role]


# ----------------------------------------------------------------------------- personas
def test_the_persona_tells_a_fact_only_when_asked() -> None:
    scenario = desk_scenario()
    env = simenv.make(scenario)
    env.reset(seed=4, options={"task_id": "cancel-0"})
    order = env.unwrapped.state.customer_order
    observation, *_ = env.step("Hello! I can help.")
    assert order not in observation[-1]["content"]  # not asked: a nudge
    observation, *_ = env.step("Which order is it? And why do you want to cancel?")
    reply = observation[-1]["content"]
    assert order in reply and "arrived late" in reply  # both asked, both told
    env.close()


def test_oracle_solves_the_persona_and_null_does_not() -> None:
    scenario = desk_scenario()
    for task in scenario.tasks:
        gold = play(scenario, task.id, Oracle(), seed=7)
        assert gold.reward == 1.0 and gold.success and gold.termination == "user_end"
        null = play(scenario, task.id, Null(), seed=7)
        assert null.reward == 0.0 and not null.success
        assert null.termination == "user_end" and null.turns == 2  # patience 1, then it leaves


def test_the_persona_is_deterministic_from_the_seed_and_varies_with_it() -> None:
    scenario = desk_scenario()
    actions = ["Hi.", "What is your order number?"]
    a = play(scenario, "cancel-1", Scripted(actions), seed=1)
    b = play(scenario, "cancel-1", Scripted(actions), seed=1)
    assert a.messages == b.messages
    told = {said(play(scenario, "cancel-1", Scripted(actions), seed=s))[-1] for s in range(6)}
    assert len(told) > 1  # other seeds, other orders (and wordings)


def test_a_persona_from_task_data() -> None:
    data = {
        "persona": {
            "facts": {"booking ref": {"value": "BK-4417", "asked_by": ["booking", "ref"]}},
            "goals": [
                {"done_when": ["rebooked"]},
                {"done_when": ["receipt"], "say": "Can you email me a receipt?"},
            ],
            "patience": 0,
        }
    }
    task = Task("t", "I need to rebook my flight.", data=data)
    scenario = desk_scenario(user=PersonaUser, tasks=[task], oracle=None, max_turns=6)
    episode = play(
        scenario,
        "t",
        Scripted(["What's your booking reference?", "You are rebooked.", "Receipt sent."]),
    )
    replies = said(episode)[1:]
    assert "BK-4417" in replies[0] and replies[1] == "Can you email me a receipt?"
    assert episode.termination == "user_end" and episode.turns == 3
    impatient = play(scenario, "t", Null())
    assert impatient.turns == 1 and impatient.termination == "user_end"


@pytest.mark.parametrize(
    ("persona", "words"),
    [
        ({"facts": {"id": {"asked_by": "id"}}}, "must be a dict with a 'value'"),
        ({"facts": {"id": {"value": "X-1", "asked_by": []}}}, "non-empty list of strings"),
        ({"facts": {"id": {"value": "X-1", "asked_by": "("}}}, "not a regular expression"),
        ({"goals": [{"say": "more"}]}, "done_when"),
        ({"patience": "two"}, "whole number"),
        ({"mood": "angry"}, "unknown fields \\['mood'\\]"),
    ],
)
def test_a_malformed_persona_names_the_field(persona: Any, words: str) -> None:
    task = Task("t", "Hello", data={"persona": persona})
    with pytest.raises(ScenarioError, match=words):
        PersonaUser(task, None, np.random.default_rng(0))


def test_a_task_without_a_persona_says_how_to_give_one() -> None:
    with pytest.raises(ScenarioError, match=r"PersonaUser\.factory"):
        PersonaUser(Task("t", "Hello"), None, np.random.default_rng(0))


# ----------------------------------------------------------------------------- LLM users
INSTRUCTIONS = "You are Dana. You want the balance of your checking account. Account: checking."


def llm_scenario(policy: Any, cassette: Cassette, **overrides: Any) -> simenv.Scenario:
    """The bank fixture's first task, its user played by ``policy`` from its instructions."""
    base = bank_scenario()
    task = base.task("multi_turn_base_0")
    task = Task(task.id, task.prompt, data={**task.data, "instructions": INSTRUCTIONS})
    fields: dict[str, Any] = {
        "tasks": [task],
        "user": LLMUser.factory(policy, cassette),
        "turn_reward": None,
        "reward": lambda o: float("1250" in o.answer),
        "evaluate": lambda o: "1250" in o.answer,
        "oracle": lambda t, s: [
            format_tool_call("balance", {"account": "checking"}),
            "Your checking balance is 1250.",
            "Anything else?",
        ],
        "max_turns": 4,
    }
    fields.update(overrides)
    return bank_scenario(**fields)


class Gone:
    """The live model is gone: any call to it fails the test."""

    def act(self, conversations: Any) -> list[Any]:
        raise AssertionError("the live user model was called during replay")

    def describe(self) -> dict[str, Any]:
        return {"name": "gone"}


@pytest.fixture(scope="module")
def tiny_hf() -> HF:
    from trainer.models import build_tiny

    model, tokenizer = build_tiny(seed=0)
    return HF(model.eval(), tokenizer, max_new_tokens=6, seed=1)


def test_an_llm_user_recorded_once_replays_identically_with_the_model_gone(
    tiny_hf: HF, tmp_path: Path
) -> None:
    path = tmp_path / "users.json"
    live = llm_scenario(tiny_hf, Cassette(path, miss="infra"))
    report = record_scenario(live)
    assert report.episodes == 1 and json.loads(path.read_text())["entries"]
    with replay_mode("record"):
        recorded = play(live, "multi_turn_base_0", Oracle())
    assert recorded.valid and len(said(recorded)) >= 2  # the model spoke for the user
    replayed = play(
        llm_scenario(Gone(), Cassette(path, miss="infra")), "multi_turn_base_0", Oracle()
    )
    assert replayed.valid and replayed.messages == recorded.messages
    entry = json.loads(path.read_text())["entries"][0]
    assert entry["tool"] == "user" and entry["arguments"]["messages"][0]["role"] == "system"
    assert INSTRUCTIONS in entry["arguments"]["messages"][0]["content"]
    assert all(INSTRUCTIONS not in m["content"] for m in replayed.messages)


def test_an_llm_user_replay_miss_voids_the_episode_and_names_the_nearest(
    tiny_hf: HF, tmp_path: Path
) -> None:
    path = tmp_path / "users.json"
    record_scenario(llm_scenario(tiny_hf, Cassette(path, miss="infra")))
    replayed = llm_scenario(Gone(), Cassette(path, miss="infra"))
    other = play(replayed, "multi_turn_base_0", Scripted(["I do not know, sorry."]))
    assert not other.valid and other.termination == "infra_error"
    assert "no recorded response for user(" in (other.error or "")
    assert "nearest recorded call" in (other.error or "") and "simenv record" in (other.error or "")


def test_the_stop_token_ends_the_conversation(tmp_path: Path) -> None:
    # any simenv policy can play the user: here a fixed script (its turn 0 is the opening)
    policy = Scripted(["(the opening)", "What about savings?", f"Thanks! {STOP}"])
    with replay_mode("record"):
        episode = play(
            llm_scenario(policy, Cassette(tmp_path / "u.json")), "multi_turn_base_0", Oracle()
        )
    assert said(episode)[1:] == ["What about savings?"]
    assert episode.termination == "user_end" and episode.turns == 3


def test_an_llm_user_needs_instructions_and_a_cassette(tmp_path: Path) -> None:
    factory = LLMUser.factory(Gone(), Cassette(tmp_path / "u.json"))
    with pytest.raises(ScenarioError, match=r"hidden instructions as a string in data\['instr"):
        factory(Task("t", "Hi"), None, np.random.default_rng(0))
    with pytest.raises(ScenarioError, match=r"needs a simenv\.tools\.replay\.Cassette"):
        LLMUser.factory(Gone(), tmp_path / "u.json")  # type: ignore[arg-type]


def test_the_replay_check_covers_the_llm_user(tiny_hf: HF, tmp_path: Path) -> None:
    path = tmp_path / "users.json"
    record_scenario(llm_scenario(tiny_hf, Cassette(path, miss="infra")))
    replayed = llm_scenario(Gone(), Cassette(path, miss="infra"))
    assert coverage(replayed).complete
    result = simenv.checks.check(replayed, only=["replay"]).results[0]
    assert result.status == "pass", result.message
    # negative: a conversation the oracle has now but not when recorded
    changed = llm_scenario(
        Gone(),
        Cassette(path, miss="infra"),
        oracle=lambda t, s: ["Hello, how can I help?", "Your checking balance is 1250."],
    )
    result = simenv.checks.check(changed, only=["replay"]).results[0]
    assert result.status == "fail" and "user(" in result.message


# ----------------------------------------------------------------------------- checks
def test_simenv_check_passes_the_persona_scenario() -> None:
    report = simenv.checks.check(desk_scenario(), fast=True)
    failed = [r for r in report.results if r.status == "fail"]
    assert failed == [], failed


def test_the_hidden_texts_of_a_persona() -> None:
    env = simenv.make(desk_scenario())
    env.reset(seed=0, options={"task_id": "cancel-0"})
    texts = {h.what: h for h in hidden(env.unwrapped.user)}
    assert texts["fact 'order id'"].text == env.unwrapped.state.customer_order
    assert texts["fact 'order id'"].asked_by and not texts["hidden instructions"].asked_by
    assert hidden(None) == [] and hidden(ScriptedUser(bank_scenario().tasks[0])) == []
    env.close()


class Blurting(PersonaUser):
    """Tells its order id to whoever speaks, asked or not: a leak."""

    def reply(self, context: UserContext) -> str | None:
        return f"My order is {self.persona.facts[0].value}."


class Confessing(PersonaUser):
    """Reads its hidden instructions out: a leak."""

    def reply(self, context: UserContext) -> str | None:
        return self.persona.instructions


@pytest.mark.parametrize(
    ("user", "words"),
    [(Blurting, "fact 'order id'"), (Confessing, "hidden instructions")],
)
def test_the_leak_check_fails_on_a_leaking_user(user: type[PersonaUser], words: str) -> None:
    def factory(task: Task, state: Any, rng: np.random.Generator) -> PersonaUser:
        return user(task, state, rng, persona=customer(task, state))

    result = simenv.checks.check(desk_scenario(user=factory), only=["leaks"], fast=True)
    assert result.results[0].status == "fail"
    assert words in result.results[0].message and "user message" in result.results[0].message


def test_the_leak_check_passes_a_fact_told_after_it_was_asked() -> None:
    result = simenv.checks.check(desk_scenario(), only=["leaks"], fast=True).results[0]
    assert result.status == "pass", result.message
    env = simenv.make(desk_scenario())
    env.reset(seed=0, options={"task_id": "cancel-0"})
    obs, *_ = env.step("What is your order number?")
    told = env.unwrapped.state.customer_order
    assert told in obs[-1]["content"]
    env.close()
    episode = Episode.from_json(env.unwrapped.episode().to_json())
    assert _user_leak(episode, hidden(env.unwrapped.user), "") is None
    asked_later = [m for m in episode.messages if m["role"] != "assistant"]
    assert _user_leak(replace(episode, messages=tuple(asked_later)), hidden(env.unwrapped.user), "")


def test_the_determinism_check_fails_on_a_user_that_draws_from_module_random() -> None:
    class Moody(User):
        def reply(self, context: UserContext) -> str | None:
            return None if context.user_turn > 3 else f"hmm {random.random()}"

    result = simenv.checks.check(
        bank_scenario(user=lambda t, s, r: Moody()), only=["determinism"], fast=True
    ).results[0]
    assert result.status == "fail"
    assert "the user replied differently" in result.message and "context.rng" in result.message


def test_the_null_agent_check_fails_when_a_user_pays_for_nothing() -> None:
    def generous(o: simenv.Outcome) -> float:
        return 1.0 if o.termination == "user_end" else 0.0

    result = simenv.checks.check(
        desk_scenario(reward=generous), only=["reward"], fast=True
    ).results[0]
    assert result.status == "fail" and "do-nothing agent earned 1.0" in result.message


def test_a_user_cannot_report_infra_errors_as_text() -> None:
    class Flaky(User):
        def reply(self, context: UserContext) -> str | None:
            raise InfraError("user model timed out")

    episode = play(desk_scenario(user=lambda t, s, r: Flaky()), "cancel-0", Null())
    assert not episode.valid and "timed out" in (episode.error or "")


def test_persona_type_is_validated() -> None:
    with pytest.raises(ScenarioError, match="patience must be 0 or more"):
        Persona(patience=-1)
    factory = PersonaUser.factory(lambda task, state: "not a persona")  # type: ignore[arg-type,return-value]
    with pytest.raises(ScenarioError, match=r"must return a simenv\.users\.Persona"):
        factory(Task("t", "p"), None, np.random.default_rng(0))
