"""Shared by the benchmarks: the machine's description and writing a section of the report."""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

REPORT = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"


def machine() -> str:
    """CPU model, core count and Python version, for the line under each result."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count() or 1} cores, Python {sys.version.split()[0]}"


def write_section(name: str, body: str) -> None:
    """Replace (or append) the part of docs/benchmarks.md between ``<!-- name:start/end -->``."""
    text = REPORT.read_text() if REPORT.exists() else "# Benchmarks\n"
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    section = f"{start}\n{body.strip()}\n{end}"
    if start in text and end in text:
        text = text[: text.index(start)] + section + text[text.index(end) + len(end) :]
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    REPORT.write_text(text)
