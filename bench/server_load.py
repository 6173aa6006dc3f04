"""Many sessions at once against the env server: every one must complete; p99 step latency.

``--sessions`` threads (200 by default) each open their own ``RemoteEnv`` at the same instant
(a barrier releases them together, so the connections arrive as one burst), then reset, play
``--steps`` turns (a call to a tool that does not exist: the scenario answers with a tool error,
so any scenario works and every step is a full round trip) and close. The server runs as
``simenv serve`` in its own process (or is the one at ``--url``); this process is the clients.
A failure is any exception a session raised; the run exits with 1 if there is one.

Run: ``python bench/server_load.py [--sessions N] [--steps S] [--url URL --token T] [--json]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from collections import Counter
from contextlib import nullcontext
from typing import Any

from _report import machine
from _server import Served, client_token, served, threads

from simenv.server import RemoteEnv

ACTION = '<tool_call>{"name": "no_such_tool", "arguments": {}}</tool_call>'


def session(url: str, token: str, scenario: str, steps: int, seed: int) -> list[float]:
    """One client's session; the seconds each of its steps took."""
    latencies = []
    with RemoteEnv(url, scenario, token=token or None, timeout_s=120) as env:
        env.reset(seed=seed)
        for _ in range(steps):
            start = time.perf_counter()
            _, _, terminated, truncated, _ = env.step(ACTION)
            latencies.append(time.perf_counter() - start)
            if terminated or truncated:
                env.reset(seed=seed)
        env.episode()
    return latencies


def load(
    url: str, token: str, scenario: str, sessions: int, steps: int, pid: int = 0
) -> dict[str, Any]:
    """Run ``sessions`` sessions at once against ``url``; the figures."""
    barrier = threading.Barrier(sessions)
    latencies: list[float] = []
    failures: Counter[str] = Counter()
    examples: dict[str, str] = {}
    lock = threading.Lock()
    peak = [threads(pid)]

    def one(i: int) -> None:
        barrier.wait()
        try:
            mine = session(url, token, scenario, steps, i)
        except Exception as exc:
            with lock:
                failures[type(exc).__name__] += 1
                examples.setdefault(type(exc).__name__, str(exc)[:300])
            return
        with lock:
            latencies.extend(mine)

    workers = [threading.Thread(target=one, args=(i,)) for i in range(sessions)]
    start = time.perf_counter()
    for worker in workers:
        worker.start()
    while any(w.is_alive() for w in workers):
        peak[0] = max(peak[0], threads(pid))
        time.sleep(0.05)
    wall = time.perf_counter() - start
    ordered = sorted(latencies) or [0.0]
    return {
        "sessions": sessions,
        "completed": sessions - sum(failures.values()),
        "failures": dict(failures),
        "examples": examples,
        "steps": len(latencies),
        "step_p50_ms": round(statistics.median(ordered) * 1e3, 2),
        "step_p99_ms": round(ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] * 1e3, 2),
        "step_max_ms": round(ordered[-1] * 1e3, 2),
        "wall_s": round(wall, 2),
        "server_threads_peak": peak[0] or None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, default=200)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--scenario", default="support/Refunds-v1")
    parser.add_argument("--url", help="a running server (default: start `simenv serve`)")
    parser.add_argument("--token", help="its token (default: SIMENV_SERVER_TOKEN)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    if args.url:
        server = nullcontext(Served(args.url, 0, client_token(args.token)))
    else:
        options = ["--max-envs", str(args.sessions + 16)]
        server = served([args.scenario], *options, token=args.token)
    with server as running:
        figures = load(
            running.url, running.token, args.scenario, args.sessions, args.steps, running.pid
        )
    figures["machine"] = machine()
    if args.json:
        print(json.dumps(figures))
    else:
        for key, value in figures.items():
            print(f"{key:>20}: {value}")
    sys.exit(1 if figures["failures"] else 0)


if __name__ == "__main__":
    main()
