"""Per-call cost of a replayed HTTP tool: our hash index against vcrpy's own replay.

Two cassettes, of 100 and 1,000 interactions, are recorded for real: a local catalogue service
(stdlib ``http.server`` on 127.0.0.1) answers ``GET /items/K-i`` through an ``HttpCassette`` in a
recording session, so vcrpy writes them in its own format. Then, per replayed call, side by side:

- floor: a bare dict lookup on a precomputed key;
- ``HttpCassette.get``: canonical key + index lookup (what a replayed request costs);
- a replayed tool call: the tool function through its cassette, ``.json()`` included;
- vcrpy's own replay, end to end: ``requests.get`` through vcrpy's patched client, which scans
  the recordings with its matchers;
- vcrpy's matcher scan alone: ``Cassette.play_response`` on a prepared request (no HTTP client).

Each call asks for a different recorded item, spread over the whole cassette. Every measurement
runs in several rounds; the fastest round is reported (the least disturbed on a noisy machine)
with the median beside it.

Run: ``python bench/replay.py [--rounds R] [--write]``; ``--write`` updates the ``replay``
section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import requests
import vcr
from _report import machine, write_section
from vcr.request import Request

from simenv import tool
from simenv.tools.replay import replay_mode
from simenv.tools.replay.http import SECRET_HEADERS, SECRET_PARAMS, HttpCassette
from simenv.tools.replay.standin import JSONHandler
from simenv.tools.replay.standin import serve as serve_json

BASE = "http://shop.bench.test"


class _Items(JSONHandler):
    def do_GET(self) -> None:
        item = self.path.rsplit("/", 1)[-1]
        self.send_json(200, {"id": item, "name": f"item {item}", "price": len(item) * 7})


def serve() -> AbstractContextManager[str]:
    return serve_json(_Items)


def record(path: Path, size: int) -> None:
    api = HttpCassette(path, base_url=BASE, live=serve)
    with api.recording(), replay_mode("record"):
        for i in range(size):
            api.get(f"/items/K-{i}")


def _time(fn: Callable[[int], object], calls: int) -> float:
    """Seconds per call of one round of ``calls`` calls."""
    start = time.perf_counter()
    for i in range(calls):
        fn(i)
    return (time.perf_counter() - start) / calls


def _fmt(seconds: float) -> str:
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds * 1e6:.2f} µs" if seconds < 1e-5 else f"{seconds * 1e6:.1f} µs"


LABELS = (
    "floor: bare dict lookup, precomputed key",
    "**`HttpCassette.get` (canonical key + index)**",
    "replayed tool call (`Served`, `.json()` included)",
    "vcrpy's own replay: `requests.get` through vcrpy",
    "vcrpy's matcher scan alone (`Cassette.play_response`)",
)


@contextmanager
def contestants(path: Path, size: int) -> Iterator[list[tuple[Callable[[int], object], int]]]:
    """``(one call, calls per round)`` for each of LABELS, on the cassette at ``path``."""
    order = np.random.default_rng(0).permutation(size).tolist()
    paths = [f"/items/K-{i}" for i in order]
    codes = [p.rsplit("/", 1)[-1] for p in paths]
    api = HttpCassette(path, base_url=BASE)
    api.keys()  # read the file and build the index once

    @tool(effect="read", replay=api)
    def item(code: str) -> dict[str, Any]:
        """An item.

        Args:
            code: The item code.
        """
        return dict(api.get(f"/items/{code}").json())

    table = {api.key("GET", p): {"status": 200} for p in paths}
    keys = list(table)
    prepared = [Request("GET", BASE + p, None, {}) for p in paths]
    recorder = vcr.VCR(
        record_mode="none",
        filter_headers=list(SECRET_HEADERS),
        filter_query_parameters=list(SECRET_PARAMS),
    )
    session = requests.Session()
    with recorder.use_cassette(str(path), allow_playback_repeats=True) as cassette:
        fast, slow = 5_000, max(3, 500 // size)
        yield [
            (lambda i: table[keys[i % size]], fast),
            (lambda i: api.get(paths[i % size]), fast),
            (lambda i: item.fn(code=codes[i % size]), fast),
            (lambda i: session.get(BASE + paths[i % size]), slow),
            (lambda i: cassette.play_response(prepared[i % size]), slow),
        ]


def measure(sizes: tuple[int, ...], rounds: int) -> dict[int, list[tuple[float, float]]]:
    """Size -> (fastest, median) seconds per call for each of LABELS, rounds interleaved."""
    times: dict[int, list[list[float]]] = {size: [[] for _ in LABELS] for size in sizes}
    with tempfile.TemporaryDirectory() as tmp:
        paths = {size: Path(tmp) / f"items_{size}.yaml" for size in sizes}
        for size, path in paths.items():
            record(path, size)
        for _ in range(rounds):
            for size, path in paths.items():  # vcrpy patches globally: one cassette at a time
                with contestants(path, size) as calls:
                    for (fn, n), out in zip(calls, times[size], strict=True):
                        out.append(_time(fn, n))
    return {
        size: [(min(t), statistics.median(t)) for t in per_label]
        for size, per_label in times.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15, help="interleaved rounds")
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args()
    results = measure((100, 1_000), args.rounds)
    rows = [
        "| per replayed call | 100 recorded: fastest | median | 1,000 recorded: fastest "
        "| median | 1,000: against the floor |",
        "|---|---|---|---|---|---|",
    ]
    floor = results[1_000][0][0]
    for label, small, large in zip(LABELS, results[100], results[1_000], strict=True):
        rows.append(
            f"| {label} | {_fmt(small[0])} | {_fmt(small[1])} | {_fmt(large[0])} "
            f"| {_fmt(large[1])} | {large[0] / floor:,.0f}x |"
        )
    report = "\n".join(rows)
    print(report)
    if args.write:
        write_section(
            "replay",
            f"`python bench/replay.py --write` ({args.rounds} rounds; {machine()})\n\n{report}",
        )


if __name__ == "__main__":
    main()
