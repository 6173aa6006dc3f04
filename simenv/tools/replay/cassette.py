"""Cassettes: the shared interface (:class:`Recording`), modes, and plain function calls.

:class:`Recording` holds what every kind of cassette shares (the mode, the miss policy,
recording sessions, usage tracking); :class:`Cassette` records plain function calls. The
pattern as a whole is described in :mod:`simenv.tools.replay`.
"""

from __future__ import annotations

import abc
import difflib
import json
import os
import re
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from simenv.errors import InfraError, ScenarioError, ToolError
from simenv.tools.base import Tool, ToolBackend, format_result
from simenv.tools.sandbox import canonical_json, diff_values
from simenv.types import ToolCall, ToolResult

__all__ = [
    "ENV_VAR",
    "MODES",
    "REDACTED",
    "SECRET_FIELD",
    "Cassette",
    "Miss",
    "MissPolicy",
    "Recording",
    "ReplayMode",
    "Replayed",
    "Served",
    "Usage",
    "effective_mode",
    "redact",
    "replay_mode",
]

ReplayMode = Literal["record", "replay", "hybrid"]
MissPolicy = Literal["agent", "infra"]
MODES: tuple[ReplayMode, ...] = ("record", "replay", "hybrid")
ENV_VAR = "SIMENV_REPLAY_MODE"
"""Environment variable that sets the mode of every cassette (below :func:`replay_mode`)."""
REDACTED = "<redacted>"
SECRET_FIELD = re.compile(
    r"(?i)(?<!page_)(?<!next_)(token|secret|password|passwd|api[_-]?key|authorization|"
    r"credential|cookie)"
)
"""Field names whose values never reach a cassette (pagination tokens are kept)."""

_forced: list[ReplayMode] = []  # replay_mode() stack, shared by every thread on purpose


def _check_mode(mode: str, where: str) -> ReplayMode:
    if mode not in MODES:
        raise ScenarioError(f"{where}: replay mode {mode!r} is not one of {', '.join(MODES)}")
    return mode


@contextmanager
def replay_mode(mode: ReplayMode) -> Iterator[None]:
    """Set the mode of every cassette inside the block (wins over ``SIMENV_REPLAY_MODE``).

    It applies to all threads, so a runner's worker threads see it too. Blocks nest.
    """
    _forced.append(_check_mode(mode, "replay_mode()"))
    try:
        yield
    finally:
        _forced.pop()


def effective_mode(declared: ReplayMode) -> ReplayMode:
    """The mode a cassette declared with ``declared`` runs in right now."""
    if _forced:
        return _forced[-1]
    forced = os.environ.get(ENV_VAR)
    if forced:
        return _check_mode(forced, ENV_VAR)
    return declared


@dataclass(frozen=True, slots=True)
class Served:
    """A tool result together with where it came from (``replay`` or ``live``)."""

    value: Any
    provenance: str


class Replayed:
    """The :class:`~simenv.tools.base.ToolBackend` of a replayed tool.

    The tool's ``fn`` is its cassette in front of the live function (:meth:`Recording.wrap`),
    which says where each answer came from; the result carries that provenance.
    """

    __slots__ = ("tool",)

    def __init__(self, tool: Tool) -> None:
        self.tool = tool

    def call(self, call: ToolCall, injected: Mapping[str, Any]) -> ToolResult:
        """Validate the arguments, then answer from the cassette (or live, by the mode)."""
        tool = self.tool
        kwargs = tool.validate(call.arguments)
        if injected:
            kwargs.update(injected)
        served: Served = tool.fn(**kwargs)
        return ToolResult(call.id, tool.name, format_result(served.value), False, served.provenance)


def redact(value: Any, pattern: re.Pattern[str] = SECRET_FIELD) -> Any:
    """A copy of ``value`` with every value under a secret-looking key replaced."""
    if isinstance(value, dict):
        return {
            k: REDACTED if pattern.search(str(k)) else redact(v, pattern) for k, v in value.items()
        }
    if isinstance(value, list):
        return [redact(v, pattern) for v in value]
    return value


@dataclass(frozen=True, slots=True)
class Miss:
    """A call that found nothing recorded.

    Attributes:
        tool: The tool that made the call.
        key: The key that was looked up (the cassette's display form).
    """

    tool: str
    key: str


@dataclass(slots=True)
class Usage:
    """What a cassette was asked while :meth:`Recording.tracking` was on."""

    hits: set[str] = field(default_factory=set)
    misses: list[Miss] = field(default_factory=list)


# ----------------------------------------------------------------------------- nearest key
def _leaves(value: Any, where: str = "") -> list[tuple[str, str]]:
    if isinstance(value, dict) and value:
        return [
            leaf for k, v in value.items() for leaf in _leaves(v, f"{where}.{k}" if where else k)
        ]
    if isinstance(value, list) and value:
        return [leaf for i, v in enumerate(value) for leaf in _leaves(v, f"{where}[{i}]")]
    return [(where, canonical_json(value))]


class _Nearest:
    """Finds the recorded key closest to a missed one: fewest differing leaves, then text."""

    def __init__(self) -> None:
        self._cache: dict[str, frozenset[tuple[str, str]]] = {}

    def find(
        self, candidates: Sequence[tuple[str, Any]], key: str, structure: Any
    ) -> tuple[str, list[str]] | None:
        """``(nearest key, differences)`` among ``(key, structure)`` candidates, or ``None``."""
        if not candidates:
            return None
        target = frozenset(_leaves(structure))
        scored = []
        for ckey, cstructure in candidates:
            leaves = self._cache.get(ckey)
            if leaves is None:
                leaves = self._cache[ckey] = frozenset(_leaves(cstructure))
            scored.append((len(leaves ^ target), ckey, cstructure))
        best = min(s[0] for s in scored)
        ties = sorted((s for s in scored if s[0] == best), key=lambda s: s[1])[:64]
        _, nkey, nstructure = max(
            ties, key=lambda s: difflib.SequenceMatcher(None, s[1], key).ratio()
        )
        return nkey, diff_values(nstructure, structure, limit=5)


# ----------------------------------------------------------------------------- the interface
class Recording(abc.ABC):
    """A cassette: recorded responses of read tools, answered by key.

    Subclasses define how a call becomes a key and how the file is stored; this base holds the
    mode, the miss policy, recording sessions and usage tracking.

    Args:
        path: The cassette file (created when recording).
        mode: ``replay``, ``record`` or ``hybrid`` (see the module docstring for overrides).
        miss: In ``replay`` mode, a miss is an error the agent reads (``agent``) or voids the
            episode (``infra``).
    """

    def __init__(
        self, path: str | Path, *, mode: ReplayMode = "replay", miss: MissPolicy = "agent"
    ) -> None:
        self.path = Path(path)
        self._declared = _check_mode(mode, f"cassette {self.path.name}")
        if miss not in ("agent", "infra"):
            raise ScenarioError(f"cassette miss must be 'agent' or 'infra', not {miss!r}")
        self.miss: MissPolicy = miss
        self._lock = threading.RLock()
        self._usage: Usage | None = None
        self._session: set[str] | None = None  # keys fetched live in the open recording session
        self._nearest = _Nearest()

    @property
    def mode(self) -> ReplayMode:
        """The effective mode: :func:`replay_mode`, then ``SIMENV_REPLAY_MODE``, then declared."""
        return effective_mode(self._declared)

    # -------------------------------------------------------------- what subclasses provide
    @abc.abstractmethod
    def keys(self) -> list[str]:
        """Every recorded key, in the display form that coverage reports and misses use."""

    @abc.abstractmethod
    def reload(self) -> None:
        """Forget what is in memory; the file is read again on the next call."""

    @abc.abstractmethod
    def wrap(self, name: str, fn: Callable[..., Any], visible: list[str]) -> Callable[..., Any]:
        """``fn`` answered through this cassette (called by ``Tool`` for ``replay=``).

        Args:
            name: The tool's name.
            fn: The live function.
            visible: The agent-visible argument names (injected ones are not part of a key).
        """

    @abc.abstractmethod
    def _begin(self, fresh: bool) -> None:
        """Open a recording session (``fresh``: start from an empty cassette)."""

    @abc.abstractmethod
    def _end(self, ok: bool) -> None:
        """Close the session: write the file when ``ok``, else leave it as it was."""

    def backend(self, tool: Tool) -> ToolBackend:
        """The backend of a tool declared with ``replay=`` this cassette (called by ``Tool``)."""
        return Replayed(tool)

    # -------------------------------------------------------------- sessions and tracking
    @contextmanager
    def recording(self, *, fresh: bool = True) -> Iterator[None]:
        """A recording session: each distinct call goes live at most once, one write at the end.

        Args:
            fresh: Start from an empty cassette, so entries nothing asks for are dropped
                (a re-record). ``False`` keeps them and adds or refreshes what is called.

        The file is written only if the block succeeds; on an exception it is left untouched.
        Use with ``replay_mode("record")`` (what ``simenv record`` does) or ``"hybrid"``.
        """
        with self._lock:
            if self._session is not None:
                raise ScenarioError(f"cassette {self.path} is already recording")
            self._begin(fresh)
            self._session = set()
        ok = False
        try:
            yield
            ok = True
        finally:
            with self._lock:
                self._session = None
                self._end(ok)

    @contextmanager
    def tracking(self) -> Iterator[Usage]:
        """Note every key served and every miss inside the block (for coverage reports).

        While tracking, a miss is always an error the agent reads, so a rollout goes on and
        later calls are checked too.
        """
        usage = Usage()
        previous, self._usage = self._usage, usage
        try:
            yield usage
        finally:
            self._usage = previous

    # -------------------------------------------------------------- helpers for subclasses
    def _replays(self, mode: ReplayMode, key: str) -> bool:
        """Whether a recorded ``key`` is answered from the cassette in ``mode``.

        ``record`` re-fetches every call, except one already fetched in the open session.
        """
        return mode != "record" or (self._session is not None and key in self._session)

    def _miss(
        self, tool: str, key: str, nearest: tuple[str, list[str]] | None, what: str = "call"
    ) -> ToolError | InfraError:
        if self._usage is not None:
            self._usage.misses.append(Miss(tool, key))
        if nearest is None:
            hint = f" Nothing is recorded for {tool!r}."
        else:
            hint = (
                f" The nearest recorded {what} is {nearest[0]}; it differs in: "
                f"{'; '.join(nearest[1])}."
            )
        message = f"no recorded response for {key}.{hint}"
        if self.miss == "infra" and self._usage is None:
            return InfraError(
                f"{message} The cassette {self.path} does not cover this call: re-record it "
                f"(`simenv record SCENARIO_ID`) or run with {ENV_VAR}=hybrid."
            )
        return ToolError(f"{message} Only recorded calls can be answered: check the arguments.")


# ----------------------------------------------------------------------------- function calls
class Cassette(Recording):
    """Recorded responses of plain function calls: ``(tool, canonical arguments) -> response``.

    The file is JSON, ``{"version": 1, "entries": [{"tool", "arguments", "response"}, ...]}``,
    sorted by tool and arguments, one entry per distinct call, meant to be reviewed in a diff.
    Responses must be JSON values (what the agent reads anyway).

    Args:
        path: The JSON file (created when recording).
        mode: ``replay``, ``record`` or ``hybrid``.
        miss: In ``replay`` mode, a miss is an agent-visible error (``agent``) or voids the
            episode (``infra``).
    """

    def __init__(
        self, path: str | Path, *, mode: ReplayMode = "replay", miss: MissPolicy = "agent"
    ) -> None:
        super().__init__(path, mode=mode, miss=miss)
        self._entries: dict[str, dict[str, Any]] | None = None
        self._backup: dict[str, dict[str, Any]] | None = None

    # -------------------------------------------------------------- storage
    @property
    def entries(self) -> dict[str, dict[str, Any]]:
        """Recorded responses: tool name -> {canonical arguments -> response} (read lazily)."""
        entries = self._entries
        if entries is None:
            with self._lock:
                if self._entries is None:
                    self._entries = self._load()
                entries = self._entries
        return entries

    def _load(self) -> dict[str, dict[str, Any]]:
        if not self.path.exists():
            if self.mode == "replay":
                raise ScenarioError(
                    f"cassette {self.path} does not exist; record it first "
                    f"(`simenv record SCENARIO_ID`, or {ENV_VAR}=record)"
                )
            return {}
        try:
            data = json.loads(self.path.read_text())
            out: dict[str, dict[str, Any]] = {}
            for entry in data["entries"]:
                out.setdefault(entry["tool"], {})[canonical_json(entry["arguments"])] = entry[
                    "response"
                ]
        except (ValueError, KeyError, TypeError) as exc:
            raise ScenarioError(
                f"cassette {self.path} is malformed ({exc}); expected "
                '{"version": 1, "entries": [{"tool", "arguments", "response"}, ...]}'
            ) from exc
        return out

    def save(self) -> None:
        """Write the cassette (sorted, one entry per recorded call) atomically."""
        entries = self.entries
        rows = [
            {"tool": name, "arguments": json.loads(key), "response": response}
            for name in sorted(entries)
            for key, response in sorted(entries[name].items())
        ]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        text = json.dumps({"version": 1, "entries": rows}, indent=1, ensure_ascii=False)
        tmp.write_text(text + "\n")
        tmp.replace(self.path)

    def reload(self) -> None:
        """Forget the entries in memory; the file is read again on the next call."""
        with self._lock:
            self._entries = None

    def _begin(self, fresh: bool) -> None:
        current = self._entries if self._entries is not None else self._load_if_any()
        self._backup = current
        self._entries = {} if fresh else {k: dict(v) for k, v in current.items()}

    def _load_if_any(self) -> dict[str, dict[str, Any]]:
        return self._load() if self.path.exists() else {}

    def _end(self, ok: bool) -> None:
        if ok:
            self.save()
        else:
            self._entries = self._backup
        self._backup = None

    # -------------------------------------------------------------- keys
    @staticmethod
    def key(name: str, arguments: dict[str, Any]) -> str:
        """The canonical key of a call's arguments (sorted keys, no whitespace)."""
        return canonical_json(arguments)

    def keys(self, name: str | None = None) -> list[str]:
        """Every recorded call as ``tool({...})``; with ``name``, that tool's argument keys."""
        if name is not None:
            return sorted(self.entries.get(name, {}))
        return sorted(f"{tool}({key})" for tool, keys in self.entries.items() for key in keys)

    def nearest(self, name: str, arguments: dict[str, Any]) -> tuple[str, list[str]] | None:
        """The recorded call of ``name`` closest to ``arguments``, and how they differ."""
        recorded = self.entries.get(name) or {}
        candidates = [(f"{name}({k})", json.loads(k)) for k in recorded]
        return self._nearest.find(candidates, f"{name}({canonical_json(arguments)})", arguments)

    # -------------------------------------------------------------- serving
    def serve(self, name: str, arguments: dict[str, Any], live: Callable[[], Any]) -> Served:
        """Answer one call of tool ``name`` according to the mode.

        Args:
            name: The tool's name.
            arguments: The agent-visible arguments (the key).
            live: Calls the live tool; used on a miss (``hybrid``) or always (``record``).
        """
        mode = self.mode
        key = canonical_json(arguments)
        recorded = self.entries.get(name)
        if (
            recorded is not None
            and key in recorded
            and (mode != "record" or self._replays(mode, f"{name}({key})"))
        ):
            if self._usage is not None:
                self._usage.hits.add(f"{name}({key})")
            return Served(recorded[key], "replay")
        if mode == "replay":
            raise self._miss(name, f"{name}({key})", self.nearest(name, arguments))
        with self._lock:
            stored = redact(json.loads(json.dumps(live(), default=str)))
            self.entries.setdefault(name, {})[key] = stored
            if self._session is not None:
                self._session.add(f"{name}({key})")
            else:
                self.save()
        return Served(stored, "live")

    def wrap(self, name: str, fn: Callable[..., Any], visible: list[str]) -> Callable[..., Any]:
        """``fn`` answered through this cassette; only ``visible`` arguments form the key."""
        serve = self.serve
        names = tuple(visible)

        def replayed(**kwargs: Any) -> Served:
            arguments = {k: kwargs[k] for k in names if k in kwargs}
            return serve(name, arguments, lambda: fn(**kwargs))

        replayed.__name__ = getattr(fn, "__name__", name)
        replayed.__doc__ = fn.__doc__
        replayed.__wrapped__ = fn  # type: ignore[attr-defined]
        return replayed
