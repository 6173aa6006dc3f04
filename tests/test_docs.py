"""The docs stay true: the authoring example runs, the CLI reference covers every option."""

from __future__ import annotations

import ast
import contextlib
import io
import json
import re
from pathlib import Path

import typer.main
from typer.testing import CliRunner

import simenv
from simenv.cli import app

DOCS = Path(__file__).resolve().parents[1] / "docs"
COUNTER = DOCS / "examples" / "counter.py"
TRIAGE = DOCS.parent / "scenarios" / "triage.py"
TURNS = "Rewarding turns"  # the authoring page's section on per-turn rewards
BACKENDS = "Writing a tool backend"  # and its section on tool backends
BACKEND_TEST = Path(__file__).with_name("test_tool_backend.py")
runner = CliRunner()


def _section(page: str, title: str) -> str:
    """One ``## title`` section of a page, heading included, up to the next ``## `` heading."""
    text = (DOCS / page).read_text()
    rest = text.partition(f"\n## {title}\n")[2]
    assert rest, f"docs/{page} has no section {title!r}"
    return f"\n## {title}\n" + rest.split("\n## ")[0]


def _blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, re.S)


def _python_blocks(page: str) -> list[str]:
    return _blocks((DOCS / page).read_text())


def test_counter_example_scores_oracle_1_and_null_0_through_the_cli() -> None:
    args = ["run", str(COUNTER), "-p", "oracle", "-p", "null", "--split", "all", "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    rows = {row["policy"]: row for row in json.loads(result.stdout)["policies"]}
    assert rows["oracle"]["episodes"] == rows["null"]["episodes"] == 40
    assert rows["oracle"]["mean_reward"] == 1.0 and rows["oracle"]["success_rate"] == 1.0
    assert rows["null"]["mean_reward"] == 0.0 and rows["null"]["success_rate"] == 0.0


def test_counter_example_passes_every_check() -> None:
    # The authoring page tells readers to run `simenv check` on it: no failure and no warning.
    result = runner.invoke(app, ["check", str(COUNTER), "--json"])
    assert result.exit_code == 0, result.output
    (report,) = json.loads(result.stdout)
    statuses = {r["check"]: r["status"] for r in report["results"]}
    assert set(statuses.values()) <= {"pass", "skip"}, statuses


def test_authoring_page_shows_the_example_verbatim_and_whole() -> None:
    source = COUNTER.read_text()
    # every section but "Rewarding turns", whose example is support/TriageSteps-v1, and
    # "Writing a tool backend", whose example is a test's (the next tests)
    walkthrough = (DOCS / "authoring.md").read_text()
    for title in (TURNS, BACKENDS):
        walkthrough = walkthrough.replace(_section("authoring.md", title), "")
    blocks = [b for b in _blocks(walkthrough) if not b.startswith("def test_")]
    for block in blocks:
        assert block in source, f"docs/authoring.md block not in counter.py:\n{block}"
    shown = "".join(blocks)
    for node in ast.parse(source).body:
        if isinstance(node, ast.FunctionDef | ast.ClassDef | ast.Assign):
            assert ast.get_source_segment(source, node) in shown, ast.dump(node)[:80]


def test_rewarding_turns_shows_triage_steps_verbatim() -> None:
    source = TRIAGE.read_text()
    blocks = _blocks(_section("authoring.md", TURNS))
    assert blocks
    for block in blocks:
        assert block in source, f"docs/authoring.md block not in scenarios/triage.py:\n{block}"


def test_writing_a_tool_backend_shows_the_test_double_verbatim() -> None:
    source = BACKEND_TEST.read_text()
    blocks = _blocks(_section("authoring.md", BACKENDS))
    assert len(blocks) == 2
    for block in blocks:
        assert block in source, f"docs/authoring.md block not in {BACKEND_TEST.name}:\n{block}"


def test_cli_reference_documents_every_command_and_option() -> None:
    page = (DOCS / "cli.md").read_text()
    group = typer.main.get_command(app)
    assert isinstance(group, typer.main.TyperGroup)
    for name, command in group.commands.items():
        assert f"`simenv {name}" in page, name
        for param in command.params:
            if param.param_type_name == "option":
                for opt in param.opts:
                    assert opt in page, f"simenv {name} {opt}"


def test_relative_links_in_the_docs_resolve() -> None:
    pages = [*DOCS.glob("*.md"), DOCS.parent / "README.md"]
    for page in pages:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if not target.startswith(("http://", "https://", "mailto:")):
                assert (page.parent / target).exists(), f"{page.name} -> {target}"


def test_index_links_every_page() -> None:
    index = (DOCS / "index.md").read_text()
    for page in DOCS.glob("*.md"):
        if page.name != "index.md":
            assert f"]({page.name})" in index, page.name


def test_index_snippet_prints_what_it_says() -> None:
    assert "support/Refunds-v1" in simenv.registry()  # bundled: never a reason to skip
    (code,) = _python_blocks("index.md")
    claimed = code.strip().splitlines()[-1].split("#", 1)[1].strip()
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(code, "docs/index.md", "exec"), {})
    assert printed.getvalue().strip() == claimed
