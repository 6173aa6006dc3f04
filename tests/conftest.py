"""Fixtures shared by the core tests: the Shelf scenario, its environment, a private registry."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import gymnasium
import pytest
from helpers import make_scenario

import simenv
from simenv import registration


@pytest.fixture
def scenario() -> simenv.Scenario:
    return make_scenario()


@pytest.fixture
def env(scenario: simenv.Scenario) -> Iterator[gymnasium.Env[Any, Any]]:
    """``simenv.make`` of the Shelf scenario (TimeLimit, OrderEnforcing, RecordEpisode)."""
    made = simenv.make(scenario)
    yield made
    made.close()


@pytest.fixture
def isolated_registry(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A registry holding only what the test registers: no entry points, nothing left behind.

    simenv's registry and gymnasium's are process-wide; the test gets a copy of simenv's, entry
    points are reported as already loaded, and every gymnasium id the test adds is removed.
    """
    monkeypatch.setattr(registration, "_specs", {})
    monkeypatch.setattr(registration, "_entry_points_loaded", True)
    before = set(gymnasium.registry)
    yield
    for env_id in set(gymnasium.registry) - before:
        del gymnasium.registry[env_id]
