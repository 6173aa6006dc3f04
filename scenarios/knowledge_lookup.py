"""Knowledge lookup: answer travellers' questions from a flight-status API (recorded replay).

## Description
A traveller asks about a flight: where it lands, which terminal it leaves from, how long the
walk to its gate is, or where its onward connections go. Each answer takes 2 to 4 dependent
lookups against a read-only flight-status API: a flight gives its airports, gate and onward
connection; an airport gives its city and country; a gate gives its terminal and walking time.
The agent must chain the lookups (the id it needs next is in the last answer), then reply in
one sentence.

## Tools
All read-only, all recorded replay over HTTP (`simenv.tools.replay.http.HttpCassette`): the API
is a small service in this module (`serve()`, stdlib `http.server` on 127.0.0.1, data from seed
0, bearer-token auth). Its traffic is recorded by vcrpy in `data/knowledge_lookup/api.yaml`
(the token never reaches the file), and episodes are answered from that file, offline. A call
that was never recorded is an error the agent reads, naming the nearest recorded request.

| tool | returns |
|---|---|
| `get_flight(code)` | origin and destination airports, gate, status, departs, `connects_to` |
| `get_airport(iata)` | the airport's city and country |
| `get_gate(airport, gate)` | the gate's terminal and the walking minutes from security |

## Observation
The system prompt and the question; then one tool message per call.

## Starting state
None: the API's data are fixed (generated from seed 0), so `random_state=False`; the seed only
picks the task when none is named.

## Reward
1.0 when the final answer names the gold value and no other value of its kind (one city, one
country, one terminal, one number of minutes), else 0.0. Listing every city earns nothing.

## Evaluation
Independent of the reward's stored gold: the value is re-derived by following the question's
chain of lookups through the recorded API responses (`API.lookup`), and the answer must name it
and no other recorded value of its kind.

## Episode end
An answer without a tool call, or 8 turns.

## Example
`get_flight("SK100")` -> connects to SK107; `get_flight("SK107")` -> connects to SK114;
`get_flight("SK114")` -> lands at VLC; `get_airport("VLC")` -> Valencia: "The final destination
is Valencia." earns 1.0; naming the first flight's destination (Gothenburg) earns 0.0.

## Version history
- v1: first release (replaces lookup/Flights-v1: same service, plus 3- and 4-call chains
  through onward connections, bearer auth, and replay from the vcrpy cassette).
"""

from __future__ import annotations

import os
import re
from contextlib import AbstractContextManager
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from simenv import Example, InfraError, Outcome, Scenario, Task, ToolError, tool
from simenv.parsing import format_tool_call
from simenv.tools.replay.http import HttpCassette
from simenv.tools.replay.standin import JSONHandler
from simenv.tools.replay.standin import serve as serve_json

DATA = Path(__file__).parent / "data" / "knowledge_lookup"
BASE_URL = "http://flights.simenv.test"
API_KEY = os.environ.get("FLIGHTS_API_KEY", "fl-demo-5c1e0b7a")  # never lands in the cassette
AIRPORTS = {
    "OSL": ("Oslo", "Norway"), "LIS": ("Lisbon", "Portugal"), "TRN": ("Turin", "Italy"),
    "LBA": ("Leeds", "United Kingdom"), "LYS": ("Lyon", "France"), "GOT": ("Gothenburg", "Sweden"),
    "VLC": ("Valencia", "Spain"), "BRE": ("Bremen", "Germany"), "KRK": ("Krakow", "Poland"),
    "BUD": ("Budapest", "Hungary"), "DUB": ("Dublin", "Ireland"), "PRG": ("Prague", "Czechia"),
}  # fmt: skip
CHAINS = 8  # itineraries of three connecting flights each
QUESTIONS = {
    "city": (2, "Which city does flight {code} fly to?"),
    "walk": (2, "How many minutes is the walk from security to the gate of flight {code}?"),
    "terminal": (2, "Which terminal does flight {code} leave from?"),
    "onward_country": (3, "I land on flight {code} and take its connection. In which country "
                          "does the connecting flight land?"),
    "onward_terminal": (3, "Which terminal does the connecting flight of flight {code} leave "
                           "from?"),
    "final_city": (4, "I fly {code}, then its connection, then that flight's connection. Which "
                      "city is my final destination?"),
}  # fmt: skip


# ----------------------------------------------------------------------------- the live service
@cache
def api_data() -> dict[str, Any]:
    """The service's data, generated from seed 0: flights, gates (by ``AIRPORT/GATE``)."""
    rng = np.random.default_rng(0)
    flights: dict[str, dict[str, Any]] = {}
    gates: dict[str, dict[str, Any]] = {}
    for chain in range(CHAINS):
        stops = rng.choice(list(AIRPORTS), size=4, replace=False).tolist()
        codes = [f"SK{100 + 7 * (3 * chain + leg)}" for leg in range(3)]
        for leg, code in enumerate(codes):
            origin = stops[leg]
            gate = f"{'ABC'[int(rng.integers(3))]}{int(rng.integers(1, 30))}"
            while f"{origin}/{gate}" in gates:
                gate = f"{'ABC'[int(rng.integers(3))]}{int(rng.integers(1, 30))}"
            flights[code] = {
                "code": code, "origin": origin, "destination": stops[leg + 1], "gate": gate,
                "departs": f"{8 + 3 * leg + int(rng.integers(2))}:{int(rng.integers(6))}5",
                "status": ["on time", "delayed", "boarding"][int(rng.integers(3))],
                "connects_to": codes[leg + 1] if leg < 2 else None,
            }  # fmt: skip
            gates[f"{origin}/{gate}"] = {
                "airport": origin, "gate": gate, "terminal": f"T{int(rng.integers(1, 4))}",
                "walk_minutes": int(rng.integers(3, 25)),
            }  # fmt: skip
    return {"flights": flights, "gates": gates}


class _Service(JSONHandler):
    def do_GET(self) -> None:
        if self.headers.get("Authorization") != f"Bearer {API_KEY}":
            return self.send_json(401, {"error": "missing or wrong bearer token"})
        parts = self.path.split("?")[0].strip("/").split("/")
        data, found = api_data(), None
        if len(parts) == 2 and parts[0] == "flights":
            found = data["flights"].get(parts[1])
        elif len(parts) == 2 and parts[0] == "airports" and parts[1] in AIRPORTS:
            city, country = AIRPORTS[parts[1]]
            found = {"iata": parts[1], "city": city, "country": country}
        elif len(parts) == 4 and parts[0] == "airports" and parts[2] == "gates":
            found = data["gates"].get(f"{parts[1]}/{parts[3]}")
        if found is None:
            return self.send_json(404, {"error": "not found"})
        return self.send_json(200, found)


def serve() -> AbstractContextManager[str]:
    """Run the flight-status service on 127.0.0.1 (a free port); yields its URL."""
    return serve_json(_Service)


API = HttpCassette(DATA / "api.yaml", base_url=BASE_URL, live=serve)


# ----------------------------------------------------------------------------- tools
def _get(path: str, what: str) -> dict[str, Any]:
    response = API.get(path, headers={"Authorization": f"Bearer {API_KEY}"})
    if response.status == 404:
        raise ToolError(f"{what} was not found; check the id in the previous answer.")
    if not response.ok:
        raise InfraError(f"the flight-status service answered {response.status} to GET {path}")
    return dict(response.json())


@tool(effect="read", replay=API)
def get_flight(code: str) -> dict[str, Any]:
    """Look up a flight by its code.

    Args:
        code: The flight code, e.g. "SK100".

    Returns:
        origin and destination airport codes, gate (at the origin), status, departure time,
        and connects_to: the code of the onward connecting flight, or null.
    """
    if not re.fullmatch(r"[A-Z]{2}\d{1,4}", code):
        raise ToolError(f"{code!r} is not a flight code; codes look like 'SK100'.")
    return _get(f"/flights/{code}", f"Flight {code}")


@tool(effect="read", replay=API)
def get_airport(iata: str) -> dict[str, Any]:
    """Look up an airport by its three-letter code.

    Args:
        iata: The airport code, e.g. "OSL".

    Returns:
        The airport's city and country.
    """
    if not re.fullmatch(r"[A-Z]{3}", iata):
        raise ToolError(f"{iata!r} is not an airport code; codes are three letters, e.g. 'OSL'.")
    return _get(f"/airports/{iata}", f"Airport {iata}")


@tool(effect="read", replay=API)
def get_gate(airport: str, gate: str) -> dict[str, Any]:
    """Look up a departure gate at an airport.

    Args:
        airport: The airport code, e.g. "OSL" (a flight's gate is at its origin).
        gate: The gate, e.g. "B12".

    Returns:
        The gate's terminal and the walking minutes from security.
    """
    if not re.fullmatch(r"[A-Z]{3}", airport) or not re.fullmatch(r"[A-Z]\d{1,2}", gate):
        raise ToolError("Give an airport code like 'OSL' and a gate like 'B12'.")
    return _get(f"/airports/{airport}/gates/{gate}", f"Gate {gate} at {airport}")


# ----------------------------------------------------------------------------- tasks
def _chain(code: str, kind: str) -> list[tuple[str, dict[str, str]]]:
    """The lookups that answer ``kind`` about flight ``code`` (from the service's data)."""
    flights = api_data()["flights"]
    calls = [("get_flight", {"code": code})]
    flight = flights[code]
    hops = {"onward_country": 1, "onward_terminal": 1, "final_city": 2}.get(kind, 0)
    for _ in range(hops):
        flight = flights[flight["connects_to"]]
        calls.append(("get_flight", {"code": flight["code"]}))
    if kind in ("city", "onward_country", "final_city"):
        calls.append(("get_airport", {"iata": flight["destination"]}))
    else:
        calls.append(("get_gate", {"airport": flight["origin"], "gate": flight["gate"]}))
    return calls


def _gold(code: str, kind: str) -> str:
    name, last = _chain(code, kind)[-1]
    if name == "get_airport":
        city, country = AIRPORTS[last["iata"]]
        return country if kind == "onward_country" else city
    gate = api_data()["gates"][f"{last['airport']}/{last['gate']}"]
    return str(gate["walk_minutes"]) if kind == "walk" else str(gate["terminal"])


def make_tasks() -> list[Task]:
    """Every flight x every question its connections allow; one itinerary in four held out."""
    tasks = []
    for code, flight in api_data()["flights"].items():
        depth = 0 if flight["connects_to"] is None else 1
        if depth and api_data()["flights"][flight["connects_to"]]["connects_to"]:
            depth = 2
        chain = (int(code[2:]) - 100) // 21
        for kind, (calls, question) in QUESTIONS.items():
            if calls - 2 > depth:
                continue
            tasks.append(
                Task(
                    id=f"{code}-{kind}",
                    prompt=question.format(code=code),
                    split="eval" if chain % 4 == 3 else "train",
                    data={"code": code, "kind": kind, "answer": _gold(code, kind)},
                )
            )
    return tasks


# ----------------------------------------------------------------------------- scoring
_KIND_VALUES = {
    "city": sorted({c for c, _ in AIRPORTS.values()}),
    "final_city": sorted({c for c, _ in AIRPORTS.values()}),
    "onward_country": sorted({c for _, c in AIRPORTS.values()}),
}


def _named(answer: str, kind: str) -> set[str]:
    if kind in _KIND_VALUES:
        return {v for v in _KIND_VALUES[kind] if re.search(rf"\b{re.escape(v)}\b", answer)}
    if kind == "walk":
        return set(re.findall(r"\b\d+\b", answer))
    return set(re.findall(r"\bT\d\b", answer))


def reward(o: Outcome) -> float:
    return float(_named(o.answer, o.task.data["kind"]) == {o.task.data["answer"]})


def _recorded(path: str) -> dict[str, Any]:
    response = API.lookup("GET", path)
    return {} if response is None or not response.ok else dict(response.json())


def evaluate(o: Outcome) -> bool:
    """Follow the question's chain through the recorded responses; compare with the answer."""
    kind, text = o.task.data["kind"], o.answer.lower()
    flight = _recorded(f"/flights/{o.task.data['code']}")
    for _ in range({"onward_country": 1, "onward_terminal": 1, "final_city": 2}.get(kind, 0)):
        flight = _recorded(f"/flights/{flight.get('connects_to')}")
    if kind in ("city", "onward_country", "final_city"):
        field = "country" if kind == "onward_country" else "city"
        everything = {_recorded(f"/airports/{i}").get(field, "") for i in AIRPORTS} - {""}
        expected = _recorded(f"/airports/{flight.get('destination')}").get(field)
        named = {v for v in everything if re.search(rf"\b{re.escape(v.lower())}\b", text)}
        return expected is not None and named == {expected}
    gate = _recorded(f"/airports/{flight.get('origin')}/gates/{flight.get('gate')}")
    expected = str(gate.get("walk_minutes" if kind == "walk" else "terminal"))
    words = set(re.split(r"[^\w]+", text))
    values = (
        {w for w in words if w.isdigit()}
        if kind == "walk"
        else {w.upper() for w in words if re.fullmatch(r"t\d", w)}
    )
    return values == {expected}


def oracle(task: Task, state: Any) -> list[str]:
    calls = [format_tool_call(n, a) for n, a in _chain(task.data["code"], task.data["kind"])]
    answer = task.data["answer"]
    kind = task.data["kind"]
    if kind == "walk":
        return [*calls, f"The walk from security to the gate takes {answer} minutes."]
    if kind in ("terminal", "onward_terminal"):
        return [*calls, f"It leaves from terminal {answer}."]
    if kind == "onward_country":
        return [*calls, f"The connecting flight lands in {answer}."]
    return [*calls, f"The destination is {answer}."]


_FINAL = _chain("SK100", "final_city")
EXAMPLES = (
    Example("golden: three flights along the connections, then the last airport",
            "SK100-final_city", 0,
            (*(format_tool_call(n, a) for n, a in _FINAL),
             f"The final destination is {_gold('SK100', 'final_city')}."), 1.0),
    Example("failing: stops after the first flight and names its destination",
            "SK100-final_city", 0,
            (format_tool_call(*_FINAL[0]),
             f"The final destination is {_gold('SK100', 'city')}."), 0.0),
)  # fmt: skip

SCENARIO = Scenario(
    id="lookup/Knowledge-v1",
    doc=__doc__ or "",
    system_prompt="You answer travellers' questions with the flight-status tools. Look up what "
    "you need, one step at a time (each answer gives the ids for the next lookup), then answer "
    "in one sentence without a tool call.",
    tools=[get_flight, get_airport, get_gate],
    tasks=make_tasks(),
    reward=reward,
    evaluate=evaluate,
    oracle=oracle,
    max_turns=8,
    random_state=False,
    examples=EXAMPLES,
)
