"""The layout holds: each import contract breaks when broken, and old import paths still work.

The contracts themselves run in ``make test`` (``lint-imports``); here each one is broken on
purpose in a copy of the tree, to prove it would catch the violation it names.
"""

from __future__ import annotations

import ast
import importlib
import json
import os
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")

# module -> a line that breaks the named contract when appended to it
VIOLATIONS = {
    "simenv/sop/grading.py": (
        "from simenv.registration import make",
        "sop never imports registration, env or rollouts",
    ),
    "simenv/tools/sqlite/results.py": (
        "from simenv.tools.replay import cassette",
        "tool patterns never import each other",
    ),
    "simenv/tools/base.py": (
        "from simenv.tools.sqlite import sandbox",
        "tools: every pattern builds on sandbox and base only",
    ),
    "simenv/evaluation/metrics.py": (
        "from simenv.rollouts import jobs",
        "evaluation and rollouts are independent",
    ),
    "simenv/env.py": ("from simenv.checks import report", "simenv layers import one way"),
    "simenv/server/gateway/errors.py": (
        "from simenv.server.gateway import http",
        "gateway layers import one way",
    ),
    "simenv/types.py": ("import torch", "simenv stays torch-free"),
    "simenv/errors.py": ("import trainer", "simenv never imports scenarios or trainer"),
    "scenarios/triage.py": (
        "from simenv.env import MultiTurnEnv",
        "scenarios import only simenv's public API",
    ),
}


def _python_only(folder: str, names: list[str]) -> list[str]:
    return [
        n
        for n in names
        if n == "__pycache__" or not (n.endswith(".py") or Path(folder, n).is_dir())
    ]


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """The Python files of simenv/, scenarios/ and trainer/, and pyproject.toml, copied."""
    for package in ("simenv", "scenarios", "trainer"):
        shutil.copytree(ROOT / package, tmp_path / package, ignore=_python_only)
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    return tmp_path


def _lint(tree: Path) -> tuple[int, str]:
    result = subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=tree,
        env={**os.environ, "PYTHONPATH": str(tree)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    return result.returncode, result.stdout + result.stderr


def test_every_contract_breaks_when_broken(tree: Path) -> None:
    code, output = _lint(tree)
    assert code == 0, output
    kept = set(re.findall(r"^(.+) KEPT", output, re.M))
    assert {contract for _, contract in VIOLATIONS.values()} <= kept
    for module, (line, _) in VIOLATIONS.items():
        with (tree / module).open("a") as f:
            f.write(f"\n{line}  # noqa\n")
    code, output = _lint(tree)
    assert code != 0
    broken = set(re.findall(r"^(.+) BROKEN", output, re.M))
    assert broken == {contract for _, contract in VIOLATIONS.values()}, output


def test_a_new_top_level_module_must_be_placed_in_a_layer(tree: Path) -> None:
    (tree / "simenv" / "utils.py").write_text('"""A grab-bag nobody placed."""\n')
    code, output = _lint(tree)
    assert code != 0
    assert "not listed as layers" in output and "simenv.utils" in output


# ----------------------------------------------------------------------------- scenarios
PUBLIC_MODULES = re.compile(r"^simenv(\.parsing|\.sop|\.users|\.tools(\.\w+)*)?$")


def private_imports(source: str) -> list[str]:
    """``from simenv... import`` lines of ``source`` that reach past the public API."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.startswith("simenv.")]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "simenv":
            module = node.module or ""
            names = [a.name for a in node.names]
            if not PUBLIC_MODULES.match(module) or any(n.startswith("_") for n in names):
                found.append(f"from {module} import {', '.join(names)}")
    return found


def test_scenarios_import_only_public_names() -> None:
    for path in sorted((ROOT / "scenarios").rglob("*.py")):
        assert private_imports(path.read_text()) == [], path


def test_the_public_name_check_refuses_internals() -> None:
    source = (
        "from simenv import Scenario, tool\n"
        "from simenv.parsing import format_tool_call\n"
        "from simenv.tools.sqlite import SQLiteSandbox\n"
        "from simenv.tools.docker.container import _create\n"
        "from simenv.env import MultiTurnEnv\n"
        "import simenv.rollouts.runner\n"
    )
    assert private_imports(source) == [
        "from simenv.tools.docker.container import _create",
        "from simenv.env import MultiTurnEnv",
        "simenv.rollouts.runner",
    ]


# ----------------------------------------------------------------------------- old import paths
MOVED = [
    ("simenv.runner", "run", "simenv.rollouts.runner"),
    ("simenv.runner", "Job", "simenv.rollouts.jobs"),
    ("simenv.runner", "step_envs", "simenv.rollouts.pools"),
    ("simenv.ray_backend", "RayPool", "simenv.rollouts.ray"),
    ("simenv.store", "EpisodeStore", "simenv.rollouts.store"),
    ("simenv.recording", "coverage", "simenv.rollouts.recording"),
    ("simenv.policies", "Oracle", "simenv.rollouts.policies.scripted"),
    ("simenv.policies.base", "Conversation", "simenv.rollouts.policies.base"),
    ("simenv.policies.scripted", "FINAL_ANSWER", "simenv.rollouts.policies.scripted"),
    ("simenv.policies.openai", "OpenAI", "simenv.rollouts.policies.openai"),
    ("simenv.policies.hf", "HF", "simenv.rollouts.policies.hf"),
    ("simenv.metrics", "summarize", "simenv.evaluation.metrics"),
    ("simenv.metrics", "pass_at_k", "simenv.evaluation.estimators"),
    ("simenv.report_html", "render_report", "simenv.evaluation.report"),
    ("simenv.charts", "bar_chart", "simenv.evaluation.charts"),
    ("simenv.viewer", "render_transcripts", "simenv.evaluation.viewer"),
    ("simenv.tracking", "MLflowLogger", "simenv.evaluation.tracking"),
    ("simenv.tools.replay_http", "HttpCassette", "simenv.tools.replay.http"),
    ("simenv.tools.docker_pool", "reap", "simenv.tools.docker.pool"),
    ("simenv.tools.docker_pool", "MANAGED_LABEL", "simenv.tools.docker.container"),
    ("simenv.tools.docker_image", "build_base_image", "simenv.tools.docker.image"),
    ("simenv.tools.resultset", "same_rows", "simenv.tools.sqlite.results"),
    ("simenv.testing.http", "serve", "simenv.tools.replay.standin"),
]


@pytest.mark.parametrize(("old", "name", "new"), MOVED)
def test_an_old_import_path_warns_once_and_still_works(old: str, name: str, new: str) -> None:
    parent = old.rpartition(".")[0]
    importlib.import_module(parent)  # its own warning, if it is an alias too, is not this one's
    sys.modules.pop(old, None)  # import it afresh, as a user's first import does
    code = compile(f"import {old}", "user_code.py", "exec")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        exec(code, {})
        exec(code, {})  # a second import is silent
    assert len(caught) == 1, [str(w.message) for w in caught]
    assert caught[0].category is DeprecationWarning
    assert str(caught[0].message).startswith(f"{old} moved to simenv.")
    assert getattr(sys.modules[old], name) is getattr(importlib.import_module(new), name)


def test_the_warning_points_at_the_importing_line() -> None:
    # In a fresh interpreter: under pytest, simenv's modules load through pytest's assertion
    # rewriter (simenv is a pytest plugin), whose frame the warning would point at instead.
    code = (
        "import json, sys, warnings\n"
        "warnings.simplefilter('always')\n"
        "where = {}\n"
        f"for old in {sorted({old for old, _, _ in MOVED})!r}:\n"
        "    with warnings.catch_warnings(record=True) as caught:\n"
        "        warnings.simplefilter('always')\n"
        "        exec(compile(f'import {old}', 'user_code.py', 'exec'), {})\n"
        "    where[old] = sorted({w.filename for w in caught})\n"
        "print(json.dumps(where))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    where = json.loads(result.stdout)
    assert where == {old: ["user_code.py"] for old in where}


def test_nothing_in_simenv_imports_an_old_path() -> None:
    aliases = {old for old, _, _ in MOVED}
    for path in (ROOT / "simenv").rglob("*.py"):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        if module in aliases:
            continue
        tree = ast.parse(path.read_text())
        imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        imported |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert not imported & aliases, (path, imported & aliases)
