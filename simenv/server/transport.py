"""HTTP/1.1 for simenv's servers: an asyncio front that reads requests, a bounded pool that answers.

One event-loop thread holds every connection: it reads each request line, its headers and its
body, with time limits, and writes the answers. The answer itself (the application's code: an
environment's step, a tool call) runs on a bounded pool of ``workers`` threads. So an idle or
slow connection costs a socket and a little memory, never a thread; a slow client cannot tie up
a worker; and the threads of the process stay ``workers`` plus one whatever the clients do.

What the transport answers itself, always with the JSON error shape
``{"error": {"type", "message"}}`` and then closing the connection (the request could not be
read, so the next one cannot be found):

======  ======================  ===============================================================
status  type                    when
======  ======================  ===============================================================
400     ``BadRequest``          a request line that is not ``METHOD TARGET HTTP/1.x`` (an
                                HTTP/0.9 ``GET /`` included), bad headers or ``Content-Length``
408     ``RequestTimeout``      the request did not arrive whole within ``request_timeout_s``
411     ``LengthRequired``      a ``Transfer-Encoding`` (chunked) body: send ``Content-Length``
413     ``BodyTooLarge``        a body over ``max_body_bytes``
414     ``URITooLong``          a request line over 64 KiB
431     ``HeadersTooLarge``     a header line over 64 KiB, over 100 headers
503     ``Busy``                ``max_connections`` connections are open already
505     ``VersionNotSupported`` HTTP/2 or later on this port
======  ======================  ===============================================================

A kept-alive connection idle for ``keepalive_timeout_s`` is closed (clients reconnect). The
application is one method (:class:`App`), so another server (the agent gateway) reuses all of this.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from email.utils import formatdate
from http import HTTPStatus
from typing import Any, Protocol

from simenv import __version__
from simenv.tools.base import json_default

__all__ = ["App", "HTTPServer", "Request", "Response", "encode_json", "error_body"]

MAX_LINE_BYTES = 65536
"""Longest request line or header line."""

MAX_HEADERS = 100
"""Most header lines in one request."""

_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # what a method may be (RFC 9110)

_ENCODE = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=json_default).encode
# For an answer holding a lone surrogate (a tool's text, a file name that is not UTF-8): its
# \udXXX escapes are valid JSON and decode to the same strings.
_ENCODE_ASCII = json.JSONEncoder(separators=(",", ":"), default=json_default).encode


def error_body(kind: str, message: str) -> dict[str, Any]:
    """The JSON error shape every simenv server answers with."""
    return {"error": {"type": kind, "message": message}}


def encode_json(payload: Any) -> tuple[bytes, str | None]:
    """``payload`` as UTF-8 JSON bytes, or ``(error JSON, why)`` when it cannot be encoded."""
    try:
        return _ENCODE(payload).encode(), None
    except UnicodeEncodeError:  # a lone surrogate: not UTF-8, but JSON can escape it
        return _ENCODE_ASCII(payload).encode(), None
    except (ValueError, TypeError, RecursionError) as exc:  # a circular or odd info dict
        why = f"the answer is not JSON: {type(exc).__name__}: {exc}"
        return _ENCODE(error_body("InternalError", why)).encode(), why


@dataclass
class Request:
    """One HTTP request, read whole.

    Attributes:
        method: The method as sent (``GET``, ``POST``, or any other token).
        path: The target, query string included.
        headers: Header names in lower case; repeated headers joined with ``", "``.
        body: The body (empty without one).
    """

    method: str
    path: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


@dataclass
class Response:
    """What the application answers: a status, a JSON payload and extra headers."""

    status: int
    payload: Any
    headers: dict[str, str] = field(default_factory=dict)


class App(Protocol):
    """The application behind the transport: one request in, one response out."""

    def respond(self, request: Request) -> Response:
        """Answer ``request``; must not raise (a failure is a 500 :class:`Response`)."""
        ...


class _Refused(Exception):
    """A request the transport answers itself, then closes the connection."""

    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(message)
        self.status, self.kind, self.message = status, kind, message


class HTTPServer:
    """An HTTP/1.1 server bound at creation, serving ``app`` until :meth:`shutdown`.

    Args:
        address: ``(host, port)``; port 0 picks a free one (read it from :attr:`url`).
        app: The application.
        workers: Threads answering requests at once (the application's code runs there).
        max_connections: Connections open at once; one more is answered 503 ``Busy``.
        request_timeout_s: Time for a request to arrive whole once its first byte did, and for
            its answer to be taken by the client; 408 (or a closed connection) beyond.
        keepalive_timeout_s: A kept-alive connection idle this long is closed.
        max_body_bytes: Largest request body (413 above it).
        backlog: The listen queue: connections the kernel holds before they are accepted.

    Attributes:
        app: The application.
        server_address: The bound ``(host, port)``.
    """

    def __init__(
        self,
        address: tuple[str, int],
        app: App,
        *,
        workers: int = 64,
        max_connections: int = 512,
        request_timeout_s: float = 30.0,
        keepalive_timeout_s: float = 120.0,
        max_body_bytes: int = 8 * 1024 * 1024,
        backlog: int = 1024,
    ) -> None:
        for name, value in [("workers", workers), ("max_connections", max_connections)]:
            if value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")
        for name, seconds in [
            ("request_timeout_s", request_timeout_s),
            ("keepalive_timeout_s", keepalive_timeout_s),
        ]:
            if not 0 < seconds < float("inf"):
                raise ValueError(f"{name} must be a positive number of seconds, got {seconds}")
        self.app = app
        self.workers = workers
        self.max_connections = max_connections
        self.request_timeout_s = request_timeout_s
        self.keepalive_timeout_s = keepalive_timeout_s
        self.max_body_bytes = max_body_bytes
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.socket = socket.create_server(address, family=family, backlog=backlog)
        self.server_address: tuple[str, int] = self.socket.getsockname()[:2]
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="simenv-http")
        self._writers: set[asyncio.StreamWriter] = set()
        self._state = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._stop_requested = False
        self._stopped = threading.Event()
        self._stopped.set()

    @property
    def url(self) -> str:
        """The base URL, e.g. ``http://127.0.0.1:8000``."""
        host, port = str(self.server_address[0]), self.server_address[1]
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{port}"

    @property
    def connections(self) -> int:
        """Connections open now."""
        return len(self._writers)

    # ------------------------------------------------------------------ lifecycle
    def serve_forever(self) -> None:
        """Answer requests in this thread until :meth:`shutdown` (from another thread)."""
        self._stopped.clear()
        try:
            asyncio.run(self._serve())
        finally:
            self._stopped.set()

    def shutdown(self) -> None:
        """Stop :meth:`serve_forever` (its open connections are dropped) and wait for it."""
        with self._state:
            self._stop_requested = True
            if self._loop is not None and self._stop is not None:
                self._loop.call_soon_threadsafe(self._stop.set)
        self._stopped.wait()

    def server_close(self) -> None:
        """Stop listening and let the workers finish (the application's own cleanup is extra)."""
        with self._state:
            self._stop_requested = True
            if self._loop is not None and self._stop is not None:
                self._loop.call_soon_threadsafe(self._stop.set)
        self._stopped.wait()
        self.socket.close()
        self._pool.shutdown(wait=True, cancel_futures=True)

    def drop_connections(self) -> int:
        """End every open connection now (as a restart would); return how many."""
        loop, writers = self._loop, list(self._writers)
        if loop is None:
            return 0
        for writer in writers:
            loop.call_soon_threadsafe(writer.transport.abort)
        return len(writers)

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        with self._state:
            if self._stop_requested:
                return
            self._loop, self._stop = loop, stop
        server = await asyncio.start_server(
            self._connection, sock=self.socket, limit=MAX_LINE_BYTES
        )
        try:
            await stop.wait()
        finally:
            with self._state:
                self._loop = self._stop = None
            server.close()
            for writer in list(self._writers):
                writer.transport.abort()

    # ------------------------------------------------------------------ one connection
    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        if sock is not None:  # headers and body go out in one write; no Nagle delay for it
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if len(self._writers) >= self.max_connections:
            message = (
                f"{len(self._writers)} connections are open, the server's limit "
                f"(max_connections={self.max_connections}); retry in a moment, close idle "
                "clients, or start the server with a higher --max-connections"
            )
            self._write(writer, 503, error_body("Busy", message), {"Retry-After": "1"}, True)
            await self._close(reader, writer)
            return
        self._writers.add(writer)
        try:
            while await self._exchange(reader, writer):
                pass
        except (ConnectionError, OSError, asyncio.IncompleteReadError, TimeoutError):
            pass  # the client went away, or would not take its answer in time
        except asyncio.CancelledError:  # the server is stopping: this connection ends here
            pass
        finally:
            self._writers.discard(writer)
            await self._close(reader, writer)

    async def _exchange(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Read one request, answer it; whether the connection stays open."""
        try:  # idle between requests: no thread waits, only this coroutine
            async with asyncio.timeout(self.keepalive_timeout_s):  # a timer, not a task
                first = await reader.readexactly(1)
        except (TimeoutError, asyncio.IncompleteReadError):
            return False
        deadline = time.monotonic() + self.request_timeout_s
        try:
            async with asyncio.timeout(self.request_timeout_s):
                request, keep_alive = await self._read(first, reader, writer)
        except _Refused as refused:
            self._write(writer, refused.status, error_body(refused.kind, refused.message), {}, True)
            await self._drain(writer, deadline)
            return False
        except TimeoutError:
            message = (
                f"the request did not arrive whole within {self.request_timeout_s:g} s; send "
                "the request line, the headers and the body without pausing"
            )
            self._write(writer, 408, error_body("RequestTimeout", message), {}, True)
            await self._drain(writer, deadline)
            return False
        loop = asyncio.get_running_loop()
        status, body, headers = await loop.run_in_executor(self._pool, self._answer, request)
        head_only = request.method == "HEAD"
        self._write_raw(writer, status, body, headers, not keep_alive, head_only)
        await self._drain(writer, time.monotonic() + self.request_timeout_s)
        return keep_alive

    async def _read(
        self, first: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> tuple[Request, bool]:
        line = first + await self._line(reader, 414, "URITooLong", "the request line")
        words = line.decode("latin-1").split()
        if len(words) != 3:
            what = "an HTTP/0.9 request" if len(words) == 2 else f"the request line {line[:80]!r}"
            raise _Refused(
                400,
                "BadRequest",
                f"{what} is not HTTP/1.x; send `METHOD /path HTTP/1.1`, headers, a blank line",
            )
        method, path, version = words
        if not _TOKEN.fullmatch(method):
            raise _Refused(400, "BadRequest", f"the method {method[:20]!r} is not an HTTP token")
        if version not in ("HTTP/1.1", "HTTP/1.0"):
            if version.startswith("HTTP/") and version[5:6].isdigit() and version[5:6] != "1":
                raise _Refused(505, "VersionNotSupported", f"{version} is not served; use HTTP/1.1")
            raise _Refused(
                400, "BadRequest", f"bad protocol version {version[:20]!r}; use HTTP/1.1"
            )
        headers = await self._headers(reader)
        connection = headers.get("connection", "").lower()
        if version == "HTTP/1.1":
            keep_alive = "close" not in connection
        else:
            keep_alive = "keep-alive" in connection
        if "transfer-encoding" in headers:
            raise _Refused(
                411, "LengthRequired", "send the body with a Content-Length header, not chunked"
            )
        length = self._content_length(headers)
        if length > self.max_body_bytes:
            if length <= 4 * self.max_body_bytes:  # read it away, so the answer reaches the client
                left = length
                while left > 0:
                    left -= len(await reader.readexactly(min(1 << 16, left)))
            raise _Refused(
                413,
                "BodyTooLarge",
                f"the body is {length} bytes, over the server's limit of {self.max_body_bytes} "
                "bytes; an action that large is not a chat turn: cut it down",
            )
        if length and headers.get("expect", "").lower() == "100-continue":
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        body = await reader.readexactly(length) if length else b""
        return Request(method, path, headers, body), keep_alive

    async def _line(self, reader: asyncio.StreamReader, status: int, kind: str, what: str) -> bytes:
        try:
            return await reader.readuntil(b"\n")
        except asyncio.LimitOverrunError:
            raise _Refused(
                status, kind, f"{what} is over {MAX_LINE_BYTES} bytes; send a shorter one"
            ) from None

    async def _headers(self, reader: asyncio.StreamReader) -> dict[str, str]:
        headers: dict[str, str] = {}
        for _ in range(MAX_HEADERS + 1):
            raw = await self._line(reader, 431, "HeadersTooLarge", "a header line")
            text = raw.decode("latin-1").rstrip("\r\n")
            if not text:
                return headers
            name, colon, value = text.partition(":")
            if not colon or not name or name != name.strip() or " " in name:
                raise _Refused(400, "BadRequest", f"malformed header line {text[:80]!r}")
            key, value = name.lower(), value.strip()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        raise _Refused(431, "HeadersTooLarge", f"over {MAX_HEADERS} header lines")

    @staticmethod
    def _content_length(headers: dict[str, str]) -> int:
        text = headers.get("content-length", "0")
        values = {v.strip() for v in text.split(",")}
        if len(values) != 1 or not (value := values.pop()).isdigit() or len(value) > 18:
            raise _Refused(400, "BadRequest", f"Content-Length {text[:40]!r} is not a byte count")
        return int(value)

    # ------------------------------------------------------------------ answers
    def _answer(self, request: Request) -> tuple[int, bytes, dict[str, str]]:
        """Run in a worker thread: the application's answer, encoded."""
        try:
            response = self.app.respond(request)
        except Exception as exc:  # the application promises not to raise; be safe anyway
            message = f"unexpected {type(exc).__name__}: {exc} (a bug in the server)"
            response = Response(500, error_body("InternalError", message))
        body, failure = encode_json(response.payload)
        return (500 if failure else response.status), body, response.headers

    def _write(
        self,
        writer: asyncio.StreamWriter,
        status: int,
        payload: Any,
        headers: dict[str, str],
        close: bool,
    ) -> None:
        self._write_raw(writer, status, encode_json(payload)[0], headers, close, False)

    @staticmethod
    def _write_raw(
        writer: asyncio.StreamWriter,
        status: int,
        body: bytes,
        headers: dict[str, str],
        close: bool,
        head_only: bool,
    ) -> None:
        try:
            reason = HTTPStatus(status).phrase
        except ValueError:
            reason = ""
        lines = [
            f"HTTP/1.1 {status} {reason}",
            f"Server: simenv/{__version__}",
            f"Date: {formatdate(usegmt=True)}",
            "Content-Type: application/json; charset=utf-8",
            f"Content-Length: {len(body)}",
            *(f"{name}: {value}" for name, value in headers.items()),
        ]
        if close:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        writer.write(head if head_only else head + body)  # one write: one TCP segment

    async def _drain(self, writer: asyncio.StreamWriter, deadline: float) -> None:
        if writer.transport.get_write_buffer_size():  # usually all sent already: no wait
            async with asyncio.timeout(max(0.001, deadline - time.monotonic())):
                await writer.drain()

    @staticmethod
    async def _close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Close after the answer, without losing it.

        Half-close first and read away what the client still sends (at most a second of it):
        unread bytes would make the kernel reset the connection before the client reads.
        """
        with contextlib.suppress(OSError, TimeoutError, asyncio.CancelledError, RuntimeError):
            if not writer.is_closing() and writer.can_write_eof():
                writer.write_eof()
                async with asyncio.timeout(1.0):
                    while await reader.read(1 << 16):
                        pass
        writer.close()
        with contextlib.suppress(OSError, TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(writer.wait_closed(), 1.0)
