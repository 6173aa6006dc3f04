"""Per-episode reset of a 10,000-row SQLite database, and per-call cost of a replayed tool.

SQLite: copying the template with ``deserialize`` (what ``SQLiteSandbox`` does), with the backup
API, and rebuilding from the SQL script, side by side. Replay: ``Cassette.serve`` with 100 and
10,000 recorded calls, against a bare dict lookup on a precomputed key (the floor).

Run: ``python bench/sqlite_replay.py [--write]``.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from _report import machine, write_section

from simenv.tools.replay import Cassette

ROWS = 10_000


def _script() -> str:
    values = ",".join(f"({i}, {i * 7 % 1000}, 'name{i}')" for i in range(ROWS))
    create = "CREATE TABLE t (id INTEGER PRIMARY KEY, v INTEGER, s TEXT);"
    return f"{create} INSERT INTO t VALUES {values};"


def _time(fn: Callable[[], object], n: int) -> float:
    best = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(n):
            fn()
        best.append((time.perf_counter() - start) / n)
    return min(best)


def sqlite_rows() -> list[str]:
    script = _script()
    template = sqlite3.connect(":memory:")
    template.executescript(script)
    blob = template.serialize()

    def by_deserialize() -> None:
        db = sqlite3.connect(":memory:")
        db.deserialize(blob)
        db.close()

    def by_backup() -> None:
        db = sqlite3.connect(":memory:")
        template.backup(db)
        db.close()

    def by_script() -> None:
        db = sqlite3.connect(":memory:")
        db.executescript(script)
        db.close()

    d, b, s = _time(by_deserialize, 300), _time(by_backup, 300), _time(by_script, 5)
    return [
        f"| SQLite reset, 10,000 rows: backup API from the template (used) | {b * 1e6:.0f} µs "
        "| 1.0x |",
        f"| SQLite reset: `deserialize` of the template's bytes | {d * 1e6:.0f} µs "
        f"| {d / b:.1f}x |",
        f"| SQLite reset: rebuild from the SQL script | {s * 1e3:.1f} ms | {s / b:.0f}x |",
    ]


def replay_rows() -> list[str]:
    rows = []
    for size in (100, 10_000):
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "c.json"
            entries = [
                {"tool": "lookup", "arguments": {"id": f"K-{i}", "n": i}, "response": {"v": i}}
                for i in range(size)
            ]
            path.write_text(json.dumps({"version": 1, "entries": entries}))
            cassette = Cassette(path)
            arguments = {"n": size // 2, "id": f"K-{size // 2}"}
            cassette.serve("lookup", arguments, lambda: None)  # load once
            table = {cassette.key("lookup", arguments): {"v": 1}}
            key = cassette.key("lookup", arguments)
            served = _time(
                lambda c=cassette, a=arguments: c.serve("lookup", a, lambda: None), 20_000
            )
            floor = _time(lambda t=table, k=key: t[k], 20_000)
            rows.append(
                f"| replayed call, {size:,} recorded | {served * 1e6:.1f} µs | "
                f"floor (dict lookup) {floor * 1e6:.2f} µs |"
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args()
    rows = [
        "| measurement | best of 5 | against |",
        "|---|---|---|",
        *sqlite_rows(),
        *replay_rows(),
    ]
    report = "\n".join(rows)
    print(report)
    if args.write:
        write_section(
            "sqlite_replay", f"`python bench/sqlite_replay.py --write` ({machine()})\n\n{report}"
        )


if __name__ == "__main__":
    main()
