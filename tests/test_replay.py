"""Recorded replay: function-call cassettes, and HTTP cassettes recorded through vcrpy against a
real service on 127.0.0.1, then replayed with that service stopped."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
import vcr.matchers
from typer.testing import CliRunner

import simenv
from simenv import Outcome, Scenario, ScenarioError, Task, ToolError, tool
from simenv.checks import check
from simenv.cli import app as replay_app
from simenv.parsing import format_tool_call
from simenv.rollouts.policies import Oracle, Scripted
from simenv.rollouts.recording import coverage, record_scenario
from simenv.tools.replay import ENV_VAR, Cassette, replay_mode
from simenv.tools.replay.http import HttpCassette

TOKEN = "s3cr3t-token-123"
QUERY_KEY = "k3y-in-the-url-456"
CATALOG = {
    "A-1": {"name": "kettle", "price": 30, "session_token": "resp-secret-789"},
    "B-2": {"name": "lamp", "price": 45, "session_token": "resp-secret-789"},
    "C-3": {"name": "desk", "price": 120, "session_token": "resp-secret-789"},
}
OFFLINE = "http://127.0.0.1:9"  # nothing listens there: a live call would fail


# ----------------------------------------------------------------------------- the service
class Catalog(BaseHTTPRequestHandler):
    hits = 0

    def do_GET(self) -> None:
        Catalog.hits += 1
        if self.headers.get("Authorization") != f"Bearer {TOKEN}" or QUERY_KEY not in self.path:
            self.send_response(401)
            self.end_headers()
            return
        sku = self.path.split("?")[0].rsplit("/", 1)[-1]
        body = json.dumps(CATALOG.get(sku, {"error": "not found"})).encode()
        self.send_response(200 if sku in CATALOG else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Set-Cookie", f"session={TOKEN}")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


class Service:
    """The catalogue on a free port of 127.0.0.1, stoppable mid-test."""

    def __init__(self) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Catalog)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.running = True

    def stop(self) -> None:
        if self.running:
            self.server.shutdown()
            self.server.server_close()
            self.thread.join()
            self.running = False


@pytest.fixture
def service() -> Iterator[Service]:
    running = Service()
    yield running
    running.stop()


# ----------------------------------------------------------------------------- scenarios
def http_tool(api: HttpCassette) -> simenv.Tool:
    @tool(effect="read", replay=api)
    def product(sku: str) -> dict[str, Any]:
        """Look a product up in the catalogue.

        Args:
            sku: The product code, e.g. "A-1".
        """
        response = api.get(
            f"/products/{sku}",
            params={"api_key": QUERY_KEY, "lang": "en"},
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
        if response.status == 404:
            raise ToolError(f"no product {sku!r}")
        return dict(response.json())

    return product


def function_tool(cassette: Cassette, calls: list[str]) -> simenv.Tool:
    @tool(effect="read", replay=cassette)
    def product(sku: str) -> dict[str, Any]:
        """Look a product up in the catalogue.

        Args:
            sku: The product code, e.g. "A-1".
        """
        calls.append(sku)
        if sku not in CATALOG:
            raise ToolError(f"no product {sku!r}")
        return {k: v for k, v in CATALOG[sku].items() if k != "session_token"}

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


def write_cassette(path: Path, entries: list[tuple[str, dict[str, Any], Any]]) -> None:
    rows = [{"tool": t, "arguments": a, "response": r} for t, a, r in entries]
    path.write_text(json.dumps({"version": 1, "entries": rows}))


def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a replay must not touch the network")

    monkeypatch.setattr(requests, "request", refuse)


# ----------------------------------------------------------------------------- function calls
def test_function_calls_record_live_then_replay_without_calling_the_tool(tmp_path: Path) -> None:
    path, calls = tmp_path / "catalog.json", []
    scenario = scenario_for(function_tool(Cassette(path), calls))
    with replay_mode("record"):
        recorded = simenv.rollout(simenv.make(scenario), Oracle(), seed=0, task_id="t-A-1")
    assert calls == ["A-1"] and recorded.steps[0].tool_results[0].provenance == "live"
    stored = json.loads(path.read_text())["entries"]
    assert stored == [{"tool": "product", "arguments": {"sku": "A-1"}, "response": {
        "name": "kettle", "price": 30}}]  # fmt: skip

    replayed_scenario = scenario_for(function_tool(Cassette(path), calls), "test/Catalog2-v1")
    replayed = simenv.rollout(simenv.make(replayed_scenario), Oracle(), seed=0, task_id="t-A-1")
    assert calls == ["A-1"]  # the live tool was not called again
    assert replayed.reward == 1.0 and replayed.steps[0].tool_results[0].provenance == "replay"
    assert replayed.messages == recorded.messages  # recording and replaying read the same


def test_strict_miss_names_the_nearest_key_and_the_difference(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    write_cassette(path, [("product", {"sku": "A-1", "n": 2}, {"price": 30}),
                          ("product", {"sku": "Q-7", "n": 5}, {"price": 1})])  # fmt: skip
    cassette = Cassette(path)
    with pytest.raises(ToolError) as caught:
        cassette.serve("product", {"sku": "A-9", "n": 2}, lambda: None)
    text = str(caught.value)
    assert text.startswith('no recorded response for product({"n":2,"sku":"A-9"})')
    assert 'nearest recorded call is product({"n":2,"sku":"A-1"})' in text
    assert '~ sku: "A-1" -> "A-9"' in text and "Q-7" not in text


def test_a_miss_is_an_error_the_agent_reads(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    write_cassette(path, [("product", {"sku": "A-1"}, {"price": 30})])
    scenario = scenario_for(function_tool(Cassette(path), []), "test/CatalogMiss-v1")
    env = simenv.make(scenario)
    env.reset(seed=0, options={"task_id": "t-A-1"})
    observation, _, terminated, _, _ = env.step(format_tool_call("product", {"sku": "A-9"}))
    assert not terminated
    assert observation[1]["content"].startswith("Error: no recorded response for product")
    assert env.unwrapped.episode().steps[0].tool_results[0].provenance == "replay"


def test_a_miss_can_void_the_episode_instead(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    write_cassette(path, [])
    scenario = scenario_for(function_tool(Cassette(path, miss="infra"), []), "test/Infra-v1")
    env = simenv.make(scenario)
    env.reset(seed=0, options={"task_id": "t-A-1"})
    *_, info = env.step(format_tool_call("product", {"sku": "A-1"}))
    assert info["valid"] is False and "re-record it" in info["error"]


def test_hybrid_serves_recorded_calls_and_records_misses(tmp_path: Path) -> None:
    path, calls = tmp_path / "c.json", []
    write_cassette(path, [("product", {"sku": "A-1"}, {"price": 999})])
    scenario = scenario_for(function_tool(Cassette(path, mode="hybrid"), calls), "test/H-v1")
    actions = [format_tool_call("product", {"sku": s}) for s in ("A-1", "B-2", "B-2")]
    episode = simenv.rollout(simenv.make(scenario), Scripted(actions), seed=0)
    results = [s.tool_results[0] for s in episode.steps[:3]]
    assert [r.provenance for r in results] == ["replay", "live", "replay"]
    assert json.loads(results[0].content) == {"price": 999}  # served, not fetched
    assert calls == ["B-2"]
    stored = json.loads(path.read_text())["entries"]
    assert [e["arguments"]["sku"] for e in stored] == ["A-1", "B-2"]


def test_the_mode_is_overridden_globally(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cassette = Cassette(tmp_path / "missing.json")
    assert cassette.mode == "replay"
    monkeypatch.setenv(ENV_VAR, "hybrid")
    assert cassette.mode == "hybrid"
    with replay_mode("record"):  # the context manager wins over the environment
        assert cassette.mode == "record"
        with replay_mode("replay"):
            assert cassette.mode == "replay"
        assert cassette.mode == "record"
    assert cassette.mode == "hybrid"
    monkeypatch.setenv(ENV_VAR, "sometimes")
    with pytest.raises(ScenarioError, match=ENV_VAR):
        _ = cassette.mode
    with pytest.raises(ScenarioError, match="not one of"):
        Cassette(tmp_path / "x.json", mode="always")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "cassette",
    [Cassette("c.json"), HttpCassette("c.yaml", base_url="http://shop.test")],
    ids=["function", "http"],
)
def test_only_read_tools_can_be_replayed(cassette: Any) -> None:
    with pytest.raises(ScenarioError, match="only read tools"):

        @tool(effect="write", replay=cassette)
        def buy(sku: str) -> str:
            """Buy.

            Args:
                sku: Product.
            """
            return "ok"


def test_secret_fields_are_redacted_when_recorded(tmp_path: Path) -> None:
    cassette = Cassette(tmp_path / "c.json", mode="record")
    served = cassette.serve(
        "whoami",
        {"user": "ana"},
        lambda: {"name": "ana", "api_key": "k-1", "nested": {"Token": "t-2"}, "author": "Bo",
                 "next_page_token": "p2"},
    )  # fmt: skip
    assert served.provenance == "live" and served.value["api_key"] == "<redacted>"
    text = (tmp_path / "c.json").read_text()
    assert "k-1" not in text and "t-2" not in text and text.count("<redacted>") == 2
    assert '"Bo"' in text and '"p2"' in text  # an author and a page token are not secrets


def test_lookups_stay_exact_in_a_large_cassette(tmp_path: Path) -> None:
    path = tmp_path / "big.json"
    write_cassette(path, [("t", {"i": i, "q": f"x{i}"}, i) for i in range(10_000)])
    cassette = Cassette(path)
    assert cassette.serve("t", {"q": "x7777", "i": 7777}, lambda: None).value == 7777
    assert len(cassette.keys("t")) == 10_000


# ----------------------------------------------------------------------------- HTTP through vcrpy
def test_http_record_through_vcrpy_then_replay_with_the_service_stopped(
    service: Service, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "catalog.yaml"
    api = HttpCassette(path, base_url="http://shop.test")
    api.live_url = service.url
    report = record_scenario(scenario_for(http_tool(api)))
    assert report.episodes == 3 and report.entries == {str(path): 3} and not report.unsolved
    assert Catalog.hits >= 3
    service.stop()
    no_network(monkeypatch)

    text = path.read_text()  # vcrpy's own format, with the canonical address
    assert "interactions:" in text and "uri: http://shop.test/products/B-2?lang=en" in text
    fresh = HttpCassette(path, base_url="http://shop.test")  # as a new process would
    env = simenv.make(scenario_for(http_tool(fresh), "test/CatalogReplay-v1"))
    for sku in CATALOG:
        episode = simenv.rollout(env, Oracle(), seed=0, task_id=f"t-{sku}")
        result = episode.steps[0].tool_results[0]
        assert episode.reward == 1.0 and result.provenance == "replay"
        assert json.loads(result.content)["name"] == CATALOG[sku]["name"]
    assert fresh.keys() == [f"GET /products/{s}?lang=en" for s in sorted(CATALOG)]


def test_http_secrets_never_reach_the_cassette(service: Service, tmp_path: Path) -> None:
    path = tmp_path / "catalog.yaml"
    api = HttpCassette(path, base_url="http://shop.test", mode="hybrid")
    api.live_url = service.url
    result = http_tool(api)(sku="A-1")
    assert result.provenance == "live" and result.value["session_token"] == "<redacted>"
    text = path.read_text()
    for secret in (TOKEN, QUERY_KEY, "resp-secret-789", "Bearer", "api_key", "Set-Cookie"):
        assert secret not in text, secret
    assert "<redacted>" in text and "kettle" in text


def test_http_strict_miss_names_the_nearest_request_and_the_difference(
    service: Service, tmp_path: Path
) -> None:
    path = tmp_path / "catalog.yaml"
    api = HttpCassette(path, base_url="http://shop.test")
    api.live_url = service.url
    scenario = scenario_for(http_tool(api))
    record_scenario(scenario, tasks=[scenario.task("t-B-2")])
    service.stop()
    env = simenv.make(scenario_for(http_tool(HttpCassette(path, base_url="http://shop.test"))))
    env.reset(seed=0, options={"task_id": "t-A-1"})
    observation, _, terminated, _, info = env.step(format_tool_call("product", {"sku": "B-3"}))
    text = observation[1]["content"]
    assert not terminated and "valid" not in info
    assert text.startswith("Error: no recorded response for GET /products/B-3?lang=en.")
    assert "nearest recorded request is GET /products/B-2?lang=en" in text
    assert '~ path[1]: "B-2" -> "B-3"' in text


def test_http_hybrid_goes_live_on_a_miss_and_stores_it(service: Service, tmp_path: Path) -> None:
    path = tmp_path / "catalog.yaml"
    api = HttpCassette(path, base_url="http://shop.test", mode="hybrid")
    api.live_url = service.url
    product = http_tool(api)
    assert product(sku="C-3").provenance == "live"
    assert product(sku="C-3").provenance == "replay"
    assert product(sku="A-1").provenance == "live"
    hits = Catalog.hits
    service.stop()
    assert HttpCassette(path, base_url="http://shop.test").keys() == [
        "GET /products/A-1?lang=en",
        "GET /products/C-3?lang=en",
    ]
    assert product(sku="A-1").provenance == "replay" and Catalog.hits == hits
    with pytest.raises(simenv.InfraError, match="did not answer"):
        product(sku="B-2")  # a hybrid miss with the service gone is the environment's fault


def test_a_failed_recording_leaves_the_cassette_as_it_was(service: Service, tmp_path: Path) -> None:
    path = tmp_path / "catalog.yaml"
    api = HttpCassette(path, base_url="http://shop.test")
    api.live_url = service.url
    scenario = scenario_for(http_tool(api))
    record_scenario(scenario)
    before = path.read_text()
    service.stop()
    with pytest.raises(simenv.InfraError, match="left as they were"):
        record_scenario(scenario)
    assert path.read_text() == before
    assert len(api.keys()) == 3  # the index is back to the file's


def _vcrpy_cassette(path: Path, size: int) -> None:
    from vcr.request import Request
    from vcr.serialize import serialize
    from vcr.serializers import yamlserializer

    requests_ = [Request("GET", f"http://shop.test/items/K-{i}", None, {}) for i in range(size)]
    responses = [
        {"status": {"code": 200, "message": "OK"}, "headers": {},
         "body": {"string": json.dumps({"v": i}).encode()}}
        for i in range(size)
    ]  # fmt: skip
    path.write_text(serialize({"requests": requests_, "responses": responses}, yamlserializer))


class CountingDict(dict[str, Any]):
    lookups = 0

    def get(self, key: str, default: Any = None) -> Any:
        CountingDict.lookups += 1
        return super().get(key, default)


@pytest.mark.parametrize("size", [10, 2_000])
def test_replay_is_one_index_lookup_whatever_the_cassette_size(
    size: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "big.yaml"
    _vcrpy_cassette(path, size)
    api = HttpCassette(path, base_url="http://shop.test")
    assert len(api.keys()) == size  # the index is built once, from vcrpy's file

    def scan(*args: Any, **kwargs: Any) -> bool:
        raise AssertionError("replay must not scan the recordings with vcrpy's matchers")

    monkeypatch.setattr(vcr.matchers, "requests_match", scan)
    no_network(monkeypatch)
    api._index = CountingDict(api._index or {})
    CountingDict.lookups = 0
    for i in (0, size // 2, size - 1):
        assert api.get(f"/items/K-{i}").json() == {"v": i}
    assert CountingDict.lookups == 3  # one lookup per replayed call, for 10 or 2,000


# ----------------------------------------------------------------------------- coverage, CLI
def test_coverage_lists_missing_and_unused_entries(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    write_cassette(path, [("product", {"sku": "A-1"}, {"price": 30}),
                          ("product", {"sku": "Z-0"}, {})])  # fmt: skip
    scenario = scenario_for(function_tool(Cassette(path, mode="hybrid"), []), "test/Gap-v1")
    report = coverage(scenario)
    assert [(m.task_id, m.key) for m in report.missing] == [
        ("t-B-2", 'product({"sku":"B-2"})'),
        ("t-C-3", 'product({"sku":"C-3"})'),
    ]  # strict replay, even for a hybrid cassette: nothing was fetched
    assert report.unused == [(str(path), 'product({"sku":"Z-0"})')]
    assert (report.used, report.recorded, report.complete) == (1, 2, False)
    assert "re-record" in report.summary() and 'product({"sku":"Z-0"})' in report.summary()
    assert len(json.loads(path.read_text())["entries"]) == 2

    result = check(scenario, only=["replay"])["replay"]  # simenv check reports the same
    assert result.status == "fail" and "B-2" in result.message and "simenv record" in result.message


def test_coverage_check_passes_once_complete_and_warns_about_unused(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    write_cassette(path, [("product", {"sku": s}, {"price": 1}) for s in [*CATALOG, "Z-0"]])
    scenario = scenario_for(function_tool(Cassette(path), []), "test/Full-v1")
    result = check(scenario, only=["replay"])["replay"]
    assert result.status == "warn" and "Z-0" in str(result.details["unused"])


SCENARIO_FILE = '''
from pathlib import Path
from simenv import Scenario, Task, tool
from simenv.parsing import format_tool_call
from simenv.tools.replay import Cassette

PRICES = {"A-1": 30, "B-2": 45}

@tool(effect="read", replay=Cassette(Path(__file__).parent / "prices.json"))
def price(sku: str) -> int:
    """The price of a product.

    Args:
        sku: The product code.
    """
    return PRICES[sku]

SCENARIO = Scenario(
    id="test/Prices-v1", system_prompt="Answer prices.", tools=[price],
    tasks=[Task(s, f"Price of {s}?", data={"sku": s}) for s in PRICES],
    reward=lambda o: float(str(PRICES[o.task.data["sku"]]) in o.answer),
    evaluate=lambda o: str(PRICES[o.task.data["sku"]]) in o.answer,
    oracle=lambda task, state: [format_tool_call("price", {"sku": task.data["sku"]}),
                                f"{PRICES[task.data['sku']]}"],
    random_state=False,
)
'''


def test_record_and_coverage_commands(tmp_path: Path) -> None:
    scenario_file = tmp_path / "prices.py"
    scenario_file.write_text(SCENARIO_FILE)
    runner = CliRunner()
    result = runner.invoke(replay_app, ["coverage", str(scenario_file)])
    assert result.exit_code == 2 and "record it first" in result.output

    result = runner.invoke(replay_app, ["record", str(scenario_file)])
    assert result.exit_code == 0, result.output
    assert "2 oracle episodes recorded" in result.output
    assert "0 oracle calls missing" in result.output
    entries = json.loads((tmp_path / "prices.json").read_text())["entries"]
    assert [(e["arguments"], e["response"]) for e in entries] == [
        ({"sku": "A-1"}, 30), ({"sku": "B-2"}, 45)]  # fmt: skip

    write_cassette(tmp_path / "prices.json", [("price", {"sku": "A-1"}, 30)])
    result = runner.invoke(replay_app, ["coverage", str(scenario_file)])
    assert result.exit_code == 1 and 'price({"sku":"B-2"})  (tool price, task B-2)' in result.output


def test_record_keep_refreshes_what_the_oracle_calls_and_keeps_the_rest(tmp_path: Path) -> None:
    scenario_file = tmp_path / "prices.py"
    scenario_file.write_text(SCENARIO_FILE)
    cassette = tmp_path / "prices.json"
    write_cassette(cassette, [("price", {"sku": "A-1"}, 99), ("price", {"sku": "Z-9"}, 1)])

    def recorded() -> dict[str, Any]:
        entries = json.loads(cassette.read_text())["entries"]
        return {e["arguments"]["sku"]: e["response"] for e in entries}

    runner = CliRunner()
    result = runner.invoke(replay_app, ["record", str(scenario_file), "--keep"])
    assert result.exit_code == 0, result.output
    assert recorded() == {"A-1": 30, "B-2": 45, "Z-9": 1}  # stale A-1 refreshed, Z-9 kept
    result = runner.invoke(replay_app, ["record", str(scenario_file)])
    assert result.exit_code == 0, result.output
    assert recorded() == {"A-1": 30, "B-2": 45}  # without --keep, unused entries are dropped
