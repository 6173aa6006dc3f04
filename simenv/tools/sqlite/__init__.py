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
- bounds on time and memory, each an agent-visible :class:`~simenv.errors.ToolError` when hit
  (the episode goes on): a time limit per statement and one for all of an episode's
  statements (a progress handler every 200 VM steps, and a look at the clock between fetched
  rows); strings and blobs capped at 256 KiB (``SQLITE_LIMIT_LENGTH``) and LIKE / GLOB
  patterns at 256 characters; a statement's result capped at 4 MiB, counted row by row as it
  is fetched; SQLite's heap may grow 64 MiB while a statement runs (sorts, DISTINCT, CTEs:
  watched through ``sqlite3_memory_used`` of the process's SQLite library); the database and
  its temporary tables may grow 64 MiB per episode (``max_page_count``); and SQLite's hard
  heap limit for the whole process (2 GiB), the backstop. Each is a class attribute;
- results cut at a row limit (and said so), one statement per call, SQL errors turned into
  messages the agent can act on;
- checks for rewards: :func:`same_result` (result sets as multisets, in order only when the
  gold has a top-level ORDER BY, floats within a tolerance), :func:`state_matches` and the
  sandbox's canonical ``state()`` / ``state_hash()`` / ``diff()`` / ``snapshot()``.

What it does not cover: SQLite runs inside the trainer's process, so this contains a model's
SQL, not hostile native code. One step of SQLite's VM cannot be interrupted: a single
function call (``instr`` of two 256 KiB strings, about 0.25 s) or a sort of many small rows
can run past the time limit by that step's length. The heap watch and the hard heap limit
count all of the process's SQLite: concurrent episodes share the hard limit (their
databases included), and a statement's allowance also counts what other threads' statements
allocate meanwhile; a SQLite linked into Python statically cannot be watched, and then only
the hard limit applies. ``random()`` and ``date('now')`` are not seeded, so an agent that
calls them makes its own episode irreproducible; a template's data must come from
``build``'s ``rng`` (or the file) for episodes to be reproducible.

Modules: :mod:`~simenv.tools.sqlite.sandbox` (the sandbox and the SQL tool),
:mod:`~simenv.tools.sqlite.guard` (the authorizer and statement clock),
:mod:`~simenv.tools.sqlite.checks` (checks for rewards) and
:mod:`~simenv.tools.sqlite.results` (result sets, no database in them).
"""

from simenv.tools.sqlite.checks import same_result, state_matches
from simenv.tools.sqlite.results import QueryResult, format_table, is_ordered, same_rows
from simenv.tools.sqlite.sandbox import SQLiteSandbox, run_sql, sql_tool

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
