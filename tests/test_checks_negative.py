"""Every documented failure of `simenv check` (docs/validation.md), each caught on a broken env.

tests/test_checks.py holds the sound scenario (``sound()``, the Vault) and a first broken case
per check; here is one small deliberately broken scenario or environment for each remaining
row of the "fails when" column, and each test asserts the check's documented message.
"""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_checks import TASKS, Vault, balance, deposit, failing, sound

from simenv import MultiTurnEnv, Outcome, Task, tool
from simenv.checks import check
from simenv.parsing import format_tool_call
from simenv.tools.base import SchemaTool
from simenv.types import ToolCall, ToolResult
from simenv.wrappers import OrderEnforcing


# ----------------------------------------------------------------------------- api
class AnswersWhenNotRunning(MultiTurnEnv):
    """Steps before reset and after the end are answered instead of refused."""

    def step(self, action: Any) -> Any:
        if self._needs_reset:
            return [{"role": "assistant", "content": str(action)}], 0.0, False, False, {}
        return super().step(action)


@pytest.fixture
def no_order_enforcing(monkeypatch: pytest.MonkeyPatch) -> None:
    """A wrapper stack whose OrderEnforcing lets every step through (a regression of simenv's)."""
    monkeypatch.setattr(OrderEnforcing, "step", lambda self, action: self.env.step(action))


def test_api_catches_a_step_before_reset_that_does_not_raise(no_order_enforcing: None) -> None:
    result = failing(AnswersWhenNotRunning(sound()), "api")
    assert result.message == "step() before reset() did not raise ResetNeeded"


class AnswersAfterTheEnd(MultiTurnEnv):
    def step(self, action: Any) -> Any:
        if self._needs_reset and self._task is not None:  # the episode ended
            return [{"role": "assistant", "content": str(action)}], 0.0, False, False, {}
        return super().step(action)


def test_api_catches_a_step_after_the_end_that_does_not_raise(no_order_enforcing: None) -> None:
    result = failing(AnswersAfterTheEnd(sound()), "api")
    assert result.message == "step() after the end did not raise ResetNeeded"


class LacksEpisodeId(MultiTurnEnv):
    def reset(self, **kwargs: Any) -> Any:
        observation, info = super().reset(**kwargs)
        del info["episode_id"]
        return observation, info


def test_api_catches_info_without_a_documented_key() -> None:
    assert failing(LacksEpisodeId(sound()), "api").message == "reset's info lacks ['episode_id']"


class NumpyBools(MultiTurnEnv):
    """``terminated`` is a numpy bool (which gymnasium's own checker accepts)."""

    def step(self, action: Any) -> Any:
        observation, reward, terminated, truncated, info = super().step(action)
        return observation, reward, np.bool_(terminated), truncated, info


def test_api_catches_terminated_and_truncated_that_are_not_python_bools() -> None:
    result = failing(NumpyBools(sound()), "api")
    assert result.message == "terminated/truncated must be Python bools"


class BadObservation(MultiTurnEnv):
    def reset(self, **kwargs: Any) -> Any:
        observation, info = super().reset(**kwargs)
        return [*observation, {"content": "a message without a role"}], info


def test_api_catches_an_observation_outside_the_space() -> None:
    result = failing(BadObservation(sound()), "api")
    assert result.message.startswith("gymnasium's check_env failed")


class TruncatesEarly(MultiTurnEnv):
    def step(self, action: Any) -> Any:
        observation, reward, terminated, truncated, info = super().step(action)
        if not terminated and self._turn == 2:  # gymnasium's checker steps once: it passes
            final, end = self.end_episode("max_turns")
            return observation, float(reward) + final, False, True, {**info, **end}
        return observation, reward, terminated, truncated, info


def test_api_catches_truncation_before_max_turns() -> None:
    result = failing(TruncatesEarly(sound()), "api")
    assert result.message == (
        "truncated=True at turn 2; it must become True exactly at max_turns=4"
    )
    assert result.reproduction and len(result.reproduction) == 2


class IgnoresAnswers(MultiTurnEnv):
    """A final answer (text without a tool call) does not end the episode."""

    def step(self, action: Any) -> Any:
        if isinstance(action, str) and "<tool_call>" not in action and not self._needs_reset:
            self._turn += 1
            message = {"role": "assistant", "content": action}
            self._messages.append(message)
            return [message], 0.0, False, False, {"turn": self._turn}
        return super().step(action)


def test_api_catches_a_final_answer_that_does_not_terminate() -> None:
    result = failing(IgnoresAnswers(sound()), "api")
    assert result.message == "an answer without a tool call must terminate"


class ClosesOnce(MultiTurnEnv):
    def close(self) -> None:
        if getattr(self, "_closed", False):
            raise RuntimeError("already closed")
        self._closed = True
        super().close()

    def reset(self, **kwargs: Any) -> Any:
        self._closed = False
        return super().reset(**kwargs)


def test_api_catches_a_second_close_that_raises() -> None:
    result = failing(ClosesOnce(sound()), "api")
    assert result.message == "a second close() raised RuntimeError('already closed')"


# ----------------------------------------------------------------------------- tools
class Echo:
    """A backend answering every call with ``content``."""

    def __init__(self, content: str = "ok") -> None:
        self.content = content

    def call(self, call: ToolCall, injected: Mapping[str, Any]) -> ToolResult:
        return ToolResult(call.id, call.name, self.content, False, "live")


def schema_tool(parameters: dict[str, Any], **kwargs: Any) -> SchemaTool:
    return SchemaTool(
        Echo(), name="lookup", parameters=parameters, description="Look it up.", **kwargs
    )


N = {"type": "integer", "description": "A number."}


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        (
            {"type": "object", "properties": {"n": {**N, "type": "integr"}}},
            "lookup: not valid JSON Schema (at properties/n/type): 'integr' is not valid",
        ),
        (
            {"type": "object", "properties": {"n": N}, "required": "n"},
            "lookup: not valid JSON Schema (at required): 'n' is not of type 'array'",
        ),
        ({"type": "array", "items": N}, "lookup: parameters must be an object schema"),
        (
            {"type": "object", "properties": {"n": N}, "required": ["m"]},
            "lookup: required 'm' is not a property",
        ),
    ],
)
def test_tools_catches_a_broken_schema(parameters: dict[str, Any], message: str) -> None:
    result = failing(sound(tools=[balance, deposit, schema_tool(parameters)]), "tools")
    assert message in result.message, result.message


SCHEMA_FILE = """
from simenv.tools.base import SchemaTool
from simenv.types import ToolResult


class Echo:
    def call(self, call, injected):
        return ToolResult(call.id, call.name, "ok", False, "live")


BROKEN = {"type": "object", "properties": {"n": {"type": "integr", "description": "A number."}}}
SCENARIO = sound(
    id="test/BrokenSchema-v1",
    tools=[balance, deposit, SchemaTool(Echo(), name="lookup", parameters=BROKEN,
                                        description="Look it up.")],
)
"""


def test_simenv_check_fails_on_a_broken_user_schema(tmp_path: Path) -> None:
    scenario_file = tmp_path / "broken_schema.py"
    here = Path(__file__).parent
    scenario_file.write_text(
        f"import sys\nsys.path.insert(0, {str(here)!r})\n"
        "from test_checks import balance, deposit, sound\n" + SCHEMA_FILE
    )
    args = ["check", str(scenario_file), "--only", "tools", "--fast", "--json"]
    run = subprocess.run(
        [sys.executable, "-m", "simenv.cli", *args], capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 1, run.stdout + run.stderr
    (report,) = json.loads(run.stdout)
    (result,) = report["results"]
    assert result["status"] == "fail"
    assert "lookup: not valid JSON Schema (at properties/n/type): 'integr'" in result["message"]


def test_tools_catches_an_injected_parameter_shown_to_the_model() -> None:
    visible = schema_tool(
        {"type": "object", "properties": {"vault": {"type": "object", "description": "State."}}},
        injected={"vault": Vault},
    )
    result = failing(sound(tools=[balance, deposit, visible]), "tools")
    assert result.message == "lookup: injected 'vault' is visible in the schema"


# ----------------------------------------------------------------------------- determinism
class ClockInThePrompt(MultiTurnEnv):
    """The first user message carries a number from the module-level ``random``."""

    def _prompt(self, task: Task) -> str:
        return f"{super()._prompt(task)} (ticket {random.randint(0, 10**9)})"


def test_determinism_catches_a_first_observation_that_ignores_the_seed() -> None:
    result = failing(ClockInThePrompt(sound()), "determinism")
    assert result.message.startswith("the same seed gave a different first observation")
    assert result.task_id is not None and result.seed is not None


@tool
def stamp(vault: Vault) -> float:
    """A receipt number (drawn from module-level `random`, not from the episode's rng)."""
    return random.random()


def stamping_oracle(task: Task, vault: Vault) -> list[str]:
    amount = task.data["amount"]
    return [format_tool_call("stamp", {}), format_tool_call("deposit", {"amount": amount}), "Ok."]


def test_determinism_catches_a_tool_result_that_ignores_the_seed() -> None:
    scenario = sound(tools=[balance, deposit, stamp], oracle=stamping_oracle)
    result = failing(scenario, "determinism")
    assert result.message.startswith("the same seed and actions gave different episodes at ")
    assert "messages" in result.message
    assert result.reproduction and result.reproduction[0] == format_tool_call("stamp", {})


# ----------------------------------------------------------------------------- isolation
class ForgetfulVault(Vault):
    def restore(self, snapshot: dict[str, Any]) -> None:
        pass  # deliberately broken: nothing is brought back


def test_isolation_catches_a_restore_that_does_not_restore() -> None:
    result = failing(sound(sandbox=ForgetfulVault), "isolation")
    assert result.message.startswith("restore(snapshot()) did not bring the starting state back")
    assert "override Sandbox.snapshot/restore" in result.message


# ----------------------------------------------------------------------------- robustness
class DropsErrorMessages(MultiTurnEnv):
    """Tool errors are swallowed: the agent never hears about its malformed call."""

    def step(self, action: Any) -> Any:
        observation, *rest = super().step(action)
        kept = [m for m in observation if not str(m.get("content", "")).startswith("Error")]
        return (kept, *rest)


def test_robustness_catches_a_call_left_unanswered() -> None:
    result = failing(DropsErrorMessages(sound()), "robustness")
    assert re.fullmatch(r"calls \['call_\w+'\] were answered by tool messages \[\]", result.message)
    assert result.reproduction


def test_robustness_catches_an_empty_tool_message() -> None:
    silent = SchemaTool(
        Echo(content=""),
        name="ping",
        parameters={"type": "object", "properties": {}},
        description="Ping.",
    )
    result = failing(sound(tools=[silent]), "robustness")
    assert result.message.startswith("a tool message is empty or malformed")


# ----------------------------------------------------------------------------- reward
def test_reward_catches_a_do_nothing_agent_judged_a_success() -> None:
    result = failing(sound(evaluate=lambda o: True), "reward")
    assert result.message.startswith("the do-nothing agent earned 0.0 (floor 0.0, evaluation 1.0)")


def test_reward_catches_an_oracle_not_judged_a_success() -> None:
    result = failing(sound(evaluate=lambda o: False), "reward")
    assert result.message.startswith("the oracle earned 1.0 (ceiling 1.0, evaluation 0.0")


def test_reward_fails_without_an_oracle() -> None:
    result = failing(sound(oracle=None), "reward")
    assert result.message == "the scenario has no oracle; give Scenario(oracle=)"


def any_deposit(o: Outcome) -> float:
    return float(o.final.balance > o.initial.balance)  # pays a deposit of any amount


def test_reward_warns_when_reward_and_evaluation_disagree() -> None:
    report = check(sound(reward=any_deposit), fast=True, only=["reward"])
    result = report["reward"]
    assert result.status == "warn", report.summary()
    assert "reward and evaluation disagreed on" in result.message
    assert result.details["disagreements"] >= 1


# ----------------------------------------------------------------------------- leaks
SECRET = "PLUTONIUM-42"
SECRET_TASKS = [Task(t.id, t.prompt, data={**t.data, "answer": SECRET}) for t in TASKS]


def test_leaks_catches_the_answer_in_the_prompt() -> None:
    told = [Task(t.id, f"{t.prompt} (The code is {SECRET}.)", data=t.data) for t in SECRET_TASKS]
    result = failing(sound(tasks=told), "leaks")
    assert result.message.startswith(f"the gold answer {SECRET!r} appears in the user message")


def test_leaks_catches_the_answer_in_the_system_prompt() -> None:
    result = failing(sound(tasks=SECRET_TASKS, system_prompt=f"Codes: {SECRET}."), "leaks")
    assert f"{SECRET!r} appears in the system message" in result.message


@tool
def codes(vault: Vault) -> str:
    """List the vault's codes. The master code is PLUTONIUM-42."""
    return "none"


def test_leaks_catches_the_answer_in_a_tool_description() -> None:
    result = failing(sound(tasks=SECRET_TASKS, tools=[balance, deposit, codes]), "leaks")
    assert f"{SECRET!r} appears in the tool descriptions" in result.message


def test_sound_scenario_still_passes_what_these_break() -> None:
    report = check(sound(), fast=True, only=["api", "tools", "determinism", "isolation", "leaks"])
    assert report.ok, report.summary()
