"""code/Repair-v1: the task data (no engine needed) and its scoring in real containers.

The generic scenario tests (tests/test_scenarios.py) play the oracle and the null agent on every
task; this file checks what they cannot see: every bug is caught by its edge cases, the inputs
the seed draws are valid, the test files and harnesses work, and the reward and evaluation
resist broken, endless and forged solutions.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import simenv
from scenarios import code_repair
from scenarios.code_repair import (
    EVAL_HARNESS,
    HIDDEN_HARNESS,
    SCENARIO,
    Workspace,
    outcome_of,
    reference,
)
from simenv.parsing import format_tool_call

SECTIONS = (
    "## Description", "## Tools", "## Observation", "## Starting state", "## Reward",
    "## Evaluation", "## Episode end", "## Example", "## Version history",
)  # fmt: skip


def _buggy(task: simenv.Task) -> Any:
    return reference(task.data["function"], task.data["buggy"])


def _gold(task: simenv.Task) -> Any:
    return reference(task.data["function"], task.data["gold_source"])


# ----------------------------------------------------------------------------- data
def test_at_least_30_tasks_with_both_splits_and_a_spec() -> None:
    assert len(SCENARIO.tasks) >= 30
    assert len(SCENARIO.split("eval")) >= 8 and len(SCENARIO.split("train")) >= 20
    assert all(section in SCENARIO.doc for section in SECTIONS)
    assert len({t.data["function"] for t in SCENARIO.tasks}) == len(SCENARIO.tasks)


@pytest.mark.parametrize("task", SCENARIO.tasks, ids=lambda t: t.id)
def test_every_edge_case_catches_the_bug(task: simenv.Task) -> None:
    for args in task.data["edges"]:
        expected = outcome_of(_gold(task), args)
        assert expected[0] == "value", (args, expected)
        assert outcome_of(_buggy(task), args) != expected, args


@pytest.mark.parametrize("task", SCENARIO.tasks, ids=lambda t: t.id)
def test_seeded_inputs_are_valid_and_comparable(task: simenv.Task) -> None:
    gold = _gold(task)
    first = Workspace().files(np.random.default_rng(7), task)
    assert Workspace().files(np.random.default_rng(7), task) == first
    assert Workspace().files(np.random.default_rng(8), task) != first
    ws = Workspace()
    ws.files(np.random.default_rng(0), task)
    for args in ws._eval_inputs + [args for args, _ in ws._hidden]:
        kind, value = outcome_of(gold, args)
        assert kind == "value", (args, value)
        json.dumps(args)  # inputs travel as literals
        assert ast.literal_eval(repr(value)) == value  # and outputs come back as repr


def _run_on_host(harness: str) -> str:
    """Run a scoring harness on the host (trusted reference code only)."""
    done = subprocess.run(
        [sys.executable, "-I", "-B", "-"],
        input=harness,
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip().splitlines()[-1] if done.returncode == 0 else ""


@pytest.mark.parametrize("task_id", ["repair-clamp", "repair-to_roman"])
def test_test_file_and_harnesses_tell_fixed_from_buggy(task_id: str, tmp_path: Path) -> None:
    task = SCENARIO.task(task_id)
    ws = Workspace()
    files = ws.files(np.random.default_rng(3), task)
    (tmp_path / "test_solution.py").write_text(files["test_solution.py"])
    for source, passes in ((task.data["gold_source"], True), (task.data["buggy"], False)):
        (tmp_path / "solution.py").write_text(source)
        visible = subprocess.run(
            [sys.executable, "-B", "test_solution.py"],  # -B: no stale .pyc of the last source
            cwd=tmp_path,
            capture_output=True,
            text=True,
            check=False,
        )
        assert (visible.returncode == 0) is passes, visible.stdout
        hidden = HIDDEN_HARNESS.format(
            work=str(tmp_path),
            name=task.data["function"],
            cases=repr(ws._hidden),
            total=len(ws._hidden),
            nonce="n",
        )
        report = json.loads(_run_on_host(hidden))
        assert (report["passed"] == report["total"]) is passes
        inputs = EVAL_HARNESS.format(
            work=str(tmp_path), name=task.data["function"], inputs=ws._eval_inputs
        )
        values = json.loads(_run_on_host(inputs))
        assert len(values) == len(ws._eval_inputs)


def test_the_oracle_writes_the_reference() -> None:
    task = SCENARIO.task("repair-gcd")
    plan = code_repair.oracle(task, Workspace())
    assert json.dumps(task.data["gold_source"]) in plan[1] and plan[-1].startswith("Fixed")


# ----------------------------------------------------------------------------- in containers
def _play(task_id: str, solution: str | None, seed: int = 0) -> simenv.Episode:
    env = simenv.make(SCENARIO)
    actions = []
    if solution is not None:
        actions.append(format_tool_call("write_file", {"path": "solution.py", "content": solution}))
    actions.append("Done.")
    policy = simenv.rollouts.policies.Scripted(actions)
    episode = simenv.rollout(env, policy, seed=seed, task_id=task_id)
    env.close()
    return episode


@pytest.mark.parametrize("solution", ["def gcd(a, b:\n", "raise SystemExit(3)\n", "gcd = 5\n"])
@pytest.mark.usefixtures("base_image")
@pytest.mark.simenv_docker
def test_broken_solutions_score_zero_and_stay_valid(solution: str) -> None:
    episode = _play("repair-gcd", solution)
    assert episode.valid and episode.reward == 0.0 and episode.evaluation == 0.0


@pytest.mark.usefixtures("base_image")
@pytest.mark.simenv_docker
def test_an_endless_solution_scores_zero(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(code_repair, "CHECK_TIMEOUT_S", 1.0)
    episode = _play("repair-gcd", "def gcd(a, b):\n    while True:\n        pass\n")
    assert episode.valid and episode.reward == 0.0 and episode.evaluation == 0.0


NAIVE_FORGERY = """\
import json, os
print(json.dumps({"passed": 10, "total": 10}))
os._exit(0)
"""

TARGETED_FORGERY = """\
import json
_dumps = json.dumps
def _forged(obj, *args, **kwargs):
    if isinstance(obj, dict) and "passed" in obj:
        obj = {**obj, "passed": obj["total"]}
    return _dumps(obj, *args, **kwargs)
json.dumps = _forged

def gcd(a, b):
    return 1
"""


@pytest.mark.usefixtures("base_image")
@pytest.mark.simenv_docker
def test_forged_reports_never_pass_the_evaluation() -> None:
    naive = _play("repair-gcd", NAIVE_FORGERY)
    assert naive.reward == 0.0 and naive.evaluation == 0.0
    # A solution that patches the grading code it runs in fools the in-container reward (the
    # documented limit of graders that share the container), never the host-side evaluation:
    # the gap between the two is what makes such reward hacking visible in reports.
    targeted = _play("repair-gcd", TARGETED_FORGERY)
    assert targeted.reward == 1.0 and targeted.evaluation == 0.0


@pytest.mark.usefixtures("base_image")
@pytest.mark.simenv_docker
def test_the_tools_through_the_environment() -> None:
    env = simenv.make(SCENARIO)
    env.reset(seed=4, options={"task_id": "repair-factorial"})

    def call(name: str, **arguments: Any) -> str:
        observation, *_ = env.step(format_tool_call(name, arguments))
        return str(observation[-1]["content"])

    assert call("list_files").splitlines()[0].startswith("solution.py (")
    assert "range(1, n)" in call("read_file", path="solution.py")
    assert "FAIL factorial(5) returned 24, expected 120" in call("run_tests")
    assert "occurs 2 times" in call("replace_in_file", path="solution.py", old="n):", new="")
    assert "does not occur" in call("replace_in_file", path="solution.py", old="zzz", new="")
    assert call(
        "replace_in_file", path="solution.py", old="range(1, n)", new="range(1, n + 1)"
    ).startswith("Replaced 1")
    assert call("run_tests").endswith("4 of 4 tests passed")
    assert call("run_python", code="from solution import factorial; print(factorial(6))") == "720"
    assert "outside the work directory" in call("read_file", path="/etc/passwd")
    assert call("write_file", path="notes.txt", content="hé").startswith("Wrote 3 bytes")
    _, reward, terminated, _, info = env.step("Fixed.")
    assert terminated and info["valid"] and reward == 1.0 and info["evaluation"] == 1.0
    env.close()


@pytest.mark.usefixtures("base_image")
@pytest.mark.simenv_docker
def test_the_seed_draws_the_visible_and_hidden_cases() -> None:
    env = simenv.make(SCENARIO)
    seen = []
    for seed in (1, 1, 2):
        env.reset(seed=seed, options={"task_id": "repair-clamp"})
        ws = env.unwrapped.state
        seen.append((ws.read_file("test_solution.py"), repr(ws._hidden), repr(ws._eval_inputs)))
    env.close()
    assert seen[0] == seen[1]
    assert all(a != b for a, b in zip(seen[0], seen[2], strict=True))
