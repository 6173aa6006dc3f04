"""Cross-token access: a second token must not see, use or delete the first token's environments.

The server runs as ``simenv serve`` with two tokens, A and B. A creates ``--envs`` environments
and starts an episode in each; B then tries every environment route on each of them (reset,
step, end, episode, oracle, delete) and lists its own. Every answer to B must be the 404 an id
that never existed gets, word for word but for the id; B's list must hold none of A's; and A's
environments must be intact afterwards (A can still step and read each). Then every route is
tried with no token and with a wrong one: each must be a 401 with ``WWW-Authenticate``. Any
difference is a leak; the run exits with 1 if there is one.

Run: ``python bench/server_tokens.py [--envs N] [--json]``.
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
from http.client import HTTPConnection
from typing import Any
from urllib.parse import urlsplit

from _report import machine
from _server import served

SCENARIO = "support/Refunds-v1"
ROUTES = [
    ("POST", "/envs/{}/reset", {"seed": 1}),
    ("POST", "/envs/{}/step", {"action": "hello"}),
    ("POST", "/envs/{}/end", {}),
    ("GET", "/envs/{}/episode", None),
    ("GET", "/envs/{}/oracle", None),
    ("DELETE", "/envs/{}", None),
]


def call(
    url: str, token: str | None, method: str, path: str, body: Any = None
) -> tuple[int, dict[str, str], Any]:
    parts = urlsplit(url)
    connection = HTTPConnection(parts.hostname or "", parts.port, timeout=60)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        data = None if body is None else json.dumps(body).encode()
        connection.request(method, path, body=data, headers=headers)
        response = connection.getresponse()
        answer = json.loads(response.read() or b"null")
        return response.status, {k.lower(): v for k, v in response.getheaders()}, answer
    finally:
        connection.close()


def check(url: str, a: str, b: str, envs: int) -> dict[str, Any]:
    leaks: list[str] = []
    tried = 0
    owned = []
    for _ in range(envs):
        status, _, answer = call(url, a, "POST", "/envs", {"scenario": SCENARIO})
        assert status == 201, answer
        owned.append(answer["env_id"])
        call(url, a, "POST", f"/envs/{answer['env_id']}/reset", {"seed": 3})
    unknown = secrets.token_hex(8)
    for env_id in owned:
        for method, template, body in ROUTES:
            tried += 1
            expected = call(url, b, method, template.format(unknown), body)
            got = call(url, b, method, template.format(env_id), body)
            same = json.dumps(expected[2]).replace(unknown, "ID") == json.dumps(got[2]).replace(
                env_id, "ID"
            )
            if got[0] != 404 or expected[0] != 404 or not same:
                leaks.append(f"B {method} {template}: {got[0]} {json.dumps(got[2])[:200]}")
    status, _, listing = call(url, b, "GET", "/envs")
    tried += 1
    if status != 200 or {e["env_id"] for e in listing["envs"]} & set(owned):
        leaks.append(f"B's GET /envs lists A's environments: {listing}")
    for env_id in owned:  # A's environments are untouched
        tried += 1
        status, _, answer = call(url, a, "POST", f"/envs/{env_id}/step", {"action": "hello"})
        if status != 200 or call(url, a, "GET", f"/envs/{env_id}/episode")[0] != 200:
            leaks.append(f"A's {env_id} was changed by B: {status} {answer}")
    for token in (None, "wrong-" + secrets.token_urlsafe(24)):
        for method, template, body in [
            *ROUTES,
            ("GET", "/envs", None),
            ("GET", "/scenarios", None),
            ("POST", "/envs", {"scenario": SCENARIO}),
        ]:
            tried += 1
            status, headers, answer = call(url, token, method, template.format(owned[0]), body)
            if status != 401 or "www-authenticate" not in headers:
                leaks.append(f"token {token!r} {method} {template}: {status} {answer}")
    tried += 1  # the one open route: liveness only, nothing about anyone's environments
    status, _, answer = call(url, None, "GET", "/health", None)
    if status != 200 or set(answer) != {"ok", "simenv"}:
        leaks.append(f"GET /health without a token: {status} {answer}")
    for env_id in owned:
        call(url, a, "DELETE", f"/envs/{env_id}")
    return {
        "environments": envs,
        "requests_checked": tried,
        "leaks": len(leaks),
        "examples": leaks[:5],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--envs", type=int, default=8)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    a, b = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    with served([SCENARIO], "--oracle", "--token", b, token=a) as running:
        figures = check(running.url, a, b, args.envs)
    figures["machine"] = machine()
    print(json.dumps(figures) if args.json else json.dumps(figures, indent=2))
    sys.exit(1 if figures["leaks"] else 0)


if __name__ == "__main__":
    main()
