"""SQL analyst: answer a business question about a shop by querying its SQLite database.

## Description
The agent is a data analyst. A colleague asks one question about an online shop (how many
orders, how much revenue, which product or customer leads, who never ordered ...); the agent
explores the schema if it needs to, runs SQL until it has the result, and answers with a final
line ``Answer: <value>``. Questions need joins, filters, date functions, grouping, subqueries
and ordering; 125 tasks come from 16 question templates with seeded parameters (cities,
categories, months, products, suppliers, thresholds), about a quarter of each template held out
as the ``eval`` split.

## Tools
- `run_sql(query)` (read; pattern: verifiable execution, a private read-only SQLite copy per
  episode; one statement per call, 1 s per statement, the first 50 rows shown).

## Observation
The system prompt (the schema and the answer format), the question; then result tables.

## Starting state
One database built from a fixed seed (``random_state=False``): 6 suppliers, 40 products in 5
categories, 150 customers in 6 cities and 3 segments (about 15% never order), 1,200 orders of
2024 (80% delivered, 12% returned, 8% cancelled) with 1-4 lines each, some at a 10% discount.
Every episode gets its own copy of the template (about 60 µs), so the seed changes nothing.

## Reward
Two components, computed from the transcript and the final database, summing to at most 1.0:
``query`` is 0.5 when the agent's last successful query returns the gold query's rows (as a
multiset, or in order when the gold sorts; extra columns allowed, numbers within 0.01);
``answer`` is 0.5 when the ``Answer:`` line states the gold query's result (numbers within
0.01, names exactly, lists in order). A do-nothing agent earns 0; the oracle earns 1.0.

## Evaluation
Independent of the reward's code path: the gold value is computed in plain Python from the
final tables (no SQL), and the ``Answer:`` line must state it.

## Episode end
An answer without a tool call (terminated), or 8 turns (truncated).

## Example
See ``EXAMPLES`` at the bottom: the gold query then the right answer (1.0); the right query
then a misread number (0.5); counting order lines instead of distinct customers (0.0).

## Version history
- v1: first release.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from scenarios.support_desk import FIRST, LAST  # the same customer names
from simenv import Example, Outcome, Scenario, Task
from simenv.parsing import format_tool_call
from simenv.tools.sqlite import SQLiteSandbox, is_ordered, run_sql, same_result

if TYPE_CHECKING:
    from sqlalchemy import Connection

CITIES = ("Lisbon", "Oslo", "Turin", "Leeds", "Ghent", "Lyon")
SEGMENTS = ("retail", "business", "student")
STATUSES = ("delivered", "returned", "cancelled")
STATUS_WEIGHTS = (0.80, 0.12, 0.08)
MONTHS = (
    "January", "February", "March", "April", "May", "June", "July", "August", "September",
    "October", "November", "December",
)  # fmt: skip
SUPPLIERS = (
    ("Northwind Trading", "Norway"), ("Acme Supply", "USA"), ("Blue Harbor", "Portugal"),
    ("Copperleaf", "Italy"), ("Delta Goods", "Belgium"), ("Evergreen Imports", "France"),
)  # fmt: skip
PRODUCTS = {
    "kitchen": ("Chef Knife", "Cast Iron Pan", "Kettle", "Coffee Grinder", "Cutting Board",
                "Blender", "Toaster", "Spice Rack"),
    "garden": ("Garden Hose", "Pruning Shears", "Watering Can", "Seed Starter Kit", "Rake",
               "Planter Box", "Garden Gloves", "Compost Bin"),
    "office": ("Desk Lamp", "Monitor Stand", "Notebook Set", "Office Chair", "Desk Organizer",
               "Whiteboard", "Paper Shredder", "Ergonomic Mouse"),
    "outdoor": ("Camping Tent", "Sleeping Bag", "Hiking Poles", "Headlamp", "Water Filter",
                "Camp Stove", "Rain Poncho", "Daypack"),
    "toys": ("Building Blocks", "Puzzle Box", "Toy Train", "Kite", "Board Game", "Plush Bear",
             "Yo-Yo", "Marble Run"),
}  # fmt: skip
CATEGORIES = tuple(PRODUCTS)
N_CUSTOMERS, N_ORDERS, INACTIVE_SHARE = 150, 1200, 0.15
TASK_SEED, EVAL_SHARE = 0, 0.25
NUMBER_TOLERANCE = 0.01

SCHEMA = """\
CREATE TABLE suppliers (id INTEGER PRIMARY KEY, name TEXT NOT NULL, country TEXT NOT NULL);
CREATE TABLE products (id INTEGER PRIMARY KEY, name TEXT NOT NULL, category TEXT NOT NULL,
    supplier_id INTEGER NOT NULL REFERENCES suppliers(id), price REAL NOT NULL);
CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT NOT NULL, email TEXT NOT NULL,
    city TEXT NOT NULL, segment TEXT NOT NULL, signup_date TEXT NOT NULL);
CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER NOT NULL
    REFERENCES customers(id), order_date TEXT NOT NULL, status TEXT NOT NULL);
CREATE TABLE order_items (order_id INTEGER NOT NULL REFERENCES orders(id),
    product_id INTEGER NOT NULL REFERENCES products(id), quantity INTEGER NOT NULL,
    unit_price REAL NOT NULL, PRIMARY KEY (order_id, product_id));"""

SYSTEM_PROMPT = f"""\
You are a data analyst for an online shop. Answer the question by running SQL with the run_sql
tool on the shop's SQLite database:

{SCHEMA}

Conventions: dates are ISO text ('2024-03-15'); orders.status is 'delivered', 'returned' or
'cancelled'. Revenue means SUM(quantity * unit_price) over the lines of delivered orders only.
Make your last query the one that computes the answer. Then reply without calling a tool, and
end with one line `Answer: <value>`: a number (money and averages with 2 decimals, no units or
thousands separators), a name, or a list of names separated by '; '."""


class Shop(SQLiteSandbox):
    """The shop's database: built once from a fixed seed, copied for every episode."""

    schema = SCHEMA
    read_only = True

    def build(self, db: Connection, rng: np.random.Generator) -> None:
        db.exec_driver_sql(
            "INSERT INTO suppliers VALUES (?, ?, ?)",
            [(i, name, country) for i, (name, country) in enumerate(SUPPLIERS, 1)],
        )
        names = [(name, category) for category in CATEGORIES for name in PRODUCTS[category]]
        suppliers = rng.integers(1, len(SUPPLIERS) + 1, len(names))
        prices = rng.integers(300, 25_000, len(names)) / 100
        products = [
            (i, name, category, int(suppliers[i - 1]), float(prices[i - 1]))
            for i, (name, category) in enumerate(names, 1)
        ]
        db.exec_driver_sql("INSERT INTO products VALUES (?, ?, ?, ?, ?)", products)
        pairs = rng.permutation(len(FIRST) * len(LAST))[:N_CUSTOMERS]
        customers = []
        for i, pair in enumerate(pairs.tolist(), 1):
            first, last = FIRST[pair // len(LAST)], LAST[pair % len(LAST)]
            city, segment, day = rng.integers(0, 6), rng.integers(0, 3), rng.integers(0, 365)
            signup = np.datetime64("2023-01-01") + int(day)
            customers.append((
                i, f"{first} {last}", f"{first.lower()}.{last.lower()}@example.com",
                CITIES[city], SEGMENTS[segment], str(signup),
            ))  # fmt: skip
        db.exec_driver_sql("INSERT INTO customers VALUES (?, ?, ?, ?, ?, ?)", customers)
        active = rng.permutation(np.arange(1, N_CUSTOMERS + 1))
        active = active[int(N_CUSTOMERS * INACTIVE_SHARE) :]
        orders, items = [], []
        for order in range(1, N_ORDERS + 1):
            day = np.datetime64("2024-01-01") + int(rng.integers(0, 366))
            status = STATUSES[int(rng.choice(3, p=STATUS_WEIGHTS))]
            orders.append((order, int(rng.choice(active)), str(day), status))
            lines = rng.choice(len(products), size=int(rng.integers(1, 5)), replace=False)
            for index in lines.tolist():
                discount = 0.9 if rng.random() < 0.2 else 1.0
                price = round(products[index][4] * discount, 2)
                items.append((order, index + 1, int(rng.integers(1, 6)), price))
        db.exec_driver_sql("INSERT INTO orders VALUES (?, ?, ?, ?)", orders)
        db.exec_driver_sql("INSERT INTO order_items VALUES (?, ?, ?, ?)", items)


# ----------------------------------------------------------------------------- questions
# Each template: the question, the gold SQL, and the same answer computed in Python (the
# evaluation's independent path). ``kind`` says how the answer is stated and compared.
class Supplier(NamedTuple):
    id: int
    name: str
    country: str


class Product(NamedTuple):
    id: int
    name: str
    category: str
    supplier_id: int
    price: float


class Customer(NamedTuple):
    id: int
    name: str
    email: str
    city: str
    segment: str
    signup_date: str


class Order(NamedTuple):
    id: int
    customer_id: int
    order_date: str
    status: str


class Line(NamedTuple):
    order_id: int
    product_id: int
    quantity: int
    unit_price: float


class Data:
    """The shop's tables as Python objects (read from the final database, not through SQL)."""

    def __init__(self, tables: dict[str, list[tuple[Any, ...]]]) -> None:
        self.suppliers = {r[0]: Supplier(*r) for r in tables["suppliers"]}
        self.products = {r[0]: Product(*r) for r in tables["products"]}
        self.customers = {r[0]: Customer(*r) for r in tables["customers"]}
        self.orders = {r[0]: Order(*r) for r in tables["orders"]}
        self.lines = [Line(*r) for r in tables["order_items"]]

    @functools.cached_property
    def sales(self) -> list[tuple[Line, Order, Customer, Product, float]]:
        """Lines of delivered orders, with their order, customer, product and revenue."""
        out = []
        for line in self.lines:
            order = self.orders[line.order_id]
            if order.status == "delivered":
                customer = self.customers[order.customer_id]
                product = self.products[line.product_id]
                out.append((line, order, customer, product, line.quantity * line.unit_price))
        return out


def _month(date: str) -> int:
    return int(date[5:7])


def _best(totals: dict[Any, float], n: int = 1) -> list[Any]:
    """Keys with the highest totals (to the cent), ties broken by the key."""
    return sorted(totals, key=lambda k: (-round(totals[k], 2), k))[:n]


def py_orders_in_city(d: Data, city: str) -> int:
    return sum(d.customers[o.customer_id].city == city for o in d.orders.values())


def py_status_in_month(d: Data, status: str, month: int) -> int:
    return sum(o.status == status and _month(o.order_date) == month for o in d.orders.values())


def py_orders_in_month(d: Data, month: int) -> int:
    return sum(_month(o.order_date) == month for o in d.orders.values())


def py_category_revenue(d: Data, category: str) -> float:
    return sum(r for _, _, _, p, r in d.sales if p.category == category)


def py_city_category_revenue(d: Data, city: str, category: str) -> float:
    return sum(r for _, _, c, p, r in d.sales if c.city == city and p.category == category)


def py_supplier_revenue(d: Data, supplier: str) -> float:
    return sum(r for _, _, _, p, r in d.sales if d.suppliers[p.supplier_id].name == supplier)


def py_avg_order_value(d: Data, segment: str | None = None, city: str | None = None) -> float:
    totals: dict[int, float] = defaultdict(float)
    for _, o, c, _, r in d.sales:
        if segment in (None, c.segment) and city in (None, c.city):
            totals[o.id] += r
    return sum(totals.values()) / len(totals)


def py_top_product_units(d: Data, category: str) -> str:
    units: dict[str, float] = defaultdict(float)
    for line, _, _, p, _ in d.sales:
        if p.category == category:
            units[p.name] += line.quantity
    return str(_best(units)[0])


def py_top_customer(d: Data, city: str) -> str:
    spent: dict[str, float] = defaultdict(float)
    for _, _, c, _, r in d.sales:
        if c.city == city:
            spent[c.name] += r
    return str(_best(spent)[0])


def py_top3_in_month(d: Data, month: int) -> list[str]:
    revenue: dict[str, float] = defaultdict(float)
    for _, o, _, p, r in d.sales:
        if _month(o.order_date) == month:
            revenue[p.name] += r
    return [str(name) for name in _best(revenue, 3)]


def py_distinct_buyers(d: Data, product: str) -> int:
    ids = {p.id for p in d.products.values() if p.name == product}
    return len({d.orders[line.order_id].customer_id for line in d.lines if line.product_id in ids})


def py_never_ordered(d: Data, city: str) -> int:
    buyers = {o.customer_id for o in d.orders.values()}
    return sum(c.city == city and c.id not in buyers for c in d.customers.values())


def py_frequent_customers(d: Data, segment: str, k: int) -> int:
    counts = Counter(o.customer_id for o in d.orders.values())
    return sum(c.segment == segment and counts[c.id] >= k for c in d.customers.values())


def py_returned_units(d: Data, category: str) -> int:
    return sum(
        line.quantity
        for line in d.lines
        if d.orders[line.order_id].status == "returned"
        and d.products[line.product_id].category == category
    )


def py_busiest_month(d: Data, city: str) -> int:
    counts = Counter(
        _month(o.order_date) for o in d.orders.values() if d.customers[o.customer_id].city == city
    )
    return min(counts, key=lambda m: (-counts[m], m))


def py_signups_in_month(d: Data, month: int) -> int:
    return sum(_month(c.signup_date) == month for c in d.customers.values())


SALES = (
    "FROM order_items i JOIN orders o ON o.id = i.order_id JOIN products p ON p.id = i.product_id"
)
REVENUE = "SUM(i.quantity * i.unit_price)"


class Template(NamedTuple):
    name: str
    kind: str  # "number", "name" or "names"
    question: str
    sql: str
    python: Callable[..., Any]
    params: Callable[[np.random.Generator], list[dict[str, Any]]]


def _all(key: str, values: Sequence[Any]) -> Callable[[np.random.Generator], list[dict[str, Any]]]:
    return lambda rng: [{key: v} for v in values]


def _some(n: int, **grid: Sequence[Any]) -> Callable[[np.random.Generator], list[dict[str, Any]]]:
    """``n`` distinct combinations of the grid, drawn with the task generator."""

    def draw(rng: np.random.Generator) -> list[dict[str, Any]]:
        keys = list(grid)
        combos = [dict(zip(keys, v, strict=True)) for v in itertools.product(*grid.values())]
        return [combos[i] for i in sorted(rng.choice(len(combos), n, replace=False).tolist())]

    return draw


MONTH_NUMBERS = tuple(range(1, 13))
ALL_PRODUCTS = tuple(name for names in PRODUCTS.values() for name in names)
TEMPLATES = (
    Template(
        "orders_in_city", "number",
        "How many orders (of any status) were placed by customers who live in {city}?",
        "SELECT COUNT(*) FROM orders o JOIN customers c ON c.id = o.customer_id "
        "WHERE c.city = '{city}'",
        py_orders_in_city, _all("city", CITIES),
    ),
    Template(
        "status_in_month", "number",
        "How many orders placed in {month_name} 2024 have the status '{status}'?",
        "SELECT COUNT(*) FROM orders WHERE status = '{status}' "
        "AND strftime('%m', order_date) = '{month:02d}'",
        py_status_in_month, _some(12, status=STATUSES, month=MONTH_NUMBERS),
    ),
    Template(
        "orders_in_month", "number",
        "How many orders were placed in {month_name} 2024, whatever their status?",
        "SELECT COUNT(*) FROM orders WHERE order_date LIKE '2024-{month:02d}-%'",
        py_orders_in_month, _some(6, month=MONTH_NUMBERS),
    ),
    Template(
        "category_revenue", "number",
        "What was the total revenue from {category} products?",
        f"SELECT {REVENUE} {SALES} WHERE o.status = 'delivered' AND p.category = '{{category}}'",
        py_category_revenue, _all("category", CATEGORIES),
    ),
    Template(
        "city_category_revenue", "number",
        "How much revenue did {category} products bring in from customers in {city}?",
        f"SELECT COALESCE({REVENUE}, 0) {SALES} JOIN customers c ON c.id = o.customer_id "
        "WHERE o.status = 'delivered' AND c.city = '{city}' AND p.category = '{category}'",
        py_city_category_revenue, _some(15, city=CITIES, category=CATEGORIES),
    ),
    Template(
        "supplier_revenue", "number",
        "How much revenue came from products supplied by {supplier}?",
        f"SELECT COALESCE({REVENUE}, 0) {SALES} JOIN suppliers s ON s.id = p.supplier_id "
        "WHERE o.status = 'delivered' AND s.name = '{supplier}'",
        py_supplier_revenue, _all("supplier", [name for name, _ in SUPPLIERS]),
    ),
    Template(
        "avg_order_value_segment", "number",
        "What is the average revenue per delivered order for {segment} customers?",
        f"SELECT AVG(total) FROM (SELECT {REVENUE} AS total {SALES} JOIN customers c "
        "ON c.id = o.customer_id WHERE o.status = 'delivered' AND c.segment = '{segment}' "
        "GROUP BY o.id)",
        py_avg_order_value, _all("segment", SEGMENTS),
    ),
    Template(
        "avg_order_value_city", "number",
        "What is the average revenue per delivered order for customers in {city}?",
        f"SELECT AVG(total) FROM (SELECT {REVENUE} AS total {SALES} JOIN customers c "
        "ON c.id = o.customer_id WHERE o.status = 'delivered' AND c.city = '{city}' "
        "GROUP BY o.id)",
        py_avg_order_value, _all("city", CITIES),
    ),
    Template(
        "top_product_units", "name",
        "Which {category} product sold the most units in delivered orders? If several tie, "
        "give the one first in alphabetical order.",
        f"SELECT p.name {SALES} WHERE o.status = 'delivered' AND p.category = '{{category}}' "
        "GROUP BY p.id ORDER BY SUM(i.quantity) DESC, p.name LIMIT 1",
        py_top_product_units, _all("category", CATEGORIES),
    ),
    Template(
        "top_customer", "name",
        "Which customer from {city} brought the most revenue? If several tie, give the one "
        "first in alphabetical order.",
        f"SELECT c.name {SALES} JOIN customers c ON c.id = o.customer_id "
        "WHERE o.status = 'delivered' AND c.city = '{city}' "
        f"GROUP BY c.id ORDER BY ROUND({REVENUE}, 2) DESC, c.name LIMIT 1",
        py_top_customer, _all("city", CITIES),
    ),
    Template(
        "top3_in_month", "names",
        "Which three products brought the most revenue in {month_name} 2024? List them from "
        "the highest revenue down (ties in alphabetical order).",
        f"SELECT p.name {SALES} WHERE o.status = 'delivered' "
        "AND strftime('%m', o.order_date) = '{month:02d}' "
        f"GROUP BY p.id ORDER BY ROUND({REVENUE}, 2) DESC, p.name LIMIT 3",
        py_top3_in_month, _some(8, month=MONTH_NUMBERS),
    ),
    Template(
        "distinct_buyers", "number",
        "How many different customers have ordered the {product} (in orders of any status)?",
        "SELECT COUNT(DISTINCT o.customer_id) FROM orders o JOIN order_items i "
        "ON i.order_id = o.id JOIN products p ON p.id = i.product_id WHERE p.name = '{product}'",
        py_distinct_buyers, _some(15, product=ALL_PRODUCTS),
    ),
    Template(
        "never_ordered", "number",
        "How many customers from {city} have never placed an order?",
        "SELECT COUNT(*) FROM customers c WHERE c.city = '{city}' "
        "AND NOT EXISTS (SELECT 1 FROM orders o WHERE o.customer_id = c.id)",
        py_never_ordered, _all("city", CITIES),
    ),
    Template(
        "frequent_customers", "number",
        "How many {segment} customers placed at least {k} orders (of any status)?",
        "SELECT COUNT(*) FROM (SELECT c.id FROM customers c JOIN orders o "
        "ON o.customer_id = c.id WHERE c.segment = '{segment}' GROUP BY c.id "
        "HAVING COUNT(*) >= {k})",
        py_frequent_customers, _some(9, segment=SEGMENTS, k=(6, 9, 12)),
    ),
    Template(
        "returned_units", "number",
        "How many units of {category} products were in orders that were returned?",
        f"SELECT COALESCE(SUM(i.quantity), 0) {SALES} "
        "WHERE o.status = 'returned' AND p.category = '{category}'",
        py_returned_units, _all("category", CATEGORIES),
    ),
    Template(
        "busiest_month", "number",
        "In which month of 2024 did customers from {city} place the most orders (of any "
        "status)? Answer with the month's number, 1 to 12; if several tie, the earliest.",
        "SELECT CAST(strftime('%m', o.order_date) AS INTEGER) AS m FROM orders o "
        "JOIN customers c ON c.id = o.customer_id WHERE c.city = '{city}' "
        "GROUP BY m ORDER BY COUNT(*) DESC, m LIMIT 1",
        py_busiest_month, _all("city", CITIES),
    ),
    Template(
        "signups_in_month", "number",
        "How many customers signed up in {month_name} 2023?",
        "SELECT COUNT(*) FROM customers WHERE signup_date LIKE '2023-{month:02d}-%'",
        py_signups_in_month, _some(6, month=MONTH_NUMBERS),
    ),
)  # fmt: skip
TEMPLATES_BY_NAME = {t.name: t for t in TEMPLATES}


def make_tasks(seed: int = TASK_SEED) -> list[Task]:
    """Every template with its seeded parameters; about a quarter of each template is eval."""
    rng = np.random.default_rng(seed)
    tasks = []
    for template in TEMPLATES:
        grid = template.params(rng)
        held_out = set(rng.permutation(len(grid))[: round(len(grid) * EVAL_SHARE)].tolist())
        for i, params in enumerate(grid):
            words = {**params, "month_name": MONTHS[params.get("month", 1) - 1]}
            tasks.append(
                Task(
                    id=f"{template.name}-{i:02d}",
                    prompt=template.question.format(**words),
                    split="eval" if i in held_out else "train",
                    data={
                        "template": template.name,
                        "params": params,
                        "kind": template.kind,
                        "gold_sql": template.sql.format(**words),
                    },
                )
            )
    return tasks


TASKS = make_tasks()


# ----------------------------------------------------------------------------- answers
_ANSWER = re.compile(r"^\W*answer\W*:\s*(.+?)\s*$", re.IGNORECASE | re.MULTILINE)


def stated(answer: str) -> str | None:
    """The text after the last ``Answer:`` line, or ``None``."""
    found = _ANSWER.findall(answer)
    return found[-1] if found else None


def _number(text: str) -> float | None:
    cleaned = re.sub(r"[\s$€£,*`]", "", text).rstrip(".")
    try:
        return float(cleaned)
    except ValueError:
        return None


def _names(text: str) -> list[str]:
    return [p.strip(" \t\"'*`.").casefold() for p in re.split(r"[;,]|\n", text) if p.strip()]


def states(answer: str, kind: str, expected: Sequence[Any]) -> bool:
    """Whether the final ``Answer:`` line gives ``expected`` (one value, or a list in order)."""
    text = stated(answer)
    if text is None or not expected:
        return False
    if kind == "number":
        number, value = _number(text), expected[0]
        return number is not None and value is not None and abs(number - value) <= 0.01
    return _names(text) == [str(v).casefold() for v in expected]


def render(kind: str, values: Sequence[Any]) -> str:
    """How an analyst states the result: 2 decimals for non-integers, names joined by '; '."""
    if kind == "number":
        value = values[0]
        return str(value) if isinstance(value, int) else f"{value:.2f}"
    return "; ".join(str(v) for v in values)


# ----------------------------------------------------------------------------- scoring
def reward(o: Outcome) -> dict[str, float]:
    gold_sql, kind = o.task.data["gold_sql"], o.task.data["kind"]
    ran = o.called("run_sql")  # successful calls only
    if not ran and stated(o.answer) is None:
        return {"query": 0.0, "answer": 0.0}
    gold = o.final.query(gold_sql)
    matched = bool(ran) and same_result(
        o.final,
        ran[-1]["query"],
        gold,
        ordered=is_ordered(gold_sql),
        allow_extra_columns=True,
        abs_tol=NUMBER_TOLERANCE,
    )
    return {
        "query": 0.5 if matched else 0.0,
        "answer": 0.5 if states(o.answer, kind, [row[0] for row in gold]) else 0.0,
    }


_DATA: dict[bytes, Data] = {}


def python_gold(shop: Shop, task: Task) -> list[Any]:
    """The task's answer computed in Python from the database's tables (no SQL logic)."""
    digest = hashlib.sha256(shop.db.serialize()).digest()  # equal bytes, equal tables
    data = _DATA.get(digest)
    if data is None:
        data = Data(shop.tables())
        _DATA.clear()
        _DATA[digest] = data
    template = TEMPLATES_BY_NAME[task.data["template"]]
    value = template.python(data, **task.data["params"])
    return value if isinstance(value, list) else [value]


def evaluate(o: Outcome) -> bool:
    if stated(o.answer) is None:
        return False
    return states(o.answer, o.task.data["kind"], python_gold(o.final, o.task))


def oracle(task: Task, shop: Shop) -> list[str]:
    gold_sql = task.data["gold_sql"]
    values = [row[0] for row in shop.query(gold_sql)]
    return [
        format_tool_call("run_sql", {"query": gold_sql}),
        f"Here is the result.\nAnswer: {render(task.data['kind'], values)}",
    ]


# ----------------------------------------------------------------------------- examples
_BUYERS = "distinct_buyers-00"  # How many different customers have ordered the Kettle ...?
_BUYERS_SQL = next(t.data["gold_sql"] for t in TASKS if t.id == _BUYERS)
_LINES_SQL = (
    "SELECT COUNT(*) FROM order_items i JOIN products p ON p.id = i.product_id "
    "WHERE p.name = 'Kettle'"
)
EXAMPLES = (
    Example(
        title="golden: the gold query, then its number",
        task_id=_BUYERS,
        seed=0,
        actions=(
            format_tool_call("run_sql", {"query": _BUYERS_SQL}),
            "55 different customers have ordered the Kettle.\nAnswer: 55",
        ),
        reward=1.0,
    ),
    Example(
        title="half: the right query, then a misread number",
        task_id=_BUYERS,
        seed=0,
        actions=(format_tool_call("run_sql", {"query": _BUYERS_SQL}), "Answer: 45"),
        reward=0.5,
    ),
    Example(
        title="failing: counts order lines (78), not distinct customers",
        task_id=_BUYERS,
        seed=0,
        actions=(format_tool_call("run_sql", {"query": _LINES_SQL}), "Answer: 78"),
        reward=0.0,
    ),
)

SCENARIO = Scenario(
    id="sql/Analyst-v1",
    doc=__doc__ or "",
    system_prompt=SYSTEM_PROMPT,
    tools=[run_sql],
    tasks=TASKS,
    sandbox=Shop,
    reward=reward,
    evaluate=evaluate,
    oracle=oracle,
    max_turns=8,
    random_state=False,
    examples=EXAMPLES,
)
