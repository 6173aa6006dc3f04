"""The agent gateway: a stock OpenAI client against a real gateway in front of the tiny model.

Real parts throughout (the tiny Qwen2 built in code, its tokenizer, the HTTP server, the
``openai`` SDK); the only stand-in is the vLLM server of the upstream path
(tests/gateway_support.py says so).
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import textwrap
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
openai = pytest.importorskip("openai")

from gateway_support import (  # noqa: E402
    ADMIN_KEY,
    AWS,
    VLLMStandIn,
    hf_policy,
    running,
    standin,
    tiny,
)

import simenv  # noqa: E402
from simenv.rollouts.store import read_episodes  # noqa: E402
from simenv.server.gateway import (  # noqa: E402
    Gateway,
    GatewayServer,
    Limits,
    Policy,
    UpstreamSampler,
    make_server,
)
from simenv.server.gateway.trajectories import TrajectoryStore  # noqa: E402

SCENARIO = "support/Refunds-v1"


@pytest.fixture(scope="module")
def gateway() -> Iterator[GatewayServer]:
    with running(Gateway(hf_policy(), admin_key=ADMIN_KEY, aws=AWS, limits=Limits(8))) as s:
        yield s


@pytest.fixture(scope="module")
def upstream() -> Iterator[tuple[GatewayServer, VLLMStandIn]]:
    with standin() as stand:
        _, tokenizer = tiny()
        policy = Policy(tokenizer, UpstreamSampler(stand.url, "tiny-upstream"), "tiny-upstream")
        with running(Gateway(policy, admin_key=ADMIN_KEY, aws=AWS)) as server:
            yield server, stand


def admin(
    server: GatewayServer, method: str, path: str, body: Any = None, key: str = ADMIN_KEY
) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        server.url + path, data, method=method, headers={"Authorization": f"Bearer {key}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, json.loads(exc.read())


def create(server: GatewayServer, **fields: Any) -> tuple[str, str]:
    status, body = admin(server, "POST", "/admin/trajectories", fields)
    assert status == 201, body
    return body["trajectory_id"], body["key"]


def client(server: GatewayServer, key: str, prefix: str = "") -> Any:
    return openai.OpenAI(base_url=f"{server.url}{prefix}/v1", api_key=key, max_retries=0)


def record(server: GatewayServer, tid: str) -> dict[str, Any]:
    status, body = admin(server, "GET", f"/admin/trajectories/{tid}")
    assert status == 200, body
    return body


def finish_and_take(server: GatewayServer, tid: str, rewards: list[float]) -> simenv.Episode:
    assert (
        admin(server, "POST", f"/admin/trajectories/{tid}/complete", {"status": "ready"})[0] == 200
    )
    assert (
        admin(server, "POST", f"/admin/trajectories/{tid}/reward", {"rewards": rewards})[0] == 200
    )
    status, body = admin(server, "POST", "/admin/take", {})
    assert status == 200
    [episode] = [simenv.Episode.from_dict(e) for e in body["episodes"] if e["episode_id"] == tid]
    return episode


def decode(ids: list[int]) -> str:
    _, tokenizer = tiny()
    return str(tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False))


# ----------------------------------------------------------------------------- end to end
def test_an_openai_agent_plays_a_scenario_and_its_tokens_re_render_to_what_it_received(
    gateway: GatewayServer,
) -> None:
    tid, key = create(gateway, group=3, scenario_id=SCENARIO)
    agent = client(gateway, key)
    env = simenv.make(SCENARIO)
    observation, info = env.reset(seed=0)
    messages = list(observation)
    received = []
    for _ in range(3):
        answer = agent.chat.completions.create(
            model="tiny", messages=messages, tools=info["tools"], max_tokens=12, temperature=0.8
        )
        message = answer.choices[0].message
        received.append(message)
        assert answer.choices[0].logprobs is None  # not asked for
        echoed = message.model_dump(exclude_none=True)  # what an SDK user appends
        messages.append(echoed)
        observation, _, terminated, truncated, _ = env.step(echoed)
        messages.extend(observation)
        if terminated or truncated:
            break
    episode = finish_and_take(gateway, tid, [1.0])
    turns = episode.metadata["turns"]
    assert len(turns) == len(received) == episode.turns
    stop_id = tiny()[1].eos_token_id
    for turn, message in zip(turns, received, strict=True):
        ids = turn["completion_ids"]
        text = decode(ids[:-1] if ids[-1] == stop_id else ids)
        if message.tool_calls:
            calls = simenv.parsing.parse_text(text)[1]
            assert [c.name for c in calls] == [c.function.name for c in message.tool_calls]
        else:
            assert text == message.content  # the exact text the client received
        assert len(turn["logprobs"]) == len(ids)
    for before, after in itertools.pairwise(turns):  # one training sequence
        assert after["prompt_ids"][: len(before["prompt_ids"]) + len(before["completion_ids"])] == [
            *before["prompt_ids"],
            *before["completion_ids"],
        ]
    assert episode.metadata["gateway"]["segments"] == 1
    assert episode.valid and episode.group == 3 and episode.scenario_id == SCENARIO
    assert episode.turn_rewards[-1] == 1.0 and episode.reward == 1.0
    assert "Tools: find_customer" in decode(turns[0]["prompt_ids"])  # tools rendered


def test_streaming_logprobs_and_token_ids_only_when_asked(gateway: GatewayServer) -> None:
    tid, key = create(gateway)
    agent = client(gateway, key)
    messages = [{"role": "user", "content": "hello"}]
    chunks = list(
        agent.chat.completions.create(
            model="tiny",
            messages=messages,
            max_tokens=8,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens >= 1
    finish = [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ]
    assert finish in (["stop"], ["length"])
    plain = agent.chat.completions.create(model="tiny", messages=messages, max_tokens=8)
    assert "token_ids" not in plain.choices[0].model_dump() and plain.choices[0].logprobs is None
    asked = agent.chat.completions.create(
        model="tiny",
        messages=messages,
        max_tokens=8,
        logprobs=True,
        extra_body={"return_token_ids": True},
    )
    dumped = asked.model_dump()
    turns = record(gateway, tid)
    assert turns["turns"] == 3 and turns["segments"] == 3  # the same prompt thrice: new segments
    assert len(asked.choices[0].logprobs.content) == len(dumped["choices"][0]["token_ids"])
    status, body = admin(
        gateway, "POST", f"/admin/trajectories/{tid}/complete", {"status": "failed"}
    )
    assert status == 200
    status, body = admin(gateway, "GET", f"/admin/trajectories/{tid}")
    episode = simenv.Episode.from_dict(body["episode"])
    assert not episode.valid  # a failed trajectory is never trained on
    first, _, third = episode.metadata["turns"]
    assert decode(first["completion_ids"]).removesuffix("<|im_end|>") == text
    assert third["completion_ids"] == dumped["choices"][0]["token_ids"]
    assert third["prompt_ids"] == dumped["prompt_token_ids"]
    assert [x["logprob"] for x in dumped["choices"][0]["logprobs"]["content"]] == third["logprobs"]


def test_sampling_parameters_and_stop(gateway: GatewayServer) -> None:
    _, key = create(gateway, sampling={"temperature": 0.0, "max_tokens": 5})
    agent = client(gateway, key)
    messages = [{"role": "user", "content": "count to three"}]
    one = agent.chat.completions.create(
        model="tiny", messages=messages, temperature=1.5, max_tokens=50
    )
    two = agent.chat.completions.create(
        model="tiny", messages=messages, temperature=1.5, max_tokens=50
    )
    assert one.choices[0].message.content == two.choices[0].message.content  # greedy: forced
    assert one.usage.completion_tokens <= 5  # the trajectory's max_tokens caps the request's
    full = one.choices[0].message.content or ""
    if len(full) > 2:
        stop = full[1:3]
        cut = agent.chat.completions.create(model="tiny", messages=messages, stop=[stop])
        assert cut.choices[0].message.content == full[: full.find(stop)]
        assert cut.choices[0].finish_reason == "stop"
    with pytest.raises(openai.BadRequestError, match="n must be 1"):
        agent.chat.completions.create(model="tiny", messages=messages, n=2)
    with pytest.raises(openai.BadRequestError, match="temperature"):
        agent.chat.completions.create(model="tiny", messages=messages, temperature=3)
    assert client(gateway, key).models.list().data[0].id == "tiny"


# ----------------------------------------------------------------------------- tool calls, upstream
CALL = '<tool_call>{"name":"lookup_order","arguments":{"order_id":"O-1"}}</tool_call>'


def test_upstream_tool_calls_fresh_ids_and_one_segment(
    upstream: tuple[GatewayServer, VLLMStandIn],
) -> None:
    server, stand = upstream
    tid, key = create(server)
    agent = client(server, key, prefix=f"/trajectories/{tid}")  # named by the path prefix
    env = simenv.make(SCENARIO)
    observation, info = env.reset(seed=1)
    messages = list(observation)
    stand.script = [f"Let me look.{CALL}", "<tool_call>{not json</tool_call>", "All done."]
    ids = []
    for _ in range(3):
        answer = agent.chat.completions.create(model="m", messages=messages, tools=info["tools"])
        message = answer.choices[0].message
        messages.append(message.model_dump(exclude_none=True))
        if message.tool_calls:
            ids += [c.id for c in message.tool_calls]
            messages.append({"role": "tool", "tool_call_id": ids[-1], "content": '{"total": 5}'})
        else:
            messages.append({"role": "user", "content": "ok"})
    assert stand.requests[0]["return_token_ids"] and isinstance(stand.requests[0]["prompt"], list)
    summary = record(server, tid)
    assert summary["segments"] == 1 and summary["turns"] == 3  # the echoed call was recognised
    assert len(ids) == 1 and ids[0].startswith("call_")
    # the malformed call came back as plain content, the well-formed one as tool_calls
    assert admin(server, "POST", f"/admin/trajectories/{tid}/complete", {})[0] == 200
    episode = simenv.Episode.from_dict(record(server, tid)["episode"])
    actions = [s.action for s in episode.steps]
    assert actions[0]["tool_calls"][0]["function"] == {
        "name": "lookup_order",
        "arguments": '{"order_id":"O-1"}',
    }
    assert actions[0]["content"] == "Let me look."
    first = episode.steps[0]  # the call, and its result as the agent reported it next turn
    assert [(c.name, c.arguments) for c in first.tool_calls] == [
        ("lookup_order", {"order_id": "O-1"})
    ]
    assert [(r.tool_call_id, r.content, r.provenance) for r in first.tool_results] == [
        (ids[0], '{"total": 5}', "agent")
    ]
    assert episode.steps[1].tool_calls == () and episode.steps[1].tool_results == ()
    assert actions[1] == {"role": "assistant", "content": "<tool_call>{not json</tool_call>"}
    assert [t["finish_reason"] for t in episode.metadata["turns"]] == ["tool_calls", "stop", "stop"]


def test_an_unrecognised_tool_call_echo_starts_a_new_segment(
    upstream: tuple[GatewayServer, VLLMStandIn],
) -> None:
    server, stand = upstream
    tid, key = create(server)
    agent = client(server, key)
    stand.script = [CALL, "fine"]
    messages: list[Any] = [{"role": "user", "content": "look up O-1"}]
    message = agent.chat.completions.create(model="m", messages=messages).choices[0].message
    echoed = message.model_dump(exclude_none=True)
    echoed["tool_calls"][0]["id"] = "call_rewritten"  # the agent rewrote history
    messages += [echoed, {"role": "tool", "tool_call_id": "call_rewritten", "content": "5"}]
    agent.chat.completions.create(model="m", messages=messages)
    assert record(server, tid)["segments"] == 2


def test_upstream_failures_are_502(upstream: tuple[GatewayServer, VLLMStandIn]) -> None:
    server, stand = upstream
    _, key = create(server)
    agent = client(server, key)
    messages = [{"role": "user", "content": "hi"}]
    for mode in ("fail", "bare"):
        stand.mode = mode
        try:
            with pytest.raises(openai.APIStatusError) as caught:
                agent.chat.completions.create(model="m", messages=messages)
        finally:
            stand.mode = "ok"
        assert caught.value.status_code == 502
    assert agent.chat.completions.create(model="m", messages=messages).choices  # and it recovers
    _, tokenizer = tiny()
    dead = Policy(tokenizer, UpstreamSampler("http://127.0.0.1:9", "m", timeout_s=2), "m")
    with running(Gateway(dead, admin_key=ADMIN_KEY, aws=AWS)) as other:
        _, key = create(other)
        with pytest.raises(openai.APIStatusError) as caught:
            client(other, key).chat.completions.create(model="m", messages=messages)
        assert caught.value.status_code == 502
        assert record(other, other.gateway.store.ids()[0])["turns"] == 0  # nothing recorded


# ----------------------------------------------------------------------------- states
def test_states_and_their_errors(gateway: GatewayServer) -> None:
    tid, key = create(gateway, max_turns=2)
    agent = client(gateway, key)
    messages = [{"role": "user", "content": "hi"}]
    reward = f"/admin/trajectories/{tid}/reward"
    status, body = admin(gateway, "POST", reward, {"rewards": [1.0]})
    assert status == 409 and "CompleteRollout" in body["error"]["message"]  # before completion
    agent.chat.completions.create(model="tiny", messages=messages, max_tokens=2)
    agent.chat.completions.create(model="tiny", messages=messages, max_tokens=2)
    with pytest.raises(openai.RateLimitError, match="turn cap"):
        agent.chat.completions.create(model="tiny", messages=messages, max_tokens=2)
    done = f"/admin/trajectories/{tid}/complete"
    assert admin(gateway, "POST", done, {"status": "ready", "client_token": "t1"})[0] == 200
    assert (
        admin(gateway, "POST", done, {"status": "ready", "client_token": "t1"})[0] == 200
    )  # replay
    assert admin(gateway, "POST", done, {"status": "failed", "client_token": "t1"})[0] == 409
    assert admin(gateway, "POST", done, {"status": "ready", "client_token": "t2"})[0] == 409
    with pytest.raises(openai.ConflictError):  # sampling a completed trajectory
        agent.chat.completions.create(model="tiny", messages=messages, max_tokens=2)
    status, body = admin(gateway, "POST", reward, {"rewards": [1.0, 2.0, 3.0]})
    assert status == 400 and "2 turns" in body["error"]["message"]
    assert admin(gateway, "POST", reward, {"rewards": [0.5, 0.5], "client_token": "r"})[0] == 200
    assert admin(gateway, "POST", reward, {"rewards": [0.5, 0.5], "client_token": "r"})[0] == 200
    assert admin(gateway, "POST", reward, {"rewards": [9.0], "client_token": "other"})[0] == 409
    assert record(gateway, tid)["rewards"] == [0.5, 0.5]  # no second effect
    assert admin(gateway, "GET", "/admin/trajectories/traj-nope")[0] == 404
    assert admin(gateway, "POST", "/admin/trajectories/traj-nope/complete", {})[0] == 404
    assert admin(gateway, "DELETE", f"/admin/trajectories/{tid}")[0] == 200
    assert admin(gateway, "DELETE", f"/admin/trajectories/{tid}")[0] == 404
    with pytest.raises(openai.PermissionDeniedError):  # a dropped trajectory's key is void
        agent.chat.completions.create(model="tiny", messages=messages, max_tokens=2)


def test_pause_resume_and_policy_version(gateway: GatewayServer) -> None:
    tid, key = create(gateway)
    agent = client(gateway, key)
    messages = [{"role": "user", "content": "hi"}]
    status, body = admin(gateway, "POST", "/admin/pause", {"wait_s": 5})
    assert status == 200 and body["idle"]
    try:
        with pytest.raises(openai.RateLimitError) as caught:
            agent.chat.completions.create(model="tiny", messages=messages, max_tokens=2)
        assert caught.value.response.headers["Retry-After"] == "1"
    finally:
        assert admin(gateway, "POST", "/admin/resume", {})[0] == 200
    assert admin(gateway, "PUT", "/admin/policy-version", {"version": 7})[0] == 200
    agent.chat.completions.create(model="tiny", messages=messages, max_tokens=2)
    assert admin(gateway, "PUT", "/admin/policy-version", {"version": True})[0] == 400
    admin(gateway, "POST", f"/admin/trajectories/{tid}/complete", {})
    episode = simenv.Episode.from_dict(record(gateway, tid)["episode"])
    assert [t["policy_version"] for t in episode.metadata["turns"]] == [7]
    admin(gateway, "PUT", "/admin/policy-version", {"version": 0})


# ----------------------------------------------------------------------------- authentication
def test_keys_name_their_trajectory_and_nothing_else(gateway: GatewayServer) -> None:
    a, key_a = create(gateway)
    b, _ = create(gateway)
    messages = [{"role": "user", "content": "hi"}]
    ok = client(gateway, key_a).chat.completions.create(model="t", messages=messages, max_tokens=2)
    assert ok.choices
    for agent in (
        client(gateway, "wrong"),
        client(gateway, f"{a}.not-the-secret"),
        client(gateway, key_a, prefix=f"/trajectories/{b}"),  # A's key on B's path
        client(gateway, ADMIN_KEY),
    ):
        with pytest.raises(openai.PermissionDeniedError):
            agent.chat.completions.create(model="t", messages=messages, max_tokens=2)
    crossed = client(gateway, key_a).with_options(
        default_headers={"X-Amzn-SageMaker-Trajectory-Id": b}
    )
    with pytest.raises(openai.PermissionDeniedError):
        crossed.chat.completions.create(model="t", messages=messages, max_tokens=2)
    request = urllib.request.Request(gateway.url + "/v1/models")  # no key at all
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=10)
    assert caught.value.code == 403
    caught.value.close()
    assert admin(gateway, "GET", "/admin/trajectories", key=key_a)[0] == 403
    assert admin(gateway, "GET", f"/admin/trajectories/{b}", key="")[0] == 403
    assert record(gateway, b)["turns"] == 0 and record(gateway, a)["turns"] == 1
    assert admin(gateway, "GET", "/admin/trajectories?state=open")[1]["trajectories"]


def test_binding_beyond_loopback_needs_explicit_credentials() -> None:
    generated = Gateway(hf_policy())
    with pytest.raises(ValueError, match="beyond loopback"):
        make_server(generated, "0.0.0.0")
    make_server(generated, "127.0.0.1").server_close()
    explicit = make_server(Gateway(hf_policy(), admin_key=ADMIN_KEY, aws=AWS), "0.0.0.0")
    explicit.server_close()


# ----------------------------------------------------------------------------- bad input
def _raw(
    server: GatewayServer, method: str, path: str, body: bytes, headers: dict[str, str]
) -> int:
    request = urllib.request.Request(server.url + path, body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        with exc:
            return int(exc.code)


BAD_BODIES = [
    b"",
    b"null",
    b"[]",
    b"{",
    b'"x"',
    b"1e999",
    b'{"messages": []}',
    b'{"messages": "hi"}',
    b'{"messages": [1]}',
    b'{"messages": [{"role": "robot", "content": "x"}]}',
    b'{"messages": [{"role": "user"}]}',
    b'{"messages": [{"role": "user", "content": 5}]}',
    b'{"messages": [{"role": "user", "content": [{"type": "image"}]}]}',
    b'{"messages": [{"role": "tool", "content": "x"}]}',
    b'{"messages": [{"role": "assistant", "tool_calls": "x"}]}',
    b'{"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function"}]}',
    b'{"messages": [{"role": "user", "content": "x"}], "tools": 3}',
    b'{"messages": [{"role": "user", "content": "x"}], "tool_choice": 3}',
    b'{"messages": [{"role": "user", "content": "x"}], "max_tokens": 0}',
    b'{"messages": [{"role": "user", "content": "x"}], "max_tokens": true}',
    b'{"messages": [{"role": "user", "content": "x"}], "top_p": 0}',
    b'{"messages": [{"role": "user", "content": "x"}], "stop": [1]}',
    b'{"messages": [{"role": "user", "content": "x"}], "stop": true}',
    b'{"messages": [{"role": "user", "content": "x"}], "stream": "yes"}',
    b'{"messages": [{"role": "user", "content": "x"}], "seed": "s"}',
    b'{"messages": [{"role": "user", "content": "x"}], "stream_options": 1}',
    b'{"messages": [{"role": "user", "content": "x"}], "top_logprobs": 99}',
    b"[" * 100_000 + b"]" * 100_000,
    b'{"messages": [{"role": "user", "content": "\\ud800"}], "max_tokens": 2}',
    '{"messages": [{"role": "user", "content": "\u00e9\u4e2d"}], "max_tokens": 2}'.encode(),
]


def test_bad_input_is_never_a_5xx(gateway: GatewayServer) -> None:
    tid, key = create(gateway, max_turns=64)
    agent = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    boss = {"Authorization": f"Bearer {ADMIN_KEY}"}
    statuses = []
    chat = [_raw(gateway, "POST", "/v1/chat/completions", body, agent) for body in BAD_BODIES]
    assert chat[-2:] == [200, 200] and set(chat[:-2]) == {400}, chat  # surrogates, non-ASCII
    for body in BAD_BODIES:
        statuses.append(_raw(gateway, "POST", "/admin/trajectories", body, boss))
        statuses.append(_raw(gateway, "POST", f"/admin/trajectories/{tid}/reward", body, boss))
        statuses.append(_raw(gateway, "PUT", "/admin/policy-version", body, boss))
        statuses.append(_raw(gateway, "POST", "/admin/take", body, boss))
        for path in ("/sample", "/complete-rollout", "/update-reward"):
            statuses.append(_raw(gateway, "POST", path, body, {}))
    for body in BAD_BODIES:  # last: a body without "wait_s" pauses the gateway
        statuses.append(_raw(gateway, "POST", "/admin/pause", body, boss))
    admin(gateway, "POST", "/admin/resume", {})
    for method, path in [
        ("GET", "/nope"),
        ("DELETE", "/v1/chat/completions"),
        ("PATCH", "/health"),
        ("GET", "/trajectories/x/v1/models"),
        ("GET", "/admin/nope"),
        ("GET", "/admin/trajectories/" + "x" * 300),
    ]:
        statuses.append(
            _raw(
                gateway,
                method,
                path,
                b"",
                {**agent, **({"Authorization": boss["Authorization"]} if "admin" in path else {})},
            )
        )
    assert statuses and max(statuses) < 500, statuses
    assert {200, 400, 403, 404, 405} <= set(statuses)
    with pytest.raises(openai.PermissionDeniedError):  # the negative: a 4xx is raised, not hidden
        client(gateway, "x").chat.completions.create(
            model="t", messages=[{"role": "user", "content": "x"}]
        )


def test_null_fields_take_their_defaults(gateway: GatewayServer) -> None:  # found by fuzzing
    status, body = admin(gateway, "POST", "/admin/trajectories", {"max_turns": None, "seed": None})
    assert status == 201 and body["max_turns"] == 8


def test_too_many_live_trajectories_is_402() -> None:
    with running(Gateway(hf_policy(), admin_key=ADMIN_KEY, aws=AWS, max_live=1)) as server:
        create(server)
        status, body = admin(server, "POST", "/admin/trajectories", {})
        assert status == 402 and body["error"]["code"] == "ServiceQuotaExceededException"


# ----------------------------------------------------------------------------- memory, concurrency
def test_memory_grows_with_tokens_not_turns_squared() -> None:
    policy = hf_policy()
    store = TrajectoryStore()
    trajectory, _ = store.create(limits=Limits(500))
    from simenv.server.gateway.chat import finish, parse_request
    from simenv.server.gateway.policy import Sampled

    messages: list[Any] = [{"role": "user", "content": "start"}]
    eos = policy.tokenizer.eos_token_id
    for k in range(200):
        request = parse_request({"messages": list(messages)})
        rendered = policy.render(trajectory.substitute(request.messages), None)
        segment, prompt = trajectory.prompt(rendered, policy.encode)
        done = finish(policy, Sampled([*policy.encode(f"answer {k}"), eos], [-1.0] * 3), request, 0)
        trajectory.record(segment, prompt, rendered, done, request.raw, request.messages)
        messages += [dict(done.message), {"role": "user", "content": f"next {k}"}]
    assert len(trajectory.segments) == 1
    last_prompt, last_completion = trajectory.turn_ids(199)
    assert len(trajectory.segments[0].tokens) == len(last_prompt) + len(last_completion)
    stored = sum(len(t.request["messages"]) for t in trajectory.turns)
    assert stored == len(messages) - 2  # each message once (the last pair was never sent)


CONCURRENT = textwrap.dedent(
    """
    import json, sys
    from concurrent.futures import ThreadPoolExecutor
    import openai
    url, keys = sys.argv[1], json.loads(sys.argv[2])

    def play(item):
        n, key = item
        agent = openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0)
        messages = [{"role": "user", "content": f"marker-{n} first"}]
        for turn in range(2):
            answer = agent.chat.completions.create(model="t", messages=messages, max_tokens=3)
            messages.append({"role": "assistant", "content": answer.choices[0].message.content})
            messages.append({"role": "user", "content": f"marker-{n} turn {turn}"})
        return n

    with ThreadPoolExecutor(64) as pool:
        print(sorted(pool.map(play, enumerate(keys))) == list(range(len(keys))))
    """
)


def test_64_concurrent_trajectories_from_another_process_never_cross(
    gateway: GatewayServer,
) -> None:
    made = [create(gateway) for _ in range(64)]
    result = subprocess.run(
        [sys.executable, "-c", CONCURRENT, gateway.url, json.dumps([k for _, k in made])],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=Path(__file__).parents[1],
    )
    assert result.stdout.strip() == "True", result.stderr[-2000:]
    for n, (tid, _) in enumerate(made):
        admin(gateway, "POST", f"/admin/trajectories/{tid}/complete", {})
        episode = simenv.Episode.from_dict(record(gateway, tid)["episode"])
        assert len(episode.metadata["turns"]) == 2
        for turn in episode.metadata["turns"]:
            text = decode(turn["prompt_ids"])
            assert f"marker-{n} " in text
            others = {m for m in range(64) if f"marker-{m} " in text}
            assert others == {n}
        assert episode.metadata["gateway"]["segments"] == 1


# ----------------------------------------------------------------------------- the command
def test_the_gateway_command_serves_a_saved_model_and_refuses_open_binds(tmp_path: Path) -> None:
    model, tokenizer = tiny()
    model.save_pretrained(tmp_path / "tiny")
    tokenizer.save_pretrained(tmp_path / "tiny")
    simenv_bin = str(Path(sys.executable).with_name("simenv"))
    refused = subprocess.run(
        [simenv_bin, "gateway", "--model", str(tmp_path / "tiny"), "--host", "0.0.0.0"],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert refused.returncode == 2 and "beyond loopback" in refused.stderr
    process = subprocess.Popen(
        [
            simenv_bin,
            "gateway",
            "--model",
            str(tmp_path / "tiny"),
            "--port",
            "0",
            "--admin-key",
            ADMIN_KEY,
            "--out",
            str(tmp_path / "episodes.jsonl"),
        ],
        stdout=subprocess.PIPE,
        text=True,
        env={"PATH": "/usr/bin:/bin"},
    )
    try:
        assert process.stdout is not None
        banner = process.stdout.readline()
        url = banner.split(" on ")[1].split()[0]
        with urllib.request.urlopen(url + "/health", timeout=30) as answer:
            assert json.loads(answer.read())["ok"]
        request = urllib.request.Request(
            url + "/admin/trajectories", b"{}", headers={"Authorization": f"Bearer {ADMIN_KEY}"}
        )
        with urllib.request.urlopen(request, timeout=30) as answer:
            made = json.loads(answer.read())
        agent = openai.OpenAI(base_url=url + "/v1", api_key=made["key"], max_retries=0)
        agent.chat.completions.create(
            model="t", messages=[{"role": "user", "content": "x"}], max_tokens=2
        )
        request = urllib.request.Request(
            url + f"/admin/trajectories/{made['trajectory_id']}/complete",
            b'{"status": "failed"}',
            headers={"Authorization": f"Bearer {ADMIN_KEY}"},
        )
        urllib.request.urlopen(request, timeout=30).close()
    finally:
        process.terminate()
        process.wait(30)
        if process.stdout is not None:
            process.stdout.close()
    [episode] = read_episodes(tmp_path / "episodes.jsonl")
    assert not episode.valid and len(episode.metadata["turns"]) == 1


def test_the_gateway_command_serves_an_upstream_server(tmp_path: Path) -> None:
    _, tokenizer = tiny()
    tokenizer.save_pretrained(tmp_path / "tokenizer")
    simenv_bin = str(Path(sys.executable).with_name("simenv"))
    with standin() as stand:
        stand.script = ["from the stand-in"]
        command = [
            simenv_bin,
            "gateway",
            "--upstream",
            stand.url,
            "--tokenizer",
            str(tmp_path / "tokenizer"),
            "--served-model",
            "tiny-up",
            "--port",
            "0",
            "--admin-key",
            ADMIN_KEY,
        ]
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, text=True, env={"PATH": "/usr/bin:/bin"}
        )
        try:
            assert process.stdout is not None
            url = process.stdout.readline().split(" on ")[1].split()[0]
            request = urllib.request.Request(
                url + "/admin/trajectories", b"{}", headers={"Authorization": f"Bearer {ADMIN_KEY}"}
            )
            with urllib.request.urlopen(request, timeout=30) as answer:
                key = json.loads(answer.read())["key"]
            agent = openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0)
            answer = agent.chat.completions.create(
                model="x", messages=[{"role": "user", "content": "x"}]
            )
            assert answer.choices[0].message.content == "from the stand-in"
            assert answer.model == "tiny-up" and stand.requests[-1]["model"] == "tiny-up"
        finally:
            process.terminate()
            process.wait(30)
            if process.stdout is not None:
                process.stdout.close()
    missing = subprocess.run(
        [simenv_bin, "gateway", "--upstream", "http://127.0.0.1:9"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert missing.returncode == 2 and "--tokenizer" in missing.stderr


# ----------------------------------------------------------------------------- the docs' examples
EXAMPLES = Path(__file__).parents[1] / "docs" / "examples"


@pytest.mark.parametrize("example", ["gateway_openai_agent.py", "gateway_boto3_agent.py"])
def test_the_docs_examples_run_against_a_gateway(example: str) -> None:
    service = Gateway(hf_policy(max_new_tokens=24), admin_key=ADMIN_KEY, aws=AWS)
    with running(service) as server:
        environment = {
            "PATH": "/usr/bin:/bin",
            "SIMENV_GATEWAY": server.url,
            "SIMENV_GATEWAY_ADMIN_KEY": ADMIN_KEY,
            "AWS_ACCESS_KEY_ID": AWS.access_key_id,
            "AWS_SECRET_ACCESS_KEY": AWS.secret_access_key,
        }
        result = subprocess.run(
            [sys.executable, str(EXAMPLES / example)],
            capture_output=True,
            text=True,
            timeout=300,
            env=environment,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        assert result.stdout.count(": reward ") + result.stdout.count("turns, reward ") == 2
        episodes = server.gateway.take()
    assert len(episodes) == 2 and all(e.valid and e.turns >= 1 for e in episodes)
    assert all(e.scenario_id == SCENARIO for e in episodes)
    if example == "gateway_boto3_agent.py":
        assert result.stdout.count("as expected: ConflictException") == 2


def test_the_gateway_page_shows_both_examples_verbatim() -> None:
    page = (EXAMPLES.parent / "gateway.md").read_text()
    for example in ("gateway_openai_agent.py", "gateway_boto3_agent.py"):
        assert f"```python\n{(EXAMPLES / example).read_text()}```" in page, example


def test_tokens_and_keys_with_lone_surrogates_compare_without_error() -> None:  # found by fuzzing
    store = TrajectoryStore()
    trajectory, key = store.create()
    store.complete(trajectory.id, "ready", "\ud800")
    store.complete(trajectory.id, "ready", "\ud800")  # the replay: no error, no effect
    with pytest.raises(simenv.server.gateway.errors.Conflict):
        store.complete(trajectory.id, "ready", "\udfff")
    with pytest.raises(simenv.server.gateway.errors.Denied):
        store.by_key(f"{trajectory.id}.\ud800")
    assert store.by_key(key) is trajectory
