"""Metrics against hand computations, and `simenv eval` on a real run."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from simenv import Episode, Step, ToolCall, ToolResult
from simenv.cli import app
from simenv.metrics import bootstrap_ci, compare, pass_at_k, pass_hat_k, summarize
from simenv.store import read_episodes


def test_pass_at_k_known_values() -> None:
    assert pass_at_k(10, 3, 5) == pytest.approx(0.916667, abs=1e-6)  # 1 - C(7,5)/C(10,5)
    assert pass_at_k(10, 0, 5) == 0.0 and pass_at_k(10, 6, 5) == 1.0
    assert pass_at_k(4, 1, 1) == 0.25
    assert pass_hat_k(10, 3, 2) == pytest.approx(3 / 45)  # C(3,2)/C(10,2)
    assert pass_hat_k(4, 4, 4) == 1.0
    with pytest.raises(ValueError):
        pass_at_k(3, 1, 4)


def test_bootstrap_is_seeded_and_brackets_the_mean() -> None:
    values = [0.0, 1.0, 1.0, 0.5, 0.25, 1.0, 0.0, 0.75]
    low, high = bootstrap_ci(values, seed=3)
    assert (low, high) == bootstrap_ci(values, seed=3)
    assert low < sum(values) / len(values) < high
    assert all(math.isnan(x) for x in bootstrap_ci([]))


def episode(
    task: str,
    reward: float,
    success: bool,
    *,
    valid: bool = True,
    calls: int = 1,
    errors: int = 0,
    termination: str = "answer",
) -> Episode:
    steps = tuple(
        Step(i + 1, {"role": "assistant", "content": ""},
             (ToolCall(f"c{i}", "lookup", {}),),
             (ToolResult(f"c{i}", "lookup", "x", i < errors),))
        for i in range(calls)
    )  # fmt: skip
    return Episode(
        "a/B-v1",
        task,
        0,
        (),
        steps,
        reward,
        evaluation=float(success),
        termination=termination,
        valid=valid,
    )


def test_summarize_by_hand() -> None:
    runs = [
        episode("t1", 1.0, True, calls=2),
        episode("t1", 0.0, False, calls=1, errors=1),
        episode("t2", 0.5, False, calls=3, errors=2, termination="max_turns"),
        episode("t2", 1.0, True, calls=2),
        episode("t2", 0.0, False, valid=False, termination="infra_error"),
    ]
    m = summarize(runs, ks=(1, 2))
    assert m["episodes"] == 5 and m["episode/invalid_rate"] == 0.2
    assert m["episode/reward"] == pytest.approx(2.5 / 4)
    assert m["eval/success"] == 0.5
    assert m["episode/turns"] == pytest.approx(8 / 4)
    assert m["tools/calls"] == {"lookup": 8} and m["tools/error_rate"] == pytest.approx(3 / 8)
    assert m["episode/termination"] == {"answer": 3, "max_turns": 1, "infra_error": 1}
    # t1: n=2 c=1, t2 (valid only): n=2 c=1 -> pass@2 = 1, pass^2 = 0, pass@1 = 0.5
    assert m["eval/pass@1"] == 0.5 and m["eval/pass@2"] == 1.0 and m["eval/pass^2"] == 0.0
    assert m["tasks"]["t2"] == {"samples": 2, "reward": 0.75, "success": 0.5}


def test_paired_comparison() -> None:
    a = [episode("t1", 0.0, False), episode("t2", 0.5, False), episode("t3", 1.0, True)]
    b = [episode("t1", 1.0, True), episode("t2", 1.0, True), episode("t4", 1.0, True)]
    c = compare(a, b)
    assert c["tasks"] == 2 and c["difference"] == pytest.approx(0.75)
    low, high = c["difference_ci95"]
    assert 0.5 <= low <= high <= 1.0


def test_eval_command_matches_a_hand_computation(tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "run.jsonl"
    result = runner.invoke(app, ["run", "support/Triage-v1", "-p", "random", "--samples", "3",
                                 "--out", str(out)])  # fmt: skip
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["eval", str(out), "--k", "1,3", "--json"])
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)["metrics"]
    episodes = list(read_episodes(out))
    assert metrics["episode/reward"] == pytest.approx(
        sum(e.reward for e in episodes) / len(episodes)
    )
    wins: dict[str, int] = {}
    for e in episodes:
        wins[e.task_id] = wins.get(e.task_id, 0) + e.success
    expected = sum(pass_at_k(3, c, 3) for c in wins.values()) / len(wins)
    assert metrics["eval/pass@3"] == pytest.approx(expected)
    bad = runner.invoke(app, ["eval", str(tmp_path / "missing.jsonl")])
    assert bad.exit_code == 2
