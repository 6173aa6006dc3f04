"""Tools (schema, validation, injection) and parsing (text and OpenAI forms, fuzzed)."""

from __future__ import annotations

import json
from typing import Any, Literal

import jsonschema
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simenv import Episode, Sandbox, ScenarioError, Step, ToolArgumentError, ToolCall, ToolResult
from simenv.parsing import MAX_CALL_CHARS, MAX_CALLS_PER_TURN, format_tool_call, parse_action
from simenv.tools.base import format_result, parse_docstring, tool
from simenv.types import EPISODE_SCHEMA_VERSION


class Box(Sandbox):
    pass


@tool(effect="write")
def ship(
    box: Box,
    rng: np.random.Generator,
    order_id: str,
    weight_kg: float,
    speed: Literal["standard", "express"] = "standard",
    note: str | None = None,
) -> dict[str, Any]:
    """Ship an order.

    Use only for paid orders.

    Args:
        order_id: The order to ship, e.g. "O-7".
        weight_kg: Parcel weight in kilograms,
            measured on the scale.
        speed: Delivery speed.
        note: Free text for the courier.

    Returns:
        The shipment record.
    """
    return {"order_id": order_id, "weight_kg": weight_kg, "speed": speed}


def test_schema_from_signature_and_docstring() -> None:
    schema = ship.schema()["function"]
    assert schema["name"] == "ship"
    assert schema["description"].startswith("Ship an order.\n\nUse only for paid orders.")
    assert "Returns: The shipment record." in schema["description"]
    props = schema["parameters"]["properties"]
    assert set(props) == {"order_id", "weight_kg", "speed", "note"}  # box and rng are injected
    assert props["weight_kg"]["description"] == "Parcel weight in kilograms, measured on the scale."
    assert props["speed"]["enum"] == ["standard", "express"]
    assert props["speed"]["default"] == "standard"
    assert schema["parameters"]["required"] == ["order_id", "weight_kg"]
    assert schema["parameters"]["additionalProperties"] is False
    assert ship.injected == {"box": Box, "rng": np.random.Generator}
    jsonschema.Draft202012Validator.check_schema(schema["parameters"])


def test_validation_fills_defaults_and_accepts_int_for_float() -> None:
    assert ship.validate({"order_id": "O-1", "weight_kg": 2}) == {
        "order_id": "O-1",
        "weight_kg": 2.0,
        "speed": "standard",
        "note": None,
    }


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ({"weight_kg": 1.0}, "missing required argument 'order_id'"),
        ({"order_id": 7, "weight_kg": 1.0}, "argument 'order_id': Input should be a valid string"),
        ({"order_id": "O", "weight_kg": "heavy"}, "argument 'weight_kg'"),
        ({"order_id": "O", "weight_kg": 1, "colour": "red"}, "unexpected argument 'colour'"),
        ({"order_id": "O", "weight_kg": 1, "speed": "warp"}, "argument 'speed'"),
        (["O", 1], "must be a JSON object, got list"),
    ],
)
def test_validation_errors_are_readable(arguments: Any, expected: str) -> None:
    with pytest.raises(ToolArgumentError, match=r"invalid arguments|must be a JSON object") as info:
        ship.validate(arguments)
    assert expected in str(info.value)


def test_bool_is_not_an_int_and_string_is_not_a_number() -> None:
    @tool
    def count(n: int) -> int:
        """Count.

        Args:
            n: How many.
        """
        return n

    for bad in (True, "5", 5.0):
        with pytest.raises(ToolArgumentError):
            count.validate({"n": bad})
    assert count.validate({"n": 5}) == {"n": 5}


def test_bad_tool_definitions_fail_at_decoration() -> None:
    with pytest.raises(ScenarioError, match="no type annotation"):

        @tool
        def untyped(x) -> None:  # type: ignore[no-untyped-def]
            """Nothing."""

    with pytest.raises(ScenarioError, match=r"\*args"):

        @tool
        def star(*xs: int) -> None:
            """Nothing."""

    with pytest.raises(ScenarioError, match="effect must be"):
        tool(effect="delete")(lambda: None)  # type: ignore[arg-type]


def test_format_result() -> None:
    assert format_result("plain") == "plain"
    assert format_result(None) == "OK"
    assert format_result({"é": np.int64(3), "s": {2, 1}}) == '{"é": 3, "s": [1, 2]}'


def test_parse_docstring_sections() -> None:
    text, args = parse_docstring(
        "Do it.\n\nArgs:\n    a (int): First.\n    b: Second,\n        long.\n\n"
        "Raises:\n    X: never"
    )
    assert text == "Do it." and args == {"a": "First.", "b": "Second, long."}


def test_json_round_trip_of_records() -> None:
    call = ToolCall("c1", "ship", {"order_id": "O-1"})
    result = ToolResult("c1", "ship", "{}", False, "sandbox", 0.001)
    step = Step(1, {"role": "assistant", "content": ""}, (call,), (result,), 0.0)
    episode = Episode(
        "a/B-v1",
        "t1",
        3,
        ({"role": "user", "content": "hi"},),
        (step,),
        1.0,
        {"x": 1.0},
        1.0,
        "answer",
        metadata={"k": [1, 2]},
    )
    assert Episode.from_json(episode.to_json()) == episode
    assert "\n" not in episode.to_json()
    newer = {**episode.to_dict(), "schema_version": EPISODE_SCHEMA_VERSION + 1}
    with pytest.raises(ValueError, match="newer"):
        Episode.from_dict(newer)


# ----------------------------------------------------------------------------- parsing
def test_several_calls_in_text_with_content_kept() -> None:
    text = (
        "Let me check. "
        + format_tool_call("a", {"x": 1})
        + " and "
        + format_tool_call("b", {"y": [1, {"z": "}"}]})
    )
    parsed = parse_action(text, "call_1")
    assert [c.name for c in parsed.tool_calls] == ["a", "b"]
    assert parsed.tool_calls[1].arguments == {"y": [1, {"z": "}"}]}
    assert parsed.message["content"] == "Let me check.  and"
    assert [c["id"] for c in parsed.message["tool_calls"]] == ["call_1_0", "call_1_1"]
    assert json.loads(parsed.message["tool_calls"][0]["function"]["arguments"]) == {"x": 1}


def test_openai_dict_action() -> None:
    action = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "abc", "type": "function", "function": {"name": "a", "arguments": '{"x": 2}'}},
            {"id": "def", "type": "function", "function": {"name": "b", "arguments": {"y": 1}}},
        ],
    }
    parsed = parse_action(action)
    assert [(c.id, c.name, c.arguments) for c in parsed.tool_calls] == [
        ("abc", "a", {"x": 2}),
        ("def", "b", {"y": 1}),
    ]
    assert parsed.message["content"] == ""


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("<tool_call>{nope}</tool_call>", "not valid JSON"),
        ('<tool_call>{"arguments": {}}</tool_call>', 'no "name"'),
        ('<tool_call>{"name": "a", "arguments": [1]}</tool_call>', "must be a JSON object"),
        ('<tool_call>{"name": "a", "arguments": "{bad"}</tool_call>', "not valid JSON"),
        ("<tool_call>[1, 2]</tool_call>", "must be a JSON object"),
        ('ok <tool_call>{"name": "a", "arguments": {}}', "not closed"),
        ("<tool_call>" + "x" * (MAX_CALL_CHARS + 1) + "</tool_call>", "over the limit"),
    ],
)
def test_malformed_calls_become_errors(text: str, problem: str) -> None:
    parsed = parse_action(text)
    assert len(parsed.tool_calls) == 1
    assert parsed.tool_calls[0].error is not None and problem in parsed.tool_calls[0].error
    assert parsed.message["tool_calls"][0]["id"] == parsed.tool_calls[0].id


def test_too_many_calls_are_refused_beyond_the_limit() -> None:
    text = format_tool_call("a", {}) * (MAX_CALLS_PER_TURN + 3)
    calls = parse_action(text).tool_calls
    assert len(calls) == MAX_CALLS_PER_TURN + 3
    assert all(c.error is None for c in calls[:MAX_CALLS_PER_TURN])
    assert all("not run" in (c.error or "") for c in calls[MAX_CALLS_PER_TURN:])


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(
    st.text(max_size=400)
    | st.builds(
        lambda a, name, b: f"{a}<tool_call>{name}{b}",
        st.text(max_size=50),
        st.text(max_size=80),
        st.text(max_size=50),
    )
)
def test_parsing_never_raises_on_text(text: str) -> None:
    parsed = parse_action(text)
    assert parsed.message["role"] == "assistant" and isinstance(parsed.message["content"], str)
    assert len(parsed.message.get("tool_calls", [])) == len(parsed.tool_calls)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["role", "content", "tool_calls", "x"]), json_values))
def test_parsing_never_raises_on_dicts(action: dict[str, Any]) -> None:
    parsed = parse_action(action)
    for call in parsed.tool_calls:
        assert call.error is None or call.error
        assert isinstance(call.arguments, dict)


@settings(max_examples=200, deadline=None)
@given(
    st.text(min_size=1, max_size=20), st.dictionaries(st.text(max_size=10), json_values, max_size=4)
)
def test_well_formed_calls_round_trip(name: str, arguments: dict[str, Any]) -> None:
    calls = parse_action(format_tool_call(name, arguments)).tool_calls
    if "</tool_call>" in json.dumps({"name": name, "arguments": arguments}, ensure_ascii=False):
        return  # a payload that contains the closing tag cannot be framed by it
    assert len(calls) == 1 and calls[0].error is None
    assert calls[0].name == name and calls[0].arguments == arguments
