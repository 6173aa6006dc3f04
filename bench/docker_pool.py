"""Docker sandboxes: tool-call latency and episode start, each against its slow alternative.

Tool calls: a request to the server inside the container (what ``DockerSandbox`` does) against
``docker exec`` (``exec_run``) of the same thing. Episode start: ``DockerSandbox.setup`` from the
warm pool (take a container, write the task's files) when the pool has caught up, and back to
back (every start waits for the replacement of the last), against a cold create + start (+
remove) without a pool. All numbers are medians over many runs.

Needs a Docker engine and the base image (``simenv docker build-base``).
Run: ``python bench/docker_pool.py [--write]``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
from _report import machine, write_section

from simenv.tools.docker import DockerSandbox, shutdown_pools
from simenv.tools.docker.container import create, remove
from simenv.types import Task

TASK = Task("t0", "Go.")
FILES = {"solution.py": "def f(x):\n    return x + 1\n", "test_solution.py": "print('ok')\n" * 20}


class Bench(DockerSandbox):
    pool_size = 2

    def files(self, rng: np.random.Generator, task: Task) -> dict[str, str | bytes]:
        return dict(FILES)


def _median_ms(fn: Callable[[], object], n: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def _quiet(sandbox_class: type[DockerSandbox]) -> None:
    """Wait until the pool is full and idle (no creation or removal running)."""
    pool = sandbox_class.pool()
    pool.drain()
    while pool.ready() < pool.size:
        time.sleep(0.05)
        pool.drain()
    time.sleep(0.2)


def tool_call_rows() -> list[str]:
    sandbox = Bench()
    sandbox.setup(np.random.default_rng(0), TASK)
    _quiet(Bench)
    container = sandbox.pool().client.containers.get(sandbox.container_id)
    read = _median_ms(lambda: sandbox.read_file("solution.py"), 300)
    true = _median_ms(lambda: sandbox.exec(["true"]), 100)
    python = _median_ms(lambda: sandbox.exec(["python3", "-c", "pass"]), 30)
    read_exec = _median_ms(lambda: container.exec_run(["cat", "/work/solution.py"]), 30)
    true_exec = _median_ms(lambda: container.exec_run(["true"]), 30)
    python_exec = _median_ms(lambda: container.exec_run(["python3", "-c", "pass"]), 30)
    sandbox.close()
    return [
        f"| tool call: read a file (`read_file`) | **{read:.2f} ms** | "
        f"`exec_run(['cat', ...])` {read_exec:.1f} ms ({read_exec / read:.0f}x) |",
        f"| tool call: run a program (`exec(['true'])`) | **{true:.2f} ms** | "
        f"`exec_run(['true'])` {true_exec:.1f} ms ({true_exec / true:.0f}x) |",
        f"| tool call: run Python (`exec(['python3', '-c', 'pass'])`) | {python:.1f} ms | "
        f"`exec_run` of the same {python_exec:.1f} ms |",
    ]


def start_rows() -> list[str]:
    idle = []
    for i in range(30):
        _quiet(Bench)
        start = time.perf_counter()
        sandbox = Bench()
        sandbox.setup(np.random.default_rng(i), TASK)
        idle.append(time.perf_counter() - start)
        sandbox.close()
    _quiet(Bench)
    churn = []
    began = time.perf_counter()
    for i in range(30):
        start = time.perf_counter()
        sandbox = Bench()
        sandbox.setup(np.random.default_rng(i), TASK)
        churn.append(time.perf_counter() - start)
        sandbox.close()
    per_episode = (time.perf_counter() - began) / 30
    shutdown_pools()
    pool = Bench.pool()
    client, spec = pool.client, pool.spec
    cold, removals = [], []
    for _ in range(15):
        start = time.perf_counter()
        container = create(client, spec, 60.0)
        container.request("write", files={})
        cold.append(time.perf_counter() - start)
        start = time.perf_counter()
        container.close()
        remove(client, container.id)
        removals.append(time.perf_counter() - start)
    shutdown_pools()
    warm = statistics.median(idle) * 1e3
    cold_ms = statistics.median(cold) * 1e3
    remove_ms = statistics.median(removals) * 1e3
    return [
        f"| episode start from the warm pool (take + write files), pool caught up | **{warm:.1f} "
        f"ms** | cold create + start {cold_ms:.0f} ms + remove {remove_ms:.0f} ms "
        f"({(cold_ms + remove_ms) / warm:.0f}x) |",
        f"| episode start back to back (each waits for the last one's replacement) | "
        f"{statistics.median(churn) * 1e3:.0f} ms | one container per {per_episode * 1e3:.0f} ms "
        "(the engine's create + remove rate) |",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args()
    Bench.prewarm()
    rows = [
        "| measurement | median | against |",
        "|---|---|---|",
        *tool_call_rows(),
        *start_rows(),
    ]
    report = "\n".join(rows)
    print(report)
    if args.write:
        write_section("docker", f"`python bench/docker_pool.py --write` ({machine()})\n\n{report}")


if __name__ == "__main__":
    main()
