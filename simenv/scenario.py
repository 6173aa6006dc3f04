"""A scenario declares everything about one environment; :class:`Outcome` is what rewards see.

A :class:`Scenario` is one object: id, system prompt, tools, the sandbox type, tasks with
train/eval splits, the reward, an external evaluation, an oracle, the turn limit and, for a
conversation, the user who speaks again after each answer (:class:`User`, one per episode). It
checks itself when built, so a broken definition fails at import with a message naming the
field and the fix, never halfway through a training run.

Reward and evaluation take one argument, an :class:`Outcome`, and are kept apart on purpose: the
reward is what training optimises (an optional turn reward also pays each turn as it is played);
the evaluation is an independent judgement of success (a gold-state comparison, hidden checks)
that should not share the reward's code path. Reports show both, so a policy that games the
reward shows up as high reward with low evaluation.
"""

from __future__ import annotations

import abc
import functools
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from simenv.errors import ScenarioError
from simenv.tools.base import Tool
from simenv.tools.sandbox import Sandbox
from simenv.types import Action, Episode, Message, Step, Task, ToolCall, ToolResult

__all__ = [
    "ID_PATTERN",
    "SCORE_TOL",
    "Example",
    "Outcome",
    "Scenario",
    "User",
    "UserContext",
    "UserFactory",
    "parse_id",
]

SCORE_TOL = 1e-9
"""How far a reward may miss a bound and still count as reaching it: every check that compares a
reward with 1.0, 0.0, ``reward_ceiling`` or ``reward_floor`` allows this much. Rewards are sums
of floats (six fields worth 1/6 each), which can land an ulp off even when summed with
``math.fsum``; a real shortfall is orders of magnitude larger."""

ID_PATTERN = re.compile(
    r"^(?:(?P<namespace>[\w.-]+)/)?(?P<name>[A-Za-z][\w.-]*?)-v(?P<version>\d+)\Z"
)
"""Scenario ids are ``namespace/Name-vN``; bump ``N`` whenever dynamics or reward change."""


def parse_id(scenario_id: str) -> tuple[str | None, str, int]:
    """Split ``namespace/Name-vN`` into (namespace, name, version).

    Raises:
        ScenarioError: The id does not have that shape.
    """
    match = ID_PATTERN.match(scenario_id)
    if not match:
        raise ScenarioError(
            f"scenario id {scenario_id!r} is malformed: use 'namespace/Name-vN', "
            "e.g. 'support/Refunds-v1'"
        )
    return match.group("namespace"), match.group("name"), int(match.group("version"))


@dataclass(frozen=True)
class Outcome:
    """Everything about an episode that a reward or evaluation may look at.

    The reward and the evaluation see the finished episode. A scenario's ``turn_reward`` sees
    the episode so far, right after each turn: ``final`` is then the current state, ``messages``
    and ``steps`` end with the turn just played, and ``termination`` is ``unfinished``.

    Attributes:
        task: The task of the episode (with its hidden ``data``).
        final: The sandbox at the end of the episode, or now for a turn reward (``None``
            without a sandbox).
        messages: The whole conversation (so far, for a turn reward).
        steps: One record per turn (so far, for a turn reward; there the last step's
            ``reward`` is not set yet).
        termination: ``answer``, ``user_end`` (the scenario's user ended the conversation),
            ``finish_tool``, ``max_turns`` or ``time_limit``; always ``unfinished`` for a turn
            reward, even on the turn that ends the episode.
        seed: The episode seed.
    """

    task: Task
    final: Any
    messages: tuple[Message, ...]
    steps: tuple[Step, ...]
    termination: str
    seed: int
    _rebuild_initial: Callable[[], Any] = field(repr=False, compare=False)

    @functools.cached_property
    def initial(self) -> Any:
        """The starting state, rebuilt from the seed on first access (setup is deterministic).

        Rebuilding runs the sandbox's ``setup`` again (closed again after scoring); for a heavy
        sandbox (a container) prefer facts kept in ``task.data`` or on the final state.
        """
        return self._rebuild_initial()

    @property
    def answer(self) -> str:
        """The content of the last assistant message (the agent's final answer)."""
        for message in reversed(self.messages):
            if message.get("role") == "assistant":
                return str(message.get("content") or "")
        return ""

    @property
    def calls(self) -> list[tuple[ToolCall, ToolResult]]:
        """Every tool call of the episode with its result, in order."""
        return [
            (c, r) for s in self.steps for c, r in zip(s.tool_calls, s.tool_results, strict=True)
        ]

    def called(self, name: str, *, ok: bool = True) -> list[dict[str, Any]]:
        """Arguments of every call to tool ``name`` (only successful ones when ``ok``)."""
        return [c.arguments for c, r in self.calls if c.name == name and not (ok and r.is_error)]


@dataclass(frozen=True)
class UserContext:
    """What a :class:`User` sees when the agent has answered (a turn without a tool call).

    Attributes:
        task: The episode's task, hidden ``data`` included (the user's instructions, facts).
        messages: The transcript the agent has seen and written so far, the system message
            included, ending with the agent's answer (a copy: changing it changes nothing).
        answer: The content of that answer, the agent's last assistant turn.
        turn: Assistant turns so far (the answer's included).
        user_turn: User messages sent after the opening one: 0 at the first reply.
        state: The episode's live sandbox, or ``None`` without one. Read it, never change it.
        rng: The user's own generator, seeded from the episode seed and independent of the
            tools' one, so a user's randomness never shifts the state's (and vice versa).
    """

    task: Task
    messages: list[Message]
    answer: str
    turn: int
    user_turn: int
    state: Any
    rng: np.random.Generator


class User(abc.ABC):
    """The fourth participant of an episode: the person the agent talks to.

    One method. When the agent answers without a tool call, the environment asks the
    scenario's user for the next user message: a string continues the conversation (it reaches
    the agent as a ``role: "user"`` message), ``None`` ends it (``termination="user_end"``). A
    user lives for exactly one episode: ``Scenario.user(task, initial_state, rng)`` builds a
    fresh one at every reset, so it may keep what it needs across turns on ``self``. Its
    replies must depend only on the task, the context and its ``rng``: the same seed and the
    same actions give the same conversation. Raise :class:`~simenv.errors.InfraError` when it
    cannot answer for a reason that is not the agent's (an endpoint down, a replay miss): the
    episode ends invalid. The kinds simenv ships are in :mod:`simenv.users`.
    """

    @abc.abstractmethod
    def reply(self, context: UserContext) -> str | None:
        """The next user message, or ``None`` when the user ends the conversation."""


UserFactory = Callable[[Task, Any, np.random.Generator], User]
"""``user(task, initial_state, rng) -> User``: builds the episode's user at reset."""


RewardFn = Callable[[Outcome], float | Mapping[str, float]]
TurnRewardFn = Callable[[Outcome], float]
EvaluateFn = Callable[[Outcome], bool | float]
OracleFn = Callable[[Task, Any], Sequence[Action]]
PromptFn = Callable[[Task, Any], str]
MetricsFn = Callable[["Scenario", Sequence[Episode]], Mapping[str, float]]


@dataclass(frozen=True)
class Example:
    """A worked example for the scenario's spec: a transcript and the reward it earns.

    Attributes:
        title: What the example shows ("golden", "refunds an ineligible order" ...).
        task_id: The task it runs.
        seed: The episode seed.
        actions: The assistant turns, in order.
        reward: The reward the scenario gives it (checked by the test suite).
    """

    title: str
    task_id: str
    seed: int
    actions: tuple[Action, ...]
    reward: float


@dataclass(frozen=True)
class Scenario:
    """The whole declaration of one environment.

    Attributes:
        id: ``namespace/Name-vN``.
        system_prompt: The system message of every episode.
        tools: The tools the agent may call.
        tasks: Every task; each has a ``split`` of ``train`` or ``eval``.
        reward: ``reward(outcome) -> float`` or a mapping of named components whose sum is the
            reward. Called once, when the episode ends: the outcome reward.
        turn_reward: ``turn_reward(outcome) -> float``: what one turn earns, or ``None`` (the
            default: every turn earns 0.0 and the episode earns its outcome reward alone).
            Called by ``step`` after every turn of a valid episode, with the :class:`Outcome`
            of the episode so far (``final`` is the current state, ``steps`` end with that
            turn, ``termination`` is ``unfinished``); it must not change the state. What it
            returns is that turn's reward: ``step`` returns it and ``Step.reward`` records it,
            and on the turn that ends the episode the outcome reward is added to it. So the
            episode's reward is the sum of its turn rewards plus the outcome reward, and
            ``reward_ceiling`` / ``reward_floor`` bound that total. It must return a finite
            number: anything else (nan, inf, a mapping) makes the episode invalid with an
            error naming the scenario, as does an ``InfraError``; any other exception
            propagates, as from ``reward``. With it, ``reward_components`` gain ``turns`` (the
            sum of the turn rewards; no component of ``reward`` may then be named so) and,
            when ``reward`` returns a plain number, ``outcome``, so the components still sum
            to the total.
        evaluate: ``evaluate(outcome) -> bool | float``: independent success judgement in [0, 1].
        sandbox: The :class:`Sandbox` subclass holding per-episode state, if any.
        oracle: ``oracle(task, initial_state) -> [action, ...]``: gold assistant turns, the last
            one being the final answer. Used by the oracle policy and by validation.
        render_prompt: ``render_prompt(task, initial_state) -> str``: the opening user message,
            for tasks whose wording depends on the seeded state (default: ``task.prompt``).
        max_turns: Assistant turns before the episode is truncated.
        finish_tools: Tools whose successful call ends the episode (a ``submit`` tool).
        user: ``user(task, initial_state, rng) -> User``, called once per episode at reset
            (``initial_state`` is the fresh sandbox or ``None``; ``rng`` the user's own
            generator, also given to every :class:`UserContext`), or ``None`` (the default):
            one user message, and the episode ends at the agent's first answer without a tool
            call. With a user, such an answer gets the user's next message instead, and the
            episode ends when the user says nothing more (``None``), a finish tool succeeds, or
            ``max_turns`` is reached. See :mod:`simenv.users`.
        reward_floor: The most a do-nothing agent may earn (checked by ``simenv check``).
        reward_ceiling: The least the oracle must earn (checked by ``simenv check``).
        random_state: Whether different seeds should give different starting states.
        secret_keys: ``task.data`` keys (substrings) holding gold answers, which must never be
            shown to the agent; ``simenv check`` looks for their values in what it sees.
        doc: The spec (usually the module docstring: Description, Tools, Reward ...).
        examples: Worked examples, e.g. one golden and one failing transcript.
        metrics: ``metrics(scenario, episodes) -> {name: number}``: the scenario's own metrics
            of a run (e.g. per-field accuracy), shown by ``simenv eval`` beside the standard
            ones; names are namespaced (``sop/field_accuracy``).
    """

    id: str
    system_prompt: str
    tools: Sequence[Tool]
    tasks: Sequence[Task]
    reward: RewardFn
    evaluate: EvaluateFn
    sandbox: type[Sandbox] | None = None
    oracle: OracleFn | None = None
    render_prompt: PromptFn | None = None
    max_turns: int = 10
    finish_tools: Sequence[str] = ()
    reward_floor: float = 0.0
    reward_ceiling: float = 1.0
    random_state: bool = True
    secret_keys: Sequence[str] = ("answer", "gold", "expected", "solution")
    doc: str = ""
    examples: Sequence[Example] = ()
    metrics: MetricsFn | None = None
    turn_reward: TurnRewardFn | None = None
    user: UserFactory | None = None
    _by_id: dict[str, Task] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        parse_id(self.id)
        object.__setattr__(self, "tools", tuple(self.tools))
        object.__setattr__(self, "tasks", tuple(self.tasks))
        object.__setattr__(self, "finish_tools", tuple(self.finish_tools))
        object.__setattr__(self, "examples", tuple(self.examples))
        where = f"scenario {self.id!r}"
        for t in self.tools:
            if not isinstance(t, Tool):
                raise ScenarioError(
                    f"{where}: tools must be decorated with @simenv.tool, got {t!r}"
                )
        names = [t.name for t in self.tools]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ScenarioError(f"{where}: tool names must be unique; repeated: {dupes}")
        for name in self.finish_tools:
            if name not in names:
                raise ScenarioError(
                    f"{where}: finish_tools names {name!r}, which is not one of its tools {names}"
                )
        if self.sandbox is not None and not (
            isinstance(self.sandbox, type) and issubclass(self.sandbox, Sandbox)
        ):
            raise ScenarioError(
                f"{where}: sandbox must be a Sandbox subclass, got {self.sandbox!r}"
            )
        for t in self.tools:
            for pname, annotation in t.injected.items():
                if annotation is np.random.Generator:
                    continue
                if issubclass(annotation, Sandbox) and (
                    self.sandbox is None or not issubclass(self.sandbox, annotation)
                ):
                    raise ScenarioError(
                        f"{where}: tool {t.name!r} asks for {pname}: {annotation.__name__}, but "
                        f"the scenario's sandbox is {self.sandbox!r}; set sandbox="
                        f"{annotation.__name__}"
                    )
        if not self.tasks:
            raise ScenarioError(f"{where}: has no tasks; give at least one Task")
        by_id: dict[str, Task] = {}
        for task in self.tasks:
            if not isinstance(task, Task):
                raise ScenarioError(f"{where}: tasks must be simenv.Task objects, got {task!r}")
            if task.id in by_id:
                raise ScenarioError(f"{where}: task id {task.id!r} is used twice")
            if task.split not in ("train", "eval"):
                raise ScenarioError(
                    f"{where}: task {task.id!r} has split {task.split!r}; use 'train' or 'eval'"
                )
            by_id[task.id] = task
        object.__setattr__(self, "_by_id", by_id)
        if not callable(self.reward) or not callable(self.evaluate):
            raise ScenarioError(f"{where}: reward and evaluate must be functions of one Outcome")
        if self.turn_reward is not None and not callable(self.turn_reward):
            raise ScenarioError(
                f"{where}: turn_reward must be None or a function of one Outcome returning a "
                f"float, got {self.turn_reward!r}"
            )
        if self.user is not None and (isinstance(self.user, User) or not callable(self.user)):
            raise ScenarioError(
                f"{where}: user must be None or a factory user(task, initial_state, rng) -> User "
                f"called once per episode, got {self.user!r}"
                + (
                    "; pass the class or a function that builds one (e.g. user=ScriptedUser), "
                    "not an instance shared by every episode"
                    if isinstance(self.user, User)
                    else ""
                )
            )
        if self.max_turns < 1:
            raise ScenarioError(f"{where}: max_turns must be at least 1, got {self.max_turns}")
        if self.reward_floor > self.reward_ceiling:
            raise ScenarioError(
                f"{where}: reward_floor {self.reward_floor} is above reward_ceiling "
                f"{self.reward_ceiling}"
            )

    @property
    def version(self) -> int:
        """The ``N`` of ``-vN``."""
        return parse_id(self.id)[2]

    @property
    def summary(self) -> str:
        """First line of the spec."""
        return self.doc.strip().splitlines()[0] if self.doc.strip() else ""

    def task(self, task_id: str) -> Task:
        """The task with this id.

        Raises:
            ScenarioError: No such task (the message lists a few that exist).
        """
        try:
            return self._by_id[task_id]
        except KeyError:
            known = ", ".join(list(self._by_id)[:5])
            raise ScenarioError(
                f"scenario {self.id!r} has no task {task_id!r}; known ids include: {known}"
            ) from None

    def split(self, name: Literal["train", "eval"] | None) -> tuple[Task, ...]:
        """Tasks of one split, or all tasks for ``None``."""
        if name is None:
            return tuple(self.tasks)
        return tuple(t for t in self.tasks if t.split == name)

    def tool_schemas(self) -> list[dict[str, Any]]:
        """OpenAI function-tool declarations of every tool."""
        return [t.schema() for t in self.tools]
