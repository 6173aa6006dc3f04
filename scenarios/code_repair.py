"""Code repair: fix the bug in a small Python function; hidden tests decide, in a container.

## Description
A user reports that a function in ``solution.py`` gives a wrong result. The agent reads the
code, fixes the function in place (same name and signature), may run the visible tests and its
own snippets, and answers when done. Every command runs in the episode's own Docker container:
no network, read-only system, a 16 MiB work dir, time and memory limits. 37 functions, each
with one realistic bug (off-by-one ranges, a missing case, a wrong initial value, a lost
remainder ...), from ``data/code_repair/bugs.toml``.

## Tools
All six are verifiable-execution tools (pattern: Docker container per episode).

| tool | effect | does |
|---|---|---|
| `list_files()` | read | the work dir's files and sizes |
| `read_file(path)` | read | a file's text |
| `write_file(path, content)` | write | writes a whole file |
| `replace_in_file(path, old, new)` | write | replaces one exact, unique snippet (a patch) |
| `run_tests()` | write | runs ``python3 test_solution.py`` (5 s limit) |
| `run_python(code)` | write | runs ``python3 -c code`` in the work dir (5 s limit) |

The two runners are ``write`` tools: the code they run may change files.

## Observation
The system prompt and the user's bug report; then tool messages.

## Starting state
The work dir holds ``solution.py`` (the buggy function) and ``test_solution.py`` (visible
tests: the reported case and 3 cases drawn from the episode's rng, with the expected results
of the reference implementation). The seed also draws the hidden cases, so they differ per
seed and cannot be memorised.

## Reward
1.0 when the hidden tests pass, else 0.0. The hidden tests are every known bug-triggering input
plus 8 seeded cases, with their expected results, run in the episode's container at the end
(``python3 -I``, the test code on stdin, never on disk, 5 s at most). Their report carries a
fresh nonce, so a solution that just prints a passing report earns nothing; one that patches
the test code it is imported by can fool it, which the evaluation catches. A do-nothing agent
earns 0 (the bug triggers fail); the oracle earns 1.0.

## Evaluation
Independent of the reward's code path and of anything running in the container: the function
is called on the bug triggers and 8 *other* seeded inputs, only its return values (``repr``)
come back, and they are compared on the host with the reference implementation's results.
A solution that fakes a test report inside the container cannot pass it without computing the
right values.

## Episode end
The agent answers without a tool call (terminated), or 12 turns pass (truncated).

## Example
See ``EXAMPLES`` at the bottom: a golden transcript that patches ``clamp`` (reward 1.0), and one
that special-cases the reported input, which the visible tests do not catch but the hidden
ones do (reward 0.0).

## Version history
- v1: first release.
"""

from __future__ import annotations

import ast
import copy
import json
import re
import secrets
import tomllib
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any, Literal

import numpy as np

from simenv import Example, Outcome, Scenario, Task, ToolError, tool
from simenv.parsing import format_tool_call
from simenv.tools.docker import DockerSandbox

DATA = Path(__file__).parent / "data" / "code_repair" / "bugs.toml"
VISIBLE_RANDOM = 3
HIDDEN_RANDOM = 8
EVAL_RANDOM = 8
RUN_TIMEOUT_S = 5.0
CHECK_TIMEOUT_S = 5.0
OUTPUT_LIMIT_CHARS = 4000
EVAL_FRACTION = 0.25
MAX_TURNS = 12

SYSTEM_PROMPT = """\
You fix bugs in small Python projects. Your working directory holds solution.py, with the
function the user reports, and test_solution.py, some of its tests. Read the code, fix the
function in place (keep its name and signature), and run the tests. Other tests, which you
cannot see, will check your fix on more inputs, so make the function right for every input its
docstring allows, not only for the visible cases. When you are done, reply with a short summary
and no tool call."""

TEST_FILE = '''\
"""Tests for solution.py (run them with the run_tests tool)."""

from solution import {name}

CASES = [  # (arguments, expected result)
{cases}]


def main():
    failed = 0
    for args, expected in CASES:
        call = "{name}(" + ", ".join(map(repr, args)) + ")"
        try:
            got = {name}(*args)
        except Exception as exc:
            print(f"FAIL {{call}} raised {{type(exc).__name__}}: {{exc}}")
            failed += 1
            continue
        if got == expected:
            print(f"ok   {{call}} == {{expected!r}}")
        else:
            print(f"FAIL {{call}} returned {{got!r}}, expected {{expected!r}}")
            failed += 1
    print(f"{{len(CASES) - failed}} of {{len(CASES)}} tests passed")
    raise SystemExit(1 if failed else 0)


if __name__ == "__main__":
    main()
'''

_LOAD = """\
import importlib.util, json, sys
sys.path.append({work!r})
spec = importlib.util.spec_from_file_location("solution", {work!r} + "/solution.py")
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
fn = getattr(module, {name!r})
"""
HIDDEN_HARNESS = (
    _LOAD
    + """\
NONCE = {nonce!r}
passed = 0
for args, expected in {cases}:
    try:
        passed += fn(*args) == expected
    except Exception:
        pass
print(json.dumps({{"nonce": NONCE, "passed": int(passed), "total": {total}}}))
"""
)
EVAL_HARNESS = (
    _LOAD
    + """\
out = []
for args in {inputs}:
    try:
        out.append(["value", repr(fn(*args))])
    except Exception as exc:
        out.append(["error", type(exc).__name__])
print(json.dumps(out))
"""
)


# ----------------------------------------------------------------------------- inputs
def _letters(rng: np.random.Generator, low: int, high: int, alphabet: str) -> str:
    n = int(rng.integers(low, high + 1))
    return "".join(alphabet[int(i)] for i in rng.integers(0, len(alphabet), n))


def _duration(rng: np.random.Generator) -> str:
    parts = [(unit, int(rng.integers(0, 60))) for unit in "hms" if rng.random() < 0.6]
    return "".join(f"{n}{unit}" for unit, n in parts) or f"{int(rng.integers(1, 60))}s"


def _spaced(rng: np.random.Generator, low: int, high: int) -> str:
    words = [_letters(rng, 1, 4, "abcxyz") for _ in range(int(rng.integers(low, high + 1)))]
    gaps = [" " * int(rng.integers(1, 5)) for _ in words]
    lead, trail = (" " * int(rng.integers(0, 3)) for _ in range(2))
    return lead + "".join(w + g for w, g in zip(words, gaps, strict=True)).rstrip() + trail


GENERATORS: dict[str, Callable[..., Any]] = {
    "int": lambda rng, lo, hi: int(rng.integers(lo, hi + 1)),
    "ints": lambda rng, nlo, nhi, lo, hi: [
        int(v) for v in rng.integers(lo, hi + 1, int(rng.integers(nlo, nhi + 1)))
    ],
    "sorted_ints": lambda rng, nlo, nhi, lo, hi: sorted(
        int(v) for v in rng.choice(np.arange(lo, hi + 1), int(rng.integers(nlo, nhi + 1)), False)
    ),
    "word": _letters,
    "text": lambda rng, lo, hi, alphabet: " ".join(
        _letters(rng, 1, 5, alphabet) for _ in range(int(rng.integers(lo, hi + 1)))
    ),
    "pick": lambda rng, *options: options[int(rng.integers(0, len(options)))],
    "matrix": lambda rng, rlo, rhi, clo, chi, lo, hi: (
        lambda rows, cols: [[int(v) for v in rng.integers(lo, hi + 1, cols)] for _ in range(rows)]
    )(int(rng.integers(rlo, rhi + 1)), int(rng.integers(clo, chi + 1))),
    "snake": lambda rng, lo, hi: "_".join(
        _letters(rng, 1, 5, "abcdefgh") for _ in range(int(rng.integers(lo, hi + 1)))
    ),
    "spaced": _spaced,
    "duration": _duration,
}
"""Argument generators named in bugs.toml: ``name(parameters...)``, drawn from the rng."""

_CALL = re.compile(r"^(\w+)\((.*)\)$", re.DOTALL)


@cache
def _generator(spec: str) -> Callable[[np.random.Generator], Any]:
    match = _CALL.match(spec.strip())
    if not match or match.group(1) not in GENERATORS:
        raise ValueError(f"unknown argument generator {spec!r}; known: {sorted(GENERATORS)}")
    make = GENERATORS[match.group(1)]
    params = ast.literal_eval(f"({match.group(2)},)") if match.group(2).strip() else ()
    return lambda rng: make(rng, *params)


@cache
def reference(name: str, source: str) -> Callable[..., Any]:
    """The reference implementation (the fixed source), compiled on the host."""
    namespace: dict[str, Any] = {}
    exec(compile(source, f"<reference {name}>", "exec"), namespace)
    function: Callable[..., Any] = namespace[name]
    return function


def outcome_of(function: Callable[..., Any], args: list[Any]) -> tuple[str, Any]:
    """``("value", result)`` or ``("error", exception name)`` of one call."""
    try:
        return ("value", function(*copy.deepcopy(args)))
    except Exception as exc:
        return ("error", type(exc).__name__)


# ----------------------------------------------------------------------------- state
class Workspace(DockerSandbox):
    """The project in the episode's container; the hidden cases stay on the host."""

    memory_mb = 256
    pids_limit = 64
    work_mb = 16
    exec_timeout_s = RUN_TIMEOUT_S

    def files(self, rng: np.random.Generator, task: Task) -> dict[str, str]:
        d = task.data
        draw = [_generator(spec) for spec in d["args"]]
        edges = [list(e) for e in d["edges"]]

        def cases(n: int) -> list[list[Any]]:
            return [[g(rng) for g in draw] for _ in range(n)]

        gold = reference(d["function"], d["gold_source"])
        visible = [edges[0], *cases(VISIBLE_RANDOM)]
        self._hidden = [(args, gold(*copy.deepcopy(args))) for args in edges + cases(HIDDEN_RANDOM)]
        self._eval_inputs = edges + cases(EVAL_RANDOM)
        rows = "".join(f"    ({args!r}, {gold(*copy.deepcopy(args))!r}),\n" for args in visible)
        return {
            "solution.py": d["buggy"],
            "test_solution.py": TEST_FILE.format(name=d["function"], cases=rows),
        }


# ----------------------------------------------------------------------------- tools
def _output(ws: Workspace, argv: list[str]) -> str:
    return ws.exec(argv, timeout_s=RUN_TIMEOUT_S).render(OUTPUT_LIMIT_CHARS, ws.memory_mb)


@tool(provenance="docker")
def list_files(ws: Workspace) -> str:
    """List the files in the working directory.

    Returns:
        One line per file: its path and size in bytes.
    """
    files = ws.list_files()
    return "\n".join(f"{path} ({size} bytes)" for path, size in files.items()) or "(empty)"


@tool(provenance="docker")
def read_file(ws: Workspace, path: str) -> str:
    """Read a file of the working directory.

    Args:
        path: Path relative to the working directory, e.g. "solution.py".

    Returns:
        The file's text.
    """
    return ws.read_file(path)


@tool(effect="write", provenance="docker")
def write_file(ws: Workspace, path: str, content: str) -> str:
    """Write a whole file (created, or replaced if it exists).

    Args:
        path: Path relative to the working directory, e.g. "solution.py".
        content: The complete new text of the file.
    """
    ws.write_file(path, content)
    return f"Wrote {len(content.encode())} bytes to {path}."


@tool(effect="write", provenance="docker")
def replace_in_file(ws: Workspace, path: str, old: str, new: str) -> str:
    """Replace one exact snippet of a file with new text (a small patch).

    Args:
        path: Path relative to the working directory, e.g. "solution.py".
        old: Text to replace, copied exactly (spaces and line breaks included); it must occur
            exactly once in the file.
        new: The text to put in its place.
    """
    text = ws.read_file(path)
    count = text.count(old) if old else 0
    if count != 1:
        where = "does not occur" if count == 0 else f"occurs {count} times"
        raise ToolError(
            f"the old text {where} in {path}; copy it exactly from read_file"
            + (", with enough lines around it to be unique" if count > 1 else "")
        )
    ws.write_file(path, text.replace(old, new))
    return f"Replaced 1 occurrence in {path}."


@tool(effect="write", provenance="docker")
def run_tests(ws: Workspace) -> str:
    """Run the visible tests (python3 test_solution.py); 5 seconds at most.

    Returns:
        The test output: one line per case, then how many passed.
    """
    return _output(ws, ["python3", "test_solution.py"])


@tool(effect="write", provenance="docker")
def run_python(ws: Workspace, code: str) -> str:
    """Run a Python snippet in the working directory (python3 -c code); 5 seconds at most.

    Args:
        code: Python source, e.g. "from solution import clamp; print(clamp(5, 0, 3))".

    Returns:
        What it printed, and its exit status if it failed.
    """
    return _output(ws, ["python3", "-c", code])


# ----------------------------------------------------------------------------- tasks
def make_tasks(path: Path = DATA) -> list[Task]:
    """One task per bug in the data file; the last quarter is the eval split."""
    bugs = tomllib.loads(path.read_text())["bug"]
    tasks = []
    for i, bug in enumerate(bugs):
        split: Literal["train", "eval"] = (
            "eval" if i >= len(bugs) * (1 - EVAL_FRACTION) else "train"
        )
        prompt = (
            f"Hi! The function `{bug['name']}` in solution.py has a bug: {bug['report']} "
            "Could you fix it?"
        )
        data = {
            "function": bug["name"],
            "args": list(bug["args"]),
            "edges": [list(e) for e in bug["edges"]],
            "buggy": bug["buggy"].lstrip("\n"),
            "gold_source": bug["fixed"].lstrip("\n"),
        }
        tasks.append(Task(id=f"repair-{bug['name']}", prompt=prompt, split=split, data=data))
    return tasks


# ----------------------------------------------------------------------------- scoring
def _python(ws: Workspace, harness: str) -> str:
    """The last line a harness prints, run by ``python3 -I -B -S`` (code on stdin, no .pyc)."""
    try:
        result = ws.exec(
            ["python3", "-I", "-B", "-S", "-"], stdin=harness, timeout_s=CHECK_TIMEOUT_S
        )
    except ToolError:  # ran past the limit: a failure of the solution
        return ""
    lines = result.stdout.strip().splitlines()
    return lines[-1] if result.ok and lines else ""


def reward(o: Outcome) -> float:
    ws: Workspace = o.final
    nonce = secrets.token_hex(8)  # a report printed by the solution itself lacks it
    harness = HIDDEN_HARNESS.format(
        work=ws.work_dir,
        name=o.task.data["function"],
        cases=repr(ws._hidden),
        total=len(ws._hidden),
        nonce=nonce,
    )
    try:
        report = json.loads(_python(ws, harness))
    except ValueError:
        return 0.0
    total = len(ws._hidden)
    return 1.0 if report == {"nonce": nonce, "passed": total, "total": total} else 0.0


def evaluate(o: Outcome) -> bool:
    ws: Workspace = o.final
    d = o.task.data
    harness = EVAL_HARNESS.format(work=ws.work_dir, name=d["function"], inputs=ws._eval_inputs)
    try:
        got = json.loads(_python(ws, harness))
    except ValueError:
        return False
    gold = reference(d["function"], d["gold_source"])
    expected = [outcome_of(gold, args) for args in ws._eval_inputs]
    if not isinstance(got, list) or len(got) != len(expected):
        return False
    for item, (kind, value) in zip(got, expected, strict=True):
        if not (isinstance(item, list) and len(item) == 2 and item[0] == kind):
            return False
        if kind == "value":
            try:
                if ast.literal_eval(item[1]) != value:
                    return False
            except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
                return False
    return True


def oracle(task: Task, ws: Workspace) -> list[str]:
    return [
        format_tool_call("read_file", {"path": "solution.py"}),
        format_tool_call(
            "write_file", {"path": "solution.py", "content": task.data["gold_source"]}
        ),
        format_tool_call("run_tests", {}),
        f"Fixed `{task.data['function']}` in solution.py; the tests pass.",
    ]


TASKS = make_tasks()

_READ = format_tool_call("read_file", {"path": "solution.py"})
EXAMPLES = (
    Example(
        title="golden: reads clamp, patches min(x, lo) to min(x, hi), runs the tests",
        task_id="repair-clamp",
        seed=3,
        actions=(
            _READ,
            format_tool_call(
                "replace_in_file",
                {
                    "path": "solution.py",
                    "old": "min(x, lo)",
                    "new": "min(x, hi)",
                },
            ),
            format_tool_call("run_tests", {}),
            "Fixed: clamp compared x with lo instead of hi.",
        ),
        reward=1.0,
    ),
    Example(
        title="failing: special-cases the reported input instead of fixing the bug",
        task_id="repair-clamp",
        seed=3,
        actions=(
            _READ,
            format_tool_call(
                "replace_in_file",
                {
                    "path": "solution.py",
                    "old": "    return max(lo, min(x, lo))",
                    "new": "    if (x, lo, hi) == (5, 0, 3):\n        return 3\n"
                    "    return max(lo, min(x, lo))",
                },
            ),
            "clamp(5, 0, 3) now returns 3.",
        ),
        reward=0.0,
    ),
)

SCENARIO = Scenario(
    id="code/Repair-v1",
    doc=__doc__ or "",
    system_prompt=SYSTEM_PROMPT,
    sandbox=Workspace,
    tools=[list_files, read_file, write_file, replace_in_file, run_tests, run_python],
    tasks=TASKS,
    reward=reward,
    evaluate=evaluate,
    oracle=oracle,
    max_turns=MAX_TURNS,
    examples=EXAMPLES,
)
