"""Any OpenAI-compatible chat-completions endpoint as a policy (vLLM, a hosted API ...).

Requests for a batch go out concurrently (at most ``max_concurrency`` at a time) over the
standard library's HTTP client; transient failures (HTTP 429 and 5xx, timeouts, dropped
connections) are retried with exponential backoff; anything else, or retries exhausted, raises
:class:`~simenv.errors.InfraError` (the runner then ends the run: a policy outage is not the
agent's fault). The API key is read from an environment variable, never stored.

When the endpoint returns logprobs (``logprobs: true``; vLLM also returns token ids with
``return_tokens_as_token_ids``), they are recorded per turn in ``conversation.memo["turns"]``.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from simenv.errors import InfraError
from simenv.policies.base import Conversation
from simenv.types import Action

__all__ = ["OpenAI"]

_TRANSIENT = {408, 409, 429, 500, 502, 503, 504}


class OpenAI:
    """A chat-completions endpoint.

    Args:
        model: The model name the endpoint serves.
        base_url: E.g. ``http://127.0.0.1:8000/v1``.
        api_key_env: Environment variable holding the key (absent: no auth header).
        temperature: Sampling temperature.
        max_tokens: Longest completion per turn.
        max_concurrency: Requests in flight at once.
        timeout_s: Per request.
        retries: Extra attempts on transient errors.
        backoff_s: First retry delay; doubles each time.
        extra_body: Merged into every request (e.g. ``{"return_tokens_as_token_ids": True}``).
    """

    def __init__(
        self,
        model: str,
        base_url: str,
        *,
        api_key_env: str = "OPENAI_API_KEY",
        temperature: float = 1.0,
        max_tokens: int = 512,
        max_concurrency: int = 16,
        timeout_s: float = 60.0,
        retries: int = 4,
        backoff_s: float = 0.5,
        extra_body: dict[str, Any] | None = None,
    ) -> None:
        self.model = model
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.api_key_env = api_key_env
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.max_concurrency = max_concurrency
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self.extra_body = dict(extra_body or {})
        self._pool = ThreadPoolExecutor(max_concurrency)

    def describe(self) -> dict[str, Any]:
        """Model, endpoint and sampling parameters."""
        return {"name": "openai", "model": self.model, "url": self.url,
                "temperature": self.temperature}  # fmt: skip

    def _request(self, conversation: Conversation) -> dict[str, Any]:
        messages = [
            {k: v for k, v in m.items() if k in ("role", "content", "tool_calls", "tool_call_id")}
            for m in conversation.messages
        ]
        body: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "logprobs": True,
            **self.extra_body,
        }
        if conversation.info.get("tools"):
            body["tools"] = conversation.info["tools"]
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.api_key_env)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        data = json.dumps(body).encode()
        delay = self.backoff_s
        for attempt in range(self.retries + 1):
            request = urllib.request.Request(self.url, data=data, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                    return dict(json.loads(response.read()))
            except urllib.error.HTTPError as exc:
                if exc.code not in _TRANSIENT or attempt == self.retries:
                    raise InfraError(
                        f"{self.url} answered HTTP {exc.code}: {exc.read()[:200]!r}"
                    ) from exc
            except (TimeoutError, urllib.error.URLError, ConnectionError) as exc:
                if attempt == self.retries:
                    raise InfraError(
                        f"{self.url} did not answer after {self.retries + 1} attempts ({exc}); "
                        "is the server up?"
                    ) from exc
            time.sleep(delay)
            delay *= 2
        raise InfraError(f"{self.url}: no answer")  # pragma: no cover - the loop returns

    def act(self, conversations: Sequence[Conversation]) -> list[Action]:
        """One request per conversation, concurrently; returns the assistant messages."""
        responses = list(self._pool.map(self._request, conversations))
        actions: list[Action] = []
        for conversation, response in zip(conversations, responses, strict=True):
            choice = response["choices"][0]
            message = dict(choice.get("message") or {})
            message["role"] = "assistant"
            message.setdefault("content", "")
            actions.append(message)
            content = (choice.get("logprobs") or {}).get("content")
            if content:
                conversation.memo.setdefault("turns", []).append(
                    {
                        "logprobs": [float(t["logprob"]) for t in content],
                        "completion_ids": [
                            int(t["token"].split(":", 1)[1])
                            for t in content
                            if str(t.get("token", "")).startswith("token_id:")
                        ],
                    }
                )
        return actions
