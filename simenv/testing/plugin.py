"""The simenv pytest plugin: contract tests for your scenarios in a few lines.

Loaded automatically once simenv is installed (entry point ``pytest11``). A whole contract
test for every registered scenario::

    def test_contract(scenario_id, simenv_check):
        simenv_check(scenario_id)

Each (scenario, check) pair becomes its own test item, e.g.
``test_contract[support/Refunds-v1-determinism]``, so a failure names the check and the
scenario, and its message carries the task, seed and a reproduction.

Options (command line, with ini twins): ``--simenv-seed`` / ``simenv_seed``,
``--simenv-scenarios`` / ``simenv_scenarios`` (ids or paths; default: every registered one),
``--simenv-checks`` / ``simenv_checks``, ``--simenv-fast`` / ``simenv_fast``, and
``--simenv-docker=auto|require|skip`` / ``simenv_docker`` (``SIMENV_REQUIRE_DOCKER=1`` in the
environment turns the default ``auto`` into ``require``). Markers: ``simenv_docker`` (needs a
Docker engine) and ``simenv_slow``. Fixtures: ``make_env``, ``oracle_policy``,
``scripted_policy``, ``simenv_seed``, ``scenario_id`` and ``simenv_check``.

Nothing heavy is imported until a hook needs it.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest

__all__: list[str] = []

_DOCKER_CHOICES = ("auto", "require", "skip")


def pytest_addoption(parser: pytest.Parser) -> None:
    """Register the ``simenv`` option group and its ini twins."""
    group = parser.getgroup("simenv", "simenv environments")
    group.addoption("--simenv-seed", type=int, default=None, help="base seed of every episode")
    group.addoption(
        "--simenv-scenarios",
        default=None,
        help="comma-separated scenario ids or paths (default: every registered scenario)",
    )
    group.addoption(
        "--simenv-checks", default=None, help="comma-separated check names (default: all)"
    )
    group.addoption(
        "--simenv-fast", action="store_true", default=None, help="fewer tasks, seeds and fuzzing"
    )
    group.addoption(
        "--simenv-docker",
        choices=_DOCKER_CHOICES,
        default=None,
        help="tests marked simenv_docker: auto (skip without an engine), require, skip",
    )
    parser.addini("simenv_seed", "base seed of every episode", default="0")
    parser.addini("simenv_scenarios", "scenario ids or paths, comma-separated", default="")
    parser.addini("simenv_checks", "check names, comma-separated", default="")
    parser.addini("simenv_fast", "fewer tasks, seeds and fuzzing", type="bool", default=False)
    parser.addini("simenv_docker", "auto, require or skip", default="auto")


def _option(config: pytest.Config, name: str) -> Any:
    value = config.getoption(f"--simenv-{name}")
    if value is not None:
        return value
    value = config.getini(f"simenv_{name}")
    if name == "docker" and value == "auto" and os.environ.get("SIMENV_REQUIRE_DOCKER") == "1":
        return "require"  # CI: Docker tests must fail, not skip, without an engine
    return value


def _split(value: str) -> list[str]:
    return [item.strip() for item in value.replace("\n", ",").split(",") if item.strip()]


def pytest_configure(config: pytest.Config) -> None:
    """Register the markers and validate the docker option."""
    config.addinivalue_line("markers", "simenv_docker: the test needs a Docker engine")
    config.addinivalue_line("markers", "simenv_slow: a slow simenv test")
    if _option(config, "docker") not in _DOCKER_CHOICES:
        raise pytest.UsageError(f"simenv_docker must be one of {', '.join(_DOCKER_CHOICES)}")


@functools.cache
def _docker_available() -> bool:
    """Whether a Docker engine answers ``/_ping`` (a raw request: nothing left open)."""
    import os
    import socket

    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    try:
        if host.startswith("unix://"):
            family: int = socket.AF_UNIX
            address: Any = host.removeprefix("unix://")
        elif host.startswith("tcp://"):
            name, _, port = host.removeprefix("tcp://").partition(":")
            family, address = socket.AF_INET, (name, int(port or 2375))
        else:
            return False
        with socket.socket(family, socket.SOCK_STREAM) as connection:
            connection.settimeout(3)
            connection.connect(address)
            connection.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            return b"OK" in connection.recv(1024)
    except (OSError, ValueError):
        return False


def _scenario_ids(config: pytest.Config) -> list[str]:
    chosen = _split(str(_option(config, "scenarios") or ""))
    if chosen:
        return chosen
    import simenv

    return simenv.registry()


def pytest_report_header(config: pytest.Config) -> list[str]:
    """One line with the seed and what is available."""
    mode = _option(config, "docker")
    docker = "skipped" if mode == "skip" else ("available" if _docker_available() else "absent")
    return [f"simenv: seed={_option(config, 'seed')}, docker={docker} ({mode})"]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Fill ``scenario_id`` from the registry and ``simenv_check`` from the check table."""
    explicit = {
        name.strip()
        for marker in metafunc.definition.iter_markers("parametrize")
        for name in (
            marker.args[0].split(",") if isinstance(marker.args[0], str) else marker.args[0]
        )
    }
    if "scenario_id" in metafunc.fixturenames and "scenario_id" not in explicit:
        metafunc.parametrize("scenario_id", _scenario_ids(metafunc.config))
    if "simenv_check" in metafunc.fixturenames:
        from simenv.checks import CHECKS

        names = _split(str(_option(metafunc.config, "checks") or "")) or list(CHECKS)
        metafunc.parametrize("simenv_check", names, indirect=True)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip or keep ``simenv_docker`` tests according to ``--simenv-docker``."""
    mode = _option(config, "docker")
    docker_items = [i for i in items if i.get_closest_marker("simenv_docker")]
    if not docker_items or mode == "require":
        return
    if mode == "skip" or not _docker_available():
        reason = "--simenv-docker=skip" if mode == "skip" else "no Docker engine could be reached"
        for item in docker_items:
            item.add_marker(pytest.mark.skip(reason=reason))


def pytest_runtest_setup(item: pytest.Item) -> None:
    """With ``--simenv-docker=require``, a Docker test fails when no engine is there."""
    needs = item.get_closest_marker("simenv_docker") is not None
    if needs and _option(item.config, "docker") == "require" and not _docker_available():
        pytest.fail("--simenv-docker=require but no Docker engine could be reached")


@pytest.fixture
def simenv_seed(request: pytest.FixtureRequest) -> int:
    """The base seed (``--simenv-seed``)."""
    return int(_option(request.config, "seed"))


@pytest.fixture
def make_env(simenv_seed: int) -> Iterator[Callable[..., Any]]:
    """``make_env(id_or_scenario, **kwargs)``: like ``simenv.make``, closed after the test."""
    import simenv

    made: list[Any] = []

    def factory(scenario: Any, **kwargs: Any) -> Any:
        env = simenv.make(scenario, **kwargs)
        made.append(env)
        return env

    yield factory
    for env in made:
        env.close()


@pytest.fixture
def oracle_policy() -> Any:
    """The scenario's oracle as a policy."""
    from simenv.rollouts.policies import Oracle

    return Oracle()


@pytest.fixture
def scripted_policy() -> Callable[..., Any]:
    """``scripted_policy(actions)``: a policy that plays the given turns."""
    from simenv.rollouts.policies import Scripted

    return Scripted


@pytest.fixture
def simenv_check(request: pytest.FixtureRequest, simenv_seed: int) -> Callable[[Any], Any]:
    """``simenv_check(scenario)`` runs this item's check and fails with its report."""
    name = str(request.param)
    fast = bool(_option(request.config, "fast"))

    def run(target: Any) -> Any:
        from simenv.checks import check

        report = check(target, fast=fast, only=[name], seed=simenv_seed)
        result = report[name]
        if result.status == "fail":
            pytest.fail(report.summary(), pytrace=False)
        if result.status == "skip":
            pytest.skip(result.message)
        return result

    return run
