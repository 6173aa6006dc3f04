"""Datasets of prompts: what ``simenv train --dataset FILE`` sends, row by row, to the agent.

A dataset is a JSONL, CSV or Parquet file with a ``prompt`` column; every other column goes to
the agent with the prompt and is kept in the episode (``metadata["gateway"]["metadata"]``).

- ``prompt``: the text of the task (JSONL and Parquet may also hold a list of chat messages);
- ``id`` (optional): the row's id (default: ``<file stem>-<row number>``), unique;
- ``split`` (optional): ``train`` or ``eval``. Without it, a row is held out for evaluation
  when the hash of its id falls below ``eval_fraction``: deterministic, the same on every
  machine, and a row keeps its split when rows are added or reordered.

A scenario's tasks are a dataset too (:func:`scenario_rows`): each task's id, prompt and
split, with the scenario id; the task's ``data`` (gold answers) is never shown to the agent.

Every mistake in a file fails at load, naming the file, the row or field, and the fix
(:class:`DatasetError`).
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Dataset", "DatasetError", "Row", "load_dataset", "scenario_rows"]

FORMATS = (".jsonl", ".csv", ".parquet")
SPLITS = ("train", "eval")


class DatasetError(ValueError):
    """A dataset file that cannot be used; the message names the file, the field and the fix."""


@dataclass(frozen=True)
class Row:
    """One task for the agent.

    Attributes:
        id: Unique within its dataset.
        prompt: The task: a string, or a list of chat messages.
        split: ``train`` or ``eval``.
        fields: The row's other columns (passed to the agent, kept in the episode).
        scenario_id: The scenario the row is a task of (scenario rows only).
    """

    id: str
    prompt: Any
    split: str = "train"
    fields: dict[str, Any] = field(default_factory=dict)
    scenario_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """What the agent receives: ``{"id", "prompt", "split", ...fields}`` (JSON-ready)."""
        out = {**self.fields, "id": self.id, "prompt": self.prompt, "split": self.split}
        if self.scenario_id is not None:
            out["scenario_id"] = self.scenario_id
        return out


@dataclass(frozen=True)
class Dataset:
    """The rows of one source (a file or a scenario)."""

    name: str
    rows: tuple[Row, ...]

    def split(self, name: str) -> tuple[Row, ...]:
        """The rows of one split."""
        return tuple(r for r in self.rows if r.split == name)


def load_dataset(path: str | Path, eval_fraction: float = 0.1) -> Dataset:
    """Read a JSONL, CSV or Parquet file of prompts (see the module docstring).

    Raises:
        DatasetError: No such file, another format, an unreadable row, no ``prompt`` column,
            an empty prompt, a repeated id, a ``split`` that is not train or eval, or no train
            row; the message says which file, row and field, and how to fix it.
    """
    path = Path(path)
    if not 0 <= eval_fraction < 1:
        raise DatasetError(f"eval_fraction must be in [0, 1), not {eval_fraction}")
    if path.suffix.lower() not in FORMATS:
        raise DatasetError(
            f"{path}: a dataset must be a .jsonl, .csv or .parquet file, not {path.suffix!r}; "
            "fix: convert it, or rename a JSON-lines file to .jsonl"
        )
    if not path.is_file():
        raise DatasetError(f"{path}: no such file; fix: give --dataset an existing file")
    records = list(_read(path))
    if not records:
        raise DatasetError(f"{path}: no rows; fix: add at least one row with a `prompt`")
    columns = sorted({k for _, r in records for k in r})
    if "prompt" not in columns:
        raise DatasetError(
            f"{path}: no `prompt` column (columns: {', '.join(columns) or 'none'}); fix: name "
            "the column that holds each task's text `prompt`"
        )
    rows, seen = [], set()
    for where, record in records:
        rows.append(_row(path, where, record, eval_fraction))
        if rows[-1].id in seen:
            raise DatasetError(
                f"{path} {where}: id {rows[-1].id!r} is used twice; fix: make `id` unique"
            )
        seen.add(rows[-1].id)
    dataset = Dataset(path.stem, tuple(rows))
    if not dataset.split("train"):
        raise DatasetError(
            f"{path}: no row is in the train split; fix: set `split` to train on some rows, "
            "or a smaller eval_fraction"
        )
    return dataset


def scenario_rows(scenario: Any) -> Dataset:
    """A scenario's tasks as a dataset: id, prompt and split of each (never its ``data``)."""
    rows = tuple(Row(t.id, t.prompt, t.split, {}, scenario.id) for t in scenario.tasks)
    return Dataset(scenario.id, rows)


def held_out(row_id: str, eval_fraction: float) -> bool:
    """Whether a row without a ``split`` goes to eval: the first 8 bytes of sha256(id)."""
    digest = hashlib.sha256(row_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < eval_fraction


# ----------------------------------------------------------------------------- reading
def _read(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(where, record)`` for each row; ``where`` is how a message names the row."""
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        with path.open(encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except ValueError as exc:
                    raise DatasetError(
                        f"{path} line {number}: not JSON ({exc}); fix: one JSON object per line"
                    ) from None
                if not isinstance(record, dict):
                    raise DatasetError(
                        f"{path} line {number}: a JSON {type(record).__name__}, not an object; "
                        'fix: one object per line, e.g. {"prompt": "..."}'
                    )
                yield f"line {number}", record
    elif suffix == ".csv":
        with path.open(encoding="utf-8", newline="") as f:
            for number, record in enumerate(csv.DictReader(f), 2):  # line 1 is the header
                if None in record:
                    raise DatasetError(
                        f"{path} line {number}: more values than the header has columns; fix: "
                        "quote values that contain commas"
                    )
                yield f"line {number}", dict(record)
    else:
        yield from _read_parquet(path)


def _read_parquet(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise DatasetError(
            f"{path}: reading Parquet needs pyarrow; fix: pip install 'simenv[train]'"
        ) from None
    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises its own ArrowInvalid and OSError subclasses
        raise DatasetError(f"{path}: not a readable Parquet file ({exc})") from None
    for number, record in enumerate(table.to_pylist(), 1):
        yield f"row {number}", record


def _row(path: Path, where: str, record: dict[str, Any], eval_fraction: float) -> Row:
    prompt = record.get("prompt")
    if not _is_prompt(prompt):
        raise DatasetError(
            f"{path} {where}: `prompt` is {_shown(prompt)}; fix: "
            "give every row a prompt (a non-empty string, or a list of chat messages)"
        )
    row_id = record.get("id")
    if row_id is None or row_id == "":
        row_id = f"{path.stem}-{where.split()[-1]}"
    split = record.get("split")
    if split is None or split == "":
        split = "eval" if held_out(str(row_id), eval_fraction) else "train"
    if split not in SPLITS:
        raise DatasetError(
            f"{path} {where}: `split` is {split!r}; fix: train or eval (or leave it empty)"
        )
    fields = {k: v for k, v in record.items() if k not in ("prompt", "id", "split")}
    return Row(str(row_id), prompt, str(split), fields)


def _shown(value: Any) -> str:
    if value is None or (isinstance(value, str | list) and not str(value).strip("[] ")):
        return "empty"
    return repr(value)[:80]


def _is_prompt(value: Any) -> bool:
    if isinstance(value, str):
        return bool(value.strip())
    if isinstance(value, Sequence) and value:
        return all(isinstance(m, dict) and "role" in m and "content" in m for m in value)
    return False
