"""The SQLite pattern: a private database per episode, guarded and time-limited."""

from __future__ import annotations

import sqlite3
import time

import numpy as np
import pytest

import simenv
from simenv import Scenario, Task, ToolError
from simenv.parsing import format_tool_call
from simenv.tools.sqlite import SQLiteSandbox, format_table, same_result, sql_tool


class Ledger(SQLiteSandbox):
    schema = "CREATE TABLE t (id INTEGER PRIMARY KEY, v REAL, tag TEXT);"
    row_limit = 5
    time_limit_s = 0.2

    def build(self, db: sqlite3.Connection, rng: np.random.Generator) -> None:
        db.executemany(
            "INSERT INTO t VALUES (?, ?, ?)",
            [(i, float(rng.integers(0, 100)), "ab"[i % 2]) for i in range(1, 21)],
        )


class ReadOnlyLedger(Ledger):
    read_only = True


def make(db: type[SQLiteSandbox] = Ledger, read_only: bool = False) -> simenv.MultiTurnEnv:
    scenario = Scenario(
        id="test/Ledger-v1",
        system_prompt="SQL.",
        tools=[sql_tool(read_only=read_only)],
        tasks=[Task("t0", "Go.")],
        sandbox=db,
        reward=lambda o: 0.0,
        evaluate=lambda o: 0.0,
        random_state=False,
    )
    return simenv.MultiTurnEnv(scenario)


def sql(query: str) -> str:
    return format_tool_call("run_sql", {"query": query})


def test_each_episode_has_its_own_copy() -> None:
    a, b = make(), make()
    a.reset(seed=0)
    b.reset(seed=1)
    a.step(sql("DELETE FROM t"))
    assert "0" in a.step(sql("SELECT COUNT(*) FROM t"))[0][1]["content"]
    assert "20" in b.step(sql("SELECT COUNT(*) FROM t"))[0][1]["content"]
    a.reset(seed=0)  # a new episode starts from the template again
    assert "20" in a.step(sql("SELECT COUNT(*) FROM t"))[0][1]["content"]


@pytest.mark.parametrize(
    "query",
    [
        "ATTACH DATABASE '/tmp/x.db' AS x",
        "SELECT load_extension('evil')",
        "PRAGMA journal_mode = OFF",
        "SELECT * FROM x.t",
    ],
)
def test_the_authorizer_refuses(query: str) -> None:
    env = make()
    env.reset(seed=0)
    observation, _, terminated, _, info = env.step(sql(query))
    assert observation[1]["content"].startswith("Error:") and not terminated and info["turn"] == 1


def test_read_only_refuses_writes() -> None:
    env = make(ReadOnlyLedger, read_only=True)
    env.reset(seed=0)
    text = env.step(sql("DELETE FROM t"))[0][1]["content"]
    assert text.startswith("Error: not allowed here")
    assert "20" in env.step(sql("SELECT COUNT(*) FROM t"))[0][1]["content"]


def test_a_runaway_recursive_query_is_stopped_and_the_episode_goes_on() -> None:
    env = make()
    env.reset(seed=0)
    start = time.monotonic()
    runaway = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT MAX(x) FROM c"
    observation, _, terminated, _, _ = env.step(sql(runaway))
    assert time.monotonic() - start < 5
    assert "stopped" in observation[1]["content"] and not terminated
    assert "20" in env.step(sql("SELECT COUNT(*) FROM t"))[0][1]["content"]


def test_row_limit_is_said() -> None:
    env = make()
    env.reset(seed=0)
    text = env.step(sql("SELECT id FROM t"))[0][1]["content"]
    assert text.splitlines()[0] == "id" and len(text.splitlines()) == 7
    assert "only the first 5 rows" in text


def test_sql_errors_reach_the_agent() -> None:
    env = make()
    env.reset(seed=0)
    assert "SQL error" in env.step(sql("SELEC nonsense"))[0][1]["content"]


def test_result_comparison_multiset_or_ordered() -> None:
    db = sqlite3.connect(":memory:")
    db.executescript(
        "CREATE TABLE t (a INT, b REAL); INSERT INTO t VALUES (1, 0.1), (2, 0.2), (2, 0.2);"
    )
    assert same_result(db, "SELECT a FROM t ORDER BY a DESC", "SELECT a FROM t")
    assert not same_result(db, "SELECT DISTINCT a FROM t", "SELECT a FROM t")
    assert not same_result(db, "SELECT a FROM t ORDER BY a DESC", "SELECT a FROM t ORDER BY a")
    assert same_result(db, "SELECT b * 3 / 3 FROM t", "SELECT b FROM t")
    assert not same_result(db, "SELECT nope", "SELECT a FROM t")


def test_snapshot_restore_hash_and_close() -> None:
    env = make()
    env.reset(seed=0)
    ledger = env.state
    assert isinstance(ledger, Ledger)
    snap, before, rows = ledger.snapshot(), ledger.state_hash(), ledger.state()
    env.step(sql("UPDATE t SET v = -1"))
    assert ledger.state_hash() != before
    assert any(line.startswith("~ t[") for line in ledger.diff(rows))
    ledger.restore(snap)
    assert ledger.state_hash() == before
    env.close()
    assert ledger.db is None  # the connection is closed and released


def test_format_table() -> None:
    assert format_table(["a", "b"], [(1, None)], False) == "a | b\n1 | NULL"
    assert format_table([], [], False) == "OK (no rows returned)"
    with pytest.raises(ToolError):
        env = make()
        env.reset(seed=0)
        assert isinstance(env.state, Ledger)
        env.state.execute("SELEC")


def test_bundled_sql_analyst_rewards_execution_match() -> None:
    scenario = simenv.load_scenario("sql/Analyst-v1")
    assert len(scenario.tasks) >= 100
    env = simenv.make(scenario)
    task = next(t for t in scenario.tasks if t.data["gold_sql"].endswith("status = 'returned'"))
    actions = [sql("SELECT COUNT(*) FROM orders WHERE status = 'returned'"), "It is 1."]
    episode = simenv.rollout(env, simenv.policies.Scripted(actions), seed=0, task_id=task.id)
    assert episode.reward == 1.0 and not episode.success  # right query, wrong stated answer
