"""SOP folders -> scenarios (simenv.sop), the `simenv import sop` command and our SOP domains."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

import simenv
from simenv import ScenarioError
from simenv.checks import check
from simenv.checks.sop import self_test
from simenv.cli.sop import register as register_cli
from simenv.parsing import format_tool_call
from simenv.rollouts import plan_jobs
from simenv.rollouts import run as run_jobs
from simenv.rollouts.policies.scripted import Null, Oracle
from simenv.sop import (
    constant_answer_rate,
    find_imported,
    load_sop,
    normalise,
    parse_decision,
    sop_metrics,
)

# ----------------------------------------------------------------------------- a foreign folder
# A folder shaped like SOP-Bench's, written the way a third party would: camelCase tools with
# Bedrock specs, a test_set_with_outputs.csv, metadata.json, and our one extra file.
SOP_TEXT = """\
Patient Intake Triage - Standard Operating Procedure

1. Purpose. This procedure assigns every new patient to a care pathway.

2. Steps.
2.1 Call verifyInsurance with the patient's member id. If the coverage status is "inactive",
    the pathway is SELF_PAY and the copay is null.
2.2 Otherwise call getVitals with the patient id. If the pain score is 8 or higher, or the
    systolic pressure is above 180, the pathway is EMERGENCY.
2.3 Otherwise the pathway is ROUTINE.
2.4 For insured patients the copay is the plan copay returned by verifyInsurance.
"""

TOOLSPECS = [
    {
        "toolSpec": {
            "name": "verifyInsurance",
            "description": "Verify a member's insurance coverage.",
            "inputSchema": {
                "json": {
                    "type": "object",
                    "properties": {
                        "memberId": {"type": "string", "description": "Insurance member id."}
                    },
                    "required": ["memberId"],
                }
            },
        }
    },
    {
        "toolSpec": {
            "name": "getVitals",
            "description": "Get the vitals recorded at the front desk.",
            "inputSchema": {
                "json": {
                    "type": "object",
                    "properties": {"patientId": {"type": "integer"}},
                    "required": ["patientId"],
                }
            },
        }
    },
]

MAPPING = """\
id: intake/Triage-v1
task_id_column: patient_id
tools:
  verifyInsurance:
    keys: {memberId: member_id}
    returns: {coverage_status: coverage, plan_copay: copay_amount}
  getVitals:
    keys: {patientId: patient_id}
    returns: [pain_score, systolic_bp]
answer: either
"""

HEADER = [
    "patient_id", "member_id", "complaint", "coverage", "copay_amount", "pain_score",
    "systolic_bp", "pathway", "copay",
]  # fmt: skip


def _rows(n: int = 12) -> list[list[Any]]:
    rows = []
    for i in range(n):
        coverage = "inactive" if i % 4 == 3 else "active"
        pain, systolic = (i * 3) % 11, 120 + (i * 17) % 80
        copay = [25, 40, 10][i % 3]
        if coverage == "inactive":
            pathway, gold_copay = "SELF_PAY", ""
        elif pain >= 8 or systolic > 180:
            pathway, gold_copay = "EMERGENCY", copay
        else:
            pathway, gold_copay = "ROUTINE", copay
        rows.append(
            [
                1000 + i,
                f"M-{7700 + i}",
                "headache",
                coverage,
                copay,
                pain,
                systolic,
                pathway,
                gold_copay,
            ]
        )
    return rows


def write_folder(root: Path, n: int = 12) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "sop.txt").write_text(SOP_TEXT)
    (root / "toolspecs.json").write_text(json.dumps(TOOLSPECS, indent=2))
    (root / "metadata.json").write_text(
        json.dumps(
            {
                "input_columns": ["patient_id", "member_id", "complaint"],
                "output_columns": ["pathway", "copay"],
            }
        )
    )
    with (root / "test_set_with_outputs.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(HEADER)
        writer.writerows(_rows(n))
    (root / "simenv.yaml").write_text(MAPPING)
    return root


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return write_folder(tmp_path / "patient_intake")


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("SIMENV_HOME", str(tmp_path / "home"))
    yield tmp_path / "home"


def _play(env: Any, task_id: str, actions: list[Any]) -> tuple[float, dict[str, Any]]:
    env.reset(seed=0, options={"task_id": task_id})
    for action in actions:
        _, reward, terminated, truncated, info = env.step(action)
        if terminated or truncated:
            return float(reward), info
    raise AssertionError("the episode did not end")


# ----------------------------------------------------------------------------- normalisation
@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("Senior_Review", "senior review"),
        ("  AUTO-APPROVE ", "auto approve"),
        ("auto   approve", "Auto_Approve"),
        ("12.50", 12.5),
        ("100", 100.0),
        (True, "True"),
        ("false", False),
        (None, ""),
        ("N/A", None),
        ("null", "none"),
        ("NaN", None),
        (float("nan"), "-"),
        (0.1 + 0.2, 0.3),
    ],
)
def test_normalise_equal(a: Any, b: Any) -> None:
    assert normalise(a) == normalise(b)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("approved pending review", "approved"),  # no substring leniency
        ("approve", "approved"),
        ("12.5", "12.51"),
        ("0", None),  # zero is a value, not a null
        ("false", None),
        ("1,000", 1000),  # thousands separators are not parsed
        ("yes", True),
    ],
)
def test_normalise_different(a: Any, b: Any) -> None:
    assert normalise(a) != normalise(b)


def test_normalise_values() -> None:
    assert normalise(" Senior_Review\t") == "senior review"
    assert normalise("-12.500") == "-12.5"
    assert normalise(7) == "7"
    assert normalise("n/a") is None
    assert normalise([1, "A_b"]) == '["1","a b"]'


def test_parse_decision_takes_the_last_object() -> None:
    text = 'I looked at {"draft": 1}.\nFinal:\n```json\n{"pathway": "ROUTINE", "x": {"y": 2}}\n```'
    assert parse_decision(text) == {"pathway": "ROUTINE", "x": {"y": 2}}
    assert parse_decision("no json here {not json}") is None
    assert parse_decision("{" * 50_000) is None


# ----------------------------------------------------------------------------- a foreign folder
def test_folder_builds_a_scenario(folder: Path) -> None:
    scenario = load_sop(folder)
    assert scenario.id == "intake/Triage-v1"
    assert [t.name for t in scenario.tools] == ["verifyInsurance", "getVitals", "submit"]
    assert SOP_TEXT.splitlines()[0] in scenario.system_prompt
    assert len(scenario.tasks) == 12
    assert scenario.task("1000").prompt.count("M-7700") == 1
    # OpenAI-style schemas; key arguments required, unknown ones refused.
    vitals = scenario.tools[1].schema()["function"]["parameters"]
    assert vitals["required"] == ["patientId"] and vitals["additionalProperties"] is False


def test_tools_replay_the_row_and_answer_unknown_keys_like_an_api(folder: Path) -> None:
    env = simenv.make(load_sop(folder))
    env.reset(seed=0, options={"task_id": "1003"})
    obs, *_ = env.step(format_tool_call("verifyInsurance", {"memberId": "M-7703"}))
    assert json.loads(obs[1]["content"]) == {"coverage_status": "inactive", "plan_copay": 25}
    obs, *_ = env.step(format_tool_call("getVitals", {"patientId": 1003}))
    assert json.loads(obs[1]["content"]) == {"pain_score": 9, "systolic_bp": 171}
    obs, *_ = env.step(format_tool_call("getVitals", {"patientId": 99}))
    assert obs[1]["content"] == "Error: 404 Not Found: no record matches patientId=99."
    obs, *_ = env.step(format_tool_call("getVitals", {"patientId": "1003"}))
    assert "must be integer" in obs[1]["content"]
    obs, *_ = env.step(format_tool_call("getVitals", {"patientId": 1003, "verbose": True}))
    assert "unexpected argument 'verbose'" in obs[1]["content"]
    env.close()


def test_decision_by_message_or_submit_with_normalisation(folder: Path) -> None:
    env = simenv.make(load_sop(folder))
    # task 1001: pain 3, systolic 137, active: ROUTINE with copay 40
    reward, info = _play(env, "1001", ['Done.\n{"Pathway": "routine", "copay": "40.00"}'])
    assert (reward, info["evaluation"]) == (1.0, 1.0)
    reward, info = _play(
        env, "1001", [format_tool_call("submit", {"pathway": "ROUTINE", "copay": 40})]
    )
    assert (reward, info["evaluation"], info["termination"]) == (1.0, 1.0, "finish_tool")
    reward, info = _play(env, "1001", ['{"pathway": "ROUTINE", "copay": 25}'])
    assert (reward, info["evaluation"]) == (0.5, 0.0)  # partial credit, evaluation all-or-nothing
    reward, info = _play(env, "1003", ['{"pathway": "self pay", "copay": "N/A"}'])
    assert (reward, info["evaluation"]) == (1.0, 1.0)
    reward, info = _play(env, "1001", ["It is a routine case with a copay of 40."])
    assert (reward, info["evaluation"]) == (0.0, 0.0)
    env.close()


def test_oracle_one_null_zero_on_every_task(folder: Path) -> None:
    scenario = load_sop(folder)
    assert self_test(scenario) == []
    jobs = plan_jobs(scenario, split=None)
    oracle = run_jobs(scenario, Oracle(), jobs)
    null = run_jobs(scenario, Null(), jobs)
    assert [e.reward for e in oracle] == [1.0] * 12 and all(e.success for e in oracle)
    assert [e.reward for e in null] == [0.0] * 12 and not any(e.success for e in null)
    metrics = sop_metrics(scenario, oracle)
    assert metrics["sop/task_success"] == 1.0
    assert metrics["sop/execution_completion"] == 1.0
    assert metrics["sop/field_accuracy/copay"] == 1.0
    assert metrics["sop/tool_error_rate"] == 0.0
    assert sop_metrics(scenario, null)["sop/execution_completion"] == 0.0


def test_simenv_check_passes(folder: Path) -> None:
    report = check(load_sop(folder), fast=True)
    assert report.ok, [(r.check, r.message) for r in report.failures]


def test_import_command_makes_the_id_runnable(folder: Path, home: Path) -> None:
    app = typer.Typer()
    register_cli(app)
    result = CliRunner().invoke(app, ["import", "sop", str(folder), "--id", "acme/Intake-v2"])
    assert result.exit_code == 0, result.output
    assert "acme/Intake-v2" in result.output
    assert json.loads((home / "sop_imports.json").read_text()) == {
        "acme/Intake-v2": str(folder.resolve())
    }
    found = find_imported("acme/Intake-v2")
    assert found is not None and found.id == "acme/Intake-v2"
    assert find_imported("acme/Other-v1") is None
    assert simenv.load_scenario("acme/Intake-v2").id == "acme/Intake-v2"  # registered in-process


# ----------------------------------------------------------------------------- broken folders
def _edit_csv(root: Path, line: int, column: str, value: str) -> None:
    path = root / "test_set_with_outputs.csv"
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    rows[line - 1][rows[0].index(column)] = value
    with path.open("w", newline="") as f:
        csv.writer(f).writerows(rows)


BROKEN = {
    "missing sop": (
        lambda r: (r / "sop.txt").unlink(),
        ["sop.txt", "file missing", "write the procedure"],
    ),
    "missing mapping": (
        lambda r: (r / "simenv.yaml").unlink(),
        ["simenv.yaml", "file missing", "keys:"],
    ),
    "missing specs": (
        lambda r: (r / "toolspecs.json").unlink(),
        ["toolspecs.json", "file missing", "toolSpec"],
    ),
    "missing metadata": (
        lambda r: (r / "metadata.json").unlink(),
        ["metadata.json", "file missing", "output_columns"],
    ),
    "tool not in specs": (
        lambda r: (r / "simenv.yaml").write_text(MAPPING.replace("getVitals:", "getVitalSigns:")),
        ["simenv.yaml", "'getVitalSigns' is not in toolspecs.json", "fix the name or add its spec"],
    ),
    "column not in csv": (
        lambda r: (r / "simenv.yaml").write_text(MAPPING.replace("copay_amount", "copay_amt")),
        ["simenv.yaml", "'copay_amt'", "test_set_with_outputs.csv", "add the column"],
    ),
    "metadata column not in csv": (
        lambda r: (r / "metadata.json").write_text(
            json.dumps({"input_columns": ["patient_id"], "output_columns": ["decision"]})
        ),
        ["metadata.json", "['decision']", "fix the names or add the columns"],
    ),
    "row with missing key": (
        lambda r: _edit_csv(r, 5, "member_id", ""),
        ["test_set_with_outputs.csv", "line 5", "'member_id'", "fill it in or remove the row"],
    ),
    "argument not in schema": (
        lambda r: (r / "simenv.yaml").write_text(MAPPING.replace("memberId:", "member:")),
        ["simenv.yaml", "'member' is not in its inputSchema", "fix the name"],
    ),
    "bad yaml": (
        lambda r: (r / "simenv.yaml").write_text("tools: [unclosed"),
        ["simenv.yaml", "not valid YAML", "fix the syntax"],
    ),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_folder_names_the_file_and_the_fix(folder: Path, case: str) -> None:
    breaks, fragments = BROKEN[case]
    breaks(folder)
    with pytest.raises(ScenarioError) as caught:
        load_sop(folder)
    for fragment in fragments:
        assert fragment in str(caught.value), str(caught.value)


def test_import_command_fails_cleanly_on_a_broken_folder(folder: Path, home: Path) -> None:
    (folder / "simenv.yaml").write_text(MAPPING.replace("getVitals:", "getVitalSigns:"))
    app = typer.Typer()
    register_cli(app)
    result = CliRunner().invoke(app, ["import", "sop", str(folder)])
    assert result.exit_code == 2
    assert "getVitalSigns" in result.output and "toolspecs.json" in result.output
    assert not (home / "sop_imports.json").exists()


def test_openai_style_specs_are_accepted(folder: Path) -> None:
    openai = [
        {"type": "function", "function": {
            "name": s["toolSpec"]["name"],
            "description": s["toolSpec"]["description"],
            "parameters": s["toolSpec"]["inputSchema"]["json"]}}
        for s in TOOLSPECS
    ]  # fmt: skip
    (folder / "toolspecs.json").write_text(json.dumps(openai))
    assert self_test(load_sop(folder)) == []


def test_copied_folder_is_independent(folder: Path, tmp_path: Path) -> None:
    copy = shutil.copytree(folder, tmp_path / "copy")
    assert load_sop(copy, "other/Intake-v1").id == "other/Intake-v1"


# ----------------------------------------------------------------------------- our SOP domains
def _domains() -> list[Any]:
    from scenarios.sop_domains import scenarios

    return scenarios()


def test_domain_folders_are_what_the_generators_write() -> None:
    import importlib

    from scenarios.sop_domains import DOMAINS, folder
    from scenarios.sop_domains.common import Domain

    for scenario_id, module in DOMAINS.items():
        files = Domain.of(importlib.import_module(module)).files()
        for name, text in files.items():
            assert (folder(scenario_id) / name).read_text() == text, (scenario_id, name)


@pytest.mark.parametrize("index", [0, 1, 2])
def test_domain_is_a_valid_trainable_sop_scenario(index: int) -> None:
    scenario = _domains()[index]
    lookups = [t for t in scenario.tools if t.name != "submit"]
    assert 4 <= len(lookups) <= 8
    assert len(scenario.tasks) >= 200 and scenario.split("train") and scenario.split("eval")
    assert len(scenario.system_prompt) > 2_500  # a procedure of realistic length
    assert self_test(scenario) == []  # oracle 1.0 and null 0 on every task
    report = check(scenario, fast=True)
    assert report.ok, [(r.check, r.message) for r in report.failures]
    rate, answer = constant_answer_rate(scenario)
    assert rate < 0.3, (scenario.id, rate, answer)


def test_constant_answer_rates() -> None:
    # The numbers reported in docs/sop.md.
    rates = {s.id: round(constant_answer_rate(s)[0], 3) for s in _domains()}
    assert rates == {
        "sop/ClaimTriage-v1": 0.204,
        "sop/AccessRequests-v1": 0.2,
        "sop/ReturnsAuth-v1": 0.208,
    }


def test_returns_writes_are_checked_on_the_final_state() -> None:
    scenario = _domains()[2]
    task = next(t for t in scenario.tasks if t.data["writes"]["issue_refund"])
    refund = task.data["writes"]["issue_refund"]
    answer = format_tool_call("submit", task.data["outputs"])
    env = simenv.make(scenario)
    # the right refund, then the decision: success
    reward, info = _play(env, task.id, [format_tool_call("issue_refund", refund), answer])
    assert (reward, info["evaluation"]) == (1.0, 1.0)
    # the right decision but no refund made: fields right, evaluation fails
    reward, info = _play(env, task.id, [answer])
    assert info["evaluation"] == 0.0 and reward == pytest.approx(2 / 3)
    # refunding twice, or the wrong amount, fails too
    twice = [format_tool_call("issue_refund", refund)] * 2 + [answer]
    assert _play(env, task.id, twice)[1]["evaluation"] == 0.0
    wrong = {**refund, "amount": refund["amount"] + 1}
    assert (
        _play(env, task.id, [format_tool_call("issue_refund", wrong), answer])[1]["evaluation"]
        == 0.0
    )
    # a refund on an order that does not exist is a not-found error, and nothing is written
    env.reset(seed=0, options={"task_id": task.id})
    obs, *_ = env.step(format_tool_call("issue_refund", {"order_id": "ORD-1", "amount": 5.0}))
    assert obs[1]["content"].startswith("Error: 404 Not Found")
    assert env.unwrapped.state.writes["issue_refund"] == []
    env.close()


def test_returns_state_is_seeded() -> None:
    scenario = _domains()[2]
    env = simenv.make(scenario)
    task = next(t for t in scenario.tasks if t.data["writes"]["ship_replacement"])
    call = format_tool_call("ship_replacement", task.data["writes"]["ship_replacement"])
    references = set()
    for seed in (1, 2):
        for _ in range(2):
            env.reset(seed=seed, options={"task_id": task.id})
            obs, *_ = env.step(call)
            references.add((seed, json.loads(obs[1]["content"])["reference"]))
    assert len(references) == 2  # same seed, same reference; another seed, another one
    env.close()


def test_simenv_eval_shows_the_sop_metrics(tmp_path: Path) -> None:
    from simenv.cli import app

    run_file = tmp_path / "run.jsonl"
    argv = ["run", "sop/ClaimTriage-v1", "-p", "oracle", "-p", "null", "-n", "4"]
    made = CliRunner().invoke(app, [*argv, "--out", str(run_file)])
    assert made.exit_code == 0, made.output
    result = CliRunner().invoke(app, ["eval", str(run_file), "--json"])
    assert result.exit_code == 0, result.output
    runs = json.loads(result.stdout)["runs"]
    assert runs["oracle"]["metrics"]["sop/task_success"] == 1.0
    assert runs["oracle"]["metrics"]["sop/field_accuracy/decision"] == 1.0
    assert runs["null"]["metrics"]["sop/task_success"] == 0.0
    assert runs["null"]["metrics"]["sop/execution_completion"] == 0.0


# ----------------------------------------------------------------------------- the CLI, for real
def _simenv(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    """``simenv ARGS`` in a new process, with ``SIMENV_HOME=home``."""
    env = {**os.environ, "SIMENV_HOME": str(home)}
    return subprocess.run(
        [sys.executable, "-m", "simenv.cli", *args],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip


def test_an_imported_id_is_found_by_a_new_process(folder: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    imported = _simenv("import", "sop", str(folder), "--id", "acme/Intake-v3", home=home)
    assert imported.returncode == 0, imported.stderr
    assert (
        "imported acme/Intake-v3" in imported.stdout and "oracle 1.0 and null 0" in imported.stdout
    )
    ran = _simenv("run", "acme/Intake-v3", "-p", "oracle", "-p", "null", "--json", home=home)
    assert ran.returncode == 0, ran.stderr
    summary = json.loads(ran.stdout)
    assert summary["scenario_id"] == "acme/Intake-v3"
    rewards = {row["policy"]: row["mean_reward"] for row in summary["policies"]}
    assert rewards == {"oracle": 1.0, "null": 0.0}
    checked = _simenv("check", "acme/Intake-v3", "--fast", "--only", "reward", home=home)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    unknown = _simenv("run", "acme/Intake-v3", home=tmp_path / "other-home")
    assert unknown.returncode == 2 and "acme/Intake-v3" in unknown.stderr  # the id lives in home


def test_an_sop_folder_is_a_scenario_id(folder: Path, home: Path) -> None:
    from simenv.cli import app

    runner = CliRunner()
    result = runner.invoke(app, ["run", str(folder), "-p", "oracle", "-p", "null", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["scenario_id"] == "intake/Triage-v1"  # the id of its simenv.yaml
    assert [row["mean_reward"] for row in summary["policies"]] == [1.0, 0.0]
    result = runner.invoke(app, ["check", str(folder), "--fast", "--only", "reward", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)[0]["results"][0]["status"] == "pass"
    assert not (home / "sop_imports.json").exists()  # a path is used, not imported


# ----------------------------------------------------------------------------- many output fields
def write_fields_folder(root: Path, fields: int, rows: int = 4) -> Path:
    """An SOP folder whose decision has ``fields`` output fields (each earns 1/fields)."""
    root.mkdir(parents=True)
    (root / "sop.txt").write_text(
        "Record Review - Standard Operating Procedure\n\n1. Call getRecord with the record "
        "id.\n2. Report every field it returns, each under its own name, as returned.\n"
    )
    returned = [f"value_{k}" for k in range(fields)]
    outputs = [f"field_{k}" for k in range(fields)]
    spec = {"type": "object", "properties": {"recordId": {"type": "string"}}}
    (root / "toolspecs.json").write_text(
        json.dumps([{"toolSpec": {"name": "getRecord", "description": "Get a record.",
                                  "inputSchema": {"json": spec}}}])
    )  # fmt: skip
    (root / "metadata.json").write_text(
        json.dumps({"input_columns": ["record_id"], "output_columns": outputs})
    )
    with (root / "test_set_with_outputs.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["record_id", *returned, *outputs])
        for i in range(rows):
            values = [f"V{i}-{k}" for k in range(fields)]
            writer.writerow([f"R-{i}", *values, *values])
    (root / "simenv.yaml").write_text(
        f"id: test/Fields{fields}-v1\ntask_id_column: record_id\nanswer: either\ntools:\n"
        f"  getRecord:\n    keys: {{recordId: record_id}}\n    returns: [{', '.join(returned)}]\n"
    )
    return root


@pytest.mark.parametrize("fields", [6, 7, 10, 13, 14, 15, 19])
@pytest.mark.usefixtures("isolated_registry")  # the imported ids are not left registered
def test_the_oracle_earns_exactly_one_whatever_the_number_of_fields(
    fields: int, tmp_path: Path, home: Path
) -> None:
    # 1/6 summed six times is 0.9999999999999999 in floats: the import used to refuse these.
    folder = write_fields_folder(tmp_path / f"fields_{fields}", fields)
    app = typer.Typer()
    register_cli(app)
    result = CliRunner().invoke(app, ["import", "sop", str(folder), "--verify"])
    assert result.exit_code == 0, result.output
    assert "oracle 1.0 and null 0 on all 4 tasks" in result.output
    scenario = simenv.load_scenario(f"test/Fields{fields}-v1")
    env = simenv.make(scenario)
    for task in scenario.tasks:
        episode = simenv.rollout(env, Oracle(), seed=0, task_id=task.id)
        assert episode.reward == 1.0, (task.id, episode.reward, episode.reward_components)
        assert len(episode.reward_components) == fields
    env.close()
