"""``MultiTurnEnv``: a Gymnasium environment for one scenario; its docstrings are the contract."""

from __future__ import annotations

import hashlib
import math
import numbers
import secrets
import traceback
from collections.abc import Mapping
from dataclasses import replace
from time import perf_counter
from types import MappingProxyType
from typing import Any, Literal

import gymnasium as gym
import numpy as np

from simenv.errors import InfraError, ResetNeeded, ScenarioError, SimenvError, ToolError
from simenv.parsing import parse_action
from simenv.scenario import Outcome, Scenario, User, UserContext
from simenv.spaces import AssistantAction, ChatObservation
from simenv.tools.sandbox import Sandbox
from simenv.types import Action, Episode, Message, Step, Task, ToolCall, ToolResult

__all__ = ["MultiTurnEnv"]

_MAX_SEED = 2**31 - 1
_USER_STREAM = 0x05E2  # the user's generator: seeded by (episode seed, this), apart from tools'
_NOTHING_INJECTED: Mapping[str, Any] = MappingProxyType({})


def _mix(seed: int) -> int:
    """A cheap, well-spread integer hash of the seed (splitmix64's finaliser)."""
    z = (seed + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return z ^ (z >> 31)


class MultiTurnEnv(gym.Env[list[Message], Action]):
    """A multi-turn tool-use environment with exactly Gymnasium's contract.

    One episode = one task of the scenario. The agent sees chat messages and answers with
    assistant turns; each tool call it makes is executed and answered with a ``role: "tool"``
    message. The episode ends when the agent answers without a tool call (or calls one of the
    scenario's ``finish_tools``); the ``TimeLimit`` wrapper truncates it at ``max_turns``.

    A scenario with a ``user`` (:class:`~simenv.scenario.User`, one per episode) is a
    conversation: when the agent answers without a tool call, the user is asked for the next
    message. A message comes back as a ``role: "user"`` message at the end of that step's
    observation and the episode goes on; ``None`` ends it (``termination="user_end"``). A
    finish tool still ends it at once, without asking the user.

    **A turn** is one assistant turn: one call of ``step``, i.e. the agent's message, the
    results of its tool calls and, in a conversation, the user's reply to an answer. That is
    what ``max_turns``, ``info["turn"]``, ``Step.turn`` and the turn rewards count; user
    messages are not turns of their own.

    One seed drives everything random in an episode (task choice, starting state, tool
    randomness, the user's randomness, drawn from a generator of its own): the same seed and
    the same actions give the same transcript, state hash and reward.

    Build it with :func:`simenv.make`, which adds the standard wrappers, or directly as
    ``MultiTurnEnv(scenario)`` (no turn limit).
    """

    metadata: dict[str, Any] = {"render_modes": ["ansi"]}  # noqa: RUF012 - gymnasium's API

    def __init__(
        self,
        scenario: Scenario,
        *,
        split: Literal["train", "eval"] | None = None,
        render_mode: str | None = None,
    ) -> None:
        """Create the environment.

        Args:
            scenario: What to simulate.
            split: Draw tasks from this split only when ``reset`` gets no ``task_id``
                (``None``: all tasks).
            render_mode: ``None`` or ``"ansi"`` (``render()`` returns the transcript as text).
        """
        if render_mode not in (None, "ansi"):
            raise ScenarioError(f"render_mode must be None or 'ansi', not {render_mode!r}")
        self.scenario = scenario
        self.split = split
        self.render_mode = render_mode
        self.observation_space = ChatObservation()
        self.action_space = AssistantAction([t.name for t in scenario.tools])
        self._tools = {t.name: t for t in scenario.tools}
        self._finish = frozenset(scenario.finish_tools)
        self._schemas = scenario.tool_schemas()
        self._tool_list = ", ".join(self._tools) or "(none)"
        self._tasks = scenario.split(split)
        if not self._tasks:
            raise ScenarioError(f"scenario {scenario.id!r} has no tasks in split {split!r}")
        self._plan = {
            t.name: [(p, a is np.random.Generator) for p, a in t.injected.items()]
            for t in scenario.tools
        }
        self._inject: dict[str, dict[str, Any]] = {}
        self._task: Task | None = None
        self._seed = 0
        self._sandbox: Sandbox | None = None
        self._user: User | None = None
        self._user_rng: np.random.Generator | None = None
        self._user_turns = 0  # user messages sent after the opening one
        self._messages: list[Message] = []
        self._steps: list[Step] = []
        self._turn = 0
        self._needs_reset = True
        self._termination = "unfinished"
        self._valid = True
        self._error: str | None = None
        self._unscored: str | None = None  # why scoring the agent's final state failed
        self._reward = 0.0  # the outcome reward (the scenario's ``reward``)
        self._turn_rewards: list[float] = []  # the scenario's ``turn_reward``, one per step
        self._components: dict[str, float] = {}
        self._evaluation: float | None = None
        self._episode_id = ""
        self._sanitized = 0  # strings of the actions whose lone surrogates were replaced

    # ------------------------------------------------------------------ the contract
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[list[Message], dict[str, Any]]:
        """Start an episode.

        Args:
            seed: The episode seed. ``None`` draws one from the environment's generator (itself
                seeded by the last seed given), so a seeded sequence of resets is reproducible.
                The seed actually used is returned in ``info["seed"]``.
            options: ``{"task_id": ...}`` picks the task; otherwise the seed picks one from the
                split.

        Returns:
            ``(observation, info)``. ``observation`` is the list of initial messages (system,
            then user). ``info`` holds ``scenario_id``, ``task_id``, ``seed``, ``episode_id``,
            ``max_turns`` and ``tools`` (the OpenAI tool schemas, shared read-only).
        """
        if seed is None:
            if self._np_random is None:
                seed = secrets.randbelow(_MAX_SEED)
            else:
                seed = int(self._np_random.integers(0, _MAX_SEED))
        elif not isinstance(seed, int | np.integer) or isinstance(seed, bool) or seed < 0:
            raise ScenarioError(f"seed must be a non-negative int or None, got {seed!r}")
        seed = int(seed)
        # The episode's generator is also the env's np_random (Gymnasium's seeding contract):
        # building one generator per reset instead of two keeps resets cheap.
        rng = np.random.Generator(np.random.PCG64(seed))
        self._np_random, self._np_random_seed = rng, seed
        task_id = (options or {}).get("task_id")
        if task_id is not None:
            task = self.scenario.task(str(task_id))
        else:
            task = self._tasks[_mix(seed) % len(self._tasks)]
        self._close_sandbox()
        self._sandbox = self._build_sandbox(task, rng)
        self._inject = {
            name: {p: (rng if is_rng else self._sandbox) for p, is_rng in params}
            for name, params in self._plan.items()
            if params
        }
        self._task, self._seed = task, seed
        self._user, self._user_rng, self._user_turns = None, None, 0
        if self.scenario.user is not None:
            self._user_rng = np.random.Generator(np.random.PCG64([seed, _USER_STREAM]))
            self._user = self._build_user(task, self._user_rng)
        self._episode_id = hashlib.sha1(
            f"{self.scenario.id}|{task.id}|{seed}".encode()
        ).hexdigest()[:16]
        observation: list[Message] = [
            {"role": "system", "content": self.scenario.system_prompt},
            {"role": "user", "content": self._prompt(task)},
        ]
        self._messages = list(observation)
        self._steps = []
        self._turn_rewards = []
        self._sanitized = 0
        self._turn = 0
        self._needs_reset = False
        self._termination = "unfinished"
        self._valid, self._error = True, None
        self._unscored = None
        self._reward, self._components, self._evaluation = 0.0, {}, None
        info = {
            "scenario_id": self.scenario.id,
            "task_id": task.id,
            "seed": seed,
            "episode_id": self._episode_id,
            "max_turns": self.scenario.max_turns,
            "tools": list(self._schemas),
        }
        return observation, info

    def step(self, action: Action) -> tuple[list[Message], float, bool, bool, dict[str, Any]]:
        """Play one assistant turn.

        Args:
            action: An assistant message dict (OpenAI ``tool_calls`` allowed) or the model's raw
                text (Hermes/Qwen ``<tool_call>`` blocks). Malformed calls never raise: each is
                answered with a ``role: "tool"`` error message the agent can read (so is an
                action of another type whose ``str()`` raises, and arguments nested deeper than
                ``simenv.parsing.MAX_ARGUMENT_DEPTH``). Lone surrogates in the action (text
                that cannot be written as UTF-8) are replaced by U+FFFD before any tool sees
                them, and counted in the episode's ``metadata["sanitized"]``.

        Returns:
            ``(observation, reward, terminated, truncated, info)``:

            - ``observation``: only the NEW messages: the assistant turn as recorded, then one
              tool message per call, in order; in a conversation, after an answer without a
              tool call, the user's reply last (``role: "user"``, also ``Step.user_message``).
            - ``reward``: this turn's reward, also recorded as its ``Step.reward``: the
              scenario's ``turn_reward`` of the episode so far (0.0 without one, and on a turn
              where the environment failed), plus, on the turn that ends the episode, the
              scenario's outcome ``reward``. Without a ``turn_reward``: 0.0 until the episode
              ends, then the outcome reward. The rewards of an episode's turns sum to
              ``Episode.reward``.
            - ``terminated``: the agent ended the episode (answered without a tool call, or a
              finish tool succeeded), or, in a conversation, the user ended it (an answer the
              user did not reply to: ``termination="user_end"``), or the environment failed
              (``info["valid"]`` False; a user that raises ``InfraError`` too).
            - ``truncated``: always False here; the ``TimeLimit`` wrapper truncates.
            - ``info``: ``turn``; at the end also ``termination``, ``valid``, ``error``,
              ``evaluation`` and ``reward_components``.

        Raises:
            ResetNeeded: Called before ``reset`` or after the episode ended.
        """
        if self._needs_reset:
            raise ResetNeeded(
                "step() called before reset() or after the episode ended; call reset() first"
            )
        self._turn = turn = self._turn + 1
        parsed = parse_action(action, f"call_{turn}")  # never raises, whatever the action
        self._sanitized += parsed.replaced
        observation: list[Message] = [parsed.message]
        results: list[ToolResult] = []
        finished = False
        try:
            for call in parsed.tool_calls:
                result = self._call(call)
                results.append(result)
                observation.append(
                    {
                        "role": "tool",
                        "tool_call_id": result.tool_call_id,
                        "name": result.name,
                        "content": result.content,
                    }
                )
                if not result.is_error and call.name in self._finish:
                    finished = True
        except InfraError as exc:
            self._valid, self._error = False, str(exc)
            for call in parsed.tool_calls[len(results) :]:
                void = ToolResult(
                    call.id, call.name, "Error: the environment failed.", True, "error"
                )
                results.append(void)
                observation.append(void.to_message())
        self._messages += observation
        self._steps.append(Step(turn, parsed.message, parsed.tool_calls, tuple(results)))
        self._turn_rewards.append(0.0)
        if self._valid and self.scenario.turn_reward is not None:
            self._score_turn(turn)
        info: dict[str, Any] = {"turn": turn}
        if self._valid and not finished and not parsed.tool_calls and self._user is not None:
            reply = self._ask_user(parsed.message)
            if reply is not None:
                self._messages.append(reply)
                observation.append(reply)
                self._steps[-1].user_message = reply
                return observation, self._steps[-1].reward, False, False, info
            if self._valid:
                self.end_episode("user_end")
                info.update(self._end_info())
                return observation, self._steps[-1].reward, True, False, info
        if not self._valid:
            self.end_episode("infra_error")
        elif finished or not parsed.tool_calls:
            self.end_episode("finish_tool" if finished else "answer")
        else:
            return observation, self._steps[-1].reward, False, False, info
        info.update(self._end_info())
        return observation, self._steps[-1].reward, True, False, info

    def end_episode(self, termination: str) -> tuple[float, dict[str, Any]]:
        """End the episode now and score it (used by ``step`` and by ``TimeLimit``).

        The outcome reward is added to the last step's turn reward (``Step.reward``), so the
        step rewards still sum to ``Episode.reward``.

        Returns:
            ``(reward, info)``: the outcome reward (the scenario's ``reward``; 0.0 for an
            invalid episode), which is what the last turn earns on top of its turn reward, and
            the end-of-episode info fields. A :class:`~simenv.errors.ToolError` raised while
            scoring means the agent left a state that cannot be read (e.g. a work dir its
            tools refuse): the episode stays valid, earns 0.0 and evaluates 0.0, and the
            error is kept in the episode's ``metadata["unscored"]``.

        Raises:
            ScenarioError: The scenario has a ``turn_reward`` and its ``reward`` returns a
                component named ``turns`` (the name of the turn rewards' sum).
        """
        self._needs_reset = True
        self._termination = termination
        if self._valid:
            outcome = self.outcome()
            try:
                raw = self.scenario.reward(outcome)
                if isinstance(raw, Mapping):
                    self._components = {str(k): float(v) for k, v in raw.items()}
                    self._reward = math.fsum(self._components.values())  # exact, then rounded
                else:
                    self._reward = float(raw)
                self._evaluation = float(self.scenario.evaluate(outcome))
            except InfraError as exc:  # scoring needs the environment too (a container)
                self._valid, self._error = False, str(exc)
                self._reward, self._components, self._evaluation = 0.0, {}, None
            except ToolError as exc:  # the agent left a state that cannot be read: its fault
                self._unscored = str(exc)
                self._reward, self._components, self._evaluation = 0.0, {}, 0.0
            finally:
                _close_rebuilt(outcome)
            if self._valid and self._unscored is None and self.scenario.turn_reward is not None:
                if not isinstance(raw, Mapping):
                    self._components = {"outcome": self._reward}
                elif "turns" in self._components:
                    raise ScenarioError(
                        f"scenario {self.scenario.id!r}: its reward has a component named "
                        "'turns', the name of the turn rewards' sum in reward_components when "
                        "the scenario has a turn_reward; rename that component"
                    )
                self._components["turns"] = math.fsum(self._turn_rewards)
        if self._steps:
            last = self._reward
            if self.scenario.turn_reward is not None:
                last = self._turn_rewards[-1] + self._reward
            self._steps[-1] = replace(
                self._steps[-1],
                reward=last,
                terminated=termination != "max_turns",
                truncated=termination == "max_turns",
            )
        return self._reward, self._end_info()

    def render(self) -> str | None:
        """The transcript so far as text (``render_mode="ansi"``), else ``None``."""
        if self.render_mode != "ansi":
            return None
        lines = []
        for m in self._messages:
            lines.append(f"[{m['role']}] {m.get('content', '')}")
            for c in m.get("tool_calls") or ():
                lines.append(f"  -> {c['function']['name']}({c['function']['arguments']})")
        return "\n".join(lines)

    def close(self) -> None:
        """Release the episode's resources. Safe to call more than once."""
        self._close_sandbox()
        self._needs_reset = True

    # ------------------------------------------------------------------ records
    @property
    def running(self) -> bool:
        """Whether an episode is in progress (reset, and not ended yet)."""
        return not self._needs_reset

    @property
    def state(self) -> Sandbox | None:
        """The live sandbox of the current episode (``None`` without one)."""
        return self._sandbox

    @property
    def user(self) -> User | None:
        """The user of the current (or last) episode, ``None`` without one (checks read it)."""
        return self._user

    @property
    def task(self) -> Task | None:
        """The task of the current episode."""
        return self._task

    def initial_state(self) -> Sandbox | None:
        """A fresh copy of this episode's starting state, rebuilt from its seed."""
        if self._task is None:
            raise ResetNeeded("no episode yet; call reset() first")
        return self._build_sandbox(self._task, np.random.Generator(np.random.PCG64(self._seed)))

    def gold_turns(self) -> list[Action]:
        """The scenario's oracle turns for this episode, planned from its starting state.

        Before the first step the live state is the starting state; after it, the starting
        state is rebuilt from the seed (and closed again), so the plan never sees the agent's
        changes.

        Raises:
            ResetNeeded: No episode yet.
            ScenarioError: The scenario has no oracle.
        """
        if self._task is None:
            raise ResetNeeded("no episode yet; call reset() first")
        plan = self.scenario.oracle
        if plan is None:
            raise ScenarioError(
                f"scenario {self.scenario.id!r} has no oracle; give Scenario(oracle=...)"
            )
        if not self._steps:
            return list(plan(self._task, self._sandbox))
        start = self.initial_state()
        try:
            return list(plan(self._task, start))
        finally:
            if start is not None:
                start.close()

    def outcome(self) -> Outcome:
        """The current episode as the reward and evaluation see it."""
        if self._task is None:
            raise ResetNeeded("no episode yet; call reset() first")
        return Outcome(
            task=self._task,
            final=self._sandbox,
            messages=tuple(self._messages),
            steps=tuple(self._steps),
            termination=self._termination,
            seed=self._seed,
            _rebuild_initial=self.initial_state,
        )

    def episode(self, policy: dict[str, Any] | None = None) -> Episode:
        """The record of the current (usually finished) episode.

        Its ``reward`` is the ``math.fsum`` of its step rewards (the turn rewards, the last one
        holding the outcome reward too), exactly; an episode ended before its first turn has
        no step to hold the outcome reward, and its ``reward`` is the outcome reward.
        Its ``metadata`` holds ``sanitized`` (how many strings of the actions had lone
        surrogates replaced by U+FFFD) when that is not 0, and ``unscored`` (the
        ``ToolError`` that scoring the agent's final state raised) when there was one.
        """
        if self._task is None:
            raise ResetNeeded("no episode yet; call reset() first")
        steps = tuple(self._steps)
        return Episode(
            scenario_id=self.scenario.id,
            task_id=self._task.id,
            seed=self._seed,
            messages=tuple(self._messages),
            steps=steps,
            reward=math.fsum(s.reward for s in steps) if steps else self._reward,
            reward_components=dict(self._components),
            evaluation=self._evaluation,
            termination=self._termination,
            valid=self._valid,
            error=self._error,
            episode_id=self._episode_id,
            scenario_version=self.scenario.version,
            policy=dict(policy or {}),
            metadata=self._metadata(),
        )

    def _metadata(self) -> dict[str, Any]:
        metadata: dict[str, Any] = {}
        if self._sanitized:
            metadata["sanitized"] = self._sanitized
        if self._unscored is not None:
            metadata["unscored"] = self._unscored
        return metadata

    # ------------------------------------------------------------------ internals
    def _end_info(self) -> dict[str, Any]:
        return {
            "termination": self._termination,
            "valid": self._valid,
            "error": self._error,
            "evaluation": self._evaluation,
            "reward_components": dict(self._components),
        }

    def _score_turn(self, turn: int) -> None:
        """Record the scenario's turn reward of the turn just played on its step.

        An ``InfraError``, or a value that is not a finite number, makes the episode invalid
        (the environment's fault, not the agent's); a ``ToolError`` (the agent's state cannot
        be read) leaves this turn's reward at 0.0; any other exception ends the episode (a
        reset is needed) and propagates, as one from the outcome reward does.
        """
        turn_reward = self.scenario.turn_reward
        assert turn_reward is not None
        outcome = self.outcome()
        try:
            raw = turn_reward(outcome)
        except InfraError as exc:
            self._valid, self._error = False, str(exc)
            return
        except ToolError as exc:  # a state the agent made unreadable: this turn earns 0.0
            self._unscored = str(exc)
            return
        except BaseException:
            self._needs_reset = True
            raise
        finally:
            _close_rebuilt(outcome)
        value = float(raw) if isinstance(raw, numbers.Real) else math.nan
        if not math.isfinite(value):
            self._valid = False
            self._error = (
                f"scenario {self.scenario.id!r}: turn_reward returned {raw!r:.100} on turn "
                f"{turn}; a turn reward must be a finite number. This is a bug in the "
                "scenario, not the agent's fault."
            )
            return
        self._turn_rewards[-1] = value
        self._steps[-1] = replace(self._steps[-1], reward=value)

    def _build_user(self, task: Task, rng: np.random.Generator) -> User:
        factory = self.scenario.user
        assert factory is not None
        user = factory(task, self._sandbox, rng)
        if not isinstance(user, User):
            raise ScenarioError(
                f"scenario {self.scenario.id!r}: its user factory returned {user!r:.100} for "
                f"task {task.id!r}; it must return a simenv.users.User (a subclass with "
                "reply(context) -> str | None)"
            )
        return user

    def _ask_user(self, answer: Message) -> Message | None:
        """The user's reply to the agent's answer as a message, or ``None`` (the end).

        ``InfraError`` makes the episode invalid (``None`` is returned); a ``SimenvError``
        (a wrong scenario, e.g. malformed user turns) propagates and a reset is needed; any
        other exception, or a reply that is neither a string nor ``None``, is a bug in the
        user: an ``InfraError``, with the traceback's last frames.
        """
        assert self._user is not None and self._task is not None and self._user_rng is not None
        context = UserContext(
            task=self._task,
            messages=list(self._messages),
            answer=str(answer.get("content") or ""),
            turn=self._turn,
            user_turn=self._user_turns,
            state=self._sandbox,
            rng=self._user_rng,
        )
        try:
            text = self._user.reply(context)
        except InfraError as exc:
            self._valid, self._error = False, str(exc)
            return None
        except SimenvError:
            self._needs_reset = True
            raise
        except Exception as exc:
            where = traceback.format_exc(limit=-2)
            self._valid = False
            self._error = (
                f"the user of scenario {self.scenario.id!r} ({type(self._user).__name__}) "
                f"raised {type(exc).__name__}: {exc}. This is a bug in the user, not the "
                f"agent's fault.\n{where}"
            )
            return None
        if text is None:
            return None
        if not isinstance(text, str):
            self._valid = False
            self._error = (
                f"the user of scenario {self.scenario.id!r} ({type(self._user).__name__}) "
                f"replied {text!r:.100}; User.reply returns a string (the next message) or "
                "None (the end of the conversation). This is a bug in the user."
            )
            return None
        self._user_turns += 1
        return {"role": "user", "content": text}

    def _build_sandbox(self, task: Task, rng: np.random.Generator) -> Sandbox | None:
        if self.scenario.sandbox is None:
            return None
        sandbox = self.scenario.sandbox()
        sandbox.setup(rng, task)
        return sandbox

    def _prompt(self, task: Task) -> str:
        render = self.scenario.render_prompt
        return task.prompt if render is None else render(task, self._sandbox)

    def _close_sandbox(self) -> None:
        if self._sandbox is not None:
            sandbox, self._sandbox = self._sandbox, None
            sandbox.close()

    def _call(self, call: ToolCall) -> ToolResult:
        if call.error is not None:
            return ToolResult(call.id, call.name, f"Error: {call.error}", True, "error")
        tool = self._tools.get(call.name)
        if tool is None:
            return ToolResult(
                call.id,
                call.name,
                f"Error: unknown tool {call.name[:100]!r}. Available tools: {self._tool_list}.",
                True,
                "error",
            )
        start = perf_counter()
        try:
            result = tool.backend.call(call, self._inject.get(tool.name, _NOTHING_INJECTED))
        except ToolError as exc:
            result = ToolResult(call.id, tool.name, f"Error: {exc}", True, tool.provenance)
        except InfraError:
            raise
        except Exception as exc:
            where = traceback.format_exc(limit=-2)
            raise InfraError(
                f"tool {tool.name!r} raised {type(exc).__name__}: {exc}. This is a bug in the "
                "tool, not the agent's fault: raise simenv.ToolError for agent mistakes.\n"
                f"{where}"
            ) from exc
        if (
            not isinstance(result, ToolResult)
            or result.tool_call_id != call.id
            or result.name != tool.name
        ):
            raise InfraError(
                f"the backend of tool {tool.name!r} answered call {call.id!r} with "
                f"{result!r:.200}; a ToolBackend returns a ToolResult with the call's id and the "
                "tool's name. This is a bug in the backend, not the agent's fault."
            )
        result.latency_s = perf_counter() - start
        return result


def _close_rebuilt(outcome: Outcome) -> None:
    """Close the starting state an outcome rebuilt, if its scorer asked for it."""
    rebuilt = outcome.__dict__.get("initial")
    if isinstance(rebuilt, Sandbox):
        rebuilt.close()
