"""Shared by the server benchmarks: `simenv serve` in its own process, and its threads."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple


class Served(NamedTuple):
    """A running `simenv serve`: its URL, process id, and the token clients send."""

    url: str
    pid: int
    token: str


@contextmanager
def served(scenarios: list[str], *options: str, token: str | None = None) -> Iterator[Served]:
    """`simenv serve SCENARIOS OPTIONS --port 0` in a new process; stopped with SIGINT after."""
    command = [sys.executable, "-m", "simenv.cli", "serve", *scenarios, "--port", "0", *options]
    if token:
        command += ["--token", token]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as proc:
        try:
            assert proc.stdout is not None
            lines = [proc.stdout.readline() for _ in range(3)]
            found = re.search(r"http://\S+:\d+", lines[0])
            if found is None:
                raise SystemExit(f"the server did not start: {lines!r}")
            printed = re.search(r"^token: (\S+)", lines[2])
            yield Served(found.group(0), proc.pid, token or (printed.group(1) if printed else ""))
        finally:
            proc.send_signal(signal.SIGINT)
            proc.communicate(timeout=120)


def threads(pid: int) -> int:
    """Threads of process ``pid`` now (Linux), 0 where that cannot be read."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    found = re.search(r"^Threads:\s+(\d+)", status, re.M)
    return int(found.group(1)) if found else 0


def client_token(given: str | None) -> str:
    """The token a benchmark sends: ``--token``, else SIMENV_SERVER_TOKEN, else none."""
    return given or os.environ.get("SIMENV_SERVER_TOKEN", "")
