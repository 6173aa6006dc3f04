"""Resource and replay-coverage checks."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from simenv.checks.episodes import CheckOptions, opened, play, sample_tasks
from simenv.checks.report import CheckResult
from simenv.rollouts.policies.scripted import Oracle, Random
from simenv.rollouts.recording import cassettes, coverage
from simenv.scenario import Scenario

__all__ = ["check_replay_coverage", "check_resources"]


def _open_fds() -> int | None:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return None


def _temp_entries() -> set[str]:
    try:
        return set(os.listdir(tempfile.gettempdir()))
    except OSError:
        return set()


def check_resources(scenario: Scenario, options: CheckOptions) -> CheckResult:
    """Nothing is left behind once environments are closed.

    Runs episodes (oracle and random), closes every environment, then looks for what the
    sandbox class reports as still held (``Sandbox.live_resources``: containers, databases),
    new entries in the temporary directory, and file descriptors that grew with the number of
    episodes.
    """
    sandbox = scenario.sandbox
    tasks = sample_tasks(scenario, options)[:6]
    # One episode first, so what is made once per process (clients, pools, caches) is there
    # before the baseline; then six rounds, so a per-episode leak stands out from noise.
    with opened(scenario, options) as env:
        play(env, tasks[0].id, options.seed, Random(seed=0))
    held_before = set(sandbox.live_resources()) if sandbox else set()
    temp_before = _temp_entries()
    # Open descriptors are counted before, halfway and after: a leak grows in both halves, while
    # background work (a pool refilling) shows up as a one-off jump in one of them.
    fds = [_open_fds()]
    halves = [0, 0]
    for i in range(6):
        task = tasks[i % len(tasks)]
        with opened(scenario, options) as env:
            policies: list[Any] = [Random(seed=i)]
            if scenario.oracle is not None:
                policies.append(Oracle())
            for policy in policies:
                play(env, task.id, options.seed + i, policy)
                halves[i // 3] += 1
        if i in (2, 5):
            fds.append(_open_fds())
    episodes = sum(halves)
    problems = []
    if sandbox is not None:
        left = sorted(set(sandbox.live_resources()) - held_before)
        if left:
            problems.append(
                f"{len(left)} resources still held after close(): {left[:5]}; release them in "
                f"{sandbox.__name__}.close()"
            )
    new_temp = sorted(_temp_entries() - temp_before)
    if new_temp:
        where = Path(tempfile.gettempdir())
        problems.append(f"files left in {where}: {new_temp[:5]}; delete them in close()")
    before, middle, after = fds
    if (
        before is not None
        and middle is not None
        and after is not None
        and middle - before >= halves[0]
        and after - middle >= halves[1]
    ):
        problems.append(
            f"{after - before} more open file descriptors after {episodes} episodes; "
            "close files and connections in close()"
        )
    if problems:
        return CheckResult("resources", "fail", "; ".join(problems))
    return CheckResult("resources", "pass", f"nothing left behind after {episodes} episodes")


def check_replay_coverage(scenario: Scenario, options: CheckOptions) -> CheckResult:
    """Every call the oracle makes to a replayed tool is in its cassette; unused entries listed."""
    if not cassettes(scenario):
        return CheckResult("replay", "skip", "no tool is served from a cassette")
    if scenario.oracle is None:
        return CheckResult("replay", "skip", "no oracle to exercise the cassettes with")
    report = coverage(scenario, tasks=sample_tasks(scenario, options), seeds=(options.seed,))
    missing = [f"{m.key} (task {m.task_id})" for m in report.missing]
    unused = [key for _, key in report.unused]
    details = {"missing": missing[:50], "unused": unused[:50]}
    if missing:
        return CheckResult(
            "replay",
            "fail",
            f"{len(missing)} oracle calls are not in the cassettes (e.g. {missing[0]}); "
            "re-record with `simenv record`",
            details=details,
        )
    if unused and not options.fast:
        return CheckResult(
            "replay",
            "warn",
            f"every oracle call is recorded; {len(unused)} entries are never used",
            details=details,
        )
    return CheckResult("replay", "pass", "every oracle call is in the cassettes", details=details)
