"""The SQLite sandbox: a private in-memory database per episode, built from a cached template.

Also the agent's SQL tool (:func:`sql_tool`, :data:`run_sql`). The pattern as a whole is
described in :mod:`simenv.tools.sqlite`.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import sqlite3
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Hashable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

import numpy as np

from simenv.errors import ScenarioError, ToolError
from simenv.tools.base import Tool, tool
from simenv.tools.sandbox import Sandbox
from simenv.tools.sqlite.guard import (
    MAX_LIKE_PATTERN,
    MAX_VALUE_BYTES,
    BoundedFormat,
    Guard,
    limit_heap,
)
from simenv.tools.sqlite.results import QueryResult, format_table
from simenv.types import Task

if TYPE_CHECKING:
    from sqlalchemy import Connection, MetaData

__all__ = ["SQLiteSandbox", "run_sql", "sql_tool"]

_CAN_DESERIALIZE = hasattr(sqlite3.Connection, "deserialize")


class _Template(NamedTuple):
    blob: bytes | None  # serialize() of the template
    source: sqlite3.Connection | None  # kept open for the backup API when deserialize is missing


_TEMPLATES: dict[type, OrderedDict[Hashable, _Template]] = {}
_CACHE_LOCK = threading.Lock()
_BUILD_LOCK = threading.Lock()
_HASHES: OrderedDict[bytes, str] = OrderedDict()
_OPEN: weakref.WeakSet[SQLiteSandbox] = weakref.WeakSet()


class SQLiteSandbox(Sandbox):
    """The state of an episode is a private in-memory SQLite database.

    Declare the database with class attributes and hooks (all optional):

    - ``schema``: SQL text (run as a script) or a SQLAlchemy ``MetaData`` (``create_all``).
    - ``template_path``: a SQLite file (copied, opened read-only) or a ``.sql`` script, loaded
      before ``schema``. Make it absolute, e.g. ``Path(__file__).parent / "data" / "shop.db"``.
    - :meth:`build`: inserts the data through a SQLAlchemy connection.
    - :meth:`template_key`: what the template depends on (one template per distinct key).
    - ``per_seed``: the data depends on the episode seed (a new template per seed, built in
      milliseconds instead of copied in microseconds; ``max_templates`` are kept).
    - :meth:`customize`: cheap per-episode changes to the fresh copy, before the agent starts.

    And the guards (each bound that is hit is a :class:`~simenv.errors.ToolError` the agent
    reads; the episode goes on):

    - ``read_only``: refuse every write;
    - ``time_limit_s``: per statement, and ``episode_time_limit_s``: all of an episode's
      statements together (once spent, statements are refused);
    - ``max_value_bytes``: longest string or blob a statement may build or read;
    - ``result_limit_bytes``: what the rows a statement returns may hold (counted row by row
      as they are fetched, so a result is stopped, not built and then measured);
    - ``statement_memory_bytes``: how much SQLite's heap may grow while a statement runs
      (sorts, temporary b-trees, materialised CTEs), where the library can be watched
      (:func:`~simenv.tools.sqlite.guard.heap_used`);
    - ``episode_growth_bytes``: how much the database (and its temporary tables) may grow in
      an episode (``max_page_count``);
    - ``heap_limit_bytes``: SQLite's hard heap limit for the whole process (every episode's
      database included), the backstop when the heap cannot be watched;
    - ``row_limit`` (rows shown to the agent), ``max_cell_chars`` (longest value shown).
    """

    schema: ClassVar[str | MetaData] = ""
    template_path: ClassVar[str | os.PathLike[str] | None] = None
    template_seed: ClassVar[int] = 0
    per_seed: ClassVar[bool] = False
    max_templates: ClassVar[int] = 16
    read_only: ClassVar[bool] = False
    time_limit_s: ClassVar[float] = 1.0
    episode_time_limit_s: ClassVar[float] = 30.0
    max_value_bytes: ClassVar[int] = MAX_VALUE_BYTES
    result_limit_bytes: ClassVar[int] = 4 * 2**20
    statement_memory_bytes: ClassVar[int] = 64 * 2**20
    episode_growth_bytes: ClassVar[int] = 64 * 2**20
    heap_limit_bytes: ClassVar[int] = 2 * 2**30
    row_limit: ClassVar[int] = 50
    max_cell_chars: ClassVar[int] = 200
    blocking_io = False

    _db: sqlite3.Connection | None = None
    _sql_time_s = 0.0

    # ------------------------------------------------------------------ declaring
    def build(self, db: Connection, rng: np.random.Generator) -> None:
        """Insert the template's data (runs once per template key, inside a transaction).

        Args:
            db: A SQLAlchemy connection to the template (``db.execute(insert(table), rows)``,
                ``db.exec_driver_sql(sql, rows)``; the stdlib connection is
                ``db.connection.driver_connection``).
            rng: A generator seeded by ``template_seed`` and the template key: draw all the
                data from it.
        """

    def template_key(self, task: Task) -> Hashable:
        """What the template depends on besides the seed (default: nothing, one template).

        The key's ``repr`` seeds ``build``'s generator, so use strings, numbers and tuples.
        """
        return None

    def customize(self, db: sqlite3.Connection, rng: np.random.Generator, task: Task) -> None:
        """Change this episode's fresh copy before the agent starts (default: nothing).

        Runs at every reset, unguarded (read-only does not apply), with the episode's ``rng``:
        keep it to a few statements.
        """

    # ------------------------------------------------------------------ the episode
    def setup(self, rng: np.random.Generator, task: Task) -> None:
        """Give this episode its own copy of the template, then install the guards."""
        self.close()
        cls = type(self)
        _check_bounds(cls)
        key = self.template_key(task)
        if cls.per_seed:
            key = (key, int(rng.integers(2**63)))
        template = _cached(cls, key) or self._build_template(key)
        db = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
        if template.blob is not None:
            db.deserialize(template.blob)
        else:
            assert template.source is not None
            with _BUILD_LOCK:
                template.source.backup(db)
        db.execute("PRAGMA temp_store = MEMORY")
        db.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, cls.max_value_bytes)
        db.setlimit(sqlite3.SQLITE_LIMIT_LIKE_PATTERN_LENGTH, MAX_LIKE_PATTERN)
        db.setlimit(sqlite3.SQLITE_LIMIT_ATTACHED, 0)
        limit_heap(db, cls.heap_limit_bytes)
        self._db = db
        self._sql_time_s = 0.0
        self.customize(db, rng, task)
        self._cap_growth(db)
        self._guard = Guard(cls.read_only)
        self._guard.install(db)
        self._format = BoundedFormat(cls.max_value_bytes)
        self._format.install(db)
        with _CACHE_LOCK:
            _OPEN.add(self)

    @property
    def db(self) -> sqlite3.Connection:
        """The episode's stdlib connection, with the agent's authorizer installed.

        Use :meth:`query` for trusted reads and :meth:`execute` for the agent's SQL.

        Raises:
            ScenarioError: The sandbox is not set up or already closed.
        """
        if self._db is None:
            raise ScenarioError(f"{type(self).__name__}: the database is closed (or not set up)")
        return self._db

    @property
    def closed(self) -> bool:
        """True once :meth:`close` ran (or before :meth:`setup`)."""
        return self._db is None

    def close(self) -> None:
        """Close the episode's connection; its memory is freed and nothing is left on disk."""
        if self._db is not None:
            self._db.close()
            self._db = None
            self._format.close()
            with _CACHE_LOCK:
                _OPEN.discard(self)

    @classmethod
    def live_resources(cls) -> list[str]:
        """Connections of this class's sandboxes that are still open."""
        with _CACHE_LOCK:
            held = list(_OPEN)
        return [f"{type(s).__name__} connection {id(s):#x}" for s in held if isinstance(s, cls)]

    @classmethod
    def clear_templates(cls) -> None:
        """Forget the cached templates of this class (of every class, on the base class)."""
        with _CACHE_LOCK:
            for owner in [c for c in _TEMPLATES if issubclass(c, cls)]:
                for template in _TEMPLATES.pop(owner).values():
                    if template.source is not None:
                        template.source.close()

    # ------------------------------------------------------------------ the agent's SQL
    def execute(
        self, sql: str, *, read_only: bool = False, max_rows: int | None = None
    ) -> QueryResult:
        """Run one statement of the agent's, under the guards.

        Args:
            sql: One SQL statement.
            read_only: Refuse writes for this statement even if the sandbox allows them.
            max_rows: Rows to keep (default ``row_limit``; ``-1`` keeps every row).

        Raises:
            ToolError: The SQL failed, was refused, or ran past the time limit; the message
                tells the agent what to change.
        """
        if not sql.strip():
            raise ToolError("the query is empty; send one SQL statement, e.g. SELECT 1")
        db, guard = self.db, self._guard
        left_s = self.episode_time_limit_s - self._sql_time_s
        if left_s <= 0:
            raise ToolError(
                f"this episode's statements have run for {self.episode_time_limit_s:g} s in "
                "all, its limit; no more SQL runs in this episode: answer with what you have"
            )
        limit = self.row_limit if max_rows is None else max_rows
        guard.switch(db, writes_denied=read_only or self.read_only, trusted=False)
        guard.denied = self._format.refused = None
        statement_s = min(self.time_limit_s, left_s)
        guard.arm(statement_s, self.statement_memory_bytes)
        start = time.monotonic()
        cursor = None
        try:
            cursor = db.execute(sql)
            rows = self._fetch(cursor, limit)
            columns = [d[0] for d in cursor.description or ()]
            changed = cursor.rowcount
        except (sqlite3.Error, sqlite3.Warning, ValueError, OverflowError, MemoryError) as exc:
            raise ToolError(self._explain(exc, statement_s)) from None
        finally:
            guard.disarm()
            self._sql_time_s += time.monotonic() - start
            if cursor is not None:
                cursor.close()
        truncated = 0 <= limit < len(rows)
        return QueryResult(columns, rows[:limit] if truncated else rows, truncated, changed)

    def _fetch(self, cursor: sqlite3.Cursor, limit: int) -> list[tuple[Any, ...]]:
        """Up to ``limit + 1`` rows (every row for -1), within the result and time bounds.

        Row by row, so a result too large is stopped as it grows rather than measured once it
        is all in memory.
        """
        rows: list[tuple[Any, ...]] = []
        budget, deadline, guard = self.result_limit_bytes, self._guard.deadline, self._guard
        size = 0
        wanted = limit + 1 if limit >= 0 else -1
        while len(rows) != wanted:
            row = cursor.fetchone()
            if row is None:
                break
            size += sum(len(v) + 16 if type(v) in (str, bytes) else 16 for v in row)
            if size > budget:
                raise ToolError(
                    f"the result is larger than {_mib(budget)} (after {len(rows)} rows) and was "
                    "stopped; select fewer or shorter columns, or aggregate in SQL"
                )
            if time.monotonic() > deadline:
                guard.stopped = "time"
                raise sqlite3.OperationalError("interrupted")
            rows.append(row)
        return rows

    def _cap_growth(self, db: sqlite3.Connection) -> None:
        """Let the database and its temporary tables grow by ``episode_growth_bytes`` at most."""
        for schema in ("main", "temp"):
            (pages,) = db.execute(f"PRAGMA {schema}.page_count").fetchone()
            (size,) = db.execute(f"PRAGMA {schema}.page_size").fetchone()
            most = pages + max(1, self.episode_growth_bytes // size)
            db.execute(f"PRAGMA {schema}.max_page_count = {most}")

    def _explain(self, exc: Exception, statement_s: float) -> str:
        text = str(exc)
        if "interrupted" in text and self._guard.stopped == "memory":
            return (
                f"the statement needed more than {_mib(self.statement_memory_bytes)} of memory "
                "(a sort, DISTINCT or GROUP BY over large values, or a large CTE) and was "
                "stopped; work on fewer rows or shorter values"
            )
        if "interrupted" in text:
            if statement_s < self.time_limit_s:
                return (
                    f"the statement was stopped after {statement_s:.3g} s: this episode's "
                    f"statements may run {self.episode_time_limit_s:g} s in all, and that is "
                    "now spent; answer with what you have"
                )
            return (
                f"the statement ran longer than {self.time_limit_s:g} s and was stopped; add a "
                "WHERE or LIMIT, or give a recursive CTE a condition that ends it"
            )
        if isinstance(exc, MemoryError) or "out of memory" in text:
            return (
                "the statement ran out of the memory SQLite may use in this process and was "
                "stopped; work on fewer rows or shorter values"
            )
        if "database or disk is full" in text:
            return (
                f"the database may grow by at most {_mib(self.episode_growth_bytes)} in an "
                "episode, and this statement would pass that; write less, or delete rows first"
            )
        if "user-defined function raised exception" in text and self._format.refused:
            return self._format.refused + "; format shorter values"
        if "LIKE or GLOB pattern too complex" in text:
            return f"a LIKE or GLOB pattern may be at most {MAX_LIKE_PATTERN} characters long"
        if "not authorized" in text or "authorization denied" in text:
            return f"not allowed here: {self._guard.denied or text}"
        if "one statement at a time" in text:
            return "send one SQL statement per call (this one has several)"
        if "too big" in text:
            return (
                f"a string or blob would exceed {_mib(self.max_value_bytes)}, the longest a "
                "value may be here; build smaller values"
            )
        if "no such table" in text:
            names = ", ".join(t for t in self._table_names()) or "(none)"
            return f"SQL error: {text}; the tables are: {names}"
        return f"SQL error: {text}"

    # ------------------------------------------------------------------ trusted access
    @contextlib.contextmanager
    def _trusted(self) -> Iterator[sqlite3.Connection]:
        db, guard = self.db, self._guard
        writes_denied, trusted = guard.writes_denied, guard.trusted
        guard.switch(db, writes_denied=writes_denied, trusted=True)
        try:
            yield db
        finally:
            guard.switch(db, writes_denied=writes_denied, trusted=trusted)

    def query(self, sql: str, parameters: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Every row of a trusted query (rewards, evaluations, oracles): no guards, no limits."""
        with self._trusted() as db:
            return db.execute(sql, parameters).fetchall()

    def _table_names(self) -> list[str]:
        return [
            r[0]
            for r in self.query(
                "SELECT name FROM sqlite_master WHERE type = 'table' "
                "AND name NOT LIKE 'sqlite_%' ORDER BY name"
            )
        ]

    def tables(self) -> dict[str, list[tuple[Any, ...]]]:
        """Every table's rows as stored (not sorted): the cheap raw dump."""
        return {t: self.query(f"SELECT * FROM {_quote(t)}") for t in self._table_names()}

    def state(self) -> dict[str, Any]:
        """Every table -> its rows, sorted on all columns (equal data, equal state and hash).

        Indexes, views and triggers are not part of the state; blobs appear as
        ``{"blob": "<hex>"}``.
        """
        out = {}
        with self._trusted() as db:
            for name in self._table_names():
                width = len(db.execute(f"SELECT * FROM {_quote(name)} LIMIT 0").description)
                order = ", ".join(str(i) for i in range(1, width + 1))
                rows = db.execute(f"SELECT * FROM {_quote(name)} ORDER BY {order}").fetchall()
                out[name] = [_jsonable(row) for row in rows]
        return out

    def state_hash(self) -> str:
        """sha256 of the canonical state, remembered for identical database bytes."""
        if not _CAN_DESERIALIZE:
            return super().state_hash()
        key = hashlib.sha256(self.db.serialize()).digest()  # equal bytes, equal state
        with _CACHE_LOCK:
            known = _HASHES.get(key)
        if known is None:
            known = super().state_hash()
            with _CACHE_LOCK:
                _HASHES[key] = known
                if len(_HASHES) > 256:
                    _HASHES.popitem(last=False)
        return known

    def snapshot(self) -> dict[str, Any]:
        """The database's bytes (``serialize``), for :meth:`restore`."""
        if _CAN_DESERIALIZE:
            return {"sqlite": self.db.serialize()}
        copy = sqlite3.connect(":memory:", check_same_thread=False)
        self.db.backup(copy)
        return {"sqlite": copy}

    def restore(self, snapshot: Mapping[str, Any]) -> None:
        """Bring the database back to a :meth:`snapshot` (which stays usable)."""
        data = snapshot["sqlite"]
        with self._trusted() as db:  # deserialize ATTACHes internally
            if isinstance(data, bytes):
                db.deserialize(data)
            else:
                data.backup(db)
            self._cap_growth(db)  # deserialize forgets max_page_count

    # ------------------------------------------------------------------ templates
    def _build_template(self, key: Hashable) -> _Template:
        cls = type(self)
        with _BUILD_LOCK:
            template = _cached(cls, key)
            if template is not None:
                return template
            digest = hashlib.sha256(f"{cls.template_seed}|{key!r}".encode()).digest()
            rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
            try:
                template = self._make_template(rng)
            except Exception as exc:
                raise ScenarioError(
                    f"building the SQLite template of {cls.__name__} (key {key!r}) failed: "
                    f"{type(exc).__name__}: {exc}; fix its schema, template_path or build()"
                ) from exc
        with _CACHE_LOCK:
            cache = _TEMPLATES.setdefault(cls, OrderedDict())
            cache[key] = template
            while len(cache) > max(1, cls.max_templates):
                _, old = cache.popitem(last=False)
                if old.source is not None:
                    old.source.close()
        return template

    def _make_template(self, rng: np.random.Generator) -> _Template:
        from sqlalchemy import MetaData, create_engine
        from sqlalchemy.pool import StaticPool

        raw = sqlite3.connect(":memory:", check_same_thread=False)
        if self.template_path is not None:
            path = Path(self.template_path)
            if path.suffix == ".sql":
                raw.executescript(path.read_text())
            else:
                uri = f"{path.resolve().as_uri()}?mode=ro&immutable=1"
                source = sqlite3.connect(uri, uri=True)
                try:
                    source.backup(raw)
                finally:
                    source.close()
        if isinstance(self.schema, str):
            raw.executescript(self.schema)
        engine = create_engine("sqlite://", creator=lambda: raw, poolclass=StaticPool)
        with engine.begin() as connection:
            if isinstance(self.schema, MetaData):
                self.schema.create_all(connection)
            self.build(connection, rng)
        if _CAN_DESERIALIZE:
            blob = raw.serialize()
            engine.dispose()
            raw.close()
            return _Template(blob, None)
        source = sqlite3.connect(":memory:", check_same_thread=False)
        raw.backup(source)
        engine.dispose()
        raw.close()
        return _Template(None, source)


def _cached(cls: type, key: Hashable) -> _Template | None:
    with _CACHE_LOCK:
        cache = _TEMPLATES.get(cls)
        if cache is None:
            return None
        template = cache.get(key)
        if template is not None and len(cache) > 1:
            cache.move_to_end(key)
        return template


def _mib(n: int) -> str:
    return f"{n / 2**20:g} MiB"


def _check_bounds(cls: type[SQLiteSandbox]) -> None:
    """Refuse bounds that are not numbers in range, naming the attribute (a scenario bug)."""
    for name in ("time_limit_s", "episode_time_limit_s"):
        value = getattr(cls, name)
        if not (isinstance(value, int | float) and math.isfinite(value) and 0 < value <= 86_400):
            raise ScenarioError(
                f"{cls.__name__}.{name} must be a number of seconds above 0 and at most 86400; "
                f"got {value!r:.60}"
            )
    for name in (
        "max_value_bytes",
        "result_limit_bytes",
        "statement_memory_bytes",
        "episode_growth_bytes",
        "heap_limit_bytes",
    ):
        value = getattr(cls, name)
        if not (isinstance(value, int) and not isinstance(value, bool) and value > 0):
            raise ScenarioError(
                f"{cls.__name__}.{name} must be a whole number of bytes above 0; got {value!r:.60}"
            )


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _jsonable(row: Sequence[Any]) -> list[Any]:
    if bytes not in map(type, row):
        return list(row)
    return [{"blob": v.hex()} if isinstance(v, bytes) else v for v in row]


# ---------------------------------------------------------------------- the agent's tool
def sql_tool(*, read_only: bool = True, name: str = "run_sql") -> Tool:
    """The agent's SQL tool for a :class:`SQLiteSandbox` scenario.

    Args:
        read_only: Declare the tool ``read`` and refuse writes through it (whatever the
            sandbox allows); ``False`` gives a ``write`` tool.
        name: The tool's name.
    """

    def sql(db: SQLiteSandbox, query: str) -> str:  # noqa: D417 - db is injected
        """Run one SQL statement (SQLite dialect) on the database and see the result as a table.

        Long results are cut to their first rows: aggregate or filter in SQL instead of
        reading many rows. Each statement has a time limit.

        Args:
            query: A single SQLite statement, e.g. "SELECT COUNT(*) FROM orders".
        """
        return format_table(db.execute(query, read_only=read_only), db.max_cell_chars)

    return tool(effect="read" if read_only else "write", name=name, provenance="sqlite")(sql)


run_sql = sql_tool()
"""A ready-made read-only ``run_sql(query)`` tool for any :class:`SQLiteSandbox`."""
