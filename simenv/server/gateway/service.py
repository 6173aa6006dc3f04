"""The gateway itself, without HTTP: trajectories, the policy, pausing and the policy version.

:class:`Gateway` is what the HTTP layer (:mod:`simenv.server.gateway.http`) and a trainer in
the same process call. ``sample`` is one turn: render the request's messages (the turns this
gateway answered replaced by their text as sampled), extend the trajectory's segment or start
a new one, sample token-in/token-out, parse the tool calls, record the turn, answer.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import threading
from pathlib import Path
from typing import Any

import numpy as np

from simenv.parsing import REPLACEMENT
from simenv.rollouts.store import EpisodeStore
from simenv.server.gateway.chat import ChatRequest, completion_body, finish, parse_request
from simenv.server.gateway.errors import Invalid, NotFound, Throttled
from simenv.server.gateway.policy import Params, Policy
from simenv.server.gateway.sigv4 import AwsCredentials
from simenv.server.gateway.trajectories import Limits, Trajectory, TrajectoryStore
from simenv.types import Episode

__all__ = ["Gateway"]

JOB_ARN = (
    r"arn:aws[a-z\-]*:sagemaker:[a-z0-9\-]*:[0-9]{12}:job/[a-zA-Z0-9_\-]+/"
    r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}"
)
"""The service model's pattern of ``X-Amzn-SageMaker-Job-Arn``."""


_SURROGATE = re.compile("[\ud800-\udfff]")


class Gateway:
    """A policy behind trajectories, with the controls a trainer needs.

    Args:
        policy: The policy that answers (renders, samples, parses).
        admin_key: The admin plane's bearer key (default: a random one, see ``admin_key``).
        aws: The credentials job-runtime requests must be signed with (default: random ones).
        job_arn: When set, job-runtime calls naming another job are 404.
        limits: Default limits of a trajectory created without its own.
        max_live: Most trajectories held at once (402 beyond).
        out: A JSONL file that gets each trajectory's episode when it is rewarded or failed.
        seed: Seeds each trajectory's sampling generator (with its id).
    """

    def __init__(
        self,
        policy: Policy,
        *,
        admin_key: str | None = None,
        aws: AwsCredentials | None = None,
        job_arn: str | None = None,
        limits: Limits | None = None,
        max_live: int = 4096,
        out: str | Path | None = None,
        seed: int = 0,
    ) -> None:
        self.policy = policy
        self.admin_key = admin_key or f"sk-admin-{secrets.token_urlsafe(24)}"
        self.aws = aws or AwsCredentials(
            f"AKIA{secrets.token_hex(8).upper()}", secrets.token_urlsafe(30)
        )
        self.job_arn = job_arn
        self.limits = limits or Limits()
        self.store = TrajectoryStore(max_live)
        self.seed = seed
        self.policy_version: int | str = 0
        self._out = EpisodeStore(out, resume=True) if out is not None else None
        self._out_lock = threading.Lock()
        self._paused = False
        self.generated_credentials = admin_key is None or aws is None
        self._in_flight = 0
        self._cv = threading.Condition()

    # ----------------------------------------------------------------- control plane
    def create(self, **fields: Any) -> tuple[Trajectory, str]:
        """A new trajectory (see :meth:`TrajectoryStore.create`) with the default limits."""
        fields.setdefault("limits", self.limits)
        return self.store.create(**fields)

    def pause(self) -> None:
        """New sampling calls get 429 (with ``Retry-After``); in-flight ones finish."""
        with self._cv:
            self._paused = True

    def resume(self) -> None:
        """Sample again."""
        with self._cv:
            self._paused = False

    @property
    def paused(self) -> bool:
        """Whether sampling is paused."""
        return self._paused

    @property
    def in_flight(self) -> int:
        """Sampling calls running now."""
        return self._in_flight

    def wait_idle(self, timeout_s: float) -> bool:
        """Wait until no sampling call runs (after :meth:`pause`); False on timeout."""
        with self._cv:
            return self._cv.wait_for(lambda: self._in_flight == 0, timeout_s)

    def set_policy_version(self, version: int | str) -> None:
        """Tag turns sampled from now on with ``version`` (after swapping weights)."""
        self.policy_version = version

    def take(self, limit: int | None = None) -> list[Episode]:
        """Rewarded and failed trajectories as episodes; they become consumed."""
        return self.store.take(limit, self.describe())

    def describe(self) -> dict[str, Any]:
        """The policy's description, for episode records."""
        return {"model": self.policy.name}

    # ----------------------------------------------------------------- agent plane
    def check_job(self, job_arn: str | None) -> None:
        """Refuse a missing or malformed job ARN (400), or another job's (404)."""
        if not job_arn or len(job_arn) > 256 or re.fullmatch(JOB_ARN, job_arn) is None:
            raise Invalid(
                "X-Amzn-SageMaker-Job-Arn must be a SageMaker job ARN "
                "(arn:aws:sagemaker:REGION:ACCOUNT:job/TYPE/NAME)"
            )
        if self.job_arn is not None and job_arn != self.job_arn:
            raise NotFound(f"Job {job_arn} was not found on this gateway.")

    def sample(self, trajectory: Trajectory, body: Any) -> tuple[ChatRequest, dict[str, Any]]:
        """One turn: the checked request and the ``chat.completion`` answer."""
        request = parse_request(body)
        with self._cv:
            if self._paused:
                raise Throttled("Sampling is paused while the policy is updated.", retry_after_s=1)
            self._in_flight += 1
        try:
            with trajectory.lock:
                return request, self._turn(trajectory, request)
        finally:
            with self._cv:
                self._in_flight -= 1
                self._cv.notify_all()

    def _turn(self, trajectory: Trajectory, request: ChatRequest) -> dict[str, Any]:
        self.store.check_open(trajectory)
        policy = self.policy
        tools = request.tools if request.tool_choice != "none" else None
        messages = trajectory.substitute(request.messages)
        try:
            rendered = policy.render(messages, tools)
        except Exception as exc:  # the template refused these messages (jinja raised)
            raise Invalid(f"the chat template cannot render these messages: {exc}") from None
        rendered = _SURROGATE.sub(REPLACEMENT, rendered)  # not UTF-8: no tokenizer takes it
        segment, prompt = trajectory.prompt(rendered, policy.encode)
        limit = trajectory.limits.max_context_tokens or policy.max_context_tokens
        if len(prompt) >= limit:
            raise Invalid(
                f"the prompt has {len(prompt)} tokens; this trajectory's context limit is {limit}"
            )
        params = self._params(trajectory, request, limit - len(prompt))
        rng = self._rng(trajectory, request)
        sampled = policy.sampler.sample([prompt], params, [rng])[0]
        done = finish(policy, sampled, request, self.policy_version)
        turn = trajectory.record(
            segment, prompt, rendered, done, dict(request.raw), request.messages
        )
        turn.request["sampling"] = {
            "temperature": params.temperature,
            "top_p": params.top_p,
            "max_tokens": params.max_tokens,
        }
        call_id = f"chatcmpl-{trajectory.id}-{len(trajectory.turns)}"
        return completion_body(policy, request, done, prompt, call_id)

    def _params(self, trajectory: Trajectory, request: ChatRequest, room: int) -> Params:
        """The trajectory's sampling, else the request's, else the policy's defaults."""
        fixed, policy = trajectory.sampling, self.policy
        max_tokens = request.max_tokens or int(fixed.get("max_tokens", policy.max_tokens))
        if "max_tokens" in fixed:
            max_tokens = min(max_tokens, int(fixed["max_tokens"]))
        temperature = request.temperature if request.temperature is not None else policy.temperature
        top_p = request.top_p if request.top_p is not None else policy.top_p
        return Params(
            temperature=float(fixed.get("temperature", temperature)),
            top_p=float(fixed.get("top_p", top_p)),
            max_tokens=max(1, min(max_tokens, room)),
        )

    def _rng(self, trajectory: Trajectory, request: ChatRequest) -> np.random.Generator:
        if request.seed is not None:
            return np.random.default_rng([request.seed, len(trajectory.turns)])
        if trajectory.rng is None:
            digest = hashlib.sha256(trajectory.id.encode()).digest()
            trajectory.rng = np.random.default_rng([abs(self.seed), *digest[:8]])
        rng: np.random.Generator = trajectory.rng
        return rng

    def complete(self, trajectory_id: str, status: str, client_token: str | None) -> None:
        """``CompleteRollout``; a failed trajectory's episode is written at once."""
        before = self.store.get(trajectory_id).state
        self.store.complete(trajectory_id, status, client_token)
        if status == "failed" and before == "open":
            self._write(trajectory_id)

    def reward(self, trajectory_id: str, rewards: list[float], client_token: str | None) -> None:
        """``UpdateReward``; the episode is written (when an ``out`` file is set)."""
        before = self.store.get(trajectory_id).state
        self.store.reward(trajectory_id, rewards, client_token)
        if before != "rewarded":
            self._write(trajectory_id)

    def _write(self, trajectory_id: str) -> None:
        if self._out is None:
            return
        trajectory = self.store.get(trajectory_id)
        with trajectory.lock:
            episode = trajectory.episode(self.describe())
        with self._out_lock:
            self._out.write(episode)

    def close(self) -> None:
        """Close the episode file."""
        if self._out is not None:
            self._out.close()
