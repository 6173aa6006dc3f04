"""Reading and checking an SOP folder (:func:`read_folder`) into a :class:`SopFolder`."""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from simenv.errors import ScenarioError
from simenv.sop.grading import _cell
from simenv.sop.toolspecs import (
    _SKELETON,
    ToolMap,
    _expected_write,
    _map_tool,
    _read_json,
    _tool_specs,
)

MAPPING_FILE = "simenv.yaml"
_MAPPING_KEYS = {
    "id", "tasks_file", "task_id_column", "split_column", "eval_fraction", "max_turns",
    "answer", "tools", "outputs",
}  # fmt: skip


# ----------------------------------------------------------------------------- the folder
@dataclass(frozen=True)
class SopFolder:
    """A checked SOP folder: everything :func:`load_sop` builds a scenario from.

    Attributes:
        root: The folder.
        sop: The procedure text.
        tools: How each tool is served, in spec order.
        columns: The CSV header.
        rows: The task table, one dict of raw cells per row.
        tasks_file: The CSV file name.
        input_columns: Columns shown to the agent in the user message.
        output_columns: Columns holding the gold decision.
        answer: ``submit``, ``message`` or ``either``.
        task_ids: One id per row.
        splits: ``train`` or ``eval`` per row.
        expected_writes: Per row, write tool -> expected arguments (``None``: must not call).
        output_help: Output column -> description for the ``submit`` tool.
        scenario_id: The id from ``simenv.yaml``, if it names one.
        max_turns: The turn limit.
    """

    root: Path
    sop: str
    tools: tuple[ToolMap, ...]
    columns: tuple[str, ...]
    rows: tuple[dict[str, str], ...]
    tasks_file: str
    input_columns: tuple[str, ...]
    output_columns: tuple[str, ...]
    answer: Literal["submit", "message", "either"]
    task_ids: tuple[str, ...]
    splits: tuple[Literal["train", "eval"], ...]
    expected_writes: tuple[dict[str, dict[str, Any] | None], ...]
    output_help: dict[str, str] = field(default_factory=dict)
    scenario_id: str | None = None
    max_turns: int = 12


def _read_csv(path: Path) -> tuple[tuple[str, ...], list[dict[str, str]], list[int]]:
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            header = tuple(h.strip() for h in next(reader, []))
            rows: list[dict[str, str]] = []
            lines: list[int] = []
            for record in reader:
                if not any(cell.strip() for cell in record):
                    continue
                if len(record) != len(header):
                    raise ScenarioError(
                        f"{path}: line {reader.line_num} has {len(record)} cells but the header "
                        f"has {len(header)}; quote cells that contain commas"
                    )
                rows.append(dict(zip(header, record, strict=True)))
                lines.append(reader.line_num)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ScenarioError(
            f"{path}: cannot read the task table ({exc}); save it as UTF-8 CSV"
        ) from None
    if not header or not rows:
        raise ScenarioError(f"{path}: no header or no rows; put one task per row under a header")
    dupes = sorted({h for h in header if header.count(h) > 1})
    if dupes:
        raise ScenarioError(f"{path}: columns {dupes} appear twice in the header; rename them")
    return header, rows, lines


def _tasks_file(root: Path, mapping: Mapping[str, Any], where: Path) -> Path:
    named = mapping.get("tasks_file")
    if named:
        path = root / str(named)
        if not path.is_file():
            raise ScenarioError(f"{where}: tasks_file {named!r} does not exist in {root}")
        return path
    default = root / "test_set_with_outputs.csv"
    if default.is_file():
        return default
    found = sorted(root.glob("*.csv"))
    if len(found) == 1:
        return found[0]
    if not found:
        raise ScenarioError(
            f"{root}: no task table (CSV) found; add test_set_with_outputs.csv with one task per "
            "row"
        )
    names = [p.name for p in found]
    raise ScenarioError(f"{where}: {root} holds several CSV files {names}; set tasks_file: NAME")


def read_folder(path: str | Path) -> SopFolder:
    """Read and check an SOP folder.

    Raises:
        ScenarioError: A file is missing or malformed, a tool in ``simenv.yaml`` is not in the
            specs (or the reverse), a column is not in the CSV, a row lacks a key ...; the
            message names the file and the fix.
    """
    root = Path(path)
    if not root.is_dir():
        raise ScenarioError(f"{root}: not a folder; give the folder that holds sop.txt")
    sop = _read_sop(root / "sop.txt")
    where = root / MAPPING_FILE
    mapping = _read_mapping(where)
    metadata = _read_json(
        root / "metadata.json",
        'write {"input_columns": [...], "output_columns": [...]} naming CSV columns',
    )
    specs = _tool_specs(root / "toolspecs.json")
    table = _tasks_file(root, mapping, where)
    columns, rows, lines = _read_csv(table)
    inputs, outputs = _io_columns(metadata, columns, root / "metadata.json", table)
    tool_entries = _tool_entries(mapping, specs, where)
    tools = tuple(
        _map_tool(name, tool_entries[name], specs[name], columns, where, table) for name in specs
    )
    hidden = {t.expect for t in tools if t.expect}
    shown = sorted(hidden & (set(inputs) | {c for t in tools for c in t.returns.values()}))
    if shown:
        raise ScenarioError(f"{where}: expected-write columns {shown} would be shown to the agent")
    return SopFolder(
        root=root,
        sop=sop,
        tools=tools,
        columns=columns,
        rows=tuple(rows),
        tasks_file=table.name,
        input_columns=inputs,
        output_columns=outputs,
        answer=_answer_mode(mapping.get("answer", "either"), where),
        task_ids=_task_ids(mapping, columns, rows, lines, table, where),
        splits=_splits(mapping, columns, rows, lines, table, where),
        expected_writes=_expected_writes(tools, rows, lines, table),
        output_help=_output_help(mapping.get("outputs"), outputs, where),
        scenario_id=str(mapping["id"]) if mapping.get("id") else None,
        max_turns=_max_turns(mapping.get("max_turns"), len(tools), where),
    )


def _read_sop(sop_path: Path) -> str:
    text = sop_path.read_text(encoding="utf-8-sig").strip() if sop_path.is_file() else ""
    if not text:
        raise ScenarioError(f"{sop_path}: file missing or empty; write the procedure there")
    return text


def _read_mapping(where: Path) -> dict[str, Any]:
    """``simenv.yaml``: a mapping with known settings only."""
    if not where.is_file():
        raise ScenarioError(
            f"{where}: file missing; it maps each tool to its key and returned columns, e.g.\n"
            f"{_SKELETON}"
        )
    try:
        mapping = yaml.safe_load(where.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ScenarioError(f"{where}: not valid YAML ({exc}); fix the syntax") from None
    if not isinstance(mapping, dict):
        raise ScenarioError(f"{where}: expected a mapping at the top, e.g.\n{_SKELETON}")
    unknown = sorted(set(mapping) - _MAPPING_KEYS)
    if unknown:
        raise ScenarioError(
            f"{where}: unknown settings {unknown}; allowed: {sorted(_MAPPING_KEYS)}"
        )
    return mapping


def _io_columns(
    metadata: Any, columns: tuple[str, ...], meta_path: Path, table: Path
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The input and output columns named by ``metadata.json``, checked against the CSV."""
    cols: dict[str, tuple[str, ...]] = {}
    for key in ("input_columns", "output_columns"):
        value = metadata.get(key) if isinstance(metadata, dict) else None
        if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
            raise ScenarioError(f"{meta_path}: {key} must be a non-empty list of CSV columns")
        missing = [c for c in value if c not in columns]
        if missing:
            raise ScenarioError(
                f"{meta_path}: {key} names {missing}, not in {table.name} (columns: "
                f"{', '.join(columns)}); fix the names or add the columns"
            )
        cols[key] = tuple(value)
    both = sorted(set(cols["input_columns"]) & set(cols["output_columns"]))
    if both:
        raise ScenarioError(f"{meta_path}: {both} are both inputs and outputs; the gold would show")
    return cols["input_columns"], cols["output_columns"]


def _tool_entries(
    mapping: Mapping[str, Any], specs: Mapping[str, Any], where: Path
) -> dict[str, Any]:
    """The ``tools:`` section, which must name exactly the tools of ``toolspecs.json``."""
    entries = mapping.get("tools")
    if not isinstance(entries, dict) or not entries:
        raise ScenarioError(f"{where}: no tools: section; e.g.\n{_SKELETON}")
    for name in entries:
        if name not in specs:
            raise ScenarioError(
                f"{where}: tool {name!r} is not in toolspecs.json (tools there: "
                f"{', '.join(specs)}); fix the name or add its spec"
            )
    for name in specs:
        if name not in entries:
            raise ScenarioError(
                f"{where}: tool {name!r} from toolspecs.json has no mapping; add it under tools: "
                "with its keys and returns, or remove its spec"
            )
    return entries


def _expected_writes(
    tools: tuple[ToolMap, ...], rows: list[dict[str, str]], lines: list[int], table: Path
) -> tuple[dict[str, dict[str, Any] | None], ...]:
    """Per row, write tool -> its expected arguments; every row must fill every key column."""
    expected: list[dict[str, dict[str, Any] | None]] = []
    for row, line in zip(rows, lines, strict=True):
        for t in tools:
            for col in t.keys.values():
                if _cell(row[col]) is None:
                    raise ScenarioError(
                        f"{table}: line {line} has no value in key column {col!r} (used by tool "
                        f"{t.name!r}); fill it in or remove the row"
                    )
        expected.append(
            {t.name: _expected_write(t, row[t.expect], table, line) for t in tools if t.expect}
        )
    return tuple(expected)


def _answer_mode(value: Any, where: Path) -> Literal["submit", "message", "either"]:
    if value == "submit":
        return "submit"
    if value == "message":
        return "message"
    if value == "either":
        return "either"
    raise ScenarioError(f"{where}: answer must be submit, message or either, not {value!r}")


def _max_turns(value: Any, n_tools: int, where: Path) -> int:
    if value is None:
        return max(10, n_tools + 4)
    if not isinstance(value, int) or isinstance(value, bool) or value < 2:
        raise ScenarioError(f"{where}: max_turns must be an integer of at least 2")
    return value


def _output_help(value: Any, outputs: tuple[str, ...], where: Path) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or any(k not in outputs for k in value):
        raise ScenarioError(
            f"{where}: outputs: must map output columns {list(outputs)} to descriptions"
        )
    return {str(k): str(v) for k, v in value.items()}


def _task_ids(
    mapping: Mapping[str, Any],
    columns: tuple[str, ...],
    rows: list[dict[str, str]],
    lines: list[int],
    table: Path,
    where: Path,
) -> tuple[str, ...]:
    column = mapping.get("task_id_column")
    if column is None:
        width = max(4, len(str(len(rows))))
        return tuple(f"row-{i:0{width}d}" for i in range(len(rows)))
    if column not in columns:
        raise ScenarioError(f"{where}: task_id_column {column!r} is not a column of {table.name}")
    seen: dict[str, int] = {}
    for row, line in zip(rows, lines, strict=True):
        task_id = row[column].strip()
        if not task_id:
            raise ScenarioError(f"{table}: line {line} has no task id in {column!r}; fill it in")
        if task_id in seen:
            raise ScenarioError(
                f"{table}: task id {task_id!r} on line {line} repeats line {seen[task_id]}; "
                f"make {column!r} unique or drop task_id_column from {where.name}"
            )
        seen[task_id] = line
    return tuple(row[column].strip() for row in rows)


def _splits(
    mapping: Mapping[str, Any],
    columns: tuple[str, ...],
    rows: list[dict[str, str]],
    lines: list[int],
    table: Path,
    where: Path,
) -> tuple[Literal["train", "eval"], ...]:
    column = mapping.get("split_column")
    if column is not None:
        if column not in columns:
            raise ScenarioError(f"{where}: split_column {column!r} is not a column of {table.name}")
        out: list[Literal["train", "eval"]] = []
        for row, line in zip(rows, lines, strict=True):
            value = row[column].strip().lower()
            if value not in ("train", "eval", "test"):
                raise ScenarioError(
                    f"{table}: line {line}: split {row[column]!r} must be train, eval or test"
                )
            out.append("train" if value == "train" else "eval")
        return tuple(out)
    fraction = mapping.get("eval_fraction", 0.25)
    if not isinstance(fraction, int | float) or not 0 <= fraction <= 1:
        raise ScenarioError(f"{where}: eval_fraction must be a number between 0 and 1")
    ids = _task_ids(mapping, columns, rows, lines, table, where)
    return tuple(
        "eval" if int(hashlib.sha256(i.encode()).hexdigest()[:8], 16) % 1000 < 1000 * fraction
        else "train"
        for i in ids
    )  # fmt: skip
