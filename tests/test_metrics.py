"""simenv.evaluation.metrics and `simenv eval` against hand computations on a small JSONL."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from simenv import Episode, Step, ToolCall, ToolResult
from simenv.cli import app as simenv_app
from simenv.cli.evaluate import register
from simenv.evaluation import (
    bootstrap_ci,
    compare,
    group_key,
    pass_at_k,
    pass_hat_k,
    split_runs,
    summarize,
)
from simenv.rollouts.store import read_episodes

app = typer.Typer()
register(app)
runner = CliRunner()


# ----------------------------------------------------------------------------- estimators
def test_pass_at_k_known_values() -> None:
    assert pass_at_k(10, 3, 5) == pytest.approx(0.9166666666, abs=1e-9)  # 1 - C(7,5)/C(10,5)
    assert round(pass_at_k(10, 3, 5), 4) == 0.9167
    assert pass_at_k(10, 0, 5) == 0.0 and pass_at_k(10, 6, 5) == 1.0  # n - c < k: always
    assert pass_at_k(4, 1, 1) == 0.25 and pass_at_k(4, 2, 2) == pytest.approx(5 / 6)


def test_pass_hat_k_known_values() -> None:
    assert pass_hat_k(10, 3, 2) == pytest.approx(3 / 45)  # C(3,2)/C(10,2)
    assert pass_hat_k(10, 3, 5) == 0.0  # fewer successes than k
    assert pass_hat_k(10, 8, 5) == pytest.approx(56 / 252)  # C(8,5)/C(10,5)
    assert pass_hat_k(4, 4, 4) == 1.0
    assert pass_hat_k(7, 3, 1) == pass_at_k(7, 3, 1) == pytest.approx(3 / 7)


@pytest.mark.parametrize(("n", "c", "k"), [(3, 1, 4), (3, 1, 0), (3, 4, 1), (3, -1, 1)])
def test_estimators_refuse_impossible_counts(n: int, c: int, k: int) -> None:
    with pytest.raises(ValueError):
        pass_at_k(n, c, k)
    with pytest.raises(ValueError):
        pass_hat_k(n, c, k)


def test_bootstrap_is_seeded_and_brackets_the_mean() -> None:
    values = [0.13, 0.92, 0.57, 0.31, 0.77, 0.05, 0.66, 0.48]
    low, high = bootstrap_ci(values, seed=3)
    assert (low, high) == bootstrap_ci(values, seed=3)
    assert (low, high) != bootstrap_ci(values, seed=4)
    assert low < sum(values) / len(values) < high
    assert bootstrap_ci(values, confidence=0.5, seed=3)[0] > low  # narrower at lower confidence
    assert all(math.isnan(x) for x in bootstrap_ci([]))
    assert bootstrap_ci([2.0, 2.0]) == (2.0, 2.0)


def test_cluster_bootstrap_resamples_whole_clusters() -> None:
    # One label per value is the plain bootstrap, draw for draw.
    values = [0.1, 0.9, 0.4, 0.7, 0.3]
    assert bootstrap_ci(values, clusters=range(5), seed=1) == bootstrap_ci(values, seed=1)
    # Two clusters of identical values: a resample's mean is 0, 1/2 or 1 (probability 1/4 each
    # end), so the 95% interval is [0, 1], where the plain bootstrap over 6 values is narrower.
    values = [0.0, 0.0, 0.0, 1.0, 1.0, 1.0]
    assert bootstrap_ci(values, clusters=list("aaabbb")) == (0.0, 1.0)
    low, high = bootstrap_ci(values)
    assert low > 0.0 and high < 1.0
    with pytest.raises(ValueError):
        bootstrap_ci(values, clusters="ab")


# ----------------------------------------------------------------------------- a small run
def episode(
    task: str,
    index: int | None,
    sample: int,
    reward: float,
    success: bool,
    calls: list[tuple[str, bool]],
    *,
    termination: str = "answer",
    valid: bool = True,
    metadata: dict[str, Any] | None = None,
    policy: str = "scripted",
) -> Episode:
    """An episode with one turn per tool call, then a final answer turn."""
    steps = []
    for i, (name, failed) in enumerate(calls):
        call = ToolCall(f"c{i}", name, {"x": i}, "bad JSON" if not name else None)
        result = ToolResult(f"c{i}", name, "error" if failed else "ok", failed, "sandbox", 0.002)
        steps.append(Step(i + 1, {"role": "assistant", "content": ""}, (call,), (result,)))
    steps.append(Step(len(calls) + 1, {"role": "assistant", "content": "done"}, reward=reward))
    meta = dict(metadata or {})
    if index is not None:
        meta["job"] = {"key": f"{task}#{sample}@{index}", "sample": sample}
    return Episode(
        "test/Hand-v1",
        task,
        index or 0,
        ({"role": "user", "content": f"do {task}"},),
        tuple(steps),
        reward,
        reward_components={"part": reward},
        evaluation=(1.0 if success else 0.0) if valid else None,
        termination=termination,
        valid=valid,
        error=None if valid else "sandbox down",
        policy={"name": policy},
        metadata=meta,
        group=index,
    )


LOOKUP, REFUND = ("lookup", False), ("refund", False)
TOKENS = {"turns": [{"prompt_ids": [1] * 10, "completion_ids": [2] * 5},
                    {"prompt_ids": [1] * 20, "completion_ids": [2] * 3}]}  # fmt: skip

# Three groups: A = (t1, index 0) n=4 c=2; B = (t2, index 1) n=4 c=1 plus one invalid sample;
# C = (t1, index 2) n=2 c=2. Tool calls: lookup 7 (1 error), refund 5 (1 error), 1 malformed.
RUN = [
    episode("t1", 0, 0, 1.0, True, [LOOKUP, REFUND], metadata=TOKENS),
    episode("t1", 0, 1, 0.0, False, [("lookup", True)]),
    episode("t1", 0, 2, 1.0, True, [LOOKUP, REFUND]),
    episode("t1", 0, 3, 0.5, False, [LOOKUP, LOOKUP], termination="max_turns"),
    episode("t2", 1, 0, 0.0, False, [],
            metadata={"usage": {"prompt_tokens": 12, "completion_tokens": 4}}),
    episode("t2", 1, 1, 0.0, False, [("", True)], termination="max_turns"),
    episode("t2", 1, 2, 0.25, False, [LOOKUP]),
    episode("t2", 1, 3, 1.0, True, [LOOKUP, REFUND]),
    episode("t2", 1, 4, 0.0, False, [LOOKUP], termination="infra_error", valid=False),
    episode("t1", 2, 0, 1.0, True, [REFUND]),
    episode("t1", 2, 1, 1.0, True, [("refund", True)]),
]  # fmt: skip


@pytest.fixture
def run_file(tmp_path: Path) -> Path:
    path = tmp_path / "hand.jsonl"
    path.write_text("".join(e.to_json() + "\n" for e in RUN))
    return path


def test_summary_matches_a_hand_computation(run_file: Path) -> None:
    s = summarize(list(read_episodes(run_file)), ks=(1, 2, 4))
    m = s.metrics
    assert (s.episodes, s.valid, s.tasks, s.groups) == (11, 10, 2, 3)
    assert m["episode/invalid_rate"] == pytest.approx(1 / 11)
    assert m["episode/reward"] == pytest.approx(5.75 / 10)  # the invalid episode is left out
    assert m["eval/success"] == pytest.approx(5 / 10)
    assert m["episode/turns"] == pytest.approx(23 / 10)  # 13 tool turns + 10 answers
    # pass@1 = mean c/n = (2/4 + 1/4 + 2/2) / 3
    assert m["eval/pass@1"] == pytest.approx((0.5 + 0.25 + 1) / 3)
    # pass@2: A 1 - C(2,2)/C(4,2) = 5/6, B 1 - C(3,2)/C(4,2) = 1/2, C 1
    assert m["eval/pass@2"] == pytest.approx((5 / 6 + 1 / 2 + 1) / 3)
    # pass^2: A C(2,2)/C(4,2) = 1/6, B 0, C 1
    assert m["eval/pass^2"] == pytest.approx((1 / 6 + 0 + 1) / 3)
    # k=4: only A and B have 4 valid samples; both have a success, neither has 4.
    assert m["eval/pass@4"] == 1.0 and m["eval/pass^4"] == 0.0
    assert s.pass_groups == {1: 3, 2: 3, 4: 2}
    assert m["episode/reward_ci_low"] <= m["episode/reward"] <= m["episode/reward_ci_high"]
    assert m["eval/success_ci_low"] <= m["eval/success"] <= m["eval/success_ci_high"]
    # tokens: (10+20, 5+3) and (12, 4), averaged over the two episodes that recorded them
    assert m["episode/prompt_tokens"] == 21 and m["episode/completion_tokens"] == 6


def test_tool_and_termination_counts(run_file: Path) -> None:
    s = summarize(list(read_episodes(run_file)))
    assert {name: t["calls"] for name, t in s.tools.items()} == {
        "lookup": 7, "refund": 5, "<malformed>": 1
    }  # fmt: skip
    assert {name: t["errors"] for name, t in s.tools.items()} == {
        "lookup": 1, "refund": 1, "<malformed>": 1
    }  # fmt: skip
    assert s.tools["lookup"]["calls_per_episode"] == pytest.approx(0.7)
    assert s.tools["refund"]["error_rate"] == pytest.approx(1 / 5)
    assert s.tools["lookup"]["latency_s"] == pytest.approx(0.002)
    assert s.metrics["tools/calls_per_episode"] == pytest.approx(13 / 10)
    assert s.metrics["tools/error_rate"] == pytest.approx(3 / 13)
    assert s.metrics["tools/lookup/calls_per_episode"] == pytest.approx(0.7)
    assert s.termination == {"answer": 8, "max_turns": 2, "infra_error": 1}
    assert s.metrics["termination/max_turns"] == pytest.approx(2 / 11)


def test_per_task_figures(run_file: Path) -> None:
    s = summarize(list(read_episodes(run_file)), ks=(1, 2))
    t1, t2 = s.per_task["t1"], s.per_task["t2"]
    assert t1["episode/count"] == 6 and t1["episode/reward"] == pytest.approx(4.5 / 6)
    assert t1["eval/success"] == pytest.approx(4 / 6)
    assert t1["eval/pass@2"] == pytest.approx((5 / 6 + 1) / 2)  # groups A and C
    assert t2["episode/count"] == 5 and t2["episode/invalid_rate"] == pytest.approx(0.2)
    assert t2["episode/reward"] == pytest.approx(1.25 / 4) and t2["eval/pass@2"] == 0.5


def test_groups_come_from_the_job_record_else_the_task() -> None:
    assert group_key(RUN[0]) == "t1#0" and group_key(RUN[-1]) == "t1#2"
    plain = [episode("t1", None, 0, 1.0, True, []), episode("t1", None, 1, 0.0, False, [])]
    assert {group_key(e) for e in plain} == {"t1"}
    s = summarize(plain, ks=(2,))
    assert s.groups == 1 and s.metrics["eval/pass@2"] == 1.0 and s.metrics["eval/pass^2"] == 0


def test_undefined_metrics_are_absent_not_zero() -> None:
    broken = [episode("t1", 0, 0, 0.0, False, [], valid=False, termination="infra_error")]
    s = summarize(broken, ks=(1,))
    assert s.metrics == {"episode/invalid_rate": 1.0, "termination/infra_error": 1.0}
    assert s.pass_groups == {1: 0}
    assert "episode/prompt_tokens" not in summarize(RUN[1:2]).metrics
    with pytest.raises(ValueError):
        summarize(RUN, ks=(0,))


def test_summary_json_is_strict() -> None:
    text = json.dumps(summarize(RUN).to_dict(), allow_nan=False)
    assert json.loads(text)["metrics"]["eval/success"] == 0.5


def test_runs_split_by_policy() -> None:
    mixed = [*RUN[:2], episode("t1", None, 0, 1.0, True, [], policy="oracle")]
    mixed.append(
        Episode("test/Hand-v1", "t9", 5, (), (), 0.0, policy={"name": "random"},
                metadata={"job": {"key": "random:t9#0@5", "sample": 0}}, group=0)
    )  # fmt: skip
    assert {label: len(es) for label, es in split_runs(mixed).items()} == {
        "scripted": 2, "oracle": 1, "random": 1
    }  # fmt: skip


# ----------------------------------------------------------------------------- comparison
def test_paired_comparison_by_hand() -> None:
    run = [
        episode("t1", None, 0, 1.0, True, []),
        episode("t1", None, 1, 1.0, True, []),
        episode("t2", None, 0, 0.5, False, []),
        episode("t3", None, 0, 0.0, False, []),
    ]
    baseline = [
        episode("t1", None, 0, 0.0, False, []),
        episode("t1", None, 1, 0.5, False, []),
        episode("t2", None, 0, 0.5, False, []),
        episode("t2", None, 1, 0.0, False, [], valid=False),  # left out of t2's mean
        episode("t4", None, 0, 1.0, True, []),
    ]
    c = compare(run, baseline)
    assert c.tasks == 2 and c.only_run == ("t3",) and c.only_baseline == ("t4",)
    reward = c.differences["episode/reward"]
    # t1: 1.0 - 0.25 = 0.75; t2: 0.5 - 0.5 = 0
    assert (reward.run, reward.baseline, reward.difference) == (0.75, 0.375, 0.375)
    assert (reward.wins, reward.losses, reward.ties) == (1, 0, 1)
    # Resampling the two task differences gives 0, 0.375 or 0.75 (1/4 at each end).
    assert (reward.ci_low, reward.ci_high) == (0.0, 0.75)
    assert c.per_task == {
        "t1": {"episode/reward": 0.75, "eval/success": 1.0},
        "t2": {"episode/reward": 0.0, "eval/success": 0.0},
    }
    assert c.differences["eval/success"].difference == 0.5
    assert compare(run, baseline) == c  # seeded
    assert json.loads(json.dumps(c.to_dict()))["tasks"] == 2


# ----------------------------------------------------------------------------- the command
def test_eval_json_matches_the_hand_computation(run_file: Path) -> None:
    result = runner.invoke(app, ["eval", str(run_file), "--k", "1,2", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    (summary,) = report["runs"].values()
    assert summary["metrics"]["eval/pass@2"] == pytest.approx((5 / 6 + 1 / 2 + 1) / 3)
    assert summary["metrics"]["episode/reward"] == pytest.approx(0.575)
    assert summary["tools"]["refund"]["calls"] == 5
    assert summary["termination"] == {"answer": 8, "max_turns": 2, "infra_error": 1}
    assert report["baseline"] is None and report["comparisons"] == {}


def test_eval_table_and_comparison(run_file: Path, tmp_path: Path) -> None:
    base = tmp_path / "base.jsonl"
    base.write_text("".join(e.to_json() + "\n" for e in RUN[:4]))
    result = runner.invoke(app, ["eval", str(run_file), "--compare", str(base), "--per-task"])
    assert result.exit_code == 0, result.output
    for text in ("eval/pass@4", "0.575", "paired comparison", "lookup", "per task", "max_turns"):
        assert text in result.stdout, text
    as_json = runner.invoke(app, ["eval", str(run_file), "--compare", str(base), "--json"])
    report = json.loads(as_json.stdout)
    (comparison,) = report["comparisons"].values()
    # t1 only: run mean (4 A + 2 C samples) 4.5/6 against the baseline's 2.5/4
    assert comparison["differences"]["episode/reward"]["difference"] == pytest.approx(
        4.5 / 6 - 2.5 / 4
    )
    assert comparison["only_run"] == ["t2"] and report["baseline"]["label"].endswith("base.jsonl]")


def test_eval_errors_are_one_line(run_file: Path, tmp_path: Path) -> None:
    missing = runner.invoke(app, ["eval", str(tmp_path / "missing.jsonl")])
    assert missing.exit_code == 2 and "no such file" in missing.output
    assert runner.invoke(app, ["eval", str(run_file), "--k", "1,x"]).exit_code == 2
    assert runner.invoke(app, ["eval", str(run_file), "--k", "0"]).exit_code == 2
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert "no episodes" in runner.invoke(app, ["eval", str(empty)]).output
    two = tmp_path / "two.jsonl"
    two.write_text(RUN[0].to_json() + "\n" + episode("t1", None, 0, 1, True, [], policy="o")
                   .to_json() + "\n")  # fmt: skip
    several = runner.invoke(app, ["eval", str(run_file), "--compare", str(two)])
    assert several.exit_code == 2 and "one run" in several.output


def test_run_then_eval_on_a_bundled_scenario(tmp_path: Path) -> None:
    """`simenv run` then `simenv eval` give what a hand computation gives on the same JSONL."""
    out = tmp_path / "run.jsonl"
    args = ["run", "support/Triage-v1", "-p", "random", "-p", "oracle", "-n", "5",
            "--samples", "3", "--out", str(out)]  # fmt: skip
    result = runner.invoke(simenv_app, args)
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["eval", str(out), "--k", "1,3", "--json"])
    assert result.exit_code == 0, result.output
    runs = json.loads(result.stdout)["runs"]
    assert set(runs) == {"random", "oracle"}
    assert runs["oracle"]["metrics"]["eval/pass^3"] == 1.0
    random = [e for e in read_episodes(out) if e.policy["name"] == "random"]
    assert len(random) == 15
    wins: dict[str, list[bool]] = {}
    for e in random:
        wins.setdefault(f"{e.task_id}@{e.seed}", []).append(e.success)
    metrics = runs["random"]["metrics"]
    assert metrics["episode/reward"] == pytest.approx(sum(e.reward for e in random) / 15)
    assert metrics["eval/pass@3"] == pytest.approx(
        sum(pass_at_k(3, sum(w), 3) for w in wins.values()) / len(wins)
    )
    assert metrics["eval/pass^3"] == pytest.approx(
        sum(pass_hat_k(3, sum(w), 3) for w in wins.values()) / len(wins)
    )
    calls = sum(len(s.tool_calls) for e in random for s in e.steps)
    assert metrics["tools/calls_per_episode"] == pytest.approx(calls / 15)


def test_the_evaluation_page_example_prints_what_it_says(
    capsys: pytest.CaptureFixture[str],
) -> None:
    page = (Path(__file__).resolve().parents[1] / "docs" / "evaluation.md").read_text()
    code = re.findall(r"```python\n(.*?)```", page, re.S)[0]
    exec(compile(code, "docs/evaluation.md", "exec"), {})
    claimed = [line.split("# ")[1] for line in code.splitlines() if line.startswith("print(")]
    assert capsys.readouterr().out.splitlines() == claimed
