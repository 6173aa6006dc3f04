"""Values and answers of SOP scenarios, the pure functions the rest of the package grades with.

Normalisation, CSV cell values, decision parsing, JSON Schema argument checks, and the scoring
helpers the reward and the metrics share. Nothing here knows about folders or scenarios;
:mod:`simenv.sop.build` grades with it.
"""

from __future__ import annotations

import json
import math
import operator
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from simenv.tools.sandbox import canonical_json
from simenv.types import ToolCall, ToolResult

SUBMIT = "submit"
NULL_LIKES = frozenset({"", "null", "none", "nil", "nan", "n/a", "na", "-", "--"})
"""Values (after stripping and lower-casing) that :func:`normalise` reads as "no value"."""
_NUMBER = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")
_INT_CELL = re.compile(r"^-?(0|[1-9]\d{0,17})$")
_FLOAT_CELL = re.compile(r"^-?(0|[1-9]\d*)\.\d+$")


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


# ----------------------------------------------------------------------------- CSV cells
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
