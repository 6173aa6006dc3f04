"""Verifiable execution in SQLite: one private, guarded, in-memory database per episode.

Subclass :class:`SQLiteSandbox`, declare the database (a ``schema`` as SQL text or a SQLAlchemy
``MetaData``, a ``build`` hook that inserts the data through a SQLAlchemy connection, and/or a
``template_path`` to a ``.db`` or ``.sql`` file), and give the agent :data:`run_sql` (or a tool of
your own that takes the sandbox)::

    class Shop(SQLiteSandbox):
        schema = "CREATE TABLE orders (id INTEGER PRIMARY KEY, status TEXT, total REAL);"
        read_only = True

        def build(self, db, rng):                      # db: sqlalchemy.Connection
            db.exec_driver_sql("INSERT INTO orders VALUES (?, ?, ?)", rows_from(rng))

How it is reset: the template is built once per process and template key (SQLAlchemy runs
only then), serialised to bytes, and every episode ``deserialize``-s those bytes into its own
``:memory:`` connection (50-60 µs for 10,000 rows, see docs/benchmarks.md; the backup API is
the fallback where ``deserialize`` is missing). The agent's SQL then runs on the stdlib
``sqlite3`` connection directly, never through an ORM. Templates that depend on the task
(``template_key``) or on the episode seed (``per_seed``) are kept in a small LRU cache per
class; a seed-dependent template costs a full build (milliseconds) for every new seed.

What it covers:

- isolation: episodes never see each other's writes, and nothing is written to disk (no
  files are created, ``temp_store`` is memory);
- an authorizer that refuses ATTACH / DETACH (so also ``VACUUM INTO`` a file), any database
  but the episode's own, ``load_extension``, every PRAGMA except a list of read-only ones, and,
  in read-only mode, every write;
- a per-statement time limit (a progress handler): a runaway recursive CTE is stopped and
  reported to the agent as a :class:`~simenv.errors.ToolError`, and the episode goes on;
- strings and blobs capped at 16 MiB, results cut at a row limit (and said so), one statement
  per call, SQL errors turned into messages the agent can act on;
- checks for rewards: :func:`same_result` (result sets as multisets, in order only when the
  gold has a top-level ORDER BY, floats within a tolerance), :func:`state_matches` and the
  sandbox's canonical ``state()`` / ``state_hash()`` / ``diff()`` / ``snapshot()``.

What it does not cover: SQLite runs inside the trainer's process, so this contains a model's
SQL, not hostile native code; memory is bounded by the time limit and the value cap, not by a
hard quota; ``random()`` and ``date('now')`` are not seeded, so an agent that calls them makes
its own episode irreproducible; a template's data must come from ``build``'s ``rng`` (or the
file) for episodes to be reproducible.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sqlite3
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Hashable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

import numpy as np

from simenv.errors import ScenarioError, ToolError
from simenv.tools.base import Tool, tool
from simenv.tools.resultset import QueryResult, format_table, is_ordered, same_rows
from simenv.tools.sandbox import Sandbox
from simenv.types import Task

if TYPE_CHECKING:
    from sqlalchemy import Connection, MetaData

__all__ = [
    "QueryResult",
    "SQLiteSandbox",
    "format_table",
    "is_ordered",
    "run_sql",
    "same_result",
    "same_rows",
    "sql_tool",
    "state_matches",
]

MAX_VALUE_BYTES = 16 * 2**20
"""Longest string or blob a statement may build (``SQLITE_LIMIT_LENGTH``)."""

_PROGRESS_OPS = 1000  # VM instructions between two looks at the clock
_CAN_DESERIALIZE = hasattr(sqlite3.Connection, "deserialize")
_A = sqlite3  # authorizer action codes
_WRITES = frozenset({
    _A.SQLITE_INSERT, _A.SQLITE_UPDATE, _A.SQLITE_DELETE, _A.SQLITE_ALTER_TABLE,
    _A.SQLITE_CREATE_INDEX, _A.SQLITE_CREATE_TABLE, _A.SQLITE_CREATE_TRIGGER,
    _A.SQLITE_CREATE_VIEW, _A.SQLITE_CREATE_TEMP_INDEX, _A.SQLITE_CREATE_TEMP_TABLE,
    _A.SQLITE_CREATE_TEMP_TRIGGER, _A.SQLITE_CREATE_TEMP_VIEW, _A.SQLITE_DROP_INDEX,
    _A.SQLITE_DROP_TABLE, _A.SQLITE_DROP_TRIGGER, _A.SQLITE_DROP_VIEW, _A.SQLITE_DROP_TEMP_INDEX,
    _A.SQLITE_DROP_TEMP_TABLE, _A.SQLITE_DROP_TEMP_TRIGGER, _A.SQLITE_DROP_TEMP_VIEW,
    _A.SQLITE_ANALYZE, _A.SQLITE_REINDEX, _A.SQLITE_CREATE_VTABLE, _A.SQLITE_DROP_VTABLE,
})  # fmt: skip
_SCHEMA_TABLES = frozenset({"sqlite_master", "sqlite_temp_master", "sqlite_schema"})
# PRAGMAs the agent may run: these take a table or index name and only read ...
_PRAGMA_LOOKUPS = frozenset({
    "table_info", "table_xinfo", "table_list", "index_list", "index_info", "index_xinfo",
    "foreign_key_list", "foreign_key_check", "integrity_check", "quick_check",
})  # fmt: skip
# ... and these only read when given no value.
_PRAGMA_READS = frozenset({
    "collation_list", "function_list", "module_list", "pragma_list", "database_list",
    "compile_options", "encoding", "foreign_keys", "page_count", "page_size", "freelist_count",
    "user_version", "schema_version", "application_id", "data_version",
})  # fmt: skip
_DENIED_FUNCTIONS = frozenset({"load_extension", "fts3_tokenizer"})


class _Template(NamedTuple):
    blob: bytes | None  # serialize() of the template
    source: sqlite3.Connection | None  # kept open for the backup API when deserialize is missing


class _Guard:
    """The authorizer and the statement clock of one connection."""

    __slots__ = ("deadline", "denied", "trusted", "writes_denied")

    def __init__(self, writes_denied: bool) -> None:
        self.writes_denied = writes_denied
        self.deadline = 0.0
        self.trusted = False
        self.denied: str | None = None

    def install(self, db: sqlite3.Connection) -> None:
        db.set_authorizer(self.authorize)
        db.set_progress_handler(self.over_time, _PROGRESS_OPS)

    def switch(self, db: sqlite3.Connection, *, writes_denied: bool, trusted: bool) -> None:
        """Change what is allowed; cached statements are then authorized again."""
        if writes_denied is not self.writes_denied or trusted is not self.trusted:
            self.writes_denied, self.trusted = writes_denied, trusted
            db.set_authorizer(self.authorize)  # expires every prepared statement

    def deny(self, reason: str) -> int:
        self.denied = reason
        return sqlite3.SQLITE_DENY

    def authorize(self, action: int, arg1: Any, arg2: Any, dbname: Any, source: Any) -> int:
        if self.trusted:
            return sqlite3.SQLITE_OK
        if action == sqlite3.SQLITE_ATTACH or action == sqlite3.SQLITE_DETACH:
            return self.deny(
                "ATTACH, DETACH and VACUUM are disabled: only this database can be used"
            )
        if action == sqlite3.SQLITE_PRAGMA:
            name = str(arg1).lower()
            if name in _PRAGMA_LOOKUPS or (arg2 is None and name in _PRAGMA_READS):
                return sqlite3.SQLITE_OK
            return self.deny(
                f"PRAGMA {name}{'' if arg2 is None else ' with a value'} is disabled; "
                "PRAGMA table_info(<table>) and the other read-only PRAGMAs work"
            )
        if action == sqlite3.SQLITE_FUNCTION and str(arg2).lower() in _DENIED_FUNCTIONS:
            return self.deny(f"the function {arg2}() is disabled")
        if dbname is not None and dbname not in ("main", "temp"):
            return self.deny(f"database {dbname!r} is not available: use this database only")
        if self.writes_denied and action in _WRITES:
            if action == sqlite3.SQLITE_UPDATE and arg1 in _SCHEMA_TABLES:
                return sqlite3.SQLITE_OK  # SQLite's own bookkeeping for table-valued functions
            return self.deny("the database is read-only: use SELECT statements")
        return sqlite3.SQLITE_OK

    def over_time(self) -> int:
        return 1 if self.deadline and time.monotonic() > self.deadline else 0


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

    And the guards: ``read_only`` (refuse every write), ``time_limit_s`` (per statement),
    ``row_limit`` (rows shown to the agent), ``max_cell_chars`` (longest value shown).
    """

    schema: ClassVar[str | MetaData] = ""
    template_path: ClassVar[str | os.PathLike[str] | None] = None
    template_seed: ClassVar[int] = 0
    per_seed: ClassVar[bool] = False
    max_templates: ClassVar[int] = 16
    read_only: ClassVar[bool] = False
    time_limit_s: ClassVar[float] = 1.0
    row_limit: ClassVar[int] = 50
    max_cell_chars: ClassVar[int] = 200
    blocking_io = False

    _db: sqlite3.Connection | None = None

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
        db.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, MAX_VALUE_BYTES)
        db.setlimit(sqlite3.SQLITE_LIMIT_ATTACHED, 0)
        self._db = db
        self.customize(db, rng, task)
        self._guard = _Guard(cls.read_only)
        self._guard.install(db)
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
        limit = self.row_limit if max_rows is None else max_rows
        guard.switch(db, writes_denied=read_only or self.read_only, trusted=False)
        guard.denied = None
        guard.deadline = time.monotonic() + self.time_limit_s
        cursor = None
        try:
            cursor = db.execute(sql)
            rows = cursor.fetchall() if limit < 0 else cursor.fetchmany(limit + 1)
            columns = [d[0] for d in cursor.description or ()]
            changed = cursor.rowcount
        except (sqlite3.Error, sqlite3.Warning, ValueError, OverflowError) as exc:
            raise ToolError(self._explain(exc)) from None
        finally:
            guard.deadline = 0.0
            if cursor is not None:
                cursor.close()
        truncated = 0 <= limit < len(rows)
        return QueryResult(columns, rows[:limit] if truncated else rows, truncated, changed)

    def _explain(self, exc: Exception) -> str:
        text = str(exc)
        if "interrupted" in text:
            return (
                f"the statement ran longer than {self.time_limit_s:g} s and was stopped; add a "
                "WHERE or LIMIT, or give a recursive CTE a condition that ends it"
            )
        if "not authorized" in text or "authorization denied" in text:
            return f"not allowed here: {self._guard.denied or text}"
        if "one statement at a time" in text:
            return "send one SQL statement per call (this one has several)"
        if "too big" in text:
            return f"a value would exceed {MAX_VALUE_BYTES // 2**20} MiB; build smaller values"
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


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _jsonable(row: Sequence[Any]) -> list[Any]:
    if bytes not in map(type, row):
        return list(row)
    return [{"blob": v.hex()} if isinstance(v, bytes) else v for v in row]


def _comparable(row: Sequence[Any]) -> tuple[Any, ...]:
    return tuple(bytes.fromhex(v["blob"]) if isinstance(v, dict) else v for v in row)


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


# ---------------------------------------------------------------------- checks
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
    guard = _Guard(writes_denied=True)
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
