"""What the gateway tests share: the tiny policy, a running gateway, and a vLLM stand-in.

:class:`VLLMStandIn` is a STAND-IN for a vLLM server, for what cannot run here (there is no GPU
and no vLLM on this machine): an HTTP server on 127.0.0.1 that speaks the parts of vLLM's wire
format simenv uses, with real models behind them:

- ``POST /v1/completions`` for token-id prompts, with ``return_token_ids``,
  ``return_tokens_as_token_ids`` and ``logprobs: K`` (``top_logprobs`` as vLLM gives them:
  ``{"token_id:N": logprob}`` per position, the sampled token among them); it answers from a
  script of texts (tokenised with the real tokenizer) or, without one, by sampling the model
  that ``model`` names: the base or a loaded LoRA adapter;
- ``POST /v1/load_lora_adapter`` (``{"lora_name", "lora_path"}``) LOADS the adapter directory
  with peft onto a copy of the base model, so the logprobs it serves are that adapter's;
  ``POST /v1/unload_lora_adapter`` (``{"lora_name"}``) forgets it; loading a name twice is 400,
  as in vLLM; a ``model`` that is neither the base nor a loaded adapter is 404;
- ``POST /collective_rpc`` with ``{"method": "reload_weights"}`` (vLLM's dev-mode endpoint)
  reloads the base weights from the directory it was started with;
- ``GET /health`` and ``GET /v1/models``.

Unlike vLLM it samples with the plain HF loop in float32 (so its logprobs equal the trainer's to
float rounding, where a real bf16 engine differs by more) and reports logprobs after
temperature (vLLM reports the raw model's by default; the same at temperature 1). ``mode`` makes
it fail (500), answer without token ids and logprobs (``bare``), or acknowledge adapter loads
and weight reloads while it keeps serving the old weights (``stale``).
"""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
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
    """A stand-in for vLLM's OpenAI-compatible server (see the module docstring).

    Args:
        model_dir: Serve the model saved here (``from_pretrained``, as ``vllm serve DIR``),
            under the name ``served``; default: the tiny model, and any model name is taken.
        served: The base model's name when ``model_dir`` is given.
    """

    daemon_threads = True

    def __init__(self, model_dir: str | Path | None = None, served: str = "base") -> None:
        self.script: list[str] = []
        self.mode = "ok"  # "ok" | "fail" | "bare" | "stale"
        self.requests: list[dict[str, Any]] = []
        self.model_dir = Path(model_dir) if model_dir is not None else None
        self.served = served
        self.adapters: dict[str, Any] = {}
        self.loads: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._model: tuple[Any, Any] | None = tiny() if self.model_dir is None else None
        super().__init__(("127.0.0.1", 0), _StandInHandler)

    @property
    def base(self) -> Any:
        """The base model, loaded from ``model_dir`` at first use (it may not exist yet)."""
        if self._model is None:
            self._model = self._load_base()
        return self._model[0]

    @property
    def tokenizer(self) -> Any:
        self.base  # noqa: B018 (loads it)
        assert self._model is not None
        return self._model[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def _load_base(self) -> tuple[Any, Any]:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        assert self.model_dir is not None
        tokenizer = AutoTokenizer.from_pretrained(str(self.model_dir), local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(str(self.model_dir), local_files_only=True)
        return model.eval(), tokenizer

    # ----------------------------------------------------------------- vLLM's endpoints
    def model_for(self, name: Any) -> Any:
        """The model a request's ``model`` names, or None (vLLM: 404)."""
        if name in self.adapters:
            return self.adapters[name]
        if self.model_dir is None or name == self.served:
            return self.base
        return None

    def load_lora(self, body: dict[str, Any]) -> tuple[int, Any]:
        from peft import PeftModel

        name, path = body.get("lora_name"), body.get("lora_path")
        if not isinstance(name, str) or not isinstance(path, str):
            return 400, _error("lora_name and lora_path are required", 400)
        if name in self.adapters:
            return 400, _error(f"The lora adapter '{name}' has already been loaded.", 400)
        if not (Path(path) / "adapter_config.json").exists():
            return 404, _error(f"No adapter found at {path}", 404)
        self.loads.append(dict(body))
        with self._lock:
            if self.mode == "stale":  # acknowledged, and the old weights keep serving
                self.adapters[name] = self.base
            else:
                model = PeftModel.from_pretrained(copy.deepcopy(self.base), path)
                self.adapters[name] = model.eval()
        return 200, f"Success: LoRA adapter '{name}' added successfully."

    def unload_lora(self, body: dict[str, Any]) -> tuple[int, Any]:
        name = body.get("lora_name")
        if name not in self.adapters:
            return 404, _error(f"The lora adapter '{name}' cannot be found.", 404)
        del self.adapters[name]
        return 200, f"Success: LoRA adapter '{name}' removed successfully."

    def collective_rpc(self, body: dict[str, Any]) -> tuple[int, Any]:
        if body.get("method") != "reload_weights":
            return 400, _error("the stand-in only knows method reload_weights", 400)
        if self.model_dir is None:
            return 400, _error("started without a model directory", 400)
        if self.mode != "stale":
            with self._lock:
                self._model = self._load_base()
        return 200, {"results": [None]}

    def models(self) -> dict[str, Any]:
        data = [{"id": self.served, "object": "model", "root": str(self.model_dir)}]
        data += [{"id": n, "object": "model", "parent": self.served} for n in self.adapters]
        return {"object": "list", "data": data}

    def complete(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        tokenizer = self.tokenizer
        model = self.model_for(body.get("model"))
        if model is None:
            return 404, _error(f"The model `{body.get('model')}` does not exist.", 404)
        prompt = [int(i) for i in body["prompt"]]
        k = int(body.get("logprobs") or 0)
        tops: list[list[tuple[int, float]]] = []
        if self.script:
            text = self.script.pop(0)
            ids = [int(i) for i in tokenizer(text, add_special_tokens=False)["input_ids"]]
            ids.append(int(tokenizer.eos_token_id))
            logprobs = [-0.25] * len(ids)
            tops = [[(i, -0.25)] for i in ids]
        else:
            hf = HF(model, tokenizer, max_new_tokens=int(body.get("max_tokens", 16)))
            rng = np.random.default_rng(int(body.get("seed", 0)))
            with self._lock:
                ids, logprobs = hf.generate(
                    [prompt],
                    [rng],
                    temperature=float(body["temperature"]),
                    top_p=float(body.get("top_p", 1.0)),
                    top_logprobs=k + 1,
                    on_token=lambda row, token, lp, top: tops.append(_with(top, token, lp)),
                )[0]
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
                "top_logprobs": [
                    {f"token_id:{t}": v for t, v in top[: k + 1]} for top in tops[: len(ids)]
                ]
                if k
                else None,
                "text_offset": [],
            },
        }
        if self.mode == "bare":
            choice["logprobs"] = None
        elif body.get("return_token_ids"):
            choice["token_ids"] = ids
            choice["prompt_token_ids"] = prompt
        answer = {
            "id": "cmpl-standin",
            "object": "text_completion",
            "model": body.get("model"),
            "choices": [choice],
            "usage": {"prompt_tokens": len(prompt), "completion_tokens": len(ids)},
        }
        return 200, answer


def _with(top: list[tuple[int, float]], token: int, logprob: float) -> list[tuple[int, float]]:
    """vLLM's alternatives hold the sampled token too."""
    return top if any(t == token for t, _ in top) else [*top, (token, logprob)]


def _error(message: str, code: int) -> dict[str, Any]:
    return {"error": {"message": message, "type": "BadRequestError", "code": code}}


class _StandInHandler(BaseHTTPRequestHandler):
    server: VLLMStandIn

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        if self.path == "/health":
            self._send(200, "")
        elif self.path == "/v1/models":
            self._send(200, self.server.models())
        else:
            self._send(404, _error("not found", 404))

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests.append(body)
        routes = {
            "/v1/completions": self.server.complete,
            "/v1/load_lora_adapter": self.server.load_lora,
            "/v1/unload_lora_adapter": self.server.unload_lora,
            "/collective_rpc": self.server.collective_rpc,
        }
        if self.server.mode == "fail" or self.path not in routes:
            status, answer = 500, {"error": "stand-in failure"}
        else:
            status, answer = routes[self.path](body)
        self._send(status, answer)

    def _send(self, status: int, answer: Any) -> None:
        text = isinstance(answer, str)
        data = (answer if text else json.dumps(answer)).encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain" if text else "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@contextmanager
def standin(model_dir: str | Path | None = None, served: str = "base") -> Iterator[VLLMStandIn]:
    with serving(VLLMStandIn(model_dir, served)) as server:
        yield server
