"""Shared fixtures (the Shelf scenario, its environment, a private registry, the Docker image).

Also loads the CI rule of tests/ci_skips.py: under ``CI=true`` a skipped test that its
``ALLOWED_SKIPS`` does not name fails the run.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import gymnasium
import pytest
from ci_skips import pytest_configure
from helpers import make_scenario

import simenv
from simenv import registration

__all__ = ["pytest_configure"]  # the CI skip rule (tests/ci_skips.py)


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


@pytest.fixture(scope="session")
def base_image() -> str:
    """simenv's Docker base image (built once, then cached by the engine).

    Skips without an engine or image, and fails instead when ``SIMENV_REQUIRE_DOCKER=1`` (CI).
    """
    from simenv.errors import InfraError
    from simenv.tools.docker import build_base_image

    try:
        return build_base_image()
    except InfraError as exc:
        if os.environ.get("SIMENV_REQUIRE_DOCKER") == "1":
            pytest.fail(f"SIMENV_REQUIRE_DOCKER=1 but the base image is missing: {exc}")
        pytest.skip(f"the base image is missing and cannot be built here: {exc}")
