"""The simenv command, run as a user runs it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

import simenv
from simenv.cli import app
from simenv.rollouts.store import read_episodes

runner = CliRunner()
DESK = "support/Refunds-v1"


def test_list_shows_bundled_scenarios() -> None:
    result = runner.invoke(app, ["list"])
    assert result.exit_code == 0, result.output
    assert DESK in result.output


def test_show_prints_spec_and_tools() -> None:
    result = runner.invoke(app, ["show", DESK])
    assert result.exit_code == 0, result.output
    for name in ("issue_refund", "deny_refund", "lookup_order", "Starting state"):
        assert name in result.output


def test_run_writes_episodes_whose_rewards_match_the_summary(tmp_path: Path) -> None:
    out = tmp_path / "run.jsonl"
    args = ["run", DESK, "-p", "oracle", "-p", "null", "-n", "7", "--out", str(out), "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    episodes = list(read_episodes(out))
    assert len(episodes) == 14
    for row in summary["policies"]:
        mine = [e for e in episodes if e.policy["name"] == row["policy"]]
        assert len(mine) == row["episodes"] == 7
        assert row["mean_reward"] == sum(e.reward for e in mine) / 7
    lines = out.read_text().splitlines()
    assert all("reward" in json.loads(line) for line in lines)
    assert {row["policy"]: row["mean_reward"] for row in summary["policies"]} == {
        "oracle": 1.0,
        "null": 0.0,
    }


def test_run_refuses_to_overwrite_and_resumes(tmp_path: Path) -> None:
    out = tmp_path / "run.jsonl"
    assert runner.invoke(app, ["run", DESK, "-n", "3", "--out", str(out)]).exit_code == 0
    again = runner.invoke(app, ["run", DESK, "-n", "5", "--out", str(out)])
    assert again.exit_code == 2 and "--resume" in again.output
    resumed = runner.invoke(app, ["run", DESK, "-n", "5", "--out", str(out), "--resume"])
    assert resumed.exit_code == 0, resumed.output
    assert len(list(read_episodes(out))) == 5


def test_unknown_id_and_bad_policy_fail_cleanly() -> None:
    result = runner.invoke(app, ["run", "nope/Missing-v1"])
    assert result.exit_code == 2
    assert "no scenario 'nope/Missing-v1'" in result.output
    assert "Traceback" not in result.output
    result = runner.invoke(app, ["run", DESK, "-p", "genius"])
    assert result.exit_code == 2 and "unknown policy" in result.output


def test_run_accepts_a_scenario_file(tmp_path: Path) -> None:
    example = Path(__file__).resolve().parents[1] / "docs" / "examples" / "counter.py"
    result = runner.invoke(app, ["run", str(example), "-p", "oracle", "-p", "null", "--json"])
    assert result.exit_code == 0, result.output
    rows = {r["policy"]: r for r in json.loads(result.stdout)["policies"]}
    assert rows["oracle"]["mean_reward"] == 1.0 and rows["null"]["mean_reward"] == 0.0


def test_check_passes_and_reports_json() -> None:
    result = runner.invoke(app, ["check", DESK, "--fast", "--json", "--only", "api"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)[0]
    assert report["ok"] and report["results"][0]["check"] == "api"


def test_check_exits_non_zero_on_failure(tmp_path: Path) -> None:
    example = Path(__file__).resolve().parents[1] / "docs" / "examples" / "counter.py"
    broken = tmp_path / "broken.py"
    text = example.read_text().replace('id="demo/Counter-v1"', 'id="demo/Broken-v1"')
    broken.write_text(
        text.replace(
            "def reward(o: Outcome) -> float:\n",
            "def reward(o: Outcome) -> float:\n    return 1.0\n",
        )
    )
    result = runner.invoke(app, ["check", str(broken), "--fast", "--only", "reward"])
    assert result.exit_code == 1
    assert "do-nothing agent earned 1.0" in result.output


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and "simenv" in result.output


# --------------------------------------------------------------------------- a scenario of our own
# The tests below use a scenario written to a temporary file, so they hold whatever is bundled.
TINY = '''
"""Tiny: write the note the user asks for."""

from __future__ import annotations

from typing import Literal

import numpy as np

from simenv import Outcome, Sandbox, Scenario, Task, tool
from simenv.parsing import format_tool_call


class Notes(Sandbox):
    def setup(self, rng: np.random.Generator, task: Task) -> None:
        self.notes: list[str] = []
        self.pin = int(rng.integers(0, 1000))


@tool(effect="write")
def write(notes: Notes, text: str, kind: Literal["a", "b"], tags: list[str] | None = None) -> str:
    """Write [one] note.

    Args:
        text: The text.
        kind: a or b.
        tags: Tags.
    """
    notes.notes.append(text)
    return "saved"


@tool
def submit(notes: Notes) -> str:
    """Finish."""
    return "bye"


def reward(o: Outcome) -> float:
    return float(o.task.data["text"] in o.final.notes)


def evaluate(o: Outcome) -> bool:
    return any(c["text"] == o.task.data["text"] for c in o.called("write"))


def oracle(task: Task, notes: Notes) -> list[str]:
    return [format_tool_call("write", {"text": task.data["text"], "kind": "a"}), "Done."]


SCENARIO = Scenario(
    id="test/Tiny-v1",
    doc=__doc__ or "",
    system_prompt="Write notes.",
    tools=[write, submit],
    tasks=[
        Task(id=f"n-{i}", prompt=f"Note [/]{i}", split="train" if i < 3 else "eval",
             data={"text": f"t{i}"})
        for i in range(5)
    ],
    sandbox=Notes,
    reward=reward,
    evaluate=evaluate,
    oracle=oracle,
    max_turns=4,
    finish_tools=["submit"],
)
'''


@pytest.fixture
def tiny(tmp_path: Path) -> str:
    path = tmp_path / "tiny.py"
    path.write_text(TINY)
    return str(path)


def test_run_plays_split_tasks_with_consecutive_seeds(tiny: str, tmp_path: Path) -> None:
    out = tmp_path / "runs" / "tiny.jsonl"
    args = ["run", tiny, "-p", "oracle", "-p", "null", "-p", "random", "-n", "5", "--seed", "10"]
    result = runner.invoke(app, [*args, "--split", "train", "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["scenario_id"] == "test/Tiny-v1"
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 15
    # Episode i plays task train[i % 3] with seed 10 + i.
    expected = [("n-0", 10), ("n-1", 11), ("n-2", 12), ("n-0", 13), ("n-1", 14)]
    for row in summary["policies"]:
        mine = [r for r in records if r["policy"]["name"] == row["policy"]]
        assert sorted((r["task_id"], r["seed"]) for r in mine) == sorted(expected)
        episodes = [simenv.Episode.from_dict(r) for r in mine]
        assert row["episodes"] == 5 and row["invalid"] == 0
        assert row["mean_reward"] == pytest.approx(sum(r["reward"] for r in mine) / 5)
        assert row["success_rate"] == pytest.approx(sum(e.success for e in episodes) / 5)
        assert row["mean_turns"] == pytest.approx(sum(e.turns for e in episodes) / 5)
        errors = sum(e.tool_errors for e in episodes) / 5
        assert row["tool_errors_per_episode"] == pytest.approx(errors)
    rows = {row["policy"]: row for row in summary["policies"]}
    assert rows["oracle"]["mean_reward"] == 1.0 and rows["oracle"]["success_rate"] == 1.0
    assert rows["null"]["mean_reward"] == 0.0 and rows["null"]["mean_turns"] == 1.0


def test_run_prints_one_table_row_per_policy(tiny: str) -> None:
    result = runner.invoke(app, ["run", tiny, "-p", "oracle", "-p", "null"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert any("mean reward" in line for line in lines)
    oracle = next(line for line in lines if "oracle" in line)
    null = next(line for line in lines if "null" in line)
    assert "1.000" in oracle and "100.0%" in oracle
    assert "0.000" in null and "0.0%" in null


def test_show_lists_tools_with_types_and_prints_text_literally(tiny: str) -> None:
    result = runner.invoke(app, ["show", tiny])
    assert result.exit_code == 0, result.output
    text = result.stdout
    for expected in (
        "Tiny: write the note",
        'kind: "a" | "b"',
        "text: string",
        "tags: array[string] |",  # null, optional: the cell may wrap here
        "Write [one] note.",  # brackets are text, not rich markup
        "3 train, 2 eval",
        "max_turns=4",
        "finish tools: submit",
        "n-0 Note [/]0",  # a prompt with a closing tag once crashed the command
    ):
        assert expected in text, expected


def test_list_includes_a_scenario_loaded_from_a_file(tiny: str) -> None:
    assert runner.invoke(app, ["show", tiny]).exit_code == 0
    result = runner.invoke(app, ["list"])
    assert result.exit_code == 0, result.output
    assert "test/Tiny-v1" in result.stdout


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("import simenv\nx = (\n", "SyntaxError: '(' was never closed"),
        ('"""Doc."""\n\nraise RuntimeError("boom")\n', "(line 3): RuntimeError: boom"),
        ("X = 1\n", "defines neither SCENARIO nor SCENARIOS"),
    ],
)
def test_a_broken_scenario_file_is_one_clean_error(
    tmp_path: Path, source: str, message: str
) -> None:
    path = tmp_path / "broken_scenario.py"
    path.write_text(source)
    for command in ("show", "run"):
        result = runner.invoke(app, [command, str(path)])
        assert result.exit_code == 2
        assert message in result.output
        assert "Traceback" not in result.output


def test_run_rejects_bad_options(tiny: str, tmp_path: Path) -> None:
    result = runner.invoke(app, ["run", tiny, "-n", "0"])
    assert result.exit_code == 2 and "-n" in result.output
    result = runner.invoke(app, ["run", tiny, "--split", "test"])
    assert result.exit_code == 2 and "--split must be train, eval or all" in result.output
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    result = runner.invoke(app, ["run", tiny, "--out", str(blocker / "run.jsonl")])
    assert result.exit_code == 2 and "cannot write --out" in result.output
    assert "Traceback" not in result.output
