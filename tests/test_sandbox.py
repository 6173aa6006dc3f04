"""Seeded stateful sandboxes: same seed same state, snapshot / restore, canonical hash, diff."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from helpers import TASKS, Shelf
from hypothesis import given, settings
from hypothesis import strategies as st

from simenv import Sandbox, Task
from simenv.tools.sandbox import canonical_json, diff_values


def _shelf(seed: int, task: Task = TASKS[0]) -> Shelf:
    shelf = Shelf()
    shelf.setup(np.random.default_rng(seed), task)
    return shelf


class Bag(Sandbox):
    def setup(self, rng: np.random.Generator, task: Task) -> None:
        self.tags = {"b", "a"}
        self.pair = (1, 2)
        self.count = np.int64(int(rng.integers(0, 100)))
        self.weights = np.arange(3)


def test_same_seed_same_state_hash_and_different_seeds_differ() -> None:
    assert _shelf(7).state_hash() == _shelf(7).state_hash()
    assert _shelf(7).state() == _shelf(7).state()
    hashes = {_shelf(seed).state_hash() for seed in range(20)}
    assert len(hashes) > 15
    assert len(_shelf(0).state_hash()) == 64 and int(_shelf(0).state_hash(), 16) >= 0


def test_state_is_the_public_attributes() -> None:
    shelf = _shelf(1)
    assert set(shelf.state()) == {"items", "log", "submitted"}
    before = shelf.state_hash()
    shelf._secret = "changed"
    assert shelf.state_hash() == before  # private attributes are not state


def test_hash_is_canonical() -> None:
    a, b = Shelf(), Shelf()
    a.items, a.log = {"x": 1, "y": 2}, []
    b.log, b.items = [], {"y": 2, "x": 1}  # other insertion order, same state
    assert a.state_hash() == b.state_hash()
    b.items["x"] = 1.5
    assert a.state_hash() != b.state_hash()
    bag, other = Bag(), Bag()
    bag.setup(np.random.default_rng(3), TASKS[0])
    other.setup(np.random.default_rng(3), TASKS[0])
    other.tags = {"a", "b"}
    assert bag.state_hash() == other.state_hash()  # sets, tuples and numpy values are canonical
    assert canonical_json(bag.state()).startswith('{"count":')
    assert '"tags":["a","b"]' in canonical_json(bag.state())
    assert '"weights":[0,1,2]' in canonical_json(bag.state())


def test_state_without_a_json_form_is_refused_with_a_fix() -> None:
    shelf = _shelf(0)
    shelf.opened = object()  # type: ignore[attr-defined]
    with pytest.raises(
        TypeError, match="sandbox state holds a object, which has no canonical JSON"
    ):
        shelf.state_hash()


def test_snapshot_restore_is_an_identity() -> None:
    shelf = _shelf(9)
    snap, before, state = shelf.snapshot(), shelf.state_hash(), shelf.state()
    assert snap == state and snap["items"] is not state["items"]  # a deep copy
    assert state["items"] is shelf.items  # state() shares the live values
    first = shelf.items["I-0"]
    shelf.items["I-0"] += 100
    shelf.log.append("restock I-0 100")
    shelf.submitted = "x"
    shelf.extra = {"added": True}  # type: ignore[attr-defined]
    assert shelf.state_hash() != before
    assert snap["items"]["I-0"] == first and snap["log"] == []
    shelf.restore(snap)
    assert shelf.state_hash() == before and shelf.state() == snap
    assert not hasattr(shelf, "extra")  # attributes added after the snapshot are removed
    assert shelf._secret == "not part of the state"
    shelf.items["I-1"] = -1
    shelf.restore(snap)  # the snapshot is not consumed, nor shared with the live state
    assert shelf.state_hash() == before
    shelf.items["I-2"] = -5
    assert snap["items"]["I-2"] != -5


def test_diff_lines_are_readable() -> None:
    shelf = _shelf(9)
    snap = shelf.snapshot()
    n = shelf.items["I-0"]
    assert shelf.diff(snap) == []
    shelf.items["I-0"] += 100
    shelf.items["I-9"] = 4
    del shelf.items["I-3"]
    shelf.log.append("restock I-0 100")
    shelf.submitted = "12"
    old = shelf.diff(_shelf(9))  # a Sandbox works as well as a snapshot
    assert old == shelf.diff(snap)
    lines = sorted(_shelf(9).diff(shelf))  # how the current shelf differs from the start
    three = snap["items"]["I-3"]
    assert lines == sorted(
        [
            f"~ items.I-0: {n} -> {n + 100}",
            f"- items.I-3 (was {three})",
            "+ items.I-9 = 4",
            '~ log: [] -> ["restock I-0 100"]',
            '~ submitted: null -> "12"',
        ]
    )


def test_diff_values_walks_lists_and_stops_at_a_limit() -> None:
    assert diff_values({"a": [1, {"b": 2}]}, {"a": [1, {"b": 3}]}) == ["~ a[1].b: 2 -> 3"]
    assert diff_values([1, 2], [1, 2, 3]) == ["~ <root>: [1,2] -> [1,2,3]"]
    assert diff_values(1, 1) == []
    many = diff_values({str(i): i for i in range(80)}, {str(i): -i - 1 for i in range(80)})
    assert len(many) == 51 and many[-1] == "... (stopped after 50 differences)"


def test_default_sandbox_holds_no_resources() -> None:
    box = Sandbox()
    box.setup(np.random.default_rng(0), TASKS[0])
    assert box.state() == {} and Sandbox.live_resources() == []
    box.close()


json_leaf = st.none() | st.booleans() | st.integers(-100, 100) | st.text(max_size=4)
json_state = st.recursive(
    json_leaf,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=8,
)


@settings(max_examples=100, deadline=None)
@given(
    seed=st.integers(0, 2**32),
    edits=st.lists(
        st.tuples(st.sampled_from(["items", "log", "submitted", "new"]), json_state), max_size=5
    ),
)
def test_any_edits_are_undone_by_restore_and_seen_by_diff(
    seed: int, edits: list[tuple[str, Any]]
) -> None:
    shelf = _shelf(seed)
    snap, before = shelf.snapshot(), shelf.state_hash()
    for name, value in edits:
        setattr(shelf, name, value)
    changed = shelf.state() != snap
    assert (shelf.state_hash() != before) == changed
    assert bool(diff_values(snap, shelf.state())) == changed
    shelf.restore(snap)
    assert shelf.state_hash() == before and shelf.state() == snap
