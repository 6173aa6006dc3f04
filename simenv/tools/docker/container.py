"""Hardened containers: the engine client, what a container is made from, and its channel.

:class:`ContainerSpec` says how a container is made (image, limits, labels); :func:`create`
makes one and waits until the server inside answers; :class:`Container` talks to
:mod:`simenv.tools.docker.runner` (the container's PID 1) over the container's attached
stdin/stdout: one JSON line each way per request, about half a millisecond for a file read,
against about 70 ms for a ``docker exec``. Every container carries labels
(``simenv.managed=1``, ``simenv.run=<run id>``, ``simenv.owner=<host:pid:start>``) so that
:func:`simenv.tools.docker.pool.reap` finds what a crashed process left behind.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import socket
import struct
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from simenv.errors import InfraError, ToolError

__all__ = [
    "MANAGED_LABEL",
    "Container",
    "ContainerSpec",
    "create",
    "docker_client",
    "encode",
    "owner_alive",
    "raw_name",
    "remove",
    "run_id",
    "shown",
]

MANAGED_LABEL = "simenv.managed"
RUNNER_SOURCE_PATH = Path(__file__).with_name("runner.py")
_HEADER = struct.Struct(">BxxxI")
_SURROGATE = re.compile("[\ud800-\udfff]")


def docker_client(timeout_s: float = 60.0) -> Any:
    """A ``docker.DockerClient`` from the environment (``DOCKER_HOST`` ...).

    Raises:
        InfraError: The ``docker`` package is missing or no engine answers.
    """
    try:
        import docker
    except ImportError as exc:
        raise InfraError(
            "the Docker pattern needs the `docker` package: pip install 'simenv[docker]'"
        ) from exc
    where = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    fix = "Start dockerd (as .ci/run does) or point DOCKER_HOST at a running engine."
    if where.startswith("unix://"):
        # Probe the socket first: docker-py leaks its socket when the connection is refused.
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            probe.settimeout(5)
            try:
                probe.connect(where.removeprefix("unix://"))
            except OSError as exc:
                raise InfraError(
                    f"cannot reach the Docker engine at {where} ({exc}). {fix}"
                ) from exc
    client = None
    try:
        client = docker.from_env(timeout=int(timeout_s))
        client.ping()
    except docker.errors.DockerException as exc:
        if client is not None:
            client.close()
        raise InfraError(f"cannot reach the Docker engine at {where} ({exc}). {fix}") from exc
    return client


# ----------------------------------------------------------------------------- identity
_IDENTITY: dict[str, str] = {}


def _process_start() -> str:
    try:
        return Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return "0"


def run_id() -> str:
    """This process's run id (new after a fork), carried by every container it creates."""
    pid = str(os.getpid())
    if _IDENTITY.get("pid") != pid:
        _IDENTITY.update(
            pid=pid,
            run=uuid.uuid4().hex[:12],
            owner=f"{socket.gethostname()}:{pid}:{_process_start()}",
        )
    return _IDENTITY["run"]


def owner_alive(owner: str) -> bool:
    """Whether the process named by a ``simenv.owner`` label may still use its container."""
    host, _, rest = owner.partition(":")
    pid, _, start = rest.partition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return True  # another machine's, or not ours to judge: keep it
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[19] == start


# ----------------------------------------------------------------------------- spec
@dataclass(frozen=True)
class ContainerSpec:
    """How the containers of one pool are made (every field is part of the pool's key).

    Attributes:
        image: The image; it needs ``python3`` (3.8+) on ``PATH`` and nothing else.
        memory_mb: Memory limit of the whole container (no swap), tmpfs pages included.
        cpus: CPU limit (fractions allowed).
        pids_limit: Most processes and threads alive at once (fork bombs stop here).
        work_mb: Size of the writable work dir (a tmpfs), the only writable path.
        work_dir: Where the work dir is mounted; also the working directory.
        work_entries: Most files, directories and links the work dir may hold (its tmpfs's
            ``nr_inodes``; a hard link counts as one too).
        user: ``uid:gid`` everything runs as (never root).
        runtime: OCI runtime (``None``: the engine's default; ``"runsc"``: gVisor).
    """

    image: str
    memory_mb: int = 256
    cpus: float = 1.0
    pids_limit: int = 64
    work_mb: int = 32
    work_dir: str = "/work"
    work_entries: int = 16_384
    user: str = "1000:1000"
    runtime: str | None = None

    def create_arguments(self, client: Any) -> dict[str, Any]:
        """Keyword arguments of ``APIClient.create_container`` for one hardened container."""
        uid, _, gid = self.user.partition(":")
        memory = f"{self.memory_mb}m"
        host_config = client.api.create_host_config(
            network_mode="none",
            read_only=True,
            tmpfs={
                self.work_dir: (
                    f"rw,nosuid,nodev,noexec,size={self.work_mb}m,uid={uid},gid={gid or uid},"
                    f"mode=0700,nr_inodes={self.work_entries}"
                ),
                "/dev/mqueue": "ro,nosuid,nodev,noexec,size=4k",  # else a writable IPC fs
            },
            mem_limit=memory,
            memswap_limit=memory,
            nano_cpus=int(self.cpus * 1e9),
            pids_limit=self.pids_limit,
            cap_drop=["ALL"],
            security_opt=["no-new-privileges:true"],
            ipc_mode="none",
            ulimits=[{"Name": "nofile", "Soft": 1024, "Hard": 1024}],
            log_config={"type": "none", "config": {}},
            runtime=self.runtime,
        )
        host_config["CgroupnsMode"] = "private"  # its own cgroup root, not /docker/<id>
        run_id()
        return {
            "image": self.image,
            "command": ["python3", "-I", "-S", "-u", "-c", RUNNER_SOURCE_PATH.read_text()],
            "stdin_open": True,
            "user": self.user,
            "working_dir": self.work_dir,
            "hostname": "sandbox",  # not the container id (still in /proc/self/mountinfo)
            "network_disabled": True,
            "environment": {
                "SIMENV_WORK": self.work_dir,
                "SIMENV_MEMORY_BYTES": str(self.memory_mb * 1024 * 1024),
                "SIMENV_WORK_BYTES": str(self.work_mb * 1024 * 1024),
                "SIMENV_WORK_ENTRIES": str(self.work_entries),
            },
            "labels": {
                MANAGED_LABEL: "1",
                "simenv.run": _IDENTITY["run"],
                "simenv.owner": _IDENTITY["owner"],
            },
            "host_config": host_config,
        }


# ----------------------------------------------------------------------------- channel
class Container:
    """One running container and the request channel to its server.

    Requests are serialised (one at a time); a dead server or a missed deadline marks the
    container dead and raises :class:`InfraError` (the episode is void, not the agent's fault).
    """

    def __init__(self, container_id: str, stream: Any, client: Any) -> None:
        self.id = container_id
        self._stream = stream  # keeps the HTTP response (and so the socket) alive
        self._sock: socket.socket = getattr(stream, "_sock", stream)
        self._client = client
        self._lock = threading.Lock()
        self._buffer = bytearray()
        self._stdout = bytearray()
        self._stderr = bytearray()
        self._next = 0
        self.dead: str | None = None

    def __repr__(self) -> str:
        return f"Container({self.id[:12]})"

    def request(self, op: str, timeout_s: float = 30.0, **fields: Any) -> dict[str, Any]:
        """Send one request and wait for its answer.

        Raises:
            ToolError: The server refused it for a reason the agent caused (a bad path ...).
            InfraError: The container died, or did not answer within ``timeout_s``.
        """
        with self._lock:
            if self.dead is not None:
                raise InfraError(self.dead)
            self._next += 1
            ident = self._next
            line = json.dumps({"id": ident, "op": op, **fields}, separators=(",", ":"))
            deadline = time.monotonic() + timeout_s
            try:
                self._sock.settimeout(timeout_s)
                self._sock.sendall(line.encode() + b"\n")
                while True:
                    answer: dict[str, Any] = json.loads(self._line(deadline))
                    if answer.get("id") == ident:
                        break
            except (OSError, ValueError, _Stopped) as exc:
                self.dead = self._explain(exc, timeout_s)
                raise InfraError(self.dead) from None
        if not answer.get("ok"):
            if answer.get("kind") == "tool":
                raise ToolError(shown(str(answer.get("error"))))
            raise InfraError(
                f"the server in container {self.id[:12]} failed: {answer.get('error')}"
            )
        return answer

    def wait_ready(self, timeout_s: float) -> dict[str, Any]:
        """Wait for the server's greeting (its first line)."""
        with self._lock:
            try:
                self._sock.settimeout(timeout_s)
                answer: dict[str, Any] = json.loads(self._line(time.monotonic() + timeout_s))
            except (OSError, ValueError, _Stopped) as exc:
                self.dead = self._explain(exc, timeout_s)
                raise InfraError(self.dead) from None
        return answer

    def close(self) -> None:
        """Close the channel (the server sees end of input and exits)."""
        self.dead = self.dead or f"container {self.id[:12]} was closed"
        for closer in (self._sock, self._stream):
            with contextlib.suppress(OSError):
                closer.close()

    def _line(self, deadline: float) -> bytes:
        while True:
            end = self._stdout.find(b"\n")
            if end >= 0:
                line = bytes(self._stdout[:end])
                del self._stdout[: end + 1]
                return line
            if time.monotonic() > deadline:
                raise TimeoutError("no answer in time")
            self._fill()

    def _fill(self) -> None:
        chunk = self._sock.recv(262144)
        if not chunk:
            raise _Stopped("end of stream")
        buf = self._buffer
        buf += chunk
        while len(buf) >= 8:
            kind, size = _HEADER.unpack_from(buf)
            if len(buf) < 8 + size:
                break
            target = self._stdout if kind == 1 else self._stderr
            target += buf[8 : 8 + size]
            del buf[: 8 + size]
        if len(self._stderr) > 8192:
            del self._stderr[:-4096]

    def _explain(self, exc: BaseException, timeout_s: float) -> str:
        cid = self.id[:12]
        if isinstance(exc, TimeoutError | socket.timeout):
            why = f"did not answer within {timeout_s:g} s"
        else:
            why = "stopped answering"
        status = ""
        try:
            state = self._client.api.inspect_container(self.id)["State"]
            status = (
                f" (status {state.get('Status')}, exit code {state.get('ExitCode')}, "
                f"OOM-killed {state.get('OOMKilled')})"
            )
        except Exception:
            status = " (it no longer exists)"
        tail = self._stderr.decode(errors="replace").strip()[-300:]
        return (
            f"container {cid} {why}{status}: it was killed from outside, crashed, or the engine "
            f"failed. The episode is void; nothing for the agent to fix."
            + (f" Server said: {tail}" if tail else "")
        )


class _Stopped(Exception):
    """The container's output stream ended."""


def create(client: Any, spec: ContainerSpec, start_timeout_s: float) -> Container:
    """Create and start a container of ``spec``; return it once its server answers."""
    import docker

    try:
        created = client.api.create_container(**spec.create_arguments(client))
    except docker.errors.ImageNotFound as exc:
        raise InfraError(
            f"the image {spec.image!r} is not there. Build simenv's base image with "
            "`simenv docker build-base` (debootstrap + python3, offline from Debian's packages), "
            "or set the sandbox's `image` to one you built that has python3."
        ) from exc
    cid = created["Id"]
    try:
        stream = client.api.attach_socket(
            cid, params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1}
        )
        container = Container(cid, stream, client)
        client.api.start(cid)
        container.wait_ready(start_timeout_s)
    except BaseException:
        remove(client, cid)
        raise
    return container


def remove(client: Any, container_id: str) -> None:
    """Remove a container, whatever its state (no error if it is already gone)."""
    # Already gone is fine; anything else (an engine hiccup) is left for reap().
    with contextlib.suppress(Exception):
        client.api.remove_container(container_id, force=True, v=True)


def shown(text: str) -> str:
    r"""``text`` writable as UTF-8: a name that is not UTF-8, as the server sends it.

    The server reads file names with Python's ``surrogateescape`` (byte ``0xff`` becomes
    ``"\udcff"``), which cannot be encoded. Here each such byte is written ``\xff``, so the
    text can go into any message or record and still says which bytes the name has.
    """
    if text.isascii() or not _SURROGATE.search(text):
        return text
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def raw_name(text: str) -> bytes | None:
    """The bytes of a name that :func:`shown` would change, or ``None`` for a UTF-8 name."""
    if text.isascii() or not _SURROGATE.search(text):
        return None
    return text.encode("utf-8", "surrogateescape")


def encode(data: bytes) -> str:
    """Base64 text of ``data`` (the wire form of file contents)."""
    return base64.b64encode(data).decode()
