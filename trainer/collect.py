"""Asynchronous collection with bounded staleness: agents roll out while the trainer updates.

The trainer's live model is served by an in-process gateway on 127.0.0.1; agents
(:mod:`trainer.agents`) play rollouts through it on a pool of ``agent_concurrency`` threads.

**Groups.** A group is ``group_size`` rollouts of one task from one seed (one GRPO group);
group ``j`` draws its task from batch ``j // batch_tasks`` of a stream seeded by ``(seed,
batch)``. Trajectory ids are ``g{j}-{k}``, so the gateway's per-trajectory sampling generator,
and with it every sampled token, does not depend on thread timing.

**Admission.** When the trainer asks for the batch of step ``s``, groups are admitted until
``(s + max_staleness + 1) * batch_tasks`` of them have been (not counting groups dropped as too
stale, which are replaced): at most ``max_staleness`` batches run ahead of the trainer.

**Consumption.** :meth:`Collection.batch` returns the first ``batch_tasks`` completed groups in
admission order. Every turn carries the policy version that sampled it (the gateway records
it); a group's staleness is the current version minus the oldest version among its turns.
A group more than ``max_staleness`` versions old is dropped and counted; the others are
corrected by the truncated importance weight ``min(exp(logp_trainer - logp_sampler), cap)``
against the recorded sampling logprobs (``tis_cap``, 2 when it is 0 and ``max_staleness`` >
0: :func:`update_config`). Failed trajectories come back ``valid = False``: counted, never
trained on.

**Updates.** :meth:`Collection.paused` wraps the optimizer steps: it pauses the gateway (new
calls get 429 and are retried by the agents' clients), waits until no call is in flight,
then, after the update, sets the next policy version and resumes.

``max_staleness = 0`` is synchronous: the groups of step ``s`` are admitted only when the
trainer asks for them, all are sampled by the current policy, and the batch is exactly them,
in order; with one agent thread the run is the same, bit for bit, as playing the rollouts one
after another and training on them (tests/test_collect.py).

**Credit** is per trajectory: the group's advantage of a trajectory is broadcast to all its
segments and turns (:func:`trainer.train.training_samples`), and the default sequence
aggregation averages the loss per trajectory (:func:`trainer.losses.sequence_weights`), so a
trajectory split into more segments does not weigh more.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import random
import statistics
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from simenv.evaluation import pass_at_k
from simenv.server.gateway import (
    AwsCredentials,
    Gateway,
    GatewayError,
    GatewayServer,
    Limits,
    Policy,
    make_server,
)
from simenv.types import Episode
from trainer.agents import (
    Agent,
    AgentError,
    CallableAgent,
    HttpAgent,
    Report,
    Rollout,
    ScenarioAgent,
    fail,
    load_callable,
)
from trainer.config import TrainConfig
from trainer.datasets import Dataset, Row, load_dataset, scenario_rows

__all__ = ["JOB_ARN", "Collection", "draw", "open_collection", "staleness", "update_config"]

JOB_ARN = "arn:aws:sagemaker:us-east-1:000000000000:job/simenv/train"
"""The ``JobArn`` the trainer's gateway accepts."""

DEFAULT_STALE_CAP = 2.0
"""The truncated importance weight's cap for stale turns when ``tis_cap`` is 0."""


def staleness(episode: Episode, version: int) -> int:
    """How many policy versions ago the oldest turn of ``episode`` was sampled."""
    versions = [int(t["policy_version"]) for t in episode.metadata.get("turns", ())]
    return version - min(versions) if versions else 0


def update_config(cfg: TrainConfig) -> TrainConfig:
    """The config of the optimizer steps: stale turns need the truncated importance weight."""
    if cfg.max_staleness > 0 and cfg.tis_cap == 0:
        return dataclasses.replace(cfg, tis_cap=DEFAULT_STALE_CAP)
    return cfg


def draw(
    datasets: Sequence[Dataset], weights: Sequence[float], cfg: TrainConfig, batch: int
) -> list[tuple[Row, int]]:
    """The ``batch_tasks`` (train row, seed) pairs of one batch; a function of (seed, batch).

    Rows are drawn without replacement within a dataset (the mixture chosen by ``weights``),
    as the in-process rollouts draw tasks.
    """
    rng = random.Random(cfg.seed * 1_000_003 + batch)
    chosen = rng.choices(range(len(datasets)), weights=list(weights), k=cfg.batch_tasks)
    out: list[tuple[Row, int]] = []
    for d, dataset in enumerate(datasets):
        rows = list(dataset.split("train"))
        count = chosen.count(d)
        picked = rng.sample(rows, count) if count <= len(rows) else rng.choices(rows, k=count)
        out += [(row, rng.randrange(2**31)) for row in picked]
    return out


@dataclass
class _Group:
    index: int
    row: Row
    seed: int
    reports: dict[int, Report] = field(default_factory=dict)
    episodes: dict[int, Episode | None] = field(default_factory=dict)


class Collection:
    """Rollouts by ``agent`` over ``datasets`` through ``gateway`` (see the module docstring).

    Args:
        server: The gateway's server (not yet serving: the collection serves it on a thread
            and shuts it down in :meth:`close`); its gateway serves the trainer's live model.
        agent: The agent adapter.
        datasets: Where train and eval rows come from.
        cfg: The run's config (batch_tasks, group_size, max_staleness, agent_concurrency,
            temperature, max_new_tokens, eval_samples, seed).
        weights: Sampling weight of each dataset (default: equal).
    """

    def __init__(
        self,
        server: GatewayServer,
        agent: Agent,
        datasets: Sequence[Dataset],
        cfg: TrainConfig,
        weights: Sequence[float] = (),
    ) -> None:
        self.server, self.gateway, self.url = server, server.gateway, server.url
        self.agent, self.cfg = agent, cfg
        self.datasets = list(datasets)
        self.weights = list(weights) or [1.0] * len(self.datasets)
        self.config = update_config(cfg)
        self.version = 0
        self._pool = ThreadPoolExecutor(cfg.agent_concurrency, thread_name_prefix="agent")
        self._cv = threading.Condition()
        self._take = threading.Lock()
        self._taken: dict[str, Episode] = {}
        self._groups: dict[int, _Group] = {}
        self._admitted: int | None = None  # groups admitted so far (None: not started)
        self._replaced = 0  # dropped groups, replaced by new ones
        self._drawn: dict[int, list[tuple[Row, int]]] = {}
        self._evals = 0
        self._dropped = [0, 0]  # groups, trajectories dropped since the last batch
        self._since = time.monotonic()
        self._closed = False
        self._serving = threading.Thread(target=server.serve_forever, name="gateway", daemon=True)
        self._serving.start()

    # ----------------------------------------------------------------- training batches
    def batch(self, step: int) -> tuple[list[Episode], dict[str, float]]:
        """The episodes of step ``step`` (valid and failed), and the collection's metrics."""
        began = time.monotonic()
        bt = self.cfg.batch_tasks
        with self._cv:
            if self._admitted is None:  # a resumed run numbers its groups from its step
                self._admitted = step * bt
                self.version = step
                self.gateway.set_policy_version(step)
            self._admit(step)
            chosen: list[_Group] = []
            while True:
                done = sorted(
                    (g for g in self._groups.values() if len(g.episodes) == self.cfg.group_size),
                    key=lambda g: g.index,
                )
                for group in done:
                    if self._stale(group):
                        del self._groups[group.index]
                        self._dropped[0] += 1
                        self._dropped[1] += self.cfg.group_size
                        self._replaced += 1
                        self._admit(step)
                done = [g for g in done if g.index in self._groups]
                if len(done) >= bt:
                    chosen = done[:bt]
                    break
                self._cv.wait(1.0)
            for group in chosen:
                del self._groups[group.index]
            dropped, self._dropped = self._dropped, [0, 0]
        episodes, stats = self._metrics(chosen, began)
        stats["collect/dropped_groups"] = float(dropped[0])
        stats["collect/dropped"] = float(dropped[1])
        return episodes, stats

    def _stale(self, group: _Group) -> bool:
        valid = [e for e in group.episodes.values() if e is not None and e.valid]
        return any(staleness(e, self.version) > self.cfg.max_staleness for e in valid)

    def _admit(self, step: int) -> None:
        """Start groups while at most ``max_staleness`` batches run ahead (holding the lock)."""
        assert self._admitted is not None
        bt, size = self.cfg.batch_tasks, self.cfg.group_size
        limit = (step + self.cfg.max_staleness + 1) * bt + self._replaced
        while self._admitted < limit and not self._closed:
            j = self._admitted
            self._admitted += 1
            b = j // bt
            if b not in self._drawn:
                self._drawn = {b: draw(self.datasets, self.weights, self.cfg, b)}
            row, seed = self._drawn[b][j % bt]
            group = _Group(j, row, seed)
            self._groups[j] = group
            for k in range(size):
                self._pool.submit(self._play_member, group, k)

    def _play_member(self, group: _Group, k: int) -> None:
        report, episode = self.play(f"g{group.index}-{k}", group.row, group.seed, group.index)
        with self._cv:
            group.reports[k], group.episodes[k] = report, episode
            self._cv.notify_all()

    # ----------------------------------------------------------------- one rollout
    def play(
        self, trajectory_id: str, row: Row, seed: int, group: int | None
    ) -> tuple[Report, Episode | None]:
        """One rollout: create the trajectory, run the agent, take its episode.

        The episode is ``None`` when the gateway holds none to give (the agent completed the
        trajectory but never rewarded it: it is dropped); its ``evaluation`` is the success
        (the agent's, or a total reward above 0) and ``metadata["agent"]`` the latency and
        any error.
        """
        sampling = {"temperature": self.cfg.temperature, "max_tokens": self.cfg.max_new_tokens}
        try:
            trajectory, key = self.gateway.create(
                group=group,
                scenario_id=row.scenario_id or "gateway/Agent-v1",
                task_id=row.id,
                seed=seed,
                sampling=sampling,
                metadata={"task": row.to_dict()},
                trajectory_id=trajectory_id,
            )
        except GatewayError as exc:
            return Report("failed", error=f"the gateway refused the trajectory: {exc}"), None
        rollout = Rollout(
            task=row.to_dict(),
            trajectory_id=trajectory.id,
            key=key,
            base_url=self.url + "/v1",
            endpoint_url=self.url,
            job_arn=JOB_ARN,
            headers={
                "Authorization": f"Bearer {key}",
                "X-Amzn-SageMaker-Job-Arn": JOB_ARN,
                "X-Amzn-SageMaker-Trajectory-Id": trajectory.id,
            },
            sampling=sampling,
            seed=seed,
        )
        try:
            report = self.agent.run(rollout, self.gateway)
        except Exception as exc:  # an adapter's own bug must not stop the run either
            report = Report("failed", error=f"{type(exc).__name__}: {exc}")
        episode = self._episode(trajectory.id)
        if episode is None:  # completed but never rewarded: dropped from the gateway
            return dataclasses.replace(report, status="failed"), None
        if report.status == "ready" and not episode.metadata.get("turns"):
            report = dataclasses.replace(
                report, status="failed", error="the agent made no model call"
            )
        success = report.success if report.success is not None else episode.reward > 0
        metadata = {**episode.metadata, "agent": {"latency_s": report.latency_s}}
        if report.status != "ready":
            metadata["agent"]["error"] = report.error
        episode = dataclasses.replace(
            episode,
            valid=episode.valid and report.status == "ready",
            error=episode.error if report.status == "ready" else report.error,
            evaluation=float(success) if report.status == "ready" else None,
            metadata=metadata,
        )
        return report, episode

    def _episode(self, trajectory_id: str) -> Episode | None:
        with self._take:
            for episode in self.gateway.take():
                self._taken[episode.episode_id] = episode
            found = self._taken.pop(trajectory_id, None)
        if found is None:
            with contextlib.suppress(GatewayError):
                self.gateway.store.drop(trajectory_id)
        return found

    # ----------------------------------------------------------------- updates
    @contextlib.contextmanager
    def paused(self, wait_s: float = 600.0) -> Iterator[None]:
        """Pause the gateway for a weight update; then set the next version and resume."""
        self.gateway.pause()
        try:
            if not self.gateway.wait_idle(wait_s):
                raise RuntimeError(
                    f"the gateway still had {self.gateway.in_flight} calls in flight after "
                    f"{wait_s} s of pause; the policy cannot be updated under them"
                )
            yield
            with self._cv:
                self.version += 1
                self.gateway.set_policy_version(self.version)
        finally:
            self.gateway.resume()

    # ----------------------------------------------------------------- metrics and evaluation
    def _metrics(
        self, groups: Sequence[_Group], began: float
    ) -> tuple[list[Episode], dict[str, float]]:
        episodes = [g.episodes[k] for g in groups for k in sorted(g.episodes)]
        reports = [g.reports[k] for g in groups for k in sorted(g.reports)]
        kept = [e for e in episodes if e is not None]
        ages = [staleness(e, self.version) for e in kept if e.valid]
        stats = {
            f"collect/staleness_{n}": float(ages.count(n))
            for n in range(self.cfg.max_staleness + 1)
        }
        stats["collect/staleness_max"] = float(max(ages, default=0))
        stats["collect/failed"] = float(sum(r.status != "ready" for r in reports))
        latencies = [r.latency_s for r in reports]
        stats["agent/latency_s"] = statistics.fmean(latencies) if latencies else 0.0
        stats["agent/latency_max_s"] = max(latencies, default=0.0)
        tokens = sum(len(t["completion_ids"]) for e in kept for t in e.metadata.get("turns", ()))
        now = time.monotonic()
        stats["gateway/tokens_per_s"] = tokens / max(now - self._since, 1e-9)
        stats["collect/wait_s"] = now - began
        self._since = now
        return kept, stats

    def evaluate(self, policy: Any, scenarios: Any, cfg: TrainConfig) -> dict[str, float]:
        """Every eval row, ``eval_samples`` rollouts each (fixed seeds), through the agent.

        Same signature as :func:`trainer.train.evaluate` (``policy`` and ``scenarios`` are
        not used: the agent plays). ``eval/success`` counts the agent's own success when it
        reports one (a scenario's evaluation), else a total reward above 0.
        """
        self._evals += 1
        metrics: dict[str, float] = {}
        n = cfg.eval_samples
        for dataset in self.datasets:
            rows = dataset.split("eval")
            if not rows:
                continue
            jobs = [
                (f"eval{self._evals}-{dataset.name}-{i}-{k}", row, 50_000 + i)
                for i, row in enumerate(rows)
                for k in range(n)
            ]
            played = list(self._pool.map(lambda j: self.play(j[0], j[1], j[2], None), jobs))
            wins: dict[str, int] = {}
            rewards, failed = [], 0
            for (_, row, _), (_, episode) in zip(jobs, played, strict=True):
                ok = episode is not None and episode.valid
                failed += not ok
                rewards.append(episode.reward if ok and episode is not None else 0.0)
                won = ok and episode is not None and episode.success
                wins[row.id] = wins.get(row.id, 0) + int(won)
            prefix = f"eval/{dataset.name}/" if len(self.datasets) > 1 else "eval/"
            metrics[f"{prefix}success"] = sum(wins.values()) / len(jobs)
            metrics[f"{prefix}reward"] = statistics.fmean(rewards)
            metrics[f"{prefix}failed"] = float(failed)
            for k in sorted({1, n}):
                metrics[f"{prefix}pass@{k}"] = statistics.fmean(
                    pass_at_k(n, c, k) for c in wins.values()
                )
        return metrics

    def close(self) -> None:
        """Stop admitting, stop the gateway, fail the open trajectories, wait for the agents."""
        with self._cv:
            self._closed = True
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.server.shutdown()
        self.server.server_close()
        self._serving.join(5)
        for trajectory_id in self.gateway.store.ids("open"):
            fail(self.gateway, trajectory_id)  # an HTTP agent's adapter stops waiting
        self._pool.shutdown(wait=True)


# ----------------------------------------------------------------------------- start-up
def uses_agents(cfg: TrainConfig) -> bool:
    """Whether the run's rollouts come from an agent through the gateway."""
    return bool(cfg.agent or cfg.agent_url)


def make_agent(cfg: TrainConfig) -> Agent:
    """The adapter ``cfg`` names: ``scenario``, a ``module:function``, or an HTTP endpoint."""
    if cfg.agent_url:
        if not (os.environ.get("AWS_ACCESS_KEY_ID") and os.environ.get("AWS_SECRET_ACCESS_KEY")):
            raise AgentError(
                "--agent-url: an HTTP agent reports through the signed job-runtime calls, and the "
                "trainer's gateway verifies them against AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY; fix: set both in the trainer's environment (and give the "
                "agent the same)"
            )
        return HttpAgent(cfg.agent_url, timeout_s=cfg.agent_timeout_s)
    if cfg.agent == "scenario":
        return ScenarioAgent(timeout_s=cfg.agent_timeout_s)
    return CallableAgent(load_callable(cfg.agent))


def open_collection(cfg: TrainConfig, sampler: Any, scenarios: Sequence[Any]) -> Collection | None:
    """The run's collection, its gateway serving ``sampler`` (the live HF policy); ``None``
    when the run has no agent (rollouts in this process, as without the gateway).

    Raises:
        AgentError: the agent cannot be loaded, or fails its health check.
        DatasetError: the dataset cannot be read.
    """
    if not uses_agents(cfg):
        return None
    agent = make_agent(cfg)
    if cfg.dataset:
        datasets, weights = [load_dataset(cfg.dataset, cfg.eval_fraction)], [1.0]
    else:
        datasets, weights = [scenario_rows(s) for s in scenarios], list(cfg.weights)
    agent.check()  # before any training: an agent that is down stops the run here
    key_id, secret = os.environ.get("AWS_ACCESS_KEY_ID"), os.environ.get("AWS_SECRET_ACCESS_KEY")
    gateway = Gateway(
        Policy.from_hf(sampler, name="policy"),
        aws=AwsCredentials(key_id, secret) if key_id and secret else None,
        limits=Limits(max_turns=cfg.agent_max_turns),
        seed=cfg.seed,
    )
    return Collection(make_server(gateway), agent, datasets, cfg, weights)
