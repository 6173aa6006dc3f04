"""Per-step cost of an environment behind the HTTP rollout server, against the same one in-process.

The scenario is env_step.py's trivial one (one tool that adds to a counter), so the numbers are
the server's and the client's own cost: HTTP over a kept-alive 127.0.0.1 connection, JSON both
ways, the server's locks, and the environment's step. The server runs as `simenv serve` in its own
process, as it would in use; `RemoteEnv` steps it from this one. Rounds are interleaved
(in-process, then remote, then again); the fastest round of each is shown (the least disturbed
by other load on a noisy machine) with the median of the rounds beside it.

A second table times whole runs: :func:`simenv.rollouts.run` playing ``--episodes`` eval
episodes of support/Refunds-v1 with the Oracle policy (batch 64), with its environments in this
process against a :class:`~simenv.server.RemotePool` on the same server (started with
``--oracle``, 16 stepping threads), in 3 interleaved rounds.

Run: ``python bench/server_step.py [--steps N] [--rounds R] [--episodes E] [--write]``;
``--write`` updates the section of docs/benchmarks.md between the ``server_step`` markers.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import gymnasium as gym
from _report import machine, write_section
from env_step import TRIVIAL, timed_steps

import simenv
from simenv.server import RemoteEnv
from simenv.types import Action, Message

Env = gym.Env[list[Message], Action]
SCENARIO = TRIVIAL  # what `simenv serve bench/server_step.py` serves
RUN_SCENARIO = "support/Refunds-v1"  # served too, for the whole runs
BENCH = Path(__file__).resolve().parent


@contextmanager
def served() -> Iterator[str]:
    """`simenv serve` of this file's SCENARIO on a free port, in its own process; yields its URL."""
    command = [sys.executable, "-m", "simenv.cli", "serve", __file__, RUN_SCENARIO, "--oracle"]
    command += ["--port", "0", "--no-auth"]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(BENCH), os.environ.get("PYTHONPATH", "")]),
    }
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env) as proc:
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            found = re.search(r"http://\S+:\d+", line)
            if found is None:
                raise SystemExit(f"the server did not start: {line!r}")
            yield found.group(0)
        finally:
            proc.send_signal(signal.SIGINT)
            proc.communicate(timeout=60)


def resets(env: Env, n: int) -> float:
    """Seconds per ``reset``."""
    start = time.perf_counter()
    for i in range(n):
        env.reset(seed=i)
    return (time.perf_counter() - start) / n


def whole_runs(url: str, episodes: int, rounds: int = 3) -> list[str]:
    """Episodes per second of ``run()`` with local environments and with a ``RemotePool``."""
    from simenv.rollouts import plan_jobs, run
    from simenv.rollouts.policies import Oracle
    from simenv.server import RemotePool

    scenario = simenv.load_scenario(RUN_SCENARIO)
    jobs = plan_jobs(scenario, limit=episodes)
    rates: dict[str, list[float]] = {"local": [], "remote": []}
    for _ in range(rounds):
        start = time.perf_counter()
        local = run(scenario, Oracle(), jobs)
        rates["local"].append(len(local) / (time.perf_counter() - start))
        start = time.perf_counter()
        with RemotePool(url, scenario) as pool:
            remote = run(scenario, Oracle(), jobs, pool=pool)
        rates["remote"].append(len(remote) / (time.perf_counter() - start))
    turns = sum(e.turns for e in local) / len(local)
    best = {k: max(v) for k, v in rates.items()}
    return [
        f"| `run()`: {episodes} {RUN_SCENARIO} eval episodes, Oracle, batch 64 "
        f"({turns:.1f} turns each) | best of {rounds} rounds | median |",
        "|---|---|---|",
        f"| environments in this process | {best['local']:,.0f} episodes/s "
        f"| {statistics.median(rates['local']):,.0f} episodes/s |",
        f"| environments on the server (`RemotePool`) | {best['remote']:,.0f} episodes/s "
        f"| {statistics.median(rates['remote']):,.0f} episodes/s |",
        f"| server against in-process | {best['remote'] / best['local']:.2f}x | |",
    ]


def _us(values: list[float]) -> tuple[float, float]:
    return min(values) * 1e6, statistics.median(values) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--episodes", type=int, default=200, help="episodes per whole run")
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args()
    local = simenv.make(TRIVIAL)
    times: dict[str, list[float]] = {
        "local": [],
        "remote": [],
        "local_reset": [],
        "remote_reset": [],
    }
    with served() as url:
        with RemoteEnv(url, TRIVIAL.id) as remote:
            timed_steps(local, 1000), timed_steps(remote, 200)  # warm-up
            for _ in range(args.rounds):
                times["local"].append(timed_steps(local, args.steps))
                times["remote"].append(timed_steps(remote, args.steps))
                times["local_reset"].append(resets(local, args.steps // 5))
                times["remote_reset"].append(resets(remote, args.steps // 5))
        runs = whole_runs(url, args.episodes)  # every slot of the server free for the pool
    local.close()
    (lf, lm), (rf, rm) = _us(times["local"]), _us(times["remote"])
    (lrf, lrm), (rrf, rrm) = _us(times["local_reset"]), _us(times["remote_reset"])
    rows = [
        "| per call (trivial scenario) | fastest round | median of rounds | added by HTTP |",
        "|---|---|---|---|",
        f"| `step`, in-process (`simenv.make`) | {lf:.1f} µs | {lm:.1f} µs | |",
        f"| **`step` through `RemoteEnv`**, kept-alive connection | {rf:.0f} µs | {rm:.0f} µs "
        f"| **{rf - lf:.0f} µs** |",
        f"| `reset`, in-process | {lrf:.1f} µs | {lrm:.1f} µs | |",
        f"| `reset` through `RemoteEnv` | {rrf:.0f} µs | {rrm:.0f} µs | {rrf - lrf:.0f} µs |",
    ]
    report = "\n".join(rows) + "\n\n" + "\n".join(runs)
    print(report)
    if args.write:
        write_section(
            "server_step",
            f"`python bench/server_step.py --write` ({args.rounds} interleaved rounds of "
            f"{args.steps} steps; {machine()})\n\n{report}",
        )


if __name__ == "__main__":
    main()
