"""Re-record a scenario's cassettes from the live tools, and report what they cover.

Both work by playing the scenario's oracle on every task, which exercises exactly the calls a
solved episode needs:

- :func:`record_scenario` opens a recording session on every cassette the scenario's tools
  declare (``replay=``), and its LLM user's, switches all of them to ``record`` and plays the
  oracle: each distinct call goes to the live tool once, and each cassette is rewritten once
  at the end (only if every episode ran). This is ``simenv record ID``.
- :func:`coverage` reads the cassette files again, plays the oracle in strict ``replay`` mode
  and lists the calls that found
  nothing recorded (*missing*: a replayed episode would fail) and the recorded entries no call
  used (*unused*: candidates for pruning, or tasks that lost their data). This is what
  ``simenv check`` reports as ``replay``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field

from simenv.errors import InfraError, ScenarioError
from simenv.registration import make
from simenv.rollouts.policies.scripted import Oracle
from simenv.rollouts.runner import rollout
from simenv.scenario import SCORE_TOL, Scenario
from simenv.tools.replay import Recording, replay_mode
from simenv.types import Task

__all__ = [
    "CoverageReport",
    "MissingCall",
    "RecordReport",
    "cassettes",
    "coverage",
    "record_scenario",
]


def cassettes(scenario: Scenario) -> list[Recording]:
    """The distinct cassettes the scenario's tools are replayed from, in tool order.

    Then the user's, when the scenario's ``user`` factory declares one as ``replay`` (an LLM
    user: :class:`simenv.users.LLMUserFactory`), recorded and covered like a tool's.
    """
    out: list[Recording] = []
    for tool in [*scenario.tools, scenario.user]:
        cassette = getattr(tool, "replay", None)
        if isinstance(cassette, Recording) and all(cassette is not c for c in out):
            out.append(cassette)
    return out


@dataclass(frozen=True)
class RecordReport:
    """What :func:`record_scenario` did.

    Attributes:
        scenario_id: The scenario.
        entries: Cassette path -> number of recorded entries now in it.
        episodes: Oracle episodes played.
        unsolved: Task ids whose oracle episode did not earn the reward ceiling while recording
            (the live service answered differently from what the oracle expects).
    """

    scenario_id: str
    entries: dict[str, int]
    episodes: int
    unsolved: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """A few lines for the terminal."""
        lines = [f"{self.scenario_id}: {self.episodes} oracle episodes recorded"]
        lines += [f"  {path}: {n} entries" for path, n in self.entries.items()]
        if self.unsolved:
            shown = ", ".join(self.unsolved[:10])
            lines.append(f"  the oracle did not solve {len(self.unsolved)} tasks: {shown}")
        return "\n".join(lines)


@dataclass(frozen=True)
class MissingCall:
    """An oracle call that found nothing recorded.

    Attributes:
        task_id: The task whose oracle made it.
        tool: The tool called.
        key: The key looked up (``tool({...})`` or ``GET /path``).
    """

    task_id: str
    tool: str
    key: str


@dataclass(frozen=True)
class CoverageReport:
    """How well a scenario's cassettes cover its oracle.

    Attributes:
        scenario_id: The scenario.
        missing: Oracle calls with nothing recorded, in the order they were made.
        unused: ``(cassette path, key)`` of recorded entries no oracle call used.
        used: Number of distinct recorded entries the oracle used.
        recorded: Number of recorded entries in all the cassettes.
    """

    scenario_id: str
    missing: list[MissingCall]
    unused: list[tuple[str, str]]
    used: int
    recorded: int

    @property
    def complete(self) -> bool:
        """Whether every oracle call is recorded."""
        return not self.missing

    def summary(self, limit: int = 20) -> str:
        """A readable report: counts, then the missing and unused entries (at most ``limit``)."""
        lines = [
            f"{self.scenario_id}: {self.used} of {self.recorded} recorded entries used by the "
            f"oracle, {len(self.missing)} oracle calls missing, {len(self.unused)} entries unused"
        ]
        if self.missing:
            lines.append("missing (re-record with `simenv record ID`):")
            lines += [f"  {m.key}  (tool {m.tool}, task {m.task_id})" for m in self.missing[:limit]]
        if self.unused:
            lines.append("unused:")
            lines += [f"  {key}  ({path})" for path, key in self.unused[:limit]]
        for kind, items in (("missing", self.missing), ("unused", self.unused)):
            if len(items) > limit:
                lines.append(f"  ... and {len(items) - limit} more {kind}")
        return "\n".join(lines)


def _prepare(scenario: Scenario, what: str) -> list[Recording]:
    found = cassettes(scenario)
    if not found:
        raise ScenarioError(
            f"scenario {scenario.id!r} has no replayed tool to {what}; declare "
            "`@tool(effect='read', replay=Cassette(...))` on the tools to record"
        )
    if scenario.oracle is None:
        raise ScenarioError(
            f"scenario {scenario.id!r} has no oracle, which is what plays the calls to {what}; "
            "give Scenario(oracle=...)"
        )
    return found


def record_scenario(
    scenario: Scenario,
    *,
    tasks: Iterable[Task] | None = None,
    seeds: Sequence[int] = (0,),
    fresh: bool = True,
) -> RecordReport:
    """Re-record every cassette of ``scenario`` from its live tools by playing the oracle.

    Args:
        scenario: The scenario (its replayed tools must be able to reach their live service;
            an ``HttpCassette`` with ``live=`` starts its own).
        tasks: The tasks to play (default: all).
        seeds: Episode seeds to play each task with.
        fresh: Start each cassette empty, so entries the oracle no longer uses are dropped.
            ``False`` keeps them and refreshes what the oracle calls.

    Raises:
        ScenarioError: No replayed tool or no oracle.
        InfraError: A live call failed; the cassettes are left as they were.
    """
    found = _prepare(scenario, "record")
    env = make(scenario)
    episodes, unsolved = 0, []
    try:
        with ExitStack() as stack:
            for cassette in found:
                stack.enter_context(cassette.recording(fresh=fresh))
            stack.enter_context(replay_mode("record"))
            for task in tasks if tasks is not None else scenario.tasks:
                for seed in seeds:
                    episode = rollout(env, Oracle(), seed=seed, task_id=task.id)
                    episodes += 1
                    if not episode.valid:
                        raise InfraError(
                            f"recording {scenario.id!r} stopped at task {task.id!r}: the episode "
                            f"failed ({episode.error}); the cassettes were left as they were"
                        )
                    short = episode.reward < scenario.reward_ceiling - SCORE_TOL
                    if short and task.id not in unsolved:
                        unsolved.append(task.id)
    finally:
        env.close()
    entries = {str(c.path): len(c.keys()) for c in found}
    return RecordReport(scenario.id, entries, episodes, unsolved)


def coverage(
    scenario: Scenario, *, tasks: Iterable[Task] | None = None, seeds: Sequence[int] = (0,)
) -> CoverageReport:
    """Play the oracle in strict replay and report missing and unused cassette entries.

    Args:
        scenario: The scenario.
        tasks: The tasks to play (default: all). With a subset, entries only other tasks use
            are reported unused.
        seeds: Episode seeds to play each task with.

    Raises:
        ScenarioError: No replayed tool, no oracle, or a cassette file that does not exist.
    """
    found = _prepare(scenario, "cover")
    missing: list[MissingCall] = []
    env = make(scenario)
    try:
        with ExitStack() as stack:
            for cassette in found:
                cassette.reload()  # report what the files hold, not what memory remembers
            usages = [stack.enter_context(c.tracking()) for c in found]
            stack.enter_context(replay_mode("replay"))
            recorded = {id(c): c.keys() for c in found}  # also fails early on a missing file
            for task in tasks if tasks is not None else scenario.tasks:
                for seed in seeds:
                    seen = [len(u.misses) for u in usages]
                    rollout(env, Oracle(), seed=seed, task_id=task.id)
                    for usage, before in zip(usages, seen, strict=True):
                        missing += [
                            MissingCall(task.id, m.tool, m.key) for m in usage.misses[before:]
                        ]
    finally:
        env.close()
    unused, used, total = [], 0, 0
    for cassette, usage in zip(found, usages, strict=True):
        keys = recorded[id(cassette)]
        total += len(keys)
        for key in keys:
            if key in usage.hits:
                used += 1
            else:
                unused.append((str(cassette.path), key))
    return CoverageReport(scenario.id, missing, unused, used, total)
