"""`simenv view` and the `simenv eval --html` report, driven in a real headless Chromium.

The browser tests need Debian's ``chromium`` and ``chromium-driver`` (``.ci/run`` installs them)
and selenium (the ``dev`` extra); without them they skip and say which is missing, and under
``CI=true`` that skip fails the run (tests/ci_skips.py).
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from simenv import Episode, Step, ToolCall, ToolResult
from simenv.cli import app as simenv_app
from simenv.cli.evaluate import register
from simenv.rollouts.store import read_episodes

app = typer.Typer()
register(app)
runner = CliRunner()

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
HOSTILE = '</script><img src=x onerror="window.pwned=1"><b>not bold</b>'


def _browser_missing() -> str | None:
    if CHROMIUM is None:
        return "Debian's chromium is not installed (apt-get install chromium chromium-driver)"
    if CHROMEDRIVER is None:
        return "chromedriver is not installed (apt-get install chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[dev]')"
    return None


needs_browser = pytest.mark.skipif(_browser_missing() is not None, reason=str(_browser_missing()))


def hostile_episode() -> Episode:
    """An invalid episode whose transcript tries to inject markup into the page."""
    call = ToolCall("h1", "lookup_order", {"order_id": HOSTILE})
    result = ToolResult("h1", "lookup_order", HOSTILE, True, "replay", 0.25)
    return Episode(
        "support/Refunds-v1", "hostile", 99,
        ({"role": "user", "content": HOSTILE},
         {"role": "assistant", "content": "", "tool_calls": [call.to_openai()]},
         result.to_message()),
        (Step(1, {"role": "assistant", "content": ""}, (call,), (result,)),),
        0.0, termination="infra_error", valid=False, error="sandbox down",
        policy={"name": "hand"},
    )  # fmt: skip


@pytest.fixture(scope="module")
def run_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("view") / "run.jsonl"
    args = ["run", "support/Refunds-v1", "-p", "oracle", "-p", "random", "-n", "4",
            "--samples", "2", "--out", str(out)]  # fmt: skip
    result = runner.invoke(simenv_app, args)
    assert result.exit_code == 0, result.output
    with out.open("a") as handle:
        handle.write(hostile_episode().to_json() + "\n")
    return out


def embedded(page: str) -> list[dict[str, Any]]:
    match = re.search(r'<script type="application/json" id="data">(.*?)</script>', page, re.S)
    assert match is not None
    data: list[dict[str, Any]] = json.loads(match.group(1))
    return data


def test_view_writes_one_self_contained_page(run_file: Path) -> None:
    result = runner.invoke(app, ["view", str(run_file)])
    assert result.exit_code == 0, result.output
    page = run_file.with_suffix(".html").read_text()
    assert not re.search(r"https?://|<script src|<link|<img", page)  # nothing to fetch
    records = embedded(page)
    assert len(records) == 17 and [r["index"] for r in records] == list(range(17))
    assert {r["outcome"] for r in records} == {"success", "failure", "invalid"}
    assert {r["run"] for r in records} == {"oracle", "random", "hand"}
    assert "</script><img" not in page and records[-1]["messages"][0]["content"] == HOSTILE


def test_view_errors(tmp_path: Path) -> None:
    result = runner.invoke(app, ["view", str(tmp_path / "nothing.jsonl")])
    assert result.exit_code == 2 and "no such file" in result.output


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1280,900"):  # fmt: skip
        options.add_argument(argument)
    options.binary_location = str(CHROMIUM)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    try:
        yield driver
    finally:
        driver.quit()


def errors_in(driver: Any) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


@needs_browser
def test_viewer_lists_filters_and_opens_episodes(run_file: Path, browser: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select

    page = run_file.with_suffix(".html")
    assert runner.invoke(app, ["view", str(run_file), "-o", str(page)]).exit_code == 0
    episodes = list(read_episodes(run_file))
    browser.get(page.resolve().as_uri())

    def rows() -> list[Any]:
        return list(browser.find_elements(By.CSS_SELECTOR, "#list .episode"))

    def badges() -> set[str]:
        return {r.find_element(By.CSS_SELECTOR, ".badge").text for r in rows()}

    assert len(rows()) == 17 and browser.find_element(By.ID, "count").text == "17 of 17 episodes"
    # Filter by outcome, then by task, then by free text (the run's name).
    outcome, task = (
        Select(browser.find_element(By.ID, "outcome")),
        Select(browser.find_element(By.ID, "task")),
    )
    outcome.select_by_value("failure")
    failures = sum(e.valid and not e.success for e in episodes)
    assert len(rows()) == failures > 0 and badges() == {"failure"}
    outcome.select_by_value("invalid")
    assert [r.find_element(By.TAG_NAME, "b").text for r in rows()] == ["hostile"]
    outcome.select_by_value("all")
    task.select_by_value("refund-106")
    assert {r.find_element(By.TAG_NAME, "b").text for r in rows()} == {"refund-106"}
    assert len(rows()) == sum(e.task_id == "refund-106" for e in episodes)
    task.select_by_value("all")
    browser.find_element(By.ID, "q").send_keys("oracle")
    assert len(rows()) == 8 and badges() == {"success"}
    assert "q=oracle" in browser.execute_script("return location.hash")

    # Open one: its messages, tool calls with arguments, results with provenance and latency.
    rows()[0].click()
    detail = browser.find_element(By.ID, "detail")
    title = detail.find_element(By.ID, "title").text
    assert title.startswith(rows()[0].find_element(By.TAG_NAME, "b").text)
    calls = [c.text for c in detail.find_elements(By.CSS_SELECTOR, ".tool-call .name")]
    assert calls[0] == "find_customer" and "lookup_order" in calls
    assert calls[-1] in ("issue_refund", "deny_refund")
    assert '"email"' in detail.find_element(By.CSS_SELECTOR, ".tool-call .arguments").text
    results = detail.find_elements(By.CSS_SELECTOR, ".tool-result")
    assert len(results) == len(calls)
    assert all(" ms" in r.text for r in results)
    assert {p.text for p in detail.find_elements(By.CSS_SELECTOR, ".provenance")} == {"sandbox"}
    scores = detail.find_element(By.ID, "scores").text
    assert "evaluation 1.000" in scores and "resolution" in scores
    assert "ep=" in browser.execute_script("return location.hash")

    # j moves to the next episode of the list.
    browser.find_element(By.TAG_NAME, "body").send_keys("j")
    opened = browser.find_elements(By.CSS_SELECTOR, "#list .episode.open")
    assert len(opened) == 1 and opened[0] == rows()[1]
    browser.find_element(By.ID, "q").send_keys(Keys.CONTROL, "a", Keys.DELETE)
    assert errors_in(browser) == []


@needs_browser
def test_viewer_deep_link_shows_hostile_text_as_text(run_file: Path, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    page = run_file.with_suffix(".html")
    assert runner.invoke(app, ["view", str(run_file), "-o", str(page)]).exit_code == 0
    browser.get(page.resolve().as_uri() + "#outcome=invalid&ep=16")
    detail = browser.find_element(By.ID, "detail")
    assert "invalid: sandbox down" in detail.text
    assert HOSTILE in detail.text  # shown as text ...
    assert browser.find_elements(By.CSS_SELECTOR, "img, #detail b") == []  # ... not markup
    assert browser.execute_script("return window.pwned") is None
    result = detail.find_element(By.CSS_SELECTOR, ".tool-result")
    assert "replay" in result.text and "250.00 ms" in result.text and "error" in result.text
    assert errors_in(browser) == []


@needs_browser
def test_report_renders_its_plots(run_file: Path, browser: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    report = tmp_path / "report.html"
    result = runner.invoke(app, ["eval", str(run_file), "--k", "1,2", "--html", str(report)])
    assert result.exit_code == 0, result.output
    browser.get(report.resolve().as_uri())
    charts = {
        svg.get_attribute("aria-label"): svg.size
        for svg in browser.find_elements(By.CSS_SELECTOR, "svg.chart")
    }
    for name in ("reward distribution", "pass@k curve", "turns histogram", "success per task"):
        assert charts[name]["width"] > 400 and charts[name]["height"] > 100, name
    points = browser.find_elements(By.CSS_SELECTOR, "svg[aria-label='pass@k curve'] circle")
    # oracle and random (the hand run has no valid episode) x (pass@k, pass^k) x k in (1, 2)
    assert len(points) == 2 * 2 * 2
    assert "eval/pass@2" in browser.find_element(By.TAG_NAME, "main").text
    assert errors_in(browser) == []
