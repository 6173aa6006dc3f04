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

import json
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
        reward: The reward returned by ``step`` for this turn.
        terminated: Whether the episode ended by the agent's choice on this turn.
        truncated: Whether the episode was cut off on this turn.
    """

    turn: int
    action: Message
    tool_calls: tuple[ToolCall, ...] = ()
    tool_results: tuple[ToolResult, ...] = ()
    reward: float = 0.0
    terminated: bool = False
    truncated: bool = False

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
        reward: Total reward (sum of per-turn rewards).
        reward_components: Named parts of the final reward, when the scenario gives them.
        evaluation: The scenario's external judgement of success (separate from the reward).
        termination: Why it ended: ``answer``, ``finish_tool``, ``max_turns``, ``time_limit``
            (the runner's wall-clock limit), ``infra_error``, or ``unfinished``.
        valid: False when the environment failed (``InfraError``); the trainer drops these.
        error: The infrastructure error message when ``valid`` is False.
        episode_id: Deterministic id derived from scenario, task and seed.
        scenario_version: The ``N`` of ``-vN``.
        policy: Free-form description of the policy that produced it.
        metadata: Anything else (sampler token ids, logprobs, timings ...).
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
    schema_version: int = EPISODE_SCHEMA_VERSION

    @property
    def turns(self) -> int:
        """Number of turns taken."""
        return len(self.steps)

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
        """One line of JSON (no newline inside), for a JSONL store."""
        return json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":"))

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
        fields["messages"] = tuple(d.get("messages", ()))
        fields["steps"] = tuple(Step.from_dict(s) for s in d.get("steps", ()))
        return cls(**fields)

    @classmethod
    def from_json(cls, line: str) -> Episode:
        """Parse one JSONL line written by :meth:`to_json`."""
        return cls.from_dict(json.loads(line))
