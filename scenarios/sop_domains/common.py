"""Writing a generated SOP domain as a folder in the SOP-Bench format (plus simenv.yaml)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

DATA = Path(__file__).resolve().parent.parent / "data" / "sop"


def spec(name: str, description: str, **arguments: tuple[str, str]) -> dict[str, Any]:
    """A Bedrock tool spec; each argument is ``name=(json type, description)``."""
    return {
        "toolSpec": {
            "name": name,
            "description": description,
            "inputSchema": {
                "json": {
                    "type": "object",
                    "properties": {
                        arg: {"type": kind, "description": text}
                        for arg, (kind, text) in arguments.items()
                    },
                    "required": list(arguments),
                }
            },
        }
    }


@dataclass(frozen=True)
class Domain:
    """Everything one generated domain writes."""

    name: str
    sop: str
    toolspecs: list[dict[str, Any]]
    mapping: str
    input_columns: Sequence[str]
    output_columns: Sequence[str]
    columns: Sequence[str]
    rows: Sequence[dict[str, Any]]

    def files(self) -> dict[str, str]:
        """File name -> text."""
        table = io.StringIO()
        writer = csv.DictWriter(table, fieldnames=list(self.columns), lineterminator="\n")
        writer.writeheader()
        for row in self.rows:
            writer.writerow({k: _cell(v) for k, v in row.items()})
        metadata = {"input_columns": list(self.input_columns),
                    "output_columns": list(self.output_columns)}  # fmt: skip
        return {
            "sop.txt": self.sop.strip() + "\n",
            "toolspecs.json": json.dumps(self.toolspecs, indent=2) + "\n",
            "metadata.json": json.dumps(metadata, indent=2) + "\n",
            "test_set_with_outputs.csv": table.getvalue(),
            "simenv.yaml": self.mapping.strip() + "\n",
        }

    @classmethod
    def of(cls, module: ModuleType, n: int | None = None, seed: int | None = None) -> Domain:
        """The folder a domain module describes (``NAME``, ``SOP``, ``TOOLSPECS``, ``MAPPING``,
        ``INPUTS``, ``TOOL_COLUMNS``, ``OUTPUTS``, optional ``WRITES`` (the expected-write
        columns), ``make_rows``, ``N_TASKS`` and ``SEED``)."""
        m = module
        return cls(
            name=m.NAME,
            sop=m.SOP,
            toolspecs=m.TOOLSPECS,
            mapping=m.MAPPING,
            input_columns=m.INPUTS,
            output_columns=m.OUTPUTS,
            columns=(*m.INPUTS, *m.TOOL_COLUMNS, "split", *m.OUTPUTS, *getattr(m, "WRITES", ())),
            rows=m.make_rows(m.N_TASKS if n is None else n, m.SEED if seed is None else seed),
        )

    def write(self, root: Path | None = None) -> Path:
        """Write the folder (``scenarios/data/sop/<name>`` by default) and return it."""
        target = root or DATA / self.name
        target.mkdir(parents=True, exist_ok=True)
        for name, text in self.files().items():
            (target / name).write_text(text)
        return target


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def split_of(i: int, n: int) -> str:
    """The last quarter of the rows is the eval split."""
    return "eval" if i >= n * 3 // 4 else "train"
