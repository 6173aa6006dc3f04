"""Per-episode reset of a 10,000-row SQLite database, and the cost of one ``run_sql`` call.

Resets, side by side in one run: ``SQLiteSandbox.setup`` + ``close`` (what every episode pays:
``deserialize`` of the template's bytes plus the guards), then the bare copy methods:
``deserialize``, the backup API, and rebuilding from the SQL script; the floor is opening and
closing an empty ``:memory:`` connection. A template that depends on the episode seed is built
anew for each new seed (SQLAlchemy, schema and inserts): its cost is shown too.

Calls: the agent's ``run_sql`` (authorizer, time limit, row limit, text table) and
``SQLiteSandbox.execute`` (the guards without the table) against a bare ``sqlite3`` execute +
fetch on a connection holding the same data, for a point lookup and a full scan.

Every measurement runs in short interleaved rounds; the fastest round of each is reported (the
least disturbed on a noisy machine) with the median beside it.

Run: ``python bench/sqlite_reset.py [--rounds R] [--write]``; ``--write`` updates the
``sqlite_reset`` section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import time
from collections.abc import Callable

import numpy as np
from _report import machine, write_section
from sqlalchemy import Connection

from simenv import Task
from simenv.tools.sqlite import SQLiteSandbox, run_sql

ROWS = 10_000
TASK = Task("t0", "bench")
CREATE = "CREATE TABLE t (id INTEGER PRIMARY KEY, v INTEGER, s TEXT);"
LOOKUP = "SELECT * FROM t WHERE id = 4321"
SCAN = "SELECT COUNT(*), SUM(v) FROM t WHERE s LIKE '%99%'"


def _rows(rng: np.random.Generator) -> list[tuple[int, int, str]]:
    values = rng.integers(0, 1000, ROWS).tolist()
    return [(i, v, f"name{i}") for i, v in enumerate(values)]


class Table10k(SQLiteSandbox):
    schema = CREATE

    def build(self, db: Connection, rng: np.random.Generator) -> None:
        db.exec_driver_sql("INSERT INTO t VALUES (?, ?, ?)", _rows(rng))


class PerSeed10k(Table10k):
    per_seed = True
    max_templates = 1


def _per_call(fn: Callable[[], object], n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n


def _resets() -> dict[str, Callable[[], object]]:
    template = Table10k()
    template.setup(np.random.default_rng(0), TASK)
    blob = template.db.serialize()
    source = sqlite3.connect(":memory:")
    source.deserialize(blob)
    values = ",".join(f"({i}, {v}, '{s}')" for i, v, s in _rows(np.random.default_rng(0)))
    script = f"{CREATE} INSERT INTO t VALUES {values};"
    rng = np.random.default_rng(0)

    def sandbox() -> None:
        box = Table10k()
        box.setup(rng, TASK)
        box.close()

    def per_seed() -> None:
        box = PerSeed10k()
        box.setup(rng, TASK)  # a new seed every time: a new template
        box.close()

    def deserialize() -> None:
        db = sqlite3.connect(":memory:")
        db.deserialize(blob)
        db.close()

    def backup() -> None:
        db = sqlite3.connect(":memory:")
        source.backup(db)
        db.close()

    def rebuild() -> None:
        db = sqlite3.connect(":memory:")
        db.executescript(script)
        db.close()

    return {
        "floor": lambda: sqlite3.connect(":memory:").close(),
        "sandbox": sandbox,
        "deserialize": deserialize,
        "backup": backup,
        "rebuild": rebuild,
        "per_seed": per_seed,
    }


def _calls() -> dict[str, Callable[[], object]]:
    box = Table10k()
    box.setup(np.random.default_rng(0), TASK)
    bare = sqlite3.connect(":memory:")
    bare.deserialize(box.db.serialize())
    out: dict[str, Callable[[], object]] = {}
    for name, query in (("lookup", LOOKUP), ("scan", SCAN)):
        out[f"bare {name}"] = lambda q=query: bare.execute(q).fetchall()
        out[f"execute {name}"] = lambda q=query: box.execute(q)
        out[f"run_sql {name}"] = lambda q=query: run_sql.fn(db=box, query=q)
    return out


def measure(jobs: dict[str, Callable[[], object]], rounds: int) -> dict[str, list[float]]:
    """Seconds per call of each job, one value per round, jobs interleaved within a round."""
    slow = {"rebuild": 5, "per_seed": 5}
    times: dict[str, list[float]] = {name: [] for name in jobs}
    for fn in jobs.values():
        fn()  # warm-up (builds the templates)
    for _ in range(rounds):
        for name, fn in jobs.items():
            times[name].append(_per_call(fn, slow.get(name, 200)))
    return times


def _us(seconds: float) -> str:
    return f"{seconds * 1e6:,.1f} µs" if seconds < 1e-3 else f"{seconds * 1e3:,.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args()
    resets, calls = measure(_resets(), args.rounds), measure(_calls(), args.rounds)
    best = {name: min(v) for name, v in {**resets, **calls}.items()}
    median = {name: statistics.median(v) for name, v in {**resets, **calls}.items()}

    def row(label: str, name: str, against: str) -> str:
        ratio = best[name] / best[against]
        return f"| {label} | {_us(best[name])} | {_us(median[name])} | {ratio:,.1f}x |"

    report = "\n".join(
        [
            "| reset of a 10,000-row database | fastest round | median | against the floor |",
            "|---|---|---|---|",
            row("floor: open + close an empty `:memory:` connection", "floor", "floor"),
            row("**`SQLiteSandbox.setup` + `close` (deserialize + guards)**", "sandbox", "floor"),
            row("`deserialize` of the template's bytes", "deserialize", "floor"),
            row("backup API from the template connection", "backup", "floor"),
            row("rebuild from the SQL script", "rebuild", "floor"),
            row("`per_seed` template: built anew for a new seed", "per_seed", "floor"),
            "",
            "| one call | fastest round | median | against bare `sqlite3` |",
            "|---|---|---|---|",
            row("bare `execute` + `fetchall`, point lookup", "bare lookup", "bare lookup"),
            row("`SQLiteSandbox.execute` (guards), point lookup", "execute lookup", "bare lookup"),
            row("`run_sql` (guards + text table), point lookup", "run_sql lookup", "bare lookup"),
            row("bare `execute` + `fetchall`, scan of 10,000 rows", "bare scan", "bare scan"),
            row("`SQLiteSandbox.execute` (guards), scan", "execute scan", "bare scan"),
            row("`run_sql` (guards + text table), scan", "run_sql scan", "bare scan"),
        ]
    )
    print(report)
    if args.write:
        write_section(
            "sqlite_reset",
            f"`python bench/sqlite_reset.py --write` ({args.rounds} interleaved rounds; "
            f"{machine()}, SQLite {sqlite3.sqlite_version})\n\n{report}",
        )


if __name__ == "__main__":
    main()
