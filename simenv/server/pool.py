"""``RemotePool``: the runner's environments, served by a rollout server (``simenv serve``).

:func:`simenv.rollouts.runner.run` steps a batch of episodes in lockstep through an environment
pool; this pool keeps those environments on a server, one :class:`~simenv.server.RemoteEnv` each,
and steps them concurrently from a thread pool (each step is a network round trip). Everything else
(batching the policy, the store, resuming, time limits) is the runner's, so a run through a
server gives the same episodes as a local one with the same jobs and policy::

    with RemotePool("http://127.0.0.1:8000", "support/Refunds-v1") as pool:
        episodes = run("support/Refunds-v1", Oracle(), jobs, pool=pool)

``simenv run --server URL`` and the trainer's ``env_server`` setting use it.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import Any

from simenv.errors import InfraError
from simenv.rollouts.jobs import Job
from simenv.rollouts.policies.base import Conversation
from simenv.rollouts.pools import StepResult, step_envs
from simenv.scenario import Scenario
from simenv.server.auth import CLIENT_TOKEN_ENV, client_token
from simenv.server.client import RemoteEnv
from simenv.types import Action, Episode

__all__ = ["RemotePool"]


class RemotePool:
    """Environments on a rollout server, reused from one episode to the next.

    Args:
        base_url: The server, e.g. ``http://127.0.0.1:8000``.
        scenario: The scenario (or its id); the server must serve it.
        workers: Threads stepping environments at once (each step waits on the network).
        timeout_s: Seconds to wait for one answer of the server.
        token: The bearer token; None reads ``SIMENV_SERVER_TOKEN``.

    Attributes:
        capacity: How many more environments the server took when the pool was made
            (``max_envs`` less those live): :func:`simenv.rollouts.runner.run` runs at most this
            many episodes at once through the pool.

    Raises:
        InfraError: The server cannot be reached, or it is full.
    """

    def __init__(
        self,
        base_url: str,
        scenario: Scenario | str,
        workers: int = 16,
        timeout_s: float = 300.0,
        token: str | None = None,
    ) -> None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        self.base_url = base_url
        self.scenario_id = scenario if isinstance(scenario, str) else scenario.id
        self.timeout_s = timeout_s
        self.token = client_token(token)
        self.capacity = _capacity(base_url, timeout_s, self.token)
        self._free: list[RemoteEnv] = []
        self._all: list[RemoteEnv] = []
        self._threads = ThreadPoolExecutor(workers) if workers > 1 else None

    def start(self, job: Job) -> tuple[Any, Conversation]:
        """Reset a free (or new) server environment for ``job``."""
        options = {"task_id": job.task_id}
        env = self._free.pop() if self._free else self._new()
        try:
            observation, info = env.reset(seed=job.seed, options=options)
        except InfraError:
            if env.alive():
                raise
            self._all.remove(env)  # the server reaped it while it sat idle: take a new one
            env.close()  # (already gone there: this only drops the connection)
            env = self._new()
            observation, info = env.reset(seed=job.seed, options=options)
        info["sample"] = job.sample
        return env, Conversation(list(observation), info, None, oracle=env.oracle)

    def _new(self) -> RemoteEnv:
        env = RemoteEnv(self.base_url, self.scenario_id, token=self.token, timeout_s=self.timeout_s)
        self._all.append(env)
        return env

    def step(self, handles: Sequence[Any], actions: Sequence[Action]) -> list[StepResult]:
        """Step every environment, the requests in flight at once."""
        return step_envs(handles, actions, self._threads)

    def finish(self, handle: Any, policy: dict[str, Any], deadline_hit: bool) -> Episode:
        """End the episode on the server if the deadline cut it; fetch its record."""
        if deadline_hit:
            handle.end()
        episode: Episode = handle.episode(policy)
        self._free.append(handle)
        return episode

    def close(self) -> None:
        """Delete every environment on the server and stop the threads.

        Raises:
            InfraError: The server failed to close one (the others are still closed).
        """
        failures = []
        for env in self._all:
            try:
                env.close()
            except InfraError as exc:
                failures.append(str(exc))
        self._all.clear()
        self._free.clear()
        if self._threads is not None:
            self._threads.shutdown()
        if failures:
            raise InfraError(f"the server failed to close {len(failures)} env(s): {failures[0]}")

    def __enter__(self) -> RemotePool:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            self.close()
        except InfraError:
            if kind is None:
                raise  # else the error that ended the block is the one to see


def _capacity(base_url: str, timeout_s: float, token: str | None) -> int:
    """How many more environments the server takes now: ``max_envs - live`` (``GET /health``)."""
    url = base_url.rstrip("/") + "/health"
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with urllib.request.urlopen(
            urllib.request.Request(url, headers=headers), timeout=timeout_s
        ) as response:
            answer = json.loads(response.read())
        free = int(answer["max_envs"]) - int(answer.get("live", 0))
    except urllib.error.HTTPError as exc:
        if exc.code == 401:
            how = "check it" if token else f"pass token= or set {CLIENT_TOKEN_ENV}"
            raise InfraError(
                f"the server at {base_url} refused the token (HTTP 401); {how}"
            ) from exc
        raise InfraError(f"cannot read {url}: HTTP {exc.code}") from exc
    except (OSError, urllib.error.URLError, ValueError, KeyError, TypeError) as exc:
        raise InfraError(
            f"cannot read {url} ({type(exc).__name__}: {exc}); is `simenv serve` running there?"
        ) from exc
    if free < 1:
        raise InfraError(
            f"the server at {base_url} is full ({answer['max_envs']} environments live); close "
            "some, or start it with a higher --max-envs"
        )
    return free
