"""The batched runner, the JSONL store with resume, and the Ray backend."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

import simenv
from simenv.checks.episodes import comparable
from simenv.errors import SimenvError
from simenv.rollouts import plan_jobs, run
from simenv.rollouts.policies import Oracle, Random
from simenv.rollouts.policies.base import Conversation
from simenv.rollouts.store import EpisodeStore, read_episodes
from simenv.types import Action

SCENARIO = "support/Refunds-v1"


class CountingPolicy:
    """Random, plus a record of every batch size it was asked for."""

    def __init__(self) -> None:
        self.inner = Random(seed=5)
        self.batches: list[int] = []

    def act(self, conversations: list[Conversation]) -> list[Action]:
        self.batches.append(len(conversations))
        return self.inner.act(conversations)

    def describe(self) -> dict[str, Any]:
        return {"name": "counting"}


def test_jobs_cover_tasks_times_samples_with_group_seeds() -> None:
    scenario = simenv.load_scenario(SCENARIO)
    jobs = plan_jobs(scenario, split="eval", samples=3, seed=100)
    eval_tasks = scenario.split("eval")
    assert len(jobs) == 3 * len(eval_tasks)
    assert {j.seed for j in jobs if j.group == 2} == {102}  # one seed per group
    assert len({j.key for j in jobs}) == len(jobs)
    assert len(plan_jobs(scenario, split="eval", limit=50)) == 50
    with pytest.raises(ValueError, match="limit must be at least 1"):
        plan_jobs(scenario, split="eval", limit=0)


def test_lockstep_batches_and_results_do_not_depend_on_batch_size() -> None:
    scenario = simenv.load_scenario(SCENARIO)
    jobs = plan_jobs(scenario, split="eval", samples=2)
    policy = CountingPolicy()
    big = run(scenario, policy, jobs, batch_size=16)
    assert max(policy.batches) == 16  # one policy call per turn for the whole batch
    small = run(scenario, Random(seed=5), jobs, batch_size=3)
    assert [comparable(e) for e in big] == [comparable(e) for e in small]
    assert [e.metadata["job"]["key"] for e in big] == [j.key for j in jobs]
    assert len({e.episode_id for e in big}) == len(big)


def test_each_episode_carries_its_jobs_group() -> None:
    scenario = simenv.load_scenario(SCENARIO)
    jobs = plan_jobs(scenario, split="eval", samples=2, limit=3)
    episodes = run(scenario, Random(seed=1), jobs, batch_size=4)
    assert [e.group for e in episodes] == [j.group for j in jobs] == [0, 0, 1, 1, 2, 2]
    assert all(e.metadata["job"].keys() == {"key", "sample"} for e in episodes)
    assert simenv.rollout(simenv.make(scenario), Random(seed=1), seed=0).group is None


def test_oracle_through_the_runner_solves_every_eval_task() -> None:
    scenario = simenv.load_scenario(SCENARIO)
    episodes = run(scenario, Oracle(), plan_jobs(scenario, split="eval"))
    assert episodes and all(e.reward == 1.0 and e.success for e in episodes)


def test_store_refuses_to_mix_runs_and_skips_done_jobs(tmp_path: Path) -> None:
    scenario = simenv.load_scenario(SCENARIO)
    jobs = plan_jobs(scenario, split="eval", limit=6)
    out = tmp_path / "run.jsonl"
    with EpisodeStore(out) as store:
        run(scenario, Oracle(), jobs[:4], store=store)
    with pytest.raises(SimenvError, match="--resume"):
        EpisodeStore(out)
    policy = CountingPolicy()
    with EpisodeStore(out, resume=True) as store:
        episodes = run(scenario, policy, jobs, store=store)
    assert len(episodes) == 6
    assert sum(policy.batches) > 0 and max(policy.batches) == 2  # only the 2 missing jobs ran
    assert len(list(read_episodes(out))) == 6


def test_partial_last_line_is_repaired_on_resume(tmp_path: Path) -> None:
    scenario = simenv.load_scenario(SCENARIO)
    jobs = plan_jobs(scenario, split="eval", limit=3)
    out = tmp_path / "run.jsonl"
    with EpisodeStore(out) as store:
        run(scenario, Oracle(), jobs[:2], store=store)
    with out.open("a") as handle:
        handle.write('{"scenario_id": "support/Refunds-v1", "task_id": "ref')  # a killed write
    with EpisodeStore(out, resume=True) as store:
        run(scenario, Oracle(), jobs, store=store)
    keys = [e.metadata["job"]["key"] for e in read_episodes(out)]
    assert sorted(keys) == sorted(j.key for j in jobs)


KILLABLE = textwrap.dedent(
    """
    import sys, time
    import simenv
    from simenv.rollouts.policies import Random
    from simenv.rollouts import plan_jobs, run
    from simenv.rollouts.store import EpisodeStore

    class Slow(Random):
        def act(self, conversations):
            time.sleep(0.002)
            return super().act(conversations)

    scenario = simenv.load_scenario("support/Refunds-v1")
    jobs = plan_jobs(scenario, split="train", samples=2)
    with EpisodeStore(sys.argv[1], resume=True) as store:
        run(scenario, Slow(seed=1), jobs, store=store, batch_size=4)
    """
)


def test_sigkill_halfway_then_resume_gives_exactly_a_clean_run(tmp_path: Path) -> None:
    script = tmp_path / "job.py"
    script.write_text(KILLABLE)
    killed, clean = tmp_path / "killed.jsonl", tmp_path / "clean.jsonl"
    proc = subprocess.Popen([sys.executable, str(script), str(killed)])
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if killed.exists() and killed.read_text().count("\n") >= 40:
            break
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    halfway = killed.read_text().count("\n")
    assert 0 < halfway < 210, halfway
    subprocess.run([sys.executable, str(script), str(killed)], check=True)
    subprocess.run([sys.executable, str(script), str(clean)], check=True)
    resumed = {e.metadata["job"]["key"]: comparable(e) for e in read_episodes(killed)}
    fresh = {e.metadata["job"]["key"]: comparable(e) for e in read_episodes(clean)}
    assert len(resumed) == len(list(read_episodes(killed)))  # no duplicates
    assert resumed == fresh


def test_time_limit_ends_slow_episodes_scored() -> None:
    class Stalling(Random):
        def act(self, conversations: list[Conversation]) -> list[Action]:
            time.sleep(0.02)
            return [
                '<tool_call>{"name": "lookup_order", "arguments": {"order_id": "O-1"}}</tool_call>'
                for _ in conversations
            ]

    scenario = simenv.load_scenario(SCENARIO)
    episodes = run(scenario, Stalling(), plan_jobs(scenario, limit=2), time_limit_s=0.05)
    assert all(e.termination == "time_limit" and e.turns < scenario.max_turns for e in episodes)
    assert all(e.evaluation is not None for e in episodes)


def test_ray_backend_gives_the_same_episodes_as_local() -> None:
    from simenv.rollouts.ray import RayPool  # ray: a dependency of the dev install

    scenario = simenv.load_scenario(SCENARIO)
    jobs = plan_jobs(scenario, split="eval", samples=2, limit=10)
    pool = RayPool(SCENARIO, num_workers=2, num_cpus=2)
    try:
        for policy in (Oracle(), Random(seed=9)):
            remote = run(scenario, policy, jobs, pool=pool, batch_size=8)
            local = run(scenario, policy, jobs, batch_size=8)
            assert [comparable(e) for e in remote] == [comparable(e) for e in local]
    finally:
        pool.close()


def test_simenv_run_backend_ray_from_the_command_line(tmp_path: Path) -> None:
    # A real local Ray cluster, started by the command in its own process (ray.init).
    outputs = {}
    for backend in ("ray", "local"):
        outputs[backend] = tmp_path / f"{backend}.jsonl"
        args = [sys.executable, "-m", "simenv.cli", "run", SCENARIO, "-n", "4", "-p", "oracle",
                "-p", "random", "--backend", backend, "--out", str(outputs[backend]),
                "--json"]  # fmt: skip
        done = subprocess.run(args, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        rows = {row["policy"]: row for row in json.loads(done.stdout)["policies"]}
        assert rows["oracle"]["mean_reward"] == 1.0 and rows["oracle"]["episodes"] == 4
    on_ray, local = (list(read_episodes(outputs[b])) for b in ("ray", "local"))
    assert len(on_ray) == 8
    assert [comparable(e) for e in on_ray] == [comparable(e) for e in local]
