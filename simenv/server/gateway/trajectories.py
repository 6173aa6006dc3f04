r"""Trajectories: the turns an outside agent's model calls produced, recorded token for token.

A trajectory moves through four states, and every call on it is checked against them::

    open --CompleteRollout--> completed (ready | failed) --UpdateReward--> rewarded
                                          \______________________________--take()--> consumed

- ``open``: ``Sample`` records turns, up to ``max_turns`` (then 429).
- ``completed``: the agent said it is done; ``ready`` ones are trained on once rewarded, and
  ``failed`` ones never (their episode is ``valid = False``). Sampling it again is 409.
- ``rewarded``: ``Rewards`` held one value per turn, or one for the whole trajectory (on its
  last turn). Rewarding an open trajectory is 409; the wrong number of rewards is 400.
- ``consumed``: :meth:`TrajectoryStore.take` handed its episode to the trainer.

``CompleteRollout`` and ``UpdateReward`` are idempotent by ``ClientToken``: the same token with
the same arguments answers 200 again and changes nothing; another token, or the same one with
other arguments, is 409.

**Segments.** Each turn's prompt is rendered from the request's messages. When that rendering
extends the text of the current segment (the previous prompt, then the completion as sampled),
the turn's prompt is the segment's tokens plus the tokens of only the new text, and the segment
grows by them and the completion: one training sequence, in which only completions are
trained on. When it does not (the agent rewrote or dropped history), a new segment starts from
the full rendering. A segment keeps its tokens once and each turn keeps offsets into it, so the
memory of a trajectory grows with its tokens, not with its turns squared; the request of each
turn is kept without the messages that the previous request already held.
"""

from __future__ import annotations

import json
import math
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from simenv.server.gateway.compare import same
from simenv.server.gateway.errors import Conflict, Denied, Invalid, NotFound, Quota, Throttled
from simenv.types import Episode, Message, Step, ToolCall, ToolResult

__all__ = ["Limits", "Segment", "Trajectory", "TrajectoryStore", "Turn"]

STATES = ("open", "completed", "rewarded", "consumed")


@dataclass(frozen=True, slots=True)
class Limits:
    """What one trajectory may use.

    Attributes:
        max_turns: Most sampled turns; the next ``Sample`` is 429.
        max_context_tokens: Longest prompt + completion, in tokens (``None``: the policy's).
    """

    max_turns: int = 64
    max_context_tokens: int | None = None

    def __post_init__(self) -> None:
        if self.max_turns < 1:
            raise ValueError(f"max_turns must be at least 1, got {self.max_turns}")
        if self.max_context_tokens is not None and self.max_context_tokens < 2:
            raise ValueError("max_context_tokens must be at least 2 (or None)")


@dataclass(slots=True)
class Segment:
    """One training sequence: the tokens of consecutive turns whose prompts extend each other.

    Attributes:
        tokens: Every prompt token and completion token of the segment, once.
        text: The text the tokens stand for: the last prompt's rendering, then the completion.
    """

    tokens: list[int] = field(default_factory=list)
    text: str = ""


@dataclass(slots=True)
class Turn:
    """One sampled model call.

    Attributes:
        segment: Index of the segment it belongs to.
        prompt_end: Its prompt is ``segment.tokens[:prompt_end]``.
        completion_end: Its completion is ``segment.tokens[prompt_end:completion_end]``.
        logprobs: Sampling logprob of each completion token.
        finish_reason: ``stop``, ``length`` or ``tool_calls``.
        policy_version: The policy version that sampled it.
        request: The request, without the messages the previous request already held
            (``messages_from`` says how many it kept).
        response: The assistant message the agent received.
        raw: The completion's text as sampled (what the next prompt must contain).
    """

    segment: int
    prompt_end: int
    completion_end: int
    logprobs: list[float]
    finish_reason: str
    policy_version: int | str
    request: dict[str, Any]
    response: Message
    raw: str


@dataclass(slots=True)
class Trajectory:
    """One outside agent's rollout, as the gateway records it (see the module docstring)."""

    id: str
    secret: str
    limits: Limits
    sampling: dict[str, Any]
    group: int | None = None
    scenario_id: str = "gateway/Agent-v1"
    task_id: str = ""
    seed: int = 0
    metadata: dict[str, Any] = field(default_factory=dict)
    state: str = "open"
    status: str | None = None
    created_s: float = field(default_factory=time.time)
    segments: list[Segment] = field(default_factory=list)
    turns: list[Turn] = field(default_factory=list)
    rewards: list[float] | None = None
    tokens: dict[str, tuple[str, Any]] = field(default_factory=dict)
    last_messages: list[Any] = field(default_factory=list)
    by_call_id: dict[str, int] = field(default_factory=dict)
    by_content: dict[str, int] = field(default_factory=dict)
    rng: Any = field(default=None, repr=False)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    # ----------------------------------------------------------------- prompts
    def substitute(self, messages: Sequence[Any]) -> list[Any]:
        """The messages with each assistant turn this gateway answered replaced by its raw text.

        A returned turn is recognised by its first tool call id (fresh for every turn) or, for
        a turn without calls, by its content; the agent's copy may be reformatted (a client
        library's extra fields, arguments re-encoded), the raw text is what was sampled.
        """
        out: list[Any] = []
        for message in messages:
            if isinstance(message, dict) and message.get("role") == "assistant":
                turn = self._returned(message)
                if turn is not None:
                    out.append({"role": "assistant", "content": self.turns[turn].raw})
                    continue
            out.append(message)
        return out

    def _returned(self, message: dict[str, Any]) -> int | None:
        calls = message.get("tool_calls")
        if isinstance(calls, list) and calls and isinstance(calls[0], dict):
            call_id = calls[0].get("id")
            return self.by_call_id.get(call_id) if isinstance(call_id, str) else None
        content = message.get("content")
        return self.by_content.get(content) if isinstance(content, str) else None

    def prompt(self, rendered: str, encode: Callable[[str], list[int]]) -> tuple[int, list[int]]:
        """``(segment index, prompt ids)`` for a prompt whose rendering is ``rendered``.

        The current segment continues when ``rendered`` starts with its text; otherwise the
        returned index is a new segment's (:meth:`record` creates it).
        """
        if self.segments and rendered.startswith(self.segments[-1].text):
            last = self.segments[-1]
            return len(self.segments) - 1, [*last.tokens, *encode(rendered[len(last.text) :])]
        return len(self.segments), encode(rendered)

    def record(
        self,
        segment: int,
        prompt_ids: list[int],
        rendered: str,
        completion: Completed,
        request: dict[str, Any],
        messages: list[Any],
    ) -> Turn:
        """Append one turn (the prompt from :meth:`prompt`, the completion and its answer)."""
        if segment == len(self.segments):
            self.segments.append(Segment())
        seg = self.segments[segment]
        seg.tokens.extend(prompt_ids[len(seg.tokens) :])
        prompt_end = len(seg.tokens)
        seg.tokens.extend(completion.ids)
        seg.text = rendered + completion.raw + completion.end_text
        keep = len(self.last_messages)
        if messages[:keep] != self.last_messages:
            keep = 0
        stored = {k: v for k, v in request.items() if k != "messages"}
        stored["messages"] = messages[keep:]
        stored["messages_from"] = keep
        turn = Turn(
            segment,
            prompt_end,
            len(seg.tokens),
            list(completion.logprobs),
            completion.finish_reason,
            completion.policy_version,
            stored,
            completion.message,
            completion.raw,
        )
        index = len(self.turns)
        self.turns.append(turn)
        self.last_messages = list(messages)
        calls = completion.message.get("tool_calls")
        if calls:
            self.by_call_id[calls[0]["id"]] = index
        else:
            self.by_content[str(completion.message.get("content") or "")] = index
        return turn

    # ----------------------------------------------------------------- reading
    def turn_ids(self, k: int) -> tuple[list[int], list[int]]:
        """``(prompt ids, completion ids)`` of turn ``k``."""
        turn = self.turns[k]
        tokens = self.segments[turn.segment].tokens
        return tokens[: turn.prompt_end], tokens[turn.prompt_end : turn.completion_end]

    def summary(self) -> dict[str, Any]:
        """A small JSON-ready description (no token ids)."""
        return {
            "trajectory_id": self.id,
            "state": self.state,
            "status": self.status,
            "group": self.group,
            "turns": len(self.turns),
            "segments": len(self.segments),
            "tokens": sum(len(s.tokens) for s in self.segments),
            "rewards": self.rewards,
            "max_turns": self.limits.max_turns,
            "max_context_tokens": self.limits.max_context_tokens,
            "sampling": self.sampling,
        }

    def episode(self, policy: dict[str, Any] | None = None) -> Episode:
        """The trajectory as an ordinary :class:`~simenv.types.Episode`.

        ``metadata["turns"]`` holds each turn's full prompt ids, completion ids and logprobs
        (the trainer's input; one list per turn, as the HF policy records them), with its
        finish reason, policy version, segment and request. A ``failed`` trajectory is
        ``valid = False``. Per-turn rewards are the posted ones, or the single reward on the
        last turn.
        """
        rewards = self._turn_rewards()
        steps = []
        turns = []
        for k, turn in enumerate(self.turns):
            prompt, completion = self.turn_ids(k)
            later = self.turns[k + 1].request["messages"] if k + 1 < len(self.turns) else []
            calls, results = _calls_and_results(turn.response, later)
            steps.append(
                Step(
                    turn=k + 1,
                    action=dict(turn.response),
                    tool_calls=calls,
                    tool_results=results,
                    reward=rewards[k],
                )
            )
            turns.append(
                {
                    "prompt_ids": prompt,
                    "completion_ids": completion,
                    "logprobs": list(turn.logprobs),
                    "finish_reason": turn.finish_reason,
                    "policy_version": turn.policy_version,
                    "segment": turn.segment,
                    "request": turn.request,
                }
            )
        ready = self.status == "ready"
        if steps and ready:
            steps[-1].terminated = True
        messages = list(self.last_messages)
        if self.turns:
            messages.append(dict(self.turns[-1].response))
        versions = sorted({str(t.policy_version) for t in self.turns})
        return Episode(
            scenario_id=self.scenario_id,
            task_id=self.task_id or self.id,
            seed=self.seed,
            messages=tuple(messages),
            steps=tuple(steps),
            reward=math.fsum(rewards) if self.turns else math.fsum(self.rewards or ()),
            termination="answer" if ready else "unfinished",
            valid=ready,
            error=None if ready else f"the agent marked trajectory {self.id} as failed",
            episode_id=self.id,
            scenario_version=_version(self.scenario_id),
            policy={"name": "gateway", **(policy or {}), "versions": versions},
            metadata={
                "turns": turns,
                "gateway": {
                    "trajectory_id": self.id,
                    "status": self.status,
                    "segments": len(self.segments),
                    "metadata": self.metadata,
                },
            },
            group=self.group,
        )

    def _turn_rewards(self) -> list[float]:
        n = len(self.turns)
        posted = self.rewards or []
        if len(posted) == n:
            return list(posted)
        out = [0.0] * n
        if posted and n:
            out[-1] = posted[0]
        return out


@dataclass(frozen=True, slots=True)
class Completed:
    """A sampled completion, ready to record (what the policy and the parser produced).

    Attributes:
        ids: Completion token ids (the end-of-turn token included when it stopped there).
        logprobs: One sampling logprob per id.
        raw: The completion's text (without the end-of-turn token).
        end_text: The end-of-turn token's text when it stopped there, else ``""``.
        finish_reason: ``stop``, ``length`` or ``tool_calls``.
        message: The assistant message returned to the agent.
        policy_version: The policy version that sampled it.
    """

    ids: list[int]
    logprobs: list[float]
    raw: str
    end_text: str
    finish_reason: str
    message: Message
    policy_version: int | str


def _calls_and_results(
    response: Message, later: Sequence[Any]
) -> tuple[tuple[ToolCall, ...], tuple[ToolResult, ...]]:
    """A turn's tool calls, and their results as the agent reported them in its next request.

    The agent ran the tools itself: a result is the ``role: "tool"`` message with the call's
    id that the next request added (provenance ``agent``); a call it never answered has none.
    """
    calls = []
    for entry in response.get("tool_calls") or ():
        function = entry.get("function", {})
        try:
            arguments = json.loads(function.get("arguments") or "{}")
        except ValueError:
            arguments = {}
        calls.append(
            ToolCall(
                entry["id"],
                str(function.get("name", "")),
                arguments if isinstance(arguments, dict) else {},
            )
        )
    answered = {
        m.get("tool_call_id"): m for m in later if isinstance(m, dict) and m.get("role") == "tool"
    }
    results = tuple(
        ToolResult(c.id, c.name, str(answered[c.id].get("content", "")), provenance="agent")
        for c in calls
        if c.id in answered
    )
    return tuple(calls), results


def _version(scenario_id: str) -> int:
    tail = scenario_id.rpartition("-v")[2]
    return int(tail) if tail.isdigit() else 0


class TrajectoryStore:
    """The live trajectories of one gateway, by id; every method is thread-safe.

    Args:
        max_live: Most trajectories held (not yet consumed or dropped); creating one more is
            402 ``ServiceQuotaExceededException``.
    """

    def __init__(self, max_live: int = 4096) -> None:
        self.max_live = max_live
        self._lock = threading.Lock()
        self._items: dict[str, Trajectory] = {}

    def __len__(self) -> int:
        return len(self._items)

    def create(
        self,
        *,
        limits: Limits | None = None,
        sampling: dict[str, Any] | None = None,
        group: int | None = None,
        scenario_id: str | None = None,
        task_id: str = "",
        seed: int = 0,
        metadata: dict[str, Any] | None = None,
        trajectory_id: str | None = None,
    ) -> tuple[Trajectory, str]:
        """A new open trajectory and its agent key (``"<id>.<secret>"``)."""
        with self._lock:
            if len(self._items) >= self.max_live:
                raise Quota(
                    f"{len(self._items)} trajectories are live (the most this gateway holds); "
                    "consume or drop some first"
                )
            tid = trajectory_id or f"traj-{secrets.token_hex(8)}"
            if tid in self._items:
                raise Conflict(f"trajectory {tid} already exists")
            trajectory = Trajectory(
                id=tid,
                secret=secrets.token_urlsafe(24),
                limits=limits or Limits(),
                sampling=dict(sampling or {}),
                group=group,
                scenario_id=scenario_id or "gateway/Agent-v1",
                task_id=task_id,
                seed=seed,
                metadata=dict(metadata or {}),
            )
            self._items[tid] = trajectory
        return trajectory, f"{tid}.{trajectory.secret}"

    def get(self, trajectory_id: str) -> Trajectory:
        """The trajectory, or 404."""
        found = self._items.get(trajectory_id)
        if found is None:
            raise NotFound(f"Trajectory {trajectory_id[:256]!r} was not found.")
        return found

    def by_key(self, key: str) -> Trajectory:
        """The trajectory whose agent key is ``key`` (constant-time comparison), or 403."""
        tid, _, secret = key.rpartition(".")
        found = self._items.get(tid)
        if found is None or not same(found.secret, secret):
            raise Denied("the key is not a trajectory key of this gateway")
        return found

    def ids(self, state: str | None = None) -> list[str]:
        """Ids of the held trajectories (in one state, when given), oldest first."""
        with self._lock:
            items = list(self._items.values())
        return [t.id for t in items if state is None or t.state == state]

    def drop(self, trajectory_id: str) -> None:
        """Forget a trajectory (404 when unknown)."""
        with self._lock:
            if self._items.pop(trajectory_id, None) is None:
                raise NotFound(f"Trajectory {trajectory_id[:256]!r} was not found.")

    # ----------------------------------------------------------------- the agent's calls
    def check_open(self, trajectory: Trajectory) -> None:
        """Refuse sampling on a trajectory that is not open (409) or at its turn cap (429)."""
        if trajectory.state != "open":
            raise Conflict(
                f"Trajectory {trajectory.id} is already completed (state {trajectory.state}); "
                "start a new trajectory to sample again."
            )
        if len(trajectory.turns) >= trajectory.limits.max_turns:
            raise Throttled(
                f"Trajectory {trajectory.id} reached its turn cap ({trajectory.limits.max_turns} "
                "turns); complete it with CompleteRollout."
            )

    def complete(self, trajectory_id: str, status: str, client_token: str | None) -> None:
        """``CompleteRollout``: open -> completed (``ready`` or ``failed``)."""
        if status not in ("ready", "failed"):
            raise Invalid(f"Status must be 'ready' or 'failed', got {str(status)[:64]!r}")
        trajectory = self.get(trajectory_id)
        with trajectory.lock:
            if self._replayed(trajectory, "complete", client_token, status):
                return
            if trajectory.state != "open":
                raise Conflict(
                    f"Trajectory {trajectory.id} is already completed "
                    f"(status {trajectory.status}, state {trajectory.state})."
                )
            trajectory.state, trajectory.status = "completed", status
            trajectory.tokens["complete"] = (client_token or "", status)

    def reward(
        self, trajectory_id: str, rewards: Sequence[float], client_token: str | None
    ) -> None:
        """``UpdateReward``: completed -> rewarded; one reward per turn, or one."""
        trajectory = self.get(trajectory_id)
        values = list(rewards)
        if not all(math.isfinite(v) for v in values):
            raise Invalid("Rewards must be finite numbers (no NaN or infinity)")
        with trajectory.lock:
            if self._replayed(trajectory, "reward", client_token, values):
                return
            if trajectory.state == "open":
                raise Conflict(
                    f"Trajectory {trajectory.id} is not completed; call CompleteRollout before "
                    "UpdateReward."
                )
            if trajectory.state != "completed":
                raise Conflict(f"Trajectory {trajectory.id} is already {trajectory.state}.")
            n = len(trajectory.turns)
            if len(values) not in (1, n):
                raise Invalid(
                    f"Rewards has {len(values)} values, but trajectory {trajectory.id} has {n} "
                    f"turns: give one reward per turn ({n}) or one for the whole trajectory."
                )
            trajectory.rewards = values
            trajectory.state = "rewarded"
            trajectory.tokens["reward"] = (client_token or "", values)

    @staticmethod
    def _replayed(trajectory: Trajectory, what: str, token: str | None, arguments: Any) -> bool:
        """Whether this is a repeat of an applied call (True: answer 200, do nothing)."""
        seen = trajectory.tokens.get(what)
        if not token or seen is None or not seen[0]:
            return False
        if not same(seen[0], token):
            return False
        if seen[1] != arguments:
            raise Conflict(
                f"ClientToken {token[:64]!r} was already used on trajectory {trajectory.id} "
                "with other arguments; use a new ClientToken."
            )
        return True

    # ----------------------------------------------------------------- the trainer's side
    def take(self, limit: int | None = None, policy: dict[str, Any] | None = None) -> list[Episode]:
        """Episodes of rewarded and of failed trajectories, oldest first; they become consumed."""
        with self._lock:
            items = list(self._items.values())
        out: list[Episode] = []
        for trajectory in items:
            if limit is not None and len(out) >= limit:
                break
            with trajectory.lock:
                failed = trajectory.state == "completed" and trajectory.status == "failed"
                if trajectory.state == "rewarded" or failed:
                    out.append(trajectory.episode(policy))
                    trajectory.state = "consumed"
        with self._lock:  # consumed ones are forgotten: memory stays bounded
            for episode in out:
                self._items.pop(episode.episode_id, None)
        return out
