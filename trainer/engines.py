"""Inference engines for rollouts: the trainer's own HF loop, or a vLLM / SGLang server.

``rollout_engine=hf`` (the default) samples with the trainer's live model, in this process.
``vllm`` and ``sglang`` sample from an inference server, started here or reached at
``engine_url``, through the gateway's upstream path (:class:`simenv.server.gateway.
UpstreamSampler`: token-in/token-out completions, the server's own ids and logprobs). The HF
policy still renders, records and parses; only its sampling moves (``HF.engine``).

An engine is four calls the train loop makes::

    engine = open_engine(cfg, out, tokenizer)   # start the server, or connect to it
    engine.attach(policy)                       # the policy's completions come from the engine
    engine.sync(model, version)                 # after each update: push the weights, CHECK
    engine.close()                              # stop a server it started

**Weight sync.** With LoRA (``lora_rank > 0``) the adapter is saved to
``OUT/engine/adapter-vN`` and loaded under the name ``simenv-vN`` by the server's runtime LoRA
loading (vLLM: ``POST /v1/load_lora_adapter {"lora_name", "lora_path"}``, which needs
``VLLM_ALLOW_RUNTIME_LORA_UPDATING=True``; SGLang: ``POST /load_lora_adapter``); rollouts then
name that adapter (vLLM: the request's ``model``; SGLang: its ``lora_path``) and the previous
one is unloaded (``/v1/unload_lora_adapter``, ``/unload_lora_adapter`` ``{"lora_name"}``). A
full fine-tune saves every weight and has the server reload them: vLLM reloads from the
directory it serves (``POST /collective_rpc {"method": "reload_weights"}``, a dev-mode endpoint:
``VLLM_SERVER_DEV_MODE=1``), SGLang from a directory it is given (``POST
/update_weights_from_disk {"model_path"}``); where neither is available, restart the server on
the saved directory.

**The check.** After every sync the engine samples a fixed prompt (temperature 1, a fixed
seed) with the new version, and the trainer computes the logprobs of the same tokens with its
own model. When they differ by more than ``engine_tolerance`` (mean absolute, nats per token),
the server is not serving the new version: the new adapter is unloaded and :class:`EngineError`
stops training, rather than training on rollouts of a policy that is not the one updated.

What ran here: every call above against tests/gateway_support.py's stand-in for vLLM (a real
HTTP server on 127.0.0.1 that loads the adapter with peft and serves its logprobs); not
against vLLM or SGLang themselves, for want of a GPU. ``bench/vllm_rollouts.py`` is the run
for a GPU machine.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from simenv.server.gateway import Params, UpstreamSampler
from trainer.config import TrainConfig
from trainer.models import token_logprobs

__all__ = [
    "CHECK_PROMPT",
    "EngineError",
    "HFEngine",
    "RolloutEngine",
    "ServerEngine",
    "open_engine",
    "server_command",
]

CHECK_PROMPT = [{"role": "user", "content": "simenv weight check: say something."}]
"""The fixed conversation whose sampled tokens the check compares (rendered by the template)."""
CHECK_TOKENS = 8
"""Tokens the check samples."""


class EngineError(RuntimeError):
    """The rollout engine cannot be started or reached, or it serves a stale policy."""


class RolloutEngine(Protocol):
    """What the train loop calls (see the module docstring)."""

    def attach(self, policy: Any) -> None:
        """Make ``policy`` (a ``simenv.rollouts.policies.HF``) sample through the engine."""
        ...

    def sync(self, model: Any, version: int, gateway: Any = None) -> dict[str, float]:
        """Serve ``model``'s current weights as ``version``, checked; returns metrics."""
        ...

    def close(self) -> None:
        """Stop what this engine started."""
        ...


class HFEngine:
    """The trainer's own sampling loop: nothing to attach, start or sync."""

    def attach(self, policy: Any) -> None:
        """Leave the policy sampling with its own loop."""

    def sync(self, model: Any, version: int, gateway: Any = None) -> dict[str, float]:
        """Nothing to push: the policy samples from the live model."""
        return {}

    def close(self) -> None:
        """Nothing to stop."""


class ServerEngine:
    """A vLLM or SGLang server as the rollout engine.

    Args:
        kind: ``vllm`` or ``sglang``.
        url: The server's base URL.
        served: The base model's name on the server.
        tokenizer: The policy's tokenizer (renders the check prompt).
        workdir: Where adapters (and full weights) are saved for the server to read.
        lora: Whether the trained model is a LoRA adapter (else every weight is synced).
        weights_dir: The directory a full fine-tune is saved to (vLLM: the one it serves).
        tolerance: See :attr:`trainer.config.TrainConfig.engine_tolerance`.
        process: The server process, when this engine started it (stopped by :meth:`close`).
        timeout_s: Longest wait for one call.
    """

    def __init__(
        self,
        kind: str,
        url: str,
        served: str,
        tokenizer: Any,
        workdir: Path,
        *,
        lora: bool,
        weights_dir: Path | None = None,
        tolerance: float = 0.1,
        process: subprocess.Popen[bytes] | None = None,
        timeout_s: float = 300.0,
    ) -> None:
        if kind not in ("vllm", "sglang"):
            raise ValueError(f"kind must be vllm or sglang, not {kind!r}")
        self.kind, self.url, self.served = kind, url.rstrip("/"), served
        self.tokenizer, self.workdir, self.lora = tokenizer, Path(workdir), lora
        self.weights_dir = weights_dir
        self.tolerance, self.process, self.timeout_s = tolerance, process, timeout_s
        self.sampler = UpstreamSampler(self.url, served, timeout_s=timeout_s)
        self.adapter: str | None = None  # the adapter rollouts name now (None: the base)
        self.version: int | None = None
        rendered = tokenizer.apply_chat_template(
            CHECK_PROMPT, add_generation_prompt=True, tokenize=False
        )
        self.check_prompt = [
            int(i) for i in tokenizer(rendered, add_special_tokens=False)["input_ids"]
        ]

    # ----------------------------------------------------------------- sampling
    def attach(self, policy: Any) -> None:
        """Every completion of ``policy`` is sampled by the server, token-in/token-out."""
        policy.engine = self.generate

    def generate(
        self,
        prompts: list[list[int]],
        rngs: list[np.random.Generator],
        temperature: float,
        top_p: float,
        max_new_tokens: int,
    ) -> list[tuple[list[int], list[float]]]:
        """``HF.engine``: the upstream path's completions, as ``(ids, logprobs)``."""
        params = Params(temperature=temperature, top_p=top_p, max_tokens=max_new_tokens)
        try:
            done = self.sampler.sample(prompts, params, rngs)
        except Exception as exc:  # UpstreamFailed: the rollout cannot go on without its model
            raise EngineError(
                f"the {self.kind} server at {self.url} failed to sample: {exc}"
            ) from exc
        return [(s.ids, s.logprobs) for s in done]

    # ----------------------------------------------------------------- weights
    def sync(self, model: Any, version: int, gateway: Any = None) -> dict[str, float]:
        """Push ``model``'s weights as ``version``, check the server serves them, switch to them.

        With a ``gateway`` (:class:`simenv.server.gateway.Gateway` serving through this
        engine), sampling is paused while the weights change and resumed, tagged ``version``.

        Raises:
            EngineError: the server refused the weights, or still serves another version.
        """
        began = time.perf_counter()
        if gateway is not None:
            gateway.pause()
            gateway.wait_idle(self.timeout_s)
        try:
            if self.lora:
                difference = self._load_adapter(model, version)
            else:
                self._reload_weights(model)
                difference = self.check(model)
            if gateway is not None:
                gateway.set_policy_version(version)
        finally:
            if gateway is not None:
                gateway.resume()
        self.version = version
        return {
            "engine/logprob_diff": difference,
            "perf/engine_sync_s": time.perf_counter() - began,
        }

    def _load_adapter(self, model: Any, version: int) -> float:
        name, path = f"simenv-v{version}", self.workdir / f"adapter-v{version}"
        shutil.rmtree(path, ignore_errors=True)
        model.save_pretrained(path)
        prefix = "/v1" if self.kind == "vllm" else ""  # a resumed run's name may be loaded:
        self._post(f"{prefix}/unload_lora_adapter", {"lora_name": name}, check=False)
        self._post(
            f"{prefix}/load_lora_adapter", {"lora_name": name, "lora_path": str(path.resolve())}
        )
        previous = self.adapter
        self._select(name)
        try:
            difference = self.check(model)
        except EngineError:
            self._select(previous)
            self._post(f"{prefix}/unload_lora_adapter", {"lora_name": name}, check=False)
            shutil.rmtree(path, ignore_errors=True)
            raise
        if previous is not None:
            self._post(f"{prefix}/unload_lora_adapter", {"lora_name": previous}, check=False)
            shutil.rmtree(
                self.workdir / f"adapter-v{previous.removeprefix('simenv-v')}", ignore_errors=True
            )
        return difference

    def _select(self, adapter: str | None) -> None:
        """Rollouts name ``adapter`` (None: the base model)."""
        self.adapter = adapter
        if self.kind == "vllm":
            self.sampler.model = adapter or self.served
        elif adapter is None:
            self.sampler.extra_body.pop("lora_path", None)
        else:
            self.sampler.extra_body["lora_path"] = adapter

    def _reload_weights(self, model: Any) -> None:
        if self.weights_dir is None:
            raise EngineError("a full fine-tune needs the engine's weights directory")
        model.save_pretrained(self.weights_dir)
        if self.kind == "vllm":  # reloads from the directory it serves
            self._post("/collective_rpc", {"method": "reload_weights"})
        else:
            self._post("/update_weights_from_disk", {"model_path": str(self.weights_dir.resolve())})

    def check(self, model: Any) -> float:
        """The mean absolute logprob difference on the check prompt; EngineError above tolerance."""
        rng = np.random.default_rng(0)
        [(ids, served)] = self.generate([self.check_prompt], [rng], 1.0, 1.0, CHECK_TOKENS)
        ours = trainer_logprobs(model, self.check_prompt, ids)
        difference = float(np.mean(np.abs(np.asarray(served) - np.asarray(ours))))
        if not difference <= self.tolerance:
            raise EngineError(
                f"the {self.kind} server at {self.url} does not serve the updated policy: its "
                f"logprobs of the check prompt differ from the trainer's by {difference:.4f} "
                f"nats per token (tolerance {self.tolerance}); it may have kept the old weights. "
                "Training stops rather than learn from another policy's rollouts. Check the "
                "server's log for the adapter or weight load, or raise engine_tolerance if the "
                "engine's precision alone explains the difference."
            )
        return difference

    def _post(self, path: str, body: dict[str, Any], check: bool = True) -> None:
        request = urllib.request.Request(
            self.url + path, json.dumps(body).encode(), headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as answer:
                answer.read()
        except urllib.error.HTTPError as exc:
            with exc:
                detail = exc.read()[:500].decode("utf-8", "replace")
            if check:
                raise EngineError(f"{self.kind} refused POST {path}: {exc.code} {detail}") from None
        except OSError as exc:
            if check:
                raise EngineError(
                    f"{self.kind} at {self.url} unreachable ({path}): {exc}"
                ) from None

    def close(self) -> None:
        """Stop the server this engine started (a connected one keeps running)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def trainer_logprobs(model: Any, prompt: Sequence[int], completion: Sequence[int]) -> list[float]:
    """The trainer's logprob of each completion token after ``prompt`` (temperature 1)."""
    device = next(model.parameters()).device
    ids = torch.tensor([[*prompt, *completion]], device=device)
    mask = torch.ones_like(ids)
    loss_mask = torch.zeros_like(ids)
    loss_mask[0, len(prompt) :] = 1
    training = bool(model.training)
    model.eval()
    try:
        with torch.no_grad():
            logp = token_logprobs(model, ids, mask, loss_mask)
    finally:
        model.train(training)
    return [float(x) for x in logp[0, len(prompt) :].tolist()]


# ----------------------------------------------------------------------------- opening
def server_command(kind: str, model_dir: Path, port: int, served: str, lora_rank: int) -> list[str]:
    """The command that starts a server for this run (LoRA enabled when ``lora_rank > 0``)."""
    if kind == "vllm":
        command = [
            "vllm",
            "serve",
            str(model_dir),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--served-model-name",
            served,
        ]
        if lora_rank:
            command += [
                "--enable-lora",
                "--max-lora-rank",
                str(max(8, lora_rank)),
                "--max-loras",
                "2",
            ]
        return command
    command = [
        sys.executable,
        "-m",
        "sglang.launch_server",
        "--model-path",
        str(model_dir),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--served-model-name",
        served,
    ]
    if lora_rank:
        command += [
            "--enable-lora",
            "--max-lora-rank",
            str(lora_rank),
            "--lora-target-modules",
            "all",
        ]
    return command


def open_engine(cfg: TrainConfig, out: Path, tokenizer: Any, port: int = 8011) -> RolloutEngine:
    """The engine of ``cfg``: the HF loop, or a server started on ``OUT/base`` or connected to.

    A full fine-tune's server serves ``OUT/engine/weights`` (a copy of the base, overwritten
    at every sync); a connected vLLM server reloads from the directory it serves (its
    ``/v1/models`` ``root``), which this run then overwrites.

    Raises:
        EngineError: the engine is not installed here, or its server did not come up.
    """
    if cfg.rollout_engine == "hf":
        return HFEngine()
    kind, workdir = cfg.rollout_engine, out / "engine"
    workdir.mkdir(parents=True, exist_ok=True)
    lora = cfg.lora_rank > 0
    served = "simenv-base"
    if cfg.engine_url:
        served, root = _served(cfg.engine_url)
        weights = None if lora else (Path(root) if kind == "vllm" and root else workdir / "weights")
        return ServerEngine(
            kind,
            cfg.engine_url,
            served,
            tokenizer,
            workdir,
            lora=lora,
            weights_dir=weights,
            tolerance=cfg.engine_tolerance,
        )
    _require(kind)
    model_dir = out / "base"
    weights = None
    if not lora:
        weights = workdir / "weights"
        shutil.rmtree(weights, ignore_errors=True)
        shutil.copytree(model_dir, weights)
        model_dir = weights
    env = {"VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True", "VLLM_SERVER_DEV_MODE": "1"}
    log = (workdir / "server.log").open("ab")
    process = subprocess.Popen(
        server_command(kind, model_dir, port, served, cfg.lora_rank),
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, **env},
    )
    url = f"http://127.0.0.1:{port}"
    _wait_healthy(url, process, workdir / "server.log")
    return ServerEngine(
        kind,
        url,
        served,
        tokenizer,
        workdir,
        lora=lora,
        weights_dir=weights,
        tolerance=cfg.engine_tolerance,
        process=process,
    )


def _require(kind: str) -> None:
    module = "vllm" if kind == "vllm" else "sglang"
    if importlib.util.find_spec(module) is None and shutil.which(module) is None:
        raise EngineError(
            f"rollout_engine={kind} needs {module} installed on this machine (pip install "
            f"{module}, on a GPU machine), or engine_url=URL of a {kind} server already running"
        )


def _served(url: str) -> tuple[str, str | None]:
    """The first model a running server lists, and its ``root`` (vLLM: the path it serves)."""
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/v1/models", timeout=30) as answer:
            first = json.loads(answer.read())["data"][0]
    except (OSError, ValueError, KeyError, IndexError) as exc:
        raise EngineError(f"no model server answers GET {url}/v1/models ({exc})") from None
    return str(first["id"]), first.get("root")


def _wait_healthy(
    url: str, process: subprocess.Popen[bytes], log: Path, limit_s: float = 900
) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise EngineError(f"the engine server exited with {process.returncode}; see {log}")
        try:
            with urllib.request.urlopen(url + "/health", timeout=5):
                return
        except OSError:
            time.sleep(2)
    process.terminate()
    raise EngineError(
        f"the engine server at {url} was not healthy after {limit_s:.0f} s; see {log}"
    )
