"""What the agent's SQL may do: the authorizer and the statement clock of one connection.

:class:`Guard` refuses ATTACH / DETACH (so also ``VACUUM INTO`` a file), any database but the
episode's own, ``load_extension``, every PRAGMA except a list of read-only ones and, when
writes are denied, every write; its progress handler stops a statement past its deadline.
"""

from __future__ import annotations

import sqlite3
import time
from typing import Any

__all__ = ["MAX_VALUE_BYTES", "Guard"]

MAX_VALUE_BYTES = 16 * 2**20
"""Longest string or blob a statement may build (``SQLITE_LIMIT_LENGTH``)."""

_PROGRESS_OPS = 1000  # VM instructions between two looks at the clock
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


class Guard:
    """The authorizer and the statement clock of one connection."""

    __slots__ = ("deadline", "denied", "trusted", "writes_denied")

    def __init__(self, writes_denied: bool) -> None:
        self.writes_denied = writes_denied
        self.deadline = 0.0
        self.trusted = False
        self.denied: str | None = None

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
        """SQLite's progress handler: non-zero (stop the statement) past the deadline."""
        return 1 if self.deadline and time.monotonic() > self.deadline else 0
