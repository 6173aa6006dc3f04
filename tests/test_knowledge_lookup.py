"""The bundled recorded-replay scenario: its committed cassette matches the live service."""

from __future__ import annotations

import json
from pathlib import Path

import simenv
from scenarios import knowledge_lookup as kl
from simenv.policies import Oracle
from simenv.tools.replay import Cassette


def test_episodes_are_served_from_the_committed_cassette() -> None:
    env = simenv.make("lookup/Flights-v1")
    episode = simenv.rollout(env, Oracle(), seed=0, task_id="SK107-walk")
    assert episode.reward == 1.0 and episode.success
    assert {r.provenance for s in episode.steps for r in s.tool_results} == {"replay"}


def test_rerecording_from_the_live_service_reproduces_the_cassette(tmp_path: Path) -> None:
    fresh = Cassette(tmp_path / "cassette.json", mode="record")
    with kl.serve():
        for task in kl.SCENARIO.tasks:
            for name, arguments in _oracle_calls(task):
                served = fresh.serve(
                    name, arguments, lambda n=name, a=arguments: kl._get(_path(n, a))
                )
                assert served.provenance == "live"
    committed = json.loads((kl.DATA / "cassette.json").read_text())
    assert json.loads((tmp_path / "cassette.json").read_text()) == committed
    assert "127.0.0.1" in (kl.DATA / "http.yaml").read_text()  # the raw traffic is committed


def _oracle_calls(task: simenv.Task) -> list[tuple[str, dict[str, str]]]:
    from simenv.parsing import parse_action

    calls = []
    for action in kl.oracle(task, None):
        calls += [(c.name, c.arguments) for c in parse_action(action).tool_calls]
    return calls


def _path(name: str, arguments: dict[str, str]) -> str:
    if name == "get_flight":
        return f"flights/{arguments['code']}"
    if name == "get_airport":
        return f"airports/{arguments['iata']}"
    return f"gates/{arguments['airport']}/{arguments['gate']}"
