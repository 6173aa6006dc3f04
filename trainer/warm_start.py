"""The warm start: build the model, then cross-entropy on oracle episodes of the train split.

A model that cannot yet write tool calls learns the format here, before RL. ``tiny`` is built
from a config with a tokenizer trained on the scenarios' oracle transcripts; the warm start
stops on what the policy does on a validation slice of the train split, not on a step count
(see :func:`warm_start`). :mod:`trainer.train` calls it once, before the RL loop.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from typing import Any

import torch

import simenv
from simenv.rollouts import Job, run
from simenv.rollouts.policies import HF, Oracle
from simenv.types import Episode
from trainer.config import TrainConfig
from trainer.losses import masked_sum
from trainer.models import CHAT_TEMPLATE, build_tiny, load, token_logprobs
from trainer.samples import Sample, collate

__all__ = [
    "build_model",
    "oracle_episodes",
    "raw_messages",
    "render",
    "sft_learning_rate",
    "sft_samples",
    "validation_success",
    "warm_start",
]

Log = Callable[[dict[str, float], int], None]


# ----------------------------------------------------------------------------- model
def oracle_episodes(scenarios: Sequence[simenv.Scenario], seeds: int) -> list[Episode]:
    """Oracle episodes of every train task, ``seeds`` seeds each."""
    out = []
    for s in scenarios:
        env = simenv.make(s)
        for i, task in enumerate(s.split("train")):
            for k in range(seeds):
                out.append(simenv.rollout(env, Oracle(), seed=100_000 * k + i, task_id=task.id))
    return out


def render(messages: list[dict[str, Any]], tools: Any, generation: bool = False) -> str:
    """The chat template of ``tiny``, rendered without a tokenizer (to train one)."""
    import jinja2

    env = jinja2.Environment()
    env.policies["json.dumps_kwargs"] = {"ensure_ascii": False}
    return env.from_string(CHAT_TEMPLATE).render(
        messages=messages, tools=tools, add_generation_prompt=generation
    )


def raw_messages(episode: Episode) -> list[dict[str, Any]]:
    """The conversation with each assistant turn as the text a model would write."""
    out = []
    for m in episode.messages:
        if m["role"] == "assistant":
            calls = "".join(
                f'<tool_call>{{"name": "{c["function"]["name"]}", "arguments": '
                f"{c['function']['arguments']}}}</tool_call>"
                for c in m.get("tool_calls") or []
            )
            out.append({"role": "assistant", "content": m["content"] + calls})
        else:
            out.append(m)
    return out


def build_model(
    cfg: TrainConfig, scenarios: Sequence[simenv.Scenario], device: torch.device
) -> Any:
    """Load the model named by the config, or build ``tiny`` for these scenarios."""
    if cfg.model != "tiny":
        return load(cfg.model, device=device)
    tools = [t.schema() for s in scenarios for t in s.tools]
    corpus = [render(raw_messages(e), tools) for e in oracle_episodes(scenarios, seeds=3)]
    model, tokenizer = build_tiny(corpus, seed=cfg.seed)
    if cfg.init_noise:
        noise = torch.Generator().manual_seed(cfg.seed + 1)
        with torch.no_grad():
            for p in model.parameters():
                p.mul_(1.0 + cfg.init_noise * torch.randn(p.shape, generator=noise))
    return model.to(device), tokenizer


# ----------------------------------------------------------------------------- warm start
def sft_samples(episodes: Sequence[Episode], policy: HF) -> list[Sample]:
    """One sample per oracle turn: the prompt as the policy renders it, then the gold text."""
    from simenv.rollouts.policies.base import Conversation

    tok = policy.tokenizer
    samples = []
    for e in episodes:
        raw = [m["content"] for m in raw_messages(e) if m["role"] == "assistant"]
        info = {"tools": [t.schema() for t in simenv.load_scenario(e.scenario_id).tools]}
        turn = 0
        for i, m in enumerate(e.messages):
            if m["role"] != "assistant":
                continue
            conv = Conversation(list(e.messages[:i]), info, memo={"raw_turns": raw[:turn]})
            prompt = policy.prompt_ids(conv)
            completion = tok(raw[turn], add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
            samples.append(
                Sample(
                    prompt + completion,
                    [0] * len(prompt) + [1] * len(completion),
                    [0.0] * (len(prompt) + len(completion)),
                )
            )
            turn += 1
    return samples


def warm_start(
    model: Any,
    policy: HF,
    cfg: TrainConfig,
    samples: list[Sample],
    scenarios: Sequence[simenv.Scenario],
    log: Log,
) -> int:
    """Cross-entropy on the gold completions (token mean over each batch); returns its steps.

    The learning rate warms up linearly over ``sft_warmup`` steps and then follows a cosine to
    0 at ``sft_steps``; gradients are clipped to norm 1. Every ``sft_check_every`` steps from
    step ``sft_check_from`` on, the policy plays a validation slice of the train split
    (:func:`validation_success`); the warm start stops as soon as that success reaches
    ``sft_target``. A tiny model's success climbs in steep jumps (a third of the tickets, then
    two thirds, then all), and where a jump falls depends on float rounding: stopping on what
    the model does, not on a step count, gives RL the same kind of start on every machine.
    """
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.sft_lr)
    rng = random.Random(cfg.seed)
    pad = policy.tokenizer.pad_token_id
    device = next(model.parameters()).device
    for step in range(cfg.sft_steps):
        for group in optimizer.param_groups:
            group["lr"] = sft_learning_rate(cfg, step)
        batch = collate(rng.sample(samples, min(cfg.sft_batch, len(samples))), pad, device)
        logp = token_logprobs(model, batch.input_ids, batch.attention_mask, batch.loss_mask)
        loss = -masked_sum(logp, batch.loss_mask, batch.num_tokens)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        values = {"sft/loss": float(loss.detach())}
        check = (
            cfg.sft_target > 0
            and step + 1 >= cfg.sft_check_from
            and (step + 1) % cfg.sft_check_every == 0
        )
        if check:
            values["sft/val_success"] = validation_success(policy, scenarios, cfg)
        if step % 10 == 0 or check or step == cfg.sft_steps - 1:
            log(values, step)
        if check and values["sft/val_success"] >= cfg.sft_target:
            return step + 1
    return cfg.sft_steps


def sft_learning_rate(cfg: TrainConfig, step: int) -> float:
    """Linear warm-up over ``sft_warmup`` steps, then a cosine from ``sft_lr`` to 0."""
    warm = min(cfg.sft_warmup, cfg.sft_steps - 1)
    if step < warm:
        return cfg.sft_lr * (step + 1) / warm
    progress = (step - warm) / max(cfg.sft_steps - warm, 1)
    return cfg.sft_lr * 0.5 * (1.0 + math.cos(math.pi * progress))


def validation_success(policy: HF, scenarios: Sequence[simenv.Scenario], cfg: TrainConfig) -> float:
    """Success on every 4th train task, ``sft_check_samples`` samples each, fixed seeds.

    The tasks are train tasks (the eval split stays held out for the before/after numbers);
    their episode seeds (70,000 + i) are ones the warm start's oracle episodes never used, so
    the starting states (customers' plans, say) are new to the model.
    """
    trained_seed = policy.seed
    policy.reseed(cfg.seed)
    wins = total = 0
    for s in scenarios:
        tasks = list(s.split("train"))[::4]
        jobs = [
            Job(t.id, 70_000 + i, i, g)
            for i, t in enumerate(tasks)
            for g in range(cfg.sft_check_samples)
        ]
        episodes = run(s, policy, jobs, batch_size=len(jobs))
        wins += sum(e.success for e in episodes)
        total += len(episodes)
    policy.reseed(trained_seed)
    return wins / max(total, 1)
