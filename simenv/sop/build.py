"""Building the scenario of a checked SOP folder: per-episode state, tools, grading, prompts.

:func:`load_sop` reads a folder and returns its (unregistered) scenario.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from simenv.errors import ToolArgumentError, ToolError
from simenv.parsing import format_tool_call
from simenv.scenario import Example, Outcome, Scenario
from simenv.sop.folder import MAPPING_FILE, SopFolder, read_folder
from simenv.sop.grading import (
    SUBMIT,
    _argument,
    _cell,
    _decision,
    _field_key,
    _field_results,
    _key_text,
    _shown,
    _write_ok,
    normalise,
    schema_problems,
)
from simenv.sop.metrics import sop_metrics
from simenv.sop.toolspecs import ToolMap
from simenv.tools.base import SchemaTool, Tool
from simenv.tools.sandbox import Sandbox
from simenv.types import Episode, Task

_INJECT = "__sop_state__"


# ----------------------------------------------------------------------------- state and tools
class SopState(Sandbox):
    """One episode of an SOP scenario: the task's row, and the writes made so far.

    Lookup-only scenarios keep no public state (so the seed only picks the task). With write
    tools, ``writes`` holds each write tool's recorded calls and ``reference`` the seeded number
    of the next confirmation the tools hand out.
    """

    write_tools: tuple[str, ...] = ()

    def setup(self, rng: np.random.Generator, task: Task) -> None:
        """Remember the task's row; with write tools, start an empty seeded write log."""
        self._row: int = int(task.data["row"])
        if self.write_tools:
            self.writes: dict[str, list[dict[str, Any]]] = {t: [] for t in self.write_tools}
            self.reference = int(rng.integers(100_000, 1_000_000))


class SopTool(SchemaTool):
    """A tool declared by a JSON spec rather than a Python signature, served from the table.

    It answers its own calls (it is its own backend): the arguments are checked against the
    spec's JSON Schema, then the function looks up the table.
    """

    def __init__(self, mapped: ToolMap, fn: Callable[..., Any]) -> None:
        super().__init__(
            None,
            name=mapped.name,
            parameters=mapped.parameters,
            description=mapped.description,
            effect=mapped.effect,
            provenance="replay" if mapped.effect == "read" else "sandbox",
            injected={_INJECT: SopState},
        )
        self.fn = fn

    def validate(self, arguments: Any) -> dict[str, Any]:
        """Check the arguments against the spec's JSON Schema.

        Raises:
            ToolArgumentError: They do not fit; the message lists every problem.
        """
        if not isinstance(arguments, dict):
            raise ToolArgumentError(
                f"arguments of {self.name!r} must be a JSON object, got {type(arguments).__name__}"
            )
        problems = schema_problems(arguments, self.parameters, "arguments")
        if problems:
            raise ToolArgumentError(f"invalid arguments for {self.name!r}: {'; '.join(problems)}")
        return dict(arguments)


def _index(folder: SopFolder, tool: ToolMap) -> dict[tuple[str, ...], list[int]]:
    index: dict[tuple[str, ...], list[int]] = {}
    for i, row in enumerate(folder.rows):
        key = tuple(_key_text(_cell(row[col])) for col in tool.keys.values())
        index.setdefault(key, []).append(i)
    return index


def _make_tool(folder: SopFolder, mapped: ToolMap) -> SopTool:
    index = _index(folder, mapped)
    rows, names = folder.rows, tuple(mapped.keys)

    def find(arguments: dict[str, Any], state: SopState) -> int:
        key = tuple(_key_text(arguments.get(arg)) for arg in names)
        found = index.get(key)
        if not found:
            shown = ", ".join(f"{a}={_shown(arguments.get(a))}" for a in names)
            raise ToolError(mapped.not_found.replace("{args}", shown))
        return state._row if state._row in found else found[0]

    if mapped.effect == "read":

        def lookup(**kwargs: Any) -> dict[str, Any]:
            state: SopState = kwargs.pop(_INJECT)
            row = rows[find(kwargs, state)]
            return {name: _cell(row[col]) for name, col in mapped.returns.items()}

        return SopTool(mapped, lookup)

    def write(**kwargs: Any) -> dict[str, Any]:
        state: SopState = kwargs.pop(_INJECT)
        row = rows[find(kwargs, state)]
        state.writes[mapped.name].append(kwargs)
        reference = f"REF-{state.reference + sum(len(v) for v in state.writes.values())}"
        return {
            "status": "done",
            "reference": reference,
            **{name: _cell(row[col]) for name, col in mapped.returns.items()},
        }

    return SopTool(mapped, write)


def _submit_tool(folder: SopFolder) -> SopTool:
    properties = {
        col: {
            "type": ["string", "number", "boolean", "null"],
            "description": folder.output_help.get(col)
            or f"The {col.replace('_', ' ')} the procedure arrives at.",
        }
        for col in folder.output_columns
    }
    mapped = ToolMap(
        name=SUBMIT,
        description="Submit the final decision for this task. This ends the task: call it once, "
        "when every step of the procedure is done.",
        parameters={
            "type": "object",
            "properties": properties,
            "required": list(folder.output_columns),
            "additionalProperties": False,
        },
        effect="write",
        keys={},
        returns={},
        inputs={},
        expect=None,
        not_found="",
    )

    def submit(**kwargs: Any) -> str:
        kwargs.pop(_INJECT, None)
        return "Decision recorded."

    tool = SopTool(mapped, submit)
    tool.injected = {}
    tool.provenance = "sandbox"
    return tool


# ----------------------------------------------------------------------------- grading
class _Grading:
    """Reward, evaluation and oracle of one SOP scenario (closures over the folder)."""

    def __init__(self, folder: SopFolder) -> None:
        self.folder = folder
        self.writes = tuple(t.name for t in folder.tools if t.effect == "write")

    def reward(self, o: Outcome) -> dict[str, float]:
        """Partial credit from the transcript: the share of fields right.

        The writes count as one more field, right when every write tool was called exactly as
        expected.
        """
        decision = _decision(o.answer, o.calls, self.folder.answer)
        parts = len(self.folder.output_columns) + bool(self.writes)
        if decision is None:
            return {f"field/{c}": 0.0 for c in self.folder.output_columns}
        out = {
            f"field/{c}": float(ok) / parts
            for c, ok in _field_results(decision, o.task.data["outputs"]).items()
        }
        if self.writes:
            expected = o.task.data["writes"]
            ok = all(_write_ok(o.called(name), expected[name]) for name in self.writes)
            out["writes"] = float(ok) / parts
        return out

    def evaluate(self, o: Outcome) -> bool:
        """All or nothing: every field equal after normalisation, every write as expected."""
        decision = _decision(o.answer, o.calls, self.folder.answer)
        if decision is None:
            return False
        given = {_field_key(k): normalise(v) for k, v in decision.items()}
        gold = {_field_key(k): normalise(v) for k, v in o.task.data["outputs"].items()}
        if any(given.get(k) != v for k, v in gold.items()):
            return False
        state: SopState = o.final
        return all(
            _write_ok(state.writes[name], o.task.data["writes"][name]) for name in self.writes
        )

    def oracle(self, task: Task, state: Any) -> list[str]:
        """Every lookup with the row's keys, the expected writes, then the gold decision."""
        row = self.folder.rows[int(task.data["row"])]
        turns = []
        for t in self.folder.tools:
            if t.effect == "read":
                properties = t.parameters.get("properties", {})
                args = {
                    a: _argument(row[c], properties.get(a, {}))
                    for a, c in {**t.keys, **t.inputs}.items()
                }
                turns.append(format_tool_call(t.name, args))
            elif task.data["writes"][t.name] is not None:
                turns.append(format_tool_call(t.name, task.data["writes"][t.name]))
        outputs = task.data["outputs"]
        if self.folder.answer == "message":
            turns.append(f"Decision:\n```json\n{json.dumps(outputs)}\n```")
        else:
            turns.append(format_tool_call(SUBMIT, outputs))
        return turns


# ----------------------------------------------------------------------------- the scenario
def _prompt(folder: SopFolder, row: dict[str, str]) -> str:
    inputs = {c: _cell(row[c]) for c in folder.input_columns}
    return (
        "Process this case by the standard operating procedure.\n\nCase inputs:\n"
        f"{json.dumps(inputs, indent=2, ensure_ascii=False)}"
    )


def _system_prompt(folder: SopFolder) -> str:
    fields = ", ".join(f'"{c}"' for c in folder.output_columns)
    if folder.answer == "submit":
        how = f"call the submit tool with the fields {fields}."
    elif folder.answer == "message":
        how = f"reply without calling a tool, with one JSON object holding the keys {fields}."
    else:
        how = (
            f"call the submit tool with the fields {fields}, or reply without calling a tool "
            "with one JSON object holding those keys."
        )
    return (
        "You are an operations agent. Follow the standard operating procedure below exactly, "
        "using the tools to look up what it needs. Do not guess values a tool can give you.\n\n"
        f"=== STANDARD OPERATING PROCEDURE ===\n{folder.sop}\n=== END OF PROCEDURE ===\n\n"
        f"When the procedure is complete, give your decision: {how} Use the exact values the "
        "procedure names."
    )


def _visible_secrets(values: Iterable[Any], visible: str) -> list[Any]:
    """Gold values the agent is not already shown (what the leak check should look for)."""
    out: list[Any] = []
    for value in values:
        text = str(value).strip() if value is not None else ""
        long_text = isinstance(value, str) and len(text) >= 4
        big_number = (
            isinstance(value, int | float) and not isinstance(value, bool) and abs(value) >= 100
        )
        if (long_text or big_number) and text not in visible:
            out.append(value)
    return out


def _doc(folder: SopFolder, scenario_id: str, n_train: int, n_eval: int) -> str:
    first = folder.sop.split("\n\n")[0].strip().replace("\n", " ")
    tools = "\n".join(
        f"| `{t.name}` | {t.effect} | {'recorded replay' if t.effect == 'read' else 'sandbox'} "
        f"| keys {', '.join(t.keys)} |"
        for t in folder.tools
    )
    return f"""SOP: {first[:120]}

## Description
Built from the SOP folder {folder.root.name} ({folder.tasks_file}): the agent follows the
procedure in the system prompt, calls the tools and returns a decision with the fields
{", ".join(folder.output_columns)}.

## Tools
| tool | effect | pattern | |
|---|---|---|---|
{tools}

## Observation
The procedure (system prompt) and the case inputs ({", ".join(folder.input_columns)}).

## Starting state
The task's row of the table; write tools start from an empty, seeded log.

## Reward
Share of output fields (and write tools) right after normalisation; 0 without a decision.

## Evaluation
All fields equal after normalisation and every write as expected (final state).

## Episode end
The agent answers without a tool call or submits ({folder.answer}), or {folder.max_turns} turns.

## Example
A golden transcript (the oracle, reward 1.0) and a prose answer without a decision (0.0).

## Version history
- {scenario_id}: {n_train} train and {n_eval} eval tasks.
"""


def _default_id(root: Path) -> str:
    name = "".join(p.capitalize() for p in re.split(r"[^A-Za-z0-9]+", root.resolve().name) if p)
    return f"sop/{name or 'Procedure'}-v1"


def _metrics(scenario: Scenario, episodes: Sequence[Episode]) -> dict[str, float]:
    """``Scenario.metrics`` of SOP scenarios: :func:`simenv.sop.metrics.sop_metrics`."""
    return {k: float(v) for k, v in sop_metrics(scenario, episodes).items()}


def build_scenario(folder: SopFolder, scenario_id: str | None = None) -> Scenario:
    """The scenario of a checked folder (see :func:`load_sop`)."""
    scenario_id = scenario_id or folder.scenario_id or _default_id(folder.root)
    grading = _Grading(folder)
    tools: list[Tool] = [_make_tool(folder, t) for t in folder.tools]
    if folder.answer != "message":
        tools.append(_submit_tool(folder))
    system_prompt = _system_prompt(folder)
    visible = system_prompt + " ".join(f"{t.description} {t.parameters}" for t in tools)
    tasks = []
    for i, row in enumerate(folder.rows):
        prompt = _prompt(folder, row)
        outputs = {c: _cell(row[c]) for c in folder.output_columns}
        writes = folder.expected_writes[i]
        gold = [*outputs.values(), *(v for w in writes.values() if w for v in w.values())]
        data = {
            "row": i,
            "outputs": outputs,
            "writes": writes,
            "expected": _visible_secrets(gold, visible + prompt),
        }
        tasks.append(Task(folder.task_ids[i], prompt, folder.splits[i], data))
    state = type(
        "SopState_" + re.sub(r"\W", "_", scenario_id), (SopState,), {"write_tools": grading.writes}
    )
    first = tasks[0]
    n_eval = sum(t.split == "eval" for t in tasks)
    return Scenario(
        id=scenario_id,
        system_prompt=system_prompt,
        tools=tools,
        tasks=tasks,
        reward=grading.reward,
        evaluate=grading.evaluate,
        sandbox=state,
        oracle=grading.oracle,
        max_turns=folder.max_turns,
        finish_tools=(SUBMIT,) if folder.answer != "message" else (),
        random_state=bool(grading.writes),
        secret_keys=("expected",),
        metrics=_metrics,
        doc=_doc(folder, scenario_id, len(tasks) - n_eval, n_eval),
        examples=(
            Example("golden: the oracle", first.id, 0, tuple(grading.oracle(first, None)), 1.0),
            Example(
                "failing: a prose answer with no decision object",
                first.id,
                0,
                ("I have reviewed the case and it looks fine to me.",),
                0.0,
            ),
        ),
    )


def is_sop_folder(path: str | Path) -> bool:
    """Whether ``path`` is a folder holding a ``simenv.yaml`` (an SOP folder)."""
    p = Path(path)
    return p.is_dir() and (p / MAPPING_FILE).is_file()


def load_sop(path: str | Path, scenario_id: str | None = None) -> Scenario:
    """Read, check and build the scenario of an SOP folder (not registered).

    Args:
        path: The folder.
        scenario_id: ``namespace/Name-vN``; default: ``id:`` in ``simenv.yaml``, else
            ``sop/<FolderName>-v1``.

    Raises:
        ScenarioError: The folder is broken; the message names the file and the fix.
    """
    return build_scenario(read_folder(path), scenario_id)
