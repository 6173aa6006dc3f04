"""The bundled recorded-replay scenario: offline from its committed vcrpy cassette, which
re-recording from the live service reproduces byte for byte."""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

import simenv
from scenarios import knowledge_lookup as kl
from simenv.parsing import format_tool_call, parse_action
from simenv.rollouts.policies import Oracle, Scripted
from simenv.rollouts.recording import coverage, record_scenario

COMMITTED = kl.DATA / "api.yaml"


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the bundled scenario must run without the network")

    monkeypatch.setattr(requests, "request", refuse)


@pytest.fixture
def scratch_cassette(tmp_path: Path) -> Iterator[Path]:
    """Point the scenario's cassette at a copy, so recording never touches the committed file."""
    copy, original = tmp_path / "api.yaml", kl.API.path
    shutil.copy(COMMITTED, copy)
    kl.API.path = copy
    kl.API.reload()
    try:
        yield copy
    finally:
        kl.API.path = original
        kl.API.reload()


def test_every_task_is_answered_offline_from_the_committed_cassette(offline: None) -> None:
    env = simenv.make("lookup/Knowledge-v1")
    for task in kl.SCENARIO.tasks:
        episode = simenv.rollout(env, Oracle(), seed=0, task_id=task.id)
        assert episode.reward == 1.0 and episode.success, task.id
        assert {r.provenance for s in episode.steps for r in s.tool_results} == {"replay"}


def test_tasks_chain_two_to_four_dependent_lookups() -> None:
    lengths = Counter()
    for task in kl.SCENARIO.tasks:
        turns = kl.oracle(task, None)
        calls = [c for turn in turns for c in parse_action(turn).tool_calls]
        lengths[len(calls)] += 1
    assert set(lengths) == {2, 3, 4} and len(kl.SCENARIO.tasks) >= 100, lengths


def test_rerecording_from_the_live_service_reproduces_the_cassette(scratch_cassette: Path) -> None:
    scratch_cassette.unlink()
    report = record_scenario(kl.SCENARIO)  # starts the service itself (the cassette's live=)
    assert report.episodes == len(kl.SCENARIO.tasks) and not report.unsolved
    assert scratch_cassette.read_bytes() == COMMITTED.read_bytes()


def test_the_credential_never_reaches_the_cassette() -> None:
    text = COMMITTED.read_text()
    assert kl.API_KEY not in text and "Bearer" not in text and "Authorization" not in text
    with kl.serve() as url:  # the service does require it
        assert requests.get(f"{url}/flights/SK100", timeout=5).status_code == 401
        authorized = {"Authorization": f"Bearer {kl.API_KEY}"}
        assert requests.get(f"{url}/flights/SK100", headers=authorized, timeout=5).ok


def test_the_cassette_covers_the_oracle_exactly() -> None:
    report = coverage(kl.SCENARIO)
    assert report.complete and not report.unused, report.summary()


def test_an_unrecorded_lookup_is_an_error_the_agent_reads(offline: None) -> None:
    env = simenv.make("lookup/Knowledge-v1")
    env.reset(seed=0, options={"task_id": "SK100-city"})
    observation, _, terminated, _, _ = env.step(format_tool_call("get_flight", {"code": "SK999"}))
    text = observation[1]["content"]
    assert not terminated and text.startswith("Error: no recorded response for GET /flights/SK999")
    assert "nearest recorded request is GET /flights/" in text and '-> "SK999"' in text


def test_naming_every_city_earns_nothing() -> None:
    env = simenv.make("lookup/Knowledge-v1")
    cities = ", ".join(city for city, _ in kl.AIRPORTS.values())
    episode = simenv.rollout(env, Scripted([f"It is one of {cities}."]), task_id="SK100-city")
    assert episode.reward == 0.0 and not episode.success
