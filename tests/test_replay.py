"""Recorded replay against a real HTTP service on 127.0.0.1, then with the service stopped."""

from __future__ import annotations

import json
import threading
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

import simenv
from simenv import Outcome, Scenario, ScenarioError, Task, tool
from simenv.checks import check
from simenv.parsing import format_tool_call
from simenv.policies import Oracle, Scripted
from simenv.tools.replay import Cassette, http_recorder

TOKEN = "s3cr3t-token-123"
CATALOG = {"A-1": {"name": "kettle", "price": 30}, "B-2": {"name": "lamp", "price": 45}}


class Catalog(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            self.send_response(401)
            self.end_headers()
            return
        sku = self.path.split("?")[0].rsplit("/", 1)[-1]
        body = json.dumps(CATALOG.get(sku, {"error": "not found"})).encode()
        self.send_response(200 if sku in CATALOG else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def service() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Catalog)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def make_tool(cassette: Cassette, base: dict[str, str]) -> simenv.Tool:
    @tool(effect="read", replay=cassette)
    def product(sku: str) -> dict[str, Any]:
        """Look a product up in the catalogue.

        Args:
            sku: The product code, e.g. "A-1".
        """
        request = urllib.request.Request(
            f"{base['url']}/products/{sku}?api_key={TOKEN}",
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return dict(json.loads(response.read()))
        except urllib.error.HTTPError as exc:
            return {"error": f"HTTP {exc.code}"}

    return product


def scenario_for(product: simenv.Tool, sid: str = "test/Catalog-v1") -> Scenario:
    def reward(o: Outcome) -> float:
        return float(str(CATALOG[o.task.data["sku"]]["price"]) in o.answer)

    def oracle(task: Task, state: Any) -> list[str]:
        return [
            format_tool_call("product", {"sku": task.data["sku"]}),
            f"It costs {CATALOG[task.data['sku']]['price']}.",
        ]

    return Scenario(
        id=sid,
        system_prompt="Answer prices.",
        tools=[product],
        tasks=[Task(f"t-{s}", f"Price of {s}?", data={"sku": s}) for s in CATALOG],
        reward=reward,
        evaluate=reward,
        oracle=oracle,
        random_state=False,
        max_turns=3,
    )


def test_record_live_then_replay_with_the_service_stopped(
    service: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = {"url": service}
    cassette_path, http_path = tmp_path / "catalog.json", tmp_path / "catalog_http.yaml"
    recording = make_tool(Cassette(cassette_path, mode="record"), base)
    env = simenv.make(scenario_for(recording))
    with http_recorder(http_path):
        for sku in CATALOG:
            episode = simenv.rollout(env, Oracle(), seed=0, task_id=f"t-{sku}")
            assert episode.reward == 1.0
            assert episode.steps[0].tool_results[0].provenance == "live"
    stored = json.loads(cassette_path.read_text())
    assert {e["arguments"]["sku"] for e in stored["entries"]} == set(CATALOG)
    assert TOKEN not in cassette_path.read_text()
    http_text = http_path.read_text()
    assert "/products/A-1" in http_text and TOKEN not in http_text  # secrets filtered by vcrpy

    base["url"] = "http://127.0.0.1:9"  # the service is gone: any live call would fail
    replaying = make_tool(Cassette(cassette_path), base)
    env = simenv.make(scenario_for(replaying, "test/CatalogReplay-v1"))
    episode = simenv.rollout(env, Oracle(), seed=0, task_id="t-B-2")
    assert episode.reward == 1.0
    assert episode.steps[0].tool_results[0].provenance == "replay"
    assert json.loads(episode.steps[0].tool_results[0].content) == CATALOG["B-2"]


def test_strict_miss_names_the_nearest_key_and_the_difference(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text(
        json.dumps(
            {
                "version": 1,
                "entries": [
                    {"tool": "product", "arguments": {"sku": "A-1"}, "response": {"price": 30}}
                ],
            }
        )
    )
    product = make_tool(Cassette(path), {"url": "http://127.0.0.1:9"})
    env = simenv.make(scenario_for(product, "test/CatalogMiss-v1"))
    env.reset(seed=0, options={"task_id": "t-A-1"})
    observation = env.step(format_tool_call("product", {"sku": "A-9"}))[0]
    text = observation[1]["content"]
    assert text.startswith("Error: no recorded response for product")
    assert 'product({"sku":"A-1"})' in text and "~ sku" in text and '"A-9"' in text


def test_miss_can_void_the_episode_instead(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"version": 1, "entries": []}))
    product = make_tool(Cassette(path, miss="infra"), {"url": "http://127.0.0.1:9"})
    env = simenv.make(scenario_for(product, "test/CatalogInfra-v1"))
    env.reset(seed=0, options={"task_id": "t-A-1"})
    *_, info = env.step(format_tool_call("product", {"sku": "A-1"}))
    assert info["valid"] is False and "Re-record" in info["error"]


def test_hybrid_serves_recorded_calls_and_records_misses(service: str, tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text(
        json.dumps(
            {
                "version": 1,
                "entries": [
                    {"tool": "product", "arguments": {"sku": "A-1"}, "response": {"price": 999}}
                ],
            }
        )
    )
    product = make_tool(Cassette(path, mode="hybrid"), {"url": service})
    env = simenv.make(scenario_for(product, "test/CatalogHybrid-v1"))
    episode = simenv.rollout(
        env,
        Scripted(
            [
                format_tool_call("product", {"sku": "A-1"}),
                format_tool_call("product", {"sku": "B-2"}),
            ]
        ),
        seed=0,
    )
    results = [s.tool_results[0] for s in episode.steps[:2]]
    assert [r.provenance for r in results] == ["replay", "live"]
    assert json.loads(results[0].content) == {"price": 999}  # served, not fetched
    assert {e["arguments"]["sku"] for e in json.loads(path.read_text())["entries"]} == {
        "A-1",
        "B-2",
    }


def test_environment_variable_forces_the_mode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cassette = Cassette(tmp_path / "missing.json")
    monkeypatch.setenv("SIMENV_REPLAY_MODE", "record")
    assert cassette.mode == "record"
    monkeypatch.setenv("SIMENV_REPLAY_MODE", "sometimes")
    with pytest.raises(ScenarioError, match="SIMENV_REPLAY_MODE"):
        _ = cassette.mode


def test_only_read_tools_can_be_replayed(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="only read tools"):

        @tool(effect="write", replay=Cassette(tmp_path / "c.json"))
        def buy(sku: str) -> str:
            """Buy.

            Args:
                sku: Product.
            """
            return "ok"


def test_secrets_are_redacted_when_recorded(tmp_path: Path) -> None:
    cassette = Cassette(tmp_path / "c.json", mode="record")
    served = cassette.serve(
        "whoami",
        {"user": "ana"},
        lambda: {"name": "ana", "api_key": "k-1", "nested": {"Token": "t"}},
    )
    assert served.provenance == "live"
    text = (tmp_path / "c.json").read_text()
    assert "k-1" not in text and '"t"' not in text and "<redacted>" in text


def test_lookups_stay_exact_in_a_large_cassette(tmp_path: Path) -> None:
    path = tmp_path / "big.json"
    entries = [
        {"tool": "t", "arguments": {"i": i, "q": f"x{i}"}, "response": i} for i in range(10_000)
    ]
    path.write_text(json.dumps({"version": 1, "entries": entries}))
    cassette = Cassette(path)
    assert cassette.serve("t", {"q": "x7777", "i": 7777}, lambda: None).value == 7777
    assert len(cassette.keys("t")) == 10_000


def test_replay_coverage_check_catches_a_missing_entry(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text(
        json.dumps(
            {
                "version": 1,
                "entries": [
                    {"tool": "product", "arguments": {"sku": "A-1"}, "response": CATALOG["A-1"]},
                    {"tool": "product", "arguments": {"sku": "Z-0"}, "response": {}},
                ],
            }
        )
    )
    product = make_tool(Cassette(path), {"url": "http://127.0.0.1:9"})
    report = check(scenario_for(product, "test/CatalogGap-v1"), only=["replay"])
    result = report["replay"]
    assert result.status == "fail", report.summary()
    assert "not in the cassettes" in result.message and "B-2" in result.message
    assert "simenv record" in result.message
    # complete it: now it passes, and the unused entry is listed
    path.write_text(
        json.dumps(
            {
                "version": 1,
                "entries": [
                    {"tool": "product", "arguments": {"sku": s}, "response": CATALOG[s]}
                    for s in CATALOG
                ]
                + [{"tool": "product", "arguments": {"sku": "Z-0"}, "response": {}}],
            }
        )
    )
    product = make_tool(Cassette(path), {"url": "http://127.0.0.1:9"})
    result = check(scenario_for(product, "test/CatalogFull-v1"), only=["replay"])["replay"]
    assert result.status == "warn" and "Z-0" in str(result.details["unused"])
