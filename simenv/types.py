"""The data that flows through simenv: tool calls, tool results, steps and episodes.

Messages are plain OpenAI chat dicts (``{"role": ..., "content": ...}``, with ``tool_calls`` on
assistant messages and ``tool_call_id`` on tool messages) so they serialise as they are. The
records here are dataclasses with a JSON round-trip: ``Episode.from_json(e.to_json()) == e``.

``Task`` and ``Episode`` are frozen. ``ToolCall``, ``ToolResult`` and ``Step`` are built on every
turn, so they are plain slotted dataclasses: a frozen one costs three times as much to build
(about 1 µs against 0.3 µs here), which alone would be a tenth of a step's budget. Treat them as
read-only all the same.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

__all__ = [
    "EPISODE_SCHEMA_VERSION",
    "Action",
    "Episode",
    "Message",
    "Provenance",
    "Step",
    "Task",
    "ToolCall",
    "ToolResult",
]

EPISODE_SCHEMA_VERSION = 1
"""Version of the episode record; bumped whenever a field changes meaning or is removed."""

Message = dict[str, Any]
"""An OpenAI chat message: ``role`` in system/user/assistant/tool, ``content`` a string."""

Action = Message | str
"""What a policy gives ``step``: an assistant message dict or the model's raw text."""

Provenance = Literal["sandbox", "live", "replay", "sqlite", "docker", "error"]
"""Where a tool result came from; ``error`` when the call never reached a tool."""

MAX_RECORD_DEPTH = 100
"""Deepest nesting an episode record keeps when it must be repaired to be written; deeper
values are replaced by a note (see :meth:`Episode.to_json`)."""

_DUMPS = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_SURROGATE = re.compile("[\ud800-\udfff]")


def _sanitise(value: Any, depth: int, counter: list[int]) -> Any:
    r"""A JSON-ready copy of ``value`` that can be written as UTF-8.

    ``counter[0]`` counts the values replaced. Lone surrogates (from a JSON escape such as
    ``"\ud83d"``, or a ``surrogateescape``-decoded
    file name that is not UTF-8) become U+FFFD; what JSON cannot hold (an object of another
    type, an integer over Python's 4300-digit limit, nesting past :data:`MAX_RECORD_DEPTH`)
    becomes a short text saying what was there. Dataclasses become dicts of their fields, as
    :func:`dataclasses.asdict` makes them. The recursion is bounded by the depth limit.
    """
    if isinstance(value, str):
        clean, n = _SURROGATE.subn("\ufffd", value)
        counter[0] += n > 0
        return clean
    if value is None or isinstance(value, bool | float):
        return value
    if isinstance(value, int):
        try:
            str(value)
        except ValueError:  # over the int -> str digit limit
            counter[0] += 1
            return f"(an integer of {value.bit_length()} bits)"
        return value
    if depth >= MAX_RECORD_DEPTH:
        counter[0] += 1
        return f"(a value nested more than {MAX_RECORD_DEPTH} levels deep)"
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: _sanitise(getattr(value, f.name), depth + 1, counter)
            for f in dataclasses.fields(value)
        }
    if isinstance(value, dict):
        out: dict[Any, Any] = {}
        for key, item in value.items():
            if not (key is None or isinstance(key, str | int | float | bool)):
                counter[0] += 1
                key = _text(key)
            out[_sanitise(key, depth, counter)] = _sanitise(item, depth + 1, counter)
        return out
    if isinstance(value, list | tuple):
        return [_sanitise(item, depth + 1, counter) for item in value]
    tolist = getattr(value, "tolist", None)  # numpy arrays and scalars, without numpy
    if callable(tolist):
        try:
            return _sanitise(tolist(), depth + 1, counter)
        except Exception:  # fall back to its text below
            pass
    counter[0] += 1
    return _sanitise(_text(value), depth, counter)


def _text(value: Any) -> str:
    try:
        return str(value)
    except Exception:  # a record is written whatever its values do
        return f"(a {type(value).__name__} that cannot be shown as text)"


@dataclass(frozen=True, slots=True)
class Task:
    """One thing the agent is asked to do.

    Attributes:
        id: Unique within its scenario.
        prompt: The user message that opens the episode.
        split: ``"train"`` or ``"eval"`` (held out from training).
        data: Everything the reward, evaluation and oracle need (gold answers, targets ...).
            Never shown to the agent.
    """

    id: str
    prompt: str
    split: Literal["train", "eval"] = "train"
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class ToolCall:
    """One call the agent asked for.

    Attributes:
        id: The call id that the matching tool message carries as ``tool_call_id``.
        name: The tool name as the agent wrote it (may be unknown to the scenario).
        arguments: The decoded arguments (empty when they could not be decoded).
        error: Why the call could not be parsed, or ``None`` for a well-formed call.
    """

    id: str
    name: str
    arguments: dict[str, Any]
    error: str | None = None

    def to_openai(self) -> dict[str, Any]:
        """Render the call as an entry of an OpenAI assistant message's ``tool_calls``."""
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": json.dumps(self.arguments)},
        }


@dataclass(slots=True)
class ToolResult:
    """What a tool call produced, as the agent will read it.

    Attributes:
        tool_call_id: Id of the call this answers.
        name: Tool name.
        content: The text the agent reads (JSON for structured values, or an error message).
        is_error: True when the call failed (bad arguments, unknown tool, ``ToolError``).
        provenance: Which tool pattern served it.
        latency_s: Wall time of the call in seconds.
    """

    tool_call_id: str
    name: str
    content: str
    is_error: bool = False
    provenance: str = "sandbox"
    latency_s: float = 0.0

    def to_message(self) -> Message:
        """The ``role: "tool"`` message that carries this result to the agent."""
        return {
            "role": "tool",
            "tool_call_id": self.tool_call_id,
            "name": self.name,
            "content": self.content,
        }


@dataclass(slots=True)
class Step:
    """One turn of an episode: the agent's action and what the environment answered.

    Attributes:
        turn: 1-based index of the turn.
        action: The assistant message as the env recorded it (raw text is kept in ``content``).
        tool_calls: The calls parsed from the action, malformed ones included.
        tool_results: One result per call, in order.
        reward: The reward returned by ``step`` for this turn: the scenario's turn reward (0.0
            without a ``turn_reward``), plus the outcome reward on the episode's last turn.
        terminated: Whether the episode ended on this turn (the agent's choice, the user's, or
            the environment's failure).
        truncated: Whether the episode was cut off on this turn.
        user_message: The ``role: "user"`` message the scenario's user sent after this turn
            (the agent answered without a tool call and the conversation went on), else
            ``None``. It is also in the episode's ``messages``, right after this turn's.
    """

    turn: int
    action: Message
    tool_calls: tuple[ToolCall, ...] = ()
    tool_results: tuple[ToolResult, ...] = ()
    reward: float = 0.0
    terminated: bool = False
    truncated: bool = False
    user_message: Message | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of this step."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Step:
        """Inverse of :meth:`to_dict`."""
        return cls(
            turn=d["turn"],
            action=d["action"],
            tool_calls=tuple(ToolCall(**c) for c in d.get("tool_calls", ())),
            tool_results=tuple(ToolResult(**r) for r in d.get("tool_results", ())),
            reward=d.get("reward", 0.0),
            terminated=d.get("terminated", False),
            truncated=d.get("truncated", False),
            user_message=d.get("user_message"),
        )


@dataclass(frozen=True, slots=True)
class Episode:
    """The complete record of one episode; one JSON object per line in a JSONL store.

    Attributes:
        scenario_id: Registered id, ``namespace/Name-vN``.
        task_id: Id of the task the episode ran.
        seed: The episode seed; ``reset(seed=seed, options={"task_id": task_id})`` reproduces it.
        messages: The whole conversation, initial messages included.
        steps: One :class:`Step` per turn.
        reward: Total reward: the sum (``math.fsum``) of the per-turn rewards
            (:attr:`turn_rewards`), i.e. the turn rewards plus the outcome reward (an episode
            ended before its first turn has no step, and holds the outcome reward here).
        reward_components: Named parts of the outcome reward (the scenario's ``reward``), when
            it gives them; a scenario with a ``turn_reward`` adds ``turns`` (the sum of the
            turn rewards) and, for an outcome reward without components, ``outcome``, so the
            components sum to ``reward``. Empty for an invalid episode.
        evaluation: The scenario's external judgement of success (separate from the reward).
        termination: Why it ended: ``answer``, ``user_end`` (the user said nothing more),
            ``finish_tool``, ``max_turns``, ``time_limit``
            (the runner's wall-clock limit), ``infra_error``, or ``unfinished``.
        valid: False when the environment failed (``InfraError``); the trainer drops these.
        error: The infrastructure error message when ``valid`` is False.
        episode_id: Deterministic id derived from scenario, task and seed.
        scenario_version: The ``N`` of ``-vN``.
        policy: Free-form description of the policy that produced it.
        metadata: Anything else (sampler token ids, logprobs, timings ...). ``sanitized``,
            when present, counts the values repaired so that the record can be written (see
            :meth:`to_json`); ``job``, from the runner, holds the job's ``key`` and ``sample``.
        group: The group the episode belongs to: the samples of one task started from one
            identical state (task and seed), e.g. a GRPO group; the runner numbers them
            (:attr:`simenv.rollouts.Job.group`). ``None`` for an episode played on its own.
            Records written before the field existed get it from the runner's
            ``metadata["job"]["task_index"]``.
        schema_version: :data:`EPISODE_SCHEMA_VERSION` when written.
    """

    scenario_id: str
    task_id: str
    seed: int
    messages: tuple[Message, ...]
    steps: tuple[Step, ...]
    reward: float
    reward_components: dict[str, float] = field(default_factory=dict)
    evaluation: float | None = None
    termination: str = "unfinished"
    valid: bool = True
    error: str | None = None
    episode_id: str = ""
    scenario_version: int = 0
    policy: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    group: int | None = None
    schema_version: int = EPISODE_SCHEMA_VERSION

    @property
    def turns(self) -> int:
        """Number of turns taken."""
        return len(self.steps)

    @property
    def turn_rewards(self) -> tuple[float, ...]:
        """The reward of each turn as ``step`` returned it: one float per step, in order.

        The last one includes the outcome reward; without a scenario ``turn_reward`` the others
        are 0.0. They sum (``math.fsum``) to :attr:`reward`, exactly.
        """
        return tuple(s.reward for s in self.steps)

    @property
    def success(self) -> bool:
        """Whether the evaluation judged the task done (evaluation >= 1)."""
        return self.evaluation is not None and self.evaluation >= 1.0

    @property
    def tool_errors(self) -> int:
        """Number of tool calls that came back as errors."""
        return sum(r.is_error for s in self.steps for r in s.tool_results)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; ``reward`` sits at the top level."""
        d = asdict(self)
        d["messages"] = list(self.messages)
        return d

    def to_json(self) -> str:
        """One line of JSON (no newline inside), for a JSONL store; always writable as UTF-8.

        An episode holding what cannot be written (a lone surrogate, or a value that is not
        JSON, nested too deep, ...) is written repaired rather than refused: each such
        string's bad characters become U+FFFD and each such value a short text saying what
        was there, and ``metadata["sanitized"]`` counts the values repaired (added to the
        count the environment records for actions it repaired). Then ``from_json`` gives the
        repaired episode, not this one.
        """
        try:
            line = _DUMPS(self.to_dict())
        except (ValueError, TypeError, RecursionError):  # ValueError: also a circular value
            pass
        else:
            if line.isascii() or _SURROGATE.search(line) is None:
                return line
        counter = [0]
        record = _sanitise(self, 0, counter)
        record["metadata"] = metadata = dict(record["metadata"])
        before = metadata.get("sanitized")
        before = before if isinstance(before, int) and not isinstance(before, bool) else 0
        metadata["sanitized"] = before + counter[0]
        return _DUMPS(record)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Episode:
        """Inverse of :meth:`to_dict`; refuses records from a newer schema."""
        version = d.get("schema_version", EPISODE_SCHEMA_VERSION)
        if version > EPISODE_SCHEMA_VERSION:
            raise ValueError(
                f"episode record has schema_version {version}, newer than this simenv "
                f"understands ({EPISODE_SCHEMA_VERSION}); upgrade simenv to read it"
            )
        fields = dict(d)
        if "group" not in fields:  # a record from before the field: the runner's task index
            job = fields.get("metadata", {}).get("job")
            if isinstance(job, dict) and isinstance(job.get("task_index"), int):
                fields["group"] = job["task_index"]
        fields["messages"] = tuple(d.get("messages", ()))
        fields["steps"] = tuple(Step.from_dict(s) for s in d.get("steps", ()))
        return cls(**fields)

    @classmethod
    def from_json(cls, line: str) -> Episode:
        """Parse one JSONL line written by :meth:`to_json`."""
        return cls.from_dict(json.loads(line))
