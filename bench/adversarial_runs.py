"""The adversarial suite for episodes and runs: fuzzing, concurrency and kills.

Three parts, each printed as a table row (and, with ``--write``, put in docs/reliability.md
between the ``adversarial_runs`` markers):

* **fuzz**: ``simenv check``'s robustness check with 10,000 random and malformed actions per
  scenario (bad JSON, wrong types, huge and deeply nested payloads, lone surrogates, many calls
  in one turn, an object whose ``str()`` raises ...), which also writes every finished
  episode's record and reads it back. A scenario holds when nothing raised out of ``step``,
  every call was answered, no episode became invalid and every record was written.
* **concurrency**: the same jobs (random policy, 4 samples per task) stepped 256 at a time and
  one at a time; every episode record must be equal, wall-clock fields aside.
* **kill and resume**: ``simenv run --out F`` is SIGKILLed at random moments, ``--resume``d
  each time and finally run to the end; the file must then hold every job exactly once.

Run: ``python bench/adversarial_runs.py [--steps N] [--kills K] [--docker] [--write]``.
``--docker`` adds code/Repair-v1 (a container per episode; needs the engine and the base
image). The exit status is 1 when anything broke.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from _report import machine

from simenv.checks import CheckOptions, check_robustness
from simenv.checks.episodes import comparable, first_difference
from simenv.registration import load_scenario, registry
from simenv.rollouts import plan_jobs
from simenv.rollouts import run as run_jobs
from simenv.rollouts.policies import Random
from simenv.rollouts.store import job_key, read_episodes

DOC = Path(__file__).resolve().parents[1] / "docs" / "reliability.md"
DOCKER_SCENARIOS = {"code/Repair-v1"}
SIMENV = [str(Path(sys.executable).with_name("simenv"))]  # the CLI of this environment


def fuzz(scenario_id: str, steps: int) -> dict[str, object]:
    """The robustness check with ``steps`` actions on one scenario."""
    started = time.perf_counter()
    result = check_robustness(load_scenario(scenario_id), CheckOptions(fuzz_steps=steps))
    details = result.details or {}
    return {
        "scenario": scenario_id,
        "held": result.status == "pass",
        "actions": details.get("steps", "-"),
        "episodes": details.get("episodes", "-"),
        "seconds": round(time.perf_counter() - started, 1),
        "message": "" if result.status == "pass" else result.message,
    }


def concurrency(scenario_id: str, wide: int) -> dict[str, object]:
    """The same jobs ``wide`` at a time and one at a time: equal records or the first difference."""
    scenario = load_scenario(scenario_id)
    jobs = plan_jobs(scenario, split="eval", samples=4, seed=0, limit=max(wide // 4, 1))
    timings = {}
    records = {}
    for width in (wide, 1):
        started = time.perf_counter()
        episodes = run_jobs(scenario, Random(seed=3), jobs, batch_size=width)
        timings[width] = time.perf_counter() - started
        records[width] = {job_key(e): comparable(e) for e in episodes}
    difference = None
    if records[wide].keys() != records[1].keys():
        difference = "the two runs did not play the same jobs"
    for key in sorted(records[1], key=str):
        if difference is None and records[wide].get(key) != records[1][key]:
            difference = f"{key}: " + str(first_difference(records[wide][key], records[1][key]))
    return {
        "scenario": scenario_id,
        "episodes": len(jobs),
        "held": difference is None,
        f"seconds_{wide}": round(timings[wide], 2),
        "seconds_1": round(timings[1], 2),
        "message": difference or "",
    }


def kill_and_resume(scenario_id: str, episodes: int, kills: int, seed: int) -> dict[str, object]:
    """SIGKILL ``simenv run`` ``kills`` times, resume each time, then check the file."""
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run.jsonl"
        command = [*SIMENV, "run", scenario_id, "--policy", "random", "-n", str(episodes)]
        command += ["--split", "train", "--out", str(out), "--batch-size", "16"]
        # Kill points spread over the run, by progress (episodes on disk), not by the clock.
        targets = sorted(rng.sample(range(1, episodes), kills))
        killed = 0
        for attempt in range(kills + 1):
            args = command + (["--resume"] if attempt else [])
            proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            if attempt < kills:
                while proc.poll() is None and _lines(out) < targets[attempt]:
                    time.sleep(0.02)
                if proc.poll() is None:
                    os.kill(proc.pid, signal.SIGKILL)
                    killed += 1
            _, stderr = proc.communicate()
            if attempt == kills and proc.returncode != 0:
                return {"scenario": scenario_id, "held": False, "message": stderr.decode()[-300:]}
        lines = out.read_bytes().count(b"\n")
        keys = Counter(job_key(e) for e in read_episodes(out))
    duplicated = sum(n - 1 for n in keys.values() if n > 1)
    lost = episodes - len(keys)
    return {
        "scenario": scenario_id,
        "episodes": episodes,
        "kills": killed,
        "lines": lines,
        "lost": lost,
        "duplicated": duplicated,
        "held": lost == 0 and duplicated == 0 and lines == episodes,
        "message": "",
    }


def _lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def table(title: str, rows: list[dict[str, object]]) -> str:
    """A markdown table of ``rows`` (their keys, in order, are the columns)."""
    columns = [c for c in rows[0] if c != "message"]
    out = [f"**{title}**", "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    out += ["| " + " | ".join(str(r.get(c, "")) for c in columns) + " |" for r in rows]
    broken = [f"- {r['scenario']}: {r['message']}" for r in rows if not r["held"]]
    return "\n".join(out + (["", *broken] if broken else []))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=10_000, help="fuzzed actions per scenario")
    parser.add_argument("--wide", type=int, default=256, help="episodes stepped at once")
    parser.add_argument("--kills", type=int, default=5, help="SIGKILLs of one run")
    parser.add_argument("--episodes", type=int, default=2_000, help="episodes of the killed run")
    parser.add_argument("--docker", action="store_true", help="also fuzz code/Repair-v1")
    parser.add_argument("--write", action="store_true", help="update docs/reliability.md")
    args = parser.parse_args()

    ids = [s for s in registry() if args.docker or s not in DOCKER_SCENARIOS]
    sections = []
    every: list[dict[str, object]] = []
    rows: list[dict[str, object]] = []
    for scenario_id in ids:
        rows.append(fuzz(scenario_id, args.steps))
        print(json.dumps(rows[-1]), flush=True)
    every += rows
    sections.append(table(f"Fuzzing: {args.steps:,} actions per scenario", rows))
    rows = [concurrency(s, args.wide) for s in ("support/Refunds-v1", "sql/Analyst-v1")]
    print(*map(json.dumps, rows), sep="\n", flush=True)
    every += rows
    sections.append(table(f"{args.wide} episodes at once against one at a time", rows))
    rows = [kill_and_resume("support/Refunds-v1", args.episodes, args.kills, seed=0)]
    print(json.dumps(rows[-1]), flush=True)
    every += rows
    sections.append(table("SIGKILL and resume of `simenv run`", rows))

    body = "\n\n".join(sections)
    body += (
        f"\n\nMeasured with `python bench/adversarial_runs.py{' --docker' if args.docker else ''}`"
        f" on {machine()}. Seconds are wall time (other load on the machine stretches them); "
        "the counts do not depend on load."
    )
    print(body)
    if args.write:
        text = DOC.read_text()
        start, end = "<!-- adversarial_runs:start -->", "<!-- adversarial_runs:end -->"
        text = text[: text.index(start) + len(start)] + "\n" + body + "\n" + text[text.index(end) :]
        DOC.write_text(text)
    return 0 if all(r["held"] for r in every) else 1


if __name__ == "__main__":
    sys.exit(main())
