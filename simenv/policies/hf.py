"""A local Hugging Face causal LM as a policy, recording tokens for token-in/token-out training.

torch and transformers are imported when an ``HF`` policy is built, never at import time of
simenv (the rest of simenv runs without them: ``pip install 'simenv[train]'`` brings them).

Each turn the conversation is rendered with the tokenizer's chat template (tools included), all
running episodes are generated in ONE left-padded batch, and the policy records, per episode and
turn, in ``conversation.memo["turns"]``:

- ``prompt_ids``: the exact tokens the model was conditioned on;
- ``completion_ids``: the tokens it generated, end-of-turn token included;
- ``logprobs``: the log-probability of each generated token under the distribution it was
  sampled from (temperature applied).

The runner copies them into ``Episode.metadata["turns"]``; the trainer trains on these ids and
never re-tokenises the conversation. Earlier assistant turns are rendered from the model's own
text (not from the environment's normalised message), so a prompt starts with the previous
turn's prompt and completion whenever the template and tokenizer allow it.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from simenv.policies.base import Conversation
from simenv.types import Action, Message

__all__ = ["HF"]


class HF:
    """Batched sampling from a local causal LM.

    Args:
        model: A directory with a saved model and tokenizer, or a loaded model.
        tokenizer: The tokenizer, when ``model`` is an object.
        temperature: Sampling temperature (0 = greedy).
        top_p: Nucleus sampling mass; keep 1.0 for training (logprobs then match the trainer's).
        max_new_tokens: Longest completion per turn.
        seed: Seeds torch's generator before each batch.
        device: Where the model runs (default: where it already is).
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any = None,
        *,
        temperature: float = 1.0,
        top_p: float = 1.0,
        max_new_tokens: int = 128,
        seed: int = 0,
        device: str | None = None,
    ) -> None:
        self.torch: Any = importlib.import_module("torch")
        if isinstance(model, str | Path):
            transformers: Any = importlib.import_module("transformers")
            tokenizer = transformers.AutoTokenizer.from_pretrained(str(model))
            model = transformers.AutoModelForCausalLM.from_pretrained(str(model))
        if tokenizer is None:
            raise ValueError("HF(model_object) needs its tokenizer: HF(model, tokenizer)")
        self.model = model if device is None else model.to(device)
        self.tokenizer = tokenizer
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.temperature = temperature
        self.top_p = top_p
        self.max_new_tokens = max_new_tokens
        self.seed = seed
        self._calls = 0
        self.name = str(getattr(model, "name_or_path", "") or type(model).__name__)

    def reseed(self, seed: int) -> None:
        """Restart the sampling stream at ``seed`` (the trainer does this every step)."""
        self.seed, self._calls = seed, 0

    def describe(self) -> dict[str, Any]:
        """Name and sampling parameters."""
        return {
            "name": "hf",
            "model": self.name,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "max_new_tokens": self.max_new_tokens,
        }

    def _messages(self, conversation: Conversation) -> list[Message]:
        """The conversation with earlier assistant turns replaced by the model's own text."""
        raw: list[str] = conversation.memo.get("raw_turns", [])
        out: list[Message] = []
        turn = 0
        for message in conversation.messages:
            if message.get("role") == "assistant" and turn < len(raw):
                out.append({"role": "assistant", "content": raw[turn]})
                turn += 1
            else:
                out.append(message)
        return out

    def prompt_ids(self, conversation: Conversation) -> list[int]:
        """Token ids of the rendered conversation, ending with the assistant prompt."""
        ids = self.tokenizer.apply_chat_template(
            self._messages(conversation),
            tools=conversation.info.get("tools") or None,
            add_generation_prompt=True,
            tokenize=True,
        )
        if isinstance(ids, dict) or hasattr(ids, "input_ids"):
            ids = ids["input_ids"]
        return [int(i) for i in ids]

    def act(self, conversations: Sequence[Conversation]) -> list[Action]:
        """Generate one turn for every conversation in one batch."""
        torch = self.torch
        prompts = [self.prompt_ids(c) for c in conversations]
        pad = int(self.tokenizer.pad_token_id)
        eos = int(self.tokenizer.eos_token_id)
        width = max(len(p) for p in prompts)
        device = next(self.model.parameters()).device
        input_ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts], device=device)
        attention = torch.tensor(
            [[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=device
        )
        torch.manual_seed(self.seed * 1_000_003 + self._calls)
        self._calls += 1
        sampling = self.temperature > 0
        with torch.no_grad():
            out = self.model.generate(
                input_ids=input_ids,
                attention_mask=attention,
                do_sample=sampling,
                temperature=self.temperature if sampling else None,
                top_p=self.top_p if sampling else None,
                top_k=0 if sampling else None,
                max_new_tokens=self.max_new_tokens,
                pad_token_id=pad,
                eos_token_id=eos,
                output_scores=True,
                return_dict_in_generate=True,
            )
        new = out.sequences[:, width:]
        scores = torch.stack(out.scores, dim=1).float()  # [B, T, V], processed (temperature)
        logprobs = torch.log_softmax(scores, -1).gather(-1, new[:, :, None]).squeeze(-1)
        actions: list[Action] = []
        for b, conversation in enumerate(conversations):
            ids = new[b].tolist()
            end = ids.index(eos) + 1 if eos in ids else len(ids)
            completion = ids[:end]
            text = self.tokenizer.decode(completion, skip_special_tokens=False)
            eos_text = self.tokenizer.eos_token or ""
            if eos_text and text.endswith(eos_text):
                text = text[: -len(eos_text)]
            conversation.memo.setdefault("raw_turns", []).append(text)
            conversation.memo.setdefault("turns", []).append(
                {
                    "prompt_ids": prompts[b],
                    "completion_ids": completion,
                    "logprobs": [float(x) for x in logprobs[b, :end].tolist()],
                }
            )
            actions.append(text)
        return actions
