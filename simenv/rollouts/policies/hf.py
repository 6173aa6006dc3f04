"""A local Hugging Face causal LM as a policy, recording tokens for token-in/token-out training.

torch and transformers are imported when an ``HF`` policy is built, never when simenv is
imported (the rest of simenv runs without them; ``pip install 'simenv[train]'`` brings them).

Each turn, every running episode's prompt is generated in left-padded batches of at most
``batch_size`` by a plain sampling loop (KV cache, temperature, nucleus), and the policy
records, per episode and turn, in ``conversation.memo["turns"]``:

- ``prompt_ids``: the exact tokens the model was conditioned on;
- ``completion_ids``: the tokens it generated, the end-of-turn token included;
- ``logprobs``: the log-probability of each generated token under the distribution it was
  sampled from (temperature and ``top_p`` applied; greedy decoding records the plain softmax).

The runner copies them into ``Episode.metadata["turns"]``; the trainer trains on these ids and
never re-tokenises the conversation.

**Prefix-preserving prompts.** The first prompt is the chat template's rendering of the
conversation (tools included), tokenised. Each later prompt is the previous prompt, then the
completion exactly as sampled, then the tokens of only the text the template adds after it (the
end of the assistant turn, the tool results, the next assistant header). So every prompt
extends the previous prompt + completion token for token, and an episode is one training
sequence. This needs a template that renders a conversation's continuation by appending text;
when it does not (e.g. one that drops earlier reasoning), that turn's prompt is the full
rendering instead, and the trainer splits the episode into one sample per turn.

**Randomness.** Each conversation samples from its own generator, seeded by the policy seed,
the episode seed and the sample index, so an episode's tokens do not depend on which episodes
share its batch, and torch's global generator is left alone.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from simenv.rollouts.policies.base import Conversation
from simenv.types import Action, Message

__all__ = ["HF"]


OnToken = Callable[[int, int, float, list[tuple[int, float]]], None]
"""``(row, token_id, logprob, top)``: one sampled token of :meth:`HF.generate`'s batch."""

Engine = Callable[
    [list[list[int]], list[np.random.Generator], float, float, int],
    list[tuple[list[int], list[float]]],
]
"""``(prompts, rngs, temperature, top_p, max_new_tokens) -> [(completion ids, logprobs)]``:
token-in/token-out sampling done elsewhere (a rollout engine such as a vLLM server)."""


class HF:
    """Batched sampling from a local causal LM.

    Args:
        model: A local directory written by ``save_pretrained`` (model and tokenizer), or a
            loaded model. Nothing is downloaded.
        tokenizer: The tokenizer, when ``model`` is an object. It needs a chat template.
        temperature: Sampling temperature; 0 decodes greedily.
        top_p: Nucleus sampling mass. Keep 1.0 for training: the trainer's recomputed logprobs
            then match the recorded ones.
        max_new_tokens: Longest completion per turn.
        batch_size: Most conversations generated in one forward batch (bounds memory).
        seed: The policy seed; with the episode seed and sample index it seeds each
            conversation's generator.
        device: Where the model runs (default: where it is; a directory loads on the GPU when
            there is one, in bfloat16, else on the CPU in float32).

    Raises:
        ImportError: torch or transformers is not installed.
        FileNotFoundError: ``model`` is a path that is not a directory.
        ValueError: A parameter is out of range, or a model object came without its tokenizer.
    """

    _top_k: int = 0  # set per call by generate()
    _on_token: OnToken | None = None
    engine: Engine | None = None
    """When set, every completion is sampled by it instead of the local loop (the trainer's
    rollout engine, :mod:`trainer.engines`); prompts, records and parsing stay this policy's."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any = None,
        *,
        temperature: float = 1.0,
        top_p: float = 1.0,
        max_new_tokens: int = 256,
        batch_size: int = 64,
        seed: int = 0,
        device: str | None = None,
    ) -> None:
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0 (0 = greedy), got {temperature}")
        if not 0 < top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {top_p}")
        if max_new_tokens < 1 or batch_size < 1:
            raise ValueError("max_new_tokens and batch_size must be at least 1")
        try:  # deferred: simenv itself never needs torch (see the import-linter contract)
            import torch
            import transformers
        except ImportError as exc:
            raise ImportError(
                f"the HF policy needs torch and transformers ({exc}); "
                "install them with: pip install 'simenv[train]'"
            ) from exc
        self.torch: Any = torch
        self._transformers: Any = transformers
        if isinstance(model, str | Path):
            model, tokenizer = self._load(Path(model), device)
        elif tokenizer is None:
            raise ValueError("HF(model_object) needs its tokenizer: HF(model, tokenizer)")
        elif device is not None:
            model = model.to(device)
        if not getattr(tokenizer, "chat_template", None):
            raise ValueError("the tokenizer has no chat template; set tokenizer.chat_template")
        self.model: Any = model
        self.tokenizer: Any = tokenizer
        self.temperature = temperature
        self.top_p = top_p
        self.max_new_tokens = max_new_tokens
        self.batch_size = batch_size
        self.seed = seed
        self.stop_ids = _stop_ids(model, tokenizer)
        pad = tokenizer.pad_token_id
        self.pad_id = int(pad) if pad is not None else min(self.stop_ids)
        self.name = str(getattr(model, "name_or_path", "") or type(model).__name__)

    def _load(self, path: Path, device: str | None) -> tuple[Any, Any]:
        if not path.is_dir():
            raise FileNotFoundError(
                f"hf:{path}: no such directory. Give a local directory written by "
                "save_pretrained (model and tokenizer); simenv downloads nothing."
            )
        torch, transformers = self.torch, self._transformers
        where = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        dtype = torch.bfloat16 if where.type == "cuda" else torch.float32
        tokenizer = transformers.AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        model = transformers.AutoModelForCausalLM.from_pretrained(
            str(path), dtype=dtype, local_files_only=True
        )
        return model.to(where).eval(), tokenizer

    def reseed(self, seed: int) -> None:
        """Use ``seed`` for conversations started from now on (the trainer does this each step)."""
        self.seed = seed

    def describe(self) -> dict[str, Any]:
        """Name, model and sampling parameters."""
        return {
            "name": "hf",
            "model": self.name,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "max_new_tokens": self.max_new_tokens,
            "seed": self.seed,
        }

    # ------------------------------------------------------------------------- prompts
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

    def _render(self, messages: list[Message], tools: Any) -> str:
        text = self.tokenizer.apply_chat_template(
            messages, tools=tools or None, add_generation_prompt=True, tokenize=False
        )
        return str(text)

    def _encode(self, text: str) -> list[int]:
        return [int(i) for i in self.tokenizer(text, add_special_tokens=False)["input_ids"]]

    def prompt_ids(self, conversation: Conversation) -> list[int]:
        """Token ids of the whole rendered conversation, ending with the assistant header."""
        messages = self._messages(conversation)
        return self._encode(self._render(messages, conversation.info.get("tools")))

    def next_prompt_ids(self, conversation: Conversation) -> list[int]:
        """The prompt of the next turn: the previous prompt + completion + the new text.

        Falls back to :meth:`prompt_ids` on the first turn, and when the template does not
        render the conversation's continuation by appending text.
        """
        turns: list[dict[str, Any]] = conversation.memo.get("turns", [])
        raw: list[str] = conversation.memo.get("raw_turns", [])
        messages = self._messages(conversation)
        tools = conversation.info.get("tools")
        full = self._render(messages, tools)
        assistants = [i for i, m in enumerate(messages) if m.get("role") == "assistant"]
        if turns and len(turns) == len(raw) == len(assistants):
            last = turns[-1]
            completion = list(last["completion_ids"])
            closed = self._render(messages[: assistants[-1]], tools) + raw[-1]
            if completion and completion[-1] in self.stop_ids:
                closed += self.tokenizer.decode(completion[-1:], skip_special_tokens=False)
            if full.startswith(closed):
                return [*last["prompt_ids"], *completion, *self._encode(full[len(closed) :])]
        return self._encode(full)

    # ------------------------------------------------------------------------- acting
    def act(self, conversations: Sequence[Conversation]) -> list[Action]:
        """Generate one turn for every conversation, in batches of ``batch_size``."""
        prompts = [self.next_prompt_ids(c) for c in conversations]
        rngs = [self._rng(c) for c in conversations]
        results: list[tuple[list[int], list[float]]] = [([], [])] * len(conversations)
        order = sorted(range(len(conversations)), key=lambda i: len(prompts[i]))
        training = bool(self.model.training)
        self.model.eval()
        try:
            with self.torch.no_grad():
                for start in range(0, len(order), self.batch_size):
                    chunk = order[start : start + self.batch_size]
                    done = self._generate([prompts[i] for i in chunk], [rngs[i] for i in chunk])
                    for i, result in zip(chunk, done, strict=True):
                        results[i] = result
        finally:
            self.model.train(training)
        actions: list[Action] = []
        for conversation, prompt, (completion, logprobs) in zip(
            conversations, prompts, results, strict=True
        ):
            stopped = bool(completion) and completion[-1] in self.stop_ids
            text = self.tokenizer.decode(
                completion[:-1] if stopped else completion,
                skip_special_tokens=False,
                clean_up_tokenization_spaces=False,
            )
            conversation.memo.setdefault("raw_turns", []).append(text)
            conversation.memo.setdefault("turns", []).append(
                {"prompt_ids": prompt, "completion_ids": completion, "logprobs": logprobs}
            )
            actions.append(text)
        return actions

    def generate(
        self,
        prompts: Sequence[list[int]],
        rngs: Sequence[np.random.Generator],
        *,
        temperature: float | None = None,
        top_p: float | None = None,
        max_new_tokens: int | None = None,
        top_logprobs: int = 0,
        on_token: OnToken | None = None,
    ) -> list[tuple[list[int], list[float]]]:
        """Token-in/token-out: ``(completion ids, sampling logprobs)`` for each token prompt.

        The sampling loop of :meth:`act` on prompts given as ids (the agent gateway's entry
        point), with these parameters in place of the policy's for this call only; each
        prompt draws from its own generator in ``rngs``. The end-of-turn token is included
        when generation stopped there.

        ``on_token(row, token_id, logprob, top)`` is called for each token as it is sampled
        (the gateway streams with it); ``top`` holds the ``top_logprobs`` most likely
        ``(token_id, logprob)`` of the distribution sampled from (empty when 0). Neither
        changes what is sampled.
        """
        sampler = copy.copy(self)  # shares the model; only the sampling parameters differ
        sampler.temperature = self.temperature if temperature is None else temperature
        sampler.top_p = self.top_p if top_p is None else top_p
        sampler.max_new_tokens = max_new_tokens or self.max_new_tokens
        sampler._top_k, sampler._on_token = top_logprobs, on_token
        if sampler.temperature < 0 or not 0 < sampler.top_p <= 1 or sampler.max_new_tokens < 1:
            raise ValueError("temperature >= 0, top_p in (0, 1] and max_new_tokens >= 1")
        if not prompts:
            return []
        training = bool(self.model.training)
        self.model.eval()
        try:
            with self.torch.no_grad():
                return sampler._generate([list(p) for p in prompts], list(rngs))
        finally:
            self.model.train(training)

    def _rng(self, conversation: Conversation) -> np.random.Generator:
        rng = conversation.memo.get("hf_rng")
        if rng is None:
            info = conversation.info
            key = [self.seed, int(info.get("seed") or 0), int(info.get("sample") or 0)]
            rng = np.random.default_rng([abs(k) for k in key])
            conversation.memo["hf_rng"] = rng
        return rng

    def _generate(
        self, prompts: list[list[int]], rngs: list[np.random.Generator]
    ) -> list[tuple[list[int], list[float]]]:
        """Sample completions for left-padded ``prompts``; stops at a stop id or the limit."""
        if self.engine is not None:
            return self.engine(prompts, rngs, self.temperature, self.top_p, self.max_new_tokens)
        torch = self.torch
        device = next(self.model.parameters()).device
        width = max(len(p) for p in prompts)
        ids = torch.tensor([[self.pad_id] * (width - len(p)) + p for p in prompts], device=device)
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)  # [B, W]: pads do not shift positions
        takes = _forward_parameters(self.model)
        extra = {"logits_to_keep": 1} if "logits_to_keep" in takes else {}  # last position only
        # transformers 5 names the key/value cache `cache` (`past_key_values` is deprecated)
        cache_name = "cache" if "cache" in takes else "past_key_values"
        out: list[tuple[list[int], list[float]]] = [([], []) for _ in prompts]
        running = list(range(len(prompts)))
        past = None
        for _ in range(self.max_new_tokens):
            result = self.model(
                input_ids=ids,
                attention_mask=mask,
                position_ids=positions,
                use_cache=True,
                **{cache_name: past},
                **extra,
            )
            past = getattr(result, cache_name)
            logp = self._log_probs(result.logits[:, -1, :].float())  # [B, V]
            tokens = self._pick(logp, rngs, running)  # [B]
            chosen = logp.gather(-1, tokens[:, None]).squeeze(-1).tolist()
            picked = tokens.tolist()
            tops = _top(logp, self._top_k) if self._on_token is not None else None
            still = []
            for b in running:
                out[b][0].append(int(picked[b]))
                out[b][1].append(float(chosen[b]))
                if self._on_token is not None and tops is not None:
                    self._on_token(b, int(picked[b]), float(chosen[b]), tops[b])
                if picked[b] not in self.stop_ids:
                    still.append(b)
            running = still
            if not running:
                break
            ids = tokens[:, None]  # finished rows keep feeding tokens that nobody reads
            mask = torch.cat([mask, mask.new_ones((len(prompts), 1))], dim=1)
            positions = positions[:, -1:] + 1
        return out

    def _log_probs(self, logits: Any) -> Any:
        """Log-probabilities of the distribution sampled from: ``[B, V] -> [B, V]``."""
        torch = self.torch
        if self.temperature > 0:
            logits = logits / self.temperature
        if self.top_p < 1:
            ordered, order = logits.sort(-1, descending=True)
            probs = ordered.softmax(-1)
            before = probs.cumsum(-1) - probs  # mass of the tokens ranked above each one
            ordered = ordered.masked_fill(before >= self.top_p, float("-inf"))
            logits = torch.empty_like(logits).scatter_(-1, order, ordered)
        return torch.log_softmax(logits, -1)

    def _pick(self, logp: Any, rngs: list[np.random.Generator], running: list[int]) -> Any:
        """One token per row: greedy, or by inverse CDF with each row's own uniform draw."""
        torch = self.torch
        if self.temperature == 0:
            return logp.argmax(-1)
        uniforms = [0.5] * logp.shape[0]
        for b in running:
            uniforms[b] = 1.0 - float(rngs[b].random())  # in (0, 1]: never a zero-mass token
        cdf = logp.double().exp().cumsum(-1)  # [B, V]
        target = torch.tensor(uniforms, dtype=cdf.dtype, device=cdf.device) * cdf[:, -1]
        picked = torch.searchsorted(cdf, target[:, None]).squeeze(-1)
        return picked.clamp(max=logp.shape[-1] - 1)


def _top(logp: Any, k: int) -> list[list[tuple[int, float]]]:
    """The ``k`` most likely ``(token_id, logprob)`` of each row (finite ones only)."""
    if k <= 0:
        return [[] for _ in range(logp.shape[0])]
    values, ids = logp.topk(min(k, logp.shape[-1]), dim=-1)
    return [
        [(int(i), float(v)) for i, v in zip(row_ids, row_values, strict=True) if v > float("-inf")]
        for row_ids, row_values in zip(ids.tolist(), values.tolist(), strict=True)
    ]


def _stop_ids(model: Any, tokenizer: Any) -> frozenset[int]:
    """End-of-turn ids: the tokenizer's EOS and the model's generation config's."""
    ids: set[int] = set()
    config = getattr(model, "generation_config", None)
    for value in (tokenizer.eos_token_id, getattr(config, "eos_token_id", None)):
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, list | tuple):
            ids.update(int(v) for v in value)
    if not ids:
        raise ValueError("the tokenizer has no eos_token; set one (the end-of-turn token)")
    return frozenset(ids)


def _forward_parameters(model: Any) -> frozenset[str]:
    """The parameter names of ``model.forward`` (of the base model under a PEFT wrapper)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return frozenset(inspect.signature(base.forward).parameters)
