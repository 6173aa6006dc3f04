"""`simenv train` and `simenv export` through the simenv command: options, --set, real runs.

The options come from TrainConfig's fields; --set converts each value to its field's type, and
a bad value or combination stops the command at start-up (exit 2) before any work. Two tiny real
runs (a few seconds each on a CPU) go through real RL steps: one on a scenario whose reward
differs between samples (so the loss, with KL and TIS, runs), one on a weighted mixture.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import peft  # noqa: F401 - the LoRA adapters of every test here
import pytest
import torch
import typer
from typer.testing import CliRunner, Result

from trainer.config import TrainConfig

# The sizes of a tiny run: no warm start, one RL step of 2 tasks x 2 episodes, short turns.
TINY = ["--steps", "1", "--sft-steps", "0", "--group-size", "2", "--batch-tasks", "2",
        "--eval-samples", "1", "--eval-every", "100", "--checkpoint-every", "100",
        "--micro-batch", "8", "--threads", "1"]  # fmt: skip

# support/Triage-v1 with a reward for how much the agent writes: an untrained model's samples
# earn different rewards, so groups are not flat and the policy loss (with KL and TIS) runs.
# Few tasks keep the evaluations short.
WORDY = """
import dataclasses

import scenarios.triage as triage


def reward(o):
    written = sum(len(m.get("content") or "") for m in o.messages if m["role"] == "assistant")
    return min(written, 200) / 200


SCENARIO = dataclasses.replace(
    triage.SCENARIO,
    id="test/Wordy-v1",
    reward=reward,
    tasks=[t for t in triage.SCENARIO.tasks if t.split == "train"][:8]
    + [t for t in triage.SCENARIO.tasks if t.split == "eval"][:2],
    examples=(),
)
"""


@pytest.fixture(scope="module")
def app() -> Iterator[typer.Typer]:
    """The simenv app with its plugin commands (train, export), removed again afterwards."""
    import simenv.cli

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(
            simenv.cli.app, "registered_commands", list(simenv.cli.app.registered_commands)
        )
        simenv.cli._plugins()
        yield simenv.cli.app


@pytest.fixture(scope="module")
def cli(app: typer.Typer) -> Iterator[Any]:
    """``cli(*args)`` runs ``simenv *args`` in this process, without MLflow, on one thread."""
    threads = torch.get_num_threads()
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(sys.modules, "simenv.evaluation.tracking", None)  # the CLI then skips MLflow

        def invoke(*args: str) -> Result:
            return CliRunner().invoke(app, list(args), catch_exceptions=False)

        yield invoke
    torch.set_num_threads(threads)  # --threads 1 set it for the whole process


def _flat(text: str) -> str:
    """Text without whitespace or box lines: the help's wrapping does not matter."""
    return re.sub(r"[\s│╭╮╰╯─]", "", text)


def _rows(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


# ----------------------------------------------------------------------------- start-up
def test_help_lists_every_field_with_its_docstring(cli: Any) -> None:
    result = cli("train", "--help")
    assert result.exit_code == 0, result.output
    shown = _flat(result.output)
    for name, doc in TrainConfig.help().items():
        if name != "scenarios":  # the positional SCENARIOS
            assert f"--{name.replace('_', '-')}" in result.output, name
        assert _flat(doc) in shown, name
    assert "--config" in result.output and "--set" in result.output
    assert "[default:80]" in _flat(result.output)  # --steps's default, from the field


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "steps=abc"], "--set steps=abc: steps must be an integer, not 'abc'"),
        (["--set", "weights=3,x"], "weights must be a comma-separated list of numbers, not '3,x'"),
        (["--weights", "3,x"], "--weights 3,x: weights must be a comma-separated list of numbers"),
        (["--set", "stepz=1"], "no field 'stepz'; did you mean steps?"),
        (["--set", "steps"], "'steps' is not name=value"),
        (["--set", "kl_coef=0.1", "--lora-rank", "0"], "kl_coef=0.1 needs a LoRA adapter"),
        (["--steps", "3", "--set", "steps=4"], "both set steps"),
        (["--set", "weights=3,1,2"], "give one weight per scenario"),
    ],
)
def test_bad_values_fail_at_start_up(
    cli: Any, tmp_path: Path, args: list[str], message: str
) -> None:
    out = tmp_path / "run"
    scenarios = ["support/Triage-v1", "support/Refunds-v1"]
    result = cli("train", *scenarios, *args, "--out", str(out))
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not out.exists()  # nothing was started


def test_the_kl_and_full_fine_tune_message_says_why_and_the_fix(cli: Any, tmp_path: Path) -> None:
    result = cli("train", "--set", "kl_coef=0.1", "--lora-rank", "0", "--out", str(tmp_path))
    assert result.exit_code == 2
    assert "disabling the adapter" in result.output  # why
    assert "lora_rank > 0" in result.output and "kl_coef=0" in result.output  # the fix


def test_a_json_config_with_strings_fails_at_start_up(cli: Any, tmp_path: Path) -> None:
    config = tmp_path / "run.json"
    config.write_text(json.dumps({"scenarios": ["a", "b"], "weights": ["3", "1"]}))
    result = cli("train", "--config", str(config), "--out", str(tmp_path / "run"))
    assert result.exit_code == 2, result.output
    assert "weights must be a list of numbers, not ['3', '1']" in result.output
    assert "--set weights=3,1" in result.output  # the fix
    config.write_text(json.dumps({"steps": 2.5}))
    result = cli("train", "--config", str(config))
    assert result.exit_code == 2 and "steps must be an integer, not 2.5" in result.output


def test_parse_field_converts_to_each_fields_type() -> None:
    parse = TrainConfig.parse_field
    assert parse("weights", "3,1") == (3.0, 1.0)
    assert parse("weights", "") == ()
    assert parse("scenarios", "a, b") == ("a", "b")
    assert parse("steps", "7") == 7 and parse("lr", "1e-3") == 1e-3
    assert parse("model", "tiny") == "tiny"
    assert TrainConfig.from_strings(["kl_coef=0.02", "tis_cap=2"]) == {
        "kl_coef": 0.02,
        "tis_cap": 2.0,
    }
    with pytest.raises(ValueError, match=r"steps must be an integer, not '1\.5'"):
        parse("steps", "1.5")
    cfg = TrainConfig(scenarios=["a", "b"], weights=[3, 1], lr=1)  # type: ignore[arg-type]
    assert cfg.weights == (3.0, 1.0) and cfg.scenarios == ("a", "b") and cfg.lr == 1.0
    with pytest.raises(TypeError, match=r"lr must be a number, not '0\.1' \(str\)"):
        TrainConfig(lr="0.1")  # type: ignore[arg-type]


def test_parse_field_reads_booleans(monkeypatch: pytest.MonkeyPatch) -> None:
    """No field is a bool yet; one added later takes true/false/1/0 on the command line."""
    from trainer import config

    kinds = {**TrainConfig.field_types(), "model": bool}
    monkeypatch.setattr(config, "_field_types", lambda cls: kinds)
    assert [TrainConfig.parse_field("model", t) for t in ("true", "0", "False", "1")] == [
        True,
        False,
        False,
        True,
    ]
    with pytest.raises(ValueError, match="model must be true or false, not 'maybe'"):
        TrainConfig.parse_field("model", "maybe")


# ----------------------------------------------------------------------------- real runs
@pytest.fixture(scope="module")
def wordy_run(cli: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Result]:
    """cispo + rloo with the KL term and TIS on, through one real RL step, with LoRA."""
    import gymnasium

    import simenv
    from simenv import registration

    where = tmp_path_factory.mktemp("wordy")
    (where / "wordy.py").write_text(WORDY)
    out = where / "run"
    simenv.registry()  # entry points loaded first: the copy below holds them
    gym_ids = set(gymnasium.registry)
    with pytest.MonkeyPatch.context() as patch:  # test/Wordy-v1 is not left registered
        patch.setattr(registration, "_specs", dict(registration._specs))
        result = cli(
            "train", str(where / "wordy.py"), *TINY, "--max-new-tokens", "12",
            "--loss", "cispo", "--advantage", "rloo", "--lora-rank", "16",
            "--set", "kl_coef=0.05", "--set", "tis_cap=2", "--out", str(out),
        )  # fmt: skip
    for env_id in set(gymnasium.registry) - gym_ids:
        del gymnasium.registry[env_id]
    return out, result


@pytest.fixture(scope="module")
def mixture_run(cli: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Result]:
    """Triage and Refunds weighted 3:1 by --set, a full fine-tune, with no learning curve."""
    import trainer.train

    out = tmp_path_factory.mktemp("mixture") / "run"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(trainer.train, "plot_curve", lambda history, path: None)  # no matplotlib
        result = cli(
            "train", "support/Triage-v1", "support/Refunds-v1", "--set", "weights=3,1",
            *TINY, "--max-new-tokens", "8", "--lora-rank", "0", "--out", str(out),
        )  # fmt: skip
    return out, result


@pytest.mark.timeout(120)
def test_cispo_rloo_with_kl_and_tis_through_a_real_step(wordy_run: tuple[Path, Result]) -> None:
    out, result = wordy_run
    assert result.exit_code == 0, result.output
    config = json.loads((out / "config.json").read_text())
    assert (config["loss"], config["advantage"]) == ("cispo", "rloo")
    assert (config["kl_coef"], config["tis_cap"]) == (0.05, 2.0)
    (step,) = [r for r in _rows(out) if "episode/reward" in r]
    assert step["batch/flat_groups"] < 2  # some group's rewards differ: the loss ran
    assert {"loss/policy", "loss/kl", "loss/entropy", "grad/norm"} <= set(step)
    assert step["grad/norm"] > 0  # the norm before clipping: a gradient reached the adapter
    assert step["loss/kl"] >= 0 and all(v == v for v in step.values())  # k3 KL; no NaN
    assert "held-out evaluation" in result.output


@pytest.mark.timeout(120)
def test_a_run_writes_its_curve_and_result(wordy_run: tuple[Path, Result]) -> None:
    out, result = wordy_run
    assert result.exit_code == 0, result.output
    written = json.loads((out / "result.json").read_text())
    assert {"before", "after", "out", "model", "runtime", "curve"} <= set(written)
    assert set(written["before"]) == set(written["after"]) >= {"eval/success", "eval/pass@1"}
    assert written["curve"] == str(out / "learning_curve.png")
    assert (out / "learning_curve.png").read_bytes().startswith(b"\x89PNG")


@pytest.mark.timeout(120)
def test_export_writes_a_merged_model_that_from_pretrained_loads(
    cli: Any, wordy_run: tuple[Path, Result]
) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out, _ = wordy_run
    result = cli("export", str(out))
    assert result.exit_code == 0, result.output
    written = json.loads(result.stdout)  # stderr has the progress bars
    assert Path(written["merged"]) == out / "export" / "merged"
    merged = AutoModelForCausalLM.from_pretrained(written["merged"])
    tokenizer = AutoTokenizer.from_pretrained(written["merged"])
    base = AutoModelForCausalLM.from_pretrained(str(out / "base"))
    reference = PeftModel.from_pretrained(base, str(out / "adapter"))
    ids = torch.tensor([tokenizer("Ticket from C-2: my bug")["input_ids"]])
    with torch.no_grad():
        assert torch.allclose(merged(ids).logits, reference(ids).logits, atol=1e-5)


@pytest.mark.timeout(120)
def test_a_weighted_mixture_set_on_the_command_line_trains(
    mixture_run: tuple[Path, Result],
) -> None:
    out, result = mixture_run
    assert result.exit_code == 0, result.output
    config = json.loads((out / "config.json").read_text())
    assert config["scenarios"] == ["support/Triage-v1", "support/Refunds-v1"]
    assert config["weights"] == [3.0, 1.0]  # floats, not the strings "3" and "1"
    assert all(type(w) is float for w in config["weights"])
    rows = _rows(out)
    assert [r["step"] for r in rows if "episode/reward" in r] == [0]  # one real RL step
    after = rows[-1]
    assert {"eval/support/Triage-v1/success", "eval/support/Refunds-v1/success"} <= set(after)


@pytest.mark.timeout(120)
def test_result_json_says_null_when_no_curve_is_drawn(mixture_run: tuple[Path, Result]) -> None:
    out, result = mixture_run
    assert result.exit_code == 0, result.output
    written = json.loads((out / "result.json").read_text())
    assert written["curve"] is None  # JSON null, not the string "None"
    assert not (out / "learning_curve.png").exists()


@pytest.mark.timeout(120)
def test_export_of_a_full_fine_tune_is_its_trained_weights(
    cli: Any, mixture_run: tuple[Path, Result]
) -> None:
    """lora_rank=0 has no adapter: the merged model is the last checkpoint's weights."""
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    out, _ = mixture_run
    result = cli("export", str(out), "--dest", str(out / "exported"))
    assert result.exit_code == 0, result.output
    merged = AutoModelForCausalLM.from_pretrained(str(out / "exported" / "merged"))
    trained = load_file(str(out / "checkpoint" / "adapter" / "model.safetensors"))
    state = merged.state_dict()
    assert trained and all(torch.equal(state[k], v) for k, v in trained.items())
    assert not (out / "exported" / "adapter").exists()
