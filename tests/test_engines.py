"""The rollout engine (trainer/engines.py) against the vLLM stand-in, with real adapters.

The stand-in (tests/gateway_support.py) stands for a vLLM server, which cannot run here: a real
HTTP server on 127.0.0.1 that loads each LoRA adapter directory with peft and serves that
adapter's logprobs, so the engine's check (server logprobs = the trainer's own) is a real
comparison; ``mode = "stale"`` makes it acknowledge loads and keep serving the old weights.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

from gateway_support import ADMIN_KEY, AWS, VLLMStandIn, standin  # noqa: E402

import simenv  # noqa: E402
from simenv.rollouts import Job, run  # noqa: E402
from simenv.rollouts.policies import HF  # noqa: E402
from simenv.server.gateway import Gateway, Policy  # noqa: E402
from trainer.config import TrainConfig  # noqa: E402
from trainer.engines import EngineError, HFEngine, ServerEngine, open_engine, trainer_logprobs  # noqa: E402
from trainer.models import build_tiny, load, with_lora  # noqa: E402

SCENARIO = "support/Refunds-v1"


@pytest.fixture(scope="module")
def out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run directory with OUT/base, as the trainer writes it before RL."""
    folder = tmp_path_factory.mktemp("run")
    build_tiny(seed=0, save_dir=folder / "base")
    return folder


@pytest.fixture
def served(out: Path) -> Iterator[VLLMStandIn]:
    with standin(out / "base", served="simenv-base") as stand:
        yield stand


def lora_model(out: Path, rank: int = 4) -> tuple[Any, Any]:
    base, tokenizer = load(out / "base")
    return with_lora(base, rank=rank), tokenizer


def update(model: Any, scale: float = 0.3, seed: int = 0) -> None:
    """An optimizer step's worth of change, big enough that old and new logprobs differ."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.requires_grad and ("lora_B" in name or "lora" not in name):
                p.add_(scale * torch.randn(p.shape, generator=generator))


def episodes(policy: HF, n: int = 2) -> list[simenv.Episode]:
    scenario = simenv.load_scenario(SCENARIO)
    task = scenario.split("train")[0]
    return run(scenario, policy, [Job(task.id, 7, 0, g) for g in range(n)], batch_size=n)


def connect(out: Path, stand: VLLMStandIn, **fields: Any) -> tuple[ServerEngine, Any, Any]:
    fields.setdefault("lora_rank", 4)
    cfg = TrainConfig(rollout_engine="vllm", engine_url=stand.url, **fields)
    model, tokenizer = lora_model(out) if cfg.lora_rank else load(out / "base")
    engine = open_engine(cfg, out, tokenizer)
    assert isinstance(engine, ServerEngine)
    return engine, model, tokenizer


# ----------------------------------------------------------------------------- LoRA
def test_rollouts_come_from_the_server_and_each_update_loads_a_checked_adapter(
    out: Path, served: VLLMStandIn
) -> None:
    engine, model, tokenizer = connect(out, served)
    assert engine.served == "simenv-base"  # read from the server's /v1/models
    policy = HF(model, tokenizer, max_new_tokens=6, seed=1)
    engine.attach(policy)
    metrics = engine.sync(model, 0)
    assert metrics["engine/logprob_diff"] < 1e-4
    assert served.loads[-1]["lora_name"] == "simenv-v0"
    assert Path(served.loads[-1]["lora_path"], "adapter_config.json").exists()
    assert set(served.adapters) == {"simenv-v0"} and engine.sampler.model == "simenv-v0"

    played = episodes(policy)
    completions = [r for r in served.requests if "prompt" in r and r["model"] == "simenv-v0"]
    assert len(completions) >= len(played)  # every turn was sampled by the server
    for episode in played:  # the recorded logprobs are the served adapter's, the trainer's own
        for turn in episode.metadata["turns"]:
            ours = trainer_logprobs(model, turn["prompt_ids"], turn["completion_ids"])
            assert max(abs(a - b) for a, b in zip(ours, turn["logprobs"], strict=True)) < 1e-4

    update(model)
    with pytest.raises(EngineError, match="does not serve the updated policy"):
        engine.check(model)  # the server still serves v0: the check tells them apart
    metrics = engine.sync(model, 1)
    assert metrics["engine/logprob_diff"] < 1e-4
    assert set(served.adapters) == {"simenv-v1"}  # the old adapter was unloaded
    assert engine.sampler.model == "simenv-v1" and engine.version == 1
    assert not (out / "engine" / "adapter-v0").exists()
    stale_name = {"model": "simenv-v0", "prompt": [1, 2], "max_tokens": 1, "temperature": 1.0}
    status, _ = _post(served.url + "/v1/completions", stale_name)
    assert status == 404  # as vLLM answers for an unloaded adapter


def test_a_server_that_keeps_the_old_adapter_stops_training(out: Path, served: VLLMStandIn) -> None:
    engine, model, _ = connect(out, served)
    engine.sync(model, 0)
    update(model, seed=1)
    served.mode = "stale"  # acknowledges the load, serves the old weights
    with pytest.raises(EngineError, match="does not serve the updated policy") as caught:
        engine.sync(model, 1)
    assert "differ from the trainer's by" in str(caught.value)
    assert "simenv-v1" not in served.adapters  # unloaded again
    assert engine.sampler.model == "simenv-v0" and engine.version == 0  # still the checked one
    assert not (out / "engine" / "adapter-v1").exists()
    served.mode = "ok"
    assert engine.sync(model, 1)["engine/logprob_diff"] < 1e-4  # a working server: goes on


def test_a_refused_load_is_an_engine_error(out: Path, served: VLLMStandIn) -> None:
    engine, model, _ = connect(out, served)
    served.mode = "fail"
    with pytest.raises(EngineError, match="refused POST /v1/load_lora_adapter: 500"):
        engine.sync(model, 0)
    served.mode = "ok"
    assert engine.adapter is None and engine.sampler.model == "simenv-base"


def test_the_sync_pauses_a_gateway_serving_through_the_engine(
    out: Path, served: VLLMStandIn
) -> None:
    engine, model, tokenizer = connect(out, served)
    gateway = Gateway(Policy(tokenizer, engine.sampler, "policy"), admin_key=ADMIN_KEY, aws=AWS)
    engine.sync(model, 4, gateway=gateway)
    assert gateway.policy_version == 4 and not gateway.paused
    trajectory, _ = gateway.create()
    _, answer = gateway.sample(trajectory, {"messages": [{"role": "user", "content": "hi"}]})
    assert answer["choices"][0]["message"]["role"] == "assistant"
    assert served.requests[-1]["model"] == "simenv-v4"  # the gateway samples the new adapter
    served.mode = "stale"
    update(model, seed=2)
    with pytest.raises(EngineError):
        engine.sync(model, 5, gateway=gateway)
    assert gateway.policy_version == 4 and not gateway.paused  # resumed, version unchanged
    served.mode = "ok"


# ----------------------------------------------------------------------------- full fine-tune
def test_a_full_fine_tune_is_reloaded_from_the_served_directory(out: Path, tmp_path: Path) -> None:
    shutil.copytree(out / "base", tmp_path / "served")
    with standin(tmp_path / "served", served="simenv-base") as stand:
        engine, model, _ = connect(out, stand, lora_rank=0)
        assert engine.weights_dir == tmp_path / "served"  # vLLM's /v1/models root
        update(model)
        metrics = engine.sync(model, 1)
        assert metrics["engine/logprob_diff"] < 1e-4
        assert {"method": "reload_weights"} in stand.requests
        assert stand.loads == []  # no adapter: the whole model was reloaded
        stand.mode = "stale"
        update(model, seed=3)
        with pytest.raises(EngineError, match="does not serve the updated policy"):
            engine.sync(model, 2)


# ----------------------------------------------------------------------------- the train loop
PARITY = '''"""Parity: the reward is the parity of the answer's length, so sampled groups differ."""

from simenv import Outcome, Scenario, Task


def reward(o: Outcome) -> float:
    return float(len(str(o.messages[-1].get("content") or "")) % 2)


def evaluate(o: Outcome) -> bool:
    return reward(o) == 1.0


def oracle(task: Task, state: object) -> list[str]:
    return ["odd"]


SCENARIO = Scenario(
    id="test/Parity-v1",
    system_prompt="Answer in a few words.",
    tools=[],
    tasks=[Task(f"t{i}", "Say something.", "eval" if i == 3 else "train", {}) for i in range(4)],
    reward=reward,
    evaluate=evaluate,
    oracle=oracle,
    max_turns=1,
)
'''


def test_simenv_train_samples_through_the_engine_and_syncs_after_each_update(
    tmp_path: Path,
) -> None:
    out = tmp_path / "run"
    (tmp_path / "parity.py").write_text(PARITY)  # a reward that varies within a group
    with standin(out / "base", served="simenv-base") as stand:  # base/ is written by train()
        cfg = TrainConfig(
            scenarios=(str(tmp_path / "parity.py"),),
            rollout_engine="vllm",
            engine_url=stand.url,
            lora_rank=4,
            steps=2,
            batch_tasks=2,
            group_size=4,
            sft_steps=0,
            eval_samples=1,
            eval_every=100,
            max_new_tokens=8,
            checkpoint_every=100,
            out=str(out),
            lr=0.05,
        )
        from trainer.train import train

        train(cfg)
        rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        sampled = [r for r in stand.requests if "prompt" in r]
    loaded = [entry["lora_name"] for entry in stand.loads]
    assert loaded[0] == "simenv-v0"  # before any rollout
    steps = [r for r in rows if "episode/reward" in r]
    synced = [r for r in steps if "engine/logprob_diff" in r]
    assert synced and len(loaded) == 1 + len(synced)  # one adapter per update, each checked
    assert all(r["engine/logprob_diff"] < 1e-4 for r in synced)
    assert {r["model"] for r in sampled} <= {f"simenv-v{k}" for k in range(3)}  # never the base
    assert len(sampled) >= cfg.batch_tasks * cfg.group_size  # rollouts and evaluations


# ----------------------------------------------------------------------------- configuration
def test_the_engine_options_and_their_refusals(tmp_path: Path) -> None:
    assert isinstance(open_engine(TrainConfig(), tmp_path, None), HFEngine)
    with pytest.raises(ValueError, match="rollout_engine must be hf, vllm or sglang"):
        TrainConfig(rollout_engine="tgi")
    with pytest.raises(ValueError, match="engine_url is the URL of a vllm or sglang server"):
        TrainConfig(engine_url="http://127.0.0.1:9")
    with pytest.raises(ValueError, match="engine_tolerance must be > 0"):
        TrainConfig(rollout_engine="vllm", engine_tolerance=0)
    _, tokenizer = build_tiny(seed=0)
    with pytest.raises(EngineError, match="no model server answers"):
        open_engine(
            TrainConfig(rollout_engine="vllm", engine_url="http://127.0.0.1:9"), tmp_path, tokenizer
        )
    if shutil.which("vllm") is None:  # this machine: no vLLM, and the error says what to do
        with pytest.raises(EngineError, match="needs vllm installed"):
            open_engine(TrainConfig(rollout_engine="vllm", lora_rank=4), tmp_path, tokenizer)
    help_text = subprocess.run(
        [str(Path(sys.executable).with_name("simenv")), "train", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "200"},
    ).stdout
    assert "--rollout-engine" in help_text and "--engine-url" in help_text
    if shutil.which("vllm") is None:  # the GPU benchmark stops at once, saying what it needs
        bench = Path(__file__).parents[1] / "bench" / "vllm_rollouts.py"
        result = subprocess.run(
            [sys.executable, str(bench), "--model", str(tmp_path)],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=bench.parent,
        )
        assert result.returncode == 1 and "needs vLLM: pip install vllm" in result.stderr


def _post(url: str, body: dict[str, Any]) -> tuple[int, Any]:
    request = urllib.request.Request(
        url, json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return int(answer.status), json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return int(exc.code), json.loads(exc.read())
