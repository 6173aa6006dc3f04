"""The simenv command, run as a user runs it."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from simenv.cli import app
from simenv.store import read_episodes

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
