"""Advantages and losses against values computed by hand."""

from __future__ import annotations

import math

import pytest
import torch

from trainer.advantages import ESTIMATORS, dr_grpo, grpo, rloo
from trainer.losses import (
    LOSSES,
    cispo,
    importance_sampling,
    kl_k3,
    ppo,
    sequence_weights,
)


def t(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


def test_grpo_by_hand() -> None:
    rewards, groups = t(1, 0, 0, 1, 2, 2), torch.tensor([0, 0, 0, 0, 1, 1])
    # group 0: mean 0.5, unbiased std sqrt(4 * 0.25 / 3) = 0.57735; group 1 is flat
    a = grpo(rewards, groups, eps=0.0)
    assert a.values.tolist() == pytest.approx(
        [0.866025, -0.866025, -0.866025, 0.866025, 0, 0], abs=1e-6
    )
    assert a.flat_groups == 1
    unscaled = grpo(rewards, groups, scale_by_std=False)
    assert unscaled.values.tolist() == pytest.approx([0.5, -0.5, -0.5, 0.5, 0, 0])


def test_groups_need_not_be_contiguous() -> None:
    a = grpo(t(1, 5, 0, 5), torch.tensor([7, 3, 7, 3]), eps=0.0)
    assert a.values.tolist() == pytest.approx([0.707107, 0, -0.707107, 0], abs=1e-6)
    assert a.flat_groups == 1


def test_rloo_by_hand() -> None:
    a = rloo(t(1, 0, 0, 3), torch.tensor([0, 0, 0, 1]))
    # episode 0: 1 - (0 + 0) / 2; episode 1: 0 - (1 + 0) / 2; a group of one gets 0
    assert a.values.tolist() == pytest.approx([1.0, -0.5, -0.5, 0.0])


def test_dr_grpo_is_mean_centred_only() -> None:
    a = dr_grpo(t(3, 1, 0, 0), torch.tensor([0, 0, 1, 1]))
    assert a.values.tolist() == pytest.approx([1.0, -1.0, 0.0, 0.0])
    assert a.flat_groups == 1
    assert {"grpo", "dr_grpo", "rloo"} <= set(ESTIMATORS)


def test_ppo_by_hand() -> None:
    old = torch.zeros(1, 3, dtype=torch.float64)
    logp = torch.log(t(1.5, 0.5, 1.0)).reshape(1, 3)
    adv, mask = t(1, 1, -1).reshape(1, 3), torch.ones(1, 3, dtype=torch.float64)
    loss, stats = ppo(logp, old, adv, mask, 3)
    # min(1.5*1, 1.2*1)=1.2; min(0.5*1, 0.8*1)=0.5; min(-1, -1)=-1 -> -(1.2+0.5-1)/3
    assert float(loss) == pytest.approx(-(1.2 + 0.5 - 1.0) / 3)
    assert stats["loss/clip_fraction"] == pytest.approx(1 / 3)


def test_cispo_and_is_by_hand() -> None:
    old = torch.zeros(1, 2, dtype=torch.float64)
    logp = torch.log(t(6.0, 0.5)).reshape(1, 2)
    adv, mask = t(2, -1).reshape(1, 2), torch.ones(1, 2, dtype=torch.float64)
    loss, _ = cispo(logp, old, adv, mask, 2)
    # weights sg(min(6, 5)) = 5 and 0.5: -(5*2*log 6 + 0.5*(-1)*log 0.5) / 2
    expected = -(5 * 2 * math.log(6.0) + 0.5 * -1 * math.log(0.5)) / 2
    assert float(loss) == pytest.approx(expected)
    loss, _ = importance_sampling(logp, old, adv, mask, 2)
    assert float(loss) == pytest.approx(-(6.0 * 2 + 0.5 * -1) / 2)


def _grad(name: str, logp_values: list[float], adv: list[float]) -> torch.Tensor:
    logp = torch.tensor([logp_values], dtype=torch.float64, requires_grad=True)
    old = torch.zeros(1, len(logp_values), dtype=torch.float64)
    mask = torch.ones_like(old)
    loss, _ = LOSSES[name](logp, old, torch.tensor([adv], dtype=torch.float64), mask, len(adv))
    loss.backward()
    assert logp.grad is not None
    return logp.grad


def test_all_losses_give_the_same_gradient_on_policy() -> None:
    # one optimizer step per batch, no sampler mismatch: ratio = 1 everywhere
    grads = [_grad(name, [0.0, 0.0, 0.0], [1.0, -2.0, 0.5]) for name in LOSSES]
    for g in grads[1:]:
        assert torch.allclose(g, grads[0])
    assert grads[0][0].tolist() == pytest.approx([-1 / 3, 2 / 3, -0.5 / 3])


def test_cispo_keeps_the_gradient_of_clipped_tokens_ppo_zeroes_it() -> None:
    far = math.log(6.0)  # ratio 6: beyond PPO's 1.2 and CISPO's 5
    ppo_grad = _grad("ppo", [far], [1.0])
    cispo_grad = _grad("cispo", [far], [1.0])
    assert ppo_grad.item() == 0.0
    assert cispo_grad.item() == pytest.approx(-5.0)  # -sg(w) * A / num_tokens


def test_loss_is_identical_for_1_2_4_micro_batches() -> None:
    torch.manual_seed(0)
    layer = torch.nn.Linear(8, 11, dtype=torch.float64)
    x = torch.randn(8, 6, 8, dtype=torch.float64)
    tokens = torch.randint(0, 11, (8, 6))
    mask = (torch.rand(8, 6) > 0.3).double()
    adv = torch.randn(8, 1, dtype=torch.float64).expand(8, 6)
    old = torch.randn(8, 6, dtype=torch.float64) * 0.1 - 2.4
    num_tokens = float(mask.sum())

    def run(chunks: int, name: str) -> tuple[float, torch.Tensor]:
        layer.zero_grad()
        total = 0.0
        for idx in torch.arange(8).chunk(chunks):
            logits = layer(x[idx])
            logp = torch.log_softmax(logits, -1).gather(-1, tokens[idx, :, None]).squeeze(-1)
            loss, _ = LOSSES[name](logp, old[idx], adv[idx], mask[idx], num_tokens)
            loss.backward()
            total += loss.detach().item()
        assert layer.weight.grad is not None
        return total, layer.weight.grad.clone()

    for name in LOSSES:
        base_loss, base_grad = run(1, name)
        for chunks in (2, 4):
            loss, grad = run(chunks, name)
            assert loss == pytest.approx(base_loss, abs=1e-12)
            assert torch.allclose(grad, base_grad, atol=1e-12)


def test_masked_tokens_get_zero_gradient() -> None:
    logp = torch.zeros(1, 4, dtype=torch.float64, requires_grad=True)
    mask = torch.tensor([[0, 1, 0, 1]], dtype=torch.float64)
    for name in LOSSES:
        logp.grad = None
        loss, _ = LOSSES[name](logp, torch.zeros_like(mask), torch.ones_like(mask), mask, 2)
        loss.backward()
        assert logp.grad is not None
        assert logp.grad[0, 0] == 0 and logp.grad[0, 2] == 0
        assert logp.grad[0, 1] != 0


def test_kl_k3_by_hand() -> None:
    logp, ref = t(-1.0, -2.0), t(-1.0, -1.5)
    # delta = ref - logp = [0, 0.5]: exp(0.5) - 0.5 - 1
    assert kl_k3(logp, ref).tolist() == pytest.approx([0.0, math.exp(0.5) - 1.5])


def test_sequence_weights_make_every_episode_count_once() -> None:
    # episode 0: 2 tokens in one sample; episode 1: 6 tokens over two samples (4 + 2); mean 4
    weights = sequence_weights([0, 1, 1], [2, 4, 2])
    assert weights == pytest.approx([2.0, 2 / 3, 2 / 3])
    assert sum(w * n for w, n in zip(weights, [2, 4, 2], strict=True)) == pytest.approx(8.0)
    assert sequence_weights([5, 6], [3, 3]) == [1.0, 1.0]  # equal lengths: the token mean
    assert sequence_weights([1], [0]) == [0.0]  # no generated token: nothing to weigh


def test_sequence_weighted_loss_is_identical_for_1_2_4_micro_batches() -> None:
    torch.manual_seed(1)
    logp = torch.randn(8, 5, dtype=torch.float64, requires_grad=True)
    mask = (torch.rand(8, 5) > 0.4).double()
    weights = sequence_weights([0, 0, 1, 2, 2, 2, 3, 4], mask.sum(1).tolist())
    weighted = mask * torch.tensor(weights, dtype=torch.float64)[:, None]
    adv = torch.randn(8, 1, dtype=torch.float64).expand(8, 5)
    num_tokens = float(mask.sum())
    totals = []
    for chunks in (1, 2, 4):
        total = 0.0
        for idx in torch.arange(8).chunk(chunks):
            loss, _ = LOSSES["importance_sampling"](
                logp[idx], logp[idx].detach(), adv[idx], weighted[idx], num_tokens
            )
            total += loss.item()
        totals.append(total)
    assert totals[1] == pytest.approx(totals[0], abs=1e-12)
    assert totals[2] == pytest.approx(totals[0], abs=1e-12)
    # each episode's advantage counts once: with one token per episode on ratio 1 the loss is
    # -(mean over episodes of A), here checked against the hand-computed episode means
    by_episode: dict[int, list[float]] = {}
    for row, e in enumerate([0, 0, 1, 2, 2, 2, 3, 4]):
        if mask[row].sum() > 0:
            by_episode.setdefault(e, []).append(float(adv[row, 0]) * float(mask[row].sum()))
    lengths: dict[int, float] = {}
    for row, e in enumerate([0, 0, 1, 2, 2, 2, 3, 4]):
        lengths[e] = lengths.get(e, 0.0) + float(mask[row].sum())
    expected = -sum(sum(v) / lengths[e] for e, v in by_episode.items()) / len(lengths)
    assert totals[0] == pytest.approx(expected, abs=1e-12)


def test_learning_rate_schedules() -> None:
    from trainer.config import TrainConfig
    from trainer.train import learning_rate

    linear = TrainConfig(steps=4, lr=1.0)
    assert linear.lr_schedule == "linear"
    assert [learning_rate(linear, s) for s in range(4)] == [1.0, 0.75, 0.5, 0.25]
    constant = TrainConfig(steps=4, lr=1.0, lr_schedule="constant")
    assert [learning_rate(constant, s) for s in range(4)] == [1.0] * 4
    with pytest.raises(ValueError, match="lr_schedule must be constant or linear"):
        TrainConfig(lr_schedule="cosine")
