"""Rollout throughput (local vs Ray) and the runner's own overhead per model call.

Throughput: the oracle policy on every bundled scenario's eval split (x4 samples), episodes/s
and steps/s, with the local backend and with the Ray backend (2 actors) in the same run.

Overhead: a policy that answers instantly (a constant read-tool call, so episodes run to the
turn limit) drives N episodes through ``simenv.rollouts.run``; the same number of policy calls and
environment steps are then timed on their own. What is left, divided by the number of policy
calls, is the runner's bookkeeping per model call.

Run: ``python bench/rollout.py [--write]``.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from _report import machine, write_section

import simenv
from simenv.rollouts import plan_jobs, run
from simenv.rollouts.policies import Oracle
from simenv.rollouts.policies.base import Conversation

SCENARIOS = ("support/Refunds-v1", "support/Triage-v1", "sql/Analyst-v1", "lookup/Knowledge-v1")
ACTION = '<tool_call>{"name": "lookup_order", "arguments": {"order_id": "O-1000"}}</tool_call>'


class Instant:
    """Returns the same read-tool call at once."""

    calls = 0

    def act(self, conversations: list[Conversation]) -> list[Any]:
        self.calls += 1
        return [ACTION] * len(conversations)


def throughput(backend: str) -> list[tuple[str, float, float]]:
    rows = []
    pool: Any = None
    for scenario_id in SCENARIOS:
        scenario = simenv.load_scenario(scenario_id)
        jobs = plan_jobs(scenario, split="eval", samples=4)
        if backend == "ray":
            from simenv.rollouts.ray import RayPool

            pool = RayPool(scenario_id, num_workers=2, num_cpus=2)
        start = time.perf_counter()
        episodes = run(scenario, Oracle(), jobs, batch_size=64, pool=pool)
        seconds = time.perf_counter() - start
        if pool is not None:
            pool.close()
        steps = sum(e.turns for e in episodes)
        rows.append((scenario_id, len(episodes) / seconds, steps / seconds))
    return rows


def overhead(episodes: int = 256, batch: int = 64) -> tuple[float, float, float]:
    scenario = simenv.load_scenario("support/Refunds-v1")
    jobs = plan_jobs(scenario, split=None, limit=episodes)
    policy = Instant()
    start = time.perf_counter()
    done = run(scenario, policy, jobs, batch_size=batch)
    total = time.perf_counter() - start
    steps = sum(e.turns for e in done)
    # the same work without the runner: environments stepped directly, the policy called alone
    env = simenv.make(scenario)
    start = time.perf_counter()
    for job in jobs:
        env.reset(seed=job.seed, options={"task_id": job.task_id})
        for _ in range(scenario.max_turns):
            if env.step(ACTION)[3]:
                break
    env_only = time.perf_counter() - start
    conversations = [Conversation([], {}) for _ in range(batch)]
    start = time.perf_counter()
    for _ in range(policy.calls):
        Instant.act(policy, conversations)
    policy_only = time.perf_counter() - start
    per_call = (total - env_only - policy_only) / policy.calls
    return per_call * 1e6, total / steps * 1e6, env_only / steps * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args()
    local, ray = throughput("local"), throughput("ray")
    rows = [
        "| scenario (oracle, eval x4) | local episodes/s | local steps/s | Ray episodes/s "
        "| Ray steps/s |",
        "|---|---|---|---|---|",
    ]
    for (name, le, ls), (_, re_, rs) in zip(local, ray, strict=True):
        rows.append(f"| {name} | {le:,.0f} | {ls:,.0f} | {re_:,.0f} | {rs:,.0f} |")
    per_call, with_runner, env_only = overhead()
    rows += [
        "",
        "| runner overhead (instant policy, batches of 64, support/Refunds-v1) | value |",
        "|---|---|",
        f"| per step, through the runner | {with_runner:.1f} µs |",
        f"| per step, environment stepped directly | {env_only:.1f} µs |",
        f"| runner bookkeeping per model call (one call = a batch of 64) | {per_call:.0f} µs |",
    ]
    report = "\n".join(rows)
    print(report)
    if args.write:
        write_section("rollout", f"`python bench/rollout.py --write` ({machine()})\n\n{report}")


if __name__ == "__main__":
    main()
