"""Models for the trainer: load a local causal LM, or build ``tiny``; LoRA; token logprobs.

``tiny`` is a small Qwen2-shaped model built from a config, with a byte-level BPE tokenizer
trained here with ``tokenizers`` on rendered episodes of the scenarios it will play, and a
ChatML chat template that lists the tools (both in :mod:`trainer.tokenizer`). Nothing is
downloaded: it is for CPU runs and tests.
Any local Hugging Face causal-LM directory loads the same way through ``from_pretrained``.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    Qwen2Config,
    Qwen2ForCausalLM,
)

from trainer.tokenizer import CHAT_TEMPLATE, default_corpus, train_tokenizer

__all__ = [
    "CHAT_TEMPLATE",
    "build_tiny",
    "describe",
    "load",
    "token_logprobs",
    "train_tokenizer",
    "with_lora",
]


def build_tiny(
    corpus: Iterable[str] | None = None,
    *,
    save_dir: str | Path | None = None,
    seed: int = 0,
    hidden_size: int = 128,
    layers: int = 2,
    vocab_size: int = 2048,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Build the ``tiny`` model and its tokenizer (trained on ``corpus``); save them if asked.

    About 0.5M parameters at the defaults: a Qwen2 (RMSNorm, rotary positions, SwiGLU,
    grouped-query attention) of ``layers`` blocks of width ``hidden_size``, tied embeddings.
    Deterministic: the same corpus and seed give the same tokenizer and weights.

    Args:
        corpus: Texts to train the tokenizer on (default: :func:`trainer.tokenizer.default_corpus`,
            oracle transcripts of the bundled support scenarios plus generic text).
        save_dir: Where to ``save_pretrained`` both (loadable with :func:`load`).
        seed: Seeds the weight initialisation.
        hidden_size: Width of the model.
        layers: Transformer blocks.
        vocab_size: Target vocabulary size of the tokenizer.
    """
    tokenizer = train_tokenizer(default_corpus() if corpus is None else corpus, vocab_size)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    if save_dir is not None:
        model.save_pretrained(save_dir)
        tokenizer.save_pretrained(save_dir)
    return model, tokenizer


def load(
    path: str | Path, *, device: str | torch.device = "cpu"
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a local causal LM directory: bf16 on a GPU, fp32 on the CPU."""
    device = torch.device(device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype).to(device)
    return model, tokenizer


def with_lora(
    model: PreTrainedModel,
    *,
    rank: int = 16,
    alpha: int = 32,
    dropout: float = 0.0,
    target_modules: Sequence[str] | str = "all-linear",
) -> Any:
    """Wrap ``model`` with a LoRA adapter (peft); by default on every linear layer.

    Save the base model before wrapping it: the adapter alone is saved from then on. With the
    adapter disabled (``with model.disable_adapter():``) the model is the reference policy for
    the KL term, without a second copy in memory.
    """
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=rank,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=target_modules if isinstance(target_modules, str) else list(target_modules),
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, config)


def token_logprobs(
    model: Any,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    loss_mask: torch.Tensor,
    *,
    temperature: float = 1.0,
    chunk_size: int = 1024,
    entropy: bool = False,
) -> Any:
    """Log-probability of each token given the ones before it, where ``loss_mask`` is 1.

    ``out[b, t] = log softmax(logits[b, t-1] / temperature)[input_ids[b, t]]`` on masked
    positions, 0 elsewhere. Only the needed positions go through the output layer, in chunks,
    so the ``[tokens, vocab]`` matrix is never built for the whole batch.

    Shapes: ``input_ids``, ``attention_mask``, ``loss_mask``: ``[B, L]``; result ``[B, L]``.
    With ``entropy=True`` also returns the mean entropy (nats, detached) of the distributions
    at the masked positions.
    """
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    # The output layer runs below on the needed positions only; logits_to_keep=1 stops the
    # forward from also building the full [B, L, vocab] logits that nobody reads.
    takes = inspect.signature(inner.forward).parameters
    keep = {"logits_to_keep": 1} if "logits_to_keep" in takes else {}
    out = model(
        input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True, **keep
    )
    hidden = out.hidden_states[-1]  # [B, L, H], after the final norm
    head = inner.get_output_embeddings()
    positions = loss_mask[:, 1:].nonzero(as_tuple=False)  # token t predicted from t-1
    result = torch.zeros(input_ids.shape, dtype=torch.float32, device=input_ids.device)
    pieces = []
    entropy_sum = 0.0
    for start in range(0, positions.shape[0], chunk_size):
        pos = positions[start : start + chunk_size]
        b, t = pos[:, 0], pos[:, 1]
        logits = head(hidden[b, t]).float() / temperature  # [chunk, V]
        log_p = torch.log_softmax(logits, -1)
        targets = input_ids[b, t + 1]
        pieces.append(log_p.gather(-1, targets[:, None]).squeeze(-1))
        if entropy:
            with torch.no_grad():
                entropy_sum += float(-(log_p.exp() * log_p).sum())
    if pieces:
        values = torch.cat(pieces)
        result = result.index_put((positions[:, 0], positions[:, 1] + 1), values)
    if entropy:
        return result, entropy_sum / max(positions.shape[0], 1)
    return result


def describe(model: Any) -> dict[str, int]:
    """Parameter counts, for the logs."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"params": total, "trainable_params": trainable}
