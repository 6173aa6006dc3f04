"""Conversations downstream: metrics (pass^k, per-user-turn success), reports, the viewer, the
rollout server and the runner."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace

import gymnasium
import pytest
from helpers import comparable, serving
from user_scenarios import bank_scenario, desk_scenario, oracle

import simenv
from simenv import Episode, registration
from simenv.evaluation.metrics import is_conversation, summarize, user_turn_scores
from simenv.evaluation.report import render_report
from simenv.evaluation.viewer import render_transcripts
from simenv.rollouts.jobs import plan_jobs
from simenv.rollouts.policies import Null, Oracle, Random, Scripted
from simenv.rollouts.runner import run
from simenv.server import RemoteEnv, make_server


def play(scenario: simenv.Scenario, task_id: str, policy: object, seed: int = 0) -> Episode:
    env = simenv.make(scenario)
    try:
        return simenv.rollout(env, policy, seed=seed, task_id=task_id)  # type: ignore[arg-type]
    finally:
        env.close()


# ----------------------------------------------------------------------------- metrics
def test_user_turn_scores_are_the_per_instruction_scores() -> None:
    scenario = bank_scenario()
    task = scenario.task("multi_turn_base_0")
    gold = play(scenario, task.id, Oracle())
    assert user_turn_scores(gold) == pytest.approx([1 / 3] * 3)
    half = play(scenario, task.id, Scripted([*oracle(task, None)[:2], "Sure.", "No idea."]))
    assert user_turn_scores(half) == pytest.approx([1 / 3, 0.0, 0.0])
    # truncated on the answer to the first: the second was sent but never answered (the third,
    # never sent, is not in the episode)
    short = play(bank_scenario(max_turns=1), task.id, Null())
    assert short.termination == "max_turns" and user_turn_scores(short) == [0.0, 0.0]
    assert user_turn_scores(play(bank_scenario(user=None), task.id, Null())) is None
    assert is_conversation(gold) and not is_conversation(
        play(desk_scenario(user=None), "cancel-0", Null())
    )


def test_summaries_of_conversations_have_user_metrics_and_lead_with_pass_hat_k() -> None:
    scenario = bank_scenario()
    task = scenario.task("multi_turn_base_0")
    plans = [oracle(task, None), [*oracle(task, None)[:2], "Sure.", "No idea."]]
    episodes = [
        replace(play(scenario, task.id, Scripted(plans[i % 2]), seed=i), group=0) for i in range(4)
    ]
    summary = summarize(episodes, ks=(1, 2))
    assert summary.conversational
    assert summary.metrics["users/turns"] == 3.0
    assert summary.metrics["users/turn_success"] == pytest.approx((3 + 1 + 3 + 1) / 12)
    assert summary.metrics["eval/pass^2"] == pytest.approx(1 / 6)  # C(2,2)/C(4,2)
    html = render_report({"run": summary}, {"run": episodes}, title="t")
    assert "pass^k (all k trials succeed)" in html and "user turns" in html
    plain = summarize([play(bank_scenario(user=None), task.id, Null())])
    assert not plain.conversational and "users/turns" not in plain.metrics
    assert "pass^k (all" not in render_report({"r": plain}, {"r": []}, title="t")


# ----------------------------------------------------------------------------- viewer
def test_the_viewer_shows_user_messages_as_role_user() -> None:
    episode = play(bank_scenario(), "multi_turn_base_1", Oracle())
    html = render_transcripts([episode])
    data = html.split('<script type="application/json" id="data">')[1].split("</script>")[0]
    record = json.loads(data)[0]
    users = [m["content"] for m in record["messages"] if m["role"] == "user"]
    assert users[1:] == ["Now open a new account called travel.", users[2]] and len(users) == 3
    assert record["steps"][1]["user_message"]["role"] == "user"
    assert ".msg.user{" in html  # styled as the user's, not as a tool's


# ----------------------------------------------------------------------------- server, runner
@pytest.fixture
def registered(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    simenv.registry()
    monkeypatch.setattr(registration, "_specs", dict(registration._specs))
    before = set(gymnasium.registry)
    simenv.register(desk_scenario())
    yield "test/Desk-v1"
    for env_id in set(gymnasium.registry) - before:
        del gymnasium.registry[env_id]


def test_a_conversation_round_trips_through_the_rollout_server(registered: str) -> None:
    local_env = simenv.make(registered)
    server = make_server([registered], port=0, max_envs=4, oracle=True, auth=False)
    with serving(server), RemoteEnv(server.url, registered) as remote_env:
        for seed, policy in ((3, Oracle), (4, Null), (5, lambda: Random(seed=1))):
            local = simenv.rollout(local_env, policy(), seed=seed)
            remote = simenv.rollout(remote_env, policy(), seed=seed)
            assert comparable(remote) == comparable(local)
            assert remote.termination == local.termination
            if seed != 5:  # the oracle's and the null agent's: the user ends them
                assert remote.termination == "user_end"
            assert [m["role"] for m in remote.messages].count("user") >= 2
    local_env.close()


def test_the_runner_plays_conversations_in_lockstep() -> None:
    scenario = desk_scenario()
    jobs = plan_jobs(scenario, split=None, samples=2, seed=0)
    episodes = run(scenario, Oracle(), jobs, batch_size=3)
    assert all(e.reward == 1.0 and e.termination == "user_end" for e in episodes)
    alone = play(scenario, episodes[0].task_id, Oracle(), seed=episodes[0].seed)
    assert episodes[0].messages == alone.messages
