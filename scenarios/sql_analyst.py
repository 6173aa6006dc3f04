"""SQL analyst: answer business questions from a shop's database.

## Description
The agent gets a question about a shop (orders, customers, products) and answers it by running
SQL against the shop's SQLite database, then stating the answer. Questions need joins, filters
and aggregates; some ask for a name, most for a number.

## Tools
- `run_sql(query)` (read, verifiable execution: a private SQLite copy per episode, read-only,
  1 s per statement, 50 rows shown).

## Observation
The system prompt (the schema), the question; then result tables.

## Starting state
One database built once from a fixed seed: 60 customers in 6 cities and 3 segments, 30 products
in 5 categories, 500 orders with 1-4 items each. Every episode gets its own copy, so the state
does not depend on the episode seed (``random_state=False``).

## Reward
1.0 when the last query the agent ran returns the same rows as the gold query (as a multiset,
or in order when the gold sorts), else 0.0.

## Evaluation
Independent of the reward: the final answer must state the gold value (a number, compared after
rounding to 2 decimals, or a name), whatever query produced it.

## Episode end
An answer without a tool call, or 6 turns.

## Example
``run_sql("SELECT COUNT(*) FROM orders WHERE status = 'returned'")`` then "There are 57
returned orders." earns 1.0 when the gold count is 57.

## Version history
- v1: first release.
"""

from __future__ import annotations

import re
import sqlite3

import numpy as np

from simenv import Example, Outcome, Scenario, Task
from simenv.parsing import format_tool_call
from simenv.tools.sqlite import SQLiteSandbox, same_result, sql_tool

CITIES = ("Lisbon", "Oslo", "Turin", "Leeds", "Ghent", "Lyon")
SEGMENTS = ("retail", "business", "student")
CATEGORIES = ("kitchen", "garden", "office", "outdoor", "toys")
STATUSES = ("delivered", "returned", "cancelled")
SCHEMA = """
CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT, city TEXT, segment TEXT);
CREATE TABLE products (id INTEGER PRIMARY KEY, name TEXT, category TEXT, price REAL);
CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER, day INTEGER, status TEXT);
CREATE TABLE order_items (order_id INTEGER, product_id INTEGER, qty INTEGER);
"""
SYSTEM_PROMPT = f"""\
You are a data analyst. Answer the question using the run_sql tool on this SQLite schema:
{SCHEMA.strip()}
Revenue is qty * price. When you know the answer, reply with it in one sentence and no tool
call."""


class Shop(SQLiteSandbox):
    """The shop's database."""

    schema = SCHEMA
    read_only = True

    def build(self, db: sqlite3.Connection, rng: np.random.Generator) -> None:
        db.executemany(
            "INSERT INTO customers VALUES (?, ?, ?, ?)",
            [(i, f"customer{i}", CITIES[int(rng.integers(6))], SEGMENTS[int(rng.integers(3))])
             for i in range(1, 61)],
        )  # fmt: skip
        db.executemany(
            "INSERT INTO products VALUES (?, ?, ?, ?)",
            [(i, f"product{i}", CATEGORIES[(i - 1) % 5], float(rng.integers(5, 200)))
             for i in range(1, 31)],
        )  # fmt: skip
        weights = np.array([0.8, 0.12, 0.08])
        db.executemany(
            "INSERT INTO orders VALUES (?, ?, ?, ?)",
            [(i, int(rng.integers(1, 61)), int(rng.integers(1, 366)),
              STATUSES[int(rng.choice(3, p=weights))]) for i in range(1, 501)],
        )  # fmt: skip
        items = []
        for order in range(1, 501):
            for product in rng.choice(
                np.arange(1, 31), size=int(rng.integers(1, 5)), replace=False
            ):
                items.append((order, int(product), int(rng.integers(1, 6))))
        db.executemany("INSERT INTO order_items VALUES (?, ?, ?)", items)

    def template_key(self, task: Task) -> None:
        return None


JOIN = (
    "FROM orders o JOIN order_items i ON i.order_id = o.id JOIN products p ON p.id = i.product_id"
)


def make_tasks() -> list[Task]:
    """Question templates x parameters, 103 tasks; every fourth is held out for eval."""
    rows: list[tuple[str, str, str]] = []
    for city in CITIES:
        rows.append(
            (
                f"How many orders did customers in {city} place?",
                f"SELECT COUNT(*) FROM orders o JOIN customers c ON c.id = o.customer_id "
                f"WHERE c.city = '{city}'",
                "number",
            )
        )
        rows.append(
            (
                f"What is the average number of items (total quantity) per order for "
                f"customers in {city}?",
                f"SELECT ROUND(AVG(q), 2) FROM (SELECT SUM(i.qty) AS q FROM orders o "
                f"JOIN order_items i ON i.order_id = o.id JOIN customers c ON "
                f"c.id = o.customer_id WHERE c.city = '{city}' GROUP BY o.id)",
                "number",
            )
        )
        for segment in SEGMENTS:
            rows.append(
                (
                    f"How many {segment} customers live in {city}?",
                    f"SELECT COUNT(*) FROM customers WHERE city = '{city}' AND "
                    f"segment = '{segment}'",
                    "number",
                )
            )
        for category in CATEGORIES:
            rows.append(
                (
                    f"What revenue came from {category} products bought by customers in "
                    f"{city}, excluding cancelled orders?",
                    f"SELECT ROUND(SUM(i.qty * p.price), 2) {JOIN} JOIN customers c ON "
                    f"c.id = o.customer_id WHERE c.city = '{city}' AND p.category = "
                    f"'{category}' AND o.status != 'cancelled'",
                    "number",
                )
            )
    for category in CATEGORIES:
        rows.append(
            (
                f"What is the total revenue from {category} products over all orders?",
                f"SELECT ROUND(SUM(i.qty * p.price), 2) {JOIN} WHERE p.category = '{category}'",
                "number",
            )
        )
        rows.append(
            (
                f"Which {category} product sold the most units? Give its name.",
                f"SELECT p.name {JOIN} WHERE p.category = '{category}' GROUP BY p.id "
                f"ORDER BY SUM(i.qty) DESC, p.name LIMIT 1",
                "name",
            )
        )
    for status in STATUSES:
        rows.append(
            (
                f"How many orders have the status {status}?",
                f"SELECT COUNT(*) FROM orders WHERE status = '{status}'",
                "number",
            )
        )
    for product in range(1, 31):
        rows.append(
            (
                f"How many distinct customers bought product{product}?",
                f"SELECT COUNT(DISTINCT o.customer_id) {JOIN} WHERE p.id = {product}",
                "number",
            )
        )
    return [
        Task(id=f"q{i:03d}", prompt=q, split="eval" if i % 4 == 3 else "train",
             data={"gold_sql": sql, "kind": kind})
        for i, (q, sql, kind) in enumerate(rows)
    ]  # fmt: skip


TASKS = make_tasks()
RUN_SQL = sql_tool(read_only=True)


def reward(o: Outcome) -> float:
    ran = o.called("run_sql")  # successful calls only
    if not ran:
        return 0.0
    return float(same_result(o.final, ran[-1]["query"], o.task.data["gold_sql"]))


_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def evaluate(o: Outcome) -> bool:
    (value,) = o.final.query(o.task.data["gold_sql"])[0]
    answer = o.answer
    if o.task.data["kind"] == "name":
        return re.search(rf"\b{re.escape(str(value))}\b", answer) is not None
    numbers = {round(float(n), 2) for n in _NUMBER.findall(answer.replace(",", ""))}
    return value is not None and round(float(value), 2) in numbers


def oracle(task: Task, shop: Shop) -> list[str]:
    (value,) = shop.query(task.data["gold_sql"])[0]
    shown = value if task.data["kind"] == "name" else f"{float(value):g}"
    return [
        format_tool_call("run_sql", {"query": task.data["gold_sql"]}),
        f"The answer is {shown}.",
    ]


_GOLD = "SELECT COUNT(DISTINCT o.customer_id) " + JOIN + " WHERE p.id = 28"
EXAMPLES = (
    Example(
        title="golden: count distinct buyers of product28",
        task_id="q100",
        seed=0,
        actions=(format_tool_call("run_sql", {"query": _GOLD}), "32 distinct customers."),
        reward=1.0,
    ),
    Example(
        title="failing: counts order lines, not customers",
        task_id="q100",
        seed=0,
        actions=(
            format_tool_call(
                "run_sql", {"query": "SELECT COUNT(*) FROM order_items WHERE product_id = 28"}
            ),
            "The answer is 60.",
        ),
        reward=0.0,
    ),
)


SCENARIO = Scenario(
    id="sql/Analyst-v1",
    doc=__doc__ or "",
    system_prompt=SYSTEM_PROMPT,
    tools=[RUN_SQL],
    tasks=TASKS,
    sandbox=Shop,
    reward=reward,
    evaluate=evaluate,
    oracle=oracle,
    max_turns=6,
    random_state=False,
    examples=EXAMPLES,
)
