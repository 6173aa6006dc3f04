"""The OpenAI-compatible policy against a small server started on 127.0.0.1."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

import simenv
from simenv.errors import InfraError
from simenv.policies import OpenAI, from_string
from simenv.policies.base import Conversation


class Server:
    """Answers like a chat-completions endpoint, scripted per test."""

    def __init__(self) -> None:
        self.fail_first = 0
        self.hang_s = 0.0
        self.requests: list[dict[str, Any]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.lock = threading.Lock()

    def reply(self, body: dict[str, Any]) -> dict[str, Any]:
        tool_turns = sum(m["role"] == "tool" for m in body["messages"])
        if tool_turns == 0:
            message = {"role": "assistant", "content": None, "tool_calls": [{
                "id": "call_a", "type": "function",
                "function": {"name": "get_plan", "arguments": "{}"}}]}  # fmt: skip
        elif tool_turns == 1:
            arguments = json.dumps({"team": "billing", "priority": "high"})
            call = {"name": "route", "arguments": arguments}
            entry = {"id": "call_b", "type": "function", "function": call}
            message = {"role": "assistant", "content": None, "tool_calls": [entry]}
        else:
            message = {"role": "assistant", "content": "Routed."}
        logprobs = {"content": [{"token": "token_id:7", "logprob": -0.5},
                                {"token": "token_id:9", "logprob": -0.25}]}  # fmt: skip
        return {"choices": [{"message": message, "logprobs": logprobs}]}


@pytest.fixture
def server() -> Iterator[tuple[Server, str]]:
    state = Server()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with state.lock:
                state.requests.append(body)
                state.in_flight += 1
                state.max_in_flight = max(state.max_in_flight, state.in_flight)
                failing = state.fail_first > 0
                state.fail_first -= failing
            try:
                time.sleep(state.hang_s or 0.02)
                if failing:
                    self.send_response(503)
                    self.end_headers()
                    return
                data = json.dumps(state.reply(body)).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            finally:
                with state.lock:
                    state.in_flight -= 1

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield state, f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    httpd.shutdown()
    httpd.server_close()


def test_plays_a_multi_turn_episode_with_tool_calls(
    server: tuple[Server, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    state, url = server
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    policy = OpenAI("tiny", url, backoff_s=0.01)
    env = simenv.make("support/Triage-v1")
    episode = simenv.rollout(env, policy, seed=4, task_id="billing-0-1")
    assert [c.name for s in episode.steps for c in s.tool_calls] == ["get_plan", "route"]
    assert episode.termination == "finish_tool"
    assert state.requests[0]["tools"][0]["function"]["name"] == "get_plan"
    assert state.requests[1]["messages"][-1]["role"] == "tool"
    assert episode.metadata["turns"][0] == {"logprobs": [-0.5, -0.25], "completion_ids": [7, 9]}


def test_retries_transient_errors(server: tuple[Server, str]) -> None:
    state, url = server
    state.fail_first = 2
    policy = OpenAI("tiny", url, backoff_s=0.01, retries=3)
    conv = Conversation([{"role": "user", "content": "hi"}], {"tools": []})
    assert policy.act([conv])[0]["tool_calls"][0]["function"]["name"] == "get_plan"
    assert len(state.requests) == 3


def test_gives_up_with_an_infra_error(server: tuple[Server, str]) -> None:
    state, url = server
    state.fail_first = 10
    policy = OpenAI("tiny", url, backoff_s=0.01, retries=1)
    with pytest.raises(InfraError, match="HTTP 503"):
        policy.act([Conversation([{"role": "user", "content": "hi"}], {})])


def test_times_out(server: tuple[Server, str]) -> None:
    state, url = server
    state.hang_s = 2.0
    policy = OpenAI("tiny", url, timeout_s=0.2, retries=0)
    start = time.monotonic()
    with pytest.raises(InfraError, match="did not answer"):
        policy.act([Conversation([{"role": "user", "content": "hi"}], {})])
    assert time.monotonic() - start < 1.9  # the server would have answered after 2 s


def test_concurrency_is_bounded(server: tuple[Server, str]) -> None:
    state, url = server
    state.hang_s = 0.1
    policy = OpenAI("tiny", url, max_concurrency=3)
    batch = [Conversation([{"role": "user", "content": str(i)}], {}) for i in range(9)]
    assert len(policy.act(batch)) == 9
    assert 2 <= state.max_in_flight <= 3


def test_policy_string() -> None:
    policy = from_string("openai:my-model@http://127.0.0.1:8000/v1")
    assert isinstance(policy, OpenAI) and policy.model == "my-model"
    assert policy.url == "http://127.0.0.1:8000/v1/chat/completions"
    with pytest.raises(ValueError, match="openai:MODEL@BASE_URL"):
        from_string("openai:nomodel")
