"""Agent adapters: one interface, three ways to attach the agent that ``simenv train`` trains.

The trainer hands each rollout to an agent as a :class:`Rollout`: the task (a dataset row, or a
scenario task), the gateway's ``base_url`` (OpenAI) and ``endpoint_url`` (job runtime), the
trajectory's id, key and headers, and the sampling parameters. The agent sends its model calls
to the gateway, which samples the policy under training and records every turn; the adapter
sees that the trajectory is completed and rewarded, and says how it went in a :class:`Report`.

- :class:`CallableAgent` (``--agent my_pkg.agent:run``): a Python function ``run(rollout)``
  that returns a reward, or a list of per-turn rewards, or raises (the trajectory is failed).
  The adapter calls CompleteRollout and UpdateReward itself: the function holds no training
  code.
- :class:`HttpAgent` (``--agent-url URL``): an agent behind HTTP, as a managed agent runtime
  hosts one: ``GET URL/ping`` is its health check (before training starts), ``POST
  URL/invocations`` gets :meth:`Rollout.to_dict` as JSON, and the agent reports back itself
  with the job-runtime calls (``CompleteRollout``, ``UpdateReward``, signed with the
  trainer's AWS credentials) before or after it answers. An error answer, a timeout, or no
  report by ``timeout_s`` fails the trajectory; failures are counted, never fatal.
- :class:`ScenarioAgent`: a simenv scenario played through the gateway, its reward the
  environment's own (one per turn) and its success the scenario's evaluation.

An agent is one method, ``run(rollout, gateway) -> Report`` (and ``check()``, the health check).
"""

from __future__ import annotations

import importlib
import json
import math
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import simenv
from simenv.server.gateway import Gateway, GatewayError

__all__ = [
    "Agent",
    "AgentError",
    "CallableAgent",
    "HttpAgent",
    "Report",
    "Rollout",
    "ScenarioAgent",
    "load_callable",
]


class AgentError(RuntimeError):
    """The agent cannot be used at all (not importable, not healthy): training does not start."""


@dataclass(frozen=True)
class Rollout:
    """What an agent gets for one trajectory.

    Attributes:
        task: The task: a dataset row (``id``, ``prompt``, ``split`` and its other columns),
            or a scenario task (``id``, ``prompt``, ``split``, ``scenario_id``).
        trajectory_id: The gateway's id of this rollout.
        key: The trajectory's key: ``openai.OpenAI(base_url=..., api_key=key)``.
        base_url: The gateway's OpenAI API root (``.../v1``).
        endpoint_url: The gateway's root, for ``boto3.client("sagemakerjobruntime",
            endpoint_url=...)``.
        job_arn: The ``JobArn`` job-runtime calls name.
        headers: ``Authorization`` (bearer key), ``X-Amzn-SageMaker-Job-Arn`` and
            ``X-Amzn-SageMaker-Trajectory-Id``, for a client that sets headers itself.
        sampling: Temperature and ``max_tokens`` the trainer samples with (the gateway applies
            them whatever the request says).
        seed: The rollout's seed (the samples of one group share it: one starting state).
    """

    task: dict[str, Any]
    trajectory_id: str
    key: str
    base_url: str
    endpoint_url: str
    job_arn: str
    headers: dict[str, str]
    sampling: dict[str, Any]
    seed: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the body an HTTP agent gets."""
        return asdict(self)


@dataclass(frozen=True)
class Report:
    """How one rollout went, as the adapter saw it.

    Attributes:
        status: ``ready`` (completed and rewarded) or ``failed`` (never trained on).
        error: Why it failed.
        success: The task's success when the agent knows it (a scenario's evaluation);
            ``None``: the trainer counts a total reward above 0 as a success.
        latency_s: Wall time of the agent's run.
    """

    status: str
    error: str | None = None
    success: bool | None = None
    latency_s: float = 0.0


class Agent(Protocol):
    """Plays one rollout through the gateway; the trajectory ends completed and rewarded, or
    failed (the adapter marks it so when the agent does not)."""

    def run(self, rollout: Rollout, gateway: Gateway) -> Report:
        """Play ``rollout``; never raises for a failure of the agent (it is the report's)."""
        ...

    def check(self) -> None:
        """Raise :class:`AgentError` when the agent cannot be used (before training)."""
        ...


# ----------------------------------------------------------------------------- shared
def finish(gateway: Gateway, trajectory_id: str, rewards: Sequence[float]) -> None:
    """CompleteRollout (ready) and UpdateReward, as the agent's own calls would."""
    gateway.complete(trajectory_id, "ready", None)
    gateway.reward(trajectory_id, [float(r) for r in rewards], None)


def fail(gateway: Gateway, trajectory_id: str) -> None:
    """Mark an open trajectory failed (a completed one is left as it is)."""
    try:
        if gateway.store.get(trajectory_id).state == "open":
            gateway.complete(trajectory_id, "failed", None)
    except GatewayError:  # dropped or completed meanwhile: nothing to mark
        pass


def rewards_of(value: Any) -> list[float]:
    """A callable's return value as rewards: a number, or a list of per-turn numbers.

    Raises:
        TypeError: anything else (the message says what to return).
    """
    numbers = value if isinstance(value, list | tuple) else [value]
    good = [isinstance(v, int | float) and not isinstance(v, bool) for v in numbers]
    if not numbers or not all(good) or not all(math.isfinite(v) for v in numbers):
        raise TypeError(
            f"the agent returned {value!r:.80}; return a finite reward (a float), or a list "
            "of per-turn rewards (one per model call), or raise to mark the rollout failed"
        )
    return [float(v) for v in numbers]


def _failed(began: float, error: str) -> Report:
    return Report("failed", error=error, latency_s=time.monotonic() - began)


# ----------------------------------------------------------------------------- a Python callable
def load_callable(spec: str) -> Callable[[Rollout], Any]:
    """``"package.module:function"`` -> the function.

    Raises:
        AgentError: not ``module:attr``, the module does not import, or no such callable.
    """
    module_name, colon, attribute = spec.partition(":")
    if not colon or not module_name or not attribute:
        raise AgentError(f"--agent {spec!r}: give module:function, e.g. my_pkg.agent:run")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise AgentError(
            f"--agent {spec}: cannot import {module_name} ({exc}); fix: install the package, "
            "or run from the folder that holds it"
        ) from None
    target: Any = module
    for part in attribute.split("."):
        target = getattr(target, part, None)
    if not callable(target):
        raise AgentError(f"--agent {spec}: {module_name} has no callable {attribute!r}")
    return target  # type: ignore[no-any-return]


@dataclass
class CallableAgent:
    """A Python function ``run(rollout) -> reward | [per-turn rewards]``; raising fails it."""

    fn: Callable[[Rollout], Any]

    def check(self) -> None:
        """A function needs no health check."""

    def run(self, rollout: Rollout, gateway: Gateway) -> Report:
        """Call the function, then complete and reward the trajectory with what it returned."""
        began = time.monotonic()
        try:
            rewards = rewards_of(self.fn(rollout))
        except Exception as exc:  # the agent's failure: counted, never fatal
            fail(gateway, rollout.trajectory_id)
            return _failed(began, f"{type(exc).__name__}: {exc}")
        try:
            finish(gateway, rollout.trajectory_id, rewards)
        except GatewayError as exc:  # e.g. 3 rewards for 2 turns: the message says so
            fail(gateway, rollout.trajectory_id)
            return _failed(began, str(exc))
        return Report("ready", latency_s=time.monotonic() - began)


# ----------------------------------------------------------------------------- an HTTP endpoint
@dataclass
class HttpAgent:
    """An agent behind HTTP: ``GET URL/ping``, ``POST URL/invocations`` (see the module docstring).

    Args:
        url: The agent's root, e.g. ``http://agent:8080``.
        timeout_s: Longest a rollout may take, from the POST to the agent's UpdateReward.
        poll_s: How often the trajectory's state is read while waiting for the report.
    """

    url: str
    timeout_s: float = 300.0
    poll_s: float = 0.02

    def __post_init__(self) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise AgentError(f"--agent-url {self.url!r}: give an http:// or https:// URL")
        self.url = self.url.rstrip("/")

    def check(self) -> None:
        """``GET URL/ping`` must answer 2xx within 10 s."""
        try:
            with urllib.request.urlopen(self.url + "/ping", timeout=10) as answer:
                answer.read()
        except (OSError, ValueError) as exc:  # HTTPError, refused, timed out
            raise AgentError(
                f"the agent at {self.url} is not healthy: GET {self.url}/ping failed ({exc}); "
                "fix: start the agent, or check --agent-url"
            ) from None

    def run(self, rollout: Rollout, gateway: Gateway) -> Report:
        """POST the rollout; wait until the agent has rewarded (or failed) the trajectory."""
        began = time.monotonic()
        deadline = began + self.timeout_s
        body = json.dumps(rollout.to_dict()).encode()
        request = urllib.request.Request(
            self.url + "/invocations", body, {"Content-Type": "application/json"}, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as answer:
                answer.read()
        except urllib.error.HTTPError as exc:
            fail(gateway, rollout.trajectory_id)
            return _failed(began, f"the agent answered {exc.code} to POST /invocations")
        except (OSError, ValueError) as exc:  # refused, reset, timed out
            fail(gateway, rollout.trajectory_id)
            return _failed(began, f"POST {self.url}/invocations failed: {exc}")
        while True:  # the agent reports through the job runtime, maybe after answering
            state, status = _state(gateway, rollout.trajectory_id)
            if state == "rewarded" or status == "failed":
                break
            if time.monotonic() >= deadline:
                fail(gateway, rollout.trajectory_id)
                return _failed(
                    began,
                    f"the agent did not report trajectory {rollout.trajectory_id} (state "
                    f"{state}) within {self.timeout_s} s: call CompleteRollout and UpdateReward",
                )
            time.sleep(self.poll_s)
        if status == "failed":
            return _failed(began, "the agent marked the trajectory failed")
        return Report("ready", latency_s=time.monotonic() - began)


def _state(gateway: Gateway, trajectory_id: str) -> tuple[str, str | None]:
    try:
        trajectory = gateway.store.get(trajectory_id)
    except GatewayError:
        return "gone", None
    return trajectory.state, trajectory.status


# ----------------------------------------------------------------------------- a simenv scenario
@dataclass
class ScenarioAgent:
    """A simenv scenario played through the gateway: the environment's reward, per turn.

    Each rollout plays task ``rollout.task["id"]`` of scenario ``rollout.task["scenario_id"]``
    with ``rollout.seed`` in a fresh environment, every model call a chat completion of the
    trajectory (asked again while the gateway is paused for an update).

    Args:
        timeout_s: Longest one rollout may take.
    """

    timeout_s: float = 300.0

    def check(self) -> None:
        """Nothing to check: each task names its scenario, loaded when played."""

    def run(self, rollout: Rollout, gateway: Gateway) -> Report:
        """Play the task; complete and reward with the step rewards, or fail."""
        began = time.monotonic()
        chat = _Chat(rollout, began + self.timeout_s)
        try:
            env = simenv.make(rollout.task["scenario_id"])
            try:
                episode = simenv.rollout(env, chat, seed=rollout.seed, task_id=rollout.task["id"])
            finally:
                env.close()
            if not episode.valid:
                raise RuntimeError(episode.error or "the environment failed")
            finish(gateway, rollout.trajectory_id, [s.reward for s in episode.steps])
        except Exception as exc:  # the gateway refused, the env failed: a failed rollout
            fail(gateway, rollout.trajectory_id)
            return _failed(began, f"{type(exc).__name__}: {exc}")
        return Report("ready", success=episode.success, latency_s=time.monotonic() - began)


class _Chat:
    """The policy a scenario rollout plays with: each turn one chat completion of the trajectory."""

    def __init__(self, rollout: Rollout, deadline: float) -> None:
        self.url = rollout.base_url + "/chat/completions"
        self.key = rollout.key
        self.deadline = deadline

    def describe(self) -> dict[str, Any]:
        return {"name": "gateway", "url": self.url}

    def act(self, conversations: Sequence[Any]) -> list[Any]:
        return [self._turn(c.messages, c.info.get("tools")) for c in conversations]

    def _turn(self, messages: list[Any], tools: Any) -> Any:
        body = json.dumps({"model": "policy", "messages": messages, "tools": tools}).encode()
        headers = {"Authorization": f"Bearer {self.key}", "Content-Type": "application/json"}
        while True:
            request = urllib.request.Request(self.url, body, headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=60) as answer:
                    return json.loads(answer.read())["choices"][0]["message"]
            except urllib.error.HTTPError as exc:
                paused = exc.code == 429 and b"paused" in exc.read()  # not the turn cap's 429
                if not paused or time.monotonic() >= self.deadline:
                    raise
                time.sleep(0.05)  # the trainer is swapping weights: ask again shortly
