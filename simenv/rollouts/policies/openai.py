"""Any OpenAI-compatible chat-completions endpoint as a policy (vLLM, SGLang, a hosted API ...).

Each conversation of a batch is one ``POST {base_url}/chat/completions`` with its messages and
the scenario's tool schemas; at most ``max_concurrency`` requests are in flight at once (a
thread pool). The answer may carry OpenAI ``tool_calls`` (a server with a tool parser) or plain
text with ``<tool_call>`` blocks (a server without one): the environment parses either.

Transient failures (HTTP 408/409/425/429/5xx, timeouts, refused or dropped connections, a
garbled body) are retried with exponential backoff and jitter, honouring ``Retry-After``;
anything else, or retries exhausted, raises :class:`~simenv.errors.InfraError` (the run stops:
an outage of the policy is not the agent's fault). The API key is read from an environment
variable at each request and never stored or recorded.

The client is the standard library's (``urllib``), so this policy needs no extra package.

**Tokens.** Requests ask for ``logprobs``. Whatever the endpoint returns is recorded per turn
in ``conversation.memo["turns"]`` (so in ``Episode.metadata["turns"]``): ``logprobs`` of the
sampled tokens; ``completion_ids`` when the tokens come as ids (vLLM's
``return_tokens_as_token_ids`` gives ``"token_id:N"`` tokens, its ``return_token_ids`` a
``token_ids`` list); ``prompt_ids`` when the endpoint returns ``prompt_token_ids``. Pass such
options with ``extra_body``.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from simenv.errors import InfraError
from simenv.rollouts.policies.base import Conversation
from simenv.types import Action

__all__ = ["OpenAI"]

TRANSIENT_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
"""HTTP statuses worth another attempt."""

_SENT_KEYS = ("role", "content", "tool_calls", "tool_call_id")
_MAX_RETRY_AFTER_S = 60.0


class _Transient(Exception):
    """A failure worth retrying; ``wait_s`` is the server's ``Retry-After``, if any."""

    def __init__(self, message: str, wait_s: float | None = None) -> None:
        super().__init__(message)
        self.wait_s = wait_s


class OpenAI:
    """A chat-completions endpoint.

    Args:
        model: The model name the endpoint serves.
        base_url: The API root, e.g. ``http://127.0.0.1:8000/v1``.
        api_key_env: Environment variable holding the key (unset: no ``Authorization`` header).
        temperature: Sampling temperature.
        top_p: Nucleus sampling mass (``None``: the endpoint's default).
        max_tokens: Longest completion per turn.
        max_concurrency: Requests in flight at once.
        timeout_s: Per request: connecting, and each wait for data.
        retries: Extra attempts after a transient failure.
        backoff_s: First retry delay; doubles each time, with jitter.
        extra_body: Merged into every request body, e.g.
            ``{"return_tokens_as_token_ids": True}`` for vLLM.

    Raises:
        ValueError: A parameter is out of range.
    """

    def __init__(
        self,
        model: str,
        base_url: str,
        api_key_env: str = "OPENAI_API_KEY",
        *,
        temperature: float = 1.0,
        top_p: float | None = None,
        max_tokens: int = 512,
        max_concurrency: int = 16,
        timeout_s: float = 60.0,
        retries: int = 4,
        backoff_s: float = 0.5,
        extra_body: dict[str, Any] | None = None,
    ) -> None:
        if max_concurrency < 1 or max_tokens < 1:
            raise ValueError("max_concurrency and max_tokens must be at least 1")
        if timeout_s <= 0 or retries < 0 or backoff_s < 0:
            raise ValueError("timeout_s must be > 0, retries and backoff_s >= 0")
        self.model = model
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.api_key_env = api_key_env
        self.temperature = temperature
        self.top_p = top_p
        self.max_tokens = max_tokens
        self.max_concurrency = max_concurrency
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self.extra_body = dict(extra_body or {})
        self._pool = ThreadPoolExecutor(max_concurrency, thread_name_prefix="simenv-openai")
        self._jitter = random.Random()
        self._lock = threading.Lock()

    def describe(self) -> dict[str, Any]:
        """Model, endpoint and sampling parameters (never the key)."""
        return {
            "name": "openai",
            "model": self.model,
            "url": self.url,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "max_tokens": self.max_tokens,
        }

    def close(self) -> None:
        """Stop the request threads (a later :meth:`act` starts new ones)."""
        self._pool.shutdown(wait=True)
        self._pool = ThreadPoolExecutor(self.max_concurrency, thread_name_prefix="simenv-openai")

    # ------------------------------------------------------------------------- requests
    def body(self, conversation: Conversation) -> dict[str, Any]:
        """The JSON body sent for ``conversation``."""
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [{k: m[k] for k in _SENT_KEYS if k in m} for m in conversation.messages],
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "logprobs": True,
        }
        if self.top_p is not None:
            body["top_p"] = self.top_p
        if conversation.info.get("tools"):
            body["tools"] = conversation.info["tools"]
        body.update(self.extra_body)
        return body

    def _post(self, data: bytes) -> dict[str, Any]:
        """One attempt. Raises :class:`_Transient` or :class:`InfraError`."""
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        key = os.environ.get(self.api_key_env)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        request = urllib.request.Request(self.url, data=data, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read()[:300].decode("utf-8", "replace")
            message = f"{self.url} answered HTTP {exc.code}: {detail}"
            if exc.code in TRANSIENT_STATUS:
                raise _Transient(message, _retry_after(exc.headers.get("Retry-After"))) from exc
            raise InfraError(f"{message} (not retried: check the model name and request)") from exc
        except (
            TimeoutError,
            urllib.error.URLError,
            ConnectionError,
            http.client.HTTPException,
        ) as exc:
            reason = getattr(exc, "reason", exc)
            raise _Transient(f"{self.url} did not answer ({reason or type(exc).__name__})") from exc
        try:
            answer = json.loads(raw)
            if not isinstance(answer, dict) or not answer.get("choices"):
                raise ValueError("no choices")
        except ValueError as exc:
            raise _Transient(f"{self.url} sent an unreadable answer: {raw[:200]!r}") from exc
        return answer

    def _request(self, conversation: Conversation) -> dict[str, Any]:
        """POST with retries; the parsed JSON answer."""
        data = json.dumps(self.body(conversation)).encode()
        delay = self.backoff_s
        for attempt in range(self.retries + 1):
            try:
                return self._post(data)
            except _Transient as exc:
                if attempt == self.retries:
                    raise InfraError(
                        f"{exc} after {self.retries + 1} attempts; is the server up and is "
                        f"timeout_s={self.timeout_s} long enough?"
                    ) from exc
                with self._lock:
                    jitter = 0.5 + 0.5 * self._jitter.random()
                time.sleep(max(delay * jitter, exc.wait_s or 0.0))
                delay *= 2
        raise AssertionError("unreachable")  # pragma: no cover

    # ------------------------------------------------------------------------- acting
    def act(self, conversations: Sequence[Conversation]) -> list[Action]:
        """One request per conversation, concurrently; returns the assistant messages."""
        answers = list(self._pool.map(self._request, conversations))
        actions: list[Action] = []
        for conversation, answer in zip(conversations, answers, strict=True):
            choice = answer["choices"][0]
            message = choice.get("message") or {}
            action: dict[str, Any] = {"role": "assistant", "content": message.get("content") or ""}
            if message.get("tool_calls"):
                action["tool_calls"] = message["tool_calls"]
            actions.append(action)
            turn = _tokens(answer, choice)
            if turn:
                conversation.memo.setdefault("turns", []).append(turn)
        return actions


def _retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (a number; dates are ignored), capped."""
    try:
        return min(float(value), _MAX_RETRY_AFTER_S) if value else None
    except ValueError:
        return None


def _tokens(answer: dict[str, Any], choice: dict[str, Any]) -> dict[str, Any]:
    """The token record of one turn: whatever of logprobs / ids the endpoint returned."""
    turn: dict[str, Any] = {}
    prompt = answer.get("prompt_token_ids") or choice.get("prompt_token_ids")
    if prompt:
        turn["prompt_ids"] = [int(t) for t in prompt]
    content = (choice.get("logprobs") or {}).get("content") or []
    if content:
        turn["logprobs"] = [float(t["logprob"]) for t in content]
    ids = choice.get("token_ids")
    if ids:
        turn["completion_ids"] = [int(t) for t in ids]
    elif content and all(str(t.get("token", "")).startswith("token_id:") for t in content):
        turn["completion_ids"] = [int(str(t["token"])[9:]) for t in content]
    return turn
