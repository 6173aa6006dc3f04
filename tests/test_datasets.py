"""Datasets of prompts: JSONL, CSV and Parquet files, train/eval splits, and scenario tasks.

Every file here is written by the test; every mistake in one must fail at load with the file,
the row or field, and the fix in the message.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import simenv
from trainer.datasets import DatasetError, held_out, load_dataset, scenario_rows

ROWS = [
    {"id": "q1", "prompt": "Refund order O-1.", "customer": "ada", "split": "train"},
    {"id": "q2", "prompt": "Refund order O-2.", "customer": "bob", "split": "eval"},
    {"id": "q3", "prompt": "Where is O-3?", "customer": "cy", "split": "train"},
]


def jsonl(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def write_csv(path: Path, rows: list[dict[str, object]]) -> Path:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.mark.parametrize("kind", ["jsonl", "csv", "parquet"])
def test_each_format_gives_the_same_rows_with_their_other_columns(
    tmp_path: Path, kind: str
) -> None:
    path = tmp_path / f"tasks.{kind}"
    if kind == "jsonl":
        jsonl(path, ROWS)
    elif kind == "csv":
        write_csv(path, ROWS)
    else:
        pq.write_table(pa.Table.from_pylist(ROWS), path)
    dataset = load_dataset(path)
    assert dataset.name == "tasks"
    assert [r.id for r in dataset.rows] == ["q1", "q2", "q3"]
    assert [r.id for r in dataset.split("train")] == ["q1", "q3"]
    assert [r.id for r in dataset.split("eval")] == ["q2"]
    first = dataset.rows[0]
    assert first.prompt == "Refund order O-1." and first.fields == {"customer": "ada"}
    assert first.to_dict() == {
        "id": "q1",
        "prompt": "Refund order O-1.",
        "split": "train",
        "customer": "ada",
    }


def test_a_jsonl_prompt_may_be_a_list_of_messages(tmp_path: Path) -> None:
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    dataset = load_dataset(jsonl(tmp_path / "m.jsonl", [{"prompt": messages}]))
    assert dataset.rows[0].prompt == messages
    with pytest.raises(DatasetError, match="line 1: `prompt` is"):
        load_dataset(jsonl(tmp_path / "bad.jsonl", [{"prompt": [{"text": "no role"}]}]))


def test_without_a_split_column_the_hash_of_the_id_decides_and_is_stable(tmp_path: Path) -> None:
    rows = [{"id": f"t{i}", "prompt": f"task {i}"} for i in range(400)]
    dataset = load_dataset(jsonl(tmp_path / "a.jsonl", rows), eval_fraction=0.25)
    held = {r.id for r in dataset.split("eval")}
    assert 60 < len(held) < 140  # about a quarter of 400
    assert held == {r["id"] for r in rows if held_out(str(r["id"]), 0.25)}
    again = load_dataset(jsonl(tmp_path / "b.jsonl", rows[::-1]), eval_fraction=0.25)
    assert {r.id for r in again.split("eval")} == held  # reordering moves no row
    none = load_dataset(jsonl(tmp_path / "c.jsonl", rows), eval_fraction=0.0)
    assert not none.split("eval") and len(none.split("train")) == 400


def test_rows_without_an_id_are_numbered_by_their_line(tmp_path: Path) -> None:
    path = jsonl(tmp_path / "n.jsonl", [{"prompt": "a"}, {"prompt": "b"}])
    assert [r.id for r in load_dataset(path, eval_fraction=0).rows] == ["n-1", "n-2"]


def test_a_scenarios_tasks_are_a_dataset_without_their_gold_data() -> None:
    scenario = simenv.load_scenario("support/Refunds-v1")
    dataset = scenario_rows(scenario)
    assert [r.id for r in dataset.rows] == [t.id for t in scenario.tasks]
    assert {r.split for r in dataset.rows} == {"train", "eval"}
    row = dataset.rows[0].to_dict()
    assert row["scenario_id"] == "support/Refunds-v1"
    assert set(row) == {"id", "prompt", "split", "scenario_id"}  # never the task's data
    assert scenario.tasks[0].data  # which does exist


# ----------------------------------------------------------------------------- mistakes
def test_a_missing_file_or_another_format_says_so(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"nope\.jsonl: no such file; fix"):
        load_dataset(tmp_path / "nope.jsonl")
    (tmp_path / "t.txt").write_text("prompt\nhi\n")
    with pytest.raises(DatasetError, match=r"t\.txt: a dataset must be a \.jsonl, \.csv or"):
        load_dataset(tmp_path / "t.txt")


@pytest.mark.parametrize("kind", ["jsonl", "csv", "parquet"])
def test_no_prompt_column_names_the_file_the_columns_and_the_fix(tmp_path: Path, kind: str) -> None:
    rows: list[dict[str, object]] = [{"question": "Refund O-1", "id": "a"}]
    path = tmp_path / f"q.{kind}"
    if kind == "jsonl":
        jsonl(path, rows)
    elif kind == "csv":
        write_csv(path, rows)
    else:
        pq.write_table(pa.Table.from_pylist(rows), path)
    with pytest.raises(DatasetError) as caught:
        load_dataset(path)
    message = str(caught.value)
    assert str(path) in message and "no `prompt` column (columns: id, question)" in message
    assert "fix: name the column" in message


def test_each_bad_row_is_named(tmp_path: Path) -> None:
    cases = {
        "empty.jsonl": ([{"prompt": "ok"}, {"prompt": "  "}], "line 2: `prompt` is empty"),
        "split.jsonl": ([{"prompt": "a", "split": "test"}], "line 1: `split` is 'test'"),
        "twice.jsonl": ([{"id": "x", "prompt": "a"}, {"id": "x", "prompt": "b"}], "used twice"),
        "evalonly.jsonl": ([{"prompt": "a", "split": "eval"}], "no row is in the train split"),
    }
    for name, (rows, expected) in cases.items():
        with pytest.raises(DatasetError, match=expected):
            load_dataset(jsonl(tmp_path / name, rows))
    (tmp_path / "garbled.jsonl").write_text('{"prompt": "a"}\n{"prompt": \n')
    with pytest.raises(DatasetError, match="line 2: not JSON"):
        load_dataset(tmp_path / "garbled.jsonl")
    (tmp_path / "list.jsonl").write_text('["prompt"]\n')
    with pytest.raises(DatasetError, match="line 1: a JSON list, not an object"):
        load_dataset(tmp_path / "list.jsonl")
    (tmp_path / "extra.csv").write_text("prompt,id\nhello,a,surplus\n")
    with pytest.raises(DatasetError, match="line 2: more values than the header"):
        load_dataset(tmp_path / "extra.csv")
    (tmp_path / "empty.csv").write_text("prompt\n")
    with pytest.raises(DatasetError, match="no rows"):
        load_dataset(tmp_path / "empty.csv")
    (tmp_path / "broken.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(DatasetError, match="not a readable Parquet file"):
        load_dataset(tmp_path / "broken.parquet")
    with pytest.raises(DatasetError, match="eval_fraction"):
        load_dataset(jsonl(tmp_path / "f.jsonl", [{"prompt": "a"}]), eval_fraction=1.0)
