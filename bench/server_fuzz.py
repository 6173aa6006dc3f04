"""A schema-driven fuzzer for the env server: requests made from its own OpenAPI document.

It reads ``GET /openapi.json``, then sends ``--requests`` requests (10,000 by default), each on a
documented operation or a near miss of one: a body generated from the operation's schema (a
valid one, or one broken on purpose: a required field dropped, a value of the wrong type, deep
nesting, an integer over 4,300 digits, NaN, bytes that are not UTF-8, truncated JSON, a huge
string), on the fuzzer's own environments, other ids, odd paths and other methods. A step's
action is often a tool call of the scenario's own tools with arguments generated from their
schemas. A few requests in a hundred are raw malformed HTTP (an HTTP/0.9 line, bad headers).

It counts what must never happen: a 5xx, an answer that is not the JSON error shape, a status
the document does not list for the operation, and a body valid under the schema refused as
``BadRequest``. It exits with 1 if any is found. The server runs as ``simenv serve`` in its own
process (or is the one at ``--url``).

Run: ``python bench/server_fuzz.py [--requests N] [--seed S] [--url URL --token T] [--json]``.
"""

from __future__ import annotations

import argparse
import json
import random
import socket
import sys
import time
from collections import Counter
from contextlib import nullcontext
from http.client import HTTPConnection, HTTPException
from typing import Any
from urllib.parse import urlsplit

from _report import machine
from _server import Served, client_token, served

SCENARIOS = ["support/Refunds-v1", "sql/Analyst-v1"]
METHODS = ["GET", "POST", "DELETE", "PUT", "PATCH", "HEAD", "OPTIONS", "TRACE", "FOO"]
STRINGS = ["", "a", "é", "\u0000", "\ud83d", "💥" * 10, "x" * 5000, "<tool_call>", "null", "0"]


class Fuzzer:
    """One fuzzing session against one server."""

    def __init__(self, url: str, token: str, seed: int) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.rng = random.Random(seed)
        self.connection: HTTPConnection | None = None
        self.doc: dict[str, Any] = {}
        self.envs: list[str] = []
        self.tools: dict[str, list[dict[str, Any]]] = {}
        self.statuses: Counter[int] = Counter()
        self.findings: Counter[str] = Counter()
        self.examples: dict[str, str] = {}
        self.sent = 0

    # ------------------------------------------------------------------ HTTP
    def send(self, method: str, path: str, body: bytes | None) -> tuple[int, dict[str, str], bytes]:
        for attempt in range(2):
            if self.connection is None:
                self.connection = HTTPConnection(self.host, self.port, timeout=60)
            try:
                headers = dict(self.headers)
                if body is not None:
                    headers["Content-Type"] = "application/json"
                self.connection.request(method, path, body=body, headers=headers)
                response = self.connection.getresponse()
                data = response.read()
                if response.will_close:
                    self.connection.close()
                    self.connection = None
                return response.status, {k.lower(): v for k, v in response.getheaders()}, data
            except (OSError, HTTPException):
                self.connection = None
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def raw(self, data: bytes) -> bytes:
        with socket.create_connection((self.host, self.port), timeout=10) as sock:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks)

    def json(self, method: str, path: str, payload: Any = None) -> tuple[int, Any]:
        body = None if payload is None else json.dumps(payload).encode()
        status, _, data = self.send(method, path, body)
        return status, json.loads(data) if data else None

    # ------------------------------------------------------------------ schemas
    def resolve(self, schema: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in schema:
            schema = self.doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
        return schema

    def value(self, schema: dict[str, Any], depth: int = 0) -> Any:
        """A value valid under ``schema``."""
        schema = self.resolve(schema)
        rng = self.rng
        if "enum" in schema:
            return rng.choice(schema["enum"])
        if "oneOf" in schema:
            return self.value(rng.choice(schema["oneOf"]), depth)
        kinds = schema.get("type", ["string", "integer", "object", "array", "boolean", "null"])
        kind = rng.choice(kinds) if isinstance(kinds, list) else kinds
        if depth > 4 and kind in ("object", "array"):
            kind = "string"
        if kind == "string":
            return rng.choice(STRINGS) if rng.random() < 0.3 else self.text()
        if kind == "integer":
            low = schema.get("minimum", -(10**6))
            return rng.choice([low, low + 1, rng.randint(low, 10**6), 2**63, 10**50])
        if kind == "number":
            return rng.choice([0.0, -1.5, 1e308, 3, 1e-300])
        if kind == "boolean":
            return rng.random() < 0.5
        if kind == "null":
            return None
        if kind == "array":
            return [
                self.value(schema.get("items", {}), depth + 1) for _ in range(rng.randint(0, 3))
            ]
        out = {}
        props = schema.get("properties", {})
        for name, sub in props.items():
            if name in schema.get("required", []) or rng.random() < 0.6:
                out[name] = self.value(sub, depth + 1)
        if schema.get("additionalProperties", True) is not False and rng.random() < 0.1:
            out[self.text()[:10]] = self.value({}, depth + 1)
        return out

    def text(self) -> str:
        alphabet = 'abc xyz{}[]":,\\<>/0123456789é😀\n\t'
        return "".join(self.rng.choice(alphabet) for _ in range(self.rng.randint(0, 40)))

    def action(self, env_id: str) -> Any:
        """A step's action: often a call of one of the environment's tools."""
        tools = self.tools.get(env_id) or []
        if not tools or self.rng.random() < 0.3:
            return self.value(
                {"oneOf": [{"type": "string"}, {"$ref": "#/components/schemas/AssistantMessage"}]}
            )
        function = self.rng.choice(tools)["function"]
        arguments = self.value(function.get("parameters", {"type": "object"}))
        if self.rng.random() < 0.5:
            call = json.dumps({"name": function["name"], "arguments": arguments})
            return f"<tool_call>{call}</tool_call>"
        arguments_text = json.dumps(arguments) if self.rng.random() < 0.8 else self.text()
        return {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": function["name"], "arguments": arguments_text},
                }
            ],
        }

    def broken(self, schema: dict[str, Any] | None) -> bytes:
        """A body that breaks ``schema`` or JSON itself."""
        rng = self.rng
        valid = self.value(schema) if schema else {}
        choice = rng.randrange(12)
        if choice == 0 and isinstance(valid, dict) and valid:
            valid.pop(rng.choice(list(valid)))
            return json.dumps(valid).encode()
        if choice == 1 and isinstance(valid, dict):
            for key in list(valid) or ["action"]:
                valid[key] = rng.choice([[], {}, 3, -1, True, None, "x", 1.5])
            return json.dumps(valid).encode()
        if choice == 2:
            depth = rng.choice([130, 1000, 100_000])
            return ('{"action": ' + "[" * depth + "]" * depth + "}").encode()
        if choice == 3:
            return b'{"seed": ' + b"9" * rng.choice([4301, 5000, 100_000]) + b"}"
        if choice == 4:
            return rng.choice(
                [b'{"seed": NaN}', b'{"action": Infinity}', b'{"options": {"x": -Infinity}}']
            )
        if choice == 5:
            return rng.choice(
                [
                    b"\xff\xfe{}",
                    b'{"action": "\xc3\x28"}',
                    bytes(rng.randrange(256) for _ in range(40)),
                ]
            )
        if choice == 6:
            text = json.dumps(valid)
            return text[: rng.randrange(max(1, len(text)))].encode()
        if choice == 7:
            return json.dumps(rng.choice([[], "x", 3, None, [valid]])).encode()
        if choice == 8:
            return json.dumps({"action": "x" * 1_000_000, "scenario": "y" * 100_000}).encode()
        if choice == 9:
            return (
                b'{"action": "\\ud83d", "scenario": "\\udc00", "options": {"task_id": "\\ud800"}}'
            )
        if choice == 10:
            return b'{"a": 1, "a": 2, "seed": 1, "seed": -5}'
        return b""

    # ------------------------------------------------------------------ the run
    def setup(self) -> None:
        status, self.doc = self.json("GET", "/openapi.json")
        assert status == 200, self.doc
        self.operations = [
            (method.upper(), path, op)
            for path, item in self.doc["paths"].items()
            for method, op in item.items()
        ]

    def fresh_env(self) -> None:
        status, answer = self.json("POST", "/envs", {"scenario": self.rng.choice(SCENARIOS)})
        if status == 201:
            self.envs.append(answer["env_id"])
            self.tools[answer["env_id"]] = answer["tools"]
            self.json("POST", f"/envs/{answer['env_id']}/reset", {"seed": self.rng.randrange(100)})
        elif status == 429 and self.envs:
            self.json("DELETE", f"/envs/{self.envs.pop(0)}")

    def one(self) -> None:
        rng = self.rng
        self.sent += 1
        if rng.random() < 0.02:
            self.one_raw()
            return
        if len(self.envs) < 4 or rng.random() < 0.02:
            self.fresh_env()
        method, template, op = rng.choice(self.operations)
        documented = {int(s) for s in op["responses"]}
        env_id = rng.choice(self.envs)
        roll = rng.random()
        if roll < 0.08:
            env_id = rng.choice(["0123456789abcdef", "x" * 300, "a-b_c"])
        path = template.replace("{env_id}", env_id)
        if roll > 0.96:
            path = rng.choice(
                [
                    path + "/x",
                    path.upper(),
                    "/envs/%00",
                    "/" + "a" * 3000,
                    path + "?q=1",
                    "//" + path,
                ]
            )
            documented = set()
        if rng.random() < 0.05:
            method = rng.choice(METHODS)
            documented = set()
        schema = (
            (op.get("requestBody") or {})
            .get("content", {})
            .get("application/json", {})
            .get("schema")
        )
        valid = rng.random() < 0.55
        if valid and template.endswith("/step") and method == "POST":
            body: bytes | None = json.dumps({"action": self.action(env_id)}).encode()
        elif valid:
            body = json.dumps(self.value(schema)).encode() if schema else None
        else:
            body = self.broken(schema)
        status, headers, data = self.send(method, path, body)
        self.check(method, path, status, headers, data, documented, valid and documented != set())
        if method == "DELETE" and status == 200 and env_id in self.envs:
            self.envs.remove(env_id)

    def one_raw(self) -> None:
        data = self.rng.choice(
            [
                b"GET /\r\n",
                b"GET /health HTTP/9.9\r\n\r\n",
                b"\x00\x01\x02 / HTTP/1.1\r\n\r\n",
                b"POST /envs HTTP/1.1\r\nContent-Length: abc\r\n\r\n",
                b"POST /envs HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
                b"GET /health HTTP/1.1\r\nBad header\r\n\r\n",
                b"GET /health HTTP/1.1\r\n" + b"X: y\r\n" * 200 + b"\r\n",
                b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n",
            ]
        )
        answer = self.raw(data)
        status = int(answer[9:12]) if answer.startswith(b"HTTP/1.1 ") else 0
        head, _, body = answer.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")[1:]
        headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines)}
        if status == 505 and b"HTTP/9.9" in data:  # the right answer to a version it cannot speak
            status = 400
        self.check("RAW", data[:30].decode("latin-1"), status, headers, body, set(), False)

    def check(
        self,
        method: str,
        path: str,
        status: int,
        headers: dict[str, str],
        data: bytes,
        documented: set[int],
        valid: bool,
    ) -> None:
        self.statuses[status] += 1
        where = f"{method} {path[:60]}"
        if status >= 500 or status == 0:
            self.find(f"{status}", where, data)
        if documented and status not in documented:
            self.find("undocumented status", f"{where} -> {status}", data)
        if status >= 400 and method != "HEAD":
            try:
                error = json.loads(data)["error"]
                assert isinstance(error["type"], str) and isinstance(error["message"], str)
            except Exception:
                self.find("not the error shape", where, data)
            else:
                if valid and status == 400 and error["type"] == "BadRequest":
                    self.find("valid body refused", where, data)
        if status == 401 and "www-authenticate" not in headers:
            self.find("401 without WWW-Authenticate", where, data)
        if status == 405 and "allow" not in headers:
            self.find("405 without Allow", where, data)

    def find(self, kind: str, where: str, data: bytes) -> None:
        self.findings[kind] += 1
        self.examples.setdefault(kind, f"{where}: {data[:300]!r}")


def fuzz(url: str, token: str, requests: int, seed: int) -> dict[str, Any]:
    """``requests`` fuzzed requests against ``url``; the counts."""
    fuzzer = Fuzzer(url, token, seed)
    fuzzer.setup()
    start = time.perf_counter()
    while fuzzer.sent < requests:
        fuzzer.one()
    for env_id in fuzzer.envs:
        fuzzer.json("DELETE", f"/envs/{env_id}")
    return {
        "requests": fuzzer.sent,
        "seed": seed,
        "operations": len(fuzzer.operations),
        "statuses": dict(sorted(fuzzer.statuses.items())),
        "findings": dict(fuzzer.findings),
        "examples": fuzzer.examples,
        "wall_s": round(time.perf_counter() - start, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--url", help="a running server (default: start `simenv serve`)")
    parser.add_argument("--token", help="its token (default: SIMENV_SERVER_TOKEN)")
    parser.add_argument("--json", action="store_true", help="print the counts as JSON")
    args = parser.parse_args()
    if args.url:
        server = nullcontext(Served(args.url, 0, client_token(args.token)))
    else:
        server = served(SCENARIOS, "--oracle", "--request-timeout", "5", token=args.token)
    with server as running:
        figures = fuzz(running.url, running.token, args.requests, args.seed)
    figures["machine"] = machine()
    print(json.dumps(figures) if args.json else json.dumps(figures, indent=2, ensure_ascii=False))
    sys.exit(1 if figures["findings"] else 0)


if __name__ == "__main__":
    main()
