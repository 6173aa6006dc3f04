"""The trainer on a real tiny model: token-in/token-out samples, logprobs, checkpoints, export."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import peft  # noqa: F401 - the LoRA adapters of every test here
import pytest
import torch

import simenv
from simenv.rollouts import Job, run
from simenv.rollouts.policies import HF
from simenv.server import make_server
from trainer.config import TrainConfig
from trainer.models import build_tiny, load, token_logprobs, with_lora
from trainer.samples import collate, episode_samples, is_prefix_preserving
from trainer.warm_start import oracle_episodes, raw_messages, render, sft_samples

SCENARIO = "support/Triage-v1"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any, Path]:
    scenario = simenv.load_scenario(SCENARIO)
    tools = [t.schema() for t in scenario.tools]
    corpus = [render(raw_messages(e), tools) for e in oracle_episodes([scenario], seeds=1)]
    path = tmp_path_factory.mktemp("tiny")
    model, tokenizer = build_tiny(corpus, save_dir=path, seed=0)
    return model, tokenizer, path


@pytest.fixture(scope="module")
def episodes(tiny: tuple[Any, Any, Path]) -> list[simenv.Episode]:
    model, tokenizer, _ = tiny
    policy = HF(model, tokenizer, temperature=1.0, max_new_tokens=24, seed=3)
    scenario = simenv.load_scenario(SCENARIO)
    jobs = [
        Job(t.id, 7 + i, i, g) for i, t in enumerate(scenario.split("train")[:3]) for g in range(2)
    ]
    return run(scenario, policy, jobs)


def test_from_pretrained_round_trip(tiny: tuple[Any, Any, Path]) -> None:
    model, tokenizer, path = tiny
    loaded, loaded_tok = load(path)
    ids = torch.tensor([tokenizer("Ticket from C-1: my invoice")["input_ids"]])
    with torch.no_grad():
        assert torch.allclose(model(ids).logits, loaded(ids).logits, atol=1e-6)
    assert loaded_tok.chat_template == tokenizer.chat_template


def test_template_is_prefix_preserving(tiny: tuple[Any, Any, Path]) -> None:
    assert is_prefix_preserving(tiny[1])


def test_episodes_carry_the_samplers_tokens(episodes: list[simenv.Episode]) -> None:
    for e in episodes:
        turns = e.metadata["turns"]
        assert len(turns) == e.turns
        for turn in turns:
            assert len(turn["completion_ids"]) == len(turn["logprobs"]) > 0


def test_loss_mask_covers_exactly_the_generated_tokens(
    tiny: tuple[Any, Any, Path], episodes: list[simenv.Episode]
) -> None:
    tokenizer = tiny[1]
    merged = 0
    for e in episodes:
        # One sequence when each prompt extends the previous prompt + completion token for
        # token; otherwise (an untrained model's text may re-tokenise differently) one per turn.
        samples = episode_samples(e)
        merged += len(samples) == 1
        generated = [t for turn in e.metadata["turns"] for t in turn["completion_ids"]]
        masked = [t for s in samples for t, m in zip(s.input_ids, s.loss_mask, strict=True) if m]
        assert masked == generated
        unmasked = tokenizer.decode(
            [t for s in samples for t, m in zip(s.input_ids, s.loss_mask, strict=True) if not m]
        )
        assert "<|im_start|>system" in unmasked and "<|im_start|>user" in unmasked
        if e.turns > 1:
            assert "<|im_start|>tool" in unmasked  # tool results are never trained on
        per_turn = episode_samples(e, merge=False)
        assert len(per_turn) == e.turns
        assert sum(sum(s.loss_mask) for s in per_turn) == len(generated)
    assert merged > 0 or all(e.turns == 1 for e in episodes)


def test_recorded_logprobs_match_the_trainers_recomputation(
    tiny: tuple[Any, Any, Path], episodes: list[simenv.Episode]
) -> None:
    model, tokenizer, _ = tiny
    samples = [s for i, e in enumerate(episodes) for s in episode_samples(e, i)]
    batch = collate(samples, tokenizer.pad_token_id)
    with torch.no_grad():
        logp = token_logprobs(model, batch.input_ids, batch.attention_mask, batch.loss_mask)
    diff = ((logp - batch.logprobs) * batch.loss_mask).abs().max().item()
    assert diff < 1e-5, diff


def test_tool_and_user_tokens_get_zero_gradient(
    tiny: tuple[Any, Any, Path], episodes: list[simenv.Episode]
) -> None:
    model, tokenizer, _ = tiny
    batch = collate(episode_samples(episodes[0])[:1], tokenizer.pad_token_id)
    embeddings = model.get_input_embeddings()(batch.input_ids).detach().requires_grad_(True)
    out = model(inputs_embeds=embeddings, attention_mask=batch.attention_mask)
    logp = (
        torch.log_softmax(out.logits[:, :-1].float(), -1)
        .gather(-1, batch.input_ids[:, 1:, None])
        .squeeze(-1)
    )
    loss = -(logp * batch.loss_mask[:, 1:]).sum()
    loss.backward()
    # the last position's output is never used: a token after the final completion cannot matter
    assert embeddings.grad is not None
    assert embeddings.grad[0, -1].abs().sum() == 0


def test_sft_samples_mask_only_gold_completions(tiny: tuple[Any, Any, Path]) -> None:
    model, tokenizer, _ = tiny
    policy = HF(model, tokenizer)
    episodes = oracle_episodes([simenv.load_scenario(SCENARIO)], seeds=1)[:2]
    samples = sft_samples(episodes, policy)
    assert len(samples) == 4  # two turns each
    gold = tokenizer.decode(
        [t for t, m in zip(samples[0].input_ids, samples[0].loss_mask, strict=True) if m]
    )
    assert gold == '<tool_call>{"name": "get_plan", "arguments": {}}</tool_call><|im_end|>'


def test_checkpoint_resumes_to_the_same_next_step_and_export_reloads(tmp_path: Path) -> None:
    from trainer.export import export_run
    from trainer.train import train

    base = dict(
        steps=2,
        sft_steps=2,
        group_size=2,
        batch_tasks=2,
        eval_samples=1,
        eval_every=100,
        checkpoint_every=1,
        max_new_tokens=20,
        micro_batch=8,
        lora_rank=16,
        lr=2e-3,
    )
    full = tmp_path / "full"
    train(TrainConfig(out=str(full), **base))
    cut = tmp_path / "cut"
    train(TrainConfig(out=str(cut), **{**base, "steps": 1}))
    train(TrainConfig(out=str(cut), **base))  # resumes from the checkpoint at step 0
    rows = [json.loads(line) for line in (cut / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "episode/reward" in r] == [0, 1]
    a = (full / "adapter" / "adapter_model.safetensors").read_bytes()
    b = (cut / "adapter" / "adapter_model.safetensors").read_bytes()
    assert a == b  # the resumed run ends exactly where the uninterrupted one does
    written = export_run(full)
    merged, tokenizer = load(written["merged"])
    from peft import PeftModel

    reference = PeftModel.from_pretrained(load(full / "base")[0], str(full / "adapter"))
    ids = torch.tensor([tokenizer("Ticket from C-2: my bug")["input_ids"]])
    with torch.no_grad():
        assert torch.allclose(merged(ids).logits, reference(ids).logits, atol=1e-5)


def test_lora_wraps_every_linear_layer(tiny: tuple[Any, Any, Path]) -> None:
    model = with_lora(load(tiny[2])[0], rank=4)
    names = {n.split(".")[-4] for n, _ in model.named_parameters() if "lora_A" in n}
    assert {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"} <= names


def test_config_checks_and_help() -> None:
    with pytest.raises(ValueError, match="loss must be one of"):
        TrainConfig(loss="magic")
    with pytest.raises(ValueError, match="group_size"):
        TrainConfig(group_size=1)
    assert "Episodes sampled per task" in TrainConfig.help()["group_size"]


def test_hf_policy_string_runs_from_the_cli(tiny: tuple[Any, Any, Path], tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from simenv.cli import app
    from simenv.rollouts.store import read_episodes

    out = tmp_path / "hf.jsonl"
    args = ["run", SCENARIO, "-p", f"hf:{tiny[2]}", "-n", "2", "--out", str(out), "--json"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    episodes = list(read_episodes(out))
    assert len(episodes) == 2 and all(e.policy["name"] == "hf" for e in episodes)
    assert all(e.metadata["turns"] for e in episodes)  # token records reach the file


def _train_command(out: Path, config: Path) -> list[str]:
    import sys

    return [sys.executable, "-m", "simenv.cli", "train", "--config", str(config), "--out", str(out)]


def test_a_killed_run_resumes_without_lost_or_repeated_steps(tmp_path: Path) -> None:
    """SIGKILL a real `simenv train` mid-run and rerun it: it ends as an uninterrupted run does."""
    import os
    import signal
    import subprocess
    import time

    config = tmp_path / "config.json"
    sizes = {"steps": 4, "sft_steps": 2, "group_size": 2, "batch_tasks": 2, "eval_samples": 1}
    sizes.update(eval_every=100, checkpoint_every=1, max_new_tokens=16, micro_batch=8)
    sizes.update(lora_rank=16, lr=2e-3)
    config.write_text(json.dumps(sizes))
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")  # the same arithmetic in every run
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    done = subprocess.run(_train_command(whole, config), env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]

    proc = subprocess.Popen(
        _train_command(cut, config), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    metrics = cut / "metrics.jsonl"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        lines = metrics.read_text().splitlines() if metrics.exists() else []
        if any('"episode/reward"' in line and '"step": 1,' in line for line in lines):
            break  # step 1 is recorded; its checkpoint is being written
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    run_id = (cut / "mlflow_run_id").read_text()

    again = subprocess.run(_train_command(cut, config), env=env, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"resuming {cut} at step" in " ".join(again.stdout.split())
    adapter = Path("adapter") / "adapter_model.safetensors"
    assert (cut / adapter).read_bytes() == (whole / adapter).read_bytes()
    steps = [
        json.loads(line)["step"]
        for line in metrics.read_text().splitlines()
        if '"episode/reward"' in line
    ]
    assert steps == [0, 1, 2, 3]  # every RL step once: none lost, none repeated
    whole_rows = (whole / "metrics.jsonl").read_text().splitlines()
    cut_rows = metrics.read_text().splitlines()
    drop = ("perf/step_s",)  # timings differ; every other number must be the same

    def numbers(rows: list[str]) -> list[dict[str, Any]]:
        return [{k: v for k, v in json.loads(r).items() if k not in drop} for r in rows]

    assert numbers(cut_rows) == numbers(whole_rows)
    assert (cut / "mlflow_run_id").read_text() == run_id  # the same MLflow run continued
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=env["MLFLOW_TRACKING_URI"])
    history = client.get_metric_history(run_id, "episode/reward")
    assert sorted(m.step for m in history) == [0, 1, 2, 3]  # steps played again: logged once
    assert not (cut / "checkpoint.tmp").exists() and not (cut / "checkpoint.old").exists()


def test_a_checkpoint_swap_cut_short_falls_back_to_the_previous_one(tmp_path: Path) -> None:
    from trainer.checkpoints import (
        checkpoint_step,
        find_checkpoint,
        read_metrics,
        save_checkpoint,
    )

    model = torch.nn.Linear(2, 2)
    model.save_pretrained = lambda path, **_: Path(path).mkdir(parents=True)  # type: ignore[attr-defined]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    ckpt = tmp_path / "checkpoint"
    save_checkpoint(ckpt, model, optimizer, 3)
    save_checkpoint(ckpt, model, optimizer, 4)
    assert find_checkpoint(ckpt) == ckpt and (ckpt / "step").read_text() == "4"
    # killed between the two renames: PATH.old (step 4) and the next one, complete, in PATH.tmp
    ckpt.rename(tmp_path / "checkpoint.old")
    save_checkpoint(tmp_path / "next", model, optimizer, 5)
    (tmp_path / "next").rename(tmp_path / "checkpoint.tmp")
    found = find_checkpoint(ckpt)
    assert found == tmp_path / "checkpoint.old" and checkpoint_step(found) == 4
    # killed while writing: a PATH.tmp without state.pt is never used
    (tmp_path / "checkpoint.old").rename(tmp_path / "gone")
    (tmp_path / "checkpoint.tmp" / "state.pt").unlink()
    assert find_checkpoint(ckpt) is None
    save_checkpoint(ckpt, model, optimizer, 6)  # the next save clears the half-written one
    assert checkpoint_step(ckpt) == 6 and not (tmp_path / "checkpoint.tmp").exists()

    metrics = tmp_path / "metrics.jsonl"
    rows = [
        {"step": -1, "eval/success": 0.5},
        {"step": 0, "episode/reward": 1.0},
        {"step": 1, "episode/reward": 0.0},
        {"step": 2, "episode/reward": 0.5},
    ]
    metrics.write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"step": 3, "epi')
    assert read_metrics(metrics, 1) == rows[:3]  # after the checkpoint's step: played again
    assert metrics.read_text().count("\n") == 3
    assert read_metrics(metrics, None) == [] and metrics.read_text() == ""


def test_a_full_fine_tune_resumes_to_the_same_weights(tmp_path: Path) -> None:
    """lora_rank=0: the checkpoint holds every weight; a resumed run ends as a whole one does."""
    from trainer.train import train

    sizes = {"steps": 2, "sft_steps": 0, "group_size": 2, "batch_tasks": 2, "eval_samples": 1}
    sizes.update(eval_every=100, checkpoint_every=1, max_new_tokens=12, lora_rank=0, lr=1e-3)
    train(TrainConfig(out=str(tmp_path / "whole"), **sizes))
    train(TrainConfig(out=str(tmp_path / "cut"), **{**sizes, "steps": 1}))
    train(TrainConfig(out=str(tmp_path / "cut"), **sizes))
    weights = Path("checkpoint") / "adapter" / "model.safetensors"
    assert (tmp_path / "cut" / weights).read_bytes() == (tmp_path / "whole" / weights).read_bytes()


def test_training_on_a_rollout_server_equals_training_in_process(tmp_path: Path) -> None:
    """`env_server`: the RL rollouts and evaluations play on `simenv serve`'s environments."""
    import threading

    from trainer.train import train

    sizes = {"steps": 2, "sft_steps": 2, "group_size": 2, "batch_tasks": 2, "eval_samples": 1}
    sizes.update(eval_every=100, checkpoint_every=100, max_new_tokens=16, micro_batch=8)
    sizes.update(lora_rank=16, lr=2e-3)
    server = make_server([SCENARIO], port=0, auth=False)
    paths: list[str] = []
    answer = server.app.respond

    def counted(request: Any) -> Any:
        paths.append(request.path)
        return answer(request)

    server.app.respond = counted  # type: ignore[method-assign]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        here = train(TrainConfig(out=str(tmp_path / "here"), **sizes))
        assert not paths
        there = train(TrainConfig(out=str(tmp_path / "there"), env_server=server.url, **sizes))
        # 2 RL steps x 4 episodes plus 3 evaluations x 36 eval tasks, each reset on the server
        assert sum(p.endswith("/reset") for p in paths) == 2 * 4 + 3 * 36
        assert len(server.app.envs) == 0  # the run deleted its environments on the server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
    assert there["before"] == here["before"] and there["after"] == here["after"]
    adapter = Path("adapter") / "adapter_model.safetensors"
    assert (tmp_path / "there" / adapter).read_bytes() == (tmp_path / "here" / adapter).read_bytes()


def test_server_pools_of_several_scenarios_share_a_small_server() -> None:
    """Each run's pool gives its slots back, so a mixture never runs the server out of them."""
    import threading

    from simenv.rollouts import plan_jobs
    from simenv.rollouts.policies import Oracle
    from trainer.train import environments

    ids = [SCENARIO, "support/Refunds-v1"]
    server = make_server(ids, port=0, max_envs=4, oracle=True, auth=False)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        cfg = TrainConfig(scenarios=tuple(ids), env_server=server.url)
        for _ in range(2):
            for scenario in map(simenv.load_scenario, ids):
                with environments(cfg, scenario) as pool:
                    episodes = run(scenario, Oracle(), plan_jobs(scenario, limit=6), pool=pool)
                assert len(episodes) == 6 and all(e.success for e in episodes)
                assert len(server.app.envs) == 0
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
