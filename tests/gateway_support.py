"""What the gateway tests share: the tiny policy, a running gateway, and a vLLM stand-in.

:class:`VLLMStandIn` is a STAND-IN for a vLLM server (there is no GPU here): an HTTP server
that speaks vLLM's ``/v1/completions`` wire format for token-id prompts, with
``return_token_ids`` and ``return_tokens_as_token_ids``. It answers from a script of texts
(tokenised with the real tokenizer) or, without one, by sampling the tiny model; ``mode``
makes it fail (500), or answer without token ids and logprobs.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
from helpers import serving

from simenv.rollouts.policies import HF
from simenv.server.gateway import AwsCredentials, Gateway, GatewayServer, Policy, make_server

ADMIN_KEY = "sk-admin-test"
AWS = AwsCredentials("AKIDGATEWAYTEST", "gateway-test-secret")
JOB_ARN = "arn:aws:sagemaker:us-east-1:123456789012:job/rl/test-job"

_TINY: dict[str, Any] = {}


def tiny() -> tuple[Any, Any]:
    """The tiny model and tokenizer, built once per process."""
    if not _TINY:
        from trainer.models import build_tiny

        model, tokenizer = build_tiny(seed=0)
        _TINY["pair"] = (model.eval(), tokenizer)
    pair: tuple[Any, Any] = _TINY["pair"]
    return pair


def hf_policy(max_new_tokens: int = 16) -> Policy:
    model, tokenizer = tiny()
    return Policy.from_hf(HF(model, tokenizer, max_new_tokens=max_new_tokens, seed=1), name="tiny")


@contextmanager
def running(gateway: Gateway) -> Iterator[GatewayServer]:
    with serving(make_server(gateway), join_s=5) as server:
        yield server


class VLLMStandIn(ThreadingHTTPServer):
    """A stand-in for vLLM's OpenAI-compatible completions endpoint (see the module docstring)."""

    daemon_threads = True

    def __init__(self) -> None:
        self.script: list[str] = []
        self.mode = "ok"  # "ok" | "fail" | "bare"
        self.requests: list[dict[str, Any]] = []
        super().__init__(("127.0.0.1", 0), _StandInHandler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def complete(self, body: dict[str, Any]) -> dict[str, Any]:
        model, tokenizer = tiny()
        prompt = [int(i) for i in body["prompt"]]
        if self.script:
            text = self.script.pop(0)
            ids = [int(i) for i in tokenizer(text, add_special_tokens=False)["input_ids"]]
            ids.append(int(tokenizer.eos_token_id))
            logprobs = [-0.25] * len(ids)
        else:
            hf = HF(model, tokenizer, max_new_tokens=int(body.get("max_tokens", 16)))
            rng = np.random.default_rng(int(body.get("seed", 0)))
            ids, logprobs = hf.generate([prompt], [rng], temperature=float(body["temperature"]))[0]
        ids = ids[: int(body.get("max_tokens", len(ids)))]
        logprobs = logprobs[: len(ids)]
        stopped = ids[-1] == tokenizer.eos_token_id
        choice: dict[str, Any] = {
            "index": 0,
            "text": tokenizer.decode(ids, skip_special_tokens=False),
            "finish_reason": "stop" if stopped else "length",
            "logprobs": {
                "tokens": [f"token_id:{i}" for i in ids],
                "token_logprobs": logprobs,
                "top_logprobs": None,
                "text_offset": [],
            },
        }
        if self.mode == "bare":
            choice["logprobs"] = None
        elif body.get("return_token_ids"):
            choice["token_ids"] = ids
            choice["prompt_token_ids"] = prompt
        return {
            "id": "cmpl-standin",
            "object": "text_completion",
            "model": body.get("model"),
            "choices": [choice],
            "usage": {"prompt_tokens": len(prompt), "completion_tokens": len(ids)},
        }


class _StandInHandler(BaseHTTPRequestHandler):
    server: VLLMStandIn

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests.append(body)
        if self.server.mode == "fail" or self.path != "/v1/completions":
            status, answer = 500, {"error": "stand-in failure"}
        else:
            status, answer = 200, self.server.complete(body)
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@contextmanager
def standin() -> Iterator[VLLMStandIn]:
    with serving(VLLMStandIn()) as server:
        yield server
