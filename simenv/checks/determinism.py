"""Determinism and isolation checks."""

from __future__ import annotations

import re
import threading
import time
from typing import Any

from simenv.checks.episodes import (
    CheckOptions,
    comparable,
    first_difference,
    opened,
    play,
    sample_tasks,
    state_hash,
)
from simenv.checks.report import CheckResult
from simenv.env import MultiTurnEnv
from simenv.rollouts.policies.scripted import Oracle, Random
from simenv.scenario import Scenario
from simenv.types import Action, Episode

__all__ = ["check_determinism", "check_isolation"]


def check_determinism(scenario: Scenario, options: CheckOptions) -> CheckResult:
    """One seed drives everything.

    Proves: the same seed gives the same first observation and state hash; the same seed and
    actions (oracle and seeded random) give identical episodes and rewards; different seeds
    give different starting states when the scenario declares ``random_state``. The
    transcript includes the user's messages, so a user whose replies are not determined by
    the seed and the conversation fails here, with a hint saying so.
    """
    tasks = sample_tasks(scenario, options)
    started, checked = time.perf_counter(), 0
    with opened(scenario, options) as env:
        for i, task in enumerate(tasks):
            if options.over_budget(started, checked, minimum=2):
                break
            checked += 1
            for k in range(options.seeds):
                seed = options.seed + 1000 * k + i
                first = env.reset(seed=seed, options={"task_id": task.id})[0], state_hash(env)
                second = env.reset(seed=seed, options={"task_id": task.id})[0], state_hash(env)
                if first != second:
                    what = "first observation" if first[0] != second[0] else "starting state"
                    return CheckResult(
                        "determinism",
                        "fail",
                        f"the same seed gave a different {what}: something in reset or "
                        "Sandbox.setup uses randomness that is not the rng argument (module "
                        "`random`, `np.random` globals, the clock, set ordering)",
                        task.id,
                        seed,
                        [],
                    )
                policies: list[Any] = [Random(seed=seed)]
                if scenario.oracle is not None:
                    policies.insert(0, Oracle())
                for make_policy in policies:
                    a, actions = play(env, task.id, seed, make_policy)
                    b, _ = play(env, task.id, seed, actions=actions)
                    where = first_difference(comparable(a), comparable(b))
                    if where:
                        return CheckResult(
                            "determinism",
                            "fail",
                            f"the same seed and actions gave different episodes at {where}"
                            + _user_hint(a, where),
                            task.id,
                            seed,
                            actions,
                        )
        if scenario.random_state and scenario.sandbox is not None:
            task = tasks[0]
            hashes = set()
            for k in range(8):
                env.reset(seed=options.seed + 7919 * (k + 1), options={"task_id": task.id})
                hashes.add(state_hash(env))
            if len(hashes) == 1:
                return CheckResult(
                    "determinism",
                    "fail",
                    "8 different seeds gave the same starting state: the seed is ignored. "
                    "Build the state from Sandbox.setup's rng, or declare random_state=False",
                    task.id,
                    options.seed,
                )
    return CheckResult(
        "determinism",
        "pass",
        f"{checked} tasks x {options.seeds} seeds replay identically"
        + (
            f" (stopped at the {options.budget_s:g} s budget of --fast)"
            if checked < len(tasks)
            else ""
        ),
    )


_MESSAGE_AT = re.compile(r"^\.messages\[(\d+)\]")


def _user_hint(episode: Episode, where: str) -> str:
    """A hint when the first difference is a message of the scenario's user."""
    match = _MESSAGE_AT.match(where)
    user_message = (
        match is not None
        and int(match.group(1)) < len(episode.messages)
        and (episode.messages[int(match.group(1))].get("role") == "user")
    )
    if user_message or ".user_message" in where:
        return (
            ": the user replied differently to the same conversation. A User draws its "
            "randomness from context.rng only (never module random, np.random, the clock or "
            "a live model that is not recorded: replay an LLM user from a cassette)"
        )
    return ""


def _episodes(scenario: Scenario, options: CheckOptions) -> list[tuple[str, int, list[Action]]]:
    """A few (task, seed, actions) to replay under interleaving and threads."""
    tasks = sample_tasks(scenario, options)[:4]
    jobs = []
    with opened(scenario, options) as env:
        for i, task in enumerate(tasks):
            seed = options.seed + 31 * i
            policy = Oracle() if scenario.oracle is not None else Random(seed=seed)
            _, actions = play(env, task.id, seed, policy)
            jobs.append((task.id, seed, actions))
    return jobs


def _interleaved(
    scenario: Scenario, options: CheckOptions, jobs: list[tuple[str, int, list[Action]]]
) -> list[tuple[dict[str, Any], str]]:
    envs = [options.env_class(scenario) for _ in jobs]
    try:
        for env, (task_id, seed, _) in zip(envs, jobs, strict=True):
            env.reset(seed=seed, options={"task_id": task_id})
        longest = max(len(actions) for _, _, actions in jobs)
        for turn in range(longest):
            for env, (_, _, actions) in zip(envs, jobs, strict=True):
                if turn < len(actions) and not env._needs_reset:
                    env.step(actions[turn])
        return [_final(env) for env in envs]
    finally:
        for env in envs:
            env.close()


def _threaded(
    scenario: Scenario, options: CheckOptions, jobs: list[tuple[str, int, list[Action]]]
) -> list[tuple[dict[str, Any], str]]:
    out: list[tuple[dict[str, Any], str] | None] = [None] * len(jobs)
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(jobs))

    def run(i: int) -> None:
        task_id, seed, actions = jobs[i]
        env = options.env_class(scenario)
        try:
            env.reset(seed=seed, options={"task_id": task_id})
            barrier.wait(timeout=30)
            for action in actions:
                if env._needs_reset:
                    break
                env.step(action)
            out[i] = _final(env)
        except BaseException as exc:
            errors.append(exc)
        finally:
            env.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return [e for e in out if e is not None]


def _final(env: MultiTurnEnv) -> tuple[dict[str, Any], str]:
    """The episode (comparable form) and its final state hash."""
    return comparable(env.episode()), env.state.state_hash() if env.state else ""


def check_isolation(scenario: Scenario, options: CheckOptions) -> CheckResult:
    """Episodes never see each other.

    Proves: episodes interleaved turn by turn, and run concurrently in threads, end exactly as
    they do alone (same transcript, reward and final state); ``snapshot``/``restore`` brings a
    state back exactly.
    """
    jobs = _episodes(scenario, options)
    alone = []
    for task_id, seed, actions in jobs:
        env = options.env_class(scenario)
        try:
            env.reset(seed=seed, options={"task_id": task_id})
            for action in actions:
                if env._needs_reset:
                    break
                env.step(action)
            alone.append(_final(env))
        finally:
            env.close()
    for mode, runner in (("interleaved", _interleaved), ("concurrent", _threaded)):
        together = runner(scenario, options, jobs)
        for (task_id, seed, actions), solo, shared in zip(jobs, alone, together, strict=True):
            where = first_difference(solo[0], shared[0])
            if where is None and solo[1] != shared[1]:
                where = "the final state (its hash)"
            if where:
                return CheckResult(
                    "isolation",
                    "fail",
                    f"an episode run {mode} with others differs from the same episode alone "
                    f"at {where}: state leaks between episodes (a module-level or class-level "
                    "variable, a shared file or database)",
                    task_id,
                    seed,
                    actions,
                )
    if scenario.sandbox is not None:
        task_id, seed, actions = jobs[0]
        env = options.env_class(scenario)
        try:
            env.reset(seed=seed, options={"task_id": task_id})
            assert env.state is not None
            start_hash, snap = env.state.state_hash(), env.state.snapshot()
            for action in actions:
                if env._needs_reset:
                    break
                env.step(action)
            env.state.restore(snap)
            if env.state.state_hash() != start_hash:
                return CheckResult(
                    "isolation",
                    "fail",
                    "restore(snapshot()) did not bring the starting state back; override "
                    "Sandbox.snapshot/restore so they copy all of the state",
                    task_id,
                    seed,
                    actions,
                )
        finally:
            env.close()
    return CheckResult(
        "isolation", "pass", f"{len(jobs)} episodes end alike alone, interleaved and in threads"
    )
