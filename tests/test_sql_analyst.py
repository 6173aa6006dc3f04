"""sql/Analyst-v1: tasks, the two gold paths, reward components and answer parsing.

Contract, oracle 1.0 / null 0 on every task, examples and determinism are checked for every
bundled scenario in test_scenarios.py.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

import simenv
from scenarios import sql_analyst as sa
from simenv.parsing import format_tool_call
from simenv.rollouts.policies import Scripted


@pytest.fixture(scope="module")
def env() -> Any:
    return simenv.make("sql/Analyst-v1")


def play(env: Any, task_id: str, *actions: str) -> simenv.Episode:
    return simenv.rollout(env, Scripted(actions), seed=0, task_id=task_id)


def sql(query: str) -> str:
    return format_tool_call("run_sql", {"query": query})


def gold_sql(task_id: str) -> str:
    return str(sa.SCENARIO.task(task_id).data["gold_sql"])


def test_tasks_cover_every_template_in_both_splits() -> None:
    tasks = sa.SCENARIO.tasks
    assert len(tasks) >= 100 and len({t.id for t in tasks}) == len(tasks)
    splits = Counter(t.split for t in tasks)
    assert splits["eval"] >= 25 and splits["train"] >= 75
    by_template = Counter((t.data["template"], t.split) for t in tasks)
    for template in sa.TEMPLATES:
        assert by_template[template.name, "train"] and by_template[template.name, "eval"]
    assert sa.make_tasks() == list(tasks)  # seeded: the same tasks every time
    assert all(t.data["gold_sql"] not in sa.SYSTEM_PROMPT for t in tasks)


def test_python_gold_agrees_with_sql_gold_on_every_task(env: Any) -> None:
    env.reset(seed=0)
    shop = env.unwrapped.state
    for task in sa.SCENARIO.tasks:
        rows = shop.query(task.data["gold_sql"])
        assert rows and all(len(row) == 1 and row[0] is not None for row in rows), task.id
        python = sa.python_gold(shop, task)
        assert sa.states(
            f"Answer: {sa.render(task.data['kind'], python)}",
            task.data["kind"],
            [r[0] for r in rows],
        ), (task.id, python, rows)


def test_reward_components(env: Any) -> None:
    task = "distinct_buyers-00"
    right, wrong = sql(gold_sql(task)), sql("SELECT COUNT(*) FROM customers")
    both = play(env, task, right, "Answer: 55")
    assert both.reward_components == {"query": 0.5, "answer": 0.5} and both.success
    guess = play(env, task, "It is 55.\nAnswer: 55")
    assert guess.reward == 0.5 and guess.success  # right, but not shown by a query
    misread = play(env, task, right, "Answer: 56")
    assert misread.reward_components == {"query": 0.5, "answer": 0.0} and not misread.success
    last_counts = play(env, task, right, wrong, "Answer: 55")
    assert last_counts.reward_components["query"] == 0.0  # the last query is the one judged
    nothing = play(env, task, "I don't know.")
    assert nothing.reward == 0.0 and not nothing.success


def test_the_query_may_carry_extra_columns_but_must_respect_the_gold_order(env: Any) -> None:
    top = "top_product_units-00"
    named = sql(gold_sql(top).replace("SELECT p.name", "SELECT p.name, SUM(i.quantity)"))
    assert play(env, top, named, "ok").reward_components["query"] == 0.5
    month = next(t for t in sa.SCENARIO.tasks if t.data["template"] == "top3_in_month")
    ranked = gold_sql(month.id).replace(
        "SELECT p.name", "SELECT p.name AS name, ROUND(SUM(i.quantity * i.unit_price), 2) AS r"
    )
    reverse = f"SELECT name FROM ({ranked}) ORDER BY r ASC"  # the right three, lowest first
    assert play(env, month.id, sql(reverse), "ok").reward_components["query"] == 0.0


def test_a_write_is_refused_and_the_episode_goes_on(env: Any) -> None:
    task = "orders_in_city-00"
    episode = play(env, task, sql("DELETE FROM orders"), sql(gold_sql(task)), "Answer: 176")
    assert "read-only" in episode.steps[0].tool_results[0].content
    assert episode.reward == 1.0 and episode.success


@pytest.mark.parametrize(
    ("answer", "kind", "expected", "ok"),
    [
        ("Answer: 1234.57", "number", [1234.5678], True),
        ("answer: $1,234.57.", "number", [1234.5678], True),
        ("**Answer:** 1234.5", "number", [1234.5678], False),
        ("Answer: 42\nAnswer: 43", "number", [43], True),
        ("The answer is 42.", "number", [42], False),
        ("Answer: about 42", "number", [42], False),
        ("Answer: kettle", "name", ["Kettle"], True),
        ("Answer: Kettle; Rake", "name", ["Kettle"], False),
        ("Answer: Kite; Rake; Yo-Yo", "names", ["Kite", "Rake", "Yo-Yo"], True),
        ("Answer: Rake; Kite; Yo-Yo", "names", ["Kite", "Rake", "Yo-Yo"], False),
        ("Answer: Kite, Rake, Yo-Yo", "names", ["Kite", "Rake", "Yo-Yo"], True),
    ],
)
def test_answer_parsing(answer: str, kind: str, expected: list[Any], ok: bool) -> None:
    assert sa.states(answer, kind, expected) is ok
