"""Abuse of the SQLite sandbox through a scenario's own tool: what holds, what breaks.

Each attempt is one episode of ``sql/Analyst-v1`` (a read-only shop database, 1 s per
statement): the attack is one ``run_sql(query)`` call, then ``SELECT COUNT(*) FROM orders``
must still answer, and the episode ends with an answer. An attempt **holds** when the attack's
call returns within 1.5 s (the 1 s limit plus scheduling), the process's peak memory grew by
less than 100 MiB, the database is unchanged (same state hash), no file appeared in the
working directory or the temp dir, the episode is valid and ``Episode.to_json()`` writes it as
UTF-8. Anything else is **broken**.

Run: ``python bench/adversarial_sqlite.py [--only NAME]``; under a minute. Prints one line per
attempt (seconds, peak memory growth, the first words of the answer) and the counts, and exits 1
if anything broke.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from typing import Any

from _report import machine

import simenv
from simenv.parsing import format_tool_call

CTE = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c"
BIG = "printf('%.*c', 200000, 'x')"
ATTEMPTS: list[tuple[str, str]] = [
    ("huge blob per row (issue 14)", "SELECT randomblob(15000000) FROM order_items"),
    ("1 GB zeroblob", "SELECT zeroblob(1000000000)"),
    ("big blobs, many rows", "SELECT randomblob(200000) FROM order_items"),
    ("sort of big values", "SELECT zeroblob(200000) FROM order_items ORDER BY random()"),
    ("DISTINCT of big values", "SELECT COUNT(*) FROM (SELECT DISTINCT zeroblob(200000) || rowid"
     " FROM order_items)"),
    ("GROUP BY of big values", "SELECT COUNT(*) FROM (SELECT randomblob(100000) AS b FROM"
     " order_items GROUP BY b)"),
    ("group_concat blow-up", "SELECT length(group_concat(zeroblob(100000))) FROM order_items"),
    ("printf blow-up", "SELECT length(printf('%.*c', 2000000000, 'x'))"),
    ("replace blow-up", f"SELECT length(replace({BIG}, 'x', 'xxxxxxxx'))"),
    ("endless recursive CTE", f"{CTE}) SELECT MAX(x) FROM c"),
    ("recursive CTE of big rows", f"{CTE} WHERE x < 100000) SELECT COUNT(DISTINCT"
     " zeroblob(1000) || x) FROM c"),
    ("materialised CTE", f"{CTE} WHERE x < 10000000) SELECT x FROM c ORDER BY x DESC LIMIT 1"),
    ("cross join", "SELECT COUNT(*) FROM order_items a, order_items b, order_items c"),
    ("cartesian sort", "SELECT a.rowid FROM order_items a, order_items b ORDER BY random()"
     " LIMIT 1"),
    ("long LIKE pattern", f"SELECT {BIG} LIKE '%' || printf('%.*c', 40000, 'x') || 'y'"),
    ("LIKE at the pattern limit", f"SELECT {BIG} LIKE '%' || printf('%.*c', 250, 'x') || 'y'"),
    ("GLOB pattern", f"SELECT {BIG} GLOB '*' || printf('%.*c', 40000, 'x') || 'y'"),
    ("instr on long strings", f"SELECT instr({BIG}, printf('%.*c', 100000, 'x') || 'y')"),
    ("ATTACH a file", "ATTACH DATABASE 'evil.db' AS evil"),
    ("ATTACH memory", "ATTACH DATABASE ':memory:' AS m"),
    ("VACUUM INTO", "VACUUM INTO 'copy.db'"),
    ("load_extension", "SELECT load_extension('/tmp/evil.so')"),
    ("PRAGMA writable_schema", "PRAGMA writable_schema = ON"),
    ("PRAGMA journal_mode", "PRAGMA journal_mode = WAL"),
    ("PRAGMA temp_store_directory", "PRAGMA temp_store_directory = '/tmp'"),
    ("PRAGMA hard_heap_limit", "PRAGMA hard_heap_limit = 0"),
    ("PRAGMA max_page_count", "PRAGMA max_page_count = 1000000000"),
    ("pragma table-valued write", "SELECT * FROM pragma_journal_mode('off')"),
    ("DELETE", "DELETE FROM orders"),
    ("DROP TABLE", "DROP TABLE orders"),
    ("UPDATE", "UPDATE orders SET status = 'x'"),
    ("CREATE TEMP TABLE", "CREATE TEMP TABLE t AS SELECT * FROM orders"),
    ("CREATE TRIGGER", "CREATE TEMP TRIGGER t AFTER INSERT ON orders BEGIN SELECT 1; END"),
    ("two statements", "SELECT 1; DELETE FROM orders"),
    ("sqlite_master write", "UPDATE sqlite_master SET sql = ''"),
    ("fts3_tokenizer", "SELECT fts3_tokenizer('simple')"),
    ("readfile", "SELECT readfile('/etc/passwd')"),
    ("writefile", "SELECT writefile('x', 'y')"),
    ("json nesting", "SELECT json('" + "[" * 2000 + "]" * 2000 + "')"),
    ("deep expression", "SELECT " + "(" * 5000 + "1" + ")" * 5000),
    ("long SQL", "SELECT " + " + ".join(["1"] * 50000)),
    ("non-UTF-8 text out", "SELECT CAST(x'ff' AS TEXT)"),
    ("lone surrogate in", 'SELECT "\\ud83d"'),
    ("empty", "   "),
]  # fmt: skip


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _files() -> set[str]:
    return set(os.listdir(".")) | set(os.listdir(tempfile.gettempdir()))


def attempt(env: Any, query: str) -> tuple[bool, str, float, float]:
    """Play one episode with the attack; (held, answer or why not, seconds, MiB of peak growth)."""
    env.reset(seed=0)
    before_hash, before_files, before_peak = env.unwrapped.state.state_hash(), _files(), _peak_mib()
    start = time.monotonic()
    observation, *_ = env.step(format_tool_call("run_sql", {"query": query}))
    elapsed, grown = time.monotonic() - start, _peak_mib() - before_peak
    answer = str(observation[-1]["content"]).replace("\n", " ")[:70]
    problems = []
    if elapsed > 1.5:
        problems.append(f"took {elapsed:.1f} s")
    if grown > 100:
        problems.append(f"peak memory grew {grown:.0f} MiB")
    observation, _, terminated, _, _ = env.step(
        format_tool_call("run_sql", {"query": "SELECT COUNT(*) FROM orders"})
    )
    if terminated or "1200" not in str(observation[-1]["content"]):
        problems.append(f"the database no longer answers: {observation[-1]['content']!r:.100}")
    if env.unwrapped.state.state_hash() != before_hash:
        problems.append("the database changed")
    if _files() - before_files:
        problems.append(f"files appeared: {sorted(_files() - before_files)}")
    _, _, terminated, _, info = env.step("Answer: 0")
    episode = env.unwrapped.episode()
    if not (terminated and info["valid"] and episode.valid):
        problems.append(f"the episode is invalid: {info.get('error')!r:.200}")
    json.loads(episode.to_json().encode("utf-8"))
    return not problems, "; ".join(problems) or answer, elapsed, grown


def main() -> int:
    """Run every attempt (or ``--only`` some) and print the counts."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", help="run the attempts whose name contains this")
    args = parser.parse_args()
    os.chdir(tempfile.mkdtemp(prefix="simenv-adversarial-sqlite-"))
    env = simenv.make("sql/Analyst-v1", max_turns=10)
    held = broken = 0
    start = time.monotonic()
    try:
        for name, query in ATTEMPTS:
            if args.only and args.only not in name:
                continue
            try:
                ok, said, elapsed, grown = attempt(env, query)
            except Exception as exc:  # step promises never to raise: that is a break too
                ok, said, elapsed, grown = False, f"{type(exc).__name__}: {exc!s:.200}", 0.0, 0.0
            held, broken = held + ok, broken + (not ok)
            verdict = "held  " if ok else "BROKEN"
            print(f"{verdict} {name:30} {elapsed:5.2f} s {grown:+6.0f} MiB  {said}", flush=True)
    finally:
        env.close()
    total = time.monotonic() - start
    print(f"\nSQLite sandbox: {held} held, {broken} broken, in {total:.0f} s ({machine()})")
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
