"""The training loop, top to bottom: warm start, then rollouts -> advantages -> loss -> step.

1. Model: a local directory or ``tiny`` (built from a config, its tokenizer trained on the
   scenarios' oracle transcripts).
2. Optional supervised warm start on oracle episodes of the train split (:mod:`trainer.warm_start`),
   so a model that cannot yet write tool calls learns the format. The base model is saved,
   then wrapped with LoRA.
3. Each RL step: draw ``batch_tasks`` train tasks (from the scenario mixture, by weight), play
   ``group_size`` episodes per task with the live model through simenv's runner (one batched
   generate per turn), compute advantages per group, and take ``updates_per_batch`` optimizer
   steps on the token-level loss, micro-batch by micro-batch.
4. Evaluate on the held-out eval split before, every ``eval_every`` steps, and after; write
   checkpoints (adapter, optimizer, step, RNG) every ``checkpoint_every`` steps; resume from the
   last one after a kill.

Everything is logged to ``OUT/metrics.jsonl`` and the terminal, and to MLflow when installed.
"""

from __future__ import annotations

import contextlib
import json
import random
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

import simenv
from simenv.evaluation import pass_at_k
from simenv.rollouts import Job, run
from simenv.rollouts.policies import HF
from simenv.types import Episode
from trainer.advantages import PARAMS, Advantages, RewardBatch, bind
from trainer.checkpoints import (
    checkpoint_step,
    evaluation_at,
    load_checkpoint,
    read_metrics,
    resume_point,
    save_checkpoint,
)
from trainer.collect import open_collection
from trainer.config import TrainConfig
from trainer.engines import open_engine
from trainer.losses import (
    LossFn,
    bind_loss,
    kl_k3,
    masked_sum,
    sequence_weights,
    truncated_is_weight,
)
from trainer.models import describe, load, token_logprobs, with_lora
from trainer.runtime import quiet_library_warnings, resolve_device, runtime_info
from trainer.samples import Sample, collate, episode_samples
from trainer.warm_start import Log, build_model, oracle_episodes, sft_samples, warm_start


def environments(cfg: TrainConfig, scenario: simenv.Scenario) -> Any:
    """Where one ``run()`` plays its episodes: a pool on ``cfg.env_server``, or this process.

    A server pool lives for one call and deletes its environments at the end, so pools of
    several scenarios never hold the server's slots at once.
    """
    if not cfg.env_server:
        return contextlib.nullcontext(None)
    from simenv.server import RemotePool

    return RemotePool(cfg.env_server, scenario)


# ----------------------------------------------------------------------------- evaluation
def evaluate(
    policy: HF,
    scenarios: Sequence[simenv.Scenario],
    cfg: TrainConfig,
) -> dict[str, float]:
    """Success rate and pass@k on every eval task, ``eval_samples`` samples each, fixed seeds."""
    metrics: dict[str, float] = {}
    trained_seed = policy.seed
    policy.reseed(cfg.seed)  # the same sampling draws at every evaluation: paired comparisons
    for s in scenarios:
        tasks = s.split("eval")
        jobs = [
            Job(t.id, 50_000 + i, i, g)
            for i, t in enumerate(tasks)
            for g in range(cfg.eval_samples)
        ]
        with environments(cfg, s) as pool:
            episodes = run(s, policy, jobs, batch_size=len(jobs), pool=pool)
        wins: dict[str, int] = {}
        for e in episodes:
            wins[e.task_id] = wins.get(e.task_id, 0) + int(e.success)
        n = cfg.eval_samples
        prefix = f"eval/{s.id}/" if len(scenarios) > 1 else "eval/"
        metrics[f"{prefix}success"] = sum(wins.values()) / (n * len(tasks))
        metrics[f"{prefix}reward"] = sum(e.reward for e in episodes) / len(episodes)
        for k in sorted({1, n}):
            metrics[f"{prefix}pass@{k}"] = sum(pass_at_k(n, c, k) for c in wins.values()) / len(
                tasks
            )
    policy.reseed(trained_seed)
    return metrics


# ----------------------------------------------------------------------------- one RL step
def rollout_batch(
    policy: HF,
    scenarios: Sequence[simenv.Scenario],
    cfg: TrainConfig,
    rng: random.Random,
    step: int,
) -> list[Episode]:
    """Draw tasks from the mixture and play ``group_size`` episodes of each."""
    weights = list(cfg.weights) or [1.0] * len(scenarios)
    chosen = rng.choices(range(len(scenarios)), weights=weights, k=cfg.batch_tasks)
    episodes: list[Episode] = []
    for si, s in enumerate(scenarios):
        count = chosen.count(si)
        if not count:
            continue
        tasks = rng.sample(list(s.split("train")), count)
        base = len(episodes) // cfg.group_size
        seeds = [rng.randrange(2**31) for _ in tasks]  # one per task: a group shares its state
        jobs = [
            Job(t.id, seed, base + i, g, tag=f"step{step}")
            for i, (t, seed) in enumerate(zip(tasks, seeds, strict=True))
            for g in range(cfg.group_size)
        ]
        with environments(cfg, s) as pool:
            episodes += run(s, policy, jobs, batch_size=len(jobs), pool=pool)
    return episodes


def estimator(cfg: TrainConfig) -> Callable[[RewardBatch], Advantages]:
    """The advantage estimator of ``cfg``, with its parameters bound (chosen once)."""
    values = {"gamma": cfg.gamma, "k": cfg.pass_k}
    return bind(cfg.advantage, **{p: values[p] for p in PARAMS[cfg.advantage] if p in values})


def reward_batch(episodes: Sequence[Episode]) -> RewardBatch:
    """What the estimators read: rewards, GRPO groups, per-turn rewards, generated lengths."""
    turns = [[s.reward for s in e.steps] or [e.reward] for e in episodes]
    lengths = [
        max(1, sum(len(t["completion_ids"]) for t in e.metadata.get("turns", ()))) for e in episodes
    ]
    return RewardBatch(
        rewards=torch.tensor([e.reward for e in episodes]),
        group_ids=torch.tensor([e.group for e in episodes]),
        turn_rewards=turns,
        lengths=torch.tensor(lengths),
    )


def training_samples(
    episodes: Sequence[Episode], estimate: Callable[[RewardBatch], Advantages]
) -> tuple[list[Sample], Advantages]:
    """The batch's samples with their advantages; episodes whose every advantage is 0 (flat
    groups) are left out. A per-turn estimator's advantages land on their own turn's tokens."""
    adv = estimate(reward_batch(episodes))
    samples: list[Sample] = []
    for i, (e, a) in enumerate(zip(episodes, adv.values.tolist(), strict=True)):
        per_turn = adv.per_turn[i] if adv.per_turn is not None else None
        if not (any(per_turn) if per_turn is not None else a):
            continue  # no advantage on any of its tokens
        for sample in episode_samples(e, i):
            sample.advantage = a
            sample.turn_advantages = per_turn
            samples.append(sample)
    return samples, adv


def policy_update(
    model: Any,
    optimizer: Any,
    samples: list[Sample],
    cfg: TrainConfig,
    pad: int,
    loss_fn: LossFn | None = None,
) -> dict[str, float]:
    """``updates_per_batch`` optimizer steps on the batch; returns the last step's stats.

    ``loss_fn`` is the policy loss with its parameters bound (:func:`trainer.losses.bind_loss`,
    once per run); by default it is bound here from ``cfg``.
    """
    loss_fn = loss_fn or bind_loss(
        cfg.loss, clip_low=cfg.clip_low, clip_high=cfg.clip_high, cispo_high=cfg.cispo_high
    )
    device = next(model.parameters()).device
    batches = [
        collate(samples[i : i + cfg.micro_batch], pad, device)
        for i in range(0, len(samples), cfg.micro_batch)
    ]
    num_tokens = sum(b.num_tokens for b in batches)
    if cfg.aggregation == "sequence":
        weights = sequence_weights(
            [s.episode for s in samples], [sum(s.loss_mask) for s in samples]
        )
        for i, b in enumerate(batches):
            w = torch.tensor(
                weights[i * cfg.micro_batch : (i + 1) * cfg.micro_batch], device=device
            )
            b.loss_mask = b.loss_mask * w[:, None].to(b.loss_mask.dtype)
    old = []
    for b in batches:  # the trainer's own logprobs before the update, for the TIS correction
        if cfg.tis_cap > 0:
            with torch.no_grad():
                old.append(
                    token_logprobs(
                        model,
                        b.input_ids,
                        b.attention_mask,
                        b.loss_mask,
                        temperature=cfg.temperature,
                    )
                )
        else:
            old.append(b.logprobs)
    stats: dict[str, float] = {}
    for _ in range(cfg.updates_per_batch):
        optimizer.zero_grad()
        totals: dict[str, float] = {}
        for b, old_logp in zip(batches, old, strict=True):
            logp, entropy = token_logprobs(
                model,
                b.input_ids,
                b.attention_mask,
                b.loss_mask,
                temperature=cfg.temperature,
                entropy=True,
            )
            mask = b.loss_mask
            if cfg.tis_cap > 0:
                mask = mask * truncated_is_weight(old_logp, b.logprobs, cfg.tis_cap)
            loss, part = loss_fn(logp, old_logp, b.advantages, mask, num_tokens)
            if cfg.kl_coef > 0:
                with torch.no_grad(), model.disable_adapter():
                    ref = token_logprobs(
                        model,
                        b.input_ids,
                        b.attention_mask,
                        b.loss_mask,
                        temperature=cfg.temperature,
                    )
                kl = masked_sum(kl_k3(logp, ref), b.loss_mask, num_tokens)
                loss = loss + cfg.kl_coef * kl
                totals["loss/kl"] = totals.get("loss/kl", 0.0) + float(kl.detach())
            loss.backward()
            share = b.num_tokens / max(num_tokens, 1.0)
            totals["loss/policy"] = totals.get("loss/policy", 0.0) + float(loss.detach())
            totals["loss/entropy"] = totals.get("loss/entropy", 0.0) + entropy * share
            for key, value in part.items():
                totals[key] = totals.get(key, 0.0) + value * share
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)  # the norm before clipping
        optimizer.step()
        stats = {**totals, "grad/norm": float(norm)}
    return stats


def learning_rate(cfg: TrainConfig, step: int) -> float:
    """The RL learning rate at ``step``: ``lr``, or ``lr * (1 - step / steps)`` when linear."""
    if cfg.lr_schedule == "linear":
        return cfg.lr * (1.0 - step / cfg.steps)
    return cfg.lr


# ----------------------------------------------------------------------------- the run
def train(cfg: TrainConfig, log: Log | None = None) -> dict[str, Any]:
    """Run the whole job; returns before/after evaluation and where things were written."""
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2))
    base_dir = out / "base"
    checkpoint = resume_point(out)
    resuming = checkpoint is not None
    last_step = checkpoint_step(checkpoint) if checkpoint else None
    history = read_metrics(out / "metrics.jsonl", last_step)
    metrics_file = (out / "metrics.jsonl").open("a")
    collection = None  # agents through the gateway (trainer/collect.py), when the config has one

    def record(values: dict[str, float], step: int) -> None:
        row = {"step": step, **values}
        history.append(row)
        metrics_file.write(json.dumps(row) + "\n")
        metrics_file.flush()
        if log is not None:
            log(values, step)

    stack = contextlib.ExitStack()
    try:
        torch.manual_seed(cfg.seed)
        random.seed(cfg.seed)
        quiet_library_warnings()
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        device = resolve_device(cfg.device)
        scenarios = [simenv.load_scenario(s) for s in cfg.scenarios]
        if resuming:
            model, tokenizer = load(base_dir, device=device)
        else:
            model, tokenizer = build_model(cfg, scenarios, device)
        sampler = HF(
            model,
            tokenizer,
            temperature=cfg.temperature,
            max_new_tokens=cfg.max_new_tokens,
            seed=cfg.seed,
        )
        collection = open_collection(cfg, sampler, scenarios)
        score = collection.evaluate if collection else evaluate
        update_cfg = collection.config if collection else cfg
        result: dict[str, Any] = {"out": str(out), "runtime": runtime_info(device)}
        if not resuming:
            if cfg.sft_steps:
                result["before_warm_start"] = score(sampler, scenarios, cfg)
                record({f"{k}": v for k, v in result["before_warm_start"].items()}, -2)
                gold = sft_samples(oracle_episodes(scenarios, cfg.sft_seeds), sampler)
                result["sft_steps"] = warm_start(model, sampler, cfg, gold, scenarios, record)
            model.save_pretrained(base_dir)  # the base, saved before it is wrapped with LoRA
            tokenizer.save_pretrained(base_dir)
        if cfg.lora_rank > 0:
            model = with_lora(model, rank=cfg.lora_rank, alpha=cfg.lora_alpha)
            sampler.model = model
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.lr)
        start = load_checkpoint(checkpoint, model, optimizer) if checkpoint else 0
        engine = open_engine(cfg, out, tokenizer)  # rollout_engine: hf, or a vLLM/SGLang server
        stack.callback(engine.close)
        engine.attach(sampler)
        engine.sync(model, start)
        result["model"] = describe(model)
        if resuming:  # what the run measured before RL, read back (empty if that row is gone)
            result["before"] = evaluation_at(history, -1) or {}
        else:
            result["before"] = score(sampler, scenarios, cfg)
            record(result["before"], -1)
        warm = evaluation_at(history, -2) if resuming else None
        if warm is not None:
            result["before_warm_start"] = warm
        pad = int(tokenizer.pad_token_id)
        estimate = estimator(cfg)
        loss_fn = bind_loss(
            cfg.loss, clip_low=cfg.clip_low, clip_high=cfg.clip_high, cispo_high=cfg.cispo_high
        )
        for step in range(start, cfg.steps):
            began = time.perf_counter()
            # Every random draw of a step depends on (seed, step) only: a resumed run replays
            # exactly the steps an uninterrupted one would have taken.
            rng = random.Random(cfg.seed * 1_000_003 + step)
            sampler.reseed(cfg.seed * 7919 + step)
            for group in optimizer.param_groups:  # a function of the step: resumes exactly
                group["lr"] = learning_rate(cfg, step)
            collected: dict[str, float] = {}
            if collection:
                episodes, collected = collection.batch(step)
            else:
                episodes = rollout_batch(sampler, scenarios, cfg, rng, step)
            valid = [e for e in episodes if e.valid]
            rewards = torch.tensor([e.reward for e in valid])
            samples, adv = training_samples(valid, estimate)
            stats: dict[str, float] = {}
            if samples:
                with collection.paused() if collection else contextlib.nullcontext():
                    stats = policy_update(model, optimizer, samples, update_cfg, pad, loss_fn)
                    stats.update(engine.sync(model, step + 1))  # the engine serves the update
            stats.update(collected)
            stats.update(
                {
                    "episode/reward": float(rewards.mean()) if len(valid) else 0.0,
                    "episode/success": sum(e.success for e in valid) / max(len(valid), 1),
                    "episode/invalid": float(len(episodes) - len(valid)),
                    "batch/flat_groups": float(adv.flat_groups),
                    "perf/step_s": time.perf_counter() - began,
                }
            )
            if (step + 1) % cfg.eval_every == 0 and step + 1 < cfg.steps:
                stats.update(score(sampler, scenarios, cfg))
            record(stats, step)
            if (step + 1) % cfg.checkpoint_every == 0:
                save_checkpoint(out / "checkpoint", model, optimizer, step)
        result["after"] = score(sampler, scenarios, cfg)
        record(result["after"], cfg.steps)
        if cfg.lora_rank > 0:
            model.save_pretrained(out / "adapter")
        save_checkpoint(out / "checkpoint", model, optimizer, cfg.steps - 1)
    finally:
        if collection is not None:
            collection.close()
        metrics_file.close()
        stack.close()
    curve = plot_curve(history, out / "learning_curve.png")
    result["curve"] = str(curve) if curve is not None else None  # JSON null when no plot
    (out / "result.json").write_text(json.dumps(result, indent=2))
    return result


def plot_curve(history: list[dict[str, Any]], path: Path) -> Path | None:
    """Training reward and eval success by step, as a PNG (needs matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    train = [(r["step"], r["episode/reward"]) for r in history if "episode/reward" in r]
    evals = [(r["step"], r["eval/success"]) for r in history if "eval/success" in r]
    fig, ax = plt.subplots(figsize=(7, 4))
    if train:
        ax.plot(*zip(*train, strict=True), label="train reward (batch mean)", alpha=0.7)
    if evals:
        ax.plot(*zip(*evals, strict=True), "o-", label="eval success (held out)")
    ax.set_xlabel("RL step (negative: before and after the warm start)")
    ax.set_ylim(-0.05, 1.05)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
