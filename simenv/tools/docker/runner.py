"""The server that runs inside every simenv container (its PID 1), as plain ``python3 -c``.

It is not imported by simenv: :mod:`simenv.tools.docker.container` reads this file's text and starts
the container with ``python3 -I -S -u -c <text>``, so any image with a Python 3.8+ interpreter
works. It reads one JSON request per line on stdin and writes one JSON response per line on
stdout (the container's attached streams): a tool call costs a pipe round trip, not a
``docker exec`` (about 70 ms).

Requests are ``{"id": n, "op": ..., ...}``; responses ``{"id": n, "ok": true, ...}`` or
``{"id": n, "ok": false, "kind": "tool" | "infra", "error": "..."}``. Operations:

- ``ping``: answers ``{"pong": true}``;
- ``exec``: runs ``argv`` in the work dir with a time limit, captured (capped) output, and a
  per-process address-space limit; afterwards every other process in the container is killed,
  so nothing an agent starts outlives its call (and no fork bomb survives its time limit);
- ``write`` / ``read`` / ``list``: files under the work dir (base64 contents);
- ``snapshot`` / ``restore``: every file and symlink under the work dir, out and back in.

Whatever the agent left in the work dir is read without recursion and within bounds: a tree of
any depth, a FIFO (never opened, so never waited on), an unreadable mode (the server, as the
files' owner, gives itself read access back), a sparse file or hard links that add up to more
than the work dir holds, or more entries than it may hold, are answered with a refusal the
agent can read (``kind: "tool"``), never a crash of this server.

Hardening of its own: it makes itself non-dumpable (so processes of the same user cannot
ptrace it or open ``/proc/1/fd`` to forge answers), raises its children's OOM score (the
kernel kills the child, not the server, when the memory limit is hit), and reaps orphans.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import json
import os
import resource
import selectors
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

WORK = os.environ.get("SIMENV_WORK", "/work")
BASE_ENV = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "HOME": WORK,
    "LANG": "C.UTF-8",
    "PYTHONDONTWRITEBYTECODE": "1",
    "PYTHONHASHSEED": "0",
    "PYTHONUNBUFFERED": "1",
}
MEMORY_BYTES = int(os.environ.get("SIMENV_MEMORY_BYTES", "0"))
WORK_BYTES = int(os.environ.get("SIMENV_WORK_BYTES", "0")) or 2**62
MAX_ENTRIES = int(os.environ.get("SIMENV_WORK_ENTRIES", "0")) or 100_000


class Refused(Exception):
    """The request is the agent's mistake (a bad path, a full disk): a ToolError on the host."""


def _non_dumpable() -> None:
    try:
        import ctypes

        ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE = 4
    except Exception:  # pragma: no cover - a libc without prctl: keep going, less hardened
        pass


def _limit_child(pid: int) -> None:
    """Make ``pid`` the OOM killer's first choice and cap its address space.

    Done from here, just after the spawn, instead of in a ``preexec_fn``: that would force a
    full ``fork`` of this process (about 10 ms) instead of a ``vfork`` (about 1 ms).
    """
    with contextlib.suppress(OSError), open(f"/proc/{pid}/oom_score_adj", "w") as handle:
        handle.write("1000")
    if MEMORY_BYTES > 0:
        with contextlib.suppress(OSError):
            resource.prlimit(pid, resource.RLIMIT_AS, (MEMORY_BYTES, MEMORY_BYTES))


def _oom_kills() -> int:
    for path, key in (
        ("/sys/fs/cgroup/memory.events", "oom_kill"),
        ("/sys/fs/cgroup/memory/memory.oom_control", "oom_kill"),
    ):
        try:
            with open(path) as handle:
                for line in handle:
                    name, _, value = line.partition(" ")
                    if name == key:
                        return int(value)
        except (OSError, ValueError):
            continue
    return 0


def _reap() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _kill_others() -> None:
    """SIGKILL every process this user may signal except this one, until none is left."""
    for _ in range(1000):
        try:
            os.kill(-1, signal.SIGKILL)
        except ProcessLookupError:
            _reap()
            return
        except PermissionError:  # pragma: no cover - nothing left that we may signal
            _reap()
            return
        _reap()
        time.sleep(0.001)


def _path(relative: str) -> str:
    if not isinstance(relative, str) or not relative or "\x00" in relative:
        raise Refused("a path must be a non-empty string")
    full = os.path.normpath(os.path.join(WORK, relative))
    if full == WORK:
        return full
    if not full.startswith(WORK + os.sep):
        raise Refused(f"{relative!r} is outside the work directory {WORK}; use a relative path")
    parent = os.path.realpath(os.path.dirname(full))
    if parent != WORK and not parent.startswith(WORK + os.sep):
        raise Refused(f"{relative!r} leads outside the work directory {WORK} (via a symlink)")
    return full


def _pump(
    proc: subprocess.Popen[bytes], data: bytes, deadline: float, cap: int
) -> tuple[bytes, bytes, bool, bool]:
    """Feed stdin, collect at most ``cap`` bytes of each stream; (out, err, timed_out, cut)."""
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    chunks: dict[int, list[bytes]] = {1: [], 2: []}
    sizes = {1: 0, 2: 0}
    cut = False
    selector = selectors.DefaultSelector()
    selector.register(proc.stdout, selectors.EVENT_READ, 1)
    selector.register(proc.stderr, selectors.EVENT_READ, 2)
    if data:
        os.set_blocking(proc.stdin.fileno(), False)
        selector.register(proc.stdin, selectors.EVENT_WRITE, 0)
    else:
        proc.stdin.close()
    view = memoryview(data)
    open_streams = 2
    while open_streams:
        left = deadline - time.monotonic()
        if left <= 0:
            return b"".join(chunks[1]), b"".join(chunks[2]), True, cut
        for key, _ in selector.select(left):
            stream = key.data
            if stream == 0:
                try:
                    sent = os.write(proc.stdin.fileno(), view[:65536])
                except (BrokenPipeError, BlockingIOError) as exc:
                    sent = 0 if isinstance(exc, BlockingIOError) else len(view)
                view = view[sent:]
                if not view:
                    selector.unregister(proc.stdin)
                    proc.stdin.close()
                continue
            chunk = os.read(key.fd, 65536)
            if not chunk:
                selector.unregister(key.fileobj)
                open_streams -= 1
                continue
            if sizes[stream] < cap:
                chunks[stream].append(chunk[: cap - sizes[stream]])
            if sizes[stream] + len(chunk) > cap:
                cut = True
            sizes[stream] += len(chunk)
    selector.close()
    return b"".join(chunks[1]), b"".join(chunks[2]), False, cut


def _exec(req: dict[str, Any]) -> dict[str, Any]:
    argv = req["argv"]
    limit_s = float(req["limit_s"])
    env = dict(BASE_ENV)
    env.update(req.get("env") or {})
    cwd = _path(req.get("cwd") or ".")
    oom_before = _oom_kills()
    start = time.monotonic()
    try:
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            close_fds=False,  # every fd of this server is close-on-exec already; closing them
            # all by number would cost ~10 ms, as a non-dumpable process cannot list its fds
        )
    except OSError as exc:
        raise Refused(f"could not start {argv[0]!r}: {exc.strerror or exc}") from None
    _limit_child(proc.pid)
    stdin = base64.b64decode(req.get("stdin") or "")
    deadline = start + limit_s
    out, err, timed_out, cut = _pump(proc, stdin, deadline, int(req.get("cap", 65536)))
    if not timed_out:
        try:  # it may have closed its output and kept running
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            timed_out = True
    if timed_out:
        _kill_others()
    code = proc.wait()
    duration = time.monotonic() - start
    _kill_others()
    return {
        "exit_code": code,
        "stdout": base64.b64encode(out).decode(),
        "stderr": base64.b64encode(err).decode(),
        "timed_out": timed_out,
        "truncated": cut,
        "oom_killed": _oom_kills() > oom_before,
        "duration_s": duration,
    }


def _makedirs(directory: str) -> None:
    """``os.makedirs(directory, exist_ok=True)`` without recursion (any depth)."""
    missing = []
    while not os.path.isdir(directory):
        missing.append(directory)
        directory = os.path.dirname(directory)
    for path in reversed(missing):
        os.mkdir(path)


def _open_file(full: str, relative: str, flags: int) -> int:
    """An fd of the regular file ``full``: never follows a link, never waits on a FIFO.

    A file the agent made unreadable is opened after giving its owner (this server's user)
    read and write access back.
    """
    flags |= os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(full, flags, 0o644)
    except PermissionError:
        os.chmod(full, stat.S_IMODE(os.lstat(full).st_mode) | 0o600, follow_symlinks=False)
        fd = os.open(full, flags, 0o644)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise Refused(f"{relative!r} is not a regular file")
    os.set_blocking(fd, True)
    return fd


def _write(req: dict[str, Any]) -> dict[str, Any]:
    for relative, encoded in req["files"].items():
        full = _path(relative)
        _makedirs(os.path.dirname(full))
        if os.path.islink(full):
            os.unlink(full)
        try:
            fd = _open_file(full, relative, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        except OSError as exc:
            if exc.errno == errno.ENXIO:  # a FIFO, opened without blocking
                raise Refused(f"{relative!r} is not a regular file") from None
            raise
        with os.fdopen(fd, "wb") as handle:
            handle.write(base64.b64decode(encoded))
    return {}


def _read_file(full: str, relative: str, limit: int) -> bytes:
    fd = _open_file(full, relative, os.O_RDONLY)
    with os.fdopen(fd, "rb") as handle:
        size = os.fstat(fd).st_size
        if size > limit:
            raise Refused(_too_big(relative, size))
        return handle.read(limit + 1)


def _too_big(relative: str, size: int) -> str:
    return (
        f"{relative!r} is {size} bytes, more than the work directory holds ({WORK_BYTES}): a "
        "sparse file or hard links; the work directory cannot be read until it is removed"
    )


def _read(req: dict[str, Any]) -> dict[str, Any]:
    files = {}
    for relative in req["paths"]:
        full = _path(relative)
        try:
            data = _read_file(full, relative, WORK_BYTES)
        except FileNotFoundError:
            raise Refused(f"no file {relative!r} in the work directory") from None
        except OSError as exc:
            raise Refused(f"cannot read {relative!r}: {exc.strerror}") from None
        files[relative] = base64.b64encode(data).decode()
    return {"files": files}


def _scan(directory: str) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(directory) as entries:
            return sorted(entries, key=lambda e: e.name)
    except PermissionError:  # the agent's chmod: its owner takes access back
        os.chmod(directory, stat.S_IMODE(os.lstat(directory).st_mode) | 0o700)
        with os.scandir(directory) as entries:
            return sorted(entries, key=lambda e: e.name)


def _entries() -> Iterator[tuple[str, os.DirEntry[str]]]:
    """``(relative path, entry)`` of everything under the work dir but itself, sorted.

    Depth-first with a stack of its own (a tree of any depth is fine), and at most
    :data:`MAX_ENTRIES` entries.
    """
    count = 0
    stack = [WORK]
    prefix = len(WORK) + 1
    while stack:
        directory = stack.pop()
        try:
            children = _scan(directory)
        except OSError as exc:
            where = directory[prefix:] or "."
            raise Refused(
                f"cannot read the directory {where[:200]!r} of the work directory: "
                f"{exc.strerror or exc}; remove or rename it"
            ) from None
        below = []
        for entry in children:
            count += 1
            if count > MAX_ENTRIES:
                raise Refused(
                    f"the work directory holds more than {MAX_ENTRIES} files and directories; "
                    "remove some"
                )
            if entry.is_dir(follow_symlinks=False):
                below.append(entry.path)
            yield entry.path[prefix:], entry
        stack.extend(reversed(below))


def _walk() -> tuple[dict[str, str], dict[str, str]]:
    """Every regular file (base64) and symlink (its target) under the work dir.

    Other kinds (FIFOs, sockets) are not part of the state and are left alone.
    """
    files, links = {}, {}
    total = 0
    for relative, entry in _entries():
        if entry.is_symlink():
            links[relative] = os.readlink(entry.path)
        elif entry.is_file(follow_symlinks=False):
            data = _read_file(entry.path, relative, WORK_BYTES - total)
            total += len(data)
            if total > WORK_BYTES:
                raise Refused(_too_big(relative, total))
            files[relative] = base64.b64encode(data).decode()
    return files, links


def _list(req: dict[str, Any]) -> dict[str, Any]:
    entries = [
        [relative, entry.stat(follow_symlinks=False).st_size]
        for relative, entry in _entries()
        if not entry.is_dir(follow_symlinks=False)
    ]
    return {"entries": entries}


def _remove_all() -> None:
    """Empty the work dir, however deep its tree, without recursion."""
    directories = []
    for _, entry in _entries():
        if entry.is_dir(follow_symlinks=False):
            directories.append(entry.path)
        else:
            os.unlink(entry.path)
    for directory in reversed(directories):  # children come after their parents
        os.rmdir(directory)


def _snapshot(req: dict[str, Any]) -> dict[str, Any]:
    files, links = _walk()
    return {"files": files, "links": links}


def _restore(req: dict[str, Any]) -> dict[str, Any]:
    _remove_all()
    _write({"files": req["files"]})
    for relative, target in req.get("links", {}).items():
        full = _path(relative)
        _makedirs(os.path.dirname(full))
        os.symlink(target, full)
    return {}


OPS = {
    "ping": lambda req: {"pong": True},
    "exec": _exec,
    "write": _write,
    "read": _read,
    "list": _list,
    "snapshot": _snapshot,
    "restore": _restore,
}


def _answer(message: dict[str, Any]) -> None:
    data = (json.dumps(message, separators=(",", ":")) + "\n").encode()
    view = memoryview(data)
    while view:
        view = view[os.write(1, view) :]


def main() -> None:
    """Serve requests until stdin closes."""
    if os.getpid() != 1:
        # After every call the server kills every process its user may signal: right for the
        # container's PID 1, a disaster anywhere else (on a host: all of the user's processes).
        sys.exit("simenv's docker runner must be the container's PID 1 (no --init); exiting")
    _non_dumpable()
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    _answer({"id": 0, "ok": True, "ready": True, "python": sys.version.split()[0]})
    for line in sys.stdin.buffer:
        try:
            req = json.loads(line)
            ident = req.get("id")
        except ValueError:
            _answer({"id": None, "ok": False, "kind": "infra", "error": "request is not JSON"})
            continue
        try:
            result = OPS[req["op"]](req)
            result.update(id=ident, ok=True)
        except Refused as exc:
            result = {"id": ident, "ok": False, "kind": "tool", "error": str(exc)}
        except RecursionError:  # only a shape the agent gave the work dir nests this deep
            error = "the work directory nests too deep to handle; remove its deepest directories"
            result = {"id": ident, "ok": False, "kind": "tool", "error": error}
        except OSError as exc:  # a full work dir, a bad name ...: the agent can act on it
            where = os.path.relpath(exc.filename, WORK) if exc.filename else ""
            error = f"{exc.strerror or exc} ({where})" if where else str(exc.strerror or exc)
            result = {"id": ident, "ok": False, "kind": "tool", "error": error}
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            result = {"id": ident, "ok": False, "kind": "infra", "error": error}
        _reap()
        _answer(result)


if __name__ == "__main__":
    main()
