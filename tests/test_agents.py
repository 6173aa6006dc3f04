"""Agent adapters against a real gateway on 127.0.0.1 serving the tiny model.

- a Python callable written with only the ``openai`` client: the adapter completes and rewards
  its trajectory; a raise, a bad return value or the wrong number of rewards fails it;
- an HTTP agent endpoint (``http.server`` on 127.0.0.1) that reports with a stock boto3
  ``sagemakerjobruntime`` client: health check, synchronous and asynchronous reports, error
  answers, silence past the timeout, a reported failure;
- a simenv scenario played through the gateway, its reward the environment's own.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3
import openai
import pytest
from botocore.config import Config
from gateway_support import AWS, hf_policy
from helpers import serving

import simenv
from simenv.server.gateway import Gateway, make_server
from trainer.agents import (
    AgentError,
    CallableAgent,
    HttpAgent,
    Rollout,
    ScenarioAgent,
    load_callable,
)
from trainer.collect import Collection, make_agent
from trainer.config import TrainConfig
from trainer.datasets import Dataset, Row, scenario_rows

CFG = TrainConfig(agent="scenario", max_new_tokens=8, agent_concurrency=2, eval_samples=1)
ROW = Row("ticket-7", "Refund order O-7, please.", "train", {"customer": "ada"})


def collection(agent: Any, datasets: list[Dataset] | None = None) -> Collection:
    gateway = Gateway(hf_policy(max_new_tokens=8), aws=AWS, seed=0)
    return Collection(make_server(gateway), agent, datasets or [], CFG)


@pytest.fixture
def played() -> Iterator[Any]:
    """``played(agent, row)`` plays one rollout through a fresh collection: (report, episode)."""
    made: list[Collection] = []

    def play(agent: Any, row: Row = ROW, name: str = "t-0") -> Any:
        made.append(collection(agent))
        return made[-1].play(name, row, 11, None)

    yield play
    for c in made:
        c.close()


def chat(rollout: Rollout, turns: int) -> list[str]:
    """The user's agent: ``turns`` model calls with the openai client, nothing else."""
    client = openai.OpenAI(base_url=rollout.base_url, api_key=rollout.key, max_retries=0)
    messages: list[Any] = [{"role": "user", "content": str(rollout.task["prompt"])}]
    said = []
    for _ in range(turns):
        answer = client.chat.completions.create(model="policy", messages=messages)
        message = answer.choices[0].message.model_dump(exclude_none=True)
        messages += [message, {"role": "user", "content": "go on"}]
        said.append(message.get("content") or "")
    return said


# ----------------------------------------------------------------------------- a Python callable
def test_a_callable_is_completed_and_rewarded_by_the_adapter(played: Any) -> None:
    seen: list[Rollout] = []

    def agent(rollout: Rollout) -> float:
        seen.append(rollout)
        chat(rollout, 2)
        return 0.5

    report, episode = played(CallableAgent(agent))
    assert report.status == "ready" and report.error is None and report.latency_s > 0
    assert episode.valid and episode.reward == 0.5 and episode.turns == 2
    assert [s.reward for s in episode.steps] == [0.0, 0.5]  # one reward lands on the last turn
    assert episode.success and episode.evaluation == 1.0  # a total reward above 0
    assert episode.task_id == "ticket-7"
    assert episode.metadata["gateway"]["metadata"]["task"]["customer"] == "ada"  # kept
    rollout = seen[0]
    assert rollout.task == ROW.to_dict() and rollout.seed == 11
    assert rollout.sampling == {"temperature": 1.0, "max_tokens": 8}
    assert rollout.headers["X-Amzn-SageMaker-Trajectory-Id"] == rollout.trajectory_id == "t-0"
    assert rollout.headers["Authorization"] == f"Bearer {rollout.key}"
    assert all(len(t["completion_ids"]) <= 8 for t in episode.metadata["turns"])  # the sampling


def test_per_turn_rewards_land_on_their_turns_and_a_wrong_count_fails(played: Any) -> None:
    report, episode = played(CallableAgent(lambda r: [chat(r, 2) and 0.25, 0.75]))
    assert report.status == "ready" and [s.reward for s in episode.steps] == [0.25, 0.75]
    report, episode = played(CallableAgent(lambda r: [chat(r, 2) and 1.0, 1.0, 1.0]))
    assert report.status == "failed" and "Rewards has 3 values" in str(report.error)
    assert "has 2 turns" in str(report.error)
    assert episode is None  # completed, never rewarded: dropped from the gateway


def test_a_raise_a_bad_value_or_no_model_call_fails_the_rollout(played: Any) -> None:
    def broken(rollout: Rollout) -> float:
        chat(rollout, 1)
        raise ConnectionError("my tool server is down")

    report, episode = played(CallableAgent(broken))
    assert report.status == "failed" and report.error == "ConnectionError: my tool server is down"
    assert not episode.valid and episode.turns == 1 and episode.error == report.error
    report, episode = played(CallableAgent(lambda r: chat(r, 1) and "great"))
    assert report.status == "failed" and "return a finite reward (a float)" in str(report.error)
    report, episode = played(CallableAgent(lambda r: float("nan") if chat(r, 1) else 0.0))
    assert report.status == "failed" and "finite" in str(report.error)
    report, episode = played(CallableAgent(lambda r: 1.0))  # never called the model
    assert report.status == "failed" and report.error == "the agent made no model call"
    assert not episode.valid


def test_load_callable_names_what_is_wrong() -> None:
    assert load_callable("json:dumps") is json.dumps
    assert load_callable("os.path:join") is os.path.join
    for spec, expected in [
        ("no_colon", "give module:function"),
        ("no_such_module_here:run", "cannot import no_such_module_here"),
        ("json:not_there", "json has no callable 'not_there'"),
    ]:
        with pytest.raises(AgentError, match=expected):
            load_callable(spec)


# ----------------------------------------------------------------------------- an HTTP endpoint
class AgentServer(ThreadingHTTPServer):
    """An agent behind HTTP: GET /ping, POST /invocations; reports through boto3."""

    daemon_threads = True

    def __init__(self) -> None:
        self.mode = "sync"  # sync | async | error | silent | failed | unhealthy
        self.bodies: list[dict[str, Any]] = []
        self.threads: list[threading.Thread] = []
        super().__init__(("127.0.0.1", 0), _AgentHandler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def rollout(self, body: dict[str, Any]) -> None:
        """The agent itself: two Sample calls, then CompleteRollout and UpdateReward."""
        jobs = boto3.client(
            "sagemakerjobruntime",
            endpoint_url=body["endpoint_url"],
            region_name="us-east-1",
            aws_access_key_id=AWS.access_key_id,
            aws_secret_access_key=AWS.secret_access_key,
            config=Config(retries={"max_attempts": 10, "mode": "standard"}),
        )
        ids = {"JobArn": body["job_arn"], "TrajectoryId": body["trajectory_id"]}
        messages: list[Any] = [{"role": "user", "content": body["task"]["prompt"]}]
        for _ in range(2):
            request = {"model": "policy", "messages": messages}
            answer = jobs.sample(**ids, Body=json.dumps(request))
            messages.append(json.loads(answer["Body"].read())["choices"][0]["message"])
            messages.append({"role": "user", "content": "and?"})
        if self.mode == "failed":
            jobs.complete_rollout(**ids, Status="failed")
            return
        jobs.complete_rollout(**ids, Status="ready")
        jobs.update_reward(**ids, Rewards=[0.25, 1.0])


class _AgentHandler(BaseHTTPRequestHandler):
    server: AgentServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _answer(self, status: int) -> None:
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:
        healthy = self.path == "/ping" and self.server.mode != "unhealthy"
        self._answer(200 if healthy else 503)

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.bodies.append(body)
        mode = self.server.mode
        if self.path != "/invocations" or mode == "error":
            self._answer(500)
        elif mode in ("sync", "failed"):
            self.server.rollout(body)
            self._answer(200)
        elif mode == "async":  # answer at once, report afterwards
            later = threading.Thread(target=self.server.rollout, args=(body,))
            self.server.threads.append(later)
            self._answer(202)
            later.start()
        else:  # silent: answers, never reports
            self._answer(200)


@pytest.fixture
def endpoint() -> Iterator[AgentServer]:
    with serving(AgentServer()) as server:
        yield server
        for t in server.threads:
            t.join(30)


def test_an_http_agent_is_health_checked_and_reports_through_boto3(
    endpoint: AgentServer, played: Any
) -> None:
    agent = HttpAgent(endpoint.url, timeout_s=60)
    agent.check()
    for mode in ("sync", "async"):
        endpoint.mode = mode
        report, episode = played(agent, name=f"http-{mode}")
        assert report.status == "ready", (mode, report)
        assert episode.valid and [s.reward for s in episode.steps] == [0.25, 1.0]
        body = endpoint.bodies[-1]
        assert body["trajectory_id"] == f"http-{mode}" and body["task"] == ROW.to_dict()
        assert body["base_url"].endswith("/v1") and body["sampling"]["max_tokens"] == 8
        assert body["job_arn"] == body["headers"]["X-Amzn-SageMaker-Job-Arn"]


def test_http_agent_failures_are_counted_not_fatal(endpoint: AgentServer, played: Any) -> None:
    endpoint.mode = "error"
    report, episode = played(HttpAgent(endpoint.url, timeout_s=30), name="e")
    assert report.status == "failed" and "answered 500" in str(report.error)
    assert not episode.valid and episode.turns == 0
    endpoint.mode = "silent"
    report, episode = played(HttpAgent(endpoint.url, timeout_s=0.5), name="s")
    assert report.status == "failed" and "did not report trajectory s" in str(report.error)
    endpoint.mode = "failed"
    report, episode = played(HttpAgent(endpoint.url, timeout_s=30), name="f")
    assert report.status == "failed" and "marked the trajectory failed" in str(report.error)
    assert not episode.valid and episode.turns == 2


def test_the_health_check_refuses_a_sick_or_absent_agent(endpoint: AgentServer) -> None:
    endpoint.mode = "unhealthy"
    with pytest.raises(AgentError, match=r"is not healthy: GET .*/ping failed"):
        HttpAgent(endpoint.url).check()
    with pytest.raises(AgentError, match="not healthy"):
        HttpAgent("http://127.0.0.1:9").check()  # nothing listens on the discard port
    with pytest.raises(AgentError, match="give an http"):
        HttpAgent("ftp://agent")


def test_an_http_agent_needs_the_credentials_its_calls_are_verified_with(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY", raising=False)
    cfg = TrainConfig(agent_url="http://127.0.0.1:9")
    with pytest.raises(AgentError, match="set both in the trainer's environment"):
        make_agent(cfg)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDX")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
    assert isinstance(make_agent(cfg), HttpAgent)
    assert isinstance(make_agent(TrainConfig(agent="scenario")), ScenarioAgent)
    assert isinstance(make_agent(TrainConfig(agent="json:dumps")), CallableAgent)


# ----------------------------------------------------------------------------- a simenv scenario
def test_a_scenario_played_through_the_gateway_earns_the_environments_reward(
    played: Any,
) -> None:
    row = scenario_rows(simenv.load_scenario("support/Refunds-v1")).split("train")[0]
    report, episode = played(ScenarioAgent(timeout_s=120), row)
    assert report.status == "ready", report
    assert episode.valid and episode.turns >= 1 and episode.scenario_id == "support/Refunds-v1"
    # the same actions in a fresh environment with the same seed earn the same rewards
    env = simenv.make("support/Refunds-v1")
    env.reset(seed=11, options={"task_id": row.id})
    rewards = []
    for step in episode.steps:
        _, reward, terminated, truncated, _ = env.step(step.action)
        rewards.append(reward)
    assert rewards == [s.reward for s in episode.steps]
    assert terminated or truncated
    assert report.success == episode.success


def test_a_scenario_rollout_of_an_unknown_task_fails(played: Any) -> None:
    row = Row("no-such-task", "x", "train", {}, "support/Refunds-v1")
    report, episode = played(ScenarioAgent(timeout_s=30), row)
    assert report.status == "failed" and "no-such-task" in str(report.error)
    assert not episode.valid and episode.turns == 0
