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
from simenv.rollouts.policies import OpenAI, from_string
from simenv.rollouts.policies.base import Conversation


def call(call_id: str, name: str, **arguments: Any) -> dict[str, Any]:
    function = {"name": name, "arguments": json.dumps(arguments)}
    return {"id": call_id, "type": "function", "function": function}


class Server:
    """Answers like a chat-completions endpoint for the Triage scenario, scripted per test.

    ``failures`` lists what the next requests get instead of an answer: an HTTP status, or
    ``"hang"`` (no answer for ``hang_s``).
    """

    def __init__(self) -> None:
        self.failures: list[int | str] = []
        self.delay_s = 0.02
        self.hang_s = 2.0
        self.text = False
        self.extra: dict[str, Any] = {}
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.lock = threading.Lock()

    def reply(self, body: dict[str, Any]) -> dict[str, Any]:
        tool_turns = sum(m["role"] == "tool" for m in body["messages"])
        if tool_turns == 0:
            calls = [call("call_a", "get_plan")]
        elif tool_turns == 1:
            calls = [call("call_b", "route", team="billing", priority="high")]
        else:
            return {"choices": [{"message": {"role": "assistant", "content": "Routed."}}]}
        if self.text:  # a server without a tool parser: the model's raw text
            fn = calls[0]["function"]
            raw = f'<tool_call>{{"name": "{fn["name"]}", "arguments": {fn["arguments"]}}}'
            message: dict[str, Any] = {"role": "assistant", "content": raw + "</tool_call>"}
        else:
            message = {"role": "assistant", "content": None, "tool_calls": calls}
        logprobs = {"content": [{"token": "token_id:7", "logprob": -0.5},
                                {"token": "token_id:9", "logprob": -0.25}]}  # fmt: skip
        return {"choices": [{"message": message, "logprobs": logprobs}], **self.extra}


@pytest.fixture
def server() -> Iterator[tuple[Server, str]]:
    state = Server()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with state.lock:
                state.requests.append(body)
                state.headers.append(dict(self.headers))
                state.in_flight += 1
                state.max_in_flight = max(state.max_in_flight, state.in_flight)
                failure = state.failures.pop(0) if state.failures else None
            try:
                time.sleep(state.hang_s if failure == "hang" else state.delay_s)
                if isinstance(failure, int):
                    self.send_response(failure)
                    self.send_header("Retry-After", "0")
                    self.end_headers()
                    self.wfile.write(b'{"error": "scripted failure"}')
                    return
                data = json.dumps(state.reply(body)).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up waiting (the timeout test)
            finally:
                with state.lock:
                    state.in_flight -= 1

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    yield state, f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    httpd.shutdown()
    httpd.server_close()


def hello() -> Conversation:
    return Conversation([{"role": "user", "content": "hi"}], {"tools": []})


@pytest.mark.parametrize("text", [False, True], ids=["tool_calls", "text"])
def test_plays_a_multi_turn_episode(
    server: tuple[Server, str], monkeypatch: pytest.MonkeyPatch, text: bool
) -> None:
    state, url = server
    state.text = text
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    policy = OpenAI("tiny", url, backoff_s=0.01)
    env = simenv.make("support/Triage-v1")
    episode = simenv.rollout(env, policy, seed=4, task_id="billing-0-1")
    assert [c.name for s in episode.steps for c in s.tool_calls] == ["get_plan", "route"]
    assert episode.termination == "finish_tool"
    first, second = state.requests[0], state.requests[1]
    assert first["model"] == "tiny" and first["logprobs"] is True
    assert first["tools"][0]["function"]["name"] == "get_plan"
    assert second["messages"][-1]["role"] == "tool"
    assert second["messages"][-1]["tool_call_id"] == episode.steps[0].tool_calls[0].id
    assert second["messages"][-2]["role"] == "assistant"
    assert state.headers[0]["Authorization"] == "Bearer sk-test"
    assert episode.metadata["turns"][0] == {"logprobs": [-0.5, -0.25], "completion_ids": [7, 9]}
    assert "sk-test" not in json.dumps(episode.to_dict())


def test_records_vllm_token_ids(server: tuple[Server, str]) -> None:
    state, url = server
    state.extra = {"prompt_token_ids": [1, 2, 3]}
    conv = hello()
    OpenAI("tiny", url, extra_body={"return_token_ids": True}).act([conv])
    assert state.requests[0]["return_token_ids"] is True
    assert conv.memo["turns"] == [
        {"prompt_ids": [1, 2, 3], "logprobs": [-0.5, -0.25], "completion_ids": [7, 9]}
    ]


def test_retries_a_server_error_then_succeeds(server: tuple[Server, str]) -> None:
    state, url = server
    state.failures = [500, 429]
    policy = OpenAI("tiny", url, backoff_s=0.01, retries=3)
    assert policy.act([hello()])[0]["tool_calls"][0]["function"]["name"] == "get_plan"
    assert len(state.requests) == 3


def test_gives_up_with_an_infra_error(server: tuple[Server, str]) -> None:
    state, url = server
    state.failures = [503] * 10
    policy = OpenAI("tiny", url, backoff_s=0.01, retries=1)
    with pytest.raises(InfraError, match=r"HTTP 503.*after 2 attempts"):
        policy.act([hello()])
    assert len(state.requests) == 2


def test_does_not_retry_a_client_error(server: tuple[Server, str]) -> None:
    state, url = server
    state.failures = [400]
    with pytest.raises(InfraError, match=r"HTTP 400.*not retried"):
        OpenAI("tiny", url, backoff_s=0.01).act([hello()])
    assert len(state.requests) == 1


def test_times_out_a_hanging_server_then_retries(server: tuple[Server, str]) -> None:
    state, url = server
    state.failures = ["hang"]
    policy = OpenAI("tiny", url, timeout_s=0.3, retries=1, backoff_s=0.01)
    start = time.monotonic()
    assert policy.act([hello()])[0]["tool_calls"]  # the second attempt is answered
    assert time.monotonic() - start < 1.5  # the hanging answer would take 2 s
    state.failures = ["hang"]
    with pytest.raises(InfraError, match="did not answer"):
        OpenAI("tiny", url, timeout_s=0.3, retries=0).act([hello()])


def test_an_unreachable_server_is_an_infra_error() -> None:
    with pytest.raises(InfraError, match="is the server up"):
        OpenAI("tiny", "http://127.0.0.1:9/v1", retries=1, backoff_s=0.01).act([hello()])


def test_concurrency_is_bounded(server: tuple[Server, str]) -> None:
    state, url = server
    state.delay_s = 0.1
    policy = OpenAI("tiny", url, max_concurrency=3)
    batch = [Conversation([{"role": "user", "content": str(i)}], {}) for i in range(9)]
    actions = policy.act(batch)
    assert len(actions) == 9 and all(a["role"] == "assistant" for a in actions)
    assert 2 <= state.max_in_flight <= 3
    assert sorted(r["messages"][0]["content"] for r in state.requests) == [str(i) for i in range(9)]
    policy.close()


def test_policy_string() -> None:
    policy = from_string("openai:my-model@http://127.0.0.1:8000/v1")
    assert isinstance(policy, OpenAI) and policy.model == "my-model"
    assert policy.url == "http://127.0.0.1:8000/v1/chat/completions"
    assert policy.describe()["name"] == "openai"
    with pytest.raises(ValueError, match="openai:MODEL@BASE_URL"):
        from_string("openai:nomodel")
