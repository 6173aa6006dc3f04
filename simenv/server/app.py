"""The env server: simenv environments behind a small JSON API, standard library only.

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
GET      /openapi.json                                                 the OpenAPI 3 document
GET      /envs                                                         ``{"envs": [...]}``: this
                                                                       token's environments
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

Every request carries ``Authorization: Bearer TOKEN`` (401 otherwise) unless the server is on a
loopback address with authentication switched off (:mod:`simenv.server.auth`). Each environment
belongs to the token that created it: for any other token it does not exist (404, the same
answer as an id never created, so ids cannot be probed), and ``GET /envs`` lists only one's own.

Errors are ``{"error": {"type", "message"}}``: 400 a malformed body or field (named), 401 no
valid token, 404 an unknown scenario (the served ids are listed), environment or path, 403 the
oracle endpoint of a server started without ``oracle=True``, 405 a method the path does not
take (with ``Allow``), 409 ``ResetNeeded``, 411 a chunked body, 413 a body over 8 MiB, 429 more
than ``max_envs`` live environments, 500 an ``InfraError`` or a bug (the server keeps running),
503 shutting down or ``max_connections`` open; the transport's own are in
:mod:`simenv.server.transport`. ``ROUTES`` is the one table of routes: it answers requests and
is the OpenAPI document (:mod:`simenv.server.openapi`).

One lock per environment serialises the requests on it; environments idle for over
``idle_timeout_s`` are closed at the start of the next request.
"""

from __future__ import annotations

import json
import re
import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from simenv import __version__
from simenv.errors import InfraError, ResetNeeded, ScenarioError
from simenv.registration import load_scenario, registry
from simenv.scenario import Scenario
from simenv.server.auth import AuthError, TokenAuth, check_exposure, resolve_tokens
from simenv.server.envs import EnvTable, Problem
from simenv.server.openapi import Operation, document
from simenv.server.transport import HTTPServer, Request, Response, error_body

__all__ = [
    "MAX_BODY_BYTES",
    "MAX_JSON_DEPTH",
    "ROUTES",
    "RolloutApp",
    "RolloutServer",
    "Route",
    "make_server",
    "serve",
]

MAX_BODY_BYTES = 8 * 1024 * 1024
"""Largest request body accepted (413 above it)."""

MAX_JSON_DEPTH = 128
"""Deepest nesting of objects and arrays in a request body (400 beyond)."""

KEEPALIVE_TIMEOUT_S = 120.0
"""A kept-alive connection idle this long is closed by the server (the client reconnects)."""


def _bad(message: str) -> Problem:
    return Problem(400, "BadRequest", message)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON (JSON has no NaN or Infinity); send a number or null")


def _too_deep(value: Any, limit: int) -> bool:
    """Whether ``value`` nests objects and arrays more than ``limit`` deep (no recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = (
            item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        )
        if children and depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def _json_body(raw: bytes) -> dict[str, Any]:
    """The request body as a JSON object (an empty body is ``{}``)."""
    if not raw.strip():
        return {}
    deep = f"the request body nests objects or arrays more than {MAX_JSON_DEPTH} levels deep"
    try:
        body = json.loads(raw, parse_constant=_no_constant)
    except UnicodeDecodeError as exc:
        raise _bad(f"the request body is not UTF-8 ({exc}); send UTF-8 JSON") from None
    except json.JSONDecodeError as exc:
        raise _bad(
            f"the request body is not valid JSON: {exc.msg} at line {exc.lineno} column "
            f'{exc.colno}; send one JSON object, e.g. {{"action": "..."}}'
        ) from None
    except RecursionError:
        raise _bad(f"{deep}; flatten it") from None
    except ValueError as exc:  # an integer over Python's 4,300 digits, NaN, Infinity
        raise _bad(f"the request body has a value this server cannot read: {exc}") from None
    if not isinstance(body, dict):
        raise _bad(f"the request body must be a JSON object, not a JSON {type(body).__name__}")
    if _too_deep(body, MAX_JSON_DEPTH):
        raise _bad(f"{deep}; flatten it")
    return body


def _field(body: dict[str, Any], name: str, kinds: tuple[type, ...], what: str) -> Any:
    """``body[name]``, checked against ``kinds`` (a missing optional field reads as None)."""
    if name not in body and type(None) not in kinds:
        raise _bad(f"the body has no {name!r} field; send {what}")
    value = body.get(name)
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        raise _bad(f"field {name!r} must be {what}, got {json.dumps(value)[:80]}")
    return value


@dataclass(frozen=True)
class Call:
    """What an endpoint gets: the environment id of the path, the body, who is asking."""

    env_id: str
    body: bytes
    owner: str


_Handler = Callable[["RolloutApp", Call], tuple[int, Any]]


class RolloutApp:
    """The endpoints without the HTTP: ``respond(request) -> Response``, never raising.

    Args:
        envs: The table of live environments (and the served scenarios).
        auth: The tokens accepted (:class:`~simenv.server.auth.TokenAuth`; none: no
            authentication, for a loopback server only).
        oracle: Answer ``GET /envs/ENV_ID/oracle`` (the gold turns); off by default, since an
            agent that can reach it can read the answers (403 then).
    """

    def __init__(self, envs: EnvTable, auth: TokenAuth, oracle: bool = False) -> None:
        self.envs = envs
        self.auth = auth
        self.oracle_enabled = oracle

    def respond(self, request: Request) -> Response:
        """Answer one request; every failure becomes a JSON error with its status."""
        try:
            credentials = request.headers.get("authorization")
            open_probe = request.method == "GET" and request.path == "/health"
            if credentials is None and open_probe and self.auth.required:
                # liveness for a load balancer's probe: no token needed, nothing about the envs
                return Response(200, {"ok": True, "simenv": __version__})
            owner = self.auth.principal(credentials)
            self.envs.reap()
            route, env_id = _match(request.method, request.path)
            status, payload = route.handler(self, Call(env_id, request.body, owner))
            return Response(status, payload)
        except AuthError as exc:
            return Response(exc.status, error_body(exc.kind, exc.message), exc.headers)
        except Problem as p:
            return Response(p.status, error_body(p.kind, p.message), p.headers)
        except ResetNeeded as exc:
            return Response(409, error_body("ResetNeeded", f"{exc} (POST /envs/ENV_ID/reset)"))
        except ScenarioError as exc:  # a bad seed or task id, as a local reset would say
            return Response(400, error_body("ScenarioError", str(exc)))
        except InfraError as exc:
            return Response(500, error_body("InfraError", str(exc)))
        except Exception as exc:
            traceback.print_exc(file=sys.stderr)
            message = (
                f"unexpected {type(exc).__name__}: {exc}. This is a bug in the scenario or the "
                "server, not in the request; the traceback is on the server's stderr, and the "
                "server keeps running."
            )
            return Response(500, error_body("InternalError", message))

    # ------------------------------------------------------------------ endpoints
    def health(self, call: Call) -> tuple[int, Any]:
        """``GET /health``."""
        limits = {"max_envs": self.envs.max_envs, "live": len(self.envs)}
        return 200, {"ok": True, "simenv": __version__, **limits}

    def scenarios(self, call: Call) -> tuple[int, Any]:
        """``GET /scenarios``."""
        return 200, {"scenarios": self.envs.describe()}

    def openapi(self, call: Call) -> tuple[int, Any]:
        """``GET /openapi.json``."""
        return 200, document([route.operation for route in ROUTES], __version__)

    def listing(self, call: Call) -> tuple[int, Any]:
        """``GET /envs``: the caller's own environments."""
        envs = [
            {"env_id": e.env_id, "scenario": e.scenario.id} for e in self.envs.owned(call.owner)
        ]
        return 200, {"envs": envs}

    def create(self, call: Call) -> tuple[int, Any]:
        """``POST /envs``."""
        what = 'a scenario id, e.g. "a/B-v1"'
        scenario_id = _field(_json_body(call.body), "scenario", (str,), what)
        entry = self.envs.create(scenario_id, call.owner)
        tools = entry.scenario.tool_schemas()
        return 201, {"env_id": entry.env_id, "scenario": entry.scenario.id, "tools": tools}

    def reset(self, call: Call) -> tuple[int, Any]:
        """``POST /envs/ENV_ID/reset``."""
        body = _json_body(call.body)
        seed = _field(body, "seed", (int, type(None)), "a non-negative integer or null")
        options = _field(body, "options", (dict, type(None)), "a JSON object or null")
        with self.envs.use(call.env_id, call.owner) as entry:
            observation, info = entry.env.reset(seed=seed, options=options)
        return 200, {"observation": observation, "info": info}

    def step(self, call: Call) -> tuple[int, Any]:
        """``POST /envs/ENV_ID/step``."""
        what = "the assistant's raw text (a string) or an assistant message (an object)"
        action = _field(_json_body(call.body), "action", (str, dict), what)
        with self.envs.use(call.env_id, call.owner) as entry:
            observation, reward, terminated, truncated, info = entry.env.step(action)
        return 200, {
            "observation": observation,
            "reward": float(reward),
            "terminated": bool(terminated),
            "truncated": bool(truncated),
            "info": info,
        }

    def episode(self, call: Call) -> tuple[int, Any]:
        """``GET /envs/ENV_ID/episode``: the current (usually finished) episode's record."""
        with self.envs.use(call.env_id, call.owner) as entry:
            record = entry.base.episode()
        return 200, record.to_dict()

    def end(self, call: Call) -> tuple[int, Any]:
        """``POST /envs/ENV_ID/end``: end the running episode now and score it as it stands."""
        body = _json_body(call.body)
        termination = _field(body, "termination", (str, type(None)), '"time_limit" or null')
        if termination not in (None, "time_limit"):
            raise _bad(f"field 'termination' must be \"time_limit\" or null, got {termination!r}")
        with self.envs.use(call.env_id, call.owner) as entry:
            if not entry.base.running:
                raise ResetNeeded("no episode is running (it ended, or reset() was not called)")
            reward, info = entry.base.end_episode("time_limit")
        return 200, {"reward": float(reward), "info": info}

    def oracle(self, call: Call) -> tuple[int, Any]:
        """``GET /envs/ENV_ID/oracle``: the gold turns, computed beside the episode's state."""
        if not self.oracle_enabled:
            raise Problem(
                403,
                "OracleDisabled",
                "this server does not hand out the gold turns; start it with --oracle "
                "(make_server(oracle=True)) to roll out the Oracle policy, and never where an "
                "agent under training can reach it",
            )
        with self.envs.use(call.env_id, call.owner) as entry:
            base, scenario = entry.base, entry.scenario
            if base.task is None:
                raise ResetNeeded("the oracle needs an episode; call reset() first")
            if scenario.oracle is None:
                raise Problem(
                    404, "NoOracle", f"scenario {scenario.id!r} has no oracle (Scenario.oracle)"
                )
            actions = base.gold_turns()
        return 200, {"actions": actions}

    def delete(self, call: Call) -> tuple[int, Any]:
        """``DELETE /envs/ENV_ID``."""
        self.envs.delete(call.env_id, call.owner)
        return 200, {"closed": call.env_id}


@dataclass(frozen=True)
class Route:
    """One endpoint: what the OpenAPI document says of it, and the method that answers it."""

    operation: Operation
    handler: _Handler
    pattern: re.Pattern[str]


def _route(
    handler: _Handler,
    endpoint: str,
    summary: str,
    answer: str,
    *,
    body: str | None = None,
    status: int = 200,
    errors: tuple[int, ...] = (),
) -> Route:
    method, path = endpoint.split(" ")
    operation = Operation(method, path, summary, status, answer, body, errors)
    pattern = re.compile(re.escape(path).replace(r"\{env_id\}", "([0-9A-Za-z_-]+)"))
    return Route(operation, handler, pattern)


_ENV = (404, 409)  # no such environment for this token; no episode running
ROUTES: list[Route] = [
    _route(RolloutApp.health, "GET /health", "Liveness and capacity", "Health"),
    _route(RolloutApp.scenarios, "GET /scenarios", "The served scenarios", "Scenarios"),
    _route(RolloutApp.openapi, "GET /openapi.json", "This document", "OpenAPI"),
    _route(RolloutApp.listing, "GET /envs", "This token's environments", "EnvList"),
    _route(
        RolloutApp.create,
        "POST /envs",
        "Create an environment",
        "Created",
        body="CreateBody",
        status=201,
        errors=(404, 411, 429),
    ),
    _route(RolloutApp.delete, "DELETE /envs/{env_id}", "Close one", "Closed", errors=(404,)),
    _route(
        RolloutApp.reset,
        "POST /envs/{env_id}/reset",
        "Start an episode",
        "ResetAnswer",
        body="ResetBody",
        errors=(*_ENV, 411),
    ),
    _route(
        RolloutApp.step,
        "POST /envs/{env_id}/step",
        "Play one assistant turn",
        "StepAnswer",
        body="StepBody",
        errors=(*_ENV, 411),
    ),
    _route(
        RolloutApp.end,
        "POST /envs/{env_id}/end",
        "End the episode now, scored as it stands",
        "EndAnswer",
        body="EndBody",
        errors=(*_ENV, 411),
    ),
    _route(RolloutApp.episode, "GET /envs/{env_id}/episode", "The record", "Episode", errors=_ENV),
    _route(
        RolloutApp.oracle,
        "GET /envs/{env_id}/oracle",
        "The gold turns (--oracle only)",
        "OracleAnswer",
        errors=(403, *_ENV),
    ),
]


def _match(method: str, target: str) -> tuple[Route, str]:
    """The route of ``method`` on ``target``, and the environment id in it."""
    path = target.split("?", 1)[0].rstrip("/") or "/"
    allowed: list[str] = []
    for route in ROUTES:
        found = route.pattern.fullmatch(path)
        if found is None:
            continue
        if route.operation.method == method:
            return route, found.group(1) if route.pattern.groups else ""
        allowed.append(route.operation.method)
    if allowed:
        methods = ", ".join(allowed)
        shown = method if method.isascii() and method.isprintable() else repr(method)
        raise Problem(
            405,
            "MethodNotAllowed",
            f"{shown[:20]} is not allowed on {path}; use {methods}",
            {"Allow": methods},
        )
    raise Problem(
        404,
        "UnknownPath",
        f"no endpoint {path[:200]!r}; the endpoints are /health, /scenarios, /openapi.json, "
        "/envs and /envs/ENV_ID[/reset|/step|/end|/episode|/oracle] (see docs/server.md)",
    )


class RolloutServer(HTTPServer):
    """The env server: :class:`~simenv.server.transport.HTTPServer` serving a :class:`RolloutApp`.

    Closing it (:meth:`server_close`) also closes every environment.

    Attributes:
        app: The endpoints.
        generated_token: The token made at start when none was given (to print), else None.
    """

    app: RolloutApp

    def __init__(
        self,
        address: tuple[str, int],
        app: RolloutApp,
        *,
        generated_token: str | None = None,
        **transport: Any,
    ) -> None:
        """Bind ``address`` (``(host, port)``; port 0 picks a free one) and serve ``app``."""
        check_exposure(address[0], app.auth)
        super().__init__(address, app, max_body_bytes=MAX_BODY_BYTES, **transport)
        self.generated_token = generated_token

    def server_close(self) -> None:
        """Stop listening, end the connections and close every environment."""
        super().server_close()
        self.app.envs.close_all()


def make_server(
    scenarios: list[str] | None = None,
    host: str = "127.0.0.1",
    port: int = 8000,
    max_envs: int = 64,
    idle_timeout_s: float = 600.0,
    oracle: bool = False,
    *,
    tokens: Sequence[str] | None = None,
    auth: bool = True,
    workers: int = 64,
    max_connections: int = 512,
    request_timeout_s: float = 30.0,
    keepalive_timeout_s: float = KEEPALIVE_TIMEOUT_S,
) -> RolloutServer:
    """Build (and bind) an env server; run it with ``serve_forever()`` or :func:`serve`.

    Args:
        scenarios: The scenario ids (or files) to serve; ``None`` or empty: every registered one.
        host: The address to bind; 127.0.0.1 keeps it on this machine.
        port: The port; 0 picks a free one (read it from ``server.url``).
        max_envs: How many environments may be live at once (429 beyond).
        idle_timeout_s: Environments without a request for this long are closed.
        oracle: Serve the scenarios' gold turns at ``/envs/ENV_ID/oracle`` (for scripted
            evaluation with the Oracle policy). Off by default: an agent that reaches the
            server could read the answers.
        tokens: The bearer tokens accepted; None: those of ``SIMENV_SERVER_TOKENS``, else one
            generated (``server.generated_token``).
        auth: False switches authentication off; allowed on a loopback host only.
        workers: Threads answering requests at once (steps run there).
        max_connections: Connections open at once (503 ``Busy`` beyond).
        request_timeout_s: Time for a request to arrive whole (408 beyond) and be answered.
        keepalive_timeout_s: A kept-alive connection idle this long is closed.

    Raises:
        RegistrationError: A scenario id cannot be found.
        ValueError: Authentication off on a host that is not loopback, or a token too short.
    """
    accepted, generated = resolve_tokens(tokens, auth=auth)
    token_auth = TokenAuth(accepted)
    check_exposure(host, token_auth)
    served: dict[str, Scenario] = {}
    for name in scenarios or registry():
        scenario = load_scenario(name)
        served[scenario.id] = scenario
    table = EnvTable(served, max_envs=max_envs, idle_timeout_s=idle_timeout_s)
    return RolloutServer(
        (host, port),
        RolloutApp(table, token_auth, oracle=oracle),
        generated_token=accepted[0] if generated else None,
        workers=workers,
        max_connections=max_connections,
        request_timeout_s=request_timeout_s,
        keepalive_timeout_s=keepalive_timeout_s,
    )


def serve(
    scenarios: list[str] | None = None,
    host: str = "127.0.0.1",
    port: int = 8000,
    max_envs: int = 64,
    idle_timeout_s: float = 600.0,
    oracle: bool = False,
    *,
    on_ready: Callable[[RolloutServer], None] | None = None,
    **options: Any,
) -> None:
    """Run an env server until Ctrl-C, then close every environment.

    Takes :func:`make_server`'s arguments; ``on_ready`` is called with the bound server before
    it starts answering (e.g. to print its URL and a generated token).
    """
    server = make_server(scenarios, host, port, max_envs, idle_timeout_s, oracle, **options)
    try:
        if on_ready is not None:
            on_ready(server)
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
