"""Seeded stateful sandboxes: per-episode state that tools read and change.

A :class:`Sandbox` subclass declares the state of one episode. ``setup(rng, task)`` builds it
from a numpy ``Generator`` seeded by the episode seed, so the same seed always gives the same
state. Tools receive the sandbox injected (annotate a parameter with the subclass). The state is
the sandbox's public attributes (names not starting with ``_``), which must be JSON-like: dicts,
lists, strings, numbers, booleans, ``None`` (sets and tuples are accepted and canonicalised).

What it covers: determinism from the seed, snapshot / restore (a GRPO group can fork from one
identical state), a canonical ``state_hash`` and a readable ``diff``. What it does not: it is
plain Python in the trainer's process, so it isolates episodes from each other but not from a
malicious tool implementation; use the Docker pattern to run untrusted code.
"""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any

import numpy as np

from simenv.tools.base import Injectable
from simenv.types import Task

__all__ = ["Sandbox", "canonical_json", "diff_values"]


def _canonical_default(value: Any) -> Any:
    if isinstance(value, set | frozenset):
        return sorted(value, key=lambda v: json.dumps(v, sort_keys=True, default=str))
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(
        f"sandbox state holds a {type(value).__name__}, which has no canonical JSON form; "
        "keep state in dicts, lists, strings, numbers, booleans and None"
    )


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no whitespace: equal states give equal strings."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_canonical_default
    )


def diff_values(before: Any, after: Any, path: str = "", limit: int = 50) -> list[str]:
    """Readable differences between two JSON-like values, one line per changed leaf."""
    lines: list[str] = []

    def walk(a: Any, b: Any, where: str) -> None:
        if len(lines) >= limit:
            return
        if isinstance(a, dict) and isinstance(b, dict):
            for key in sorted(set(a) | set(b), key=str):
                sub = f"{where}.{key}" if where else str(key)
                if key not in a:
                    lines.append(f"+ {sub} = {canonical_json(b[key])}")
                elif key not in b:
                    lines.append(f"- {sub} (was {canonical_json(a[key])})")
                else:
                    walk(a[key], b[key], sub)
        elif isinstance(a, list | tuple) and isinstance(b, list | tuple) and len(a) == len(b):
            for i, (x, y) in enumerate(zip(a, b, strict=True)):
                walk(x, y, f"{where}[{i}]")
        elif canonical_json(a) != canonical_json(b):
            lines.append(f"~ {where or '<root>'}: {canonical_json(a)} -> {canonical_json(b)}")

    walk(before, after, path)
    if len(lines) >= limit:
        lines.append(f"... (stopped after {limit} differences)")
    return lines


class Sandbox(Injectable):
    """Base class for the state of one episode.

    Subclasses override :meth:`setup` and keep their state in public attributes. Everything
    random must come from the ``rng`` argument: a sandbox that uses ``random`` or the clock makes
    the environment non-deterministic, and ``simenv check`` will say so.

    Example::

        class Desk(Sandbox):
            def setup(self, rng, task):
                self.orders = {f"O-{i}": int(rng.integers(5, 500)) for i in range(20)}
    """

    blocking_io: bool = False
    """True when tools wait on I/O (a container, a database server): the runner then steps
    episodes in threads so their tool calls overlap."""

    def setup(self, rng: np.random.Generator, task: Task) -> None:
        """Build the starting state for ``task`` from ``rng`` (seeded by the episode seed)."""

    def close(self) -> None:
        """Release anything the sandbox holds (files, connections). Called once per episode."""

    @classmethod
    def live_resources(cls) -> list[str]:
        """Outside resources held right now by sandboxes of this class (containers, files ...).

        ``simenv check`` expects none to be left once every environment is closed. Sandboxes
        that hold such resources override this; plain in-memory state holds none.
        """
        return []

    def state(self) -> dict[str, Any]:
        """The state: every public attribute, by name. Values are shared, not copied."""
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}

    def snapshot(self) -> dict[str, Any]:
        """A deep copy of the state that :meth:`restore` can bring back."""
        return copy.deepcopy(self.state())

    def restore(self, snapshot: dict[str, Any]) -> None:
        """Return to a state taken with :meth:`snapshot` (the snapshot itself is not consumed)."""
        for key in [k for k in vars(self) if not k.startswith("_") and k not in snapshot]:
            delattr(self, key)
        for key, value in copy.deepcopy(snapshot).items():
            setattr(self, key, value)

    def state_hash(self) -> str:
        """sha256 of the canonical JSON of the state: equal states, equal hashes."""
        return hashlib.sha256(canonical_json(self.state()).encode()).hexdigest()

    def diff(self, other: Sandbox | dict[str, Any]) -> list[str]:
        """Readable lines describing how ``other`` differs from this state.

        Lines start with ``+`` (only in ``other``), ``-`` (only here) or ``~`` (changed).
        """
        theirs = other.state() if isinstance(other, Sandbox) else other
        return diff_values(self.state(), theirs)
