"""The episode store: an append-only JSONL file, one episode per line, safe to resume.

Each finished episode is written as one line and flushed at once, so a run killed at any moment
loses at most the episodes still in flight. On ``resume`` the store first cuts off a partial
last line (what a kill in the middle of a write leaves), then reports which jobs are done, so
the runner neither repeats nor loses an episode.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

from simenv.errors import SimenvError
from simenv.types import Episode

__all__ = ["EpisodeStore", "job_key", "read_episodes"]


def job_key(episode: Episode) -> str | None:
    """The runner's job key stored in ``metadata["job"]["key"]``, if any."""
    job = episode.metadata.get("job")
    return str(job["key"]) if isinstance(job, dict) and "key" in job else None


def read_episodes(path: str | Path) -> Iterator[Episode]:
    """Every complete episode in a JSONL file (a partial last line is ignored).

    Raises:
        SimenvError: A line in the middle of the file is not a valid episode record.
    """
    path = Path(path)
    with path.open("rb") as handle:
        lines = handle.read().split(b"\n")
    for number, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        try:
            yield Episode.from_json(raw.decode("utf-8"))
        except (ValueError, TypeError, KeyError) as exc:
            if number == len(lines):  # the unterminated tail of a killed write
                return
            raise SimenvError(
                f"{path}:{number}: not an episode record ({exc}); the file is damaged "
                "beyond its last line"
            ) from exc


class EpisodeStore:
    """Append episodes to a JSONL file.

    Args:
        path: The file; its directory is created if needed.
        resume: Continue an existing file (its episodes count as done). Without it, an existing
            non-empty file is refused rather than overwritten or mixed with a new run.
        fsync: Also ``fsync`` after every episode (survives a machine crash, costs ~ms each).
    """

    def __init__(self, path: str | Path, *, resume: bool = False, fsync: bool = False) -> None:
        self.path = Path(path)
        self.fsync = fsync
        self._lock = threading.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        exists = self.path.exists() and self.path.stat().st_size > 0
        if exists and not resume:
            raise SimenvError(
                f"{self.path} already holds episodes; pass resume=True (--resume) to continue "
                "that run, or write to another file"
            )
        self.done: dict[str, Episode] = {}
        if exists:
            self._repair()
            for episode in read_episodes(self.path):
                key = job_key(episode)
                if key is not None:
                    self.done[key] = episode
        self._handle = self.path.open("a", encoding="utf-8")

    def _repair(self) -> None:
        """Cut a partial last line left by a kill in the middle of a write."""
        with self.path.open("rb+") as handle:
            data = handle.read()
            if data and not data.endswith(b"\n"):
                handle.truncate(data.rfind(b"\n") + 1)

    def write(self, episode: Episode) -> None:
        """Append one episode and flush it to the file."""
        line = episode.to_json() + "\n"
        with self._lock:
            self._handle.write(line)
            self._handle.flush()
            if self.fsync:
                os.fsync(self._handle.fileno())
            key = job_key(episode)
            if key is not None:
                self.done[key] = episode

    def close(self) -> None:
        """Close the file."""
        self._handle.close()

    def __enter__(self) -> EpisodeStore:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
