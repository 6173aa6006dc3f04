"""Learning regression: the main job's recipe learns, and keeps learning under perturbations.

A shortened main job on ``support/Triage-v1``: the tiny model's warm start (stopped by its
validation slice) must reach a held-out success threshold, and RL on one batch must raise that
batch's mean reward. Both are asserted under the perturbations the recipe is documented to
survive: every initial weight scaled by (1 + 1e-6 noise), and one torch thread instead of the
default. A recipe whose outcome hinges on float rounding fails here on some machine.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
import torch

import simenv
from simenv.policies import HF
from trainer.config import TrainConfig
from trainer.losses import bind_loss
from trainer.models import with_lora
from trainer.train import (
    build_model,
    evaluate,
    oracle_episodes,
    policy_update,
    rollout_batch,
    sft_samples,
    estimator,
    training_samples,
    warm_start,
)

SHORT = {
    "sft_target": 0.3,  # the first of the tiny model's jumps (a third of the tickets right)
    "sft_check_samples": 4,
    "eval_samples": 4,
    "batch_tasks": 4,
}
"""The main job's recipe, shortened: the warm start stops at its first jump, and evaluation and
RL play fewer episodes."""

WARM_START_THRESHOLD = 0.25
"""Held-out success the shortened warm start must reach (its target on the validation slice is
0.3; the eval split, never trained on, lands a little below or above it). Before training the
tiny model scores 0."""


def _mean_reward(episodes: list[simenv.Episode]) -> float:
    return sum(e.reward for e in episodes) / len(episodes)


@pytest.mark.parametrize(
    ("init_noise", "threads"),
    [(0.0, 0), (1e-6, 0), (0.0, 1)],
    ids=["as-is", "weights-perturbed-1e-6", "one-thread"],
)
def test_warm_start_reaches_the_threshold_and_rl_raises_the_batch_reward(
    init_noise: float, threads: int
) -> None:
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        cfg = TrainConfig(init_noise=init_noise, **SHORT)  # type: ignore[arg-type]
        torch.manual_seed(cfg.seed)
        random.seed(cfg.seed)
        scenarios = [simenv.load_scenario(s) for s in cfg.scenarios]
        model, tokenizer = build_model(cfg, scenarios, torch.device("cpu"))
        sampler = HF(model, tokenizer, temperature=cfg.temperature, seed=cfg.seed,
                     max_new_tokens=cfg.max_new_tokens)  # fmt: skip
        samples = sft_samples(oracle_episodes(scenarios, 2), sampler)
        logged: list[tuple[dict[str, float], int]] = []
        steps = warm_start(
            model, sampler, cfg, samples, scenarios, lambda v, s: logged.append((v, s))
        )
        assert steps < cfg.sft_steps, "the validation slice never reached the target"
        held_out = evaluate(sampler, scenarios, cfg)["eval/success"]
        assert held_out >= WARM_START_THRESHOLD, (steps, held_out)

        # RL on one fixed batch (same tasks, same starting states) must raise its mean reward,
        # judged on the same sampling draws before and after.
        model = with_lora(model, rank=cfg.lora_rank, alpha=cfg.lora_alpha)
        sampler.model = model
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.lr)
        loss_fn = bind_loss(cfg.loss, clip_low=cfg.clip_low, clip_high=cfg.clip_high,
                            cispo_high=cfg.cispo_high)  # fmt: skip

        def play(draw: int) -> list[simenv.Episode]:
            sampler.reseed(draw)
            return rollout_batch(sampler, scenarios, cfg, random.Random(17), step=0)

        estimate = estimator(cfg)
        first = _mean_reward(play(1))
        for k in range(8):
            batch = play(100 + k)
            samples, _ = training_samples([e for e in batch if e.valid], estimate)
            if samples:
                policy_update(model, optimizer, samples, cfg, int(tokenizer.pad_token_id), loss_fn)
        after = _mean_reward(play(1))
        assert after >= first + 0.05, (first, after)
    finally:
        torch.set_num_threads(before)


def test_a_warm_start_that_never_reaches_its_target_runs_every_step() -> None:
    """The negative case: an unreachable target runs all ``sft_steps`` and says so."""
    cfg = TrainConfig(sft_steps=12, sft_warmup=2, sft_check_from=6, sft_check_every=6,
                      sft_check_samples=1, sft_target=1.0)  # fmt: skip
    scenarios = [simenv.load_scenario(s) for s in cfg.scenarios]
    model, tokenizer = build_model(cfg, scenarios, torch.device("cpu"))
    sampler = HF(model, tokenizer, temperature=1.0, seed=0, max_new_tokens=8)
    samples = sft_samples(oracle_episodes(scenarios, 1), sampler)
    logged: list[tuple[dict[str, Any], int]] = []
    steps = warm_start(model, sampler, cfg, samples, scenarios, lambda v, s: logged.append((v, s)))
    assert steps == cfg.sft_steps
    checks = [s for v, s in logged if "sft/val_success" in v]
    assert checks == [5, 11]
