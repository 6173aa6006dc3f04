"""Per-step cost of a simenv environment against the floor, and reset cost of the support desk.

The floor is a bare-Python loop doing the unavoidable work of one tool-using turn: find the
``<tool_call>`` block, decode its JSON, dispatch to the function, format the result as a tool
message. simenv's step does the same work plus the contract (argument validation, episode
record, wrappers). Both run in the same process, interleaved in rounds, and the ratio of the
medians is reported, since this machine is noisy.

Run: ``python bench/env_step.py [--steps N] [--rounds R] [--write]``; ``--write`` updates the
section of docs/benchmarks.md between the ``env_step`` markers.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

import simenv
from simenv import Outcome, Sandbox, Scenario, Task, tool

ACTION = '<tool_call>{"name": "incr", "arguments": {"by": 2}}</tool_call>'


class Counter(Sandbox):
    def setup(self, rng: np.random.Generator, task: Task) -> None:
        self.value = 0


@tool(effect="write")
def incr(counter: Counter, by: int) -> dict[str, int]:
    """Add to the counter.

    Args:
        by: How much to add.
    """
    counter.value += by
    return {"value": counter.value}


def _zero(o: Outcome) -> float:
    return 0.0


TRIVIAL = Scenario(
    id="bench/Trivial-v1",
    system_prompt="Count.",
    tools=[incr],
    tasks=[Task("t0", "Count up.")],
    sandbox=Counter,
    reward=_zero,
    evaluate=_zero,
    max_turns=10**9,
)


def floor_steps(n: int) -> float:
    """Seconds per turn for the bare loop: parse, dispatch, format."""
    pattern = re.compile(r"<tool_call>(.*?)</tool_call>", re.DOTALL)
    state = {"value": 0}

    def incr_plain(state: dict[str, int], by: int) -> dict[str, int]:
        state["value"] += by
        return {"value": state["value"]}

    tools = {"incr": incr_plain}
    history: list[dict[str, Any]] = []
    start = time.perf_counter()
    for i in range(n):
        payload = json.loads(pattern.search(ACTION).group(1))  # type: ignore[union-attr]
        result = tools[payload["name"]](state, **payload["arguments"])
        history.append({"role": "assistant", "content": ACTION})
        history.append({"role": "tool", "tool_call_id": str(i), "content": json.dumps(result)})
    return (time.perf_counter() - start) / n


def env_steps(n: int, chunk: int = 1000) -> float:
    """Seconds per ``step`` of ``simenv.make`` (all wrappers) on the trivial scenario."""
    env = simenv.make(TRIVIAL)
    total = 0.0
    done = 0
    while done < n:
        env.reset(seed=done)
        start = time.perf_counter()
        for _ in range(min(chunk, n - done)):
            env.step(ACTION)
        total += time.perf_counter() - start
        done += chunk
    return total / n


def desk_resets(n: int) -> float:
    """Seconds per ``reset`` of support/Refunds-v1 through ``simenv.make``."""
    env = simenv.make("support/Refunds-v1")
    start = time.perf_counter()
    for i in range(n):
        env.reset(seed=i)
    return (time.perf_counter() - start) / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args()
    floor, env, reset = [], [], []
    env_steps(2000), floor_steps(2000), desk_resets(200)  # warm-up
    for _ in range(args.rounds):
        floor.append(floor_steps(args.steps))
        env.append(env_steps(args.steps))
        reset.append(desk_resets(args.steps // 10))
    f, e, r = (statistics.median(x) * 1e6 for x in (floor, env, reset))
    ratios = [b / a for a, b in zip(floor, env, strict=True)]
    machine = (
        f"{platform.machine()}, {platform.processor() or 'cpu'}, Python {sys.version.split()[0]}"
    )
    rows = [
        "| measurement | median | note |",
        "|---|---|---|",
        f"| floor: bare parse + dispatch + format, per turn | {f:.2f} µs | |",
        f"| simenv `step` via `simenv.make` (3 wrappers), per turn | {e:.2f} µs | "
        f"**{statistics.median(ratios):.2f}x** the floor (rounds: "
        f"{min(ratios):.2f}-{max(ratios):.2f}x) |",
        f"| support/Refunds-v1 `reset` via `simenv.make` | {r:.1f} µs | target < 100 µs |",
    ]
    report = "\n".join(rows)
    print(report)
    if args.write:
        cmd = "python bench/env_step.py --write"
        section = (
            f"<!-- env_step:start -->\n`{cmd}` ({args.rounds} rounds of {args.steps} steps, "
            f"medians; machine: {machine}, {_cores()} cores)\n\n{report}\n<!-- env_step:end -->"
        )
        _write_section(section, "env_step")


def _cores() -> int:
    import os

    return os.cpu_count() or 1


def _write_section(section: str, name: str) -> None:
    path = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    if start in text and end in text:
        text = text[: text.index(start)] + section + text[text.index(end) + len(end) :]
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    path.write_text(text)


if __name__ == "__main__":
    main()
