"""Verifiable execution in Docker: one hardened, throwaway container per episode.

Subclass :class:`DockerSandbox`, say what the work directory holds at the start (``files``),
and write tools that take the sandbox and run things in it::

    class Repo(DockerSandbox):
        def files(self, rng, task):                    # the episode's starting work dir
            return {"solution.py": task.data["buggy"], "test_solution.py": tests(rng, task)}

    @tool(effect="write", provenance="docker")
    def run_tests(repo: Repo) -> str:
        \"\"\"Run the visible tests.\"\"\"
        return repo.exec(["python3", "test_solution.py"], timeout_s=5).render()

How it is reset: every episode takes a container from a warm pool (created, started and
answering before anyone asks: under a millisecond of engine work instead of a ~300 ms cold
start), writes its files into the empty work dir, and at ``close()`` hands the container back
to be destroyed; a replacement is created in a background thread. A container is never reused.
Tool calls do not go through ``docker exec`` (about 70 ms each): a small server started as the
container's PID 1 (:mod:`simenv.tools.docker.runner`) answers JSON lines over the container's
attached stdin/stdout, in about half a millisecond for a file read.

Threat model. What it covers, for code a model writes (careless or adversarial):

- no network: ``network_mode=none`` (loopback only), so no egress, no DNS, no metadata service;
- files: a read-only root file system; the only writable path is the work dir, a size-limited
  tmpfs (``nosuid,nodev,noexec``); no host path is mounted and the Docker socket is not inside,
  so host files cannot be read or written; no ``/dev/shm`` (private IPC namespace);
- privileges: a non-root user (uid 1000), every capability dropped, ``no-new-privileges``
  (setuid binaries gain nothing), Docker's default seccomp profile;
- resources: memory (no swap, work dir included), CPU and process-count (fork bomb) limits for
  the whole container, an address-space limit per process (a runaway allocation is a
  ``MemoryError``), captured output capped, and a time limit on every exec, after which every
  process in the container is killed; nothing an agent starts outlives its call;
- integrity of the channel: the server is not dumpable, so the agent's processes (same uid)
  cannot ptrace it or open its file descriptors to forge answers, and the kernel's OOM killer
  picks the agent's processes before it;
- what the agent leaves in its work dir is its own business: the server reads any tree
  (no recursion: 1,200 nested directories are fine), never opens a FIFO, takes back access
  the agent removed with ``chmod``, and refuses (a ``ToolError``, never an ``InfraError``) a
  sparse file or hard links that add up to more than the work dir holds; the work dir holds
  at most ``work_entries`` inodes. A state the reward cannot read that way scores 0.0 (the
  episode stays valid). File names that are not UTF-8 are shown escaped (see
  :class:`DockerSandbox`), so every record stays writable;
- lifetime: one container per episode, destroyed afterwards; every container carries labels
  (``simenv.managed=1``, its run id, its owner process) so :func:`reap` removes what a crashed
  run left behind; logging is off, so nothing the agent prints reaches the host's disk.

What it does not cover:

- what the kernel shows in ``/proc/self/mounts`` and ``mountinfo`` (``/proc/mounts`` links
  there; one file per process, so no fixed path to mask, and runc refuses mounts over
  ``/proc`` files): the overlay root's options (the engine's data root, such as
  ``/var/lib/docker``, and the image's layer ids) and the source of Docker's
  ``/etc/hostname`` bind mount (the container's id, the host's block device). Read-only and
  no way in, but information about the host. The cgroup namespace is private and the
  hostname is ``sandbox``; gVisor (``runtime = "runsc"``) shows its own mounts instead;

- the kernel is shared: a kernel or container-runtime exploit escapes. For hostile code at
  scale set ``runtime = "runsc"`` (gVisor) or use VM isolation (Kata, Firecracker);
- side channels (timing, caches) and the engine's own availability: many concurrent episodes
  can overload ``dockerd``;
- graders that run *inside* the container share it with the agent's code (same uid): a
  solution can patch the grading code it is imported by. Checks that must hold against an
  adversarial solution compare outputs on the host (as ``code/Repair-v1``'s evaluation does);
- determinism of what the agent runs: output that depends on time or memory addresses makes
  that episode irreproducible (``PYTHONHASHSEED`` is fixed, the clock is not).

The base image is built offline from Debian's packages (:func:`build_base_image`, the
``simenv docker build-base`` command). Any image with ``python3`` (3.8+) on ``PATH`` works:
set ``image`` on the sandbox class.

Modules: :mod:`~simenv.tools.docker.sandbox` (the sandbox),
:mod:`~simenv.tools.docker.pool` (warm pools, the reaper),
:mod:`~simenv.tools.docker.container` (the engine client, the spec, the channel),
:mod:`~simenv.tools.docker.image` (the base image) and :mod:`~simenv.tools.docker.runner` (the
server inside each container; never imported).
"""

from simenv.tools.docker.container import ContainerSpec, run_id
from simenv.tools.docker.image import BASE_IMAGE, build_base_image, image_exists
from simenv.tools.docker.pool import reap, shutdown_pools
from simenv.tools.docker.sandbox import (
    MAX_EXEC_TIMEOUT_S,
    DockerSandbox,
    ExecResult,
    docker_available,
    exec_limit,
)

__all__ = [
    "BASE_IMAGE",
    "MAX_EXEC_TIMEOUT_S",
    "ContainerSpec",
    "DockerSandbox",
    "ExecResult",
    "build_base_image",
    "docker_available",
    "exec_limit",
    "image_exists",
    "reap",
    "run_id",
    "shutdown_pools",
]
