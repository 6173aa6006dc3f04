"""Environments as Ray actors: :class:`RayPool` is the runner's pool on a Ray cluster.

Each actor (an :class:`EnvWorker`) hosts environments for a share of the running episodes.
The driver keeps the policy (one batched call per turn, as with the local pool) and, every
turn, sends each actor ONE call carrying all of its episodes' actions. Seeds travel with the
jobs, so the same jobs give the same episodes as the local backend.

Ray is optional (``pip install simenv[ray]``) and imported only when a pool is built.
``RayPool(scenario, address="ray://head:10001")`` joins an existing cluster;
with no address, a local one is started (``ray.init(num_cpus=...)``).
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Any

from simenv.errors import InfraError
from simenv.registration import load_scenario
from simenv.rollouts.jobs import Job
from simenv.rollouts.policies.base import Conversation
from simenv.rollouts.pools import LocalPool, StepResult
from simenv.scenario import Scenario
from simenv.types import Action, Episode

__all__ = ["EnvWorker", "RayPool"]


class EnvWorker:
    """Hosts environments in one Ray actor; handles are ``(worker, slot)`` pairs."""

    def __init__(self, scenario: Scenario | str, workers: int | None = None) -> None:
        """Build a local pool of environments for ``scenario`` inside the actor."""
        resolved = scenario if isinstance(scenario, Scenario) else load_scenario(scenario)
        self.pool = LocalPool(resolved, workers)
        self.slots: dict[int, tuple[Any, Conversation]] = {}
        self.next_slot = 0

    def start(self, job: Job) -> tuple[int, list[Any], dict[str, Any]]:
        """Reset an environment for ``job``; return its slot, observation and info."""
        handle, conversation = self.pool.start(job)
        slot = self.next_slot
        self.next_slot += 1
        self.slots[slot] = (handle, conversation)
        return slot, conversation.messages, conversation.info

    def step(self, slots: Sequence[int], actions: Sequence[Action]) -> list[tuple[Any, bool]]:
        """Step the slots' environments; return (new messages, done) for each."""
        results = self.pool.step([self.slots[s][0] for s in slots], actions)
        return [(r.observation, r.done) for r in results]

    def oracle(self, slot: int) -> list[Action]:
        """The scenario's gold turns for the slot's episode (computed beside its state)."""
        handle, _ = self.slots[slot]
        return list(handle.unwrapped.gold_turns())

    def finish(self, slot: int, policy: dict[str, Any], deadline_hit: bool) -> Episode:
        """End the slot's episode and free the slot."""
        handle, _ = self.slots.pop(slot)
        return self.pool.finish(handle, policy, deadline_hit)

    def close(self) -> None:
        """Close every environment of this actor."""
        self.pool.close()


class RayPool:
    """The runner's pool on Ray: ``num_workers`` actors, episodes spread round-robin."""

    def __init__(
        self,
        scenario: Scenario | str,
        *,
        num_workers: int = 2,
        address: str | None = None,
        num_cpus: int | None = None,
        threads_per_worker: int | None = None,
    ) -> None:
        """Start (or join) Ray and create the actors.

        Args:
            scenario: The scenario; actors rebuild it by id when it is registered by an entry
                point, otherwise the object is pickled to them.
            num_workers: Actors to create.
            address: A cluster address for ``ray.init``; ``None`` starts a local cluster.
            num_cpus: CPUs of the local cluster (ignored with ``address``).
            threads_per_worker: Threads each actor uses for blocking tool calls.
        """
        try:
            self._ray: Any = importlib.import_module("ray")
        except ImportError as exc:
            raise InfraError("the Ray backend needs Ray: pip install 'simenv[ray]'") from exc
        if not self._ray.is_initialized():
            kwargs: dict[str, Any] = {"address": address} if address else {"num_cpus": num_cpus}
            self._ray.init(
                ignore_reinit_error=True, include_dashboard=False, log_to_driver=False, **kwargs
            )
        actor = self._ray.remote(num_cpus=0)(EnvWorker)
        self.workers = [actor.remote(scenario, threads_per_worker) for _ in range(num_workers)]
        self._turn = 0

    def start(self, job: Job) -> tuple[Any, Conversation]:
        """Start ``job`` on the next actor (round-robin)."""
        worker = self.workers[self._turn % len(self.workers)]
        self._turn += 1
        slot, messages, info = self._ray.get(worker.start.remote(job))

        def oracle() -> list[Action]:
            return list(self._ray.get(worker.oracle.remote(slot)))

        return (worker, slot), Conversation(list(messages), info, None, oracle=oracle)

    def step(self, handles: Sequence[Any], actions: Sequence[Action]) -> list[StepResult]:
        """One remote call per actor carrying all of its episodes' actions."""
        by_worker: dict[Any, list[int]] = {}
        for i, (worker, _) in enumerate(handles):
            by_worker.setdefault(worker, []).append(i)
        futures = {
            worker: worker.step.remote([handles[i][1] for i in idx], [actions[i] for i in idx])
            for worker, idx in by_worker.items()
        }
        results: list[StepResult | None] = [None] * len(handles)
        for worker, idx in by_worker.items():
            for i, (observation, done) in zip(idx, self._ray.get(futures[worker]), strict=True):
                results[i] = StepResult(list(observation), bool(done))
        return [r for r in results if r is not None]

    def finish(self, handle: Any, policy: dict[str, Any], deadline_hit: bool) -> Episode:
        """End the episode on its actor and fetch the record."""
        worker, slot = handle
        episode: Episode = self._ray.get(worker.finish.remote(slot, policy, deadline_hit))
        return episode

    def close(self) -> None:
        """Close the actors' environments and end the actors."""
        self._ray.get([w.close.remote() for w in self.workers])
        for worker in self.workers:
            self._ray.kill(worker)
