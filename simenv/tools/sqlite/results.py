"""Result sets of SQL statements: compare two, tell whether a query orders, render one.

Pure functions with no database in them, shared by the SQLite pattern's checks
(:mod:`simenv.tools.sqlite`) and usable on rows computed any other way (a gold answer computed
in Python, a query's output captured from a container):

- :func:`same_rows`: two lists of rows are equal as multisets or in order, numbers within a
  tolerance (``3`` equals ``3.0``; the tolerance is not transitive, so rows are matched one by
  one when sorting alone does not pair them);
- :func:`is_ordered`: a query has a top-level ORDER BY (not one inside parentheses, a string
  or a comment), i.e. its row order is part of its answer;
- :func:`format_table`: a :class:`QueryResult` as the aligned text table an agent reads.
"""

from __future__ import annotations

import itertools
import math
import re
from collections import Counter
from collections.abc import Sequence
from typing import Any, NamedTuple

__all__ = ["QueryResult", "format_table", "is_ordered", "same_rows"]


class QueryResult(NamedTuple):
    """What one statement gave back.

    Attributes:
        columns: Column names (empty for a statement that returns no rows).
        rows: The rows, at most the row limit asked for.
        truncated: True when the statement had more rows than were kept.
        changed: Rows changed by an INSERT / UPDATE / DELETE (-1 otherwise).
    """

    columns: list[str]
    rows: list[tuple[Any, ...]]
    truncated: bool
    changed: int


def _cell(value: Any, limit: int) -> str:
    if value is None:
        return "NULL"
    kind = type(value)
    if kind is int or kind is float:
        return repr(value)
    text = f"x'{value.hex()}'" if kind is bytes else str(value)
    if "\n" in text:
        text = text.replace("\n", "\\n")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def format_table(result: QueryResult, max_cell_chars: int = 200) -> str:
    """A result as an aligned text table, with the row count and a note when it was cut.

    Args:
        result: The rows and columns of one statement.
        max_cell_chars: Longer values are cut and end with ``...``.
    """
    columns, n = result.columns, len(result.rows)
    if not columns:
        if result.changed >= 0:
            return f"OK ({result.changed} row{'' if result.changed == 1 else 's'} changed)"
        return "OK"
    grid = [columns, *([_cell(v, max_cell_chars) for v in row] for row in result.rows)]
    widths = [max(map(len, texts)) for texts in zip(*grid, strict=True)]
    lines = [" | ".join(map(str.ljust, line, widths)).rstrip() for line in grid]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    if result.truncated:
        lines.append(
            f"(only the first {n} rows are shown; the result has more: aggregate, filter or "
            "add LIMIT/OFFSET)"
        )
    else:
        lines.append(f"({n} row{'' if n == 1 else 's'})")
    return "\n".join(lines)


def is_ordered(sql: str) -> bool:
    """Whether a query has a top-level ORDER BY (not one inside parentheses or a string)."""
    depth = 0
    previous = ""
    for match in _TOKENS.finditer(sql):
        token = match.group(0)
        if token == "(":
            depth += 1
        elif token == ")":
            depth -= 1
        elif depth == 0 and token[0].isalpha():
            word = token.lower()
            if word == "by" and previous == "order":
                return True
            previous = word
    return False


_TOKENS = re.compile(
    r"""'(?:[^']|'')*'|"(?:[^"]|"")*"|`[^`]*`|\[[^\]]*\]|--[^\n]*|/\*.*?(?:\*/|$)"""
    r"""|[A-Za-z_][A-Za-z0-9_$]*|[()]""",
    re.DOTALL,
)


def _close(a: Any, b: Any, rel_tol: float, abs_tol: float) -> bool:
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b or math.isclose(a, b, rel_tol=rel_tol, abs_tol=abs_tol)
    return bool(a == b) and type(a) is type(b)


def _rows_close(a: Sequence[Any], b: Sequence[Any], rel_tol: float, abs_tol: float) -> bool:
    if len(a) != len(b):
        return False
    return all(_close(x, y, rel_tol, abs_tol) for x, y in zip(a, b, strict=True))


def _sort_key(row: Sequence[Any]) -> tuple[Any, ...]:
    # numbers before text before blobs before NULL, like SQLite's own ordering classes
    return tuple(
        (0, float(v), "") if isinstance(v, int | float)
        else (1, 0.0, v) if isinstance(v, str)
        else (2, 0.0, v.hex()) if isinstance(v, bytes)
        else (3, 0.0, "")
        for v in row
    )  # fmt: skip


def same_rows(
    rows: Sequence[Sequence[Any]],
    gold: Sequence[Sequence[Any]],
    *,
    ordered: bool = False,
    rel_tol: float = 1e-6,
    abs_tol: float = 1e-9,
    allow_extra_columns: bool = False,
) -> bool:
    """Whether two lists of rows are equal: in order, or as multisets.

    Numbers compare with :func:`math.isclose` (``3`` equals ``3.0``); everything else exactly.

    Args:
        rows: The rows to judge.
        gold: The reference rows.
        ordered: Compare in order (True) or as multisets (False).
        rel_tol: Relative tolerance for numbers.
        abs_tol: Absolute tolerance for numbers (e.g. 0.005 accepts money rounded to cents).
        allow_extra_columns: ``rows`` may have more columns than ``gold`` if some of them (in
            any order) equal the gold's row for row: "the name and its total" for "the name".
    """
    width = len(gold[0]) if gold else 0
    if allow_extra_columns and gold and rows and len(rows[0]) > width:
        projections = (
            [tuple(row[i] for i in chosen) for row in rows]
            for chosen in itertools.permutations(range(len(rows[0])), width)
        )
        return any(
            _same(p, gold, ordered, rel_tol, abs_tol) for p in itertools.islice(projections, 5040)
        )
    return _same(rows, gold, ordered, rel_tol, abs_tol)


def _same(
    rows: Sequence[Sequence[Any]],
    gold: Sequence[Sequence[Any]],
    ordered: bool,
    rel_tol: float,
    abs_tol: float,
) -> bool:
    if len(rows) != len(gold):
        return False
    mine, theirs = [tuple(r) for r in rows], [tuple(r) for r in gold]
    if ordered:
        return all(_rows_close(a, b, rel_tol, abs_tol) for a, b in zip(mine, theirs, strict=True))
    if Counter(mine) == Counter(theirs):
        return True
    mine.sort(key=_sort_key)
    theirs.sort(key=_sort_key)
    if all(_rows_close(a, b, rel_tol, abs_tol) for a, b in zip(mine, theirs, strict=True)):
        return True
    if len(mine) > 2000:
        return False
    unmatched = list(theirs)  # tolerance is not transitive: match greedily, row by row
    for row in mine:
        index = next(
            (i for i, g in enumerate(unmatched) if _rows_close(row, g, rel_tol, abs_tol)), None
        )
        if index is None:
            return False
        unmatched.pop(index)
    return True
