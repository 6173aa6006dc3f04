"""The HTML report and its SVG charts, read as markup (the browser test renders them)."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import typer
from typer.testing import CliRunner

from simenv import Episode
from simenv.cli.evaluate import register
from simenv.evaluation.charts import bar_chart, histogram, line_chart, task_bars
from simenv.evaluation.metrics import compare, summarize
from simenv.evaluation.report import render_report

app = typer.Typer()
register(app)

VOID = {"meta", "br", "img", "input", "link", "hr", "col"}
SVG_LEAVES = {"line", "rect", "circle", "polyline", "path"}


class Balanced(HTMLParser):
    """Fails on a closing tag that does not match the open one (markup built by hand)."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        pass

    def handle_endtag(self, tag: str) -> None:
        assert self.stack and self.stack[-1] == tag, (tag, self.stack[-5:])
        self.stack.pop()


def balanced(markup: str) -> None:
    parser = Balanced()
    parser.feed(markup)
    parser.close()
    assert parser.stack == []


def ep(task: str, reward: float, success: bool, turns: int = 1) -> Episode:
    from simenv import Step

    steps = tuple(Step(i + 1, {"role": "assistant", "content": ""}) for i in range(turns))
    return Episode("a/B-v1", task, 0, (), steps, reward, evaluation=float(success),
                   policy={"name": "p"})  # fmt: skip


def test_histogram_counts_by_hand() -> None:
    svg = histogram({"run": [1, 1, 2, 4]}, label="turns", x_label="turns", integer=True)
    tips = re.findall(r"<title>run · (\d+): (\d+)</title>", svg)
    assert tips == [("1", "2"), ("2", "1"), ("3", "0"), ("4", "1")]
    real = histogram({"run": [0.0, 0.05, 0.5, 1.0]}, label="r", x_label="reward", bins=4)
    assert [c for _, c in re.findall(r"<title>run · ([\d.]+): (\d+)</title>", real)] == [
        "2", "0", "1", "1"
    ]  # fmt: skip
    balanced(svg)


def test_charts_escape_labels_and_mark_series() -> None:
    svg = bar_chart(["<a>", "b"], {"x&y": [1.0, 2.0], "z": [0.5, 0.0]}, label="t")
    assert "<a>" not in svg and "&lt;a&gt;" in svg and "x&amp;y" in svg
    assert svg.count("<rect") == 4 and 'class="legend"' in svg
    lines = line_chart([1, 2, 4], {"p@k": [0.2, 0.5, None], "p^k": [0.1, 0.05, 0.01]},
                       label="c", x_label="k", y_label="p", colours={"p@k": 0, "p^k": 0},
                       dashed=["p^k"])  # fmt: skip
    assert lines.count("<circle") == 5 and "stroke-dasharray" in lines
    assert "<title>p@k at 2: 0.500</title>" in lines
    bars = task_bars(["t1", "t2"], {"d": [0.5, -2.0]}, label="d", x_label="d", low=-1, high=1)
    assert "<title>d · t2: -2.000</title>" in bars  # drawn clipped, labelled truly
    for markup in (svg, lines, bars):
        balanced(markup)


def test_report_has_plots_tables_and_comparison() -> None:
    run = [ep("t1", 1.0, True, 2), ep("t1", 0.0, False, 3), ep("t2", 0.5, False)]
    base = [ep("t1", 0.0, False), ep("t2", 0.0, False), ep("t<3>", 1.0, True)]
    summaries = {"run": summarize(run, (1, 2)), "base": summarize(base, (1, 2))}
    page = render_report(
        summaries,
        {"run": run, "base": base},
        title="eval <x>",
        comparisons={"run": compare(run, base)},
        baseline="base",
        notes=["run: a.jsonl"],
    )
    balanced(page)
    assert not re.search(r"https?://|<script|<link|\bsrc=", page)  # nothing fetched, no code
    labels = re.findall(r'aria-label="([^"]+)"', page)
    for name in ("reward distribution", "pass@k curve", "turns histogram", "success per task",
                 "reward difference per task", "termination reasons"):  # fmt: skip
        assert name in labels, name
    assert "eval &lt;x&gt;" in page and "t&lt;3&gt;" in page and "<x>" not in page
    assert "Paired comparison with base" in page
    # t1: 0.5 - 0 and t2: 0.5 - 0 -> +0.500, both wins
    assert "+0.500" in page and "2 / 0 / 0" in page
    assert "0 tasks only in the run and 1 only in the baseline" in page
    assert "<title>run pass@k at 2: 1.000</title>" in page  # t1: n=2, c=1 -> pass@2 = 1


def test_eval_html_option_writes_the_report(tmp_path: Path) -> None:
    run = tmp_path / "run.jsonl"
    run.write_text("".join(e.to_json() + "\n" for e in [ep("t1", 1, True), ep("t2", 0, False)]))
    report = tmp_path / "out" / "report.html"
    result = CliRunner().invoke(app, ["eval", str(run), "--html", str(report)])
    assert result.exit_code == 0, result.output
    page = report.read_text()
    assert page.startswith("<!doctype html>") and page.count("<svg") >= 4
    balanced(page)
