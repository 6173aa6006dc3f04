"""Flight desk: answer travellers' questions from a flight-status API (recorded replay).

## Description
A traveller asks about a flight: where it goes, how long the walk to its gate is, which terminal
it leaves from. The answer takes 2-3 dependent lookups against a read-only flight-status API:
the flight gives an airport and a gate, the airport gives a city, the gate gives a terminal and
a walking time.

## Tools
All read-only and served by recorded replay (`scenarios/data/knowledge_lookup/`): the API is a
small HTTP service in this repository (`serve()`), recorded once with `record()`; episodes never
touch the network.

| tool | returns |
|---|---|
| `get_flight(code)` | origin and destination airports, status, departure gate |
| `get_airport(iata)` | the airport's city and country |
| `get_gate(airport, gate)` | terminal and walking minutes from security |

## Observation
The system prompt and the question; then tool messages.

## Starting state
None: the API's data are fixed (generated from seed 0), so ``random_state=False``.

## Reward
1.0 when the final answer contains the gold value (a city, a number of minutes or a terminal),
else 0.0.

## Evaluation
Independent of the reward's stored gold: the value is re-derived from the tool responses in the
cassette by following the question's chain of lookups, and compared with the final answer.

## Episode end
An answer without a tool call, or 6 turns.

## Example
``get_flight("SK100")`` -> destination ``BRE``; ``get_airport("BRE")`` -> Bremen; "It flies to
Bremen." earns 1.0; answering the origin's city (Gothenburg) earns 0.0.

## Version history
- v1: first release.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np

from simenv import Example, Outcome, Scenario, Task, tool
from simenv.parsing import format_tool_call
from simenv.tools.replay import Cassette, http_recorder

DATA = Path(__file__).parent / "data" / "knowledge_lookup"
CASSETTE = Cassette(DATA / "cassette.json")
AIRPORTS = {
    "OSL": ("Oslo", "Norway"), "LIS": ("Lisbon", "Portugal"), "TRN": ("Turin", "Italy"),
    "LBA": ("Leeds", "United Kingdom"), "LYS": ("Lyon", "France"), "GOT": ("Gothenburg", "Sweden"),
    "VLC": ("Valencia", "Spain"), "BRE": ("Bremen", "Germany"),
}  # fmt: skip
_API = {"url": "http://127.0.0.1:9"}  # set by serve(); replays never use it


def api_data() -> dict[str, Any]:
    """The service's fixed data, generated from seed 0."""
    rng = np.random.default_rng(0)
    codes = list(AIRPORTS)
    flights, gates = {}, {}
    for i in range(24):
        origin, destination = rng.choice(codes, size=2, replace=False).tolist()
        gate = f"{'ABC'[int(rng.integers(3))]}{int(rng.integers(1, 20))}"
        flights[f"SK{100 + 7 * i}"] = {
            "origin": origin, "destination": destination, "gate": gate,
            "status": ["on time", "delayed", "boarding"][int(rng.integers(3))],
        }  # fmt: skip
        gates[f"{origin}/{gate}"] = {
            "terminal": f"T{int(rng.integers(1, 4))}",
            "walk_minutes": int(rng.integers(3, 25)),
        }
    return {"flights": flights, "gates": gates}


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        data = api_data()
        parts = self.path.strip("/").split("/")
        found: Any = None
        if parts[:1] == ["flights"] and len(parts) == 2:
            found = data["flights"].get(parts[1])
        elif parts[:1] == ["airports"] and len(parts) == 2 and parts[1] in AIRPORTS:
            city, country = AIRPORTS[parts[1]]
            found = {"iata": parts[1], "city": city, "country": country}
        elif parts[:1] == ["gates"] and len(parts) == 3:
            found = data["gates"].get(f"{parts[1]}/{parts[2]}")
        body = json.dumps(found if found is not None else {"error": "not found"}).encode()
        self.send_response(200 if found is not None else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@contextmanager
def serve() -> Iterator[str]:
    """Run the flight-status service on 127.0.0.1 (for recording); yields its URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    previous = _API["url"]
    _API["url"] = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield _API["url"]
    finally:
        _API["url"] = previous
        server.shutdown()
        server.server_close()


def _get(path: str) -> dict[str, Any]:
    try:
        with urllib.request.urlopen(f"{_API['url']}/{path}", timeout=5) as response:
            return dict(json.loads(response.read()))
    except urllib.error.HTTPError as exc:
        return {"error": f"not found ({exc.code})"}


@tool(effect="read", replay=CASSETTE)
def get_flight(code: str) -> dict[str, Any]:
    """Look up a flight by its code.

    Args:
        code: The flight code, e.g. "SK100".

    Returns:
        origin and destination airport codes, status, and departure gate.
    """
    return _get(f"flights/{code}")


@tool(effect="read", replay=CASSETTE)
def get_airport(iata: str) -> dict[str, Any]:
    """Look up an airport by its three-letter code.

    Args:
        iata: The airport code, e.g. "OSL".
    """
    return _get(f"airports/{iata}")


@tool(effect="read", replay=CASSETTE)
def get_gate(airport: str, gate: str) -> dict[str, Any]:
    """Look up a departure gate.

    Args:
        airport: The airport code, e.g. "OSL".
        gate: The gate, e.g. "B12".

    Returns:
        The terminal and the walking minutes from security.
    """
    return _get(f"gates/{airport}/{gate}")


QUESTIONS = {
    "city": "Which city does flight {code} fly to?",
    "walk": "How many minutes is the walk from security to the gate of flight {code}?",
    "terminal": "Which terminal does flight {code} leave from?",
}


def make_tasks() -> list[Task]:
    """Every flight x question kind; a quarter is held out."""
    data = api_data()
    tasks = []
    for i, (code, f) in enumerate(data["flights"].items()):
        gate = data["gates"][f"{f['origin']}/{f['gate']}"]
        answers = {
            "city": AIRPORTS[f["destination"]][0],
            "walk": str(gate["walk_minutes"]),
            "terminal": gate["terminal"],
        }
        for kind, question in QUESTIONS.items():
            tasks.append(
                Task(
                    id=f"{code}-{kind}",
                    prompt=question.format(code=code),
                    split="eval" if i % 4 == 3 else "train",
                    data={"code": code, "kind": kind, "answer": answers[kind]},
                )
            )
    return tasks


def _mentions(answer: str, value: str) -> bool:
    words = answer.replace(".", " ").replace(",", " ").split()
    return value in words or value in answer.split()


def reward(o: Outcome) -> float:
    return float(_mentions(o.answer, o.task.data["answer"]))


def evaluate(o: Outcome) -> bool:
    flight = CASSETTE.entries["get_flight"].get(
        CASSETTE.key("get_flight", {"code": o.task.data["code"]})
    )
    if flight is None:
        return False
    kind = o.task.data["kind"]
    if kind == "city":
        airport = CASSETTE.entries["get_airport"][
            CASSETTE.key("get_airport", {"iata": flight["destination"]})
        ]
        value = airport["city"]
    else:
        args = {"airport": flight["origin"], "gate": flight["gate"]}
        gate = CASSETTE.entries["get_gate"][CASSETTE.key("get_gate", args)]
        value = str(gate["walk_minutes"] if kind == "walk" else gate["terminal"])
    return _mentions(o.answer, value)


def oracle(task: Task, state: Any) -> list[str]:
    flight = api_data()["flights"][task.data["code"]]
    turns = [format_tool_call("get_flight", {"code": task.data["code"]})]
    if task.data["kind"] == "city":
        turns.append(format_tool_call("get_airport", {"iata": flight["destination"]}))
        return [*turns, f"It flies to {task.data['answer']}."]
    turns.append(
        format_tool_call("get_gate", {"airport": flight["origin"], "gate": flight["gate"]})
    )
    if task.data["kind"] == "walk":
        return [*turns, f"The walk takes {task.data['answer']} minutes."]
    return [*turns, f"It leaves from terminal {task.data['answer']}."]


def record() -> None:
    """Re-record the cassette (and the raw HTTP traffic) from the live service."""
    import os

    import simenv
    from simenv.policies import Oracle

    os.environ["SIMENV_REPLAY_MODE"] = "record"
    try:
        with serve(), http_recorder(DATA / "http.yaml"):
            env = simenv.make(SCENARIO)
            for task in SCENARIO.tasks:
                simenv.rollout(env, Oracle(), seed=0, task_id=task.id)
    finally:
        del os.environ["SIMENV_REPLAY_MODE"]


_LOOKUPS = (
    format_tool_call("get_flight", {"code": "SK100"}),
    format_tool_call("get_airport", {"iata": "BRE"}),
)
EXAMPLES = (
    Example("golden: flight, then its destination airport", "SK100-city", 0,
            (*_LOOKUPS, "It flies to Bremen."), 1.0),
    Example("failing: answers with the origin's city", "SK100-city", 0,
            (*_LOOKUPS, "It flies to Gothenburg."), 0.0),
)  # fmt: skip

SCENARIO = Scenario(
    id="lookup/Flights-v1",
    doc=__doc__ or "",
    system_prompt="You answer travellers' questions about flights using the flight-status tools. "
    "Look up what you need, then answer in one sentence without a tool call.",
    tools=[get_flight, get_airport, get_gate],
    tasks=make_tasks(),
    reward=reward,
    evaluate=evaluate,
    oracle=oracle,
    max_turns=6,
    random_state=False,
    examples=EXAMPLES,
)
