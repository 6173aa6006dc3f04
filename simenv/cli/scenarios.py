"""``simenv list`` and ``simenv show``: the registered scenarios, and one scenario's spec."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.markdown import Markdown
from rich.markup import escape
from rich.table import Table

from simenv.cli.common import fail, out, scenario
from simenv.errors import SimenvError
from simenv.registration import registry
from simenv.registration import spec as spec_of

__all__ = ["register"]


def _type_name(schema: dict[str, Any]) -> str:
    """A short type for an argument's JSON schema: ``"a" | "b"``, ``array[string]``, ..."""
    if "enum" in schema:
        return " | ".join(json.dumps(v) for v in schema["enum"])
    if "anyOf" in schema:
        return " | ".join(_type_name(option) for option in schema["anyOf"])
    kind = schema.get("type", "object" if "$ref" in schema else "any")
    if kind == "array" and "items" in schema:
        return f"array[{_type_name(schema['items'])}]"
    return " | ".join(kind) if isinstance(kind, list) else str(kind)


def list_scenarios() -> None:
    """List the registered scenarios."""
    table = Table(title="registered scenarios")
    try:
        specs = [spec_of(scenario_id) for scenario_id in registry()]
    except SimenvError as exc:
        raise fail(str(exc)) from None
    widest = max((len(spec.id) for spec in specs), default=2)
    table.add_column("id", no_wrap=True, min_width=widest)
    for column in ("tools", "train", "eval", "max turns"):
        table.add_column(column, justify="right", no_wrap=True, min_width=len(column))
    # one line per scenario: the summary is cut to what the terminal leaves, not wrapped
    room = out.width - widest - len("toolstrainevalmax turns") - 24 - 3 * 7 - 1
    table.add_column("summary", no_wrap=True, overflow="ellipsis", max_width=max(12, min(70, room)))
    table.add_column("source", no_wrap=True, overflow="ellipsis", max_width=24)
    for spec in specs:
        s = spec.scenario
        table.add_row(
            escape(s.id),
            str(len(s.tools)),
            str(len(s.split("train"))),
            str(len(s.split("eval"))),
            str(s.max_turns),
            escape(s.summary),
            escape(spec.source),
        )
    out.print(table)


def show(scenario_id: Annotated[str, typer.Argument(help="Scenario id or file.")]) -> None:
    """Show a scenario's spec, tools and tasks."""
    s = scenario(scenario_id)
    out.print(Markdown(s.doc or f"# {s.id}\n(no spec docstring)"))
    tools = Table(title="tools")
    for column in ("name", "effect", "arguments", "description"):
        tools.add_column(column)
    for t in s.tools:
        required = set(t.parameters.get("required", ()))
        args = "\n".join(
            f"{name}: {_type_name(arg)}{'' if name in required else ', optional'}"
            f" - {arg.get('description', '')}"
            for name, arg in t.parameters.get("properties", {}).items()
        )
        summary = t.description.splitlines()[0] if t.description else ""
        tools.add_row(escape(t.name), t.effect, escape(args), escape(summary))
    out.print(tools)
    out.print(
        f"tasks: {len(s.split('train'))} train, {len(s.split('eval'))} eval; "
        f"max_turns={s.max_turns}; finish tools: {', '.join(s.finish_tools) or 'none'}"
    )
    for task in s.tasks[:3]:
        prompt = task.prompt[:100] or "(prompt rendered from the state)"
        out.print(f"  [dim]{escape(task.id)}[/] {escape(prompt)}")


def register(app: typer.Typer) -> None:
    """Add ``list`` and ``show`` to ``app``."""
    app.command("list")(list_scenarios)
    app.command("show")(show)
