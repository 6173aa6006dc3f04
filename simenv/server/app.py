"""The HTTP rollout server: simenv environments behind a small JSON API, standard library only.

An agent that runs elsewhere (another process, machine or language) plays episodes through this
API; :class:`simenv.server.RemoteEnv` is the Python adapter that makes it a Gymnasium env again.
Every environment is built with :func:`simenv.make`, so it behaves exactly as a local one: a
malformed tool call inside a valid action is answered as a tool message (HTTP 200), never as an
HTTP error.

=======  ========================  ==================================  ============================
method   path                      request body                        answer (JSON)
=======  ========================  ==================================  ============================
GET      /health                                                       ``{"ok": true, "simenv",
                                                                       "max_envs", "live"}``
GET      /scenarios                                                    served ids, tools, max_turns,
                                                                       split sizes
POST     /envs                     ``{"scenario": ID}``                201 ``{"env_id", "scenario",
                                                                       "tools"}``
POST     /envs/ENV_ID/reset        ``{"seed": int|null,                ``{"observation", "info"}``
                                   "options": {...}|null}``
POST     /envs/ENV_ID/step         ``{"action": str | assistant        ``{"observation", "reward",
                                   message}``                          "terminated", "truncated",
                                                                       "info"}``
POST     /envs/ENV_ID/end          ``{"termination": "time_limit"}``   ``{"reward", "info"}``: ended
                                                                       and scored as it stands
GET      /envs/ENV_ID/episode                                          the episode record, as in a
                                                                       JSONL file
GET      /envs/ENV_ID/oracle                                           ``{"actions": [...]}``, the
                                                                       gold turns (``--oracle``
                                                                       only, else 403)
DELETE   /envs/ENV_ID                                                  ``{"closed": ENV_ID}``
=======  ========================  ==================================  ============================

Errors are ``{"error": {"type", "message"}}``: 400 a malformed body or field (named), 404 an
unknown scenario (the served ids are listed), environment or path, 403 the oracle endpoint of a
server started without ``oracle=True``, 405 a wrong method, 409
``ResetNeeded``, 411 a chunked body, 413 a body over 8 MiB, 429 more than ``max_envs`` live
environments, 500 an ``InfraError`` or a bug (the server keeps running), 503 shutting down.

Connections are kept alive (HTTP/1.1); each connection gets a thread. One lock per environment
serialises the requests on it; environments idle for over ``idle_timeout_s`` are closed at the
start of the next request. The server binds 127.0.0.1 by default and has no authentication.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import sys
import threading
import traceback
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from simenv import __version__
from simenv.errors import InfraError, ResetNeeded, ScenarioError
from simenv.registration import load_scenario, registry
from simenv.scenario import Scenario
from simenv.server.envs import EnvTable, Problem
from simenv.tools.base import json_default

__all__ = ["MAX_BODY_BYTES", "RolloutApp", "RolloutServer", "make_server", "serve"]

MAX_BODY_BYTES = 8 * 1024 * 1024
"""Largest request body accepted (413 above it)."""

KEEPALIVE_TIMEOUT_S = 120.0
"""A kept-alive connection idle this long is closed by the server (the client reconnects)."""

_ENCODE = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=json_default).encode
# For an answer holding a lone surrogate (a tool's text, a file name that is not UTF-8): its
# \udXXX escapes are valid JSON and decode to the same strings.
_ENCODE_ASCII = json.JSONEncoder(separators=(",", ":"), default=json_default).encode

_Route = Callable[["RolloutApp", str, bytes], tuple[int, Any]]


def _error(kind: str, message: str) -> dict[str, Any]:
    return {"error": {"type": kind, "message": message}}


def _bad(message: str) -> Problem:
    return Problem(400, "BadRequest", message)


def _json_body(raw: bytes) -> dict[str, Any]:
    """The request body as a JSON object (an empty body is ``{}``)."""
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except UnicodeDecodeError as exc:
        raise _bad(f"the request body is not UTF-8 ({exc}); send UTF-8 JSON") from None
    except json.JSONDecodeError as exc:
        raise _bad(
            f"the request body is not valid JSON: {exc.msg} at line {exc.lineno} column "
            f'{exc.colno}; send one JSON object, e.g. {{"action": "..."}}'
        ) from None
    if not isinstance(body, dict):
        raise _bad(f"the request body must be a JSON object, not a JSON {type(body).__name__}")
    return body


def _field(body: dict[str, Any], name: str, kinds: tuple[type, ...], what: str) -> Any:
    """``body[name]``, checked against ``kinds`` (a missing optional field reads as None)."""
    if name not in body and type(None) not in kinds:
        raise _bad(f"the body has no {name!r} field; send {what}")
    value = body.get(name)
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        raise _bad(f"field {name!r} must be {what}, got {json.dumps(value)[:80]}")
    return value


class RolloutApp:
    """The endpoints without the HTTP: ``respond(method, path, body) -> (status, payload)``.

    Args:
        envs: The table of live environments (and the served scenarios).
        oracle: Answer ``GET /envs/ENV_ID/oracle`` (the gold turns); off by default, since an
            agent that can reach it can read the answers (403 then).
    """

    def __init__(self, envs: EnvTable, oracle: bool = False) -> None:
        self.envs = envs
        self.oracle_enabled = oracle

    def respond(self, method: str, path: str, raw: bytes) -> tuple[int, Any, dict[str, str]]:
        """Answer one request; every failure becomes a JSON error with its status."""
        try:
            self.envs.reap()
            route, env_id = self._route(method, path.split("?", 1)[0].rstrip("/") or "/")
            status, payload = route(self, env_id, raw)
            return status, payload, {}
        except Problem as p:
            return p.status, _error(p.kind, p.message), p.headers
        except ResetNeeded as exc:
            return 409, _error("ResetNeeded", f"{exc} (POST /envs/ENV_ID/reset)"), {}
        except ScenarioError as exc:  # a bad seed or task id, as a local reset would say
            return 400, _error("ScenarioError", str(exc)), {}
        except InfraError as exc:
            return 500, _error("InfraError", str(exc)), {}
        except Exception as exc:
            traceback.print_exc(file=sys.stderr)
            message = (
                f"unexpected {type(exc).__name__}: {exc}. This is a bug in the scenario or the "
                "server, not in the request; the traceback is on the server's stderr, and the "
                "server keeps running."
            )
            return 500, _error("InternalError", message), {}

    def _route(self, method: str, path: str) -> tuple[_Route, str]:
        for pattern, methods in _ROUTES:
            match = pattern.fullmatch(path)
            if match is None:
                continue
            route = methods.get(method)
            if route is None:
                allowed = ", ".join(methods)
                raise Problem(
                    405,
                    "MethodNotAllowed",
                    f"{method} is not allowed on {path}; use {allowed}",
                    {"Allow": allowed},
                )
            return route, match.group(1) if pattern.groups else ""
        raise Problem(
            404,
            "UnknownPath",
            f"no endpoint {path!r}; the endpoints are /health, /scenarios, /envs and "
            "/envs/ENV_ID[/reset|/step|/end|/episode|/oracle] (see docs/server.md)",
        )

    # ------------------------------------------------------------------ endpoints
    def health(self, _: str, raw: bytes) -> tuple[int, Any]:
        """``GET /health``."""
        limits = {"max_envs": self.envs.max_envs, "live": len(self.envs)}
        return 200, {"ok": True, "simenv": __version__, **limits}

    def scenarios(self, _: str, raw: bytes) -> tuple[int, Any]:
        """``GET /scenarios``."""
        return 200, {"scenarios": self.envs.describe()}

    def create(self, _: str, raw: bytes) -> tuple[int, Any]:
        """``POST /envs``."""
        scenario_id = _field(_json_body(raw), "scenario", (str,), 'a scenario id, e.g. "a/B-v1"')
        entry = self.envs.create(scenario_id)
        tools = entry.scenario.tool_schemas()
        return 201, {"env_id": entry.env_id, "scenario": entry.scenario.id, "tools": tools}

    def reset(self, env_id: str, raw: bytes) -> tuple[int, Any]:
        """``POST /envs/ENV_ID/reset``."""
        body = _json_body(raw)
        seed = _field(body, "seed", (int, type(None)), "a non-negative integer or null")
        options = _field(body, "options", (dict, type(None)), "a JSON object or null")
        with self.envs.use(env_id) as entry:
            observation, info = entry.env.reset(seed=seed, options=options)
        return 200, {"observation": observation, "info": info}

    def step(self, env_id: str, raw: bytes) -> tuple[int, Any]:
        """``POST /envs/ENV_ID/step``."""
        what = "the assistant's raw text (a string) or an assistant message (an object)"
        action = _field(_json_body(raw), "action", (str, dict), what)
        with self.envs.use(env_id) as entry:
            observation, reward, terminated, truncated, info = entry.env.step(action)
        return 200, {
            "observation": observation,
            "reward": float(reward),
            "terminated": bool(terminated),
            "truncated": bool(truncated),
            "info": info,
        }

    def episode(self, env_id: str, raw: bytes) -> tuple[int, Any]:
        """``GET /envs/ENV_ID/episode``: the current (usually finished) episode's record."""
        with self.envs.use(env_id) as entry:
            record = entry.base.episode()
        return 200, record.to_dict()

    def end(self, env_id: str, raw: bytes) -> tuple[int, Any]:
        """``POST /envs/ENV_ID/end``: end the running episode now and score it as it stands."""
        termination = _field(
            _json_body(raw), "termination", (str, type(None)), '"time_limit" or null'
        )
        if termination not in (None, "time_limit"):
            raise _bad(f"field 'termination' must be \"time_limit\" or null, got {termination!r}")
        with self.envs.use(env_id) as entry:
            if not entry.base.running:
                raise ResetNeeded("no episode is running (it ended, or reset() was not called)")
            reward, info = entry.base.end_episode("time_limit")
        return 200, {"reward": float(reward), "info": info}

    def oracle(self, env_id: str, raw: bytes) -> tuple[int, Any]:
        """``GET /envs/ENV_ID/oracle``: the gold turns, computed beside the episode's state."""
        if not self.oracle_enabled:
            raise Problem(
                403,
                "OracleDisabled",
                "this server does not hand out the gold turns; start it with --oracle "
                "(make_server(oracle=True)) to roll out the Oracle policy, and never where an "
                "agent under training can reach it",
            )
        with self.envs.use(env_id) as entry:
            base, scenario = entry.base, entry.scenario
            if base.task is None:
                raise ResetNeeded("the oracle needs an episode; call reset() first")
            if scenario.oracle is None:
                raise Problem(
                    404, "NoOracle", f"scenario {scenario.id!r} has no oracle (Scenario.oracle)"
                )
            actions = base.gold_turns()
        return 200, {"actions": actions}

    def delete(self, env_id: str, raw: bytes) -> tuple[int, Any]:
        """``DELETE /envs/ENV_ID``."""
        self.envs.delete(env_id)
        return 200, {"closed": env_id}


_ENV = "/envs/([0-9A-Za-z_-]+)"
_ROUTES: list[tuple[re.Pattern[str], dict[str, _Route]]] = [
    (re.compile("/health"), {"GET": RolloutApp.health}),
    (re.compile("/scenarios"), {"GET": RolloutApp.scenarios}),
    (re.compile("/envs"), {"POST": RolloutApp.create}),
    (re.compile(_ENV), {"DELETE": RolloutApp.delete}),
    (re.compile(f"{_ENV}/reset"), {"POST": RolloutApp.reset}),
    (re.compile(f"{_ENV}/step"), {"POST": RolloutApp.step}),
    (re.compile(f"{_ENV}/end"), {"POST": RolloutApp.end}),
    (re.compile(f"{_ENV}/episode"), {"GET": RolloutApp.episode}),
    (re.compile(f"{_ENV}/oracle"), {"GET": RolloutApp.oracle}),
]


class _Handler(BaseHTTPRequestHandler):
    """Reads the body, asks the app, writes JSON; keeps the connection alive."""

    protocol_version = "HTTP/1.1"
    server_version = f"simenv/{__version__}"
    timeout = KEEPALIVE_TIMEOUT_S
    # Headers and body go out in two writes: without TCP_NODELAY the second waits for the
    # client's delayed ACK of the first (about 40 ms per answer on Linux).
    disable_nagle_algorithm = True
    server: RolloutServer

    def do_GET(self) -> None:
        """Answer a GET."""
        self._serve()

    def do_POST(self) -> None:
        """Answer a POST."""
        self._serve()

    def do_DELETE(self) -> None:
        """Answer a DELETE."""
        self._serve()

    def do_PUT(self) -> None:
        """Answer a PUT (405 on every endpoint)."""
        self._serve()

    def do_PATCH(self) -> None:
        """Answer a PATCH (405 on every endpoint)."""
        self._serve()

    def log_message(self, format: str, *args: Any) -> None:
        """No line per request (errors of the app are printed with their traceback)."""

    def _serve(self) -> None:
        try:
            raw = self._read_body()
        except Problem as p:
            self._send(p.status, _error(p.kind, p.message), p.headers)
            return
        status, payload, headers = self.server.app.respond(self.command, self.path, raw)
        self._send(status, payload, headers)

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self.close_connection = True
            raise Problem(411, "LengthRequired", "send the body with a Content-Length header")
        text = self.headers.get("Content-Length") or "0"
        if not text.isdigit():
            self.close_connection = True
            raise _bad(f"Content-Length {text[:40]!r} is not a byte count")
        length, limit = int(text), self.server.max_body_bytes
        if length > limit:
            if length <= 4 * limit:  # read it away, so the answer reaches the client
                while length > 0:
                    chunk = self.rfile.read(min(1 << 16, length))
                    if not chunk:
                        break
                    length -= len(chunk)
            else:
                self.close_connection = True
            raise Problem(
                413,
                "BodyTooLarge",
                f"the body is {text} bytes, over the server's limit of {limit} bytes; an action "
                "that large is not a chat turn: cut it down",
            )
        return self.rfile.read(length)

    def _send(self, status: int, payload: Any, headers: dict[str, str]) -> None:
        try:
            body = _ENCODE(payload).encode()
        except UnicodeEncodeError:  # a lone surrogate: not UTF-8, but JSON can escape it
            body = _ENCODE_ASCII(payload).encode()
        except (ValueError, RecursionError) as exc:  # a circular info dict
            status = 500
            body = _ENCODE(_error("InternalError", f"the answer is not JSON: {exc}")).encode()
        reason = self.responses.get(status, ("",))[0]
        lines = [
            f"{self.protocol_version} {status} {reason}",
            f"Server: {self.server_version}",
            f"Date: {self.date_time_string()}",
            "Content-Type: application/json; charset=utf-8",
            f"Content-Length: {len(body)}",
            *(f"{name}: {value}" for name, value in headers.items()),
        ]
        if self.close_connection:
            lines.append("Connection: close")
        # One write for the head and the body: one system call and one TCP segment.
        self.wfile.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)


class RolloutServer(ThreadingHTTPServer):
    """The HTTP server: a thread per connection; closing it closes every environment.

    Attributes:
        app: The endpoints.
        max_body_bytes: Largest request body accepted.
    """

    daemon_threads = True

    def __init__(self, address: tuple[str, int], app: RolloutApp) -> None:
        """Bind ``address`` (``(host, port)``; port 0 picks a free one) and serve ``app``."""
        self.app = app
        self.max_body_bytes = MAX_BODY_BYTES
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    @property
    def url(self) -> str:
        """The base URL, e.g. ``http://127.0.0.1:8000``."""
        host, port = str(self.server_address[0]), self.server_address[1]
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{port}"

    def process_request(self, request: Any, client_address: Any) -> None:
        """Track the connection, then serve it in a thread."""
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        """Forget the connection and close it."""
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def server_close(self) -> None:
        """Stop listening, end the kept-alive connections and close every environment."""
        super().server_close()
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):  # the client may have closed it already
                connection.shutdown(socket.SHUT_RDWR)
        self.app.envs.close_all()


def make_server(
    scenarios: list[str] | None = None,
    host: str = "127.0.0.1",
    port: int = 8000,
    max_envs: int = 64,
    idle_timeout_s: float = 600.0,
    oracle: bool = False,
) -> RolloutServer:
    """Build (and bind) a rollout server; run it with ``serve_forever()`` or :func:`serve`.

    Args:
        scenarios: The scenario ids (or files) to serve; ``None`` or empty: every registered one.
        host: The address to bind; 127.0.0.1 keeps it on this machine.
        port: The port; 0 picks a free one (read it from ``server.url``).
        max_envs: How many environments may be live at once (429 beyond).
        idle_timeout_s: Environments without a request for this long are closed.
        oracle: Serve the scenarios' gold turns at ``/envs/ENV_ID/oracle`` (for scripted
            evaluation with the Oracle policy). Off by default: an agent that reaches the
            server could read the answers.

    Raises:
        RegistrationError: A scenario id cannot be found.
    """
    served: dict[str, Scenario] = {}
    for name in scenarios or registry():
        scenario = load_scenario(name)
        served[scenario.id] = scenario
    table = EnvTable(served, max_envs=max_envs, idle_timeout_s=idle_timeout_s)
    return RolloutServer((host, port), RolloutApp(table, oracle=oracle))


def serve(
    scenarios: list[str] | None = None,
    host: str = "127.0.0.1",
    port: int = 8000,
    max_envs: int = 64,
    idle_timeout_s: float = 600.0,
    oracle: bool = False,
    *,
    on_ready: Callable[[RolloutServer], None] | None = None,
) -> None:
    """Run a rollout server until Ctrl-C, then close every environment.

    Takes :func:`make_server`'s arguments; ``on_ready`` is called with the bound server before
    it starts answering (e.g. to print its URL).
    """
    server = make_server(scenarios, host, port, max_envs, idle_timeout_s, oracle)
    try:
        if on_ready is not None:
            on_ready(server)
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
