"""HTTP-backed tools: recorded through vcrpy, replayed from a hash index on the canonical request.

A tool that calls an HTTP API makes its requests through an :class:`HttpCassette` and declares
the same object as its replay::

    API = HttpCassette(DATA / "api.yaml", base_url="https://flights.example")

    @tool(effect="read", replay=API)
    def get_flight(code: str) -> dict:
        return API.get(f"/flights/{quote(code, safe='')}", headers=AUTH).json()

The tool's code runs in every mode; only ``API.get`` changes: in ``replay`` it answers from the
index, in ``record`` (and on a ``hybrid`` miss) it sends the request to the live service through
vcrpy, which records the interaction in its own cassette format (YAML, reviewable).

**Keys.** A request's key is ``METHOD /path?sorted-query`` relative to ``base_url`` (plus the
canonical JSON body, if any), with secret query parameters and body fields left out, e.g.
``GET /flights/SK100``. vcrpy's own replay scans every recorded interaction with its matchers
on each request (milliseconds at a few hundred interactions); here the cassette file is read
once into a dict on that key, so a replayed request is one lookup whatever the cassette's size.

**Secrets.** Recording goes through vcrpy's ``filter_headers``, ``filter_query_parameters`` and
``filter_post_data_parameters`` (auth headers, cookies, key/token parameters), then hooks that
keep only the ``Content-Type`` header on both sides, drop every query parameter or JSON body
field whose name looks like a secret, and redact secret-looking fields of JSON responses. A live
response is answered in its recorded form, so recording and replaying read the same.

**Live service.** ``base_url`` is the service's canonical address, written into the cassette.
Live requests go to ``live_url`` (``base_url`` unless set); ``live=`` is a context manager
factory that starts a local service and yields its URL, entered by :meth:`HttpCassette.serving`
and by every recording session, so ``simenv record`` can bring it up itself.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

from simenv.errors import InfraError, ScenarioError
from simenv.tools.replay.cassette import (
    ENV_VAR,
    SECRET_FIELD,
    MissPolicy,
    Recording,
    ReplayMode,
    Served,
    redact,
)
from simenv.tools.sandbox import canonical_json

__all__ = ["SECRET_HEADERS", "SECRET_PARAMS", "HttpCassette", "HttpResponse"]

SECRET_HEADERS = (
    "authorization",
    "proxy-authorization",
    "x-api-key",
    "api-key",
    "x-auth-token",
    "cookie",
    "set-cookie",
)
"""Headers vcrpy removes from every recorded request (``filter_headers``)."""
SECRET_PARAMS = (
    "api_key",
    "apikey",
    "key",
    "token",
    "access_token",
    "auth",
    "sig",
    "signature",
    "client_secret",
    "password",
)
"""Query parameters and form/JSON body fields vcrpy removes (plus any matching SECRET_FIELD)."""
_VCR_LOCK = threading.Lock()  # vcrpy patches the HTTP libraries process-wide: one at a time
_KEY_CACHE = 4096  # plain paths whose canonical key is remembered, per cassette
_SAFE = "/:@!$&'()*+,;=-._~%"  # kept as they are in a canonical path (escapes stay escaped)


@dataclass(frozen=True, slots=True)
class HttpResponse:
    """A recorded (or just recorded) HTTP response; read-only and shared between calls.

    Attributes:
        status: The HTTP status code.
        text: The body, decoded as UTF-8.
        headers: The headers kept in the cassette (``Content-Type`` by default), lower-case.
    """

    status: int
    text: str
    headers: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def ok(self) -> bool:
        """Whether the status is below 400."""
        return self.status < 400

    def json(self) -> Any:
        """The body parsed as JSON (a fresh object on every call)."""
        return json.loads(self.text)


@dataclass(frozen=True, slots=True)
class _Entry:
    response: HttpResponse
    structure: dict[str, Any]  # the key as fields, for the nearest-key report
    request: Any  # vcrpy's Request, as recorded
    recorded: dict[str, Any]  # vcrpy's response dict, as recorded


class _Capture:
    """A vcrpy persister that keeps one recording in memory instead of a file."""

    def __init__(self) -> None:
        self.saved: dict[str, Any] | None = None

    def load_cassette(self, cassette_path: str, serializer: Any) -> Any:
        from vcr.persisters.filesystem import CassetteNotFoundError

        raise CassetteNotFoundError()

    def save_cassette(
        self, cassette_path: str, cassette_dict: dict[str, Any], serializer: Any
    ) -> None:
        self.saved = cassette_dict


def _pairs(params: Mapping[str, Any] | Sequence[tuple[str, Any]] | None) -> list[tuple[str, str]]:
    if not params:
        return []
    items = params.items() if isinstance(params, Mapping) else params
    out = []
    for name, value in items:
        values = value if isinstance(value, list | tuple) else [value]
        out += [(str(name), str(v)) for v in values if v is not None]
    return out


class HttpCassette(Recording):
    """Recorded HTTP traffic (a vcrpy cassette) that tools request through.

    Args:
        path: The vcrpy cassette (YAML), created when recording.
        base_url: The service's canonical address, e.g. ``"https://api.example.com/v1"``; keys
            are relative to it and recorded URLs are rewritten to it.
        mode: ``replay``, ``record`` or ``hybrid``.
        miss: In ``replay`` mode, a miss is an agent-visible error (``agent``) or voids the
            episode (``infra``).
        live: Starts the live service for recording: a callable returning a context manager
            that yields the service's URL (e.g. a local server on a free port).
        timeout_s: Time limit of a live request.
        secret_headers: Request headers removed by vcrpy's ``filter_headers``.
        secret_params: Query parameters and body fields removed by vcrpy.
        keep_headers: The only headers written to the cassette (requests and responses).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        base_url: str,
        mode: ReplayMode = "replay",
        miss: MissPolicy = "agent",
        live: Callable[[], AbstractContextManager[str]] | None = None,
        timeout_s: float = 10.0,
        secret_headers: Sequence[str] = SECRET_HEADERS,
        secret_params: Sequence[str] = SECRET_PARAMS,
        keep_headers: Sequence[str] = ("content-type",),
    ) -> None:
        super().__init__(path, mode=mode, miss=miss)
        if not base_url.startswith(("http://", "https://")):
            raise ScenarioError(f"base_url must start with http:// or https://, not {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.live_url = self.base_url
        self.timeout_s = timeout_s
        self.secret_headers = tuple(h.lower() for h in secret_headers)
        self.secret_params = frozenset(p.lower() for p in secret_params)
        self.keep_headers = frozenset(h.lower() for h in keep_headers)
        self._live_hook = live
        self._index: dict[str, _Entry] | None = None
        self._backup: dict[str, _Entry] | None = None
        self._hooks: ExitStack | None = None
        self._local = threading.local()
        self._keys: dict[tuple[str, str], str] = {}  # (method, path) -> key, bounded

    # -------------------------------------------------------------- keys
    def _secret(self, name: str) -> bool:
        return name.lower() in self.secret_params or SECRET_FIELD.search(name) is not None

    def _strip(self, value: Any) -> Any:
        """``value`` without the fields whose names look secret (what vcrpy records)."""
        if isinstance(value, dict):
            return {k: self._strip(v) for k, v in value.items() if not self._secret(str(k))}
        if isinstance(value, list):
            return [self._strip(v) for v in value]
        return value

    def key(
        self,
        method: str,
        path: str,
        params: Mapping[str, Any] | Sequence[tuple[str, Any]] | None = None,
        body: Any = None,
    ) -> str:
        """The canonical key of a request: ``METHOD /path?sorted-query [canonical body]``.

        Args:
            method: The HTTP method.
            path: The path relative to ``base_url`` (may carry a query string).
            params: Query parameters (secret ones are left out of the key).
            body: The JSON body, if any (secret fields are left out).
        """
        if params is None and body is None and "?" not in path:
            rel = quote(path, safe=_SAFE, errors="surrogatepass")
            return f"{method} {rel}" if rel[:1] == "/" else f"{method} /{rel}"
        return self._key_of(method, path, _pairs(params), body)

    def _key_of(self, method: str, path: str, pairs: list[tuple[str, str]], body: Any) -> str:
        rel, _, query = path.partition("?")
        rel = quote(rel, safe=_SAFE, errors="surrogatepass")
        if rel[:1] != "/":
            rel = "/" + rel
        pairs = parse_qsl(query, keep_blank_values=True) + pairs
        kept = urlencode(sorted((k, v) for k, v in pairs if not self._secret(k)))
        key = f"{method} {rel}?{kept}" if kept else f"{method} {rel}"
        if body is not None:
            key += " " + canonical_json(self._strip(body))
        return key

    def _structure(self, key: str) -> dict[str, Any]:
        method, _, rest = key.partition(" ")
        target, _, body = rest.partition(" ")
        rel, _, query = target.partition("?")
        out: dict[str, Any] = {"method": method, "path": rel.strip("/").split("/")}
        if query:
            out["query"] = dict(parse_qsl(query, keep_blank_values=True))
        if body:
            out["body"] = json.loads(body)
        return out

    def _key_of_recorded(self, request: Any) -> str:
        uri = str(request.uri)
        where, _, query = uri.partition("?")
        rel = where[len(self.base_url) :] if where.startswith(self.base_url) else where
        body: Any = None
        raw = request.body
        if raw:
            text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
            try:
                body = json.loads(text)
            except ValueError:
                body = text
        pairs = parse_qsl(query, keep_blank_values=True)
        return self._key_of(str(request.method).upper(), f"{rel}", pairs, body)

    # -------------------------------------------------------------- the index
    def _entry(self, request: Any, recorded: dict[str, Any]) -> tuple[str, _Entry]:
        key = self._key_of_recorded(request)
        raw = recorded.get("body", {}).get("string", b"")
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw or "")
        headers = {
            str(k).lower(): str(v[0] if isinstance(v, list) and v else v)
            for k, v in (recorded.get("headers") or {}).items()
        }
        status = int(recorded.get("status", {}).get("code", 200))
        response = HttpResponse(status, text, MappingProxyType(headers))
        return key, _Entry(response, self._structure(key), request, recorded)

    def _read(self) -> dict[str, _Entry]:
        from vcr.serialize import deserialize
        from vcr.serializers import yamlserializer

        try:
            requests, responses, *_ = deserialize(self.path.read_text(), yamlserializer)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ScenarioError(
                f"cassette {self.path} is not a vcrpy cassette ({exc}); re-record it"
            ) from exc
        index: dict[str, _Entry] = {}
        for request, recorded in zip(requests, responses, strict=True):
            key, entry = self._entry(request, recorded)
            index.setdefault(key, entry)  # like vcrpy, the first recording of a request wins
        return index

    def _load(self) -> dict[str, _Entry]:
        with self._lock:
            if self._index is None:
                if self.path.exists():
                    self._index = self._read()
                elif self.mode == "replay":
                    raise ScenarioError(
                        f"cassette {self.path} does not exist; record it first "
                        f"(`simenv record SCENARIO_ID`, or {ENV_VAR}=record)"
                    )
                else:
                    self._index = {}
            return self._index

    def _write(self, index: Mapping[str, _Entry]) -> None:
        from vcr.serialize import serialize
        from vcr.serializers import yamlserializer

        ordered = [index[k] for k in sorted(index)]
        text = serialize(
            {"requests": [e.request for e in ordered], "responses": [e.recorded for e in ordered]},
            yamlserializer,
        )
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(text)
        tmp.replace(self.path)

    def keys(self) -> list[str]:
        """Every recorded request's key, sorted."""
        return sorted(self._load())

    def reload(self) -> None:
        """Forget the index; the cassette file is read again on the next request."""
        with self._lock:
            self._index = None

    def lookup(
        self,
        method: str,
        path: str,
        params: Mapping[str, Any] | Sequence[tuple[str, Any]] | None = None,
        json: Any = None,
    ) -> HttpResponse | None:
        """The recorded response to a request, or ``None``; never live, never tracked.

        For rewards and evaluations that check an answer against the recorded data.
        """
        entry = self._load().get(self.key(method.upper(), path, params, json))
        return entry.response if entry is not None else None

    # -------------------------------------------------------------- requests
    def get(
        self,
        path: str,
        params: Mapping[str, Any] | Sequence[tuple[str, Any]] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> HttpResponse:
        """``GET path`` (relative to ``base_url``); see :meth:`request`."""
        return self.request("GET", path, params=params, headers=headers)

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | Sequence[tuple[str, Any]] | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> HttpResponse:
        """Send a request, or answer it from the cassette, according to the mode.

        Args:
            method: The HTTP method, e.g. ``"GET"``.
            path: The path relative to ``base_url``; quote agent-given parts
                (``urllib.parse.quote(code, safe="")``).
            params: Query parameters.
            json: A JSON body.
            headers: Request headers (credentials go here; they never reach the cassette).

        Raises:
            ToolError: ``replay`` mode and nothing recorded (``miss="agent"``).
            InfraError: ``replay`` mode and nothing recorded (``miss="infra"``), or the live
                service failed.
        """
        method = method.upper()
        if params is None and json is None:  # the common case: canonical keys of plain paths
            key = self._keys.get((method, path))
            if key is None:
                key = self.key(method, path)
                if len(self._keys) < _KEY_CACHE:
                    self._keys[(method, path)] = key
        else:
            key = self.key(method, path, params, json)
        mode = self.mode
        index = self._index if self._index is not None else self._load()
        entry = index.get(key)
        if entry is not None and (mode != "record" or self._replays(mode, key)):
            if self._usage is not None:
                self._usage.hits.add(key)
            return entry.response
        tool = getattr(self._local, "tool", "?")
        if mode == "replay":
            candidates = [(k, e.structure) for k, e in index.items()]
            nearest = self._nearest.find(candidates, key, self._structure(key))
            raise self._miss(tool, key, nearest, what="request")
        response = self._live(method, path, _pairs(params), json, headers, key)
        self._local.live = True
        return response

    def _live(
        self,
        method: str,
        path: str,
        pairs: list[tuple[str, str]],
        body: Any,
        headers: Mapping[str, str] | None,
        key: str,
    ) -> HttpResponse:
        import requests
        import vcr

        rel, _, query = path.partition("?")
        url = self.live_url + "/" + quote(rel.lstrip("/"), safe=_SAFE)
        pairs = parse_qsl(query, keep_blank_values=True) + pairs
        capture = _Capture()
        recorder = vcr.VCR(
            record_mode="all",
            match_on=("method", "scheme", "host", "port", "path", "query", "body"),
            filter_headers=list(self.secret_headers),
            filter_query_parameters=sorted(self.secret_params),
            filter_post_data_parameters=sorted(self.secret_params),
            before_record_request=self._before_record_request,
            before_record_response=self._before_record_response,
            decode_compressed_response=True,
        )
        recorder.register_persister(capture)
        with self._lock:
            try:
                with _VCR_LOCK, recorder.use_cassette(f"memory:{self.path}"):
                    requests.request(
                        method,
                        url,
                        params=pairs or None,
                        json=body,
                        headers=dict(headers or {}),
                        timeout=self.timeout_s,
                    )
            except requests.RequestException as exc:
                raise InfraError(
                    f"the live service did not answer {method} {self.live_url}{rel} ({exc}); "
                    f"start it (or set live_url), or replay from {self.path}"
                ) from exc
            saved = capture.saved or {"requests": [], "responses": []}
            if not saved["requests"]:
                raise InfraError(f"vcrpy recorded nothing for {method} {url}")
            recorded_key, entry = self._entry(saved["requests"][0], saved["responses"][0])
            if recorded_key != key:  # the call and its recording must meet in replay
                raise ScenarioError(
                    f"the recorded request {recorded_key!r} does not match the call {key!r}; "
                    "pass query parameters in params= and keep base_url the service's address"
                )
            index = self._load()
            index[key] = entry
            if self._session is not None:
                self._session.add(key)
            else:
                self._write(index)
        return entry.response

    def _before_record_request(self, request: Any) -> Any:
        where, _, query = str(request.uri).partition("?")
        if where.startswith(self.live_url):
            where = self.base_url + where[len(self.live_url) :]
        kept = [(k, v) for k, v in parse_qsl(query, keep_blank_values=True) if not self._secret(k)]
        request.uri = f"{where}?{urlencode(kept)}" if kept else where
        request.headers = {
            k: v for k, v in request.headers.items() if k.lower() in self.keep_headers
        }
        if request.body:
            try:
                body = json.loads(request.body)
            except ValueError:
                return request
            request.body = json.dumps(self._strip(body), ensure_ascii=False)
        return request

    def _before_record_response(self, response: dict[str, Any]) -> dict[str, Any]:
        response["headers"] = {
            k: v for k, v in response.get("headers", {}).items() if k.lower() in self.keep_headers
        }
        body = response.get("body", {}).get("string")
        if body:
            try:
                value = json.loads(body)
            except ValueError:
                return response
            clean = redact(value)
            if clean != value:
                response["body"]["string"] = json.dumps(clean, ensure_ascii=False).encode()
        return response

    # -------------------------------------------------------------- sessions and tools
    @contextmanager
    def serving(self) -> Iterator[str]:
        """Start the live service (the ``live`` hook, if any); yields the URL live calls use."""
        if self._live_hook is None:
            yield self.live_url
            return
        previous = self.live_url
        with self._live_hook() as url:
            self.live_url = url.rstrip("/")
            try:
                yield self.live_url
            finally:
                self.live_url = previous

    def _begin(self, fresh: bool) -> None:
        current = self._index if self._index is not None else None
        if current is None:
            current = self._read() if self.path.exists() else {}
        self._backup = current
        self._index = {} if fresh else dict(current)
        self._hooks = ExitStack()
        try:
            self._hooks.enter_context(self.serving())
        except BaseException:
            self._index, self._backup, self._hooks = current, None, None
            raise

    def _end(self, ok: bool) -> None:
        hooks, self._hooks = self._hooks, None
        try:
            if hooks is not None:
                hooks.close()
        finally:
            if ok and self._index is not None:
                self._write(self._index)
            else:
                self._index = self._backup
            self._backup = None

    def wrap(self, name: str, fn: Callable[..., Any], visible: list[str]) -> Callable[..., Any]:
        """``fn`` with per-call provenance: ``live`` if one of its requests went live."""
        local = self._local

        def replayed(**kwargs: Any) -> Served:
            local.tool = name
            local.live = False
            value = fn(**kwargs)
            return Served(value, "live" if local.live else "replay")

        replayed.__name__ = getattr(fn, "__name__", name)
        replayed.__doc__ = fn.__doc__
        replayed.__wrapped__ = fn  # type: ignore[attr-defined]
        return replayed
