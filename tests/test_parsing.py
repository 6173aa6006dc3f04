"""Parsing assistant turns: Hermes ``<tool_call>`` text and OpenAI ``tool_calls``, fuzzed."""

from __future__ import annotations

import gc
import json
import math
import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simenv.parsing import (
    MAX_ARGUMENT_DEPTH,
    MAX_CALL_CHARS,
    MAX_CALLS_PER_TURN,
    format_tool_call,
    parse_action,
    parse_text,
)


def _check_consistent(parsed: Any) -> None:
    """Invariants every parse keeps: one OpenAI entry per call, same ids, errors explained."""
    message = parsed.message
    assert message["role"] == "assistant" and isinstance(message["content"], str)
    entries = message.get("tool_calls", [])
    assert len(entries) == len(parsed.tool_calls)
    assert ("tool_calls" in message) == bool(parsed.tool_calls)
    for entry, call in zip(entries, parsed.tool_calls, strict=True):
        assert entry["id"] == call.id and entry["type"] == "function"
        assert isinstance(entry["function"]["name"], str) and entry["function"]["name"]
        assert isinstance(json.loads(entry["function"]["arguments"]), dict)
        assert isinstance(call.arguments, dict)
        if call.error is not None:
            assert isinstance(call.error, str) and len(call.error) > 10
            assert call.arguments == {}
    json.dumps(message)  # the recorded message is JSON


def test_several_calls_in_text_with_content_kept() -> None:
    text = (
        "Let me check. "
        + format_tool_call("a", {"x": 1})
        + " and "
        + format_tool_call("b", {"y": [1, {"z": "}"}]})
        + "\nThanks."
    )
    parsed = parse_action(text, "call_1")
    assert [(c.name, c.arguments, c.error) for c in parsed.tool_calls] == [
        ("a", {"x": 1}, None),
        ("b", {"y": [1, {"z": "}"}]}, None),
    ]
    assert parsed.message["content"] == "Let me check.  and \nThanks."
    assert [c["id"] for c in parsed.message["tool_calls"]] == ["call_1_0", "call_1_1"]
    assert json.loads(parsed.message["tool_calls"][1]["function"]["arguments"]) == {
        "y": [1, {"z": "}"}]
    }
    _check_consistent(parsed)


def test_one_call_and_whitespace_variants() -> None:
    for text in [
        '<tool_call>{"name": "lookup", "arguments": {"id": "O-7"}}</tool_call>',
        '<tool_call>\n{"name":"lookup","arguments":{"id":"O-7"}}\n</tool_call>',
        '<tool_call> {"arguments": {"id": "O-7"}, "name": "lookup"} </tool_call>',
        '<tool_call>{"name": "lookup", "parameters": {"id": "O-7"}}</tool_call>',
        '<tool_call>{"name": "lookup", "arguments": "{\\"id\\": \\"O-7\\"}"}</tool_call>',
    ]:
        parsed = parse_action(text)
        assert [(c.id, c.name, c.arguments, c.error) for c in parsed.tool_calls] == [
            ("call_0", "lookup", {"id": "O-7"}, None)
        ], text
        assert parsed.message["content"] == ""
        _check_consistent(parsed)


def test_text_without_calls_is_an_answer() -> None:
    parsed = parse_action("  The answer is 42.  ")
    assert parsed.tool_calls == ()
    assert parsed.message == {"role": "assistant", "content": "  The answer is 42.  "}
    assert parse_text("no calls") == ("no calls", [])


def test_arguments_may_be_empty_or_missing() -> None:
    for text in [
        '<tool_call>{"name": "ping"}</tool_call>',
        '<tool_call>{"name": "ping", "arguments": {}}</tool_call>',
        '<tool_call>{"name": "ping", "arguments": null}</tool_call>',
        '<tool_call>{"name": "ping", "arguments": ""}</tool_call>',
    ]:
        (call,) = parse_action(text).tool_calls
        assert (call.name, call.arguments, call.error) == ("ping", {}, None)


def test_openai_dict_action() -> None:
    action = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "abc", "type": "function", "function": {"name": "a", "arguments": '{"x": 2}'}},
            {"id": "def", "type": "function", "function": {"name": "b", "arguments": {"y": 1}}},
            {"type": "function", "function": {"name": "c", "arguments": ""}},
            {"id": "g", "function": {"name": "d"}},
        ],
    }
    parsed = parse_action(action, "call_3")
    assert [(c.id, c.name, c.arguments, c.error) for c in parsed.tool_calls] == [
        ("abc", "a", {"x": 2}, None),
        ("def", "b", {"y": 1}, None),
        ("call_3_2", "c", {}, None),
        ("g", "d", {}, None),
    ]
    assert parsed.message["content"] == ""
    assert parsed.message["tool_calls"][0]["function"]["arguments"] == '{"x": 2}'
    _check_consistent(parsed)


def test_a_repeated_call_id_is_an_error_with_an_id_of_its_own() -> None:
    call = {"id": "x", "function": {"name": "a", "arguments": "{}"}}
    parsed = parse_action({"role": "assistant", "tool_calls": [call, call]})
    first, second = parsed.tool_calls
    assert (first.id, first.name, first.error) == ("x", "a", None)
    assert second.id == "x_1" and second.error is not None
    assert "'x' is used twice in one turn" in second.error
    _check_consistent(parsed)


def test_dict_without_tool_calls_parses_its_content_as_text() -> None:
    parsed = parse_action(
        {"role": "assistant", "content": "Hi " + format_tool_call("a", {}), "tool_calls": []}
    )
    assert [c.name for c in parsed.tool_calls] == ["a"] and parsed.message["content"] == "Hi"
    listed = parse_action({"role": "assistant", "content": [{"type": "text", "text": "x"}]})
    assert json.loads(listed.message["content"]) == [{"type": "text", "text": "x"}]
    assert parse_action({"role": "assistant"}).message == {"role": "assistant", "content": ""}


@pytest.mark.parametrize(
    ("action", "problem"),
    [
        ({"tool_calls": "a"}, '"tool_calls" must be a list'),
        ({"tool_calls": [1]}, "each tool call must be an object"),
        ({"tool_calls": [{"function": "a"}]}, '"function" must be an object'),
        ({"tool_calls": [{"function": {"arguments": "{}"}}]}, 'no "function.name"'),
        ({"tool_calls": [{"function": {"name": ""}}]}, 'no "function.name"'),
        ({"tool_calls": [{"function": {"name": "a", "arguments": "{x"}}]}, "not valid JSON"),
        ({"tool_calls": [{"function": {"name": "a", "arguments": "[1]"}}]}, "got list"),
        ({"tool_calls": [{"function": {"name": "a", "arguments": 5}}]}, "got int"),
        (
            {"tool_calls": [{"function": {"name": "a", "arguments": "1" * (MAX_CALL_CHARS + 1)}}]},
            "over the limit",
        ),
    ],
)
def test_malformed_openai_calls_become_errors(action: dict[str, Any], problem: str) -> None:
    parsed = parse_action({"role": "assistant", **action})
    assert len(parsed.tool_calls) == 1
    error = parsed.tool_calls[0].error
    assert error is not None and problem in error
    _check_consistent(parsed)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("<tool_call>{nope}</tool_call>", "not valid JSON"),
        ("<tool_call></tool_call>", "not valid JSON"),
        ('<tool_call>{"arguments": {}}</tool_call>', 'no "name"'),
        ('<tool_call>{"name": "", "arguments": {}}</tool_call>', 'no "name"'),
        ('<tool_call>{"name": 5, "arguments": {}}</tool_call>', 'no "name"'),
        (
            '<tool_call>{"name": "a", "arguments": [1]}</tool_call>',
            "must be a JSON object, got list",
        ),
        ('<tool_call>{"name": "a", "arguments": 3}</tool_call>', "must be a JSON object, got int"),
        ('<tool_call>{"name": "a", "arguments": "{bad"}</tool_call>', "not valid JSON"),
        ("<tool_call>[1, 2]</tool_call>", "must be a JSON object"),
        ('<tool_call>"just a string"</tool_call>', "got str"),
        ('ok <tool_call>{"name": "a", "arguments": {}}', "not closed"),
        ("<tool_call>" + "x" * (MAX_CALL_CHARS + 1) + "</tool_call>", "over the limit"),
        ('<tool_call>{"name": "a", "arguments": {"n": ' + "9" * 5000 + "}}</tool_call>", "JSON"),
        ("<tool_call>" + "[" * 50_000 + "</tool_call>", "not valid JSON"),
    ],
)
def test_malformed_text_calls_become_errors(text: str, problem: str) -> None:
    parsed = parse_action(text)
    assert len(parsed.tool_calls) == 1
    call = parsed.tool_calls[0]
    assert call.error is not None and problem in call.error
    assert parsed.message["tool_calls"][0]["function"]["name"] == (call.name or "invalid_tool_call")
    assert len(call.error) < 400  # the agent reads a short message, not its whole payload back
    _check_consistent(parsed)


def test_errors_tell_the_agent_the_expected_format() -> None:
    (call,) = parse_action("<tool_call>{nope}</tool_call>").tool_calls
    assert '<tool_call>{"name": "<tool>", "arguments": {...}}</tool_call>' in (call.error or "")


def test_well_formed_calls_survive_next_to_malformed_ones() -> None:
    text = (
        format_tool_call("a", {"x": 1})
        + "<tool_call>{broken</tool_call>"
        + format_tool_call("b", {})
        + "<tool_call>{unclosed"
    )
    parsed = parse_action(text)
    assert [(c.name, c.error is None) for c in parsed.tool_calls] == [
        ("a", True),
        ("", False),
        ("b", True),
        ("", False),
    ]
    assert "not closed" in (parsed.tool_calls[3].error or "")
    assert parsed.message["content"] == ""
    _check_consistent(parsed)


@pytest.mark.timeout(60)  # quadratic parsing would hang here, not fail
def test_huge_payloads_are_refused_quickly() -> None:
    big_argument = format_tool_call("a", {"x": "y" * 2_000_000})
    (call,) = parse_action(big_argument).tool_calls
    assert call.error is not None and "over the limit of 65536" in call.error
    # Degenerate generations (a tag repeated over and over) parse in linear time.
    (call,) = parse_action("<tool_call>" * 200_000).tool_calls
    assert "not closed" in (call.error or "")
    for repeats in (900, 3_000):  # under and over MAX_CALL_CHARS
        text = ('<tool_call>{"name": "a", "arguments": {' + "}" * 30) * repeats
        calls = parse_action(text).tool_calls
        assert len(calls) == 1 and "not closed" in (calls[0].error or "")


def test_too_many_calls_are_refused_beyond_the_limit() -> None:
    text = "".join(format_tool_call("a", {"i": i}) for i in range(MAX_CALLS_PER_TURN + 3))
    parsed = parse_action(text)
    calls = parsed.tool_calls
    assert len(calls) == MAX_CALLS_PER_TURN + 3
    assert all(c.error is None for c in calls[:MAX_CALLS_PER_TURN])
    assert [c.arguments["i"] for c in calls[:MAX_CALLS_PER_TURN]] == list(range(MAX_CALLS_PER_TURN))
    assert all(
        c.error == f"more than {MAX_CALLS_PER_TURN} tool calls in one turn; this one was not run"
        for c in calls[MAX_CALLS_PER_TURN:]
    )
    _check_consistent(parsed)
    action = {
        "role": "assistant",
        "tool_calls": [{"function": {"name": "a"}}] * (MAX_CALLS_PER_TURN + 1),
    }
    parsed = parse_action(action)
    assert [c.error is None for c in parsed.tool_calls].count(False) == 1
    _check_consistent(parsed)


def test_non_text_non_dict_actions_are_read_as_text() -> None:
    assert parse_action(None).message == {"role": "assistant", "content": "None"}
    assert parse_action(42).tool_calls == ()
    parsed = parse_action(["<tool_call>"])
    assert len(parsed.tool_calls) == 1 and parsed.tool_calls[0].error is not None


def _nested(depth: int) -> str:
    """JSON text of an object nested ``depth`` deep: ``{"a":{"a":...1...}}``."""
    return '{"a":' * (depth - 1) + '{"a":1' + "}" * depth


def _deep_error(call: Any) -> bool:
    return call.error is not None and "send flatter arguments" in call.error


@pytest.mark.parametrize("depth", [MAX_ARGUMENT_DEPTH + 1, 900, 5_000])
def test_arguments_nested_too_deep_are_an_error_the_agent_reads(depth: int) -> None:
    deep = _nested(depth)
    actions: list[Any] = [
        f'<tool_call>{{"name": "a", "arguments": {deep}}}</tool_call>',  # the one-call fast path
        f'Look. <tool_call>{{"name": "a", "arguments": {deep}}}</tool_call> and '
        + format_tool_call("b", {}),  # several calls
        f'<tool_call>{{"arguments": {deep}, "name": "a"}}</tool_call>',  # the general path
        {"role": "assistant", "tool_calls": [{"function": {"name": "a", "arguments": deep}}]},
    ]
    if depth < 900:  # json.loads itself refuses deeper text; a decoded value has no such limit
        actions.append(
            {
                "role": "assistant",
                "tool_calls": [{"function": {"name": "a", "arguments": json.loads(deep)}}],
            }
        )
    for action in actions:
        parsed = parse_action(action)
        assert _deep_error(parsed.tool_calls[0]), (action, parsed.tool_calls[0])
        assert parsed.tool_calls[0].arguments == {}
        _check_consistent(parsed)
    calls = parse_action(actions[1]).tool_calls
    assert (calls[1].name, calls[1].error) == ("b", None)  # the flat call next to it still runs


def test_arguments_at_the_depth_limit_and_cyclic_ones() -> None:
    at_limit = _nested(MAX_ARGUMENT_DEPTH)
    for action in (
        f'<tool_call>{{"name": "a", "arguments": {at_limit}}}</tool_call>',
        {"role": "assistant", "tool_calls": [{"function": {"name": "a", "arguments": at_limit}}]},
    ):
        (call,) = parse_action(action).tool_calls
        assert call.error is None and call.arguments == json.loads(at_limit)
    wide = {f"k{i}": [[i]] for i in range(500)}  # many brackets, shallow: accepted
    (call,) = parse_action(format_tool_call("a", wide)).tool_calls
    assert call.error is None and call.arguments == wide
    cyclic: dict[str, Any] = {}
    cyclic["self"] = cyclic
    action = {"role": "assistant", "tool_calls": [{"function": {"name": "a", "arguments": cyclic}}]}
    (call,) = parse_action(action).tool_calls
    assert _deep_error(call)


def test_lone_surrogates_in_arguments_and_text_are_replaced_and_counted() -> None:
    arguments = '{"id": "\\ud83d", "\\udc80k": ["x\\udfff"]}'
    escaped = f'<tool_call>{{"name": "a", "arguments": {arguments}}}</tool_call>'
    parsed = parse_action(escaped)
    (call,) = parsed.tool_calls
    assert call.error is None
    assert call.arguments == {"id": "\ufffd", "\ufffdk": ["x\ufffd"]}
    assert parsed.replaced == 3
    # The recorded message keeps the model's own text, which is ASCII JSON and writable.
    assert "\\ud83d" in parsed.message["tool_calls"][0]["function"]["arguments"]
    json.dumps(parsed.message, ensure_ascii=False).encode("utf-8")
    literal = parse_action("I think \ud83d " + format_tool_call("a", {"x": "\udcff"}))
    assert literal.message["content"] == "I think \ufffd"
    assert literal.tool_calls[0].arguments == {"x": "\ufffd"} and literal.replaced == 2
    json.dumps(literal.message, ensure_ascii=False).encode("utf-8")
    openai = parse_action(
        {
            "role": "assistant",
            "tool_calls": [
                {"id": "c1", "function": {"name": "a", "arguments": '{"x": "\\ud800"}'}},
                {"id": "c2", "function": {"name": "a", "arguments": {"y": "\udbff"}}},
            ],
        }
    )
    assert [c.arguments for c in openai.tool_calls] == [{"x": "\ufffd"}, {"y": "\ufffd"}]
    assert openai.replaced == 2
    _check_consistent(openai)


def test_valid_unicode_and_escaped_backslashes_are_left_alone() -> None:
    for arguments, decoded in [
        ('{"x": "\\ud83d\\ude00"}', {"x": "\U0001f600"}),  # a surrogate pair: one emoji
        ('{"x": "\\\\ud83d"}', {"x": "\\ud83d"}),  # an escaped backslash, then text
        ('{"x": "caf\u00e9 \u4e2d"}', {"x": "caf\u00e9 \u4e2d"}),
    ]:
        parsed = parse_action(f'<tool_call>{{"name": "a", "arguments": {arguments}}}</tool_call>')
        assert parsed.tool_calls[0].arguments == decoded and parsed.replaced == 0
        assert parsed.message["tool_calls"][0]["function"]["arguments"] == arguments


@pytest.mark.timeout(20)  # the quadratic id check took minutes here; linear is under a second
def test_fifty_thousand_openai_calls_parse_in_linear_time() -> None:
    n = 50_000
    calls = [{"id": f"c{i}", "function": {"name": "a", "arguments": "{}"}} for i in range(n)]
    parsed = parse_action({"role": "assistant", "tool_calls": calls})
    assert len(parsed.tool_calls) == n
    assert [c.id for c in parsed.tool_calls[:3]] == ["c0", "c1", "c2"]
    assert all(c.error is None for c in parsed.tool_calls[:MAX_CALLS_PER_TURN])
    assert all("more than" in (c.error or "") for c in parsed.tool_calls[MAX_CALLS_PER_TURN:])
    same = [{"id": "x", "function": {"name": "a", "arguments": "{}"}}] * n
    parsed = parse_action({"role": "assistant", "tool_calls": same})
    assert len({c.id for c in parsed.tool_calls}) == n  # every call keeps an id of its own


def _cpu_seconds(action: Any) -> float:
    """The least CPU time of three parses of ``action`` (CPU, not wall: a busy machine).

    The garbage collector is off while it is timed: a full collection walks the whole test
    session's heap, a cost that has nothing to do with the input's size.
    """
    best = math.inf
    gc.collect()
    gc.disable()
    try:
        for _ in range(3):
            start = time.process_time()
            parse_action(action)
            best = min(best, time.process_time() - start)
    finally:
        gc.enable()
    return best


def _openai_calls(n: int, same_id: bool) -> dict[str, Any]:
    calls = [
        {
            "id": "x" if same_id else f"c{i}",
            "type": "function",
            "function": {"name": "lookup_order", "arguments": f'{{"order_id": "O-{i}"}}'},
        }
        for i in range(n)
    ]
    return {"role": "assistant", "content": None, "tool_calls": calls}


def _text_calls(n: int, same_id: bool) -> str:
    return "".join(format_tool_call("lookup_order", {"order_id": f"O-{i}"}) for i in range(n))


@pytest.mark.parametrize("make", [_openai_calls, _text_calls])
@pytest.mark.parametrize("same_id", [False, True])
def test_parsing_time_grows_linearly_with_the_number_of_calls(make: Any, same_id: bool) -> None:
    # Issue 14: 16,000 OpenAI calls in an 816 KB request took 15 s (a quadratic id check).
    # Four times the calls must cost well under 16 times the time (linear: about 4).
    small, large = make(4_000, same_id), make(16_000, same_id)
    _cpu_seconds(small)  # warm up
    ratio = _cpu_seconds(large) / max(_cpu_seconds(small), 1e-4)
    assert ratio < 8, f"4x the calls took {ratio:.1f}x the time: parsing is not linear"


def test_calls_past_the_limit_are_refused_without_being_decoded() -> None:
    over = MAX_CALLS_PER_TURN + 2
    text = "".join(format_tool_call("a", {"i": i}) for i in range(MAX_CALLS_PER_TURN))
    text += '<tool_call>{"name": "b", "arguments": {"x": [[[[[[[</tool_call>' * 2
    action = {"role": "assistant", "tool_calls": [{"function": {"name": "a"}}] * over}
    action["tool_calls"][-1] = {"function": {"name": "b", "arguments": "{not json"}}
    for parsed in (parse_action(text), parse_action(action)):
        assert len(parsed.tool_calls) == over
        last = parsed.tool_calls[-1]
        assert last.name == "b" and last.arguments == {} and last.error is not None
        assert last.error.startswith(f"more than {MAX_CALLS_PER_TURN} tool calls")
        _check_consistent(parsed)


def test_a_made_up_id_for_a_repeated_one_never_collides() -> None:
    raw = [
        {"id": "x_2", "function": {"name": "a", "arguments": "{}"}},
        {"id": "x", "function": {"name": "a", "arguments": "{}"}},
        {"id": "x", "function": {"name": "a", "arguments": "{}"}},  # would become x_2
    ]
    parsed = parse_action({"role": "assistant", "tool_calls": raw})
    ids = [c.id for c in parsed.tool_calls]
    assert len(set(ids)) == 3 and ids[:2] == ["x_2", "x"]
    assert parsed.tool_calls[2].error is not None and parsed.tool_calls[1].error is None
    _check_consistent(parsed)


class _Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("no text for you")


class _BadDict(dict):  # type: ignore[type-arg]
    def get(self, key: Any, default: Any = None) -> Any:
        raise KeyError(key)


def test_an_action_whose_str_raises_is_an_error_call_not_an_exception() -> None:
    for action, where in [
        (_Unprintable(), "the action is a _Unprintable whose str() raised RuntimeError"),
        (
            {"role": "assistant", "content": _Unprintable()},
            "the content is a _Unprintable whose str() raised RuntimeError",
        ),
        (_BadDict(content="x"), "could not be read (KeyError)"),
    ]:
        parsed = parse_action(action)
        (call,) = parsed.tool_calls
        assert call.error is not None and where in call.error, call.error
        _check_consistent(parsed)
    # A printable object still reads as its text, and an ordinary dict as it did.
    assert parse_action(3.5).message == {"role": "assistant", "content": "3.5"}
    assert parse_action({"content": "hi"}).tool_calls == ()


# ----------------------------------------------------------------------------- fuzzing
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)
fragments = st.sampled_from(
    [
        "<tool_call>",
        "</tool_call>",
        "{",
        "}",
        '"name"',
        '"arguments"',
        ":",
        ",",
        '"a"',
        " ",
        "\n",
        '{"name": "a", "arguments": {}}',
        '{"name": "a", "arguments": {"x": 1}}',
        "[",
        "]",
        "null",
        '"',
        "\\",
    ]
)
tool_text = st.lists(fragments | st.text(max_size=8), max_size=25).map("".join)
any_text = (
    st.text(max_size=300)
    | tool_text
    | st.builds(
        lambda name, args, around: around[0] + format_tool_call(name, args) + around[1],
        st.text(max_size=12),
        st.dictionaries(st.text(max_size=6), json_values, max_size=3),
        st.tuples(st.text(max_size=20), st.text(max_size=20)),
    )
)


@settings(max_examples=200, deadline=None)
@given(any_text)
def test_parsing_never_raises_on_text(text: str) -> None:
    parsed = parse_action(text)
    _check_consistent(parsed)
    if "<tool_call>" in text:
        assert parsed.tool_calls  # every opened tag is answered, if only with an error


@settings(max_examples=200, deadline=None)
@given(any_text)
def test_the_fast_path_agrees_with_the_general_path(text: str) -> None:
    """Text goes through a one-call fast path; dict content never does. Both must agree."""
    fast = parse_action(text, "c")
    general = parse_action({"role": "assistant", "content": text}, "c")
    assert fast.message == general.message
    assert fast.tool_calls == general.tool_calls


raw_call = st.fixed_dictionaries(
    {},
    optional={
        "id": st.text(max_size=5) | st.integers(),
        "type": st.just("function"),
        "function": st.fixed_dictionaries(
            {},
            optional={
                "name": st.text(max_size=8) | st.integers() | st.none(),
                "arguments": st.text(max_size=30)
                | json_values
                | st.dictionaries(st.text(max_size=5), json_values, max_size=3).map(json.dumps),
            },
        )
        | json_values,
    },
)


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["role", "content", "tool_calls", "x"]),
        json_values | st.lists(raw_call | json_values, max_size=4) | tool_text,
    )
)
def test_parsing_never_raises_on_dicts(action: dict[str, Any]) -> None:
    parsed = parse_action(action)
    _check_consistent(parsed)


@settings(max_examples=200, deadline=None)
@given(
    st.text(min_size=1, max_size=20),
    st.dictionaries(st.text(max_size=10), json_values, max_size=4),
)
def test_well_formed_calls_round_trip(name: str, arguments: dict[str, Any]) -> None:
    payload = json.dumps({"name": name, "arguments": arguments}, ensure_ascii=False)
    calls = parse_action(format_tool_call(name, arguments)).tool_calls
    if "</tool_call>" in payload:
        return  # a payload that contains the closing tag cannot be framed by it
    assert len(calls) == 1 and calls[0].error is None
    assert calls[0].name == name and calls[0].arguments == arguments
    openai = parse_action({"role": "assistant", "tool_calls": [calls[0].to_openai()]})
    assert openai.tool_calls[0].arguments == arguments and openai.tool_calls[0].name == name
