"""The user participant: the env loop, the contract, and scripted users.

Most tests run ``test/Bank-v1`` (tests/user_scenarios.py): BFCL-shaped multi-instruction tasks
wrapped through the public API, each instruction a scripted user turn with its own check.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from user_scenarios import bank_scenario, oracle

import simenv
import simenv.checks
from simenv import Episode, InfraError, ScenarioError, Task
from simenv.parsing import format_tool_call
from simenv.rollouts.policies import Null, Oracle, Scripted
from simenv.users import ScriptedUser, User, UserContext, instructions, scripted_task


def play(scenario: simenv.Scenario, task_id: str, policy: Any, seed: int = 0) -> Episode:
    env = simenv.make(scenario)
    try:
        return simenv.rollout(env, policy, seed=seed, task_id=task_id)
    finally:
        env.close()


# ----------------------------------------------------------------------------- the env loop
def test_an_answer_gets_the_next_instruction_as_a_user_message() -> None:
    scenario = bank_scenario()
    env = simenv.make(scenario)
    observation, _ = env.reset(seed=0, options={"task_id": "multi_turn_base_0"})
    assert [m["role"] for m in observation] == ["system", "user"]
    call = format_tool_call("balance", {"account": "checking"})
    observation, reward, terminated, truncated, info = env.step(call)
    assert [m["role"] for m in observation] == ["assistant", "tool"] and not terminated
    observation, reward, terminated, truncated, info = env.step("You have 1250.")
    assert [m["role"] for m in observation] == ["assistant", "user"]
    assert observation[-1] == {
        "role": "user",
        "content": "Please move 200 from checking to savings.",
    }
    assert not terminated and not truncated and info["turn"] == 2
    assert reward == pytest.approx(1 / 3)  # instruction 0 passed: its share of the reward
    env.close()


def test_the_user_ending_terminates_with_user_end() -> None:
    episode = play(bank_scenario(), "multi_turn_base_0", Oracle())
    assert episode.termination == "user_end" and episode.valid
    assert episode.steps[-1].terminated and not episode.steps[-1].truncated
    users = [m["content"] for m in episode.messages if m["role"] == "user"]
    assert users == [i.content for i in instructions(bank_scenario().task("multi_turn_base_0"))]
    answered = [s for s in episode.steps if s.user_message is not None]
    assert [s.user_message for s in answered] == [{"role": "user", "content": c} for c in users[1:]]


def test_oracle_scores_one_and_null_zero_on_every_task_with_per_turn_scores() -> None:
    """The issue's acceptance test: an external benchmark's multi-instruction tasks."""
    scenario = bank_scenario()
    for task in scenario.tasks:
        n = len(instructions(task))
        gold = play(scenario, task.id, Oracle())
        assert gold.reward == pytest.approx(1.0) and gold.success, task.id
        answers = [s.reward for s in gold.steps if not s.tool_calls]
        assert answers == pytest.approx([1 / n] * n)  # one score per user turn
        assert sum(1 for s in gold.steps if s.tool_calls and s.reward) == 0
        null = play(scenario, task.id, Null())
        assert null.reward == 0.0 and not null.success, task.id
        assert [s.reward for s in null.steps] == [0.0] * n  # each instruction answered, unsolved
        assert null.termination == "user_end"


def test_a_half_done_conversation_scores_the_instructions_it_did() -> None:
    scenario = bank_scenario()
    task = scenario.task("multi_turn_base_0")
    plan = oracle(task, None)
    # right on the first instruction, then answers the rest without doing anything
    episode = play(scenario, task.id, Scripted([*plan[:2], "Sure.", "No idea."]))
    assert [s.reward for s in episode.steps] == pytest.approx([0.0, 1 / 3, 0.0, 0.0])
    assert not episode.success


def test_a_finish_tool_ends_the_conversation_without_asking_the_user() -> None:
    asked: list[int] = []

    class Counting(ScriptedUser):
        def reply(self, context: UserContext) -> str | None:
            asked.append(context.turn)
            return super().reply(context)

    scenario = bank_scenario(user=Counting, finish_tools=["open_account"])
    env = simenv.make(scenario)
    env.reset(seed=0, options={"task_id": "multi_turn_base_2"})
    *_, terminated, _, info = env.step(format_tool_call("open_account", {"name": "rainy-day"}))
    assert terminated and info["termination"] == "finish_tool" and asked == []
    env.close()


def test_max_turns_truncates_a_conversation() -> None:
    env = simenv.make(bank_scenario(max_turns=2))
    env.reset(seed=0, options={"task_id": "multi_turn_base_0"})
    assert env.step("Hello.")[2:4] == (False, False)
    observation, _, terminated, truncated, info = env.step("Hello again.")
    assert truncated and not terminated and info["termination"] == "max_turns"
    assert observation[-1]["role"] == "user"  # the user spoke; the agent has no turn left
    env.close()


def test_without_a_user_the_first_answer_ends_the_episode() -> None:
    scenario = bank_scenario(user=None)
    episode = play(scenario, "multi_turn_base_0", Null())
    assert episode.termination == "answer" and episode.turns == 1


def test_same_seed_and_actions_give_the_same_transcript() -> None:
    scenario = bank_scenario()
    a = play(scenario, "multi_turn_base_1", Oracle(), seed=3)
    b = play(scenario, "multi_turn_base_1", Oracle(), seed=3)
    assert a.messages == b.messages and a.turn_rewards == b.turn_rewards


def test_user_messages_survive_the_episode_record() -> None:
    episode = play(bank_scenario(), "multi_turn_base_1", Oracle())
    again = Episode.from_json(episode.to_json())
    assert again == episode
    assert any(s.user_message for s in again.steps)
    assert json.loads(episode.to_json())["steps"][1]["user_message"]["role"] == "user"


# ----------------------------------------------------------------------------- the contract
class Echo(User):
    """Says back what the agent said, three times, recording every context it saw."""

    def __init__(self, task: Task, initial_state: Any, rng: np.random.Generator) -> None:
        self.seen: list[UserContext] = []
        self.rng = rng
        self.initial_state = initial_state

    def reply(self, context: UserContext) -> str | None:
        self.seen.append(context)
        return None if context.user_turn >= 3 else f"you said {context.answer}"


def test_the_user_context_holds_what_the_contract_says() -> None:
    built: list[Echo] = []

    def factory(task: Task, initial_state: Any, rng: np.random.Generator) -> Echo:
        built.append(Echo(task, initial_state, rng))
        return built[-1]

    env = simenv.make(bank_scenario(user=factory))
    env.reset(seed=5, options={"task_id": "multi_turn_base_0"})
    env.step(format_tool_call("balance", {"account": "savings"}))
    env.step("one")
    env.step("two")
    user = built[-1]
    assert isinstance(user.initial_state, type(env.unwrapped.state))
    first, second = user.seen
    assert (first.answer, first.turn, first.user_turn) == ("one", 2, 0)
    assert (second.answer, second.turn, second.user_turn) == ("two", 3, 1)
    assert first.messages[0]["role"] == "system" and first.messages[-1]["content"] == "one"
    assert first.state is env.unwrapped.state and first.task.id == "multi_turn_base_0"
    assert first.rng is user.rng
    env.reset(seed=5, options={"task_id": "multi_turn_base_0"})
    assert len(built) == 2  # one user per episode
    env.close()


def test_the_users_rng_is_seeded_and_apart_from_the_tools() -> None:
    draws = []

    def factory(task: Task, initial_state: Any, rng: np.random.Generator) -> Echo:
        draws.append(float(rng.random()))
        return Echo(task, initial_state, rng)

    env = simenv.MultiTurnEnv(bank_scenario(user=factory))
    for seed in (1, 1, 2):
        env.reset(seed=seed)
    assert draws[0] == draws[1] != draws[2]
    env.reset(seed=1)
    tools_first = float(env.np_random.random())
    assert tools_first != draws[0]  # not the tools' generator
    env.close()


def test_a_user_that_fails_voids_the_episode() -> None:
    class Down(User):
        def reply(self, context: UserContext) -> str | None:
            raise InfraError("the user endpoint is down")

    episode = play(bank_scenario(user=lambda t, s, r: Down()), "multi_turn_base_0", Null())
    assert not episode.valid and episode.termination == "infra_error"
    assert "endpoint is down" in (episode.error or "")


@pytest.mark.parametrize(
    ("reply", "words"),
    [(lambda c: 1 / 0, "ZeroDivisionError"), (lambda c: 42, "replied 42")],
)
def test_a_broken_user_is_the_environments_fault(reply: Any, words: str) -> None:
    class Broken(User):
        def reply(self, context: UserContext) -> str | None:
            return reply(context)  # type: ignore[no-any-return]

    episode = play(bank_scenario(user=lambda t, s, r: Broken()), "multi_turn_base_0", Null())
    assert not episode.valid and words in (episode.error or "")
    assert "bug in the user" in (episode.error or "")


def test_scenario_refuses_a_user_that_is_not_a_factory() -> None:
    with pytest.raises(ScenarioError, match="pass the class or a function"):
        bank_scenario(user=Echo(Task("t", "p"), None, np.random.default_rng()))
    with pytest.raises(ScenarioError, match="user must be None or a factory"):
        bank_scenario(user="scripted")


def test_a_factory_that_returns_no_user_is_named_at_reset() -> None:
    env = simenv.make(bank_scenario(user=lambda t, s, r: "hello"))
    with pytest.raises(ScenarioError, match=r"must return a simenv\.users\.User"):
        env.reset(seed=0)
    env.close()


# ----------------------------------------------------------------------------- scripted tasks
@pytest.mark.parametrize(
    ("turns", "words"),
    [
        ([], "at least one user turn"),
        ([{"text": "hi"}], "no string 'content'"),
        (["hi", {"content": "x", "extra": 1}], "unknown fields \\['extra'\\]"),
        (["hi", {"content": "x", "check": {"answer_has": "y"}}], "unknown conditions"),
        (["hi", {"content": "x", "check": {"called": "transfer"}}], "'called'\\] must be a list"),
        (["hi", {"content": "x", "check": {"answer_contains": 3}}], "string or a list"),
        (["hi", {"content": "x", "check": 7}], "function of one Outcome or a dict"),
    ],
)
def test_malformed_user_turns_are_refused_with_the_fix(turns: Any, words: str) -> None:
    with pytest.raises(ScenarioError, match=words):
        scripted_task("bad", turns)


def test_user_turns_must_start_with_the_prompt() -> None:
    task = Task("t", "Hello", data={"user_turns": ["Goodbye", "Again"]})
    with pytest.raises(ScenarioError, match=r"user_turns'\]\[0\] is the opening message"):
        ScriptedUser(task)
    with pytest.raises(ScenarioError, match="must be a non-empty list"):
        ScriptedUser(Task("t", "Hello"))


def plain(task: Task) -> simenv.Scenario:
    """A scenario of one scripted task, without tools or state."""
    return bank_scenario(tasks=[task], oracle=None, sandbox=None, tools=[], evaluate=lambda o: 0)


def test_a_check_function_scores_an_instruction() -> None:
    task = scripted_task(
        "fn",
        [
            {"content": "Say hi.", "check": lambda o: "hi" in o.answer},
            {"content": "Say bye.", "check": lambda o: 0.5},
        ],
    )
    episode = play(plain(task), "fn", Scripted(["hi", "ok"]))
    assert [s.reward for s in episode.steps] == [0.5, 0.25]


def test_a_check_returning_nonsense_names_the_task() -> None:
    task = scripted_task("fn", [{"content": "Say hi.", "check": lambda o: "yes"}])
    env = simenv.make(plain(task))
    env.reset(seed=0)
    with pytest.raises(ScenarioError, match="task 'fn': the check of user turn 0 returned"):
        env.step("hi")
    env.close()


def test_simenv_check_passes_the_bank_conversation() -> None:
    report = simenv.checks.check(bank_scenario(), fast=True)
    failed = [r for r in report.results if r.status == "fail"]
    assert failed == [], failed


def test_the_guides_scripted_example_scores_oracle_one_and_null_zero() -> None:
    page = (Path(__file__).resolve().parents[1] / "docs" / "users.md").read_text()
    example = re.findall(r"```python\n(.*?)```", page, re.S)[0]
    namespace: dict[str, Any] = {}
    exec(compile(example, "docs/users.md", "exec"), namespace)
    scenario = namespace["NOTES"]
    gold = play(scenario, "notes-0", Oracle())
    assert gold.reward == pytest.approx(1.0) and gold.success
    assert gold.turn_rewards == pytest.approx((0.0, 0.5, 0.5))
    null = play(scenario, "notes-0", Null())
    assert null.reward == 0.0 and not null.success and null.termination == "user_end"
