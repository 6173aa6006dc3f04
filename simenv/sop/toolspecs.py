"""How each tool of an SOP folder is served: its spec and its mapping, as a :class:`ToolMap`.

``toolspecs.json`` and the ``tools:`` section of ``simenv.yaml``, checked against the task table.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from simenv.errors import ScenarioError
from simenv.sop.grading import SUBMIT, _cell, schema_problems

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$")
_TOOL_KEYS = {"keys", "returns", "inputs", "effect", "expect", "not_found"}
_SKELETON = """\
tools:
  <tool name from toolspecs.json>:
    keys: {<argument>: <CSV column>}     # the row is found by these arguments
    returns: [<CSV column>, ...]         # what the tool answers
answer: either                           # submit | message | either"""


# ----------------------------------------------------------------------------- tool mappings
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
    _check_columns(here, {"keys": keys, "returns": returns, "inputs": inputs}, columns, table)
    if expect and expect not in columns:
        raise ScenarioError(
            f"{here}: expect names column {expect!r}, which is not in {table.name}; fix "
            f"{where.name} or add the column"
        )
    schema = _tool_schema(here, spec, keys, inputs, effect == "read", where)
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


def _check_columns(
    here: str, maps: dict[str, dict[str, str]], columns: tuple[str, ...], table: Path
) -> None:
    """Every column a tool's keys, returns and inputs name must be in the CSV."""
    for what, cols in maps.items():
        for col in cols.values():
            if col not in columns:
                raise ScenarioError(
                    f"{here}: {what} names column {col!r}, which is not in {table.name} "
                    f"(columns: {', '.join(columns)}); fix simenv.yaml or add the column"
                )


def _tool_schema(
    here: str,
    spec: dict[str, Any],
    keys: dict[str, str],
    inputs: dict[str, str],
    lookup: bool,
    where: Path,
) -> dict[str, Any]:
    """The tool's JSON schema: the spec's, with its keys required and every argument described."""
    schema: dict[str, Any] = json.loads(json.dumps(spec["parameters"]))
    properties = schema.setdefault("properties", {})
    for arg in [*keys, *inputs]:
        if arg not in properties:
            raise ScenarioError(
                f"{here}: argument {arg!r} is not in its inputSchema in toolspecs.json "
                f"(arguments: {sorted(properties)}); fix the name in {where.name}"
            )
    required = list(schema.get("required") or [])
    schema["required"] = required + [k for k in keys if k not in required]
    if lookup:
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
    return schema


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
