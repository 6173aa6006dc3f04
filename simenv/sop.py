"""SOP scenarios: a folder with a written procedure, tool specs and a task table -> a scenario.

This is the SOP-Bench family of environments: the agent reads a long standard operating
procedure, calls lookup tools and returns a decision. One folder per domain::

    sop.txt                      the procedure, in prose (becomes the system prompt)
    toolspecs.json               Bedrock tool specs [{"toolSpec": {...}}] or OpenAI tool list
    test_set_with_outputs.csv    one row per task: inputs, tool values, gold outputs
    metadata.json                {"input_columns": [...], "output_columns": [...]}
    simenv.yaml                  which columns each tool looks up and returns; how to answer

:func:`load_sop` reads and checks the folder and builds a :class:`~simenv.scenario.Scenario`:

- **Tools** are recorded replay keyed by their inputs: a call's key arguments select the row
  whose key columns hold those values (the task's own row first) and the tool returns that row's
  mapped columns. Arguments are validated against the spec's JSON Schema first; an unknown key
  is answered like a real API's not-found error, without hinting at keys that exist.
- **Write tools** (``effect: write`` in ``simenv.yaml``) record their arguments in a seeded
  per-episode state; the CSV column named by ``expect`` holds the call the procedure requires
  (a JSON object of arguments) or nothing when the tool must not be called.
- **The decision** is a JSON object in the last assistant message, or the arguments of a
  ``submit`` tool (``answer:`` in ``simenv.yaml`` picks one or allows either).
- **Evaluation** is all-or-nothing: every output field equal to the gold after
  :func:`normalise`, and every write tool called exactly as expected (checked on the final
  state). **Reward** gives partial credit: the fraction of fields (and write tools) right,
  0 without a decision.
- **Oracle**: calls every lookup tool with the row's keys, makes the expected writes, and answers
  with the gold outputs, so ``simenv check`` proves oracle 1.0 and null 0.

A broken folder raises :class:`~simenv.errors.ScenarioError` naming the file and the fix. See
``docs/sop.md`` for the format in full.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import math
import operator
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml

from simenv.errors import ScenarioError, ToolArgumentError, ToolError
from simenv.parsing import format_tool_call
from simenv.registration import register
from simenv.scenario import Example, Outcome, Scenario
from simenv.tools.base import Tool
from simenv.tools.sandbox import Sandbox, canonical_json
from simenv.types import Episode, Task, ToolCall, ToolResult

__all__ = [
    "MAPPING_FILE",
    "NULL_LIKES",
    "SopFolder",
    "SopState",
    "constant_answer_rate",
    "find_imported",
    "import_sop",
    "imported_scenarios",
    "is_sop_folder",
    "load_sop",
    "normalise",
    "parse_decision",
    "read_folder",
    "self_test",
    "sop_metrics",
]

log = logging.getLogger(__name__)

MAPPING_FILE = "simenv.yaml"
SUBMIT = "submit"
NULL_LIKES = frozenset({"", "null", "none", "nil", "nan", "n/a", "na", "-", "--"})
"""Values (after stripping and lower-casing) that :func:`normalise` reads as "no value"."""
INDEX_FILE = "sop_imports.json"
_INJECT = "__sop_state__"
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$")
_NUMBER = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")
_INT_CELL = re.compile(r"^-?(0|[1-9]\d{0,17})$")
_FLOAT_CELL = re.compile(r"^-?(0|[1-9]\d*)\.\d+$")
_MAPPING_KEYS = {
    "id", "tasks_file", "task_id_column", "split_column", "eval_fraction", "max_turns",
    "answer", "tools", "outputs",
}  # fmt: skip
_TOOL_KEYS = {"keys", "returns", "inputs", "effect", "expect", "not_found"}
_SKELETON = """\
tools:
  <tool name from toolspecs.json>:
    keys: {<argument>: <CSV column>}     # the row is found by these arguments
    returns: [<CSV column>, ...]         # what the tool answers
answer: either                           # submit | message | either"""


# ----------------------------------------------------------------------------- normalisation
def _number_text(value: float) -> str:
    rounded = round(value, 6)
    if rounded == int(rounded) and abs(rounded) < 1e15:
        return str(int(rounded))
    return repr(rounded)


def normalise(value: Any) -> str | None:
    """The canonical form two field values are compared in (exact match afterwards).

    - ``None`` and null-likes (:data:`NULL_LIKES`: ``""``, ``"null"``, ``"none"``, ``"N/A"``,
      ``"nan"``, ``"-"`` ...) become ``None``;
    - booleans become ``"true"`` / ``"false"`` (so ``true`` equals the cell ``"True"``);
    - numbers, and strings that are numbers, become their value rounded to 6 decimals
      (``"12.50"`` equals ``12.5``; ``"1,000"`` is not a number);
    - other strings are case-folded, ``_`` and ``-`` become spaces and runs of whitespace one
      space (``"Senior_Review "`` equals ``"senior review"``);
    - lists and objects become canonical JSON of their normalised items.

    There is no substring or fuzzy matching: ``"approved pending review"`` is not ``"approved"``.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):
            return None if math.isnan(value) else str(value)
        return _number_text(float(value))
    if isinstance(value, str):
        stripped = value.strip()
        if stripped.casefold() in NULL_LIKES:
            return None
        if _NUMBER.match(stripped):
            number = float(stripped)
            if math.isfinite(number):
                return _number_text(number)
        return " ".join(stripped.replace("_", " ").replace("-", " ").split()).casefold()
    if isinstance(value, list | tuple):
        return canonical_json([normalise(v) for v in value])
    if isinstance(value, dict):
        return canonical_json({str(normalise(k)): normalise(v) for k, v in value.items()})
    return normalise(str(value))


def parse_decision(text: str, *, max_attempts: int = 2_000) -> dict[str, Any] | None:
    """The last top-level JSON object written in ``text`` (fenced or not), or ``None``."""
    decoder = json.JSONDecoder()
    found: dict[str, Any] | None = None
    position, attempts = text.find("{"), 0
    while position != -1 and attempts < max_attempts:
        attempts += 1
        try:
            value, end = decoder.raw_decode(text, position)
        except (ValueError, RecursionError):
            position = text.find("{", position + 1)
            continue
        if isinstance(value, dict):
            found = value
        position = text.find("{", end)
    return found


def _field_key(name: Any) -> str:
    return normalise(str(name)) or ""


# ----------------------------------------------------------------------------- JSON Schema
_TYPES: dict[str, Callable[[Any], bool]] = {  # JSON type -> test
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: (
        (isinstance(v, int) and not isinstance(v, bool))
        or (isinstance(v, float) and v.is_integer())
    ),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "array": lambda v: isinstance(v, list),
    "object": lambda v: isinstance(v, dict),
}


def _anything(value: Any) -> bool:
    return True


def _shown(value: Any) -> str:
    if isinstance(value, list | dict):
        return f"a JSON {'array' if isinstance(value, list) else 'object'}"
    text = json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def schema_problems(value: Any, schema: Mapping[str, Any], where: str) -> list[str]:
    """Where ``value`` breaks ``schema`` (the JSON Schema subset tool specs use), one per line.

    Understood: ``type`` (or a list of types), ``enum``, ``const``, ``properties``,
    ``required``, ``additionalProperties``, ``items``, ``minimum`` / ``maximum`` (and the
    exclusive ones), ``minLength`` / ``maxLength``, ``pattern``, ``minItems`` / ``maxItems``,
    ``anyOf`` / ``oneOf``. Other keywords (``format`` ...) are not enforced.
    """
    problems: list[str] = []
    kinds = schema.get("type")
    if kinds is not None:
        options = kinds if isinstance(kinds, list) else [kinds]
        if not any(_TYPES.get(str(k), _anything)(value) for k in options):
            return [f"{where} must be {' or '.join(map(str, options))} (got {_shown(value)})"]
    if "enum" in schema and value not in schema["enum"]:
        allowed = ", ".join(json.dumps(v) for v in schema["enum"][:20])
        problems.append(f"{where} must be one of {allowed} (got {_shown(value)})")
    if "const" in schema and value != schema["const"]:
        problems.append(f"{where} must be {json.dumps(schema['const'])}")
    for key in ("anyOf", "oneOf"):
        if key in schema and not any(
            not schema_problems(value, s, where) for s in schema[key] if isinstance(s, dict)
        ):
            problems.append(f"{where} matches none of the allowed shapes (got {_shown(value)})")
    if isinstance(value, int | float) and not isinstance(value, bool):
        bounds = {
            "minimum": operator.lt,
            "maximum": operator.gt,
            "exclusiveMinimum": operator.le,
            "exclusiveMaximum": operator.ge,
        }
        for key, breaks in bounds.items():
            bound = schema.get(key)
            if isinstance(bound, int | float) and breaks(value, bound):
                problems.append(f"{where} breaks {key} {bound} (got {_shown(value)})")
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            problems.append(f"{where} is shorter than {schema['minLength']} characters")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            problems.append(f"{where} is longer than {schema['maxLength']} characters")
        if "pattern" in schema and not re.search(str(schema["pattern"]), value):
            problems.append(f"{where} must match the pattern {schema['pattern']!r}")
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            problems.append(f"{where} needs at least {schema['minItems']} items")
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            problems.append(f"{where} takes at most {schema['maxItems']} items")
        if isinstance(schema.get("items"), dict):
            for i, item in enumerate(value[:100]):
                problems += schema_problems(item, schema["items"], f"{where}[{i}]")
    if isinstance(value, dict):
        properties = schema.get("properties") or {}
        for name in schema.get("required") or ():
            if name not in value:
                problems.append(f"missing required argument {name!r}")
        extra = schema.get("additionalProperties", True)
        for name, item in list(value.items())[:100]:
            if name in properties:
                problems += schema_problems(item, properties[name], repr(name))
            elif extra is False:
                allowed = ", ".join(properties) or "no arguments"
                problems.append(f"unexpected argument {name[:40]!r} (this tool takes: {allowed})")
            elif isinstance(extra, dict):
                problems += schema_problems(item, extra, repr(name))
    return problems


# ----------------------------------------------------------------------------- the folder
@dataclass(frozen=True)
class ToolMap:
    """How one tool is served, from ``simenv.yaml``.

    Attributes:
        name: The tool's name in the specs.
        description: What the model reads about it.
        parameters: Its JSON Schema (key arguments made required, extra arguments refused).
        effect: ``read`` (a lookup) or ``write`` (recorded in the episode's state).
        keys: Argument -> CSV column: the row is found by these.
        returns: Returned field -> CSV column (lookups).
        inputs: Argument -> CSV column for the other arguments the oracle fills in.
        expect: The CSV column holding the expected call of a write tool.
        not_found: The not-found message (``{args}`` is replaced by the key arguments).
    """

    name: str
    description: str
    parameters: dict[str, Any]
    effect: Literal["read", "write"]
    keys: dict[str, str]
    returns: dict[str, str]
    inputs: dict[str, str]
    expect: str | None
    not_found: str


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


def _cell(text: str) -> Any:
    """A CSV cell as the JSON value a tool would return (``""`` -> null, numbers, booleans)."""
    stripped = text.strip()
    if stripped == "":
        return None
    if _INT_CELL.match(stripped):
        return int(stripped)
    if _FLOAT_CELL.match(stripped):
        return float(stripped)
    if stripped.lower() in ("true", "false"):
        return stripped.lower() == "true"
    return text


def _argument(text: str, schema: Mapping[str, Any]) -> Any:
    """A CSV cell as the value of an argument declared by ``schema`` (a string stays a string)."""
    kinds = schema.get("type")
    options = kinds if isinstance(kinds, list) else [kinds]
    value = _cell(text)
    if "string" in options and not isinstance(value, str) and value is not None:
        return text.strip()
    if "number" in options and isinstance(value, int) and not isinstance(value, bool):
        return value
    if "integer" in options and isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _key_text(value: Any) -> str:
    """How a key value is matched: numbers by value, strings exactly (after stripping)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return _number_text(float(value)) if math.isfinite(value) else str(value)
    text = str(value).strip()
    if _NUMBER.match(text):
        number = float(text)
        if math.isfinite(number):
            return _number_text(number)
    return text


def _read_json(path: Path, fix: str) -> Any:
    if not path.is_file():
        raise ScenarioError(f"{path}: file missing; {fix}")
    try:
        return json.loads(path.read_text(encoding="utf-8-sig"))
    except ValueError as exc:
        raise ScenarioError(f"{path}: not valid JSON ({exc}); {fix}") from None


def _tool_specs(path: Path) -> dict[str, dict[str, Any]]:
    """Tool name -> {"description", "parameters"} from Bedrock or OpenAI style specs."""
    fix = (
        'write a JSON list of Bedrock specs [{"toolSpec": {"name", "description", '
        '"inputSchema": {"json": {...}}}}] or OpenAI tools [{"type": "function", "function": '
        '{"name", "description", "parameters"}}]'
    )
    raw = _read_json(path, fix)
    if isinstance(raw, dict):
        raw = raw.get("tools", raw.get("toolSpecs"))
    if not isinstance(raw, list) or not raw:
        raise ScenarioError(f"{path}: expected a non-empty list of tool specs; {fix}")
    specs: dict[str, dict[str, Any]] = {}
    for i, entry in enumerate(raw):
        spec = entry.get("toolSpec") or entry.get("function") or entry
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
            raise ScenarioError(f"{path}: entry {i} has no tool name; {fix}")
        schema = spec.get("inputSchema", {}).get("json", spec.get("parameters"))
        if schema is None:
            schema = {"type": "object", "properties": {}}
        if not isinstance(schema, dict) or schema.get("type", "object") != "object":
            raise ScenarioError(
                f"{path}: tool {spec['name']!r}: its input schema must be a JSON Schema object "
                '({"type": "object", "properties": {...}})'
            )
        name = spec["name"]
        if not _NAME.match(name) or name == SUBMIT:
            raise ScenarioError(
                f"{path}: tool name {name!r} is not usable: use letters, digits, '_' or '-' "
                f"(at most 64 characters, not {SUBMIT!r}, which simenv adds itself)"
            )
        if name in specs:
            raise ScenarioError(f"{path}: tool {name!r} is specified twice; keep one")
        specs[name] = {"description": str(spec.get("description") or ""), "parameters": schema}
    return specs


def _column_map(value: Any, where: str, what: str) -> dict[str, str]:
    """``[col, ...]`` (same names) or ``{name: col}`` -> ``{name: col}``."""
    if value is None:
        return {}
    if isinstance(value, str):
        value = [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return {v: v for v in value}
    if isinstance(value, dict) and all(isinstance(v, str) for v in value.values()):
        return {str(k): v for k, v in value.items()}
    raise ScenarioError(
        f"{where}: {what} must be a list of CSV columns or a mapping {{name: CSV column}}"
    )


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


def _map_tool(
    name: str, entry: Any, spec: dict[str, Any], columns: tuple[str, ...], where: Path, table: Path
) -> ToolMap:
    here = f"{where}: tool {name!r}"
    if not isinstance(entry, dict):
        raise ScenarioError(f"{here}: expected a mapping with keys and returns; e.g.\n{_SKELETON}")
    unknown = sorted(set(entry) - _TOOL_KEYS)
    if unknown:
        raise ScenarioError(f"{here}: unknown settings {unknown}; allowed: {sorted(_TOOL_KEYS)}")
    effect = entry.get("effect", "read")
    if effect not in ("read", "write"):
        raise ScenarioError(f"{here}: effect must be read or write, not {effect!r}")
    keys = _column_map(entry.get("keys"), here, "keys")
    returns = _column_map(entry.get("returns"), here, "returns")
    inputs = _column_map(entry.get("inputs"), here, "inputs")
    if not keys:
        raise ScenarioError(f"{here}: no keys; name the argument(s) that find the task's row")
    if effect == "read" and not returns:
        raise ScenarioError(f"{here}: no returns; list the CSV columns the lookup answers with")
    expect = entry.get("expect")
    if effect == "write" and not expect:
        raise ScenarioError(
            f"{here}: a write tool needs expect: COLUMN, the CSV column holding the expected "
            "call's arguments as JSON (empty when the tool must not be called)"
        )
    schema = json.loads(json.dumps(spec["parameters"]))
    properties = schema.setdefault("properties", {})
    for arg in [*keys, *inputs]:
        if arg not in properties:
            raise ScenarioError(
                f"{here}: argument {arg!r} is not in its inputSchema in toolspecs.json "
                f"(arguments: {sorted(properties)}); fix the name in {where.name}"
            )
    for what, cols in (("keys", keys), ("returns", returns), ("inputs", inputs)):
        for col in cols.values():
            if col not in columns:
                raise ScenarioError(
                    f"{here}: {what} names column {col!r}, which is not in {table.name} "
                    f"(columns: {', '.join(columns)}); fix {where.name} or add the column"
                )
    if expect and expect not in columns:
        raise ScenarioError(
            f"{here}: expect names column {expect!r}, which is not in {table.name}; fix "
            f"{where.name} or add the column"
        )
    required = list(schema.get("required") or [])
    schema["required"] = required + [k for k in keys if k not in required]
    if effect == "read":
        unmapped = [a for a in schema["required"] if a not in keys and a not in inputs]
        if unmapped:
            raise ScenarioError(
                f"{here}: required arguments {unmapped} are neither keys nor inputs; map each "
                f"to a CSV column under inputs: in {where.name}"
            )
    schema.setdefault("additionalProperties", False)
    for arg, prop in properties.items():
        if isinstance(prop, dict) and not str(prop.get("description") or "").strip():
            col = keys.get(arg) or inputs.get(arg) or arg
            prop["description"] = f"The {col.replace('_', ' ')}."
    not_found = str(entry.get("not_found") or "404 Not Found: no record matches {args}.")
    return ToolMap(
        name=name,
        description=spec["description"] or f"Look up {', '.join(returns) or 'a record'}.",
        parameters=schema,
        effect=effect,
        keys=keys,
        returns=returns,
        inputs=inputs,
        expect=str(expect) if expect else None,
        not_found=not_found,
    )


def _expected_write(tool: ToolMap, cell: str, table: Path, line: int) -> dict[str, Any] | None:
    if _cell(cell) is None:
        return None
    where = f"{table}: line {line}, column {tool.expect!r}"
    try:
        value = json.loads(cell)
    except ValueError:
        raise ScenarioError(
            f"{where}: not JSON; write the expected {tool.name} call's arguments as a JSON "
            'object, e.g. {"order_id": "ORD-1"}, or leave it empty'
        ) from None
    if not isinstance(value, dict):
        raise ScenarioError(f"{where}: expected a JSON object of {tool.name}'s arguments")
    problems = schema_problems(value, tool.parameters, "argument")
    if problems:
        raise ScenarioError(
            f"{where}: the expected call does not fit {tool.name}'s schema: "
            f"{'; '.join(problems)}; fix the cell or the spec"
        )
    return value


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
    sop_path = root / "sop.txt"
    if not sop_path.is_file() or not sop_path.read_text(encoding="utf-8-sig").strip():
        raise ScenarioError(f"{sop_path}: file missing or empty; write the procedure there")
    sop = sop_path.read_text(encoding="utf-8-sig").strip()
    where = root / MAPPING_FILE
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
    metadata = _read_json(
        root / "metadata.json",
        'write {"input_columns": [...], "output_columns": [...]} naming CSV columns',
    )
    specs = _tool_specs(root / "toolspecs.json")
    table = _tasks_file(root, mapping, where)
    columns, rows, lines = _read_csv(table)
    meta_path = root / "metadata.json"
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
    tool_entries = mapping.get("tools")
    if not isinstance(tool_entries, dict) or not tool_entries:
        raise ScenarioError(f"{where}: no tools: section; e.g.\n{_SKELETON}")
    for name in tool_entries:
        if name not in specs:
            raise ScenarioError(
                f"{where}: tool {name!r} is not in toolspecs.json (tools there: "
                f"{', '.join(specs)}); fix the name or add its spec"
            )
    for name in specs:
        if name not in tool_entries:
            raise ScenarioError(
                f"{where}: tool {name!r} from toolspecs.json has no mapping; add it under tools: "
                "with its keys and returns, or remove its spec"
            )
    tools = tuple(
        _map_tool(name, tool_entries[name], specs[name], columns, where, table) for name in specs
    )
    hidden = {t.expect for t in tools if t.expect}
    shown = sorted(
        hidden & (set(cols["input_columns"]) | {c for t in tools for c in t.returns.values()})
    )
    if shown:
        raise ScenarioError(f"{where}: expected-write columns {shown} would be shown to the agent")
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
    return SopFolder(
        root=root,
        sop=sop,
        tools=tools,
        columns=columns,
        rows=tuple(rows),
        tasks_file=table.name,
        input_columns=cols["input_columns"],
        output_columns=cols["output_columns"],
        answer=_answer_mode(mapping.get("answer", "either"), where),
        task_ids=_task_ids(mapping, columns, rows, lines, table, where),
        splits=_splits(mapping, columns, rows, lines, table, where),
        expected_writes=tuple(expected),
        output_help=_output_help(mapping.get("outputs"), cols["output_columns"], where),
        scenario_id=str(mapping["id"]) if mapping.get("id") else None,
        max_turns=_max_turns(mapping.get("max_turns"), len(tools), where),
    )


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


# ----------------------------------------------------------------------------- state and tools
class SopState(Sandbox):
    """One episode of an SOP scenario: the task's row, and the writes made so far.

    Lookup-only scenarios keep no public state (so the seed only picks the task). With write
    tools, ``writes`` holds each write tool's recorded calls and ``reference`` the seeded number
    of the next confirmation the tools hand out.
    """

    write_tools: tuple[str, ...] = ()

    def setup(self, rng: np.random.Generator, task: Task) -> None:
        """Remember the task's row; with write tools, start an empty seeded write log."""
        self._row: int = int(task.data["row"])
        if self.write_tools:
            self.writes: dict[str, list[dict[str, Any]]] = {t: [] for t in self.write_tools}
            self.reference = int(rng.integers(100_000, 1_000_000))


class SopTool(Tool):
    """A tool declared by a JSON spec rather than a Python signature, served from the table."""

    def __init__(self, mapped: ToolMap, fn: Callable[..., Any]) -> None:
        self.fn = fn
        self.name = mapped.name
        self.effect = mapped.effect
        self.description = mapped.description
        self.parameters = mapped.parameters
        self.injected = {_INJECT: SopState}
        self.provenance = "replay" if mapped.effect == "read" else "sandbox"
        self.replay = None
        properties = mapped.parameters.get("properties", {})
        self.arg_docs = {k: str(v.get("description", "")) for k, v in properties.items()}
        self.argument_names = list(properties)
        self._defaults = {}

    def validate(self, arguments: Any) -> dict[str, Any]:
        """Check the arguments against the spec's JSON Schema.

        Raises:
            ToolArgumentError: They do not fit; the message lists every problem.
        """
        if not isinstance(arguments, dict):
            raise ToolArgumentError(
                f"arguments of {self.name!r} must be a JSON object, got {type(arguments).__name__}"
            )
        problems = schema_problems(arguments, self.parameters, "arguments")
        if problems:
            raise ToolArgumentError(f"invalid arguments for {self.name!r}: {'; '.join(problems)}")
        return dict(arguments)


def _index(folder: SopFolder, tool: ToolMap) -> dict[tuple[str, ...], list[int]]:
    index: dict[tuple[str, ...], list[int]] = {}
    for i, row in enumerate(folder.rows):
        key = tuple(_key_text(_cell(row[col])) for col in tool.keys.values())
        index.setdefault(key, []).append(i)
    return index


def _make_tool(folder: SopFolder, mapped: ToolMap) -> SopTool:
    index = _index(folder, mapped)
    rows, names = folder.rows, tuple(mapped.keys)

    def find(arguments: dict[str, Any], state: SopState) -> int:
        key = tuple(_key_text(arguments.get(arg)) for arg in names)
        found = index.get(key)
        if not found:
            shown = ", ".join(f"{a}={_shown(arguments.get(a))}" for a in names)
            raise ToolError(mapped.not_found.replace("{args}", shown))
        return state._row if state._row in found else found[0]

    if mapped.effect == "read":

        def lookup(**kwargs: Any) -> dict[str, Any]:
            state: SopState = kwargs.pop(_INJECT)
            row = rows[find(kwargs, state)]
            return {name: _cell(row[col]) for name, col in mapped.returns.items()}

        return SopTool(mapped, lookup)

    def write(**kwargs: Any) -> dict[str, Any]:
        state: SopState = kwargs.pop(_INJECT)
        row = rows[find(kwargs, state)]
        state.writes[mapped.name].append(kwargs)
        reference = f"REF-{state.reference + sum(len(v) for v in state.writes.values())}"
        return {
            "status": "done",
            "reference": reference,
            **{name: _cell(row[col]) for name, col in mapped.returns.items()},
        }

    return SopTool(mapped, write)


def _submit_tool(folder: SopFolder) -> SopTool:
    properties = {
        col: {
            "type": ["string", "number", "boolean", "null"],
            "description": folder.output_help.get(col)
            or f"The {col.replace('_', ' ')} the procedure arrives at.",
        }
        for col in folder.output_columns
    }
    mapped = ToolMap(
        name=SUBMIT,
        description="Submit the final decision for this task. This ends the task: call it once, "
        "when every step of the procedure is done.",
        parameters={
            "type": "object",
            "properties": properties,
            "required": list(folder.output_columns),
            "additionalProperties": False,
        },
        effect="write",
        keys={},
        returns={},
        inputs={},
        expect=None,
        not_found="",
    )

    def submit(**kwargs: Any) -> str:
        kwargs.pop(_INJECT, None)
        return "Decision recorded."

    tool = SopTool(mapped, submit)
    tool.injected = {}
    tool.provenance = "sandbox"
    return tool


# ----------------------------------------------------------------------------- scoring
CallRecord = tuple[ToolCall, ToolResult]


def _decision(answer: str, calls: Iterable[CallRecord], mode: str) -> dict[str, Any] | None:
    """The agent's decision: its last successful submit, else the JSON in its last message."""
    if mode != "message":
        submitted = [c.arguments for c, r in calls if c.name == SUBMIT and not r.is_error]
        if submitted:
            return submitted[-1]
    if mode != "submit":
        return parse_decision(answer)
    return None


def _field_results(decision: Mapping[str, Any], gold: Mapping[str, Any]) -> dict[str, bool]:
    given = {_field_key(k): v for k, v in decision.items()}
    return {col: normalise(given.get(_field_key(col))) == normalise(g) for col, g in gold.items()}


def _write_ok(actual: Sequence[Mapping[str, Any]], expected: Mapping[str, Any] | None) -> bool:
    if expected is None:
        return not actual
    return len(actual) == 1 and all(
        normalise(actual[0].get(k)) == normalise(v) for k, v in expected.items()
    )


def _last_answer(messages: Sequence[Mapping[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "assistant":
            return str(message.get("content") or "")
    return ""


class _Grading:
    """Reward, evaluation and oracle of one SOP scenario (closures over the folder)."""

    def __init__(self, folder: SopFolder) -> None:
        self.folder = folder
        self.writes = tuple(t.name for t in folder.tools if t.effect == "write")

    def reward(self, o: Outcome) -> dict[str, float]:
        """Partial credit from the transcript: the share of fields right.

        The writes count as one more field, right when every write tool was called exactly as
        expected.
        """
        decision = _decision(o.answer, o.calls, self.folder.answer)
        parts = len(self.folder.output_columns) + bool(self.writes)
        if decision is None:
            return {f"field/{c}": 0.0 for c in self.folder.output_columns}
        out = {
            f"field/{c}": float(ok) / parts
            for c, ok in _field_results(decision, o.task.data["outputs"]).items()
        }
        if self.writes:
            expected = o.task.data["writes"]
            ok = all(_write_ok(o.called(name), expected[name]) for name in self.writes)
            out["writes"] = float(ok) / parts
        return out

    def evaluate(self, o: Outcome) -> bool:
        """All or nothing: every field equal after normalisation, every write as expected."""
        decision = _decision(o.answer, o.calls, self.folder.answer)
        if decision is None:
            return False
        given = {_field_key(k): normalise(v) for k, v in decision.items()}
        gold = {_field_key(k): normalise(v) for k, v in o.task.data["outputs"].items()}
        if any(given.get(k) != v for k, v in gold.items()):
            return False
        state: SopState = o.final
        return all(
            _write_ok(state.writes[name], o.task.data["writes"][name]) for name in self.writes
        )

    def oracle(self, task: Task, state: Any) -> list[str]:
        """Every lookup with the row's keys, the expected writes, then the gold decision."""
        row = self.folder.rows[int(task.data["row"])]
        turns = []
        for t in self.folder.tools:
            if t.effect == "read":
                properties = t.parameters.get("properties", {})
                args = {
                    a: _argument(row[c], properties.get(a, {}))
                    for a, c in {**t.keys, **t.inputs}.items()
                }
                turns.append(format_tool_call(t.name, args))
            elif task.data["writes"][t.name] is not None:
                turns.append(format_tool_call(t.name, task.data["writes"][t.name]))
        outputs = task.data["outputs"]
        if self.folder.answer == "message":
            turns.append(f"Decision:\n```json\n{json.dumps(outputs)}\n```")
        else:
            turns.append(format_tool_call(SUBMIT, outputs))
        return turns


# ----------------------------------------------------------------------------- the scenario
def _prompt(folder: SopFolder, row: dict[str, str]) -> str:
    inputs = {c: _cell(row[c]) for c in folder.input_columns}
    return (
        "Process this case by the standard operating procedure.\n\nCase inputs:\n"
        f"{json.dumps(inputs, indent=2, ensure_ascii=False)}"
    )


def _system_prompt(folder: SopFolder) -> str:
    fields = ", ".join(f'"{c}"' for c in folder.output_columns)
    if folder.answer == "submit":
        how = f"call the submit tool with the fields {fields}."
    elif folder.answer == "message":
        how = f"reply without calling a tool, with one JSON object holding the keys {fields}."
    else:
        how = (
            f"call the submit tool with the fields {fields}, or reply without calling a tool "
            "with one JSON object holding those keys."
        )
    return (
        "You are an operations agent. Follow the standard operating procedure below exactly, "
        "using the tools to look up what it needs. Do not guess values a tool can give you.\n\n"
        f"=== STANDARD OPERATING PROCEDURE ===\n{folder.sop}\n=== END OF PROCEDURE ===\n\n"
        f"When the procedure is complete, give your decision: {how} Use the exact values the "
        "procedure names."
    )


def _visible_secrets(values: Iterable[Any], visible: str) -> list[Any]:
    """Gold values the agent is not already shown (what the leak check should look for)."""
    out: list[Any] = []
    for value in values:
        text = str(value).strip() if value is not None else ""
        long_text = isinstance(value, str) and len(text) >= 4
        big_number = (
            isinstance(value, int | float) and not isinstance(value, bool) and abs(value) >= 100
        )
        if (long_text or big_number) and text not in visible:
            out.append(value)
    return out


def _doc(folder: SopFolder, scenario_id: str, n_train: int, n_eval: int) -> str:
    first = folder.sop.split("\n\n")[0].strip().replace("\n", " ")
    tools = "\n".join(
        f"| `{t.name}` | {t.effect} | {'recorded replay' if t.effect == 'read' else 'sandbox'} "
        f"| keys {', '.join(t.keys)} |"
        for t in folder.tools
    )
    return f"""SOP: {first[:120]}

## Description
Built from the SOP folder {folder.root.name} ({folder.tasks_file}): the agent follows the
procedure in the system prompt, calls the tools and returns a decision with the fields
{", ".join(folder.output_columns)}.

## Tools
| tool | effect | pattern | |
|---|---|---|---|
{tools}

## Observation
The procedure (system prompt) and the case inputs ({", ".join(folder.input_columns)}).

## Starting state
The task's row of the table; write tools start from an empty, seeded log.

## Reward
Share of output fields (and write tools) right after normalisation; 0 without a decision.

## Evaluation
All fields equal after normalisation and every write as expected (final state).

## Episode end
The agent answers without a tool call or submits ({folder.answer}), or {folder.max_turns} turns.

## Example
A golden transcript (the oracle, reward 1.0) and a prose answer without a decision (0.0).

## Version history
- {scenario_id}: {n_train} train and {n_eval} eval tasks.
"""


def _default_id(root: Path) -> str:
    name = "".join(p.capitalize() for p in re.split(r"[^A-Za-z0-9]+", root.resolve().name) if p)
    return f"sop/{name or 'Procedure'}-v1"


def build_scenario(folder: SopFolder, scenario_id: str | None = None) -> Scenario:
    """The scenario of a checked folder (see :func:`load_sop`)."""
    scenario_id = scenario_id or folder.scenario_id or _default_id(folder.root)
    grading = _Grading(folder)
    tools: list[Tool] = [_make_tool(folder, t) for t in folder.tools]
    if folder.answer != "message":
        tools.append(_submit_tool(folder))
    system_prompt = _system_prompt(folder)
    visible = system_prompt + " ".join(f"{t.description} {t.parameters}" for t in tools)
    tasks = []
    for i, row in enumerate(folder.rows):
        prompt = _prompt(folder, row)
        outputs = {c: _cell(row[c]) for c in folder.output_columns}
        writes = folder.expected_writes[i]
        gold = [*outputs.values(), *(v for w in writes.values() if w for v in w.values())]
        data = {
            "row": i,
            "outputs": outputs,
            "writes": writes,
            "expected": _visible_secrets(gold, visible + prompt),
        }
        tasks.append(Task(folder.task_ids[i], prompt, folder.splits[i], data))
    state = type(
        "SopState_" + re.sub(r"\W", "_", scenario_id), (SopState,), {"write_tools": grading.writes}
    )
    first = tasks[0]
    n_eval = sum(t.split == "eval" for t in tasks)
    return Scenario(
        id=scenario_id,
        system_prompt=system_prompt,
        tools=tools,
        tasks=tasks,
        reward=grading.reward,
        evaluate=grading.evaluate,
        sandbox=state,
        oracle=grading.oracle,
        max_turns=folder.max_turns,
        finish_tools=(SUBMIT,) if folder.answer != "message" else (),
        random_state=bool(grading.writes),
        secret_keys=("expected",),
        doc=_doc(folder, scenario_id, len(tasks) - n_eval, n_eval),
        examples=(
            Example("golden: the oracle", first.id, 0, tuple(grading.oracle(first, None)), 1.0),
            Example(
                "failing: a prose answer with no decision object",
                first.id,
                0,
                ("I have reviewed the case and it looks fine to me.",),
                0.0,
            ),
        ),
    )


def is_sop_folder(path: str | Path) -> bool:
    """Whether ``path`` is a folder holding a ``simenv.yaml`` (an SOP folder)."""
    p = Path(path)
    return p.is_dir() and (p / MAPPING_FILE).is_file()


def load_sop(path: str | Path, scenario_id: str | None = None) -> Scenario:
    """Read, check and build the scenario of an SOP folder (not registered).

    Args:
        path: The folder.
        scenario_id: ``namespace/Name-vN``; default: ``id:`` in ``simenv.yaml``, else
            ``sop/<FolderName>-v1``.

    Raises:
        ScenarioError: The folder is broken; the message names the file and the fix.
    """
    return build_scenario(read_folder(path), scenario_id)


# ----------------------------------------------------------------------------- imports by id
def _index_path() -> Path:
    home = os.environ.get("SIMENV_HOME") or str(Path.home() / ".simenv")
    return Path(home) / INDEX_FILE


def _read_index() -> dict[str, str]:
    path = _index_path()
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except ValueError:
        log.warning("%s is not valid JSON; ignoring the SOP imports it lists", path)
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def import_sop(path: str | Path, scenario_id: str | None = None) -> Scenario:
    """Check an SOP folder, register its scenario and remember it so its id works later.

    The id -> folder pair is kept in ``$SIMENV_HOME/sop_imports.json`` (default
    ``~/.simenv``); :func:`find_imported` reads it back in another process.

    Raises:
        ScenarioError: The folder is broken (the message names the file and the fix).
    """
    scenario = load_sop(path, scenario_id)
    register(scenario, source=f"SOP folder {path}", override=True)
    index = _read_index()
    index[scenario.id] = str(Path(path).resolve())
    target = _index_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(json.dumps(index, indent=1, sort_keys=True) + "\n")
    tmp.replace(target)
    return scenario


def find_imported(scenario_id: str) -> Scenario | None:
    """The scenario imported earlier as ``scenario_id`` (rebuilt from its folder), or ``None``.

    Raises:
        ScenarioError: The folder was imported but is now broken or gone.
    """
    path = _read_index().get(scenario_id)
    if path is None:
        return None
    if not Path(path).is_dir():
        raise ScenarioError(
            f"{scenario_id} was imported from {path}, which no longer exists; import it again "
            "with `simenv import sop PATH --id ID`"
        )
    return load_sop(path, scenario_id)


def imported_scenarios() -> list[Scenario]:
    """Every imported SOP scenario whose folder still loads (others are logged and skipped)."""
    out = []
    for scenario_id in sorted(_read_index()):
        try:
            found = find_imported(scenario_id)
        except ScenarioError as exc:
            log.warning("skipping imported SOP scenario: %s", exc)
            continue
        if found is not None:
            out.append(found)
    return out


# ----------------------------------------------------------------------------- checks, metrics
def self_test(scenario: Scenario, tasks: Sequence[Task] | None = None, seed: int = 0) -> list[str]:
    """Play the oracle and a do-nothing answer on each task; list what went wrong.

    The oracle must earn reward 1.0 and pass the evaluation; a prose answer must earn 0 and fail.
    This is the quick proof ``simenv import sop`` runs; ``simenv check`` runs the full one.
    """
    from simenv.env import MultiTurnEnv

    if scenario.oracle is None:
        return [f"{scenario.id} has no oracle"]
    problems: list[str] = []
    env = MultiTurnEnv(scenario)
    try:
        for task in tasks if tasks is not None else scenario.tasks:
            env.reset(seed=seed, options={"task_id": task.id})
            reward, info = 0.0, dict[str, Any]()
            for turn, action in enumerate(scenario.oracle(task, env.state)):
                _, reward, terminated, _, info = env.step(action)
                if terminated or turn + 1 >= scenario.max_turns:
                    break
            if reward < 1.0 or info.get("evaluation") != 1.0:
                problems.append(
                    f"task {task.id}: the oracle earned {reward} (evaluation "
                    f"{info.get('evaluation')}, {info.get('error') or 'no error'})"
                )
            env.reset(seed=seed, options={"task_id": task.id})
            _, reward, _, _, info = env.step("I cannot decide this case.")
            if reward > 0 or info.get("evaluation"):
                problems.append(f"task {task.id}: a prose non-answer earned {reward}")
    finally:
        env.close()
    return problems


def _scenario_tasks(scenario: Scenario) -> dict[str, Task]:
    return {t.id: t for t in scenario.tasks}


def _mode(scenario: Scenario) -> str:
    if SUBMIT not in scenario.finish_tools:
        return "message"
    return "submit" if "reply without calling a tool" not in scenario.system_prompt else "either"


def sop_metrics(scenario: Scenario, episodes: Iterable[Episode]) -> dict[str, Any]:
    """SOP-Bench style metrics of episodes of an SOP scenario, from the records alone.

    Returns:
        ``sop/task_success`` (every field and write right: the evaluation),
        ``sop/execution_completion`` (a decision object was given),
        ``sop/field_accuracy/<field>`` and ``sop/field_accuracy`` (mean over fields),
        ``sop/tool_error_rate`` (tool calls answered with an error / all tool calls, submit
        excluded) and ``sop/episodes`` (valid episodes counted).
    """
    tasks = _scenario_tasks(scenario)
    mode = _mode(scenario)
    valid = [e for e in episodes if e.valid]
    fields = [c for c in next(iter(tasks.values())).data["outputs"]]
    right = dict.fromkeys(fields, 0)
    success = completed = calls = errors = 0
    for episode in valid:
        pairs = [
            (c, r) for s in episode.steps for c, r in zip(s.tool_calls, s.tool_results, strict=True)
        ]
        tool_pairs = [(c, r) for c, r in pairs if c.name != SUBMIT]
        calls += len(tool_pairs)
        errors += sum(r.is_error for _, r in tool_pairs)
        success += episode.success
        decision = _decision(_last_answer(episode.messages), pairs, mode)
        if decision is None:
            continue
        completed += 1
        for col, ok in _field_results(decision, tasks[episode.task_id].data["outputs"]).items():
            right[col] += ok
    n = max(len(valid), 1)
    out: dict[str, Any] = {
        "sop/episodes": len(valid),
        "sop/task_success": success / n,
        "sop/execution_completion": completed / n,
        "sop/field_accuracy": sum(right.values()) / (n * max(len(fields), 1)),
        "sop/tool_error_rate": errors / calls if calls else 0.0,
    }
    out.update({f"sop/field_accuracy/{c}": right[c] / n for c in fields})
    return out


def constant_answer_rate(scenario: Scenario) -> tuple[float, dict[str, Any]]:
    """The best success rate any one fixed answer reaches over all tasks, and that answer.

    A fixed answer (the same decision object for every task, no tool calls) succeeds on a task
    when it equals the task's gold after normalisation and the task expects no writes. The most
    frequent such gold is the best constant; its share of the tasks is the rate.
    """
    counts: dict[str, int] = {}
    examples: dict[str, dict[str, Any]] = {}
    for task in scenario.tasks:
        if any(w is not None for w in task.data["writes"].values()):
            continue
        key = canonical_json({k: normalise(v) for k, v in task.data["outputs"].items()})
        counts[key] = counts.get(key, 0) + 1
        examples.setdefault(key, task.data["outputs"])
    if not counts:
        return 0.0, {}
    best = max(sorted(counts), key=lambda k: counts[k])
    return counts[best] / len(scenario.tasks), examples[best]
