"""The gateway's decoding controls: forced tool calls, ``top_logprobs``, token-by-token streaming.

A stock ``openai`` client against real gateways: one in front of the tiny HF model, one in front
of the vLLM stand-in (tests/gateway_support.py; a stand-in, as there is no vLLM here), whose
scripted answers make the upstream cases exact.
"""

from __future__ import annotations

import json
import math
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
openai = pytest.importorskip("openai")

from gateway_support import ADMIN_KEY, AWS, VLLMStandIn, hf_policy, running, standin, tiny  # noqa: E402

import simenv  # noqa: E402
from simenv.server.gateway import Gateway, GatewayServer, Policy, UpstreamSampler  # noqa: E402
from simenv.server.gateway.chat import visible_deltas  # noqa: E402

SCENARIO = "support/Refunds-v1"
LOOKUP = {"type": "function", "function": {"name": "lookup_order"}}


@pytest.fixture(scope="module")
def gateway() -> Iterator[GatewayServer]:
    with running(Gateway(hf_policy(max_new_tokens=12), admin_key=ADMIN_KEY, aws=AWS)) as server:
        yield server


@pytest.fixture(scope="module")
def upstream() -> Iterator[tuple[GatewayServer, VLLMStandIn]]:
    with standin() as stand:
        _, tokenizer = tiny()
        policy = Policy(tokenizer, UpstreamSampler(stand.url, "tiny-up"), "tiny-up")
        with running(Gateway(policy, admin_key=ADMIN_KEY, aws=AWS)) as server:
            yield server, stand


def tools() -> list[dict[str, Any]]:
    _, info = simenv.make(SCENARIO).reset(seed=0)
    return list(info["tools"])


def agent(server: GatewayServer) -> tuple[str, Any]:
    trajectory, key = server.gateway.create()
    return trajectory.id, openai.OpenAI(base_url=f"{server.url}/v1", api_key=key, max_retries=0)


def turns(server: GatewayServer, tid: str) -> list[dict[str, Any]]:
    trajectory = server.gateway.store.get(tid)
    with trajectory.lock:
        return list(trajectory.episode().metadata["turns"])


def decode(ids: list[int]) -> str:
    _, tokenizer = tiny()
    return str(tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False))


ASK = [{"role": "user", "content": "Look up order O-1 for me."}]


# ----------------------------------------------------------------------------- tool_choice
def test_a_named_function_is_forced_with_the_hf_policy_and_its_prefix_is_a_prompt(
    gateway: GatewayServer,
) -> None:
    tid, client = agent(gateway)
    prefix = gateway.gateway.policy.forced_prefix(LOOKUP)
    assert prefix == '<tool_call>{"name": "lookup_order", "arguments": '  # the template's form
    answer = client.chat.completions.create(
        model="t", messages=ASK, tools=tools(), tool_choice=LOOKUP, max_tokens=10
    )
    message = answer.choices[0].message
    [turn] = turns(gateway, tid)
    assert decode(turn["prompt_ids"]).endswith("<|im_start|>assistant\n" + prefix)
    assert not decode(turn["completion_ids"]).startswith("<tool_call>")  # sampled part only
    assert turn["request"]["forced_prefix"] == prefix
    if message.tool_calls:  # the untrained model may not close the call; then it is content
        assert [c.function.name for c in message.tool_calls] == ["lookup_order"]
    else:
        assert (message.content or "").startswith(prefix)
    # the agent echoes the turn back: the forced prefix is part of the text it extends
    echoed = message.model_dump(exclude_none=True)
    tool_reply = (
        [{"role": "tool", "tool_call_id": message.tool_calls[0].id, "content": "5"}]
        if message.tool_calls
        else [{"role": "user", "content": "and?"}]
    )
    client.chat.completions.create(
        model="t", messages=[*ASK, echoed, *tool_reply], tools=tools(), max_tokens=4
    )
    first, second = turns(gateway, tid)
    assert second["segment"] == first["segment"] == 0  # one training sequence
    assert second["prompt_ids"][: len(first["prompt_ids"]) + len(first["completion_ids"])] == [
        *first["prompt_ids"],
        *first["completion_ids"],
    ]


def test_required_forces_the_start_of_a_call(gateway: GatewayServer) -> None:
    tid, client = agent(gateway)
    client.chat.completions.create(
        model="t", messages=ASK, tools=tools(), tool_choice="required", max_tokens=6
    )
    [turn] = turns(gateway, tid)
    assert decode(turn["prompt_ids"]).endswith('<|im_start|>assistant\n<tool_call>{"name": "')


def test_upstream_named_function_gets_the_prefix_and_vllms_structured_output(
    upstream: tuple[GatewayServer, VLLMStandIn],
) -> None:
    server, stand = upstream
    tid, client = agent(server)
    schema = next(t for t in tools() if t["function"]["name"] == "lookup_order")
    stand.script = ['{"order_id": "O-1"}']  # what a JSON-constrained engine ends with (then EOS)
    answer = client.chat.completions.create(
        model="m", messages=ASK, tools=tools(), tool_choice=LOOKUP
    )
    sent = stand.requests[-1]
    assert sent["structured_outputs"] == {"json": schema["function"]["parameters"]}
    prefix = '<tool_call>{"name": "lookup_order", "arguments": '
    assert decode(sent["prompt"]).endswith(prefix)
    [call] = answer.choices[0].message.tool_calls
    assert call.function.name == "lookup_order"
    assert json.loads(call.function.arguments) == {"order_id": "O-1"}
    assert answer.choices[0].finish_reason == "tool_calls"
    [turn] = turns(server, tid)
    assert decode(turn["completion_ids"]) == '{"order_id": "O-1"}<|im_end|>'  # as sampled
    stand.script = ['{"order_id": "O-2"}}</tool_call>']  # a model that closes the call itself
    again = client.chat.completions.create(
        model="m", messages=ASK, tools=tools(), tool_choice=LOOKUP
    )
    assert json.loads(again.choices[0].message.tool_calls[0].function.arguments) == {
        "order_id": "O-2"
    }
    stand.script = ["not json at all"]  # a continuation that is no call: plain content
    bad = client.chat.completions.create(model="m", messages=ASK, tools=tools(), tool_choice=LOOKUP)
    assert bad.choices[0].message.tool_calls is None
    assert bad.choices[0].message.content == prefix + "not json at all"
    assert bad.choices[0].finish_reason == "stop"


def test_upstream_required_and_auto(upstream: tuple[GatewayServer, VLLMStandIn]) -> None:
    server, stand = upstream
    _, client = agent(server)
    stand.script = ['lookup_order", "arguments": {"order_id": "O-3"}}</tool_call>']
    answer = client.chat.completions.create(
        model="m", messages=ASK, tools=tools(), tool_choice="required"
    )
    assert decode(stand.requests[-1]["prompt"]).endswith('<tool_call>{"name": "')
    assert "structured_outputs" not in stand.requests[-1]  # only a named call has one schema
    assert answer.choices[0].message.tool_calls[0].function.name == "lookup_order"
    stand.script = ["plain words"]
    auto = client.chat.completions.create(model="m", messages=ASK, tools=tools())
    assert decode(stand.requests[-1]["prompt"]).endswith("<|im_start|>assistant\n")  # not forced
    assert auto.choices[0].message.content == "plain words"


def test_tool_choice_none_never_returns_tool_calls(
    upstream: tuple[GatewayServer, VLLMStandIn],
) -> None:
    server, stand = upstream
    _, client = agent(server)
    call = '<tool_call>{"name": "lookup_order", "arguments": {"order_id": "O-1"}}</tool_call>'
    stand.script = [call, call]
    none = client.chat.completions.create(
        model="m", messages=ASK, tools=tools(), tool_choice="none"
    )
    assert "Tools:" not in decode(stand.requests[-1]["prompt"])  # the tools are not rendered
    assert none.choices[0].message.tool_calls is None
    assert none.choices[0].message.content == call and none.choices[0].finish_reason == "stop"
    auto = client.chat.completions.create(model="m", messages=ASK, tools=tools())
    assert auto.choices[0].message.tool_calls  # the same text with "auto": a call


def _status(server: GatewayServer, key: str, body: dict[str, Any]) -> tuple[int, str]:
    request = urllib.request.Request(
        server.url + "/v1/chat/completions",
        json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return int(response.status), ""
    except urllib.error.HTTPError as exc:
        with exc:
            return int(exc.code), json.loads(exc.read())["error"]["message"]


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"tools": "TOOLS", "tool_choice": {"type": "function", "function": {"name": "nope"}}},
         "tool_choice names the function 'nope', which is not in tools"),
        ({"tool_choice": LOOKUP}, "tool_choice names the function 'lookup_order'"),
        ({"tool_choice": "required"}, 'tool_choice "required" needs tools'),
        ({"tool_choice": {"type": "function"}}, "tool_choice must be"),
        ({"logprobs": True, "top_logprobs": 21},
         "top_logprobs must be an integer in [0, 20], got 21"),
        ({"logprobs": True, "top_logprobs": -1}, "top_logprobs must be an integer in [0, 20]"),
        ({"logprobs": True, "top_logprobs": 2.5}, "top_logprobs must be an integer in [0, 20]"),
        ({"top_logprobs": 3}, "top_logprobs needs logprobs: true"),
    ],
)  # fmt: skip
def test_bad_decoding_requests_are_400_with_the_reason(
    gateway: GatewayServer, fields: dict[str, Any], reason: str
) -> None:
    tid, _ = agent(gateway)
    key = f"{tid}.{gateway.gateway.store.get(tid).secret}"
    body = {"messages": ASK, "max_tokens": 2, **fields}
    if body.get("tools") == "TOOLS":
        body["tools"] = tools()
    status, message = _status(gateway, key, body)
    assert status == 400 and reason in message, message
    assert turns(gateway, tid) == []  # nothing sampled, nothing recorded
    ok = {"messages": ASK, "max_tokens": 2, "logprobs": True, "top_logprobs": 20}
    assert _status(gateway, key, ok)[0] == 200  # the bounds themselves are fine


# ----------------------------------------------------------------------------- top_logprobs
def test_top_logprobs_come_in_openais_shape_from_the_hf_policy(gateway: GatewayServer) -> None:
    tid, client = agent(gateway)
    answer = client.chat.completions.create(
        model="t",
        messages=ASK,
        max_tokens=6,
        logprobs=True,
        top_logprobs=5,
        seed=3,
        extra_body={"return_tokens_as_token_ids": True},  # token texts can be partial UTF-8
    )
    content = answer.choices[0].logprobs.content
    [turn] = turns(gateway, tid)
    assert [entry.logprob for entry in content] == turn["logprobs"]
    for entry, token in zip(content, turn["completion_ids"], strict=True):
        top = entry.top_logprobs
        assert len(top) == 5
        assert [t.logprob for t in top] == sorted((t.logprob for t in top), reverse=True)
        assert entry.logprob <= top[0].logprob + 1e-6
        assert all(t.bytes == list(t.token.encode()) for t in top)
        assert entry.token == f"token_id:{token}"
        if entry.token in [t.token for t in top]:  # the sampled token, when among the top
            assert math.isclose(
                next(t.logprob for t in top if t.token == entry.token), entry.logprob
            )
        assert sum(math.exp(t.logprob) for t in top) <= 1 + 1e-6
    none = client.chat.completions.create(
        model="t", messages=ASK, max_tokens=3, logprobs=True, seed=3
    )
    assert all(entry.top_logprobs == [] for entry in none.choices[0].logprobs.content)


def test_top_logprobs_from_an_upstream_server_as_token_ids(
    upstream: tuple[GatewayServer, VLLMStandIn],
) -> None:
    server, stand = upstream
    _, client = agent(server)
    answer = client.chat.completions.create(
        model="m",
        messages=ASK,
        max_tokens=4,
        logprobs=True,
        top_logprobs=3,
        extra_body={"return_tokens_as_token_ids": True},
    )
    assert stand.requests[-1]["logprobs"] == 3
    for entry in answer.choices[0].logprobs.content:
        assert len(entry.top_logprobs) == 3
        assert all(t.token.startswith("token_id:") for t in entry.top_logprobs)
        assert [t.logprob for t in entry.top_logprobs] == sorted(
            (t.logprob for t in entry.top_logprobs), reverse=True
        )


# ----------------------------------------------------------------------------- streaming
def _stream(client: Any, **fields: Any) -> tuple[list[str], Any]:
    chunks = list(client.chat.completions.create(model="t", messages=ASK, stream=True, **fields))
    deltas = [
        c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content
    ]
    return deltas, chunks


def test_streaming_is_token_by_token_and_records_the_same_turn(gateway: GatewayServer) -> None:
    fields = {"max_tokens": 12, "seed": 11, "temperature": 1.0}
    plain_tid, plain = agent(gateway)
    whole = plain.chat.completions.create(model="t", messages=ASK, **fields)
    live_tid, live = agent(gateway)
    deltas, chunks = _stream(live, **fields)
    [expected], [streamed] = turns(gateway, plain_tid), turns(gateway, live_tid)
    for name in ("prompt_ids", "completion_ids", "logprobs", "finish_reason"):
        assert streamed[name] == expected[name], name
    assert "".join(deltas) == (whole.choices[0].message.content or "")
    assert len(deltas) > 1  # several content chunks: sent as the tokens came
    finish = [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ]
    assert finish == [whole.choices[0].finish_reason]


def test_a_stream_holds_back_stop_strings(gateway: GatewayServer) -> None:
    fields = {"max_tokens": 12, "seed": 5, "temperature": 1.0}
    _, plain = agent(gateway)
    text = plain.chat.completions.create(model="t", messages=ASK, **fields).choices[0].message
    full = text.content or ""
    assert len(full) > 4, full
    stop = full[3:5]
    _, live = agent(gateway)
    deltas, _ = _stream(live, stop=[stop], **fields)
    assert "".join(deltas) == full[: full.find(stop)]
    assert stop not in "".join(deltas)


def test_stream_deltas_hold_back_calls_stops_and_partial_markers() -> None:
    policy = hf_policy()
    text = 'Sure. <tool_call>{"name": "x", "arguments": {}}</tool_call> after'
    ids = policy.encode(text)
    assert "".join(visible_deltas(policy, ids, "", ())) == "Sure. "
    assert "".join(visible_deltas(policy, policy.encode("abc STOP def"), "", ("STOP",))) == "abc "
    assert "".join(visible_deltas(policy, policy.encode("ends with <tool_"), "", ())) == (
        "ends with "
    )  # a marker that may be starting is held back
    assert "".join(visible_deltas(policy, ids, '<tool_call>{"name": "', ())) == ""  # forced


def test_an_abandoned_stream_frees_its_trajectory_and_is_not_recorded(
    gateway: GatewayServer,
) -> None:
    tid, client = agent(gateway)
    key = f"{tid}.{gateway.gateway.store.get(tid).secret}"
    body = {"messages": ASK, "max_tokens": 12, "stream": True, "seed": 1}
    request = urllib.request.Request(
        gateway.url + "/v1/chat/completions",
        json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    response = urllib.request.urlopen(request, timeout=60)
    assert response.readline().startswith(b"data: ")  # the first event, then hang up
    response.close()
    answer = client.chat.completions.create(model="t", messages=ASK, max_tokens=2)
    assert answer.choices  # the trajectory was not left locked
    assert gateway.gateway.wait_idle(10)
    recorded = turns(gateway, tid)
    assert 1 <= len(recorded) <= 2  # the next turn; the abandoned one only if it was finished
    assert recorded[-1]["request"]["max_tokens"] == 2


def test_a_paused_gateway_refuses_a_stream_before_it_starts(gateway: GatewayServer) -> None:
    tid, client = agent(gateway)
    gateway.gateway.pause()
    try:
        with pytest.raises(openai.RateLimitError):
            _stream(client, max_tokens=3)
    finally:
        gateway.gateway.resume()
    assert turns(gateway, tid) == [] and gateway.gateway.in_flight == 0
