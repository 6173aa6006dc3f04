"""The two systems that bench/trainer_vs_trl.py times, and what they share (see its docstring).

``Setup`` holds the comparison's settings; ``build_shared`` writes the model both load;
``Ours`` runs one step of the trainer; ``trl_trainer`` builds TRL's GRPOTrainer, and
``wrap_timed`` with ``Interleave`` time its steps and run ours between them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset
from peft import LoraConfig
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    Qwen2Config,
    Qwen2ForCausalLM,
    TrainerCallback,
)
from trl import GRPOConfig, GRPOTrainer

import simenv
from simenv.rollouts.policies import HF
from simenv.rollouts.policies.base import Conversation
from simenv.types import Episode
from trainer.advantages import ESTIMATORS
from trainer.config import TrainConfig
from trainer.models import load, with_lora
from trainer.samples import Sample, episode_samples
from trainer.train import policy_update
from trainer.warm_start import build_model

SCENARIO = "support/Triage-v1"

# Qwen2-0.5B's shape (its config.json), built here with random weights: nothing is downloaded.
QWEN2_05B: dict[str, Any] = {
    "hidden_size": 896,
    "intermediate_size": 4864,
    "num_hidden_layers": 24,
    "num_attention_heads": 14,
    "num_key_value_heads": 2,
    "vocab_size": 151_936,
    "max_position_embeddings": 32_768,
    "rope_theta": 1_000_000.0,
    "rms_norm_eps": 1e-6,
    "tie_word_embeddings": True,
}
SMOKE = {"num_hidden_layers": 2, "vocab_size": 4096}  # --smoke: the same code path, CPU-sized


@dataclass(frozen=True)
class Setup:
    """What both systems are given: model, device, dtype and sizes (in ``cfg``)."""

    cfg: TrainConfig
    model: str  # "tiny" or "qwen2-0.5b"
    device: torch.device
    smoke: bool = False

    @property
    def dtype(self) -> torch.dtype:
        return torch.bfloat16 if self.device.type == "cuda" else torch.float32

    @property
    def on_ids(self) -> bool:
        """Reward on token ids: the 0.5B samples from 151,936 ids, ours decodes a few hundred."""
        return self.model != "tiny"

    def reward(self, text: str, ids: list[int]) -> float:
        """Cheap and varied, so groups carry signal; the same function on both sides."""
        return float(sum(ids) % 2) if self.on_ids else float(sum(map(ord, text)) % 2)

    def sync(self) -> None:
        """Wait for the GPU's queued work, so that the wall clock covers it."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


# ----------------------------------------------------------------------------- shared setup
def load_scenario() -> simenv.Scenario:
    """The scenario, also from a checkout that is not pip-installed (no entry points)."""
    try:
        return simenv.load_scenario(SCENARIO)
    except simenv.RegistrationError:
        from scenarios import bundled  # the repository's own package, beside simenv

        for scenario in bundled():
            if scenario.id == SCENARIO:
                simenv.register(scenario, source="bench")
        return simenv.load_scenario(SCENARIO)


def build_shared(
    directory: Path, setup: Setup
) -> tuple[list[tuple[list[Any], dict[str, Any]]], list[str], int]:
    """Save the model to ``directory``; return the first turns, their rendered text, params."""
    scenario = load_scenario()
    # ``tiny`` as the trainer builds it; its tokenizer (trained on the scenario) serves both.
    model, tokenizer = build_model(replace(setup.cfg, model="tiny"), [scenario], setup.device)
    if setup.model == "qwen2-0.5b":
        shape = {**QWEN2_05B, **(SMOKE if setup.smoke else {})}
        config = Qwen2Config(
            **shape,
            bos_token_id=None,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
        torch.manual_seed(setup.cfg.seed)
        with setup.device:  # random init on the GPU when there is one: seconds, not a minute
            model = Qwen2ForCausalLM(config)
        model.generation_config.eos_token_id = tokenizer.eos_token_id
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.to(setup.dtype).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    params = sum(p.numel() for p in model.parameters())
    del model
    env = simenv.make(scenario)
    firsts, texts = [], []
    for i, task in enumerate(scenario.split("train")[: setup.cfg.batch_tasks]):
        observation, info = env.reset(seed=i, options={"task_id": task.id})
        info["group"] = i
        firsts.append((list(observation), info))
        texts.append(
            tokenizer.apply_chat_template(
                list(observation), tools=info["tools"], add_generation_prompt=True, tokenize=False
            )
        )
    return firsts, texts, params


# ----------------------------------------------------------------------------- ours
class Ours:
    """The trainer's objects: LoRA model, AdamW, the HF sampler."""

    def __init__(
        self, directory: Path, firsts: list[tuple[list[Any], dict[str, Any]]], setup: Setup
    ) -> None:
        cfg = self.cfg = setup.cfg
        self.setup = setup
        model, self.tokenizer = load(directory, device=setup.device)  # bf16 on cuda, else fp32
        self.model = with_lora(model, rank=cfg.lora_rank, alpha=cfg.lora_alpha)
        self.optimizer = torch.optim.AdamW(
            [p for p in self.model.parameters() if p.requires_grad], lr=cfg.lr
        )
        self.sampler = HF(
            self.model,
            self.tokenizer,
            temperature=cfg.temperature,
            max_new_tokens=cfg.max_new_tokens,
            batch_size=max(64, cfg.batch_tasks * cfg.group_size),  # one batch, as TRL's
            seed=cfg.seed,
        )
        self.firsts = firsts
        self.pad = int(self.tokenizer.pad_token_id)
        self.prompts: set[tuple[int, ...]] = set()

    def step(self, seed: int) -> dict[str, float]:
        """One RL step: rollout, samples, update; seconds and tokens of each part."""
        cfg, sync = self.cfg, self.setup.sync
        self.sampler.reseed(seed)
        conversations = [
            Conversation(list(messages), {**info, "sample": g})
            for messages, info in self.firsts
            for g in range(cfg.group_size)
        ]
        sync()
        began = time.perf_counter()
        texts = self.sampler.act(conversations)
        sync()
        rolled = time.perf_counter()
        turns = [c.memo["turns"][0] for c in conversations]
        rewards = torch.tensor(
            [self.setup.reward(x, t["completion_ids"]) for x, t in zip(texts, turns, strict=True)]
        )
        groups = torch.tensor([c.info["group"] for c in conversations])
        advantages = ESTIMATORS[cfg.advantage](rewards, groups).values.tolist()
        samples: list[Sample] = []
        for i, (c, a) in enumerate(zip(conversations, advantages, strict=True)):
            if a != 0.0:
                episode = Episode(
                    SCENARIO, c.info["task_id"], c.info["seed"], tuple(c.messages), (), 0.0,
                    metadata={"turns": c.memo["turns"]},
                )  # fmt: skip
                for sample in episode_samples(episode, i):
                    sample.advantage = a
                    samples.append(sample)
        scored = time.perf_counter()
        policy_update(self.model, self.optimizer, samples, cfg, self.pad)
        sync()
        updated = time.perf_counter()
        self.prompts.update(tuple(t["prompt_ids"]) for t in turns)
        return {
            "rollout_s": rolled - began,
            "rollout_tokens": sum(len(t["completion_ids"]) for t in turns),
            "score_s": scored - rolled,
            "train_s": updated - scored,
            "train_tokens": sum(len(s.input_ids) for s in samples),
            "step_s": updated - began,
        }


# ----------------------------------------------------------------------------- TRL
def trl_trainer(directory: Path, texts: list[str], steps: int, out: Path, setup: Setup) -> Any:
    """A GRPOTrainer on the same model, prompts and sizes (see trainer_vs_trl's docstring)."""
    cfg = setup.cfg
    cuda = setup.device.type == "cuda"
    model = AutoModelForCausalLM.from_pretrained(str(directory), dtype=setup.dtype)
    tokenizer = AutoTokenizer.from_pretrained(str(directory))
    sequences = cfg.batch_tasks * cfg.group_size
    args = GRPOConfig(
        output_dir=str(out),
        num_generations=cfg.group_size,
        per_device_train_batch_size=cfg.micro_batch,
        gradient_accumulation_steps=sequences // cfg.micro_batch,
        max_completion_length=cfg.max_new_tokens,
        temperature=cfg.temperature,
        top_p=1.0,
        top_k=0,
        beta=cfg.kl_coef,
        epsilon=1 - cfg.clip_low,
        epsilon_high=cfg.clip_high - 1,
        loss_type="dapo",
        num_iterations=cfg.updates_per_batch,
        learning_rate=cfg.lr,
        lr_scheduler_type="constant",
        optim="adamw_torch",
        max_grad_norm=1.0,
        gradient_checkpointing=False,
        bf16=cuda,
        fp16=False,
        use_cpu=not cuda,
        use_vllm=False,
        shuffle_dataset=False,
        max_steps=steps,
        logging_steps=10**6,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        seed=cfg.seed,
    )
    peft = LoraConfig(
        r=cfg.lora_rank,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=0.0,
        target_modules="all-linear",
        task_type="CAUSAL_LM",
    )

    def reward(completions: list[str], completion_ids: list[list[int]], **_: Any) -> list[float]:
        return [setup.reward(c, ids) for c, ids in zip(completions, completion_ids, strict=True)]

    return GRPOTrainer(
        model=model,
        reward_funcs=reward,
        args=args,
        train_dataset=Dataset.from_dict({"prompt": texts}),
        processing_class=tokenizer,
        peft_config=peft,
    )


def wrap_timed(trainer: Any, name: str, sink: dict[str, Any], setup: Setup) -> None:
    """Replace ``trainer.name`` by a wrapper adding its seconds and last output to ``sink``."""
    inner = getattr(trainer, name)

    def timed(*args: Any, **kwargs: Any) -> Any:
        setup.sync()
        began = time.perf_counter()
        out = inner(*args, **kwargs)
        setup.sync()
        sink[name] = sink.get(name, 0.0) + time.perf_counter() - began
        sink[f"{name}:out"] = out
        return out

    setattr(trainer, name, timed)


class Interleave(TrainerCallback):
    """Times each TRL optimizer step, then runs one step of ours (outside TRL's timed window)."""

    def __init__(self, ours: Ours, sink: dict[str, Any]) -> None:
        self.ours, self.sink = ours, sink
        self.trl: list[dict[str, float]] = []
        self.mine: list[dict[str, float]] = []
        self.trl_prompts: set[tuple[int, ...]] = set()
        self.began = 0.0

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.sink.clear()
        self.ours.setup.sync()
        self.began = time.perf_counter()

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.ours.setup.sync()
        total = time.perf_counter() - self.began
        prompt_ids, completion_ids = self.sink["_generate:out"][:2]
        batch = self.sink["_generate_and_score_completions:out"]
        generate = self.sink["_generate"]
        scored = self.sink["_generate_and_score_completions"]
        self.trl_prompts.update(tuple(int(i) for i in p) for p in prompt_ids)
        self.trl.append(
            {
                "rollout_s": generate,
                "rollout_tokens": sum(len(c) for c in completion_ids),
                "score_s": scored - generate,
                "train_s": total - scored,
                "train_tokens": int(batch["prompt_mask"].sum() + batch["completion_mask"].sum()),
                "step_s": total,
            }
        )
        self.mine.append(self.ours.step(seed=len(self.mine)))
