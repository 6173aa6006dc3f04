"""The rollout server's table of live environments: one lock each, idle ones closed lazily.

:class:`EnvTable` creates environments with :func:`simenv.make` (the wrapped environment, the
same as local use), hands one out to one request at a time (:meth:`EnvTable.use` holds its lock,
so concurrent requests on one environment are serialised while different environments step in
parallel), closes it on ``DELETE``, and closes those idle longer than ``idle_timeout_s``. Idle
environments are looked for at the start of every request, so no extra thread is needed.

Each environment has an owner (the principal of the token that created it, see
:mod:`simenv.server.auth`); every lookup names the owner, and an environment of another owner
is reported exactly as one that does not exist, so ids cannot be probed.

Failures a client can act on are raised as :class:`Problem`, which carries the HTTP status, a
short type name and a message that says what happened and how to fix it.
"""

from __future__ import annotations

import secrets
import sys
import threading
import time
import traceback
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym

from simenv.env import MultiTurnEnv
from simenv.registration import make
from simenv.scenario import Scenario
from simenv.server.auth import ANONYMOUS
from simenv.types import Action, Message

__all__ = ["EnvTable", "LiveEnv", "Problem"]

_REMEMBERED = 1024
"""How many closed environment ids are remembered, to say why a request names a gone one."""


class Problem(Exception):
    """A request the server refuses: the HTTP status, a type name and a readable message.

    Attributes:
        status: The HTTP status code.
        kind: A short name for the error (``UnknownEnv``, ``TooManyEnvs`` ...).
        message: What happened and how to fix it.
        headers: Extra response headers (``Allow`` for a 405).
    """

    def __init__(
        self, status: int, kind: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind
        self.message = message
        self.headers = dict(headers or {})


@dataclass(eq=False)
class LiveEnv:
    """One environment the server holds for a client.

    Attributes:
        env_id: The id clients name it by.
        scenario: Its scenario.
        env: The environment from :func:`simenv.make`.
        owner: The principal that created it; only it can use it.
        last_used: Clock time at which the last request on it ended.
        lock: Held by the request using it.
        busy: Requests using it or waiting for it (an environment in use is never reaped).
        closed: Set once it is closed; a request that was waiting for it then gets a 404.
    """

    env_id: str
    scenario: Scenario
    env: gym.Env[list[Message], Action]
    owner: str
    last_used: float
    lock: threading.Lock = field(default_factory=threading.Lock)
    busy: int = 0
    closed: bool = False

    @property
    def base(self) -> MultiTurnEnv:
        """The unwrapped environment (the episode record, the task, the state)."""
        base = self.env.unwrapped
        assert isinstance(base, MultiTurnEnv)
        return base


class EnvTable:
    """The live environments of one server, keyed by id.

    Args:
        scenarios: The served scenarios by id; only these can be created.
        max_envs: How many environments may be live at once.
        idle_timeout_s: Environments unused for longer are closed and dropped.
        clock: Monotonic seconds (a test may replace it to age environments).
    """

    def __init__(
        self,
        scenarios: Mapping[str, Scenario],
        *,
        max_envs: int = 64,
        idle_timeout_s: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_envs < 1:
            raise ValueError(f"max_envs must be at least 1, got {max_envs}")
        if not idle_timeout_s > 0:
            raise ValueError(f"idle_timeout_s must be positive, got {idle_timeout_s}")
        self.scenarios = dict(scenarios)
        self.max_envs = max_envs
        self.idle_timeout_s = idle_timeout_s
        self.clock = clock
        self._live: dict[str, LiveEnv] = {}
        self._gone: OrderedDict[str, tuple[str, str]] = OrderedDict()  # id -> (owner, why)
        self._pending = 0
        self._lock = threading.Lock()
        self._closed = False

    def __len__(self) -> int:
        """Live environments."""
        with self._lock:
            return len(self._live)

    def owned(self, owner: str) -> list[LiveEnv]:
        """The live environments of ``owner``, oldest first."""
        with self._lock:
            return [e for e in self._live.values() if e.owner == owner]

    def create(self, scenario_id: str, owner: str = ANONYMOUS) -> LiveEnv:
        """Make an environment of a served scenario, owned by ``owner``, and add it to the table.

        Raises:
            Problem: 404 for a scenario not served here, 429 when ``max_envs`` are live.
        """
        scenario = self.scenarios.get(scenario_id)
        if scenario is None:
            raise Problem(
                404,
                "UnknownScenario",
                f"no scenario {scenario_id!r} is served here; served ids: "
                f"{', '.join(sorted(self.scenarios))}. Pick one of them, or restart the server "
                f"with it (`simenv serve {scenario_id}`).",
            )
        with self._lock:
            self._refuse_if_closed()
            live = len(self._live) + self._pending
            if live >= self.max_envs:
                raise Problem(
                    429,
                    "TooManyEnvs",
                    f"{live} environments are live, the server's limit (max_envs="
                    f"{self.max_envs}); DELETE /envs/ENV_ID the finished ones (RemoteEnv.close()) "
                    "or start the server with a higher --max-envs",
                )
            self._pending += 1
        try:
            env = make(scenario)
        finally:
            with self._lock:
                self._pending -= 1
        entry = LiveEnv(secrets.token_hex(8), scenario, env, owner, self.clock())
        with self._lock:
            if not self._closed:
                self._live[entry.env_id] = entry
                return entry
        env.close()
        raise self._closing()

    @contextmanager
    def use(self, env_id: str, owner: str = ANONYMOUS) -> Iterator[LiveEnv]:
        """Hold ``owner``'s environment ``env_id`` for one request (its lock held throughout).

        Raises:
            Problem: 404 when ``owner`` has no such environment live (never created, deleted,
                reaped, or another owner's).
        """
        with self._lock:
            entry = self._live.get(env_id)
            if entry is None or entry.owner != owner:
                raise self._missing(env_id, owner)
            entry.busy += 1
        try:
            with entry.lock:
                if entry.closed:  # deleted while this request waited for it
                    raise self._missing(env_id, owner)
                yield entry
        finally:
            with self._lock:
                entry.busy -= 1
                entry.last_used = self.clock()

    def delete(self, env_id: str, owner: str = ANONYMOUS) -> None:
        """Close ``owner``'s environment ``env_id`` (its sandbox, database or container).

        Raises:
            Problem: 404 when ``owner`` has no such environment live.
        """
        with self._lock:
            entry = self._live.get(env_id)
            if entry is None or entry.owner != owner:
                raise self._missing(env_id, owner)
            del self._live[env_id]
            self._remember(entry, "was deleted (DELETE /envs/ENV_ID)")
        self._close(entry)

    def reap(self) -> int:
        """Close every environment idle for longer than ``idle_timeout_s``; return how many."""
        with self._lock:
            now = self.clock()
            idle = [
                e
                for e in self._live.values()
                if not e.busy and now - e.last_used > self.idle_timeout_s
            ]
            for entry in idle:
                del self._live[entry.env_id]
                self._remember(
                    entry,
                    f"was closed after {now - entry.last_used:.0f} s without a request (the "
                    f"server closes environments idle for over {self.idle_timeout_s:g} s; "
                    "start it with a longer --idle-timeout if clients pause that long)",
                )
        for entry in idle:
            self._close_quietly(entry)
        return len(idle)

    def close_all(self) -> None:
        """Close every environment and refuse new ones (the server is stopping)."""
        with self._lock:
            self._closed = True
            entries = list(self._live.values())
            self._live.clear()
        for entry in entries:
            self._close_quietly(entry)

    # ------------------------------------------------------------------ internals
    def _close_quietly(self, entry: LiveEnv) -> None:
        """Close ``entry``; a failure is printed, never raised, so the others still close."""
        try:
            self._close(entry)
        except Exception:  # a sandbox whose close() fails must not leak the rest
            print(f"simenv serve: closing environment {entry.env_id} failed:", file=sys.stderr)
            traceback.print_exc(file=sys.stderr)

    def _close(self, entry: LiveEnv) -> None:
        with entry.lock:
            if not entry.closed:
                entry.closed = True
                entry.env.close()

    def _remember(self, entry: LiveEnv, reason: str) -> None:
        self._gone[entry.env_id] = (entry.owner, reason)
        while len(self._gone) > _REMEMBERED:
            self._gone.popitem(last=False)

    def _missing(self, env_id: str, owner: str) -> Problem:
        gone_owner, reason = self._gone.get(env_id, ("", ""))
        if self._closed:
            return self._closing()
        if gone_owner != owner:  # another token's: told exactly what an unknown id is told
            reason = ""
        why = f"it {reason}" if reason else "it was never created here, or the server restarted"
        return Problem(
            404,
            "UnknownEnv",
            f"no environment {env_id!r} is live on this server: {why}. "
            "Create a new one with POST /envs.",
        )

    def _refuse_if_closed(self) -> None:
        if self._closed:
            raise self._closing()

    def _closing(self) -> Problem:
        return Problem(503, "ServerClosing", "the server is shutting down; retry on a new one")

    def describe(self) -> list[dict[str, Any]]:
        """The served scenarios as ``GET /scenarios`` shows them."""
        return [
            {
                "id": s.id,
                "version": s.version,
                "summary": s.summary,
                "tools": s.tool_schemas(),
                "max_turns": s.max_turns,
                "splits": {"train": len(s.split("train")), "eval": len(s.split("eval"))},
            }
            for _, s in sorted(self.scenarios.items())
        ]
