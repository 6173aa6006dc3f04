"""Episodes in, tensors out: token sequences with a loss mask, from the sampler's own tokens.

An episode played by the HF policy carries, per turn, the prompt ids it was conditioned on,
the completion ids it generated (end-of-turn token included) and their sampling logprobs
(``Episode.metadata["turns"]``). Nothing is re-tokenised:

- when every turn's prompt starts with the previous turn's prompt + completion (the chat
  template is prefix-preserving), the episode is ONE sequence: the last prompt + completion,
  with ``loss_mask = 1`` exactly on the positions of every completion;
- otherwise each turn is its own sample (its prompt, then its completion).

The mask is 0 on system, user and tool tokens by construction: they are never completions.
The reward of each turn lands on the last token of that turn (``rewards``); the episode's
advantage is broadcast over its completion tokens, or, from a per-turn estimator, each turn's
advantage over that turn's tokens only (``turns`` says which turn generated each token).
Episodes with ``valid = False`` are dropped and counted.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from simenv import Episode

__all__ = ["Batch", "Sample", "collate", "episode_samples", "is_prefix_preserving"]


@dataclass
class Sample:
    """One training sequence.

    Attributes:
        input_ids: Prompt and completion tokens, as the sampler saw and produced them.
        loss_mask: 1 on generated tokens, 0 elsewhere.
        logprobs: Sampler logprob of each generated token (0 elsewhere).
        rewards: Per-turn reward on the last token of its turn (0 elsewhere).
        advantage: The episode's advantage (every generated token gets it), unless
            ``turn_advantages`` is set.
        episode: Index of the episode in its batch.
        turns: The assistant turn (0-based) each token was generated in; -1 on tokens the
            policy did not generate.
        turn_advantages: One advantage per assistant turn of the episode (per-turn
            estimators): each generated token gets its own turn's, and no other.
    """

    input_ids: list[int]
    loss_mask: list[int]
    logprobs: list[float]
    rewards: list[float] = field(default_factory=list)
    advantage: float = 0.0
    episode: int = 0
    turns: list[int] = field(default_factory=list)
    turn_advantages: list[float] | None = None

    def token_advantages(self) -> list[float]:
        """The advantage of every token: its turn's, or the episode's; 0 where not generated."""
        if self.turn_advantages is None:
            return [self.advantage * m for m in self.loss_mask]
        return [
            self.turn_advantages[t] if m and t >= 0 else 0.0
            for m, t in zip(self.loss_mask, self.turns, strict=True)
        ]


def _turns(episode: Episode) -> list[dict[str, Any]]:
    turns = episode.metadata.get("turns")
    if not turns:
        raise ValueError(
            f"episode {episode.episode_id} has no token record (metadata['turns']); play it with "
            "simenv.rollouts.policies.HF, which records prompt/completion ids and logprobs"
        )
    return list(turns)


def _merges(turns: Sequence[dict[str, Any]]) -> bool:
    for before, after in itertools.pairwise(turns):
        prefix = list(before["prompt_ids"]) + list(before["completion_ids"])
        if list(after["prompt_ids"][: len(prefix)]) != prefix:
            return False
    return True


def episode_samples(episode: Episode, index: int = 0, merge: bool = True) -> list[Sample]:
    """The training samples of one episode (one, or one per turn)."""
    turns = _turns(episode)
    step_rewards = [s.reward for s in episode.steps] + [0.0] * len(turns)
    if merge and _merges(turns):
        last = turns[-1]
        ids = list(last["prompt_ids"]) + list(last["completion_ids"])
        mask, logprobs, rewards = [0] * len(ids), [0.0] * len(ids), [0.0] * len(ids)
        owner = [-1] * len(ids)
        for k, turn in enumerate(turns):
            start = len(turn["prompt_ids"])
            for j, lp in enumerate(turn["logprobs"]):
                mask[start + j], logprobs[start + j], owner[start + j] = 1, float(lp), k
            rewards[start + len(turn["completion_ids"]) - 1] = step_rewards[k]
        return [Sample(ids, mask, logprobs, rewards, episode=index, turns=owner)]
    samples = []
    for k, turn in enumerate(turns):
        prompt, completion = list(turn["prompt_ids"]), list(turn["completion_ids"])
        rewards = [0.0] * (len(prompt) + len(completion))
        rewards[-1] = step_rewards[k]
        samples.append(
            Sample(
                prompt + completion,
                [0] * len(prompt) + [1] * len(completion),
                [0.0] * len(prompt) + [float(x) for x in turn["logprobs"]],
                rewards,
                episode=index,
                turns=[-1] * len(prompt) + [k] * len(completion),
            )
        )
    return samples


def is_prefix_preserving(tokenizer: Any, tools: list[dict[str, Any]] | None = None) -> bool:
    """Whether the chat template renders a conversation as a prefix of its continuation.

    Checked once at start-up on a probe conversation: if rendering turn k+1 does not start
    with the tokens of turn k (plus the assistant's reply), episodes are split into one
    sample per turn.
    """
    first = [
        {"role": "system", "content": "probe"},
        {"role": "user", "content": "Look up the order O-1."},
    ]
    reply = {"role": "assistant", "content": "I will check."}
    second = [*first, reply, {"role": "tool", "tool_call_id": "c", "content": '{"ok": 1}'}]
    a = tokenizer.apply_chat_template(first, tools=tools, add_generation_prompt=True)
    b = tokenizer.apply_chat_template(second, tools=tools, add_generation_prompt=True)
    if isinstance(a, dict) or hasattr(a, "input_ids"):
        a, b = a["input_ids"], b["input_ids"]
    return list(b[: len(a)]) == list(a)


@dataclass
class Batch:
    """Right-padded tensors, all ``[B, L]``."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    loss_mask: torch.Tensor
    logprobs: torch.Tensor
    advantages: torch.Tensor

    @property
    def num_tokens(self) -> float:
        """Generated tokens in the batch (the loss's denominator)."""
        return float(self.loss_mask.sum())


def collate(samples: Sequence[Sample], pad_id: int, device: torch.device | str = "cpu") -> Batch:
    """Pad samples to one length (right padding) and stack them."""
    width = max(len(s.input_ids) for s in samples)

    def pad(rows: list[list[Any]], value: Any, dtype: torch.dtype) -> torch.Tensor:
        return torch.tensor([r + [value] * (width - len(r)) for r in rows], dtype=dtype)

    ids = pad([s.input_ids for s in samples], pad_id, torch.long)
    attention = pad([[1] * len(s.input_ids) for s in samples], 0, torch.long)
    mask = pad([s.loss_mask for s in samples], 0, torch.float32)
    logprobs = pad([s.logprobs for s in samples], 0.0, torch.float32)
    advantages = pad([s.token_advantages() for s in samples], 0.0, torch.float32)
    return Batch(
        ids.to(device), attention.to(device), mask.to(device), logprobs.to(device),
        advantages.to(device),
    )  # fmt: skip
