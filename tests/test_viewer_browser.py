"""The transcript viewer and the HTML report, loaded in a real headless browser (Chromium)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from simenv.cli import app

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def dom(page: Path, fragment: str = "") -> str:
    assert CHROMIUM is not None
    result = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=3000",
         "--dump-dom", f"{page.resolve().as_uri()}{fragment}"],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    return result.stdout


@pytest.fixture(scope="module")
def run_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("view") / "run.jsonl"
    result = CliRunner().invoke(
        app,
        ["run", "support/Triage-v1", "-p", "oracle", "-p", "random", "-n", "6", "--out", str(out)],
    )
    assert result.exit_code == 0, result.output
    return out


def test_view_writes_a_self_contained_page(run_file: Path) -> None:
    result = CliRunner().invoke(app, ["view", str(run_file)])
    assert result.exit_code == 0, result.output
    page = run_file.with_suffix(".html").read_text()
    assert "http://" not in page and "https://" not in page  # nothing fetched from a network
    assert page.count('"scenario_id"') == 12


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed")
def test_viewer_in_a_browser_lists_filters_and_opens_episodes(run_file: Path) -> None:
    CliRunner().invoke(app, ["view", str(run_file), "-o", str(run_file.with_suffix(".html"))])
    page = run_file.with_suffix(".html")
    listed = dom(page)
    assert len(re.findall(r'class="row episode"', listed)) == 12
    assert "12 episodes" in listed
    failures = dom(page, "#outcome=failure")
    shown = len(re.findall(r'class="row episode"', failures))
    assert 0 < shown < 12 and "success</span>" not in failures
    opened = dom(page, "#ep=0")
    assert 'id="title"' in opened and "get_plan" in opened and "→ route(" in opened
    assert "replay" not in opened and "sandbox ·" in opened  # provenance of each tool result


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed")
def test_report_renders_plots(run_file: Path) -> None:
    report = run_file.with_suffix(".report.html")
    result = CliRunner().invoke(app, ["eval", str(run_file), "--html", str(report)])
    assert result.exit_code == 0, result.output
    rendered = dom(report)
    assert rendered.count("<svg") == 4 and "pass@k" in rendered and "eval/success" in rendered
