"""Warm pools of hardened containers, shared per process, and the reaper of leftovers.

:class:`ContainerPool` keeps ``size`` containers created, started and answering, so an episode
takes one in well under a millisecond of engine work instead of a cold create + start (about
300 ms). A released container is destroyed, never reused, and a replacement is created; both
happen in background threads, off the episode's critical path. Pools are shared per process,
one per :class:`~simenv.tools.docker.container.ContainerSpec` (:func:`get_pool`); they are
emptied at interpreter exit, and :func:`reap` removes what a crashed process left behind,
found by the labels every container carries.
"""

from __future__ import annotations

import atexit
import os
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from simenv.errors import InfraError
from simenv.tools.docker.container import (
    MANAGED_LABEL,
    Container,
    ContainerSpec,
    create,
    docker_client,
    owner_alive,
    remove,
)

__all__ = ["ContainerPool", "get_pool", "live_containers", "reap", "shutdown_pools"]


# ----------------------------------------------------------------------------- pool
@dataclass
class _Counters:
    created: int = 0
    destroyed: int = 0
    failures: int = 0
    waits: int = 0
    last_error: BaseException | None = field(default=None, repr=False)


class ContainerPool:
    """``size`` warm containers of one spec, refilled and destroyed in background threads.

    Args:
        spec: How to make the containers.
        size: How many to keep ready.
        start_timeout_s: Longest wait for a container (creating one included) before
            :meth:`acquire` gives up with an :class:`InfraError`.
    """

    def __init__(self, spec: ContainerSpec, size: int = 2, start_timeout_s: float = 60.0) -> None:
        if size < 1:
            raise ValueError(f"pool size must be at least 1, got {size}")
        self.spec = spec
        self.size = size
        self.start_timeout_s = start_timeout_s
        self.counters = _Counters()
        self._client: Any = None
        self._cond = threading.Condition()
        self._ready: deque[Container] = deque()
        self._in_use: dict[str, Container] = {}
        self._creating = 0
        self._doomed: dict[str, Container] = {}  # released, not yet removed
        self._waiting = 0
        self._closed = False
        self._workers = ThreadPoolExecutor(max_workers=2, thread_name_prefix="simenv-docker")

    @property
    def client(self) -> Any:
        """The pool's ``docker`` client (made on first use)."""
        if self._client is None:
            self._client = docker_client()
        return self._client

    def in_use(self) -> list[str]:
        """Ids of the containers handed out and not yet released."""
        with self._cond:
            return list(self._in_use)

    def ready(self) -> int:
        """How many containers are warm right now."""
        with self._cond:
            return len(self._ready)

    def prewarm(self, wait: bool = True) -> None:
        """Start filling the pool; with ``wait``, return once ``size`` containers are ready."""
        self.client  # noqa: B018 - fail here, readably, if there is no engine
        deadline = time.monotonic() + self.start_timeout_s
        with self._cond:
            self._top_up()
            while wait and len(self._ready) < self.size:
                self._raise_if_failing()
                self._top_up()
                if not self._cond.wait(max(0.0, deadline - time.monotonic())):
                    raise InfraError(self._slow_message())

    def acquire(self, refill: bool = True) -> Container:
        """Take a warm container (waiting for one if needed).

        Args:
            refill: Start creating its replacement now. ``False`` leaves that to a
                :meth:`refill` call once the caller's own start-up requests are done, so the
                engine's work does not compete with them (on few cores it would).

        Raises:
            InfraError: No engine, no image, or no container within ``start_timeout_s``.
        """
        self.client  # noqa: B018
        deadline = time.monotonic() + self.start_timeout_s
        while True:
            with self._cond:
                if self._closed:
                    raise InfraError("the container pool was shut down (interpreter exiting?)")
                self._waiting += 1
                try:
                    if not self._ready:
                        self.counters.waits += 1
                    while not self._ready:
                        self._raise_if_failing()
                        self._top_up()
                        if not self._cond.wait(max(0.0, deadline - time.monotonic())):
                            raise InfraError(self._slow_message())
                    container = self._ready.popleft()
                finally:
                    self._waiting -= 1
                if refill:
                    self._top_up()
            try:
                container.request("ping", timeout_s=5.0)
            except InfraError:
                self._destroy_later(container)
                continue
            with self._cond:
                self._in_use[container.id] = container
            return container

    def refill(self) -> None:
        """Start creating containers until ``size`` are ready or on their way."""
        with self._cond:
            self._top_up()

    def release(self, container: Container) -> None:
        """Hand a container back: it is destroyed in the background, and replaced."""
        with self._cond:
            self._in_use.pop(container.id, None)
        self._destroy_later(container)

    def drain(self, timeout_s: float = 60.0) -> None:
        """Wait until no container is being created or destroyed (tests use this)."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while self._creating or self._doomed:
                if not self._cond.wait(max(0.0, deadline - time.monotonic())):
                    return

    def shutdown(self) -> None:
        """Destroy every container of the pool (ready and handed out) and stop its threads."""
        with self._cond:
            self._closed = True
        self._workers.shutdown(wait=True, cancel_futures=True)
        with self._cond:
            doomed = [*self._ready, *self._in_use.values(), *self._doomed.values()]
            self._ready.clear()
            self._in_use.clear()
            self._doomed.clear()
        for container in doomed:
            container.close()
            remove(self.client, container.id)
        if self._client is not None:
            self._client.close()

    # -------------------------------------------------------------- internals (lock held)
    def _top_up(self) -> None:
        if self._closed or self.counters.last_error is not None:
            return  # after a failure, let acquire() report it before trying again
        while len(self._ready) + self._creating < self.size + self._waiting:
            self._creating += 1
            self._workers.submit(self._create_one)

    def _raise_if_failing(self) -> None:
        error = self.counters.last_error
        if error is not None and self._creating == 0:
            self.counters.last_error = None
            if isinstance(error, InfraError):
                raise InfraError(str(error)) from error
            raise InfraError(
                f"could not start a container from {self.spec.image!r}: "
                f"{type(error).__name__}: {error}"
            ) from error

    def _slow_message(self) -> str:
        return (
            f"no container from {self.spec.image!r} was ready within {self.start_timeout_s:g} s "
            f"(pool of {self.size}, {self._creating} being created): the engine is overloaded; "
            "use fewer concurrent episodes or a larger pool"
        )

    # -------------------------------------------------------------- internals (workers)
    def _create_one(self) -> None:
        try:
            container = create(self.client, self.spec, self.start_timeout_s)
        except BaseException as exc:
            with self._cond:
                self._creating -= 1
                self.counters.failures += 1
                self.counters.last_error = exc
                self._cond.notify_all()
            return
        with self._cond:
            self._creating -= 1
            self.counters.created += 1
            self.counters.last_error = None
            if self._closed:
                container.close()
                remove(self.client, container.id)
            else:
                self._ready.append(container)
            self._cond.notify_all()

    def _destroy_later(self, container: Container) -> None:
        container.close()
        with self._cond:
            if self._closed:
                remove(self.client, container.id)
                return
            self._doomed[container.id] = container
            self._top_up()
        try:
            self._workers.submit(self._destroy, container)
        except RuntimeError:  # the interpreter is exiting: no more threads
            self._destroy(container)

    def _destroy(self, container: Container) -> None:
        try:
            remove(self.client, container.id)
        finally:
            with self._cond:
                self._doomed.pop(container.id, None)
                self.counters.destroyed += 1
                self._cond.notify_all()


# ----------------------------------------------------------------------------- registry
_POOLS: dict[ContainerSpec, ContainerPool] = {}
_POOLS_LOCK = threading.Lock()
_POOLS_PID: list[int] = []


def get_pool(spec: ContainerSpec, size: int = 2, start_timeout_s: float = 60.0) -> ContainerPool:
    """This process's pool for ``spec`` (made on first use; a forked child gets its own).

    Sandbox classes with equal specs share one pool, of the largest size any of them asked for.
    """
    with _POOLS_LOCK:
        if os.getpid() not in _POOLS_PID:
            _POOLS.clear()  # a forked child must not touch its parent's containers
            _POOLS_PID[:] = [os.getpid()]
            atexit.register(shutdown_pools)
        pool = _POOLS.get(spec)
        if pool is None:
            pool = _POOLS[spec] = ContainerPool(spec, size, start_timeout_s)
        pool.size = max(pool.size, size)  # classes sharing a spec share the largest pool
        return pool


def live_containers() -> list[str]:
    """Ids of every container this process's pools have handed out and not taken back."""
    with _POOLS_LOCK:
        pools = list(_POOLS.values())
    return [cid for pool in pools for cid in pool.in_use()]


def shutdown_pools() -> None:
    """Destroy every container of every pool of this process (done at interpreter exit)."""
    with _POOLS_LOCK:
        pools = list(_POOLS.values())
        _POOLS.clear()
    for pool in pools:
        pool.shutdown()


def reap(*, everything: bool = False, run: str | None = None) -> list[str]:
    """Remove simenv's containers that nobody will use again; return their ids.

    By default: the containers whose creating process (on this host) is gone, whatever their
    state. Those of live processes (a pool's, even while being created) and of other hosts
    sharing the engine are kept.

    Args:
        everything: Remove every simenv container, live runs' included.
        run: Remove the containers of this run id only.
    """
    client = docker_client()
    removed = []
    try:
        for info in client.api.containers(all=True, filters={"label": f"{MANAGED_LABEL}=1"}):
            labels = info.get("Labels") or {}
            if run is not None:
                doomed = labels.get("simenv.run") == run
            else:
                doomed = everything or not owner_alive(labels.get("simenv.owner", ""))
            if doomed:
                remove(client, info["Id"])
                removed.append(info["Id"])
    finally:
        client.close()
    return removed
