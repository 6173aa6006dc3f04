"""The gateway over HTTP (standard library only): the agent plane, the job-runtime wire, admin.

Agent plane (OpenAI-compatible; the trajectory is named by a bearer trajectory key, by the
job-runtime headers with a SigV4 signature, or by the path prefix ``/trajectories/{id}``):

========  ==========================================  ==========================================
method    path                                        answer
========  ==========================================  ==========================================
GET       /health                                     ``{"ok", "model", "paused", ...}`` (open)
GET       [/trajectories/ID]/v1/models                the served model
POST      [/trajectories/ID]/v1/chat/completions      ``chat.completion``, or SSE with ``stream``
========  ==========================================  ==========================================

Job runtime (botocore's ``sagemakerjobruntime``, SigV4-signed, ``X-Amzn-SageMaker-Job-Arn``):
``POST /sample`` and ``/sample-with-response-stream`` (``X-Amzn-SageMaker-Trajectory-Id``, the
chat-completions JSON as the body, the answer as the body), ``POST /complete-rollout``
(``{"TrajectoryId", "Status", "ClientToken"}``) and ``POST /update-reward``
(``{"TrajectoryId", "Rewards", "ClientToken"}``), both answering ``{}``. Errors carry the
exception name in ``x-amzn-ErrorType`` and ``{"Message"}``.

Admin plane (``Authorization: Bearer ADMIN_KEY``): ``POST /admin/trajectories`` (201
``{"trajectory_id", "key", ...}``), ``GET /admin/trajectories[?state=S]``,
``GET|DELETE /admin/trajectories/ID``, ``POST /admin/trajectories/ID/complete``
(``{"status", "client_token"}``) and ``.../reward`` (``{"rewards", "client_token"}``),
``POST /admin/pause`` (``{"wait_s"}``), ``POST /admin/resume``, ``PUT /admin/policy-version``
(``{"version"}``), ``POST /admin/take`` (``{"limit"}``: rewarded and failed episodes).

Every key is compared in constant time (:func:`~simenv.server.gateway.compare.same`).
Connections are served by a bounded pool of threads (``max_workers``) behind a listen backlog
of 1,024; nothing answers 500 on bad input. docs/gateway.md is the full contract.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import socket
import sys
import threading
import traceback
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

from simenv import __version__
from simenv.server.auth import is_loopback
from simenv.server.gateway.chat import parse_request
from simenv.server.gateway.compare import same
from simenv.server.gateway.errors import Denied, GatewayError, Invalid, NotFound
from simenv.server.gateway.service import Gateway
from simenv.server.gateway.sigv4 import verify
from simenv.server.gateway.trajectories import Limits, Trajectory

__all__ = ["MAX_BODY_BYTES", "GatewayServer", "make_server"]

MAX_BODY_BYTES = 8 * 1024 * 1024
"""Largest request body accepted (413 above it)."""

JOB_RUNTIME = frozenset(
    {"/sample", "/sample-with-response-stream", "/complete-rollout", "/update-reward"}
)
_PREFIX = re.compile(r"^/trajectories/([^/]{1,256})(/v1/.*)$")
_ADMIN_ONE = re.compile(r"^/admin/trajectories/([^/]{1,256})$")
_ADMIN_ACT = re.compile(r"^/admin/trajectories/([^/]{1,256})/(complete|reward)$")


class _Status(GatewayError):
    """A plain HTTP refusal (405, 411, 413) in the gateway's error shape."""

    aws_type = "ValidationException"
    openai_type = "invalid_request_error"

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status  # type: ignore[misc]


class _Answer:
    """What a route returns: a status, a JSON payload or a stream, and headers."""

    def __init__(
        self,
        status: int = 200,
        payload: Any = None,
        stream: Iterable[bytes] | None = None,
        content_type: str = "application/json",
    ) -> None:
        self.status, self.payload, self.stream, self.content_type = (
            status,
            payload,
            stream,
            content_type,
        )


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: GatewayServer
    timeout = 60.0  # a kept-alive connection idle this long is closed

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def do_PATCH(self) -> None:
        self._serve("PATCH")

    def log_message(self, format: str, *args: Any) -> None:
        pass

    # ----------------------------------------------------------------- plumbing
    def _serve(self, method: str) -> None:
        path = self.path.partition("?")[0]
        aws = path in JOB_RUNTIME
        try:
            body = self._read_body()
            answer = self._route(method, path, body)
        except GatewayError as exc:
            self._send_error(exc, aws)
        except Exception:  # a bug: answer and keep serving
            traceback.print_exc(file=sys.stderr)
            self._send_error(GatewayError("internal error in the gateway (see its log)"), aws)
        else:
            self._send(answer)

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self.close_connection = True
            raise _Status(411, "send the body with a Content-Length (chunked bodies are refused)")
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            self.close_connection = True
            raise _Status(400, "Content-Length must be an integer") from None
        if length < 0 or length > MAX_BODY_BYTES:
            self.close_connection = True
            raise _Status(413, f"the body is over {MAX_BODY_BYTES} bytes")
        return self.rfile.read(length) if length else b""

    def _send(self, answer: _Answer) -> None:
        if answer.stream is None:
            self._write(
                answer.status, {"Content-Type": answer.content_type}, _encode(answer.payload)
            )
            return
        headers = {
            "Content-Type": answer.content_type,
            "Transfer-Encoding": "chunked",
            "Cache-Control": "no-cache",
        }
        try:
            self._write(answer.status, headers, None)
            for chunk in answer.stream:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):  # the client hung up mid-stream
            self.close_connection = True
        finally:  # a client that hung up: the turn still ends (and frees its trajectory)
            close = getattr(answer.stream, "close", None)
            if close is not None:
                close()

    def _write(self, status: int, headers: dict[str, str], body: bytes | None) -> None:
        """The head and the body in one write: one system call, one TCP segment."""
        reason = self.responses.get(status, ("",))[0]
        lines = [
            f"{self.protocol_version} {status} {reason}",
            f"Server: simenv-gateway/{__version__}",
            f"Date: {self.date_time_string()}",
            *(f"{name}: {value}" for name, value in headers.items()),
        ]
        if body is not None:
            lines.append(f"Content-Length: {len(body)}")
        if self.close_connection:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        self.wfile.write(head + (body or b""))

    def _send_error(self, exc: GatewayError, aws: bool) -> None:
        headers = {**exc.headers(), "Content-Type": "application/json"}
        with contextlib.suppress(OSError):
            self._write(exc.status, headers, _encode(exc.aws_body() if aws else exc.openai_body()))

    # ----------------------------------------------------------------- routing
    def _route(self, method: str, path: str, body: bytes) -> _Answer:
        gateway = self.server.gateway
        if path == "/health":
            self._method(method, "GET")
            return _Answer(
                payload={
                    "ok": True,
                    "simenv": __version__,
                    "model": gateway.policy.name,
                    "paused": gateway.paused,
                    "policy_version": gateway.policy_version,
                    "trajectories": len(gateway.store),
                }
            )
        if path in JOB_RUNTIME:
            self._method(method, "POST")
            return self._job_runtime(path, body)
        if path.startswith("/admin/") or path == "/admin":
            self._admin_auth()
            return self._admin(method, path, body)
        named: str | None = None
        match = _PREFIX.match(path)
        if match:
            named, path = match.groups()
        if path == "/v1/models":
            self._method(method, "GET")
            self._agent(named, body, method)
            return _Answer(payload={"object": "list", "data": [self._model()]})
        if path == "/v1/chat/completions":
            self._method(method, "POST")
            trajectory = self._agent(named, body, method)
            return self._chat(trajectory, _json(body), stream=None)
        raise NotFound(f"no route {path[:200]!r}; see docs/gateway.md for the endpoints")

    @staticmethod
    def _method(method: str, allowed: str) -> None:
        if method != allowed:
            raise _Status(405, f"use {allowed} on this path")

    def _model(self) -> dict[str, Any]:
        return {
            "id": self.server.gateway.policy.name,
            "object": "model",
            "created": 0,
            "owned_by": "simenv",
        }

    # ----------------------------------------------------------------- authentication
    def _bearer(self) -> str | None:
        value = self.headers.get("Authorization", "")
        scheme, _, token = value.partition(" ")
        return token.strip() if scheme.lower() == "bearer" and token.strip() else None

    def _signed(self, body: bytes) -> None:
        verify(self.server.gateway.aws, self.command, self.path, dict(self.headers.items()), body)

    def _agent(self, named: str | None, body: bytes, method: str) -> Trajectory:
        """The trajectory a /v1 call is for, authenticated (403) and existing (404)."""
        store = self.server.gateway.store
        header = self.headers.get("X-Amzn-SageMaker-Trajectory-Id")
        if self.headers.get("Authorization", "").startswith("AWS4-HMAC-SHA256"):
            self._signed(body)
            wanted = named or header
            if named and header and named != header:
                raise Invalid(
                    "the path and X-Amzn-SageMaker-Trajectory-Id name different trajectories"
                )
            if not wanted:
                raise Invalid(
                    "name the trajectory: X-Amzn-SageMaker-Trajectory-Id or /trajectories/ID"
                )
            return store.get(wanted)
        key = self._bearer()
        if key is None:
            raise Denied("Missing credentials: send Authorization: Bearer <trajectory key>.")
        trajectory = store.by_key(key)
        for wanted in (named, header):
            if wanted is not None and wanted != trajectory.id:
                raise Denied("This trajectory key belongs to another trajectory.")
        return trajectory

    def _admin_auth(self) -> None:
        key = self._bearer() or ""
        if not same(key, self.server.gateway.admin_key):
            raise Denied("The admin plane needs Authorization: Bearer <admin key>.")

    # ----------------------------------------------------------------- agent plane
    def _chat(self, trajectory: Trajectory, body: Any, stream: bool | None) -> _Answer:
        request = parse_request(body)
        if stream if stream is not None else request.stream:
            _, chunks = self.server.gateway.sample_stream(trajectory, request)
            return _Answer(stream=chunks, content_type="text/event-stream")
        _, answer = self.server.gateway.sample(trajectory, request)
        return _Answer(payload=answer)

    def _job_runtime(self, path: str, body: bytes) -> _Answer:
        gateway = self.server.gateway
        self._signed(body)
        gateway.check_job(self.headers.get("X-Amzn-SageMaker-Job-Arn"))
        if path in ("/sample", "/sample-with-response-stream"):
            trajectory_id = self.headers.get("X-Amzn-SageMaker-Trajectory-Id")
            _check_id(trajectory_id)
            trajectory = gateway.store.get(str(trajectory_id))
            return self._chat(trajectory, _json(body), stream=path != "/sample")
        fields = _json(body)
        if not isinstance(fields, dict):
            raise Invalid("the body must be a JSON object")
        trajectory_id = fields.get("TrajectoryId")
        _check_id(trajectory_id)
        token = fields.get("ClientToken")
        if token is not None and (not isinstance(token, str) or len(token) > 256):
            raise Invalid("ClientToken must be a string of at most 256 characters")
        if path == "/complete-rollout":
            status = fields.get("Status", "ready")
            if status not in ("ready", "failed"):
                raise Invalid("Status must be 'ready' or 'failed'")
            gateway.complete(str(trajectory_id), status, token)
            return _Answer(payload={})
        rewards = fields.get("Rewards")
        if not isinstance(rewards, list) or not all(_is_number(r) for r in rewards):
            raise Invalid("Rewards must be a list of numbers")
        gateway.reward(str(trajectory_id), [float(r) for r in rewards], token)
        return _Answer(payload={})

    # ----------------------------------------------------------------- admin plane
    def _admin(self, method: str, path: str, body: bytes) -> _Answer:
        gateway = self.server.gateway
        store = gateway.store
        if path == "/admin/trajectories":
            if method == "GET":
                state = _query(self.path).get("state")
                return _Answer(payload={"trajectories": store.ids(state)})
            self._method(method, "POST")
            trajectory, key = _create(gateway, _json(body) if body else {})
            return _Answer(201, {**trajectory.summary(), "key": key})
        match = _ADMIN_ONE.match(path)
        if match:
            trajectory = store.get(match.group(1))
            if method == "DELETE":
                store.drop(trajectory.id)
                return _Answer(payload={"dropped": trajectory.id})
            self._method(method, "GET")
            with trajectory.lock:
                record = trajectory.summary()
                if trajectory.state != "open":
                    record["episode"] = trajectory.episode(gateway.describe()).to_dict()
            return _Answer(payload=record)
        fields = _json(body) if body else {}
        if not isinstance(fields, dict):
            raise Invalid("the body must be a JSON object")
        act = _ADMIN_ACT.match(path)
        if act:  # the trainer completes and rewards for an agent that cannot (OpenAI-only)
            self._method(method, "POST")
            token = fields.get("client_token")
            if token is not None and not isinstance(token, str):
                raise Invalid("client_token must be a string")
            if act.group(2) == "complete":
                status = fields.get("status", "ready")
                if status not in ("ready", "failed"):
                    raise Invalid("status must be 'ready' or 'failed'")
                gateway.complete(act.group(1), status, token)
            else:
                rewards = fields.get("rewards")
                if not isinstance(rewards, list) or not all(_is_number(r) for r in rewards):
                    raise Invalid("rewards must be a list of numbers")
                gateway.reward(act.group(1), [float(r) for r in rewards], token)
            return _Answer(payload=gateway.store.get(act.group(1)).summary())
        routes: dict[str, Callable[[dict[str, Any]], Any]] = {
            "/admin/pause": lambda f: _pause(gateway, f),
            "/admin/resume": lambda f: _resume(gateway),
            "/admin/policy-version": lambda f: _version(gateway, f),
            "/admin/take": lambda f: _take(gateway, f),
        }
        if path not in routes:
            raise NotFound(f"no admin route {path[:200]!r}")
        if method not in ("POST", "PUT"):
            raise _Status(405, "use POST on this path")
        return _Answer(payload=routes[path](fields))


def _encode(payload: Any) -> bytes:
    try:
        return json.dumps(payload, ensure_ascii=False).encode()
    except UnicodeEncodeError:  # a lone surrogate: JSON's \\u escapes carry it
        return json.dumps(payload).encode()


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        raise Invalid("the body is not valid JSON") from None


def _query(target: str) -> dict[str, str]:
    from urllib.parse import parse_qsl

    return dict(parse_qsl(target.partition("?")[2]))


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_id(value: Any) -> None:
    if not isinstance(value, str) or not 1 <= len(value) <= 256:
        raise Invalid("TrajectoryId must be a string of 1 to 256 characters")


def _create(gateway: Gateway, fields: Any) -> tuple[Trajectory, str]:
    if not isinstance(fields, dict):
        raise Invalid("the body must be a JSON object")
    known = {
        "group",
        "scenario_id",
        "task_id",
        "seed",
        "sampling",
        "max_turns",
        "max_context_tokens",
        "metadata",
        "trajectory_id",
    }
    unknown = sorted(set(fields) - known)
    if unknown:
        raise Invalid(f"unknown fields {unknown}; known: {sorted(known)}")
    ints = {
        "group": None,
        "seed": 0,
        "max_turns": gateway.limits.max_turns,
        "max_context_tokens": gateway.limits.max_context_tokens,
    }
    values: dict[str, Any] = {}
    for name, default in ints.items():
        value = default if fields.get(name) is None else fields[name]
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise Invalid(f"{name} must be an integer")
        values[name] = value
    for name in ("scenario_id", "task_id", "trajectory_id"):
        if fields.get(name) is not None and not isinstance(fields[name], str):
            raise Invalid(f"{name} must be a string")
    if fields.get("trajectory_id") is not None:
        _check_id(fields["trajectory_id"])
        if "." in fields["trajectory_id"] or "/" in fields["trajectory_id"]:
            raise Invalid("trajectory_id must not contain '.' or '/'")
    sampling = fields.get("sampling") or {}
    if not isinstance(sampling, dict) or set(sampling) - {"temperature", "top_p", "max_tokens"}:
        raise Invalid("sampling may set temperature, top_p and max_tokens only")
    bounds = {"temperature": (0.0, 2.0), "top_p": (1e-9, 1.0), "max_tokens": (1, 1 << 20)}
    for name, value in sampling.items():
        low, high = bounds[name]
        if not _is_number(value) or not math.isfinite(value) or not low <= value <= high:
            raise Invalid(f"sampling.{name} must be a number in [{low}, {high}]")
    metadata = fields.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise Invalid("metadata must be an object")
    try:
        limits = Limits(values["max_turns"], values["max_context_tokens"])
    except ValueError as exc:
        raise Invalid(str(exc)) from None
    return gateway.create(
        limits=limits,
        sampling=sampling,
        group=values["group"],
        scenario_id=fields.get("scenario_id"),
        task_id=fields.get("task_id") or "",
        seed=values["seed"],
        metadata=metadata,
        trajectory_id=fields.get("trajectory_id"),
    )


def _pause(gateway: Gateway, fields: dict[str, Any]) -> dict[str, Any]:
    wait_s = fields.get("wait_s", 0)
    if not _is_number(wait_s) or not 0 <= wait_s <= 600:
        raise Invalid("wait_s must be a number of seconds in [0, 600]")
    gateway.pause()
    idle = gateway.wait_idle(float(wait_s)) if wait_s else gateway.in_flight == 0
    return {"paused": True, "idle": idle, "in_flight": gateway.in_flight}


def _resume(gateway: Gateway) -> dict[str, Any]:
    gateway.resume()
    return {"paused": False}


def _version(gateway: Gateway, fields: dict[str, Any]) -> dict[str, Any]:
    version = fields.get("version")
    if isinstance(version, bool) or not isinstance(version, int | str):
        raise Invalid("version must be an integer or a string")
    gateway.set_policy_version(version)
    return {"policy_version": version}


def _take(gateway: Gateway, fields: dict[str, Any]) -> dict[str, Any]:
    limit = fields.get("limit")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise Invalid("limit must be a non-negative integer")
    return {"episodes": [e.to_dict() for e in gateway.take(limit)]}


class GatewayServer(HTTPServer):
    """The gateway's HTTP server: a bounded pool of threads, a deep listen backlog.

    Args:
        address: ``(host, port)``; port 0 picks a free one.
        gateway: What it serves.
        max_workers: Threads serving connections (kept-alive connections hold one each).
    """

    request_queue_size = 1024
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], gateway: Gateway, max_workers: int = 256) -> None:
        self.gateway = gateway
        self._pool = ThreadPoolExecutor(max_workers, thread_name_prefix="gateway-http")
        self._open: set[Any] = set()
        self._open_lock = threading.Lock()
        super().__init__(address, _Handler)

    @property
    def url(self) -> str:
        """The base URL, e.g. ``http://127.0.0.1:8100``."""
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"

    def process_request(self, request: Any, client_address: Any) -> None:
        """Serve the connection on the pool (never a thread per connection)."""
        self._pool.submit(self._work, request, client_address)

    def _work(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self._open.add(request)
        with contextlib.suppress(OSError):  # no Nagle delay on small answers
            request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            with self._open_lock:
                self._open.discard(request)
            self.shutdown_request(request)

    def server_close(self) -> None:
        """Stop listening, end kept-alive connections, stop the pool, close the episode file."""
        super().server_close()
        with self._open_lock:
            for connection in self._open:
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)
        self._pool.shutdown(wait=True, cancel_futures=True)
        self.gateway.close()


def make_server(
    gateway: Gateway, host: str = "127.0.0.1", port: int = 0, max_workers: int = 256
) -> GatewayServer:
    """A listening gateway server (call ``serve_forever``).

    Raises:
        ValueError: ``host`` is beyond loopback and the gateway's admin key or AWS
            credentials were generated rather than given.
    """
    if not is_loopback(host) and gateway.generated_credentials:
        raise ValueError(
            f"refusing to listen on {host}: beyond loopback the gateway needs an admin key and "
            "AWS credentials given explicitly (--admin-key, --aws-access-key-id, "
            "--aws-secret-access-key)"
        )
    return GatewayServer((host, port), gateway, max_workers)
