"""Recorded replay: read-only tools answered from a cassette, keyed by their canonical inputs.

A cassette holds the responses a live tool gave when it was recorded. A read tool opts in with
its declaration; the tool's code stays the live code::

    CATALOG = Cassette(Path(__file__).parent / "data" / "catalog.json")

    @tool(effect="read", replay=CATALOG)
    def product(sku: str) -> dict: ...

Two kinds share one interface (:class:`Recording`):

- :class:`Cassette`: plain function calls, keyed by ``(tool name, canonical JSON of the
  arguments)`` (sorted keys, no whitespace); stored as one sorted JSON file.
- :class:`~simenv.tools.replay.http.HttpCassette`: tools that call an HTTP API. The traffic is
  recorded by vcrpy in its own cassette format (YAML), with credentials filtered, and replayed
  from a hash index on the canonical request, built once from that file.

Modes, declared per cassette and overridden for every cassette at once by :func:`replay_mode`
(a context manager, e.g. ``with replay_mode("record"): ...``) or else by the
``SIMENV_REPLAY_MODE`` environment variable:

- ``replay`` (the default; strict): answered from the cassette. A miss is an error the agent
  reads (``miss="agent"``) or an :class:`~simenv.errors.InfraError` that voids the episode
  (``miss="infra"``); both name the nearest recorded key and the fields that differ.
- ``record``: calls go to the live tool and the responses are stored.
- ``hybrid``: recorded calls are answered from the cassette; misses go live and are stored.

Every call reports where its answer came from (:class:`Served`), so each tool result in an
episode carries the provenance ``replay`` or ``live``. A replay is one dictionary lookup, so its
cost does not grow with the cassette. Values under keys that look like secrets (``token``,
``api_key``, ``password``, ``authorization`` ...) are stored as ``"<redacted>"``, and a live
call answers what the cassette stores, so recording and replaying give the same transcript.

Only ``read`` tools can be replayed: a replayed write would silently not happen, so
``@tool(effect="write", replay=...)`` is refused. ``simenv record ID`` re-records a scenario's
cassettes by running its oracle against the live tools; ``simenv.rollouts.recording.coverage``
lists the oracle calls a cassette misses and the entries nothing uses.

Modules: :mod:`~simenv.tools.replay.cassette` (the interface, modes, function-call cassettes),
:mod:`~simenv.tools.replay.http` (HTTP cassettes through vcrpy) and
:mod:`~simenv.tools.replay.standin` (a local JSON service to record from).
"""

from simenv.tools.replay.cassette import (
    ENV_VAR,
    MODES,
    REDACTED,
    SECRET_FIELD,
    Cassette,
    Miss,
    MissPolicy,
    Recording,
    Replayed,
    ReplayMode,
    Served,
    Usage,
    effective_mode,
    redact,
    replay_mode,
)
from simenv.tools.replay.http import SECRET_HEADERS, SECRET_PARAMS, HttpCassette, HttpResponse

__all__ = [
    "ENV_VAR",
    "MODES",
    "REDACTED",
    "SECRET_FIELD",
    "SECRET_HEADERS",
    "SECRET_PARAMS",
    "Cassette",
    "HttpCassette",
    "HttpResponse",
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
