"""What the agent's SQL may do: the authorizer, the statement clock and the memory watch.

:class:`Guard` refuses ATTACH / DETACH (so also ``VACUUM INTO`` a file), any database but the
episode's own, ``load_extension``, every PRAGMA except a list of read-only ones and, when
writes are denied, every write; its progress handler stops a statement past its deadline or
once SQLite's heap has grown past the statement's allowance (:func:`heap_used`, where the
process's SQLite library can be reached).
"""

from __future__ import annotations

import ctypes
import re
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any

__all__ = [
    "MAX_LIKE_PATTERN",
    "MAX_VALUE_BYTES",
    "BoundedFormat",
    "Guard",
    "heap_used",
    "limit_heap",
]

MAX_VALUE_BYTES = 256 * 2**10
"""Default longest string or blob a statement may build or read (``SQLITE_LIMIT_LENGTH``).

Small on purpose: SQLite runs one function call (``instr``, ``LIKE``, ``replace``) as one step
of its VM, which nothing can stop halfway, and such a call costs up to the square of its
inputs' length: ``instr`` of two 1 MiB strings takes seconds, of two 256 KiB ones a quarter of
a second."""

MAX_LIKE_PATTERN = 256
"""Longest ``LIKE`` / ``GLOB`` pattern (``SQLITE_LIMIT_LIKE_PATTERN_LENGTH``; SQLite's default
is 50,000, and a 40,000-character pattern against a long string runs for a minute)."""

_PROGRESS_OPS = 200  # VM instructions between two looks at the clock and the heap
_HEAP: list[Callable[[], int] | None] = []  # sqlite3_memory_used of the process's library
_HEAP_LOCK = threading.Lock()


def heap_used() -> Callable[[], int] | None:
    """SQLite's ``sqlite3_memory_used`` (bytes of heap the library holds), or ``None``.

    Found in the shared library the ``sqlite3`` module is linked with (Linux:
    ``/proc/self/maps``), and used only if it is the same library (same version). A Python
    with SQLite linked in statically has none to find: then only the process-wide hard heap
    limit (:func:`limit_heap`) bounds a statement's memory.
    """
    with _HEAP_LOCK:
        if not _HEAP:
            _HEAP.append(_find_heap_used())
        return _HEAP[0]


def _find_heap_used() -> Callable[[], int] | None:
    try:
        with open("/proc/self/maps") as maps:
            paths = sorted({line.split()[-1] for line in maps if "libsqlite3" in line})
    except OSError:
        return None
    for path in paths:
        try:
            library = ctypes.CDLL(path)
            library.sqlite3_libversion.restype = ctypes.c_char_p
            if library.sqlite3_libversion().decode() != sqlite3.sqlite_version:
                continue
            used = library.sqlite3_memory_used
        except (OSError, AttributeError):
            continue
        used.restype, used.argtypes = ctypes.c_int64, []
        return used
    return None


def limit_heap(db: sqlite3.Connection, limit_bytes: int) -> None:
    """Lower SQLite's process-wide hard heap limit to ``limit_bytes`` (never raise it).

    Past it every allocation of SQLite in this process fails ("out of memory"), the agent's
    statement with it; a lower limit someone else set is kept.
    """
    if limit_bytes <= 0:
        return
    with _HEAP_LOCK:
        (current,) = db.execute("PRAGMA hard_heap_limit").fetchone()
        if current == 0 or current > limit_bytes:
            db.execute(f"PRAGMA hard_heap_limit = {int(limit_bytes)}")


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


# One conversion of SQLite's printf: flags, width, precision, length, type (``%%`` included).
_CONVERSION = re.compile(r"%[-+ 0#,!]*(\*|\d+)?(?:\.(\*|\d+)?)?l{0,2}(.)", re.S)


class BoundedFormat:
    """``printf()`` / ``format()`` for the agent's SQL, refusing huge widths and precisions.

    SQLite's own ``printf`` writes ``%.*c`` with a precision of 2,000,000,000 in one step of its
    VM, which the progress handler cannot stop (12 s here), before ``SQLITE_LIMIT_LENGTH``
    refuses the result. Registered on the episode's connection under both names, this checks
    every width and precision of the format (``*`` ones too, read from the arguments) against
    ``max_width`` first, then hands the call to the built-in ``printf`` of a private, empty
    in-memory connection with the same value length limit, so results are SQLite's own.

    Attributes:
        refused: Why the last call was refused (the message the agent reads), or ``None``.
    """

    def __init__(self, max_width: int) -> None:
        self.max_width = max_width
        self.refused: str | None = None
        self._db: sqlite3.Connection | None = None  # opened on the first call
        self._lock = threading.Lock()

    def install(self, db: sqlite3.Connection) -> None:
        """Register as ``printf`` and ``format`` (any number of arguments) on ``db``."""
        for name in ("printf", "format"):
            db.create_function(name, -1, self, deterministic=True)

    def _check(self, fmt: str, args: tuple[Any, ...]) -> str | None:
        """Why ``fmt`` with ``args`` is refused, or ``None``."""
        index = 0
        for match in _CONVERSION.finditer(fmt):
            width, precision, kind = match.groups()
            for part in (width, precision):
                if part is None:
                    continue
                if part == "*":
                    value = args[index] if index < len(args) else 0
                    index += 1
                    try:
                        size = abs(int(value))
                    except (TypeError, ValueError, OverflowError):
                        size = 0  # SQLite reads a non-number as 0
                else:
                    size = int(part)
                if size > self.max_width:
                    return (
                        f"printf()/format() widths and precisions may be at most "
                        f"{self.max_width:,} here (got {size:,})"
                    )
            if kind != "%":
                index += 1
        return None

    def __call__(self, fmt: Any = None, *args: Any) -> Any:
        """SQLite's ``printf(fmt, ...)``, once the format passed :meth:`_check`."""
        if isinstance(fmt, str):
            reason = self._check(fmt, args)
            if reason is not None:
                self.refused = reason
                raise ValueError(reason)
        marks = ", ".join("?" * (1 + len(args)))
        with self._lock:
            if self._db is None:
                self._db = sqlite3.connect(":memory:", check_same_thread=False)
                self._db.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, self.max_width)
            return self._db.execute(f"SELECT printf({marks})", (fmt, *args)).fetchone()[0]

    def close(self) -> None:
        """Close the private connection, if one was opened."""
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None


class Guard:
    """The authorizer, the statement clock and the memory watch of one connection.

    Attributes:
        deadline: ``time.monotonic()`` past which the running statement is stopped (0: none).
        heap_ceiling: SQLite heap size (:func:`heap_used`) past which it is stopped (0: none).
        stopped: Why the progress handler stopped the last statement (``"time"`` or
            ``"memory"``), or ``None``.
    """

    __slots__ = (
        "_heap",
        "deadline",
        "denied",
        "heap_ceiling",
        "stopped",
        "trusted",
        "writes_denied",
    )

    def __init__(self, writes_denied: bool) -> None:
        self.writes_denied = writes_denied
        self.deadline = 0.0
        self.heap_ceiling = 0
        self.trusted = False
        self.denied: str | None = None
        self.stopped: str | None = None
        self._heap = heap_used()

    def arm(self, time_limit_s: float, heap_allowance_bytes: int) -> None:
        """Start the clock and the memory watch of one statement."""
        self.stopped = None
        self.deadline = time.monotonic() + time_limit_s
        heap = self._heap
        self.heap_ceiling = heap() + heap_allowance_bytes if heap and heap_allowance_bytes else 0

    def disarm(self) -> None:
        """Stop watching (trusted SQL runs unwatched)."""
        self.deadline, self.heap_ceiling = 0.0, 0

    def install(self, db: sqlite3.Connection) -> None:
        """Make this guard the authorizer and the progress handler of ``db``."""
        db.set_authorizer(self.authorize)
        db.set_progress_handler(self.over_time, _PROGRESS_OPS)

    def switch(self, db: sqlite3.Connection, *, writes_denied: bool, trusted: bool) -> None:
        """Change what is allowed; cached statements are then authorized again."""
        if writes_denied is not self.writes_denied or trusted is not self.trusted:
            self.writes_denied, self.trusted = writes_denied, trusted
            db.set_authorizer(self.authorize)  # expires every prepared statement

    def deny(self, reason: str) -> int:
        """Refuse the action, remembering why (the message the agent reads)."""
        self.denied = reason
        return sqlite3.SQLITE_DENY

    def authorize(self, action: int, arg1: Any, arg2: Any, dbname: Any, source: Any) -> int:
        """SQLite's authorizer callback: ``SQLITE_OK`` or, through :meth:`deny`, a refusal."""
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
        """SQLite's progress handler: non-zero (stop the statement) past a bound."""
        if self.deadline and time.monotonic() > self.deadline:
            self.stopped = "time"
            return 1
        if self.heap_ceiling and self._heap is not None and self._heap() > self.heap_ceiling:
            self.stopped = "memory"
            return 1
        return 0
