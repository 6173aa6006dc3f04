r"""The policy behind the gateway: a chat template to render with, and a token-in/token-out sampler.

The gateway owns tokenisation: :class:`Policy` renders messages and tools with the tokenizer's
chat template, and its sampler only ever sees token ids. Two samplers:

- :class:`HFSampler`: the in-process HF policy (:class:`simenv.rollouts.policies.HF`, the
  trainer's live model). Calls from concurrent trajectories are gathered by one worker thread
  and generated in batches (one batch per set of sampling parameters), so 64 agents waiting on
  the model cost a few forward passes per token, not 64.
- :class:`UpstreamSampler`: an OpenAI-compatible inference server (vLLM, SGLang) used
  token-in/token-out: ``POST /v1/completions`` with the prompt as token ids and vLLM's
  ``return_token_ids`` / ``return_tokens_as_token_ids`` options, so the ids and logprobs
  recorded are the server's own, never re-tokenised text.

A sampler is one method, ``sample(prompts, params, rngs) -> [Sampled]``; one that can also
``stream(prompt, params, rng) -> TokenStream`` (the HF sampler) streams a turn token by token.

**Forcing a tool call.** With ``tool_choice: "required"`` or a named function, the gateway
appends a forced prefix to the prompt (:meth:`Policy.forced_prefix`): the text the policy's own
chat template writes before a call's name (Hermes/Qwen: ``<tool_call>\n{"name": "``), and for a
named function the name and what comes before the arguments (``NAME", "arguments": ``). The
forced tokens are prompt tokens: the policy did not choose them, so they are never trained on.
"""

from __future__ import annotations

import json
import queue
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from simenv.server.gateway.errors import UpstreamFailed
from simenv.types import Message

__all__ = [
    "HFSampler",
    "Params",
    "Policy",
    "Sampled",
    "Sampler",
    "TokenStream",
    "UpstreamSampler",
    "load_tokenizer",
]


@dataclass(frozen=True, slots=True)
class Params:
    """Sampling parameters of one call (the request's, overridden by the trajectory's)."""

    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens: int = 256
    top_logprobs: int = 0
    """How many of the most likely tokens to return per position (0: none)."""
    constraint: dict[str, Any] | None = None
    """A structured-output constraint for an upstream server (a JSON schema of what follows a
    forced tool-call prefix); the HF sampler forces the prefix only."""


@dataclass(frozen=True, slots=True)
class Sampled:
    """Completion ids (the end-of-turn id included when it stopped there) and their logprobs.

    ``top`` holds, per position, the ``top_logprobs`` most likely ``(token_id, logprob)``
    when they were asked for.
    """

    ids: list[int]
    logprobs: list[float]
    top: list[list[tuple[int, float]]] | None = None


class Sampler(Protocol):
    """Token-in/token-out generation: one completion per prompt."""

    def sample(
        self, prompts: Sequence[list[int]], params: Params, rngs: Sequence[np.random.Generator]
    ) -> list[Sampled]:
        """Sample one completion for each prompt (raises UpstreamFailed when the model fails)."""
        ...


class Policy:
    """A tokenizer with a chat template, and the sampler that generates from its token ids.

    Args:
        tokenizer: A Hugging Face tokenizer with a chat template and an EOS token.
        sampler: The token-in/token-out generator.
        name: The model name the gateway serves (``GET /v1/models``).
        stop_ids: End-of-turn ids (default: the tokenizer's EOS).
        max_context_tokens: Longest prompt + completion accepted (400 beyond).
        max_tokens: Completion length when neither the request nor the trajectory sets one.
        temperature: Sampling temperature when neither sets one.
        top_p: Nucleus mass when neither sets one.
    """

    def __init__(
        self,
        tokenizer: Any,
        sampler: Sampler,
        name: str = "simenv-policy",
        stop_ids: Sequence[int] | None = None,
        max_context_tokens: int = 32_768,
        max_tokens: int = 256,
        temperature: float = 1.0,
        top_p: float = 1.0,
    ) -> None:
        if not getattr(tokenizer, "chat_template", None):
            raise ValueError("the tokenizer has no chat template; set tokenizer.chat_template")
        self.tokenizer = tokenizer
        self.sampler = sampler
        self.name = name
        eos = tokenizer.eos_token_id
        self.stop_ids = frozenset(stop_ids or ([eos] if isinstance(eos, int) else []))
        if not self.stop_ids:
            raise ValueError("the tokenizer has no eos_token; give stop_ids")
        self.max_context_tokens = max_context_tokens
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.top_p = top_p
        self._format: tuple[str, str] | None = None

    @classmethod
    def from_hf(cls, hf: Any, name: str | None = None, **kwargs: Any) -> Policy:
        """The in-process HF policy (``simenv.rollouts.policies.HF``) behind the gateway.

        Its ``max_new_tokens``, temperature and ``top_p`` are the defaults of calls that set
        none (the trajectory's sampling, then the request's, come first); the model's
        ``max_position_embeddings`` is the context limit.
        """
        return cls(
            hf.tokenizer,
            HFSampler(hf, **kwargs),
            name or hf.name,
            stop_ids=sorted(hf.stop_ids),
            max_tokens=hf.max_new_tokens,
            temperature=hf.temperature,
            top_p=hf.top_p,
            max_context_tokens=_context_length(hf.model),
        )

    def render(self, messages: list[Message], tools: list[Any] | None) -> str:
        """The chat template's rendering, ending with the assistant header."""
        text = self.tokenizer.apply_chat_template(
            messages, tools=tools or None, add_generation_prompt=True, tokenize=False
        )
        return str(text)

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` (no special tokens added)."""
        return [int(i) for i in self.tokenizer(text, add_special_tokens=False)["input_ids"]]

    def decode(self, ids: Sequence[int]) -> str:
        """The text of ``ids``, special tokens kept, spaces as they are."""
        return str(
            self.tokenizer.decode(
                list(ids), skip_special_tokens=False, clean_up_tokenization_spaces=False
            )
        )

    def token_text(self, token_id: int) -> str:
        """The text of one token (for OpenAI ``logprobs``)."""
        return self.decode([token_id])

    def forced_prefix(self, tool_choice: Any) -> str:
        r"""The text forced at the start of a completion for ``tool_choice`` (``""``: none).

        ``"required"``: what the chat template writes before a call's name; a named function
        (``{"type": "function", "function": {"name": N}}``): that, ``N``, and what the template
        writes between the name and the arguments. The template is probed once by rendering a
        call; one that does not render ``tool_calls`` gets Hermes/Qwen's
        ``<tool_call>\n{"name": "`` and ``", "arguments": ``.
        """
        if tool_choice == "required":
            return self._call_format()[0]
        if isinstance(tool_choice, dict):
            before, between = self._call_format()
            return before + str(tool_choice["function"]["name"]) + between
        return ""

    def _call_format(self) -> tuple[str, str]:
        if self._format is None:
            self._format = _probe_call_format(self) or (HERMES_BEFORE_NAME, HERMES_BETWEEN)
        return self._format


HERMES_BEFORE_NAME = '<tool_call>\n{"name": "'
HERMES_BETWEEN = '", "arguments": '
_PROBE_NAME, _PROBE_ARG = "simenv_probe_tool", "simenv_probe_argument"


def _probe_call_format(policy: Policy) -> tuple[str, str] | None:
    """How the chat template writes a call: the text before its name, and before its arguments.

    None when the template does not render an assistant's ``tool_calls``.
    """
    user = {"role": "user", "content": "x"}
    call = {
        "id": "call_probe",
        "type": "function",
        "function": {"name": _PROBE_NAME, "arguments": {_PROBE_ARG: 1}},
    }
    tool = {"type": "function", "function": {"name": _PROBE_NAME, "parameters": {}}}
    try:
        head = policy.render([user], [tool])
        full = str(
            policy.tokenizer.apply_chat_template(
                [user, {"role": "assistant", "content": "", "tool_calls": [call]}],
                tools=[tool],
                add_generation_prompt=False,
                tokenize=False,
            )
        )
    except Exception:  # a template that cannot render tool calls: the Hermes default
        return None
    if not full.startswith(head):
        return None
    body = full[len(head) :]
    name_at, arg_at = body.find(_PROBE_NAME), body.find(f'"{_PROBE_ARG}"')
    brace = body.rfind("{", 0, arg_at)
    if name_at <= 0 or brace <= name_at:
        return None
    return body[:name_at], body[name_at + len(_PROBE_NAME) : brace]


def _context_length(model: Any) -> int:
    config = getattr(model, "config", None)
    length = getattr(config, "max_position_embeddings", None)
    return int(length) if isinstance(length, int) and length > 1 else 32_768


# ----------------------------------------------------------------------------- in-process
@dataclass(slots=True)
class _Pending:
    prompt: list[int]
    params: Params
    rng: np.random.Generator
    future: Future[Sampled]
    tokens: queue.SimpleQueue[int] | None = None  # a streamed call's tokens, as sampled
    tops: list[list[tuple[int, float]]] | None = None


class TokenStream:
    """A turn being sampled: iterate for its token ids as they come, then :meth:`result`."""

    def __init__(self, pending: _Pending) -> None:
        self._pending = pending

    def __iter__(self) -> Iterator[int]:
        tokens, future = self._pending.tokens, self._pending.future
        assert tokens is not None
        while True:
            try:
                yield tokens.get(timeout=0.05)
            except queue.Empty:
                if future.done() and tokens.empty():
                    return

    def result(self) -> Sampled:
        """The whole completion (waits for it; raises UpstreamFailed when the model failed)."""
        return self._pending.future.result()


class HFSampler:
    """The in-process HF policy, with concurrent calls batched by one worker thread.

    Args:
        hf: A ``simenv.rollouts.policies.HF`` (its model, tokenizer and stop ids).
        batch_size: Most prompts in one generation.
    """

    def __init__(self, hf: Any, batch_size: int = 64) -> None:
        self.hf = hf
        self.batch_size = batch_size
        self._cv = threading.Condition()
        self._queue: list[_Pending] = []
        self._worker: threading.Thread | None = None

    def sample(
        self, prompts: Sequence[list[int]], params: Params, rngs: Sequence[np.random.Generator]
    ) -> list[Sampled]:
        """Queue the prompts for the worker and wait for their completions."""
        pending = [
            _Pending(list(p), params, r, Future()) for p, r in zip(prompts, rngs, strict=True)
        ]
        self._enqueue(pending)
        return [p.future.result() for p in pending]

    def stream(self, prompt: list[int], params: Params, rng: np.random.Generator) -> TokenStream:
        """Queue one prompt and stream its tokens as the worker samples them.

        The tokens are the same as :meth:`sample` would give for the same generator: the
        stream only watches the sampling loop.
        """
        pending = _Pending(list(prompt), params, rng, Future(), tokens=queue.SimpleQueue())
        self._enqueue([pending])
        return TokenStream(pending)

    def _enqueue(self, pending: list[_Pending]) -> None:
        with self._cv:
            if self._worker is None:
                self._worker = threading.Thread(target=self._run, name="gateway-hf", daemon=True)
                self._worker.start()
            self._queue.extend(pending)
            self._cv.notify()

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._queue:
                    self._cv.wait()
                params = self._queue[0].params
                batch = [p for p in self._queue if p.params == params][: self.batch_size]
                chosen = {id(p) for p in batch}
                self._queue = [p for p in self._queue if id(p) not in chosen]
            for p in batch:
                p.tops = [] if params.top_logprobs else None

            def on_token(
                row: int, token: int, logprob: float, top: list[Any], batch: list[_Pending] = batch
            ) -> None:
                p = batch[row]
                if p.tops is not None:
                    p.tops.append(top)
                if p.tokens is not None:
                    p.tokens.put(token)

            watched = any(p.tokens is not None for p in batch) or params.top_logprobs > 0
            try:
                done = self.hf.generate(
                    [p.prompt for p in batch],
                    [p.rng for p in batch],
                    temperature=params.temperature,
                    top_p=params.top_p,
                    max_new_tokens=params.max_tokens,
                    top_logprobs=params.top_logprobs,
                    on_token=on_token if watched else None,
                )
            except Exception as exc:  # the model failed: every waiting call gets a 502
                for p in batch:
                    p.future.set_exception(UpstreamFailed(f"the policy failed to sample: {exc}"))
                continue
            for p, (ids, logprobs) in zip(batch, done, strict=True):
                p.future.set_result(Sampled(ids, logprobs, p.tops))


# ----------------------------------------------------------------------------- upstream
class UpstreamSampler:
    """An OpenAI-compatible completions server (vLLM's wire format), token-in/token-out.

    Each prompt is sent as ``{"prompt": [ids], "logprobs": K, "return_token_ids": true,
    "return_tokens_as_token_ids": true, "skip_special_tokens": false}`` (``K`` is 0, or the
    request's ``top_logprobs``); the completion ids are the answer's ``choices[0].token_ids``
    (or, from a server without that option, the ids in its ``token_id:N`` logprob tokens), the
    logprobs its ``token_logprobs`` and the alternatives its ``top_logprobs``. Any failure
    (connection, status, a malformed answer) is 502 ``InternalServiceError``.

    A forced tool call's constraint (:attr:`Params.constraint`, a JSON schema of what follows
    the forced prefix) is sent the way vLLM takes structured outputs: ``{"structured_outputs":
    {"json": schema}}`` (vLLM >= 0.11; ``structured="guided_json"`` sends the older
    ``{"guided_json": schema}``; ``None`` sends nothing, and only the prefix is forced).

    Args:
        url: The server's base URL, e.g. ``http://127.0.0.1:8001`` (``/v1/completions`` is added).
        model: The model name the server serves; a rollout engine changes it to each new
            LoRA adapter's name as it loads one (:mod:`trainer.engines`).
        timeout_s: Longest wait for one completion.
        api_key: Sent as a bearer token when given.
        structured: How a structured-output constraint is sent (see above).
        extra_body: Fields added to every request (e.g. SGLang's ``lora_path``).
    """

    def __init__(
        self,
        url: str,
        model: str,
        timeout_s: float = 120.0,
        api_key: str | None = None,
        structured: str | None = "structured_outputs",
        extra_body: dict[str, Any] | None = None,
    ) -> None:
        if structured not in ("structured_outputs", "guided_json", None):
            raise ValueError("structured must be 'structured_outputs', 'guided_json' or None")
        self.url = url.rstrip("/") + "/v1/completions"
        self.model = model
        self.timeout_s = timeout_s
        self.api_key = api_key
        self.structured = structured
        self.extra_body = dict(extra_body or {})

    def sample(
        self, prompts: Sequence[list[int]], params: Params, rngs: Sequence[np.random.Generator]
    ) -> list[Sampled]:
        """One completions call per prompt; a seed drawn from each generator."""
        return [
            self._one(p, params, int(r.integers(0, 2**31 - 1)))
            for p, r in zip(prompts, rngs, strict=True)
        ]

    def body(self, prompt: list[int], params: Params, seed: int) -> dict[str, Any]:
        """The ``/v1/completions`` request body for one prompt."""
        body: dict[str, Any] = {
            "model": self.model,
            "prompt": prompt,
            "max_tokens": params.max_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "seed": seed,
            "logprobs": params.top_logprobs,
            "return_token_ids": True,
            "return_tokens_as_token_ids": True,
            "skip_special_tokens": False,
            **self.extra_body,
        }
        if params.constraint is not None and self.structured == "structured_outputs":
            body["structured_outputs"] = {"json": params.constraint}
        elif params.constraint is not None and self.structured == "guided_json":
            body["guided_json"] = params.constraint
        return body

    def _one(self, prompt: list[int], params: Params, seed: int) -> Sampled:
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(
            self.url, json.dumps(self.body(prompt, params, seed)).encode(), headers=headers
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                answer = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise UpstreamFailed(
                f"the upstream model server answered {exc.code} at {self.url}"
            ) from None
        except (OSError, ValueError) as exc:  # connection refused, timeout, not JSON
            raise UpstreamFailed(f"the upstream model server at {self.url} failed: {exc}") from None
        return _parse_upstream(answer, self.url, params.top_logprobs)


def _parse_upstream(answer: Any, url: str, top_k: int = 0) -> Sampled:
    try:
        choice = answer["choices"][0]
        logprobs = [float(x) for x in choice["logprobs"]["token_logprobs"]]
        ids = choice.get("token_ids")
        if ids is None:
            ids = [_token_id(t) for t in choice["logprobs"]["tokens"]]
        ids = [int(i) for i in ids]
        top = None
        if top_k:
            top = [_ranked(entry, top_k) for entry in choice["logprobs"]["top_logprobs"]]
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
        raise UpstreamFailed(
            f"the upstream model server at {url} gave no token ids and logprobs ({exc!r}); "
            "serve with vLLM >= 0.10.2 (return_token_ids) or a server that returns them"
        ) from None
    if len(ids) != len(logprobs) or not ids or (top is not None and len(top) != len(ids)):
        raise UpstreamFailed(
            f"the upstream model server at {url} gave {len(ids)} token ids and "
            f"{len(logprobs)} logprobs"
        )
    return Sampled(ids, logprobs, top)


def _ranked(entry: Any, k: int) -> list[tuple[int, float]]:
    """One position of vLLM's ``{"token_id:N": logprob}``: most likely first, ``k`` of them."""
    pairs = [(_token_id(t), float(v)) for t, v in (entry or {}).items()]
    return sorted(pairs, key=lambda pair: -pair[1])[:k]


def _token_id(token: Any) -> int:
    """``"token_id:42"`` (vLLM's ``return_tokens_as_token_ids``) -> 42."""
    return int(str(token).removeprefix("token_id:"))


def load_tokenizer(path: str | Path) -> Any:
    """The tokenizer saved in a local directory (nothing is downloaded)."""
    try:  # deferred: simenv itself never needs transformers (see pyproject's contract)
        import transformers
    except ImportError as exc:
        raise ImportError(
            f"the gateway's tokenizer needs transformers ({exc}): pip install 'simenv[train]'"
        ) from exc
    if not Path(path).is_dir():
        raise FileNotFoundError(
            f"{path}: no such directory (a tokenizer saved with save_pretrained)"
        )
    return transformers.AutoTokenizer.from_pretrained(str(path), local_files_only=True)
