"""Assistant output -> tool calls, and tool results -> ``role: "tool"`` messages.

Two action forms are understood:

* raw model text with Hermes/Qwen tool calls, any number per turn::

      I will look that up.
      <tool_call>{"name": "lookup_order", "arguments": {"order_id": "O-7"}}</tool_call>

* an OpenAI assistant message dict with ``tool_calls``
  (``{"id", "type": "function", "function": {"name", "arguments": "<JSON string>"}}``).
  If such a dict has no ``tool_calls``, its ``content`` is parsed as text.

Parsing never raises. A malformed call (bad JSON, no name, arguments that are not an object, an
oversized payload, an unclosed tag, too many calls) becomes a :class:`~simenv.types.ToolCall`
with ``error`` set; the environment answers it with a tool message carrying that error, so the
agent can read what went wrong and try again.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from simenv.types import Message, ToolCall

__all__ = [
    "MAX_ARGUMENT_DEPTH",
    "MAX_CALLS_PER_TURN",
    "MAX_CALL_CHARS",
    "ParsedAction",
    "format_tool_call",
    "parse_action",
    "parse_text",
]

MAX_CALL_CHARS = 65_536
"""Largest accepted tool call payload, in characters; larger ones are answered with an error."""

MAX_CALLS_PER_TURN = 32
"""Most tool calls honoured in one turn; the rest are answered with an error."""

MAX_ARGUMENT_DEPTH = 64
"""Deepest nesting of objects and arrays accepted in a call's arguments (the arguments object
itself is depth 1); deeper ones are answered with an error. Without a bound, a few kilobytes of
``{"a":{"a":...}}`` decode into a value that nothing downstream (validation, JSON encoding of the
episode record) can walk without overflowing the stack."""

REPLACEMENT = "\ufffd"
"""What replaces a character that cannot be written as UTF-8 (a lone surrogate, such as the JSON
escape ``"\\ud83d"`` decodes to) in a call's arguments and an action's text."""

OPEN_TAG = "<tool_call>"
CLOSE_TAG = "</tool_call>"
# The shape models write almost always; matching it lets the arguments' own text be kept as the
# OpenAI ``arguments`` string (no re-encoding). Anything else takes the general path.
_SIMPLE_CALL = re.compile(
    r'\s*\{\s*"name"\s*:\s*"([A-Za-z0-9_.-]{1,64})"\s*,\s*"arguments"\s*:\s*(\{.*\})\s*\}\s*',
    re.DOTALL,
)
# One well-formed call with text around it: the common turn, parsed by one regex match.
_ONE_CALL = re.compile(
    r'(.*?)<tool_call>\s*\{\s*"name"\s*:\s*"([A-Za-z0-9_.-]{1,64})"\s*,\s*"arguments"\s*:\s*'
    r"(\{.*?\})\s*\}\s*</tool_call>(.*)",
    re.DOTALL,
)
# The name of a call past MAX_CALLS_PER_TURN, read without decoding the rest of its payload.
_NAME_ONLY = re.compile(r'\s*\{\s*"name"\s*:\s*"([A-Za-z0-9_.-]{1,64})"')
_OVER_LIMIT = f"more than {MAX_CALLS_PER_TURN} tool calls in one turn; this one was not run"
_ENCODE = json.JSONEncoder(ensure_ascii=False).encode
_SURROGATE = re.compile("[\ud800-\udfff]")
# A lone surrogate in text, or a JSON escape that may decode to one (a false alarm only costs a
# walk over the arguments).
_MAY_HOLD_SURROGATE = re.compile(r"[\ud800-\udfff]|\\u[dD][89a-fA-F]")


def _suspect(text: str) -> bool:
    """Whether ``text`` may hold or decode to a lone surrogate (O(1) for most text)."""
    if text.isascii() and "\\u" not in text:  # isascii is O(1) on str
        return False
    return _MAY_HOLD_SURROGATE.search(text) is not None


_SCAN: Any = getattr(json.JSONDecoder(), "scan_once")  # noqa: B009 - json.loads minus its Python-level wrapper: 4x faster


@dataclass(slots=True)
class ParsedAction:
    """An action, normalised.

    Attributes:
        message: The assistant message to append to the conversation: ``content`` without the
            tool-call blocks, and ``tool_calls`` in OpenAI form (malformed calls included, so
            every tool message has a matching call id).
        tool_calls: The calls, in order.
        replaced: How many strings (of the content and the calls' arguments) had lone
            surrogates replaced by :data:`REPLACEMENT`.
    """

    message: Message
    tool_calls: tuple[ToolCall, ...]
    replaced: int = 0


def format_tool_call(name: str, arguments: dict[str, Any]) -> str:
    """Render one call in the Hermes/Qwen text format (what a model is trained to write)."""
    payload = json.dumps({"name": name, "arguments": arguments}, ensure_ascii=False)
    return f"{OPEN_TAG}{payload}{CLOSE_TAG}"


def _short(text: str, limit: int = 80) -> str:
    text = text.strip().replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _too_deep(value: Any) -> bool:
    """Whether ``value`` nests objects/arrays deeper than :data:`MAX_ARGUMENT_DEPTH`.

    Iterative, and stops at the first level over the limit, so a cyclic or absurdly deep value
    (an in-process OpenAI dict can hold either) costs no more than the limit allows.
    """
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        children = node.values() if isinstance(node, dict) else node
        for child in children:
            if isinstance(child, dict | list | tuple):
                if depth >= MAX_ARGUMENT_DEPTH:
                    return True
                stack.append((child, depth + 1))
    return False


def _depth_error(arguments: Any, raw: str | None) -> str | None:
    """The error for arguments nested too deep, or ``None``; cheap for flat arguments."""
    if raw is not None and raw.count("{") + raw.count("[") <= MAX_ARGUMENT_DEPTH:
        return None  # fewer brackets than levels allowed: cannot be too deep
    return _TOO_DEEP if _too_deep(arguments) else None


_TOO_DEEP = (
    f"the arguments nest objects or arrays more than {MAX_ARGUMENT_DEPTH} levels deep; "
    "send flatter arguments"
)


def _scrub(value: Any, counter: list[int]) -> Any:
    """``value`` with every lone surrogate in its strings (keys too) replaced by U+FFFD.

    ``counter[0]`` counts the strings changed. Only called on arguments within
    :data:`MAX_ARGUMENT_DEPTH`, so the recursion is bounded.
    """
    if isinstance(value, str):
        clean, n = _SURROGATE.subn(REPLACEMENT, value)
        if n:
            counter[0] += 1
        return clean
    if isinstance(value, dict):
        return {_scrub(k, counter): _scrub(v, counter) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(v, counter) for v in value]
    return value


def _decode_arguments(raw: Any) -> tuple[dict[str, Any], str | None]:
    if raw is None:
        return {}, None
    if isinstance(raw, str):
        if len(raw) > MAX_CALL_CHARS:
            return {}, (
                f"the arguments are {len(raw)} characters, over the limit of {MAX_CALL_CHARS}; "
                "send shorter values"
            )
        if not raw.strip():
            return {}, None
        text = raw
        try:
            raw = json.loads(raw)
        except RecursionError:  # nested deeper than the decoder's stack
            return {}, _TOO_DEEP
        except ValueError as exc:  # also ints over 4300 digits
            return {}, f"the arguments are not valid JSON ({exc}): {_short(raw)}"
    else:
        text = None
    if not isinstance(raw, dict):
        return {}, f'"arguments" must be a JSON object, got {type(raw).__name__}'
    error = _depth_error(raw, text)
    return ({}, error) if error else (raw, None)


def _call_from_payload(payload: str, call_id: str) -> tuple[ToolCall, str | None]:
    """The call in one ``<tool_call>`` payload, and the raw text of its arguments if known."""
    if len(payload) <= MAX_CALL_CHARS:
        simple = _SIMPLE_CALL.fullmatch(payload)
        if simple is not None:
            raw = simple.group(2)
            try:
                arguments, end = _SCAN(raw, 0)
            except (StopIteration, ValueError, RecursionError):
                pass  # the general path below gives the precise error
            else:
                if end == len(raw) and type(arguments) is dict:
                    error = _depth_error(arguments, raw)
                    if error is not None:
                        return ToolCall(call_id, simple.group(1), {}, error), None
                    return ToolCall(call_id, simple.group(1), arguments), raw
    return _general_call(payload, call_id), None


def _general_call(payload: str, call_id: str) -> ToolCall:
    if len(payload) > MAX_CALL_CHARS:
        return ToolCall(
            call_id,
            "",
            {},
            f"the tool call is {len(payload)} characters, over the limit of {MAX_CALL_CHARS}; "
            "send shorter arguments",
        )
    try:
        obj = json.loads(payload)
    except RecursionError:  # nested deeper than the decoder's stack
        return ToolCall(
            call_id,
            "",
            {},
            "the tool call is not valid JSON here: it nests objects or arrays too deep to read "
            f"(at most {MAX_ARGUMENT_DEPTH} levels); send flatter arguments",
        )
    except ValueError as exc:  # also ints over 4300 digits
        return ToolCall(
            call_id,
            "",
            {},
            f"the tool call is not valid JSON ({exc}). Write exactly "
            '<tool_call>{"name": "<tool>", "arguments": {...}}</tool_call>; got: '
            f"{_short(payload)}",
        )
    if not isinstance(obj, dict):
        return ToolCall(
            call_id,
            "",
            {},
            'a tool call must be a JSON object with "name" and "arguments", got '
            f"{type(obj).__name__}",
        )
    name = obj.get("name")
    if not isinstance(name, str) or not name:
        return ToolCall(
            call_id,
            "",
            {},
            'the tool call has no "name"; write {"name": "<tool>", "arguments": {...}}',
        )
    arguments, error = _decode_arguments(obj.get("arguments", obj.get("parameters")))
    return ToolCall(call_id, name, arguments, error)


def parse_text(text: str, id_prefix: str = "call") -> tuple[str, list[ToolCall]]:
    """Split model text into (content without tool-call blocks, tool calls).

    Call ids are ``f"{id_prefix}_{i}"`` in order of appearance.
    """
    content, calls, _ = _parse_text(text, id_prefix)
    return content, calls


def _parse_text(text: str, id_prefix: str) -> tuple[str, list[ToolCall], list[str | None]]:
    if OPEN_TAG not in text:
        return text, [], []
    calls: list[ToolCall] = []
    raws: list[str | None] = []
    pieces: list[str] = []
    end = 0
    # str.find, not a regex: a lazy regex rescans the rest of the text from every unclosed tag,
    # which is quadratic in a degenerate generation that repeats <tool_call>.
    while (start := text.find(OPEN_TAG, end)) >= 0:
        close = text.find(CLOSE_TAG, start + len(OPEN_TAG))
        if close < 0:
            break
        pieces.append(text[end:start])
        end = close + len(CLOSE_TAG)
        call_id = f"{id_prefix}_{len(calls)}"
        if len(calls) >= MAX_CALLS_PER_TURN:  # refused unread: no JSON decoding past the limit
            named = _NAME_ONLY.match(text, start + len(OPEN_TAG), close)
            calls.append(ToolCall(call_id, named.group(1) if named else "", {}, _OVER_LIMIT))
            raws.append(None)
            continue
        call, raw = _call_from_payload(text[start + len(OPEN_TAG) : close], call_id)
        calls.append(call)
        raws.append(raw)
    pieces.append(text[end:])
    content = "".join(pieces)
    if OPEN_TAG in content:
        tail = content[content.index(OPEN_TAG) :]
        content = content[: content.index(OPEN_TAG)]
        calls.append(
            ToolCall(
                f"{id_prefix}_{len(calls)}",
                "",
                {},
                f"a {OPEN_TAG} tag is not closed; end every call with {CLOSE_TAG}. Got: "
                f"{_short(tail)}",
            )
        )
        raws.append(None)
    return content.strip(), calls, raws


def _parse_openai_calls(raw_calls: Any, id_prefix: str) -> list[ToolCall]:
    if not isinstance(raw_calls, list | tuple):
        return [ToolCall(f"{id_prefix}_0", "", {}, '"tool_calls" must be a list of calls')]
    calls: list[ToolCall] = []
    seen: set[str] = set()  # a set, not a scan of `calls`: a turn of n calls stays O(n)
    for i, raw in enumerate(raw_calls):
        fallback_id = f"{id_prefix}_{i}"
        if not isinstance(raw, dict):
            calls.append(ToolCall(fallback_id, "", {}, "each tool call must be an object"))
            continue
        call_id = raw.get("id")
        call_id = call_id if isinstance(call_id, str) and call_id else fallback_id
        if call_id in seen:  # results are matched to calls by id
            unique = f"{call_id}_{i}"
            while unique in seen:
                unique += "_"
            seen.add(unique)
            calls.append(
                ToolCall(
                    unique,
                    "",
                    {},
                    f"tool call id {call_id!r} is used twice in one turn; "
                    "give each call its own id",
                )
            )
            continue
        seen.add(call_id)
        function = raw.get("function", raw)
        if not isinstance(function, dict):
            calls.append(ToolCall(call_id, "", {}, '"function" must be an object'))
            continue
        name = function.get("name")
        if not isinstance(name, str) or not name:
            calls.append(ToolCall(call_id, "", {}, 'the tool call has no "function.name"'))
            continue
        if i >= MAX_CALLS_PER_TURN:  # refused unread: its arguments are not decoded
            calls.append(ToolCall(call_id, name, {}, _OVER_LIMIT))
            continue
        arguments, error = _decode_arguments(function.get("arguments"))
        calls.append(ToolCall(call_id, name, arguments, error))
    return calls


def _limit(calls: list[ToolCall]) -> list[ToolCall]:
    if len(calls) <= MAX_CALLS_PER_TURN:
        return calls
    over = [
        c if c.error == _OVER_LIMIT else ToolCall(c.id, c.name, {}, _OVER_LIMIT)
        for c in calls[MAX_CALLS_PER_TURN:]
    ]
    return calls[:MAX_CALLS_PER_TURN] + over


def _openai_entry(call: ToolCall, raw: str | None = None) -> dict[str, Any]:
    if raw is None:
        try:
            raw = "{}" if call.error else _ENCODE(call.arguments)
        except (RecursionError, ValueError, TypeError):  # absurdly nested arguments
            raw = "{}"
    return {
        "id": call.id,
        "type": "function",
        "function": {"name": call.name or "invalid_tool_call", "arguments": raw},
    }


def _parse_one_call(text: str, id_prefix: str) -> ParsedAction | None:
    """The fast path: exactly one simple, well-formed call; ``None`` sends it the general way."""
    if len(text) > MAX_CALL_CHARS or text.count(OPEN_TAG) != 1:
        return None
    match = _ONE_CALL.fullmatch(text)
    if match is None:
        return None
    head, name, raw, tail = match.groups()
    try:
        arguments, end = _SCAN(raw, 0)
    except (StopIteration, ValueError, RecursionError):
        return None
    if end != len(raw) or type(arguments) is not dict or _depth_error(arguments, raw):
        return None  # the general path answers too deep arguments with an error
    if _suspect(text):
        return None  # the general path replaces lone surrogates
    call_id = f"{id_prefix}_0"
    content = f"{head}{tail}".strip() if head or tail else ""
    message: Message = {
        "role": "assistant",
        "content": content,
        "tool_calls": [
            {"id": call_id, "type": "function", "function": {"name": name, "arguments": raw}}
        ],
    }
    return ParsedAction(message, (ToolCall(call_id, name, arguments),))


def _as_text(value: Any, what: str) -> tuple[str, str | None]:
    """``str(value)``, or a placeholder and the error to answer when ``__str__`` raises."""
    try:
        return str(value), None
    except Exception as exc:  # parsing never raises; the agent reads why
        kind = type(value).__name__
        return f"(a {kind} that cannot be shown as text)", (
            f"{what} is a {kind} whose str() raised {type(exc).__name__}; send text or an "
            "assistant message dict"
        )


def _may_hold_surrogate_calls(raw_calls: Any) -> bool:
    """Whether OpenAI ``tool_calls`` may carry a lone surrogate in their arguments."""
    if not isinstance(raw_calls, list | tuple):
        return False
    for raw in raw_calls:
        function = raw.get("function", raw) if isinstance(raw, dict) else None
        arguments = function.get("arguments") if isinstance(function, dict) else None
        if isinstance(arguments, str):
            if _suspect(arguments):
                return True
        elif arguments is not None:
            return True  # decoded already: only a walk tells
    return False


def _scrub_action(content: str, calls: list[ToolCall]) -> tuple[str, int]:
    """Replace lone surrogates in ``content`` and in the calls' arguments (in place) by U+FFFD.

    Returns the content and how many strings were changed. A lone surrogate cannot be written
    as UTF-8: left in, it would break the episode record, the HTTP answer, and any tool that
    encodes its arguments (sqlite, a subprocess).
    """
    content, n = _SURROGATE.subn(REPLACEMENT, content)
    counter = [1 if n else 0]
    for call in calls:
        if call.arguments:
            before = counter[0]
            arguments = _scrub(call.arguments, counter)
            if counter[0] != before:
                call.arguments = arguments
    return content, counter[0]


def parse_action(action: Any, id_prefix: str = "call") -> ParsedAction:
    """Normalise an action (text or assistant dict) into a message and its tool calls.

    Never raises: anything that is not text or a dict is treated as text via ``str()`` (an
    object whose ``str()`` raises becomes a call carrying that error). Lone surrogates (text
    that cannot be written as UTF-8) in the content and the calls' arguments are replaced by
    :data:`REPLACEMENT`, and counted in :attr:`ParsedAction.replaced`.
    """
    try:
        return _parse_action(action, id_prefix)
    except Exception as exc:  # a last guard: step must answer any action
        error = (
            f"the action (a {type(action).__name__}) could not be read "
            f"({type(exc).__name__}); send text or an assistant message dict"
        )
        call = ToolCall(f"{id_prefix}_0", "", {}, error)
        message: Message = {"role": "assistant", "content": "", "tool_calls": [_openai_entry(call)]}
        return ParsedAction(message, (call,))


def _parse_action(action: Any, id_prefix: str) -> ParsedAction:
    raws: list[str | None] = []
    suspect = False
    unreadable: str | None = None
    if type(action) is str:
        fast = _parse_one_call(action, id_prefix)
        if fast is not None:
            return fast
        content, calls, raws = _parse_text(action, id_prefix)
        suspect = _suspect(action)
    elif isinstance(action, dict):
        raw_content: Any = action.get("content")
        if raw_content is None:
            content = ""
        elif isinstance(raw_content, str):
            content = raw_content
        elif isinstance(raw_content, list):
            try:
                content = json.dumps(raw_content, default=str)
            except (ValueError, TypeError, RecursionError):  # big ints, nesting, bad __str__
                content = "(content that cannot be shown as JSON)"
        else:
            content, unreadable = _as_text(raw_content, "the content")
        raw_calls = action.get("tool_calls")
        if raw_calls:
            calls = _parse_openai_calls(raw_calls, id_prefix)
            suspect = _may_hold_surrogate_calls(raw_calls)
        elif unreadable is not None:
            calls = [ToolCall(f"{id_prefix}_0", "", {}, unreadable)]
        else:
            content, calls, raws = _parse_text(content, id_prefix)
        suspect = suspect or _suspect(content)
    else:
        text, error = _as_text(action, "the action")
        if error is not None:
            content, calls = "", [ToolCall(f"{id_prefix}_0", "", {}, error)]
        else:
            content, calls, raws = _parse_text(text, id_prefix)
            suspect = _suspect(text)
    replaced = 0
    if suspect:
        content, replaced = _scrub_action(content, calls)
        raws = [r if r is None else _SURROGATE.sub(REPLACEMENT, r) for r in raws]
    if len(calls) > MAX_CALLS_PER_TURN:
        calls, raws = _limit(calls), raws[:MAX_CALLS_PER_TURN]
    message: Message = {"role": "assistant", "content": content}
    if calls:
        if len(raws) < len(calls):
            raws = raws + [None] * (len(calls) - len(raws))
        message["tool_calls"] = [_openai_entry(c, r) for c, r in zip(calls, raws, strict=True)]
    return ParsedAction(message, tuple(calls), replaced)
