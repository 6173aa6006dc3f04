"""Recorded replay: read-only tools served from a cassette, keyed by their arguments.

A :class:`Cassette` maps ``(tool name, canonical JSON of the arguments)`` to the response the
live tool gave when it was recorded. Attach one to a read tool::

    CATALOG = Cassette(Path(__file__).parent / "data" / "catalog.json")

    @tool(effect="read", replay=CATALOG)
    def product(sku: str) -> dict: ...

Modes (per cassette, or for every cassette with the ``SIMENV_REPLAY_MODE`` environment
variable):

- ``replay`` (default, strict): served from the cassette; a miss is an error the agent reads
  (``miss="agent"``), naming the nearest recorded arguments and how they differ, or an
  :class:`~simenv.errors.InfraError` that voids the episode (``miss="infra"``);
- ``record``: every call goes to the live tool and its response is stored;
- ``hybrid``: recorded calls are served, misses go live and are stored.

Replays are dictionary lookups on the canonical key (constant time whatever the cassette's
size). Tools that call HTTP services record through vcrpy as well (:func:`http_recorder`), with
credentials filtered out, so the raw traffic can be reviewed beside the cassette; replay never
touches the network. Only ``read`` tools may be replayed: a write would not happen.

The cassette file is JSON, sorted, one entry per recorded call, meant to be reviewed in a diff.
Values under keys that look like secrets (``token``, ``api_key``, ``password``,
``authorization`` ...) are replaced with ``"<redacted>"`` when recorded.
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from simenv.errors import InfraError, ScenarioError, ToolError
from simenv.tools.sandbox import canonical_json, diff_values

__all__ = ["Cassette", "ReplayMode", "Served", "http_recorder"]

ReplayMode = Literal["record", "replay", "hybrid"]
_MODES = ("record", "replay", "hybrid")
_SECRET = re.compile(r"(token|secret|password|passwd|api[_-]?key|authorization|auth)", re.I)
REDACTED = "<redacted>"


@dataclass(frozen=True, slots=True)
class Served:
    """A tool result together with where it came from (``replay`` or ``live``)."""

    value: Any
    provenance: str


def redact(value: Any) -> Any:
    """A copy of ``value`` with every secret-looking field replaced by ``"<redacted>"``."""
    if isinstance(value, dict):
        return {k: REDACTED if _SECRET.search(str(k)) else redact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value


class Cassette:
    """Recorded responses of read-only tools, keyed by tool name and canonical arguments.

    Args:
        path: The JSON file (created when recording).
        mode: ``replay``, ``record`` or ``hybrid``; ``SIMENV_REPLAY_MODE`` overrides it.
        miss: In ``replay`` mode, a miss is an agent-visible error (``agent``) or voids the
            episode (``infra``).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        mode: ReplayMode = "replay",
        miss: Literal["agent", "infra"] = "agent",
    ) -> None:
        if mode not in _MODES:
            raise ScenarioError(f"cassette mode must be one of {_MODES}, not {mode!r}")
        if miss not in ("agent", "infra"):
            raise ScenarioError(f"cassette miss must be 'agent' or 'infra', not {miss!r}")
        self.path = Path(path)
        self._mode: ReplayMode = mode
        self.miss = miss
        self._entries: dict[str, dict[str, Any]] | None = None
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ storage
    @property
    def mode(self) -> ReplayMode:
        """The effective mode (``SIMENV_REPLAY_MODE`` wins over the declared one)."""
        forced = os.environ.get("SIMENV_REPLAY_MODE")
        if forced:
            if forced not in _MODES:
                raise ScenarioError(
                    f"SIMENV_REPLAY_MODE={forced!r}; use one of {', '.join(_MODES)}"
                )
            return forced  # type: ignore[return-value]
        return self._mode

    @property
    def entries(self) -> dict[str, dict[str, Any]]:
        """Recorded responses: tool name -> {canonical arguments -> response} (lazy)."""
        if self._entries is None:
            self._entries = self._load()
        return self._entries

    def _load(self) -> dict[str, dict[str, Any]]:
        if not self.path.exists():
            if self.mode == "replay":
                raise ScenarioError(
                    f"cassette {self.path} does not exist; record it first "
                    "(SIMENV_REPLAY_MODE=record, or `simenv record ID`)"
                )
            return {}
        try:
            data = json.loads(self.path.read_text())
            out: dict[str, dict[str, Any]] = {}
            for entry in data["entries"]:
                key = canonical_json(entry["arguments"])
                out.setdefault(entry["tool"], {})[key] = entry["response"]
        except (ValueError, KeyError, TypeError) as exc:
            raise ScenarioError(
                f"cassette {self.path} is malformed ({exc}); expected "
                '{"version": 1, "entries": [{"tool", "arguments", "response"}, ...]}'
            ) from exc
        return out

    def save(self) -> None:
        """Write the cassette (sorted, one entry per recorded call) atomically."""
        entries = [
            {"tool": name, "arguments": json.loads(key), "response": response}
            for name in sorted(self.entries)
            for key, response in sorted(self.entries[name].items())
        ]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(self.path.suffix + ".tmp")
        tmp.write_text(json.dumps({"version": 1, "entries": entries}, indent=1) + "\n")
        tmp.replace(self.path)

    # ------------------------------------------------------------------ keys
    @staticmethod
    def key(name: str, arguments: dict[str, Any]) -> str:
        """The canonical key of a call's arguments (sorted keys, no whitespace)."""
        return canonical_json(arguments)

    def keys(self, name: str) -> list[str]:
        """Every recorded key of tool ``name``."""
        return sorted(self.entries.get(name, {}))

    def nearest(self, name: str, arguments: dict[str, Any]) -> tuple[str, list[str]] | None:
        """The recorded arguments closest to ``arguments`` and how they differ."""
        recorded = self.entries.get(name)
        if not recorded:
            return None
        best = min(recorded, key=lambda k: len(diff_values(json.loads(k), arguments)))
        return best, diff_values(json.loads(best), arguments, limit=5)

    # ------------------------------------------------------------------ serving
    def serve(self, name: str, arguments: dict[str, Any], live: Callable[[], Any]) -> Served:
        """Answer one call according to the mode."""
        mode = self.mode
        key = canonical_json(arguments)
        recorded = self.entries.get(name)
        if mode != "record" and recorded is not None and key in recorded:
            return Served(recorded[key], "replay")
        if mode == "replay":
            raise self._miss(name, arguments)
        value = live()
        with self._lock:
            self.entries.setdefault(name, {})[key] = redact(
                json.loads(json.dumps(value, default=str))
            )
            self.save()
        return Served(value, "live")

    def _miss(self, name: str, arguments: dict[str, Any]) -> ToolError | InfraError:
        near = self.nearest(name, arguments)
        hint = (
            f" The nearest recorded call is {name}({near[0]}); it differs in: {'; '.join(near[1])}."
            if near
            else f" Nothing is recorded for {name!r}."
        )
        message = f"no recorded response for {name}({canonical_json(arguments)}).{hint}"
        if self.miss == "infra":
            return InfraError(f"{message} Re-record the cassette {self.path}.")
        return ToolError(message)

    def wrap(self, name: str, fn: Callable[..., Any], visible: list[str]) -> Callable[..., Any]:
        """``fn`` served through this cassette; only ``visible`` arguments form the key."""

        def replayed(**kwargs: Any) -> Served:
            arguments = {k: kwargs[k] for k in visible if k in kwargs}
            return self.serve(name, arguments, lambda: fn(**kwargs))

        replayed.__name__ = getattr(fn, "__name__", name)
        replayed.__doc__ = fn.__doc__
        return replayed


@contextmanager
def http_recorder(path: str | Path, mode: ReplayMode = "record") -> Iterator[Any]:
    """Record (or check) the HTTP traffic of live tool calls with vcrpy, secrets filtered.

    Use around a recording session: ``with http_recorder("data/http.yaml"): ...``. Auth
    headers, cookies and key/token query parameters never reach the file.
    """
    import vcr

    recorder = vcr.VCR(
        record_mode="all" if mode == "record" else "new_episodes" if mode == "hybrid" else "none",
        filter_headers=[
            "authorization",
            "x-api-key",
            "cookie",
            "set-cookie",
            "proxy-authorization",
        ],
        filter_query_parameters=["api_key", "apikey", "key", "token", "access_token"],
        decode_compressed_response=True,
    )
    with recorder.use_cassette(str(path)) as cassette:
        yield cassette
