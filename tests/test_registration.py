"""Ids, the registry, make() by id / path / object, entry points, gymnasium.make, declarations."""

from __future__ import annotations

import importlib.metadata
import re
from pathlib import Path
from typing import Any

import gymnasium
import pytest
from helpers import TASKS, count, make_scenario, submit

import simenv
from simenv import MultiTurnEnv, RegistrationError, ScenarioError, Task, registration
from simenv.rollouts.policies import Oracle
from simenv.scenario import parse_id

pytestmark = pytest.mark.usefixtures("isolated_registry")

SCENARIO_FILE = '''
"""A scenario in a file of its own."""
from simenv import Outcome, Scenario, Task, tool


@tool
def echo(text: str) -> str:
    """Repeat the text.

    Args:
        text: What to repeat.
    """
    return text


def reward(o: Outcome) -> float:
    return float("hello" in o.answer)


SCENARIO = Scenario(
    id="{id}",
    system_prompt="Say hello.",
    tools=[echo],
    tasks=[Task("greet", "Greet me.")],
    reward=reward,
    evaluate=lambda o: "hello" in o.answer,
    oracle=lambda task, state: ["hello"],
)
'''


def _write(path: Path, scenario_id: str) -> Path:
    path.write_text(SCENARIO_FILE.replace("{id}", scenario_id))
    return path


# ----------------------------------------------------------------------------- ids
@pytest.mark.parametrize(
    ("scenario_id", "parts"),
    [
        ("support/Refunds-v1", ("support", "Refunds", 1)),
        ("Refunds-v12", (None, "Refunds", 12)),
        ("my.org-x/Multi-Word_Name-v3", ("my.org-x", "Multi-Word_Name", 3)),
    ],
)
def test_well_formed_ids_parse(scenario_id: str, parts: tuple[Any, ...]) -> None:
    assert parse_id(scenario_id) == parts
    assert make_scenario(id=scenario_id).version == parts[2]


@pytest.mark.parametrize(
    "scenario_id",
    [
        "no-version",
        "support/Refunds",
        "support/Refunds-v",
        "support/Refunds-vX",
        "support/Refunds-1",
        "a/b/Refunds-v1",
        "support/9Refunds-v1",
        "support/Re funds-v1",
        "/Refunds-v1",
        "",
        "support/Refunds-v1 ",
    ],
)
def test_malformed_ids_are_rejected(scenario_id: str) -> None:
    with pytest.raises(ScenarioError, match=r"is malformed: use 'namespace/Name-vN'"):
        make_scenario(id=scenario_id)


def test_an_id_with_a_trailing_newline_is_rejected() -> None:
    with pytest.raises(ScenarioError, match="malformed"):
        make_scenario(id="support/Refunds-v1\n")


# ----------------------------------------------------------------------------- register / make
def test_register_then_make_by_id() -> None:
    scenario = make_scenario(id="test/Registered-v1")
    entry = simenv.register(scenario)
    assert (
        entry.id == "test/Registered-v1" and entry.scenario is scenario and entry.source == "code"
    )
    assert simenv.spec("test/Registered-v1") is entry
    assert simenv.load_scenario("test/Registered-v1") is scenario
    assert simenv.registry() == ["test/Registered-v1"]
    env = simenv.make("test/Registered-v1")
    assert env.unwrapped.scenario is scenario
    assert simenv.register(scenario) is not None  # registering the same object again is fine


def test_a_taken_id_is_refused_unless_overridden() -> None:
    first = make_scenario(id="test/Taken-v1")
    simenv.register(first, source="first.py")
    second = make_scenario(id="test/Taken-v1")
    with pytest.raises(
        RegistrationError,
        match=r"'test/Taken-v1' is already registered from first.py; bump its -vN",
    ):
        simenv.register(second)
    assert simenv.load_scenario("test/Taken-v1") is first
    simenv.register(second, override=True)
    assert simenv.load_scenario("test/Taken-v1") is second
    assert gymnasium.make("test/Taken-v1").unwrapped.scenario is second


def test_register_takes_only_scenarios() -> None:
    with pytest.raises(RegistrationError, match=r"register\(\) takes a simenv.Scenario, got str"):
        simenv.register("test/Shelf-v1")  # type: ignore[arg-type]


def test_unknown_ids_suggest_close_matches() -> None:
    simenv.register(make_scenario(id="test/Shelf-v1"))
    simenv.register(make_scenario(id="other/Shelf-v2"))
    hint = re.escape("Did you mean: other/Shelf-v2, test/Shelf-v1?")
    with pytest.raises(RegistrationError, match=hint):
        simenv.make("test/Shelf-v9")
    with pytest.raises(RegistrationError, match=hint):
        simenv.make("shelf")
    with pytest.raises(RegistrationError) as info:
        simenv.make("test/Cupboard-v1")
    assert "Did you mean" not in str(info.value)
    assert "no scenario 'test/Cupboard-v1' is registered" in str(info.value)
    assert "simenv list" in str(info.value)


def test_make_accepts_a_scenario_object_without_registering_it() -> None:
    env = simenv.make(make_scenario(id="test/Unregistered-v1"))
    assert env.unwrapped.scenario.id == "test/Unregistered-v1"
    assert simenv.registry() == []


def test_make_passes_its_options_to_the_env() -> None:
    class Custom(MultiTurnEnv):
        pass

    env = simenv.make(make_scenario(), split="eval", max_turns=2, env_class=Custom)
    assert type(env.unwrapped) is Custom and env.unwrapped.split == "eval"
    assert env.reset(seed=0)[1]["max_turns"] == 2


# ----------------------------------------------------------------------------- files
def test_make_by_file_path(tmp_path: Path) -> None:
    path = _write(tmp_path / "greeter.py", "files/Greeter-v1")
    env = simenv.make(str(path))
    assert env.unwrapped.scenario.id == "files/Greeter-v1"
    assert simenv.spec("files/Greeter-v1").source == str(path)
    episode = simenv.rollout(env, Oracle(), seed=0)
    assert episode.reward == 1.0 and episode.success
    assert simenv.make(str(path)).unwrapped.scenario is env.unwrapped.scenario  # loaded once
    assert gymnasium.make("files/Greeter-v1").unwrapped.scenario.id == "files/Greeter-v1"


def test_make_by_package_directory(tmp_path: Path) -> None:
    package = tmp_path / "greeter_pkg"
    package.mkdir()
    _write(package / "__init__.py", "files/PackagedGreeter-v1")
    assert simenv.load_scenario(str(package)).id == "files/PackagedGreeter-v1"


def test_file_errors_say_what_to_fix(tmp_path: Path) -> None:
    with pytest.raises(RegistrationError, match=r"missing\.py: no such scenario file"):
        simenv.make(str(tmp_path / "missing.py"))
    empty = tmp_path / "empty.py"
    empty.write_text("X = 1\n")
    with pytest.raises(RegistrationError, match="defines neither SCENARIO nor SCENARIOS"):
        simenv.make(str(empty))
    wrong = tmp_path / "wrong.py"
    wrong.write_text("SCENARIO = 42\n")
    with pytest.raises(RegistrationError, match="gave int, not a Scenario"):
        simenv.make(str(wrong))
    two = tmp_path / "two.py"
    two.write_text(
        SCENARIO_FILE.replace("{id}", "files/One-v1")
        + "from dataclasses import replace\n"
        + 'SCENARIOS = [SCENARIO, replace(SCENARIO, id="files/Two-v1")]\n'
    )
    with pytest.raises(RegistrationError, match=r"defines 2 scenarios .*; name one by id"):
        simenv.make(str(two))
    assert simenv.load_scenario("files/Two-v1").id == "files/Two-v1"  # ... which then works


# ----------------------------------------------------------------------------- entry points
def test_entry_points_are_loaded_on_first_lookup(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write(tmp_path / "plugin_greeter.py", "plugin/Greeter-v1")
    monkeypatch.syspath_prepend(str(tmp_path))
    points = [
        importlib.metadata.EntryPoint("greeter", "plugin_greeter", "simenv.scenarios"),
        importlib.metadata.EntryPoint("single", "plugin_greeter:SCENARIO", "simenv.scenarios"),
    ]
    asked: list[str] = []

    def entry_points(*, group: str) -> list[importlib.metadata.EntryPoint]:
        asked.append(group)
        return points

    monkeypatch.setattr(registration.importlib.metadata, "entry_points", entry_points)
    monkeypatch.setattr(registration, "_entry_points_loaded", False)
    assert simenv.registry() == ["plugin/Greeter-v1"]
    assert asked == ["simenv.scenarios"]
    assert simenv.spec("plugin/Greeter-v1").source.startswith("entry point ")
    assert gymnasium.make("plugin/Greeter-v1").unwrapped.scenario.id == "plugin/Greeter-v1"
    simenv.registry()
    assert asked == ["simenv.scenarios"]  # loaded once


def test_a_broken_entry_point_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    broken = importlib.metadata.EntryPoint("broken", "no_such_module_xyz", "simenv.scenarios")
    monkeypatch.setattr(registration.importlib.metadata, "entry_points", lambda *, group: [broken])
    monkeypatch.setattr(registration, "_entry_points_loaded", False)
    with pytest.raises(
        RegistrationError,
        match=r"could not load entry point 'broken' .*ModuleNotFoundError.*fix or uninstall",
    ):
        simenv.make("test/Anything-v1")


# ----------------------------------------------------------------------------- gymnasium
def test_gymnasium_make_by_id() -> None:
    simenv.register(make_scenario(id="test/GymShelf-v1"))
    env = gymnasium.make("test/GymShelf-v1")
    assert isinstance(env.unwrapped, MultiTurnEnv)
    assert env.spec is not None and env.spec.id == "test/GymShelf-v1"
    _, info = env.reset(seed=0)
    assert info["scenario_id"] == "test/GymShelf-v1"


def test_an_id_taken_by_another_gymnasium_env_is_refused() -> None:
    with pytest.raises(RegistrationError):
        simenv.register(make_scenario(id="CartPole-v1"))


# ----------------------------------------------------------------------------- declarations
@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"tasks": []}, "has no tasks"),
        ({"tools": [count, count]}, r"tool names must be unique; repeated: \['count'\]"),
        ({"tools": [lambda: None]}, "must be decorated with @simenv.tool"),
        ({"finish_tools": ["nope"]}, "finish_tools names 'nope', which is not one of its tools"),
        ({"max_turns": 0}, "max_turns must be at least 1"),
        ({"sandbox": None}, r"tool 'count' asks for shelf: Shelf.*set sandbox=Shelf"),
        ({"sandbox": dict}, "sandbox must be a Sandbox subclass"),
        ({"tasks": [Task("a", "x"), Task("a", "y")]}, "task id 'a' is used twice"),
        ({"tasks": [Task("a", "x", split="test")]}, "use 'train' or 'eval'"),  # type: ignore[arg-type]
        ({"tasks": ["a"]}, "tasks must be simenv.Task objects"),
        ({"reward": None}, "reward and evaluate must be functions"),
        ({"reward_floor": 2.0}, "reward_floor 2.0 is above reward_ceiling 1.0"),
    ],
)
def test_bad_scenarios_fail_when_declared(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ScenarioError, match=message):
        make_scenario(**changes)


def test_a_scenario_lists_its_tasks_by_split() -> None:
    scenario = make_scenario(tools=[count, submit])
    assert [t.id for t in scenario.split("eval")] == ["t6", "t7"]
    assert len(scenario.split("train")) == 6 and scenario.split(None) == tuple(TASKS)
    assert scenario.task("t3") is TASKS[3]
