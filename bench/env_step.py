"""Per-step cost of a simenv environment against the floor, and reset cost of the support desk.

The floor is a bare-Python loop doing the unavoidable work of one tool-using turn: find the
``<tool_call>`` block, decode its JSON, dispatch to the function, format the result as a tool
message. simenv's step does the same work plus the contract (argument validation, episode
record, wrappers). All three run in the same process, interleaved in many short rounds; the
fastest round of each is compared (the least disturbed by other load on a noisy machine), and
the median of the per-round ratios is shown beside it.

Run: ``python bench/env_step.py [--steps N] [--rounds R] [--write]``; ``--write`` updates the
section of docs/benchmarks.md between the ``env_step`` markers.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import time
from typing import Any

import numpy as np
from _report import machine, write_section

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


def env_steps(n: int, chunk: int = 1000, wrapped: bool = True) -> float:
    """Seconds per ``step`` on the trivial scenario, through ``simenv.make`` or bare."""
    env = simenv.make(TRIVIAL) if wrapped else simenv.MultiTurnEnv(TRIVIAL)
    return timed_steps(env, n, chunk)


def timed_steps(env: Any, n: int, chunk: int = 1000) -> float:
    """Seconds per ``step`` of ACTION (an episode is reset every ``chunk`` steps, off the clock)."""
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
    parser.add_argument("--steps", type=int, default=2_000)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args()
    floor, env, bare, reset = [], [], [], []
    env_steps(2000), floor_steps(2000), desk_resets(200)  # warm-up
    for _ in range(args.rounds):
        floor.append(floor_steps(args.steps))
        env.append(env_steps(args.steps))
        bare.append(env_steps(args.steps, wrapped=False))
        reset.append(desk_resets(args.steps // 4))
    f, e, u, r = (min(x) * 1e6 for x in (floor, env, bare, reset))
    ratios = [b / a for a, b in zip(floor, env, strict=True)]
    rows = [
        "| measurement | fastest round | against the floor |",
        "|---|---|---|",
        f"| floor: bare parse + dispatch + format, per turn | {f:.2f} µs | 1.00x |",
        f"| `MultiTurnEnv.step`, no wrappers, per turn | {u:.2f} µs | {u / f:.2f}x |",
        f"| `step` via `simenv.make` (3 wrappers), per turn | {e:.2f} µs | **{e / f:.2f}x** "
        f"(median of rounds {statistics.median(ratios):.2f}x) |",
        f"| support/Refunds-v1 `reset` via `simenv.make` | {r:.1f} µs | |",
    ]
    report = "\n".join(rows)
    print(report)
    if args.write:
        write_section(
            "env_step",
            f"`python bench/env_step.py --write` ({args.rounds} interleaved rounds of "
            f"{args.steps} steps; {machine()})\n\n{report}",
        )


if __name__ == "__main__":
    main()
