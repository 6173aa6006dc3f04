"""Checks for rewards on a SQLite sandbox: compare a query's result or the final state with gold.

:func:`same_result` runs a query (the agent's, perhaps) read-only and time-limited and compares
its rows with a trusted query's; :func:`state_matches` compares every table with gold rows.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from simenv.errors import ToolError
from simenv.tools.sqlite.guard import Guard
from simenv.tools.sqlite.results import is_ordered, same_rows
from simenv.tools.sqlite.sandbox import SQLiteSandbox

__all__ = ["same_result", "state_matches"]


def _comparable(row: Sequence[Any]) -> tuple[Any, ...]:
    return tuple(bytes.fromhex(v["blob"]) if isinstance(v, dict) else v for v in row)


def same_result(
    db: SQLiteSandbox | sqlite3.Connection,
    query: str,
    gold: str | Sequence[Sequence[Any]],
    *,
    ordered: bool | None = None,
    rel_tol: float = 1e-6,
    abs_tol: float = 1e-9,
    allow_extra_columns: bool = False,
    time_limit_s: float = 5.0,
) -> bool:
    """Whether ``query`` returns the same rows as the trusted ``gold`` query.

    ``query`` runs read-only and time-limited (it may be the agent's); an error or a refusal
    counts as a mismatch. Rows compare as multisets, or in order when ``gold`` has a
    top-level ORDER BY; numbers within ``rel_tol`` / ``abs_tol``.

    Args:
        db: A sandbox or a plain connection (whose authorizer and progress handler are
            replaced while ``query`` runs, then removed).
        query: The query to judge.
        gold: The reference query, or its rows when already computed (then ``ordered``
            defaults to False).
        ordered: Force the comparison in order (True) or as multisets (False).
        rel_tol: Relative tolerance for numbers.
        abs_tol: Absolute tolerance for numbers (e.g. 0.005 to accept money rounded to cents).
        allow_extra_columns: Accept a result with more columns, if some of its columns (in
            any order) equal the gold's row for row (see :func:`same_rows`).
        time_limit_s: For a plain connection (a sandbox uses its own ``time_limit_s``).
    """
    try:
        if isinstance(db, SQLiteSandbox):
            mine = db.execute(query, read_only=True, max_rows=-1).rows
        else:
            mine = _guarded_rows(db, query, time_limit_s)
    except (ToolError, sqlite3.Error, sqlite3.Warning, ValueError, OverflowError):
        return False
    if isinstance(gold, str):
        theirs = db.query(gold) if isinstance(db, SQLiteSandbox) else db.execute(gold).fetchall()
        order = is_ordered(gold) if ordered is None else ordered
    else:
        theirs, order = [tuple(r) for r in gold], bool(ordered)
    return same_rows(
        mine,
        theirs,
        ordered=order,
        rel_tol=rel_tol,
        abs_tol=abs_tol,
        allow_extra_columns=allow_extra_columns,
    )


def _guarded_rows(db: sqlite3.Connection, sql: str, time_limit_s: float) -> list[tuple[Any, ...]]:
    guard = Guard(writes_denied=True)
    guard.deadline = time.monotonic() + time_limit_s
    guard.install(db)
    try:
        return db.execute(sql).fetchall()
    finally:
        db.set_authorizer(None)
        db.set_progress_handler(None, 0)


def state_matches(
    db: SQLiteSandbox,
    gold_state: Mapping[str, Iterable[Sequence[Any]]],
    *,
    tables: Iterable[str] | None = None,
    rel_tol: float = 1e-9,
    abs_tol: float = 1e-9,
) -> bool:
    """Whether the database holds exactly the gold rows (each table as a multiset).

    Args:
        db: The sandbox, usually ``outcome.final``.
        gold_state: Table -> rows, e.g. another sandbox's ``state()`` or written by hand.
        tables: The tables to compare (default: every table of either side, so a missing or
            extra table is a mismatch).
        rel_tol: Relative tolerance for numbers.
        abs_tol: Absolute tolerance for numbers.
    """
    mine = db.tables()
    names = set(mine) | set(gold_state) if tables is None else set(tables)
    for name in names:
        if name not in mine or name not in gold_state:
            return False
        gold = [_comparable(r) for r in gold_state[name]]
        if not same_rows(mine[name], gold, rel_tol=rel_tol, abs_tol=abs_tol):
            return False
    return True
