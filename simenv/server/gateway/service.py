"""The gateway itself, without HTTP: trajectories, the policy, pausing and the policy version.

:class:`Gateway` is what the HTTP layer (:mod:`simenv.server.gateway.http`) and a trainer in
the same process call. ``sample`` is one turn: render the request's messages (the turns this
gateway answered replaced by their text as sampled), extend the trajectory's segment or start
a new one, force a tool-call prefix when ``tool_choice`` asks for a call, sample
token-in/token-out, parse the tool calls, record the turn, answer. ``sample_stream`` is the
same turn streamed: token by token when the sampler can stream (the HF policy), else
generated whole and then streamed; either way the turn recorded is the one ``sample`` records
for the same generator.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from simenv.parsing import REPLACEMENT
from simenv.rollouts.store import EpisodeStore
from simenv.server.gateway.chat import (
    ChatRequest,
    arguments_schema,
    completion_body,
    finish,
    live_chunks,
    parse_request,
    stream_chunks,
    stream_error,
    stream_head,
    visible_deltas,
)
from simenv.server.gateway.errors import GatewayError, Invalid, NotFound, Throttled
from simenv.server.gateway.policy import Params, Policy, Sampled
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


@dataclass(slots=True)
class _Prepared:
    """A turn ready to sample: its segment, prompt (forced prefix included) and parameters."""

    segment: int
    prompt: list[int]
    rendered: str
    forced: str
    params: Params
    rng: np.random.Generator


class _Stream:
    """The SSE chunks of a live turn; :meth:`close` ends the turn whether or not it was read.

    It holds the trajectory's lock and one in-flight count from the moment the turn started
    until the last chunk is produced or the stream is closed (a client that hangs up).
    """

    def __init__(self, chunks: Iterator[bytes], release: Any) -> None:
        self._chunks, self._release = chunks, release

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield from self._chunks
        finally:
            self.close()

    def close(self) -> None:
        """Stop streaming and end the turn (idempotent)."""
        release, self._release = self._release, None
        if release is not None:
            release()


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
        request = body if isinstance(body, ChatRequest) else parse_request(body)
        self._enter()
        try:
            with trajectory.lock:
                prepared = self._prepare(trajectory, request)
                params, rng = prepared.params, prepared.rng
                sampled = self.policy.sampler.sample([prepared.prompt], params, [rng])[0]
                return request, self._finish(trajectory, request, prepared, sampled)
        finally:
            self._leave()

    def sample_stream(self, trajectory: Trajectory, body: Any) -> tuple[ChatRequest, _Stream]:
        """One turn as server-sent events, token by token when the sampler can stream.

        Errors before the first token (a bad request, a paused gateway, a model that fails at
        once) are raised here, so they are answered with their status; a model that fails
        later ends the stream with an error event, and nothing is recorded. A stream the
        client abandons is not recorded either (the agent never received that turn).
        """
        request = body if isinstance(body, ChatRequest) else parse_request(body)
        stream = getattr(self.policy.sampler, "stream", None)
        if stream is None:
            request, answer = self.sample(trajectory, request)
            return request, _Stream(stream_chunks(answer, request), None)
        self._enter()
        trajectory.lock.acquire()
        tokens: Any = None

        def release() -> None:
            try:
                if tokens is not None:  # an abandoned turn: let its sampling end first (it
                    with contextlib.suppress(GatewayError):  # draws from the trajectory's
                        tokens.result()  # generator, which the next turn uses)
            finally:
                trajectory.lock.release()
                self._leave()

        try:
            prepared = self._prepare(trajectory, request)
            tokens = stream(prepared.prompt, prepared.params, prepared.rng)
            flow = iter(tokens)
            first = next(flow, None)  # waits for the first token, or the model's failure
            if first is None:
                tokens.result()  # no token at all: raises the failure (a 502) when there was one
        except BaseException:
            release()
            raise
        call_id = f"chatcmpl-{trajectory.id}-{len(trajectory.turns) + 1}"
        head = stream_head(call_id, self.policy.name)

        def arrived() -> Iterator[int]:
            if first is not None:
                yield first
            yield from flow

        def finished() -> dict[str, Any]:
            return self._finish(trajectory, request, prepared, tokens.result())

        def chunks() -> Iterator[bytes]:
            deltas = visible_deltas(self.policy, arrived(), prepared.forced, request.stop)
            try:
                yield from live_chunks(head, deltas, finished, request)
            except GatewayError as exc:  # the model failed mid-turn: the headers are sent
                yield from stream_error(head, exc.message)

        return request, _Stream(chunks(), release)

    def _enter(self) -> None:
        with self._cv:
            if self._paused:
                raise Throttled("Sampling is paused while the policy is updated.", retry_after_s=1)
            self._in_flight += 1

    def _leave(self) -> None:
        with self._cv:
            self._in_flight -= 1
            self._cv.notify_all()

    def _prepare(self, trajectory: Trajectory, request: ChatRequest) -> _Prepared:
        self.store.check_open(trajectory)
        policy = self.policy
        tools = request.tools if request.tool_choice != "none" else None
        messages = trajectory.substitute(request.messages)
        try:
            rendered = policy.render(messages, tools)
        except Exception as exc:  # the template refused these messages (jinja raised)
            raise Invalid(f"the chat template cannot render these messages: {exc}") from None
        rendered = _SURROGATE.sub(REPLACEMENT, rendered)  # not UTF-8: no tokenizer takes it
        forced = policy.forced_prefix(request.tool_choice) if tools else ""
        segment, prompt = trajectory.prompt(rendered + forced, policy.encode)
        limit = trajectory.limits.max_context_tokens or policy.max_context_tokens
        if len(prompt) >= limit:
            raise Invalid(
                f"the prompt has {len(prompt)} tokens; this trajectory's context limit is {limit}"
            )
        params = self._params(trajectory, request, limit - len(prompt))
        return _Prepared(segment, prompt, rendered, forced, params, self._rng(trajectory, request))

    def _finish(
        self, trajectory: Trajectory, request: ChatRequest, prepared: _Prepared, sampled: Sampled
    ) -> dict[str, Any]:
        policy, params = self.policy, prepared.params
        done = finish(policy, sampled, request, self.policy_version, prepared.forced)
        turn = trajectory.record(
            prepared.segment, prepared.prompt, prepared.rendered, done, dict(request.raw),
            request.messages,
        )  # fmt: skip
        turn.request["sampling"] = {
            "temperature": params.temperature,
            "top_p": params.top_p,
            "max_tokens": params.max_tokens,
        }
        if prepared.forced:
            turn.request["forced_prefix"] = prepared.forced
        call_id = f"chatcmpl-{trajectory.id}-{len(trajectory.turns)}"
        return completion_body(policy, request, done, prepared.prompt, call_id, sampled.top)

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
            top_logprobs=request.top_logprobs if request.logprobs else 0,
            constraint=arguments_schema(request),
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
