"""OpenAI chat completions on the gateway: the request checked, the answer and its SSE stream.

:func:`parse_request` validates a ``/v1/chat/completions`` body (400 naming the field);
:func:`finish` turns sampled ids into the assistant message (Hermes/Qwen ``<tool_call>`` blocks
parsed by :mod:`simenv.parsing` into ``tool_calls`` with fresh ids; a malformed call comes back
as plain content), applying ``stop`` strings; :func:`completion_body` and :func:`stream_chunks`
write the answer. ``logprobs`` (with ``top_logprobs``, OpenAI's shape) and token ids (vLLM's
``return_token_ids`` and ``return_tokens_as_token_ids``) are only in the answer when the
request asks for them. :func:`visible_deltas` and :func:`live_chunks` stream a turn token by
token as it is sampled.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from simenv.parsing import CLOSE_TAG, OPEN_TAG, parse_action
from simenv.server.gateway.errors import Invalid
from simenv.server.gateway.policy import Policy, Sampled
from simenv.server.gateway.trajectories import Completed
from simenv.types import Message

__all__ = [
    "ChatRequest",
    "completion_body",
    "finish",
    "live_chunks",
    "parse_request",
    "stream_chunks",
    "visible_deltas",
]

ROLES = frozenset({"system", "developer", "user", "assistant", "tool"})


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """A checked chat-completions request."""

    messages: list[Message]
    tools: list[Any] | None
    tool_choice: Any
    temperature: float | None
    top_p: float | None
    max_tokens: int | None
    stop: tuple[str, ...]
    stream: bool
    include_usage: bool
    logprobs: bool
    top_logprobs: int
    token_ids: bool
    tokens_as_ids: bool
    seed: int | None
    raw: dict[str, Any]


def _number(body: dict[str, Any], name: str, low: float, high: float) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise Invalid(f"{name} must be a number in [{low}, {high}], got {str(value)[:40]}")
    return float(value)


def _flag(body: dict[str, Any], name: str) -> bool:
    value = body.get(name, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise Invalid(f"{name} must be true or false")
    return value


def _content(message: dict[str, Any], k: int) -> Message:
    role = message.get("role")
    if not isinstance(role, str) or role not in ROLES:
        raise Invalid(f"messages[{k}].role must be one of {sorted(ROLES)}, got {str(role)[:40]!r}")
    content = message.get("content")
    if isinstance(content, list):  # content parts: only text is understood
        texts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text":
                raise Invalid(f"messages[{k}].content: only text parts are supported")
            if not isinstance(part.get("text"), str):
                raise Invalid(f"messages[{k}].content: a text part needs a string 'text'")
            texts.append(part["text"])
        content = "".join(texts)
    if content is None:
        if role != "assistant":
            raise Invalid(f"messages[{k}].content is required for role {role!r}")
        content = ""
    if not isinstance(content, str):
        raise Invalid(f"messages[{k}].content must be a string or a list of text parts")
    out: Message = {"role": "system" if role == "developer" else role, "content": content}
    calls = message.get("tool_calls")
    if calls is not None and role == "assistant":
        if not isinstance(calls, list) or not all(_well_formed_call(c) for c in calls):
            raise Invalid(
                f"messages[{k}].tool_calls must be a list of "
                '{"id", "type": "function", "function": {"name", "arguments"}}'
            )
        if calls:
            out["tool_calls"] = calls
    if role == "tool":
        call_id = message.get("tool_call_id")
        if not isinstance(call_id, str):
            raise Invalid(f"messages[{k}].tool_call_id (a string) is required for role 'tool'")
        out["tool_call_id"] = call_id
    name = message.get("name")
    if isinstance(name, str):
        out["name"] = name
    return out


def _well_formed_call(call: Any) -> bool:
    if not isinstance(call, dict) or not isinstance(call.get("id"), str):
        return False
    function = call.get("function")
    return (
        isinstance(function, dict)
        and isinstance(function.get("name"), str)
        and isinstance(function.get("arguments"), str | dict)
    )


def _tools(body: dict[str, Any]) -> list[Any] | None:
    tools = body.get("tools")
    if tools is None:
        return None
    if not isinstance(tools, list):
        raise Invalid("tools must be a list")
    for k, t in enumerate(tools):
        function = t.get("function") if isinstance(t, dict) else None
        if (
            not isinstance(t, dict)
            or t.get("type", "function") != "function"
            or not isinstance(function, dict)
            or not isinstance(function.get("name"), str)
        ):
            raise Invalid(f'tools[{k}] must be {{"type": "function", "function": {{"name", ...}}}}')
    return tools or None


def _tool_choice(body: dict[str, Any]) -> Any:
    choice = body.get("tool_choice")
    if choice is None or choice in ("auto", "none", "required"):
        return choice or "auto"
    function = choice.get("function") if isinstance(choice, dict) else None
    if isinstance(function, dict) and isinstance(function.get("name"), str):
        return choice
    raise Invalid('tool_choice must be "auto", "none", "required" or {"type": "function", ...}')


def _check_choice(choice: Any, tools: list[Any] | None) -> None:
    """A forcing ``tool_choice`` needs tools, and a named one a declared tool (400 otherwise)."""
    if choice == "required" and not tools:
        raise Invalid('tool_choice "required" needs tools: declare at least one in "tools"')
    if isinstance(choice, dict):
        name = choice["function"]["name"]
        declared = [t["function"]["name"] for t in tools or ()]
        if name not in declared:
            raise Invalid(
                f"tool_choice names the function {name[:64]!r}, which is not in tools "
                f"(declared: {declared[:20]})"
            )


def arguments_schema(request: ChatRequest) -> dict[str, Any] | None:
    """The JSON schema of a named ``tool_choice``'s arguments (for an upstream constraint)."""
    if not isinstance(request.tool_choice, dict):
        return None
    name = request.tool_choice["function"]["name"]
    for t in request.tools or ():
        if t["function"]["name"] == name:
            schema = t["function"].get("parameters")
            return schema if isinstance(schema, dict) and schema else {"type": "object"}
    return None


def parse_request(body: Any) -> ChatRequest:
    """Check a chat-completions body; every refusal is a 400 that names the field."""
    if not isinstance(body, dict):
        raise Invalid("the body must be a JSON object")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise Invalid("messages must be a non-empty list")
    if not all(isinstance(m, dict) for m in messages):
        raise Invalid("every message must be an object")
    checked = [_content(m, k) for k, m in enumerate(messages)]
    n = body.get("n", 1)
    if n is not None and n != 1:
        raise Invalid("n must be 1: the gateway records one completion per turn")
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    if max_tokens is not None and (
        isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1
    ):
        raise Invalid("max_tokens must be an integer of at least 1")
    stop = body.get("stop")
    if stop is not None and not isinstance(stop, str | list):
        raise Invalid("stop must be a string or a list of at most 4 non-empty strings")
    stops = (stop,) if isinstance(stop, str) else tuple(stop or ())
    if not all(isinstance(s, str) and s for s in stops) or len(stops) > 4:
        raise Invalid("stop must be a string or a list of at most 4 non-empty strings")
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise Invalid("seed must be an integer")
    options = body.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise Invalid("stream_options must be an object")
    top = body.get("top_logprobs")
    if top is not None and (
        isinstance(top, bool) or not isinstance(top, int) or not 0 <= top <= 20
    ):
        raise Invalid(f"top_logprobs must be an integer in [0, 20], got {str(top)[:40]}")
    logprobs = _flag(body, "logprobs")
    if top and not logprobs:
        raise Invalid("top_logprobs needs logprobs: true")
    tools, choice = _tools(body), _tool_choice(body)
    _check_choice(choice, tools)
    return ChatRequest(
        messages=checked,
        tools=tools,
        tool_choice=choice,
        temperature=_number(body, "temperature", 0.0, 2.0),
        top_p=_number(body, "top_p", 1e-9, 1.0),
        max_tokens=max_tokens,
        stop=stops,
        stream=_flag(body, "stream"),
        include_usage=bool((options or {}).get("include_usage")),
        logprobs=logprobs,
        top_logprobs=int(top or 0),
        token_ids=_flag(body, "return_token_ids"),
        tokens_as_ids=_flag(body, "return_tokens_as_token_ids"),
        seed=abs(seed) if seed is not None else None,
        raw=body,
    )


def finish(
    policy: Policy, sampled: Sampled, request: ChatRequest, version: int | str, forced: str = ""
) -> Completed:
    """The assistant message of a sampled completion, its finish reason, and what to record.

    A ``stop`` string cuts the completion at the first token whose text reaches it: the agent
    gets the text before the stop string, the record keeps the tokens as sampled up to there.
    ``forced`` is the tool-call prefix the gateway put at the end of the prompt: the completion's
    text is read after it (``raw`` starts with it, so the next prompt extends this one), and a
    forced call that the completion leaves unclosed (an upstream server's structured output
    ends with the arguments) is closed in the message, never in the record.
    """
    ids, logprobs = list(sampled.ids), list(sampled.logprobs)
    stopped = bool(ids) and ids[-1] in policy.stop_ids
    body = ids[:-1] if stopped else ids
    sampled_text = policy.decode(body)
    visible = sampled_text
    cut = _first_stop(sampled_text, request.stop)
    if cut is not None:
        keep = next(k for k in range(1, len(body) + 1) if len(policy.decode(body[:k])) > cut)
        ids, logprobs = body[:keep], logprobs[:keep]
        sampled_text, visible, stopped = policy.decode(ids), sampled_text[:cut], True
    raw, visible = forced + sampled_text, forced + visible
    finish_reason = "stop" if stopped else "length"
    message: Message = {"role": "assistant", "content": visible}
    if request.tool_choice != "none" and OPEN_TAG in visible:
        candidates = [visible]
        if forced and CLOSE_TAG not in visible:
            candidates.append(visible + ("}" if isinstance(request.tool_choice, dict) else ""))
            candidates[-1] += CLOSE_TAG
        for text in candidates:
            parsed = parse_action(text, id_prefix=f"call_{secrets.token_hex(6)}")
            if parsed.tool_calls and all(c.error is None for c in parsed.tool_calls):
                message = {
                    "role": "assistant",
                    "content": parsed.message["content"] or None,
                    "tool_calls": parsed.message["tool_calls"],
                }
                finish_reason = "tool_calls"
                break
    end_text = policy.token_text(ids[-1]) if stopped and cut is None else ""
    return Completed(ids, logprobs, raw, end_text, finish_reason, message, version)


def _first_stop(text: str, stops: tuple[str, ...]) -> int | None:
    found = [i for i in (text.find(s) for s in stops) if i >= 0]
    return min(found) if found else None


def _entry(policy: Policy, token: int, logprob: float, as_ids: bool) -> dict[str, Any]:
    text = f"token_id:{token}" if as_ids else policy.token_text(token)
    return {"token": text, "logprob": logprob, "bytes": list(text.encode("utf-8", "replace"))}


def _logprobs(
    policy: Policy,
    done: Completed,
    request: ChatRequest,
    top: list[list[tuple[int, float]]] | None,
) -> dict[str, Any]:
    content = []
    for k, (token, logprob) in enumerate(zip(done.ids, done.logprobs, strict=True)):
        entry = _entry(policy, token, logprob, request.tokens_as_ids)
        alternatives = top[k] if top is not None and k < len(top) else []
        entry["top_logprobs"] = [
            _entry(policy, t, lp, request.tokens_as_ids)
            for t, lp in alternatives[: request.top_logprobs]
        ]
        content.append(entry)
    return {"content": content}


def completion_body(
    policy: Policy,
    request: ChatRequest,
    done: Completed,
    prompt_ids: list[int],
    call_id: str,
    top: list[list[tuple[int, float]]] | None = None,
) -> dict[str, Any]:
    """The non-streamed ``chat.completion`` answer (``top``: the sampler's alternatives)."""
    choice: dict[str, Any] = {
        "index": 0,
        "message": done.message,
        "logprobs": _logprobs(policy, done, request, top) if request.logprobs else None,
        "finish_reason": done.finish_reason,
    }
    body: dict[str, Any] = {
        "id": call_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": policy.name,
        "choices": [choice],
        "usage": {
            "prompt_tokens": len(prompt_ids),
            "completion_tokens": len(done.ids),
            "total_tokens": len(prompt_ids) + len(done.ids),
        },
    }
    if request.token_ids:
        choice["token_ids"] = list(done.ids)
        body["prompt_token_ids"] = list(prompt_ids)
    return body


def stream_chunks(body: dict[str, Any], request: ChatRequest) -> Iterator[bytes]:
    """A whole answer as server-sent events: role, content, tool calls, finish, [DONE].

    For a sampler that cannot stream (an upstream server): the turn is generated whole and then
    streamed (the recorded tokens are those of the whole turn either way).
    """
    head = _head(body["id"], body["model"], body["created"])
    yield _event(head, {"role": "assistant", "content": ""})
    yield from _tail(head, body, request, sent="", logprobs_with_content=True)


def visible_deltas(
    policy: Policy, tokens: Iterable[int], forced: str, stops: tuple[str, ...]
) -> Iterator[str]:
    """The content an agent may see, piece by piece, as the tokens of a turn arrive.

    Held back: a ``<tool_call>`` block and everything after it (it becomes ``tool_calls``), a
    stop string and everything after it, the start of either that may be completing, and a
    character still being decoded. What is yielded is always a prefix of the turn's final
    content, so the rest is sent when the turn is finished (:func:`live_chunks`).
    """
    ids: list[int] = []
    sent = ""
    markers = (OPEN_TAG, *stops)
    for token in tokens:
        if token in policy.stop_ids:
            continue
        ids.append(token)
        text = forced + policy.decode(ids)
        ends = [i for i in (text.find(m) for m in markers) if i >= 0]
        safe = text[: min(ends)] if ends else text.rstrip("\ufffd")
        if not ends:
            for marker in markers:
                for k in range(min(len(marker) - 1, len(safe)), 0, -1):
                    if safe.endswith(marker[:k]):
                        safe = safe[:-k]
                        break
        if len(safe) > len(sent) and safe.startswith(sent):
            yield safe[len(sent) :]
            sent = safe


def live_chunks(
    head: dict[str, Any],
    deltas: Iterator[str],
    answer: Callable[[], dict[str, Any]],
    request: ChatRequest,
) -> Iterator[bytes]:
    """A turn streamed token by token: role, each content delta, then the rest of the answer.

    The rest: content the deltas held back, tool calls, finish reason and logprobs, usage.

    ``answer()`` finishes the turn (records it) and returns its ``chat.completion`` body.
    """
    yield _event(head, {"role": "assistant", "content": ""})
    sent = ""
    for delta in deltas:
        sent += delta
        yield _event(head, {"content": delta})
    yield from _tail(head, answer(), request, sent, logprobs_with_content=False)


def stream_error(head: dict[str, Any], message: str) -> Iterator[bytes]:
    """What a stream ends with when the model fails after its first token was sent."""
    error = {"message": message, "type": "upstream_error", "code": "InternalServiceError"}
    yield _sse({**head, "choices": [], "error": error})
    yield b"data: [DONE]\n\n"


def stream_head(call_id: str, model: str) -> dict[str, Any]:
    """The fields every chunk of one streamed answer shares."""
    return _head(call_id, model, int(time.time()))


def _head(call_id: str, model: str, created: int) -> dict[str, Any]:
    return {"id": call_id, "created": created, "model": model, "object": "chat.completion.chunk"}


def _event(head: dict[str, Any], delta: dict[str, Any], **extra: Any) -> bytes:
    entry = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": None} | extra
    return _sse({**head, "choices": [entry]})


def _tail(
    head: dict[str, Any],
    body: dict[str, Any],
    request: ChatRequest,
    sent: str,
    logprobs_with_content: bool,
) -> Iterator[bytes]:
    choice = body["choices"][0]
    message = choice["message"]
    content = message.get("content") or ""
    rest = content[len(sent) :] if content.startswith(sent) else ""
    if rest:
        extra = {"logprobs": choice["logprobs"]} if logprobs_with_content else {}
        yield _event(head, {"content": rest}, **extra)
    for k, call in enumerate(message.get("tool_calls") or ()):
        yield _event(head, {"tool_calls": [{"index": k, **call}]})
    last: dict[str, Any] = {"finish_reason": choice["finish_reason"]}
    if not (rest and logprobs_with_content):
        last["logprobs"] = choice["logprobs"]
    if "token_ids" in choice:
        last["token_ids"] = choice["token_ids"]
    yield _event(head, {}, **last)
    if request.include_usage:
        yield _sse({**head, "choices": [], "usage": body["usage"]})
    yield b"data: [DONE]\n\n"


def _sse(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload, ensure_ascii=False).encode() + b"\n\n"
