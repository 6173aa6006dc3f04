"""The Docker sandbox: one hardened, throwaway container per episode, and what an exec returns.

The pattern as a whole (how it is reset, the threat model) is described in
:mod:`simenv.tools.docker`.
"""

from __future__ import annotations

import base64
import copy
import io
import math
import signal
import tarfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from simenv.errors import InfraError, ToolError
from simenv.tools.docker.container import (
    Container,
    ContainerSpec,
    docker_client,
    encode,
    raw_name,
    shown,
)
from simenv.tools.docker.image import BASE_IMAGE
from simenv.tools.docker.pool import ContainerPool, get_pool, live_containers
from simenv.tools.sandbox import Sandbox
from simenv.types import Task

__all__ = ["MAX_EXEC_TIMEOUT_S", "DockerSandbox", "ExecResult", "docker_available", "exec_limit"]


def docker_available() -> bool:
    """Whether a Docker engine answers (and the ``docker`` package is installed)."""
    try:
        docker_client(timeout_s=5).close()
    except InfraError:
        return False
    return True


MAX_EXEC_TIMEOUT_S = 86_400.0
"""Longest time limit :meth:`DockerSandbox.exec` accepts (a day); longer ones are refused."""


def exec_limit(timeout_s: Any) -> float:
    """``timeout_s`` as the seconds an ``exec`` may run, checked before anything is sent.

    A NaN would reach the container's runner and break its channel, and ``1e12`` overflows the
    socket timeout; both are refused here, with every other value that is not a number of
    seconds in (0, :data:`MAX_EXEC_TIMEOUT_S`].

    Raises:
        ToolError: ``timeout_s`` is not such a number (the message names the value).
    """
    try:
        limit = float(timeout_s)
    except (TypeError, ValueError, OverflowError):
        limit = math.nan
    if not (math.isfinite(limit) and 0.0 < limit <= MAX_EXEC_TIMEOUT_S):
        raise ToolError(
            f"timeout_s must be a number of seconds above 0 and at most "
            f"{MAX_EXEC_TIMEOUT_S:g}; got {timeout_s!r:.60}"
        )
    return limit


@dataclass(frozen=True)
class ExecResult:
    """What a command run in the container did.

    Attributes:
        exit_code: The exit status; negative when a signal killed it (``-9``: SIGKILL).
        stdout: Its standard output (UTF-8, undecodable bytes replaced), at most the cap.
        stderr: Its standard error, likewise.
        truncated: Output went past the cap and was cut.
        oom_killed: The kernel's OOM killer fired during the call (the memory limit).
        duration_s: Wall time of the call inside the container.
    """

    exit_code: int
    stdout: str
    stderr: str
    truncated: bool
    oom_killed: bool
    duration_s: float

    @property
    def ok(self) -> bool:
        """Exit status 0."""
        return self.exit_code == 0

    def status(self, memory_mb: int | None = None) -> str:
        """One line on how it ended, for the agent (empty for a clean exit)."""
        if self.exit_code == 0:
            return ""
        if self.exit_code < 0:
            try:
                name = signal.Signals(-self.exit_code).name
            except ValueError:
                name = f"signal {-self.exit_code}"
            why = f"killed by {name}"
            if self.oom_killed:
                limit = f" ({memory_mb} MiB)" if memory_mb else ""
                why += f": it ran out of memory, the sandbox's limit{limit} was hit"
            return f"[{why}]"
        return f"[exit code {self.exit_code}]"

    def render(self, limit_chars: int = 8000, memory_mb: int | None = None) -> str:
        """Output and status as one text for the agent, cut to ``limit_chars``."""
        parts = [p for p in (self.stdout.rstrip("\n"), self.stderr.rstrip("\n")) if p]
        text = "\n".join(parts)
        if len(text) > limit_chars:
            text = text[: limit_chars // 2] + "\n[... output cut ...]\n" + text[-limit_chars // 2 :]
        elif self.truncated:
            text += "\n[... output cut ...]"
        status = self.status(memory_mb)
        return "\n".join(p for p in (text, status) if p) or "(no output)"


def _decode(files: Mapping[str, str]) -> dict[str, bytes]:
    return {path: base64.b64decode(data) for path, data in files.items()}


def _name(value: Mapping[str, str], key: str, default: str) -> str:
    """The exact name a state entry keeps under ``key`` (as the server reads names)."""
    raw = value.get(key)
    if raw is None:
        return default
    return base64.b64decode(raw).decode("utf-8", "surrogateescape")


class DockerSandbox(Sandbox):
    r"""A container per episode: its work dir is the state, ``exec`` runs things in it.

    Configure with class attributes (each set of values gets its own warm pool):

    Attributes:
        image: Image with ``python3`` on ``PATH`` (default: simenv's base image).
        memory_mb: Memory limit of the container (no swap; the work dir's contents count).
        cpus: CPU limit.
        pids_limit: Most processes alive at once.
        work_mb: Size of the work dir, the only writable path.
        work_dir: Where the work dir is (also the working directory of every command).
        work_entries: Most files, directories and links the work dir may hold.
        exec_timeout_s: Default time limit of :meth:`exec`.
        output_limit_bytes: Output kept per stream and call.
        pool_size: Warm containers kept ready.
        start_timeout_s: Longest wait for a container at ``reset``.
        runtime: An OCI runtime other than Docker's default (e.g. ``"runsc"`` for gVisor).

    Override :meth:`files` to give the starting work dir (from the episode's ``rng``). Keep
    other per-episode facts in attributes: public ones are part of the state, private ones
    (``_name``) are not. The state is those attributes plus ``work``: every file of the work
    dir (text, ``{"base64": ...}`` for binary files, ``{"symlink": target}`` for links).

    File names that are not UTF-8 (the agent's code can make them) are shown with each bad
    byte written ``\xNN`` (:func:`~simenv.tools.docker.container.shown`), in
    :meth:`list_files`, the state and tool errors, so every record stays writable; the state
    keeps their exact bytes too (``"path_base64"``, and ``"target_base64"`` for a link's
    target), so :meth:`restore` brings them back. The file tools address UTF-8 names only.
    """

    image: ClassVar[str] = BASE_IMAGE
    memory_mb: ClassVar[int] = 256
    cpus: ClassVar[float] = 1.0
    pids_limit: ClassVar[int] = 64
    work_mb: ClassVar[int] = 32
    work_dir: ClassVar[str] = "/work"
    work_entries: ClassVar[int] = 16_384
    exec_timeout_s: ClassVar[float] = 10.0
    output_limit_bytes: ClassVar[int] = 64 * 1024
    pool_size: ClassVar[int] = 2
    start_timeout_s: ClassVar[float] = 60.0
    runtime: ClassVar[str | None] = None
    blocking_io = True

    _container: Container | None = None

    # ------------------------------------------------------------------ lifecycle
    @classmethod
    def spec(cls) -> ContainerSpec:
        """The container spec these class attributes describe."""
        return ContainerSpec(
            image=cls.image,
            memory_mb=cls.memory_mb,
            cpus=cls.cpus,
            pids_limit=cls.pids_limit,
            work_mb=cls.work_mb,
            work_dir=cls.work_dir,
            work_entries=cls.work_entries,
            runtime=cls.runtime,
        )

    @classmethod
    def pool(cls) -> ContainerPool:
        """This class's warm pool (shared by every class with the same spec)."""
        return get_pool(cls.spec(), cls.pool_size, cls.start_timeout_s)

    @classmethod
    def prewarm(cls, wait: bool = True) -> None:
        """Fill the pool now (e.g. before a benchmark or a rollout) instead of at first reset."""
        cls.pool().prewarm(wait=wait)

    @classmethod
    def live_resources(cls) -> list[str]:
        """Containers handed to episodes and not yet given back (warm ones are not held)."""
        return [f"container:{cid[:12]}" for cid in live_containers()]

    def files(self, rng: np.random.Generator, task: Task) -> Mapping[str, str | bytes]:
        """The starting work dir: relative path -> contents. Override; the default is empty."""
        return {}

    def setup(self, rng: np.random.Generator, task: Task) -> None:
        """Take a warm container and write :meth:`files` into its work dir."""
        pool = self.pool()
        self._container = pool.acquire(refill=False)
        try:
            files = self.files(rng, task)
            if files:
                self.write_files(files)
        except BaseException:
            self.close()  # nobody will close a sandbox whose setup failed
            raise
        finally:
            pool.refill()  # the replacement is created after this episode's start, not during

    def close(self) -> None:
        """Give the container back (it is destroyed in the background). Safe to repeat."""
        container, self._container = self._container, None
        if container is not None:
            self.pool().release(container)

    @property
    def container_id(self) -> str:
        """The id of this episode's container."""
        return self._live().id

    def _live(self) -> Container:
        if self._container is None:
            raise InfraError(
                f"{type(self).__name__} has no container: setup() was not called or close() "
                "already was"
            )
        return self._container

    # ------------------------------------------------------------------ running things
    def exec(
        self,
        command: str | Sequence[str],
        *,
        timeout_s: float | None = None,
        stdin: str | bytes = b"",
        env: Mapping[str, str] | None = None,
        cwd: str = ".",
    ) -> ExecResult:
        """Run a command in the work dir and wait for it (a time limit always applies).

        Args:
            command: An argv list, or a string run by ``/bin/sh -c``.
            timeout_s: Time limit (default: ``exec_timeout_s``).
            stdin: Standard input for the command.
            env: Extra environment variables.
            cwd: Working directory, relative to the work dir.

        Raises:
            ToolError: It ran past the time limit (every process it started was killed), or
                could not be started (no such program), or ``timeout_s`` is not a number of
                seconds in (0, :data:`MAX_EXEC_TIMEOUT_S`] (refused before anything runs).
            InfraError: The container died or stopped answering.
        """
        argv = ["/bin/sh", "-c", command] if isinstance(command, str) else list(command)
        limit = exec_limit(self.exec_timeout_s if timeout_s is None else timeout_s)
        data = stdin.encode() if isinstance(stdin, str) else stdin
        answer = self._live().request(
            "exec",
            timeout_s=limit + 15.0,
            argv=argv,
            limit_s=limit,
            stdin=encode(data),
            env=dict(env or {}),
            cwd=cwd,
            cap=self.output_limit_bytes,
        )
        result = ExecResult(
            exit_code=int(answer["exit_code"]),
            stdout=base64.b64decode(answer["stdout"]).decode(errors="replace"),
            stderr=base64.b64decode(answer["stderr"]).decode(errors="replace"),
            truncated=bool(answer["truncated"]),
            oom_killed=bool(answer["oom_killed"]),
            duration_s=float(answer["duration_s"]),
        )
        if answer["timed_out"]:
            seen = result.render(limit_chars=600)
            raise ToolError(
                f"the command did not finish within {limit:g} s and was stopped (every process "
                "it started was killed). Look for an infinite loop or a blocking read, or make "
                f"it faster. Output before it was stopped:\n{seen}"
            )
        return result

    def run_python(
        self, code: str, *, timeout_s: float | None = None, stdin: str | bytes = b""
    ) -> ExecResult:
        """Run ``python3 -c code`` in the work dir (see :meth:`exec`)."""
        return self.exec(["python3", "-c", code], timeout_s=timeout_s, stdin=stdin)

    # ------------------------------------------------------------------ files
    def write_files(self, files: Mapping[str, str | bytes]) -> None:
        """Write files (relative paths; parent directories are made).

        Raises:
            ToolError: A path leaves the work dir, or the work dir is full.
        """
        encoded = {
            path: encode(data.encode() if isinstance(data, str) else data)
            for path, data in files.items()
        }
        self._live().request("write", files=encoded)

    def write_file(self, path: str, content: str | bytes) -> None:
        """Write one file (see :meth:`write_files`)."""
        self.write_files({path: content})

    def read_bytes(self, path: str) -> bytes:
        """Read one file of the work dir.

        Raises:
            ToolError: No such file, not a regular file, or a path outside the work dir.
        """
        answer = self._live().request("read", paths=[path])
        return _decode(answer["files"])[path]

    def read_file(self, path: str) -> str:
        """Read one file as text (UTF-8; undecodable bytes replaced)."""
        return self.read_bytes(path).decode(errors="replace")

    def list_files(self) -> dict[str, int]:
        """Every file of the work dir (relative path -> size in bytes), sorted."""
        answer = self._live().request("list")
        return dict(sorted((shown(path), int(size)) for path, size in answer["entries"]))

    def put_archive(self, data: bytes) -> None:
        """Unpack a tar archive into the work dir (regular files and directories only).

        Docker's own archive API cannot see a tmpfs mounted inside a container, so the files
        travel through the container's server like every other write.

        Raises:
            ToolError: A member is a link or device, or its path leaves the work dir.
        """
        files: dict[str, str | bytes] = {}
        with tarfile.open(fileobj=io.BytesIO(data)) as archive:
            for member in archive.getmembers():
                if member.isdir():
                    continue
                if not member.isfile():
                    raise ToolError(f"archive member {member.name!r} is not a regular file")
                handle = archive.extractfile(member)
                files[member.name] = handle.read() if handle else b""
        self.write_files(files)

    def get_archive(self, paths: Sequence[str] | None = None) -> bytes:
        """A tar archive of the given files (default: the whole work dir)."""
        if paths is None:
            contents = _decode(self._live().request("snapshot")["files"])
        else:
            contents = {p: self.read_bytes(p) for p in paths}
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as archive:
            for path, data in sorted(contents.items()):
                info = tarfile.TarInfo(path)
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))
        return buffer.getvalue()

    # ------------------------------------------------------------------ state
    def work_state(self) -> dict[str, Any]:
        """Every file of the work dir: path -> text, ``{"base64": ...}`` or ``{"symlink": ...}``."""
        answer = self._live().request("snapshot")
        out: dict[str, Any] = {}
        for path, data in sorted(_decode(answer["files"]).items()):
            raw = raw_name(path)
            if raw is not None:
                out[shown(path)] = {"base64": encode(data), "path_base64": encode(raw)}
                continue
            try:
                out[path] = data.decode()
            except UnicodeDecodeError:
                out[path] = {"base64": encode(data)}
        for path, target in answer["links"].items():
            link: dict[str, str] = {"symlink": shown(target)}
            for key, name in (("path_base64", path), ("target_base64", target)):
                raw = raw_name(name)
                if raw is not None:
                    link[key] = encode(raw)
            out[shown(path)] = link
        return dict(sorted(out.items()))

    def state(self) -> dict[str, Any]:
        """Public attributes plus ``work``, the work dir's files (read from the container)."""
        return {**super().state(), "work": self.work_state()}

    def snapshot(self) -> dict[str, Any]:
        """A copy of the state that :meth:`restore` brings back (into any container)."""
        return copy.deepcopy(self.state())

    def restore(self, snapshot: dict[str, Any]) -> None:
        """Return to a snapshot: attributes, and the work dir replaced by its files."""
        super().restore({k: v for k, v in snapshot.items() if k != "work"})
        files: dict[str, str] = {}
        links: dict[str, str] = {}
        for path, value in snapshot.get("work", {}).items():
            if isinstance(value, str):
                files[path] = encode(value.encode())
                continue
            path = _name(value, "path_base64", path)
            if "symlink" in value:
                links[path] = _name(value, "target_base64", value["symlink"])
            else:
                files[path] = value["base64"]
        self._live().request("restore", files=files, links=links)
