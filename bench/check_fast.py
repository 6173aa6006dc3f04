"""Wall time of ``simenv check --fast`` on every bundled scenario (target: under a minute).

Run: ``python bench/check_fast.py [--write]``.
"""

from __future__ import annotations

import argparse
import time

from _report import machine, write_section

import simenv
from simenv.checks import check


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args()
    bundled = [i for i in simenv.registry() if simenv.spec(i).source.startswith("entry point")]
    rows = ["| scenario | checks | result | seconds |", "|---|---|---|---|"]
    start = time.perf_counter()
    for scenario_id in bundled:
        report = check(scenario_id, fast=True)
        verdict = "ok" if report.ok else "FAILED"
        rows.append(f"| {scenario_id} | {len(report.results)} | {verdict} | {report.seconds:.1f} |")
    total = time.perf_counter() - start
    rows.append(f"| **all {len(bundled)} bundled scenarios** | | | **{total:.1f}** |")
    report_text = "\n".join(rows)
    print(report_text)
    if args.write:
        write_section(
            "check_fast",
            f"`python bench/check_fast.py --write` ({machine()})\n\n{report_text}",
        )


if __name__ == "__main__":
    main()
