"""Each check passes on a sound scenario and catches a deliberately broken one."""

from __future__ import annotations

import dataclasses
import os
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import simenv
from simenv import MultiTurnEnv, Outcome, Sandbox, Scenario, Task, ToolError, tool
from simenv.checks import CHECKS, check
from simenv.parsing import format_tool_call


# ----------------------------------------------------------------------------- a sound scenario
class Vault(Sandbox):
    def setup(self, rng: np.random.Generator, task: Task) -> None:
        self.balance = int(rng.integers(10, 100))
        self.log: list[str] = []


@tool
def balance(vault: Vault) -> int:
    """Read the balance."""
    return vault.balance


@tool(effect="write")
def deposit(vault: Vault, amount: int) -> int:
    """Deposit money.

    Args:
        amount: Dollars to add, at least 1.
    """
    if amount < 1:
        raise ToolError("amount must be at least 1")
    vault.balance += amount
    vault.log.append(f"+{amount}")
    return vault.balance


def reward(o: Outcome) -> float:
    return float(o.final.balance == o.initial.balance + o.task.data["amount"])


def evaluate(o: Outcome) -> bool:
    return o.final.log == [f"+{o.task.data['amount']}"]


def oracle(task: Task, vault: Vault) -> list[str]:
    return [format_tool_call("deposit", {"amount": task.data["amount"]}), "Deposited."]


TASKS = [Task(f"t{i}", f"Deposit {10 + i} dollars.", data={"amount": 10 + i}) for i in range(6)]


def sound(**changes: Any) -> Scenario:
    fields: dict[str, Any] = {
        "id": "test/Vault-v1",
        "system_prompt": "You manage a vault.",
        "tools": [balance, deposit],
        "tasks": TASKS,
        "sandbox": Vault,
        "reward": reward,
        "evaluate": evaluate,
        "oracle": oracle,
        "max_turns": 4,
    }
    fields.update(changes)
    return Scenario(**fields)


def test_sound_scenario_passes_every_check() -> None:
    report = check(sound(), fast=True)
    assert report.ok, report.summary()
    assert {r.check for r in report.results} == set(CHECKS)
    assert report["replay"].status == "skip"
    assert report["examples"].status == "warn"  # the sound scenario has no worked examples


class SlowVault(Vault):
    """A vault whose reset takes 20 ms, like a sandbox that starts a container."""

    def setup(self, rng: np.random.Generator, task: Task) -> None:
        time.sleep(0.02)
        super().setup(rng, task)


def test_fast_mode_stops_slow_checks_at_its_budget_and_says_so() -> None:
    from simenv.checks import CheckOptions, check_determinism, check_robustness

    slow = sound(sandbox=SlowVault, tools=[balance, deposit])
    options = dataclasses.replace(CheckOptions.for_mode(fast=True), budget_s=0.3)
    fuzzed = check_robustness(slow, options)
    assert fuzzed.status == "pass" and "stopped at the 0.3 s budget of --fast" in fuzzed.message
    assert 200 <= fuzzed.details["steps"] < options.fuzz_steps
    replayed = check_determinism(slow, options)
    assert replayed.status == "pass" and "budget of --fast" in replayed.message
    assert replayed.message.startswith("2 tasks x 2 seeds")  # the minimum still runs
    full = check_robustness(sound(), CheckOptions.for_mode(fast=True))  # quick: no early stop
    assert "budget" not in full.message and full.details["steps"] >= 1_000


def failing(scenario_or_env: Any, name: str) -> simenv.checks.CheckResult:
    report = check(scenario_or_env, fast=True, only=[name])
    result = report[name]
    assert result.status == "fail", report.summary()
    return result


# ----------------------------------------------------------------------------- api
class EndsOnErrors(MultiTurnEnv):
    """Merges 'the agent erred' into 'the episode ended': a contract violation."""

    def step(self, action: Any) -> Any:
        observation, reward, terminated, truncated, info = super().step(action)
        erred = any(m["content"].startswith("Error") for m in observation[1:])
        if erred and not terminated:
            r, _ = self.end_episode("answer")
            return observation, r, True, False, info
        return observation, reward, terminated, truncated, info


def test_api_catches_an_env_that_ends_on_errors() -> None:
    result = failing(EndsOnErrors(sound()), "api")
    assert "unknown tool ended the episode" in result.message
    assert result.reproduction


# ----------------------------------------------------------------------------- tools
@tool  # declared read, but it writes
def peek(vault: Vault) -> int:
    """Read the balance (and quietly log the visit)."""
    vault.log.append("peek")
    return vault.balance


def test_tools_catches_a_read_tool_that_writes() -> None:
    result = failing(sound(tools=[peek, deposit]), "tools")
    assert "read tool 'peek' changed the state" in result.message
    assert "effect='write'" in result.message


@tool(effect="write")
def undocumented(vault: Vault, amount: int) -> int:
    return amount


def test_tools_catches_missing_descriptions() -> None:
    result = failing(sound(tools=[balance, undocumented]), "tools")
    assert "undocumented: no description" in result.message
    assert "argument 'amount' has no description" in result.message


# ----------------------------------------------------------------------------- determinism
class Unseeded(Vault):
    def setup(self, rng: np.random.Generator, task: Task) -> None:
        self.balance = random.randint(10, 10**9)  # not the rng it was given
        self.log = []


class Constant(Vault):
    def setup(self, rng: np.random.Generator, task: Task) -> None:
        self.balance = 50  # the seed is accepted and ignored
        self.log = []


def test_determinism_catches_randomness_outside_the_seed() -> None:
    result = failing(sound(sandbox=Unseeded), "determinism")
    assert "same seed gave a different starting state" in result.message


def test_determinism_catches_an_ignored_seed() -> None:
    result = failing(sound(sandbox=Constant), "determinism")
    assert "seed is ignored" in result.message
    assert check(sound(sandbox=Constant, random_state=False), only=["determinism"]).ok


# ----------------------------------------------------------------------------- isolation
SHARED_LOG: list[str] = []


class Leaky(Vault):
    def setup(self, rng: np.random.Generator, task: Task) -> None:
        super().setup(rng, task)
        self.log = SHARED_LOG  # every episode writes to one module-level list


def test_isolation_catches_state_shared_through_a_global() -> None:
    result = failing(sound(sandbox=Leaky), "isolation")
    assert "state leaks between episodes" in result.message
    assert "module-level" in result.message


# ----------------------------------------------------------------------------- robustness
@tool(effect="write")
def fragile(vault: Vault, key: str) -> int:
    """Deposit by code.

    Args:
        key: A deposit code.
    """
    return {"small": 1, "large": 100}[key]  # KeyError on anything else: should be a ToolError


def test_robustness_catches_a_tool_that_crashes_on_bad_input() -> None:
    result = failing(sound(tools=[balance, fragile]), "robustness")
    assert "invalid" in result.message and "KeyError" in result.message
    assert result.reproduction and result.seed is not None


class RaisesOnBadJson(MultiTurnEnv):
    def step(self, action: Any) -> Any:
        if isinstance(action, str) and "<tool_call>" in action:
            import json

            inner = action.split("<tool_call>", 1)[1].split("</tool_call>", 1)[0]
            json.loads(inner)  # raises on bad JSON, out of step
        return super().step(action)


def test_robustness_catches_a_step_that_raises_on_bad_json() -> None:
    result = failing(RaisesOnBadJson(sound()), "robustness")
    assert "step() raised" in result.message
    assert len(result.reproduction or []) >= 1


class NaiveRecord(simenv.Episode):
    """An episode record written the way it was before records were repaired."""

    def to_json(self) -> str:
        import json

        line = json.dumps(self.to_dict(), ensure_ascii=False)
        line.encode("utf-8")  # UnicodeEncodeError on a lone surrogate
        return line


@tool
def listing(vault: Vault) -> str:
    """List the vault's files."""
    return "report-\udcff.txt"  # a non-UTF-8 file name, as os.listdir decodes it


class WritesNaively(MultiTurnEnv):
    def episode(self, policy: dict[str, Any] | None = None) -> simenv.Episode:
        record = super().episode(policy)
        return NaiveRecord(**{f.name: getattr(record, f.name) for f in dataclasses.fields(record)})


def test_robustness_writes_every_fuzzed_episode() -> None:
    scenario = sound(tools=[balance, deposit, listing])
    result = check(scenario, fast=True, only=["robustness"])["robustness"]
    assert result.status == "pass", result.message


def test_robustness_catches_an_episode_that_cannot_be_written() -> None:
    result = failing(WritesNaively(sound(tools=[balance, deposit, listing])), "robustness")
    assert "episode record cannot be written" in result.message
    assert "UnicodeEncodeError" in result.message or "RecursionError" in result.message
    assert result.reproduction


# ----------------------------------------------------------------------------- reward
def pays_for_nothing(o: Outcome) -> float:
    return 1.0  # the do-nothing agent collects the reward


def test_reward_catches_a_reward_that_pays_the_null_policy() -> None:
    result = failing(sound(reward=pays_for_nothing), "reward")
    assert "do-nothing agent earned 1.0" in result.message


def wrong_oracle(task: Task, vault: Vault) -> list[str]:
    return [format_tool_call("deposit", {"amount": 1}), "Done."]


def test_reward_catches_an_oracle_that_fails() -> None:
    result = failing(sound(oracle=wrong_oracle), "reward")
    assert "the oracle earned 0.0" in result.message


# ----------------------------------------------------------------------------- leaks
@tool
def hint(vault: Vault) -> str:
    """Get a hint."""
    return f"The expected answer is {vault.secret}."


class SecretVault(Vault):
    def setup(self, rng: np.random.Generator, task: Task) -> None:
        super().setup(rng, task)
        self.secret = task.data["answer"]


def test_leaks_catches_a_tool_result_that_leaks_the_answer() -> None:
    tasks = [Task(t.id, t.prompt, data={**t.data, "answer": "PLUTONIUM-42"}) for t in TASKS]
    scenario = sound(tools=[balance, deposit, hint], sandbox=SecretVault, tasks=tasks)
    result = failing(scenario, "leaks")
    assert "PLUTONIUM-42" in result.message and "tool message" in result.message


@tool
def grade(vault: Vault) -> str:
    """Check progress."""
    return "Your reward so far: 0.0"


def test_leaks_catches_a_tool_that_shows_the_reward() -> None:
    result = failing(sound(tools=[balance, deposit, grade]), "leaks")
    assert "reward or score" in result.message


# ----------------------------------------------------------------------------- resources
class LeavesFiles(Vault):
    def setup(self, rng: np.random.Generator, task: Task) -> None:
        super().setup(rng, task)
        handle, self._path = tempfile.mkstemp(prefix="simenv-test-leak-")
        import os

        os.close(handle)

    # close() is not overridden: the file stays behind


def test_resources_catches_files_left_behind() -> None:
    try:
        result = failing(sound(sandbox=LeavesFiles), "resources")
        assert "files left in" in result.message and "simenv-test-leak-" in result.message
    finally:
        for path in Path(tempfile.gettempdir()).glob("simenv-test-leak-*"):
            path.unlink()


OPENED: list[Any] = []


class KeepsFilesOpen(Vault):
    """Deliberately broken: every episode opens a file that nothing ever closes."""

    def setup(self, rng: np.random.Generator, task: Task) -> None:
        super().setup(rng, task)
        OPENED.append(open(os.devnull))  # noqa: SIM115 - the leak is the point


def test_resources_catches_descriptors_that_grow_with_the_episodes() -> None:
    try:
        result = failing(sound(sandbox=KeepsFilesOpen), "resources")
        assert "more open file descriptors after" in result.message
        assert "close files and connections in close()" in result.message
    finally:
        while OPENED:
            OPENED.pop().close()


HELD: set[str] = set()


class HoldsHandles(Vault):
    def setup(self, rng: np.random.Generator, task: Task) -> None:
        super().setup(rng, task)
        self._handle = f"container-{id(self)}"
        HELD.add(self._handle)

    @classmethod
    def live_resources(cls) -> list[str]:
        return sorted(HELD)


def test_resources_catches_resources_not_released() -> None:
    try:
        result = failing(sound(sandbox=HoldsHandles), "resources")
        assert "still held after close()" in result.message
    finally:
        HELD.clear()


# ----------------------------------------------------------------------------- examples
# ----------------------------------------------------------------------------- replay
PRICES = {"A-1": 30, "B-2": 45, "C-3": 120}


def priced(cassette_path: Path, recorded: dict[str, int]) -> Scenario:
    """A replayed price lookup whose cassette holds ``recorded`` (the oracle asks for all)."""
    import json

    from simenv.tools.replay import Cassette

    rows = [{"tool": "price", "arguments": {"sku": k}, "response": v} for k, v in recorded.items()]
    cassette_path.write_text(json.dumps({"version": 1, "entries": rows}))

    @tool(effect="read", replay=Cassette(cassette_path))
    def price(sku: str) -> int:
        """Look a price up.

        Args:
            sku: The product code, e.g. "A-1".
        """
        return PRICES[sku]

    def paid(o: Outcome) -> float:
        return float(str(PRICES[o.task.data["sku"]]) in o.answer)

    def gold(task: Task, state: Any) -> list[str]:
        sku = task.data["sku"]
        return [format_tool_call("price", {"sku": sku}), f"It costs {PRICES[sku]}."]

    return Scenario(
        id="test/Prices-v1",
        system_prompt="Answer prices.",
        tools=[price],
        tasks=[Task(f"t-{k}", f"Price of {k}?", data={"sku": k}) for k in PRICES],
        reward=paid,
        evaluate=paid,
        oracle=gold,
        random_state=False,
        max_turns=3,
    )


def test_replay_passes_when_every_oracle_call_is_recorded(tmp_path: Path) -> None:
    report = check(priced(tmp_path / "c.json", PRICES), fast=True, only=["replay"])
    assert report["replay"].status == "pass", report.summary()


def test_replay_catches_a_missing_cassette_entry(tmp_path: Path) -> None:
    result = failing(priced(tmp_path / "c.json", {"A-1": 30, "C-3": 120}), "replay")
    assert "1 oracle calls are not in the cassettes" in result.message
    assert "B-2" in result.message and "re-record with `simenv record`" in result.message


def test_examples_catches_a_wrong_stated_reward() -> None:
    bad = simenv.Example("claims a win", "t0", 1, ("Nothing to do.",), reward=1.0)
    result = failing(sound(examples=[bad]), "examples")
    assert "states reward 1.0 but earns 0.0" in result.message


def test_unknown_check_name_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown checks"):
        check(sound(), only=["nope"])


def test_report_renders_reproduction_and_json() -> None:
    report = check(sound(reward=pays_for_nothing), fast=True, only=["reward"])
    text = report.summary()
    assert "FAILED" in text and "reproduce" in text and "task=t0" in text
    assert '"status": "fail"' in report.to_json()
