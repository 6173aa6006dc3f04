"""The HTTP rollout server and RemoteEnv, against a real server on 127.0.0.1 (port 0)."""

from __future__ import annotations

import contextlib
import hmac
import itertools
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from http.client import HTTPConnection
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit

import gymnasium
import numpy as np
import pytest
from helpers import call, comparable, serving

import simenv
from simenv import Episode, InfraError, Outcome, Sandbox, Scenario, Task, registration, tool
from simenv.errors import RegistrationError, ResetNeeded, ScenarioError
from simenv.rollouts.policies import Oracle, Random, Scripted
from simenv.rollouts.policies.base import Policy
from simenv.server import RemoteEnv, RolloutServer, make_server
from simenv.server.app import MAX_BODY_BYTES

REFUNDS, ANALYST = "support/Refunds-v1", "sql/Analyst-v1"
PROBE_ID = "test/ServerProbe-v1"


# ----------------------------------------------------------------------------- a probe scenario
class Probe(Sandbox):
    """Records every close; its ``ping`` tool tells which sandbox answered."""

    closed: ClassVar[set[int]] = set()
    _tokens: ClassVar[itertools.count[int]] = itertools.count()

    def setup(self, rng: np.random.Generator, task: Task) -> None:
        if task.id == "infra":
            raise InfraError("the probe's backend is down; start it")
        if task.id == "bug":
            raise RuntimeError("a bug in the probe's setup")
        self.token = next(Probe._tokens)
        self.brittle = task.id == "brittle"

    def close(self) -> None:
        Probe.closed.add(self.token)
        if self.brittle:
            raise RuntimeError("the probe's close failed")


@tool
def ping(probe: Probe) -> int:
    """Say which sandbox answers."""
    return probe.token


def _zero(o: Outcome) -> float:
    return 0.0


PROBE = Scenario(
    id=PROBE_ID,
    system_prompt="Ping.",
    tools=[ping],
    tasks=[
        Task("ok", "Ping it."),
        Task("infra", "Ping it."),
        Task("bug", "Ping it."),
        Task("brittle", "Ping it."),
    ],
    sandbox=Probe,
    reward=_zero,
    evaluate=_zero,
    max_turns=100,
)


# ----------------------------------------------------------------------------- fixtures
@contextmanager
def running(server: RolloutServer) -> Iterator[RolloutServer]:
    with serving(server) as served:
        yield served


@pytest.fixture
def probe(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """PROBE registered for this test only (the bundled scenarios stay registered)."""
    simenv.registry()  # load the entry points before copying the registry
    monkeypatch.setattr(registration, "_specs", dict(registration._specs))
    before = set(gymnasium.registry)
    simenv.register(PROBE)
    yield PROBE_ID
    for env_id in set(gymnasium.registry) - before:
        del gymnasium.registry[env_id]


@pytest.fixture
def server(probe: str) -> Iterator[RolloutServer]:
    with running(
        make_server([REFUNDS, ANALYST, probe], port=0, max_envs=16, oracle=True, auth=False)
    ) as started:
        yield started


def exchange(
    url: str,
    method: str,
    path: str,
    body: Any = None,
    token: str | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """One request on its own connection; the status, the headers (lower case) and the body."""
    parts = urlsplit(url)
    connection = HTTPConnection(parts.hostname or "", parts.port, timeout=60)
    sent = dict(headers or {})
    if token:
        sent["Authorization"] = f"Bearer {token}"
    try:
        data = body if isinstance(body, bytes | None) else json.dumps(body).encode()
        connection.request(method, path, body=data, headers=sent)
        response = connection.getresponse()
        answer = response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, answer
    finally:
        connection.close()


def request(
    url: str, method: str, path: str, body: Any = None, token: str | None = None
) -> tuple[int, Any]:
    """One request on its own connection; the status and the decoded JSON answer."""
    status, _, answer = exchange(url, method, path, body, token)
    return status, json.loads(answer)


def raw(url: str, data: bytes, timeout_s: float = 10.0) -> tuple[bytes, float]:
    """Send ``data`` on a new socket; everything the server sends until it closes, and how long."""
    parts = urlsplit(url)
    start = time.monotonic()
    with socket.create_connection((parts.hostname or "", parts.port or 80), timeout_s) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks), time.monotonic() - start


def raw_json(answer: bytes) -> tuple[int, Any]:
    """The status and JSON body of one raw answer."""
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 "), answer[:200]
    return int(head[9:12]), json.loads(body)


def create(url: str, scenario_id: str) -> str:
    status, answer = request(url, "POST", "/envs", {"scenario": scenario_id})
    assert status == 201, answer
    return str(answer["env_id"])


def error(answer: Any) -> str:
    assert set(answer) == {"error"} and set(answer["error"]) == {"type", "message"}, answer
    return str(answer["error"]["message"])


# ----------------------------------------------------------------------------- same as local
CASES = [
    (REFUNDS, Oracle, range(6)),
    (REFUNDS, lambda: Random(seed=1), range(6)),
    (ANALYST, Oracle, range(4)),
    (ANALYST, lambda: Random(seed=2), range(4)),
]


@pytest.mark.parametrize(
    ("scenario_id", "policy", "seeds"),
    CASES,
    ids=["refunds-oracle", "refunds-random", "analyst-oracle", "analyst-random"],
)
def test_remote_rollouts_equal_local_ones(
    server: RolloutServer, scenario_id: str, policy: Any, seeds: range
) -> None:
    local_env = simenv.make(scenario_id)
    with RemoteEnv(server.url, scenario_id) as remote_env:
        for seed in seeds:
            chosen: Policy = policy()
            local = simenv.rollout(local_env, chosen, seed=seed)
            remote = simenv.rollout(remote_env, policy(), seed=seed)
            assert comparable(remote) == comparable(local)
            assert (remote.reward, remote.evaluation, remote.termination) == (
                local.reward,
                local.evaluation,
                local.termination,
            )
    local_env.close()


def test_each_step_returns_what_a_local_step_returns(server: RolloutServer) -> None:
    local_env = simenv.make(REFUNDS)
    local_env.reset(seed=4)
    base = local_env.unwrapped
    assert isinstance(base, simenv.MultiTurnEnv) and base.scenario.oracle is not None
    actions = [*base.scenario.oracle(base.task, base.state), "All done."]
    with RemoteEnv(server.url, REFUNDS) as remote_env:
        assert remote_env.reset(seed=4) == local_env.reset(seed=4)
        for action in actions:
            remote = remote_env.step(action)
            assert remote == local_env.step(action)
            if remote[2] or remote[3]:
                break
        assert remote[2] and remote[1] == 1.0
    local_env.close()


def test_a_scripted_policy_plays_over_http(server: RolloutServer) -> None:
    script = Scripted([call("ping"), call("ping"), "pong"])
    with RemoteEnv(server.url, PROBE_ID) as env:
        episode = simenv.rollout(env, script, seed=0, task_id="ok")
    assert episode.turns == 3 and episode.termination == "answer"
    assert episode.policy == {"name": "scripted", "turns": 3}


def test_the_oracle_endpoint_gives_the_gold_turns_before_and_after_a_step(
    server: RolloutServer,
) -> None:
    local_env = simenv.make(REFUNDS)
    local_env.reset(seed=5)
    base = local_env.unwrapped
    assert isinstance(base, simenv.MultiTurnEnv) and base.scenario.oracle is not None
    gold = list(base.scenario.oracle(base.task, base.state))
    local_env.close()
    with RemoteEnv(server.url, REFUNDS) as env:
        env.reset(seed=5)
        assert env.oracle() == gold
        env.step(gold[0])
        assert env.oracle() == gold  # rebuilt from the seed once the state may have moved


def test_the_oracle_endpoint_is_off_unless_asked_for() -> None:
    with running(make_server([REFUNDS], port=0, auth=False)) as server:
        env_id = create(server.url, REFUNDS)
        request(server.url, "POST", f"/envs/{env_id}/reset", {"seed": 5})
        status, answer = request(server.url, "GET", f"/envs/{env_id}/oracle")
        assert status == 403 and answer["error"]["type"] == "OracleDisabled"
        assert "--oracle" in answer["error"]["message"]
        with RemoteEnv(server.url, REFUNDS) as env:
            env.reset(seed=5)
            with pytest.raises(InfraError, match="gold turns"):
                simenv.rollout(env, Oracle(), seed=5)


# ----------------------------------------------------------------------------- errors
def test_a_malformed_tool_call_is_an_http_200_tool_message(server: RolloutServer) -> None:
    env_id = create(server.url, REFUNDS)
    request(server.url, "POST", f"/envs/{env_id}/reset", {"seed": 1})
    status, answer = request(
        server.url, "POST", f"/envs/{env_id}/step", {"action": "<tool_call>{not json}</tool_call>"}
    )
    assert status == 200
    assistant, tool_message = answer["observation"]
    assert assistant["role"] == "assistant" and tool_message["role"] == "tool"
    assert tool_message["content"].startswith("Error:") and "JSON" in tool_message["content"]
    assert answer["terminated"] is False and answer["reward"] == 0.0
    request(server.url, "DELETE", f"/envs/{env_id}")


def test_unwritable_actions_are_http_200_tool_messages(server: RolloutServer) -> None:
    deep = '{"a":' * 900 + "1" + "}" * 900
    env_id = create(server.url, REFUNDS)
    for arguments, answer in [
        ('{"order_id": "\\ud83d"}', "Error: No order '\ufffd'"),
        (deep, "Error: the arguments nest objects or arrays more than 64 levels deep"),
    ]:
        request(server.url, "POST", f"/envs/{env_id}/reset", {"seed": 1})
        action = f'<tool_call>{{"name": "lookup_order", "arguments": {arguments}}}</tool_call>'
        status, stepped = request(server.url, "POST", f"/envs/{env_id}/step", {"action": action})
        assert status == 200, stepped
        assert stepped["observation"][1]["content"].startswith(answer)
        status, record = request(server.url, "GET", f"/envs/{env_id}/episode")
        assert status == 200 and len(record["steps"]) == 1
    request(server.url, "DELETE", f"/envs/{env_id}")


def test_lone_surrogates_the_env_keeps_still_cross_http(server: RolloutServer) -> None:
    # Call ids and names are echoed as sent, so a surrogate in one reaches the answer: the
    # client and the server escape it (\udXXX is JSON, if not UTF-8) instead of failing.
    action = {
        "role": "assistant",
        "tool_calls": [{"id": "c\ud800", "function": {"name": "n\udcff", "arguments": "{}"}}],
    }
    with RemoteEnv(server.url, REFUNDS) as env:
        env.reset(seed=1)
        observation, _, terminated, _, _ = env.step(action)
        assert observation[1]["tool_call_id"] == "c\ud800" and not terminated
        assert observation[1]["content"].startswith("Error: unknown tool")
        env.step("Done.")
        episode = env.episode()
    assert episode.steps[0].tool_calls[0].id == "c\ud800"  # the record holds what was sent
    written = Episode.from_json(episode.to_json())  # ... and is repaired when written
    assert written.steps[0].tool_calls[0].id == "c\ufffd"
    # Every copy of the id and the name: in the assistant and tool messages and in the step's
    # action, call and result.
    assert written.metadata["sanitized"] == 10


def test_a_malformed_json_body_is_a_400_that_says_so(server: RolloutServer) -> None:
    env_id = create(server.url, REFUNDS)
    status, answer = request(server.url, "POST", f"/envs/{env_id}/step", b'{"action": ')
    assert status == 400 and "not valid JSON" in error(answer)
    status, answer = request(server.url, "POST", "/envs", b"[1, 2]")
    assert status == 400 and "JSON object" in error(answer)
    request(server.url, "DELETE", f"/envs/{env_id}")


def test_a_missing_or_mistyped_field_is_a_400_that_names_it(server: RolloutServer) -> None:
    status, answer = request(server.url, "POST", "/envs", {"scenaro": REFUNDS})
    assert status == 400 and "'scenario'" in error(answer)
    env_id = create(server.url, REFUNDS)
    status, answer = request(server.url, "POST", f"/envs/{env_id}/step", {})
    assert status == 400 and "'action'" in error(answer)
    status, answer = request(server.url, "POST", f"/envs/{env_id}/step", {"action": 3})
    assert status == 400 and "'action'" in error(answer)
    status, answer = request(server.url, "POST", f"/envs/{env_id}/reset", {"seed": "7"})
    assert status == 400 and "'seed'" in error(answer)
    status, answer = request(server.url, "POST", f"/envs/{env_id}/reset", {"seed": True})
    assert status == 400 and "'seed'" in error(answer)
    status, answer = request(server.url, "POST", f"/envs/{env_id}/reset", {"options": [1]})
    assert status == 400 and "'options'" in error(answer)
    request(server.url, "DELETE", f"/envs/{env_id}")


def test_a_bad_seed_or_task_is_a_scenario_error_as_locally(server: RolloutServer) -> None:
    with RemoteEnv(server.url, REFUNDS) as env:
        with pytest.raises(ScenarioError, match="no task 'nope'"):
            env.reset(seed=1, options={"task_id": "nope"})
        with pytest.raises(ScenarioError, match="non-negative"):
            env.reset(seed=-1)


def test_an_unknown_scenario_is_a_404_listing_the_served_ids(server: RolloutServer) -> None:
    status, answer = request(server.url, "POST", "/envs", {"scenario": "nope/Nothing-v1"})
    assert status == 404
    assert all(i in error(answer) for i in (REFUNDS, ANALYST, PROBE_ID))
    with pytest.raises(RegistrationError, match=re.escape(REFUNDS)):
        RemoteEnv(server.url, "nope/Nothing-v1")


def test_an_unknown_env_or_path_is_a_404(server: RolloutServer) -> None:
    status, answer = request(server.url, "POST", "/envs/0123abcd/step", {"action": "hi"})
    assert status == 404 and "0123abcd" in error(answer) and "POST /envs" in error(answer)
    status, answer = request(server.url, "GET", "/nothing")
    assert status == 404 and "/health" in error(answer)


def test_a_wrong_method_is_a_405_naming_the_right_one(server: RolloutServer) -> None:
    status, answer = request(server.url, "GET", "/envs/0123abcd/step")
    assert status == 405 and "use POST" in error(answer)
    status, answer = request(server.url, "PUT", "/health", {})
    assert status == 405 and "use GET" in error(answer)


def test_a_body_over_the_limit_is_a_413(server: RolloutServer) -> None:
    env_id = create(server.url, REFUNDS)
    body = json.dumps({"action": "x" * MAX_BODY_BYTES}).encode()
    status, answer = request(server.url, "POST", f"/envs/{env_id}/step", body)
    assert status == 413 and str(MAX_BODY_BYTES) in error(answer)
    request(server.url, "DELETE", f"/envs/{env_id}")


def test_step_before_reset_or_after_the_end_raises_reset_needed(server: RolloutServer) -> None:
    with RemoteEnv(server.url, REFUNDS) as env:
        with pytest.raises(ResetNeeded, match="reset"):
            env.step("hello")
        env.reset(seed=0)
        assert env.step("I can't help.")[2] is True
        with pytest.raises(ResetNeeded):
            env.step("hello again")
        status, answer = request(server.url, "POST", f"/envs/{env.env_id}/step", {"action": "x"})
        assert status == 409 and error(answer)


def test_infra_errors_and_bugs_are_500s_and_the_server_goes_on(server: RolloutServer) -> None:
    with RemoteEnv(server.url, PROBE_ID) as env:
        with pytest.raises(InfraError, match="backend is down"):
            env.reset(seed=0, options={"task_id": "infra"})
        with pytest.raises(InfraError, match="RuntimeError: a bug in the probe's setup"):
            env.reset(seed=0, options={"task_id": "bug"})
        env.reset(seed=0, options={"task_id": "ok"})
        assert env.step(call("ping"))[0][1]["role"] == "tool"
    health = {"ok": True, "simenv": simenv.__version__, "max_envs": 16, "live": 0}
    assert request(server.url, "GET", "/health") == (200, health)


def test_an_unreachable_server_is_an_infra_error() -> None:
    stopped = make_server(
        [REFUNDS], port=0, auth=False
    )  # bound, then closed: nothing listens there
    url = stopped.url
    stopped.server_close()
    with pytest.raises(InfraError, match="cannot reach the simenv server"):
        RemoteEnv(url, REFUNDS)


# ----------------------------------------------------------------------------- the env table
def test_the_max_envs_cap_is_a_429_until_one_is_deleted(probe: str) -> None:
    with running(make_server([probe], port=0, max_envs=2, auth=False)) as server:
        first, second = RemoteEnv(server.url, probe), RemoteEnv(server.url, probe)
        status, answer = request(server.url, "POST", "/envs", {"scenario": probe})
        assert status == 429 and "max_envs=2" in error(answer) and "DELETE" in error(answer)
        with pytest.raises(InfraError, match="max_envs"):
            RemoteEnv(server.url, probe)
        first.close()
        with RemoteEnv(server.url, probe) as third:
            third.reset(seed=0, options={"task_id": "ok"})
        second.close()


def test_delete_closes_the_env_and_its_sandbox(server: RolloutServer) -> None:
    env = RemoteEnv(server.url, PROBE_ID)
    env.reset(seed=0, options={"task_id": "ok"})
    token = json.loads(env.step(call("ping"))[0][1]["content"])
    assert token not in Probe.closed
    env.close()
    assert token in Probe.closed
    status, answer = request(server.url, "POST", f"/envs/{env.env_id}/reset", {})
    assert status == 404 and "was deleted" in error(answer)
    env.close()  # twice is fine


def test_idle_envs_are_reaped_on_the_next_request(server: RolloutServer) -> None:
    now = [1000.0]
    server.app.envs.clock = lambda: now[0]
    idle, recent = RemoteEnv(server.url, PROBE_ID), RemoteEnv(server.url, PROBE_ID)
    idle.reset(seed=0, options={"task_id": "ok"})
    token = json.loads(idle.step(call("ping"))[0][1]["content"])
    now[0] += server.app.envs.idle_timeout_s / 2
    recent.reset(seed=0, options={"task_id": "ok"})
    now[0] += server.app.envs.idle_timeout_s / 2 + 1
    assert request(server.url, "GET", "/health")[0] == 200  # any request reaps
    assert token in Probe.closed and len(server.app.envs) == 1
    with pytest.raises(InfraError, match="without a request"):
        idle.step(call("ping"))
    recent.step(call("ping"))  # still live
    idle.close()
    recent.close()


def test_a_close_that_fails_does_not_leak_the_other_envs(
    probe: str, capfd: pytest.CaptureFixture[str]
) -> None:
    def tokens(url: str, tasks: list[str]) -> list[int]:
        found = []
        for task in tasks:
            env_id = create(url, probe)
            request(url, "POST", f"/envs/{env_id}/reset", {"options": {"task_id": task}})
            answer = request(url, "POST", f"/envs/{env_id}/step", {"action": call("ping")})[1]
            found.append(json.loads(answer["observation"][1]["content"]))
        return found

    with running(make_server([probe], port=0, auth=False)) as server:
        now = [1000.0]
        server.app.envs.clock = lambda: now[0]
        reaped = tokens(server.url, ["brittle", "ok", "brittle", "ok"])
        now[0] += server.app.envs.idle_timeout_s + 1
        assert request(server.url, "GET", "/health")[0] == 200  # the reaping request still works
        assert set(reaped) <= Probe.closed and len(server.app.envs) == 0
        stopped = tokens(server.url, ["brittle", "ok", "brittle", "ok"])
    assert set(stopped) <= Probe.closed  # stopping the server closed every one
    assert capfd.readouterr().err.count("simenv serve: closing environment") == 4


def test_closing_the_server_closes_every_env(probe: str) -> None:
    with running(make_server([probe], port=0, auth=False)) as server:
        env = RemoteEnv(server.url, probe)
        env.reset(seed=0, options={"task_id": "ok"})
        token = json.loads(env.step(call("ping"))[0][1]["content"])
    assert token in Probe.closed
    env.close()  # the server is gone: closing still succeeds


def test_a_dropped_keep_alive_connection_is_reopened_once(server: RolloutServer) -> None:
    with RemoteEnv(server.url, PROBE_ID) as env:
        env.reset(seed=0, options={"task_id": "ok"})
        first = env._connection
        assert server.drop_connections() >= 1  # the server ends every kept-alive one
        assert env.step(call("ping"))[0][1]["role"] == "tool"
        assert env._connection is not first


# ----------------------------------------------------------------------------- threads
def test_eight_threads_give_the_episodes_of_sequential_runs(server: RolloutServer) -> None:
    jobs = [(Oracle if i % 2 else lambda: Random(seed=3), 10 + i) for i in range(8)]

    def remote(job: tuple[Any, int]) -> simenv.Episode:
        policy, seed = job
        with RemoteEnv(server.url, REFUNDS) as env:
            return simenv.rollout(env, policy(), seed=seed)

    with ThreadPoolExecutor(8) as pool:
        parallel = list(pool.map(remote, jobs))
    local_env = simenv.make(REFUNDS)
    sequential = [simenv.rollout(local_env, policy(), seed=seed) for policy, seed in jobs]
    local_env.close()
    assert [comparable(e) for e in parallel] == [comparable(e) for e in sequential]


def test_concurrent_requests_on_one_env_are_serialised(server: RolloutServer) -> None:
    env_id = create(server.url, PROBE_ID)
    request(server.url, "POST", f"/envs/{env_id}/reset", {"options": {"task_id": "ok"}})

    def steps(_: int) -> list[int]:
        body = {"action": call("ping")}
        return [
            request(server.url, "POST", f"/envs/{env_id}/step", body)[1]["info"]["turn"]
            for _ in range(5)
        ]

    with ThreadPoolExecutor(8) as pool:
        turns = sorted(t for chunk in pool.map(steps, range(8)) for t in chunk)
    assert turns == list(range(1, 41))
    status, record = request(server.url, "GET", f"/envs/{env_id}/episode")
    assert status == 200 and len(record["steps"]) == 40
    request(server.url, "DELETE", f"/envs/{env_id}")


# ----------------------------------------------------------------------------- records
def test_the_episode_endpoint_round_trips_to_the_local_episode(server: RolloutServer) -> None:
    local_env = simenv.make(ANALYST)
    local = simenv.rollout(local_env, Oracle(), seed=2)
    local_env.close()
    with RemoteEnv(server.url, ANALYST) as env:
        with pytest.raises(ResetNeeded):
            env.episode()
        simenv.rollout(env, Oracle(), seed=2)
        status, record = request(server.url, "GET", f"/envs/{env.env_id}/episode")
        fetched = env.episode(policy={"name": "oracle"})
    assert status == 200
    assert set(record) == set(json.loads(local.to_json()))  # what a JSONL line holds
    assert simenv.Episode.from_dict(record).messages == local.messages
    assert comparable(fetched) == comparable(local)
    assert fetched.steps[0].tool_results[0].provenance == local.steps[0].tool_results[0].provenance


def test_scenarios_and_health_describe_the_server(server: RolloutServer) -> None:
    health = {"ok": True, "simenv": simenv.__version__, "max_envs": 16, "live": 0}
    assert request(server.url, "GET", "/health") == (200, health)
    status, answer = request(server.url, "GET", "/scenarios")
    by_id = {s["id"]: s for s in answer["scenarios"]}
    assert status == 200 and set(by_id) == {REFUNDS, ANALYST, PROBE_ID}
    refunds = simenv.load_scenario(REFUNDS)
    assert by_id[REFUNDS]["tools"] == refunds.tool_schemas()
    assert by_id[REFUNDS]["max_turns"] == refunds.max_turns
    assert by_id[REFUNDS]["splits"] == {
        "train": len(refunds.split("train")),
        "eval": len(refunds.split("eval")),
    }


def test_answers_encode_numpy_values_and_sets() -> None:
    from simenv.server.transport import encode_json

    body, failure = encode_json({"n": np.int64(3), "x": np.float32(0.5), "s": {2, 1}})
    assert failure is None and json.loads(body) == {
        "n": 3,
        "x": 0.5,
        "s": [1, 2],
    }


# ----------------------------------------------------------------------------- the command
@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_simenv_serve_answers_health_and_stops_cleanly(stop: signal.Signals) -> None:
    command = [sys.executable, "-m", "simenv.cli", "serve", REFUNDS, "--port", "0"]
    command += ["--max-envs", "4", "--idle-timeout", "60"]
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as proc:
        try:
            assert proc.stdout is not None
            first = proc.stdout.readline()
            found = re.search(r"http://127\.0\.0\.1:\d+", first)
            assert found, first + proc.stderr.read()  # type: ignore[union-attr]
            url = found.group(0)
            assert REFUNDS in proc.stdout.readline()
            printed = re.fullmatch(
                r"token: (\S+) .*SIMENV_SERVER_TOKEN=\1.*\n", proc.stdout.readline()
            )
            assert printed, "no token was generated and printed"
            token = printed.group(1)
            health = {"ok": True, "simenv": simenv.__version__, "max_envs": 4, "live": 0}
            liveness = {"ok": True, "simenv": simenv.__version__}
            assert request(url, "GET", "/health") == (200, liveness)  # a probe needs no token
            assert request(url, "GET", "/scenarios")[0] == 401
            assert request(url, "GET", "/health", token=token) == (200, health)
            with RemoteEnv(url, REFUNDS, token=token) as env:  # deleted before the server stops
                env.reset(seed=1)
            assert request(url, "POST", "/envs", {"scenario": REFUNDS}, token)[0] == 201
            proc.send_signal(stop)
            out, err = proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 0, err
    assert "stopped" in out


def test_simenv_serve_refuses_an_unknown_id_in_one_line() -> None:
    from typer.testing import CliRunner

    from simenv.cli import app

    result = CliRunner().invoke(app, ["serve", "nope/Nothing-v1"])
    assert result.exit_code == 2 and "no scenario 'nope/Nothing-v1'" in result.output
    with pytest.raises(RegistrationError, match="simenv list"):
        make_server(["nope/Nothing-v1"], port=0)


# ----------------------------------------------------------------------------- the runner's pool
def _same(a: list[simenv.Episode], b: list[simenv.Episode]) -> None:
    """The same episodes, but for the random episode ids and tool latencies."""

    def strip(e: simenv.Episode) -> dict[str, Any]:
        record = comparable(e)
        record.pop("episode_id")
        return record

    assert [strip(e) for e in a] == [strip(e) for e in b]


@pytest.mark.parametrize("policy", [Oracle(), Random(seed=3)], ids=["oracle", "random"])
def test_runs_through_a_remote_pool_equal_local_runs(server: RolloutServer, policy: Policy) -> None:
    from simenv.rollouts import plan_jobs, run
    from simenv.server import RemotePool

    scenario = simenv.load_scenario(REFUNDS)
    jobs = plan_jobs(scenario, samples=2, limit=12)  # 24 episodes, more than the server's 16
    local = run(scenario, policy, jobs, batch_size=64)
    other = RemoteEnv(server.url, REFUNDS)  # another client's: one env fewer for the pool
    with RemotePool(server.url, scenario, workers=4) as pool:
        assert pool.capacity == 15  # what the server takes caps the lockstep batch
        remote = run(scenario, policy, jobs, batch_size=64, pool=pool)
        again = run(scenario, policy, jobs[:4], pool=pool)  # the environments are reused
    _same(remote, local)
    _same(again, local[:4])
    assert len(server.app.envs) == 1  # closing the pool deleted its own on the server
    other.close()


def test_a_time_limit_ends_remote_episodes_as_local_ones(server: RolloutServer) -> None:
    from simenv.rollouts import plan_jobs, run
    from simenv.server import RemotePool

    jobs = plan_jobs(simenv.load_scenario(REFUNDS), limit=3)
    local = run(REFUNDS, Oracle(), jobs, time_limit_s=0.0)
    with RemotePool(server.url, REFUNDS) as pool:
        remote = run(REFUNDS, Oracle(), jobs, time_limit_s=0.0, pool=pool)
    assert all(e.termination == "time_limit" and e.turns == 1 for e in remote)
    _same(remote, local)


def test_the_end_endpoint_needs_a_running_episode(server: RolloutServer) -> None:
    env_id = create(server.url, REFUNDS)
    status, answer = request(server.url, "POST", f"/envs/{env_id}/end", {})
    assert status == 409 and answer["error"]["type"] == "ResetNeeded"
    request(server.url, "POST", f"/envs/{env_id}/reset", {"seed": 1})
    status, answer = request(server.url, "POST", f"/envs/{env_id}/end", {"termination": "x"})
    assert status == 400 and "time_limit" in answer["error"]["message"]
    status, answer = request(server.url, "POST", f"/envs/{env_id}/end", {})
    assert status == 200 and answer["info"]["termination"] == "time_limit"
    status, answer = request(server.url, "POST", f"/envs/{env_id}/step", {"action": "Done."})
    assert status == 409  # the episode is over


def test_a_pool_replaces_an_environment_the_server_reaped(server: RolloutServer) -> None:
    from simenv.rollouts import Job, run
    from simenv.server import RemotePool

    now = [1000.0]
    server.app.envs.clock = lambda: now[0]
    jobs = [Job("ok", 0, 0)]
    with RemotePool(server.url, PROBE_ID, workers=1) as pool:
        first = run(PROBE_ID, Scripted([call("ping"), "Done."]), jobs, pool=pool)
        now[0] += server.app.envs.idle_timeout_s + 1  # the pool's one env sits idle too long
        second = run(PROBE_ID, Scripted([call("ping"), "Done."]), jobs, pool=pool)
    assert first[0].turns == second[0].turns == 2
    assert first[0].messages[-2]["content"] != second[0].messages[-2]["content"]  # new sandbox


def test_simenv_run_plays_on_a_server(server: RolloutServer) -> None:
    from typer.testing import CliRunner

    from simenv.cli import app

    args = ["run", REFUNDS, "-p", "oracle", "-p", "null", "-n", "5", "--json"]
    local = CliRunner().invoke(app, args)
    remote = CliRunner().invoke(app, [*args, "--server", server.url])
    assert local.exit_code == 0 and remote.exit_code == 0, remote.output
    assert json.loads(remote.output) == json.loads(local.output)
    both = CliRunner().invoke(app, [*args, "--server", server.url, "--backend", "ray"])
    assert both.exit_code == 2 and "give one" in both.output


# ----------------------------------------------------------------------------- load and limits
BENCH = Path(__file__).resolve().parents[1] / "bench"
TOKEN_A, TOKEN_B = "a" * 20 + "-token-of-alice", "b" * 20 + "-token-of-bob"


def _bench(script: str, *args: str, timeout_s: float = 120) -> dict[str, Any]:
    """Run ``bench/script`` in its own process with ``--json``; its figures."""
    result = subprocess.run(
        [sys.executable, str(BENCH / script), *args, "--json"],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        env={**os.environ, "PYTHONPATH": str(BENCH)},
    )
    assert result.stdout, result.stderr
    figures: dict[str, Any] = json.loads(result.stdout.splitlines()[-1])
    return figures


def test_two_hundred_sessions_at_once_from_another_process_all_complete() -> None:
    # The listen backlog was 5: of 200 connections opened at once, about 130 were reset.
    with running(make_server([REFUNDS], port=0, max_envs=256, tokens=[TOKEN_A])) as server:
        args = ["--url", server.url, "--token", TOKEN_A, "--sessions", "200", "--steps", "3"]
        figures = _bench("server_load.py", *args)
        assert len(server.app.envs) == 0  # every session closed its environment
    assert figures["failures"] == {} and figures["completed"] == 200, figures["examples"]
    assert figures["steps"] == 600 and figures["step_p99_ms"] > 0


def test_threads_stay_bounded_whatever_the_clients_hold_open(probe: str) -> None:
    # One thread per connection: 350 slow connections made 352 threads.
    server = make_server([probe], port=0, auth=False, workers=4, request_timeout_s=5)
    with running(server):
        before = threading.active_count()
        parts = urlsplit(server.url)
        slow = [socket.create_connection((parts.hostname, parts.port), 10) for _ in range(300)]
        for sock in slow[::2]:  # half send part of a request and stall, half send nothing
            sock.sendall(b"POST /envs HTTP/1.1\r\nContent-Length: 40\r\n")
        with ThreadPoolExecutor(16) as pool:  # real requests still go through meanwhile
            statuses = list(pool.map(lambda _: request(server.url, "GET", "/health")[0], range(64)))
        assert statuses == [200] * 64
        assert server.connections >= 300
        assert threading.active_count() - before <= 4  # the workers; no thread per connection
        for sock in slow:
            sock.close()


def test_slow_and_idle_connections_time_out(probe: str) -> None:
    server = make_server(
        [probe], port=0, auth=False, request_timeout_s=0.5, keepalive_timeout_s=0.5
    )
    with running(server):
        answer, took = raw(server.url, b"POST /envs HTTP/1.1\r\nContent-Length: 40\r\n\r\n{")
        status, body = raw_json(answer)
        assert status == 408 and "0.5 s" in error(body) and took < 5
        answer, took = raw(server.url, b"")  # connected, then silent
        assert answer == b"" and took < 5


def test_connections_over_the_cap_are_a_503_busy(probe: str) -> None:
    with running(make_server([probe], port=0, auth=False, max_connections=2)) as server:
        parts = urlsplit(server.url)
        held = [HTTPConnection(parts.hostname or "", parts.port, timeout=10) for _ in range(2)]
        for connection in held:  # two kept-alive connections: the cap
            connection.request("GET", "/health")
            assert connection.getresponse().read()
        answer, _ = raw(server.url, b"GET /health HTTP/1.1\r\n\r\n")
        status, body = raw_json(answer)
        assert status == 503 and body["error"]["type"] == "Busy"
        assert "max_connections=2" in error(body) and b"Retry-After: 1" in answer
        held[0].close()
        deadline = time.monotonic() + 5
        while server.connections >= 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert request(server.url, "GET", "/health")[0] == 200
        held[1].close()


def test_a_closing_server_is_a_503(server: RolloutServer) -> None:
    env_id = create(server.url, REFUNDS)
    server.app.envs.close_all()  # what stopping does first
    for method, path, body in [
        ("POST", "/envs", {"scenario": REFUNDS}),
        ("POST", f"/envs/{env_id}/step", {"action": "hi"}),
    ]:
        status, answer = request(server.url, method, path, body)
        assert status == 503 and answer["error"]["type"] == "ServerClosing", answer


def test_a_chunked_body_is_a_411(server: RolloutServer) -> None:
    body = b'{"scenario": "support/Refunds-v1"}'
    chunked = f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n"
    head = b"POST /envs HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    status, answer = raw_json(raw(server.url, head + chunked)[0])
    assert status == 411 and answer["error"]["type"] == "LengthRequired"
    assert "Content-Length" in error(answer)


def test_the_oracle_of_a_scenario_without_one_is_a_404(server: RolloutServer) -> None:
    env_id = create(server.url, PROBE_ID)  # PROBE declares no oracle; the server has --oracle
    status, answer = request(server.url, "GET", f"/envs/{env_id}/oracle")
    assert status == 409  # no episode yet
    request(server.url, "POST", f"/envs/{env_id}/reset", {"options": {"task_id": "ok"}})
    status, answer = request(server.url, "GET", f"/envs/{env_id}/oracle")
    assert status == 404 and answer["error"]["type"] == "NoOracle" and PROBE_ID in error(answer)


# ----------------------------------------------------------------------------- methods and bodies
@pytest.mark.parametrize("method", ["OPTIONS", "TRACE", "HEAD", "PATCH", "PUT", "FOO", "get"])
def test_every_method_gets_the_json_405_with_allow(server: RolloutServer, method: str) -> None:
    env_id = create(server.url, REFUNDS)
    for path, allowed in [("/health", "GET"), (f"/envs/{env_id}/step", "POST")]:
        status, headers, body = exchange(server.url, method, path)
        assert status == 405 and headers["allow"] == allowed
        assert headers["content-type"].startswith("application/json")
        if method == "HEAD":  # a HEAD answer has no body; its length is the GET's would-be one
            assert body == b"" and int(headers["content-length"]) > 0
        else:
            assert f"use {allowed}" in error(json.loads(body))
    status, _, body = exchange(server.url, method, "/nothing")
    assert status == 404 and (method == "HEAD" or error(json.loads(body)))


def test_an_http_0_9_request_is_a_400_and_the_connection_closes(server: RolloutServer) -> None:
    answer, took = raw(server.url, b"GET /\r\n")  # no version, no headers: it used to hang
    status, body = raw_json(answer)
    assert status == 400 and "HTTP/0.9" in error(body) and took < 5


@pytest.mark.parametrize(
    ("head", "status", "kind"),
    [
        (b"\x00\x01 / HTTP/1.1\r\n\r\n", 400, "BadRequest"),
        (b"GET /health HTTP/2.0\r\n\r\n", 505, "VersionNotSupported"),
        (b"GET /health HTTP/1.1\r\nno colon here\r\n\r\n", 400, "BadRequest"),
        (b"POST /envs HTTP/1.1\r\nContent-Length: abc\r\n\r\n", 400, "BadRequest"),
        (b"POST /envs HTTP/1.1\r\nContent-Length: 1, 2\r\n\r\nxy", 400, "BadRequest"),
        (b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\n\r\n", 414, "URITooLong"),
        (b"GET /health HTTP/1.1\r\n" + b"X: y\r\n" * 101 + b"\r\n", 431, "HeadersTooLarge"),
    ],
    ids=["garbage", "http2", "header", "length", "two-lengths", "long-line", "many-headers"],
)
def test_malformed_requests_are_json_errors(
    server: RolloutServer, head: bytes, status: int, kind: str
) -> None:
    got, answer = raw_json(raw(server.url, head)[0])
    assert (got, answer["error"]["type"]) == (status, kind) and error(answer)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b'{"action": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "levels deep"),
        (b'{"action": ' + b'{"a": ' * 200 + b"1" + b"}" * 201, "levels deep"),
        (b'{"action": ' + b"7" * 4301 + b"}", "4300"),
        (b'{"action": NaN}', "NaN"),
        (b'{"action": -Infinity}', "NaN or Infinity"),
        (b'{"action": "\xff"}', "UTF-8"),
        (b"\xff\xfe\x00", "UTF-8"),
    ],
    ids=["deep-arrays", "deep-objects", "long-int", "nan", "infinity", "not-utf8", "bom"],
)
def test_malformed_bodies_are_400s_with_the_reason(
    server: RolloutServer, body: bytes, reason: str
) -> None:
    env_id = create(server.url, REFUNDS)
    request(server.url, "POST", f"/envs/{env_id}/reset", {"seed": 1})
    for path in [f"/envs/{env_id}/step", f"/envs/{env_id}/reset", "/envs"]:
        status, answer = request(server.url, "POST", path, body)
        assert status == 400 and reason in error(answer), answer
    status, _ = request(server.url, "POST", f"/envs/{env_id}/step", {"action": "still here"})
    assert status == 200


# ----------------------------------------------------------------------------- the OpenAPI document
METHODS = ["GET", "POST", "DELETE", "PUT", "PATCH", "HEAD", "OPTIONS", "TRACE", "FOO"]


def test_the_openapi_document_lists_exactly_the_routes_the_server_answers(
    server: RolloutServer,
) -> None:
    status, document = request(server.url, "GET", "/openapi.json")
    assert status == 200 and document["openapi"].startswith("3.")
    documented = {(m.upper(), p) for p, ops in document["paths"].items() for m in ops}
    paths = {p for _, p in documented} | {"/", "/env", "/envs/{env_id}/nothing", "/openapi"}
    answered = set()
    for template in paths:
        for method in METHODS:
            env_id = create(server.url, PROBE_ID)
            request(server.url, "POST", f"/envs/{env_id}/reset", {"options": {"task_id": "ok"}})
            path = template.replace("{env_id}", env_id)
            got, _, body = exchange(server.url, method, path, b"{}")
            kind = json.loads(body)["error"]["type"] if got >= 400 and body else ""
            if kind not in ("UnknownPath", "MethodNotAllowed") and method != "HEAD":
                answered.add((method, template))
            op = document["paths"].get(template, {}).get(method.lower())
            if op is not None:  # every status the server gives is one the document lists
                assert str(got) in op["responses"], (method, path, got, body)
            request(server.url, "DELETE", f"/envs/{env_id}")
    assert answered == documented
    schemas = document["components"]["schemas"]
    refs = re.findall(r'"#/components/schemas/(\w+)"', json.dumps(document))
    assert set(refs) <= set(schemas)


def test_a_schema_driven_fuzzer_finds_no_5xx(probe: str) -> None:
    with running(make_server([REFUNDS, ANALYST], port=0, oracle=True, tokens=[TOKEN_A])) as server:
        args = ["--url", server.url, "--token", TOKEN_A, "--requests", "1500", "--seed", "7"]
        figures = _bench("server_fuzz.py", *args)
    assert figures["findings"] == {}, figures["examples"]
    assert figures["requests"] == 1500 and figures["statuses"].get("200", 0) > 300
    assert not any(int(status) >= 500 for status in figures["statuses"])


# ----------------------------------------------------------------------------- authentication
@pytest.fixture
def guarded(probe: str) -> Iterator[RolloutServer]:
    """A server that accepts two tokens, A and B."""
    with running(
        make_server([REFUNDS, probe], port=0, oracle=True, tokens=[TOKEN_A, TOKEN_B])
    ) as started:
        yield started


def test_requests_without_a_valid_token_are_401s(guarded: RolloutServer) -> None:
    for token, fault in [(None, ""), ("x" * 30, 'error="invalid_token"')]:
        for method, path in [("GET", "/scenarios"), ("POST", "/envs"), ("GET", "/nothing")]:
            status, headers, body = exchange(guarded.url, method, path, {}, token)
            assert status == 401 and json.loads(body)["error"]["type"] == "Unauthorized"
            assert headers["www-authenticate"].startswith('Bearer realm="simenv"')
            assert fault in headers["www-authenticate"]
    status, _, body = exchange(
        guarded.url, "GET", "/health", headers={"Authorization": f"Basic {TOKEN_A}"}
    )
    assert status == 401 and "Bearer TOKEN" in error(json.loads(body))
    assert request(guarded.url, "GET", "/health", token=TOKEN_B)[0] == 200
    with pytest.raises(InfraError, match=r"refused the token.*SIMENV_SERVER_TOKEN"):
        RemoteEnv(guarded.url, REFUNDS)


def test_another_token_gets_a_404_for_each_route_and_lists_only_its_own(
    guarded: RolloutServer,
) -> None:
    with RemoteEnv(guarded.url, REFUNDS, token=TOKEN_A) as mine:
        mine.reset(seed=2)
        unknown = "00aa11bb22cc33dd"
        for method, template, body in [
            ("POST", "/envs/{}/reset", {"seed": 1}),
            ("POST", "/envs/{}/step", {"action": "hi"}),
            ("POST", "/envs/{}/end", {}),
            ("GET", "/envs/{}/episode", None),
            ("GET", "/envs/{}/oracle", None),
            ("DELETE", "/envs/{}", None),
        ]:
            status, answer = request(
                guarded.url, method, template.format(mine.env_id), body, TOKEN_B
            )
            never = request(guarded.url, method, template.format(unknown), body, TOKEN_B)[1]
            assert status == 404  # not 403: the id's existence is not confirmed
            assert error(answer).replace(mine.env_id, "ID") == error(never).replace(unknown, "ID")
        assert request(guarded.url, "GET", "/envs", token=TOKEN_B) == (200, {"envs": []})
        listed = request(guarded.url, "GET", "/envs", token=TOKEN_A)[1]["envs"]
        assert listed == [{"env_id": mine.env_id, "scenario": REFUNDS}]
        assert mine.step("Still mine.")[2] is True  # B's attempts changed nothing
        deleted = mine.env_id
    # A is told why its own environment is gone; B is told nothing more than of an unknown id.
    assert "was deleted" in error(
        request(guarded.url, "GET", f"/envs/{deleted}/episode", None, TOKEN_A)[1]
    )
    assert "was deleted" not in error(
        request(guarded.url, "GET", f"/envs/{deleted}/episode", None, TOKEN_B)[1]
    )


def test_the_client_reads_its_token_from_the_environment(
    guarded: RolloutServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from simenv.rollouts import plan_jobs, run
    from simenv.server import RemotePool

    monkeypatch.setenv("SIMENV_SERVER_TOKEN", TOKEN_B)
    with RemoteEnv(guarded.url, PROBE_ID) as env:
        assert (
            request(guarded.url, "GET", "/envs", token=TOKEN_B)[1]["envs"][0]["env_id"]
            == env.env_id
        )
    jobs = plan_jobs(simenv.load_scenario(REFUNDS), limit=2)
    with RemotePool(guarded.url, REFUNDS, token=TOKEN_A) as pool:
        assert [e.reward for e in run(REFUNDS, Oracle(), jobs, pool=pool)] == [1.0, 1.0]
    monkeypatch.setenv("SIMENV_SERVER_TOKEN", "z" * 30)
    with pytest.raises(InfraError, match="refused the token"):
        RemotePool(guarded.url, REFUNDS)


def test_tokens_come_from_the_argument_the_environment_or_are_generated(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from simenv.server.auth import resolve_tokens

    monkeypatch.setenv("SIMENV_SERVER_TOKENS", f"{TOKEN_A}, {TOKEN_B}")
    assert resolve_tokens() == ([TOKEN_A, TOKEN_B], False)
    assert resolve_tokens([TOKEN_B]) == ([TOKEN_B], False)
    monkeypatch.delenv("SIMENV_SERVER_TOKENS")
    (generated,), made = resolve_tokens()
    assert made and len(generated) >= 40
    with pytest.raises(ValueError, match="switched off"):
        resolve_tokens([TOKEN_A], auth=False)
    server = make_server([REFUNDS], port=0)
    try:
        assert server.generated_token and server.app.auth.required
    finally:
        server.server_close()
    with pytest.raises(ValueError, match="too easy to guess"):
        make_server([REFUNDS], port=0, tokens=["short"])


def test_auth_can_be_off_only_on_loopback() -> None:
    from typer.testing import CliRunner

    from simenv.cli import app

    for host in ["0.0.0.0", "::", "192.168.1.4", "example.org"]:
        with pytest.raises(ValueError, match="loopback"):
            make_server([REFUNDS], host=host, port=0, auth=False)
    result = CliRunner().invoke(app, ["serve", REFUNDS, "--host", "0.0.0.0", "--no-auth"])
    assert result.exit_code == 2 and "loopback" in result.output
    for host in ["127.0.0.1", "::1", "localhost"]:
        server = make_server([REFUNDS], host=host, port=0, auth=False)
        server.server_close()


def test_every_token_is_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    from simenv.server import auth

    tokens = [f"{i}" * 20 for i in range(5)]
    checked: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def compare(a: bytes, b: bytes) -> bool:
        checked.append((a, b))
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", compare)
    gate = auth.TokenAuth(tokens)
    for offered in [tokens[0], tokens[4], "9" * 20]:
        checked.clear()
        with contextlib.suppress(auth.AuthError):
            gate.principal(f"Bearer {offered}")
        assert len(checked) == 5  # every token, whichever matches: the time does not tell
    assert gate.principal(f"Bearer {tokens[1]}") != gate.principal(f"Bearer {tokens[2]}")
    assert tokens[1] not in gate.principal(f"Bearer {tokens[1]}")  # the principal is a digest


def test_the_cross_token_check_finds_no_leak() -> None:
    figures = _bench("server_tokens.py", "--envs", "3")
    assert figures["leaks"] == 0 and figures["requests_checked"] >= 40, figures["examples"]


def test_health_without_a_token_is_liveness_only() -> None:
    with running(make_server([REFUNDS], port=0, tokens=[TOKEN_A])) as server:
        liveness = {"ok": True, "simenv": simenv.__version__}
        assert request(server.url, "GET", "/health") == (200, liveness)
        status, answer = request(server.url, "GET", "/health", token=TOKEN_A)
        assert status == 200 and answer["max_envs"] > 0 and answer["live"] == 0
        assert request(server.url, "GET", "/health", token=TOKEN_B)[0] == 401  # wrong: refused
        assert request(server.url, "GET", "/scenarios")[0] == 401  # only /health is open
        assert request(server.url, "GET", "/envs")[0] == 401
