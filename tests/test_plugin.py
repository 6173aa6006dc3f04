"""The pytest plugin, driven through pytester as a user's project would use it."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from typing import Any

import pytest

pytest_plugins = ["pytester"]

SCENARIO = '''
import numpy as np
from simenv import Outcome, Sandbox, Scenario, Task, tool
from simenv.parsing import format_tool_call


class Jar(Sandbox):
    def setup(self, rng, task):
        self.beans = int(rng.integers(0, 50))


@tool(effect="write")
def add_beans(jar: Jar, n: int) -> int:
    """Add beans to the jar.

    Args:
        n: How many beans.
    """
    jar.beans += n
    return jar.beans


def reward(o: Outcome) -> float:
    return float(o.final.beans - o.initial.beans == o.task.data["n"])


def oracle(task, jar):
    return [format_tool_call("add_beans", {"n": task.data["n"]}), "Done."]


SCENARIO = Scenario(
    id="user/Jar-v1", system_prompt="Fill the jar.", tools=[add_beans],
    tasks=[Task(f"t{i}", f"Add {i + 1} beans.", data={"n": i + 1}) for i in range(4)],
    sandbox=Jar, reward=REWARD, evaluate=reward, oracle=oracle, max_turns=3,
)
'''

CONTRACT = """
def test_contract(scenario_id, simenv_check):
    simenv_check(scenario_id)
"""


def _project(pytester: pytest.Pytester, reward: str = "reward") -> None:
    pytester.makepyfile(jar_scenario=SCENARIO.replace("REWARD", reward))
    pytester.makepyfile(test_contract=CONTRACT)


def test_each_check_is_a_named_item_and_passes(pytester: pytest.Pytester) -> None:
    _project(pytester)
    result = pytester.runpytest("--simenv-scenarios=jar_scenario.py", "--simenv-fast", "-v")
    result.assert_outcomes(passed=9, skipped=1)  # replay is skipped: no cassette
    result.stdout.fnmatch_lines(
        ["simenv: seed=0, docker=*", "*test_contract*jar_scenario.py-determinism* PASSED*"]
    )


def test_a_broken_scenario_fails_with_the_check_and_reproduction(
    pytester: pytest.Pytester,
) -> None:
    _project(pytester, reward="lambda o: 1.0")
    result = pytester.runpytest("--simenv-scenarios=jar_scenario.py", "--simenv-checks=reward")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*do-nothing agent earned 1.0*", "*reproduce*"])


def test_ini_twins_and_seed_header(pytester: pytest.Pytester) -> None:
    _project(pytester)
    pytester.makeini(
        textwrap.dedent(
            """
            [pytest]
            simenv_scenarios = jar_scenario.py
            simenv_checks = api, determinism
            simenv_seed = 11
            simenv_fast = true
            """
        )
    )
    result = pytester.runpytest("-v")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["simenv: seed=11*"])


def test_docker_marker_skips_with_reason(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.simenv_docker
        def test_needs_docker():
            pass
        """
    )
    result = pytester.runpytest("--simenv-docker=skip", "-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*--simenv-docker=skip*"])


def test_fixtures_build_and_close_envs(pytester: pytest.Pytester) -> None:
    _project(pytester)
    pytester.makepyfile(
        test_fixtures="""
        import simenv

        def test_oracle(make_env, oracle_policy, scripted_policy, simenv_seed):
            env = make_env("jar_scenario.py")
            episode = simenv.rollout(env, oracle_policy, seed=simenv_seed, task_id="t1")
            assert episode.reward == 1.0
            assert simenv.rollout(env, scripted_policy(["no"]), seed=1).reward == 0.0
        """
    )
    result = pytester.runpytest("test_fixtures.py", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


def test_bad_docker_option_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nsimenv_docker = sometimes\n")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR


# ----------------------------------------------------------------------------- Docker modes
DOCKER_TEST = """
import pytest

@pytest.mark.simenv_docker
def test_needs_docker():
    pass

def test_plain():
    pass
"""


@pytest.fixture
def no_engine(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> Iterator[None]:
    """``DOCKER_HOST`` points at a socket nobody listens on (the probe is cached: cleared)."""
    from simenv.testing import plugin

    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path / 'no-engine.sock'}")
    monkeypatch.delenv("SIMENV_REQUIRE_DOCKER", raising=False)
    plugin._docker_available.cache_clear()
    yield
    plugin._docker_available.cache_clear()


@pytest.mark.usefixtures("no_engine")
def test_auto_skips_docker_tests_without_an_engine(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(DOCKER_TEST)
    result = pytester.runpytest("-rs")  # auto is the default
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(
        ["simenv: seed=0, docker=absent (auto)", "*no Docker engine could be reached*"]
    )


@pytest.mark.usefixtures("no_engine")
def test_require_fails_docker_tests_without_an_engine(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(DOCKER_TEST)
    result = pytester.runpytest("--simenv-docker=require")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*--simenv-docker=require but no Docker engine*"])


@pytest.mark.usefixtures("no_engine")
def test_simenv_require_docker_turns_auto_into_require(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SIMENV_REQUIRE_DOCKER", "1")
    pytester.makepyfile(DOCKER_TEST)
    result = pytester.runpytest()
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        ["simenv: seed=0, docker=absent (require)", "*--simenv-docker=require but no Docker*"]
    )
    # An explicit choice still wins over the environment variable.
    result = pytester.runpytest("--simenv-docker=skip")
    result.assert_outcomes(passed=1, skipped=1)


def test_auto_and_require_run_docker_tests_with_an_engine(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    from simenv.testing import plugin

    monkeypatch.delenv("SIMENV_REQUIRE_DOCKER", raising=False)
    plugin._docker_available.cache_clear()
    if not plugin._docker_available():
        pytest.fail("this test needs the Docker engine that CI starts (.ci/run)")
    pytester.makepyfile(DOCKER_TEST)
    for mode in ("auto", "require"):
        result = pytester.runpytest(f"--simenv-docker={mode}")
        result.assert_outcomes(passed=2)
        result.stdout.fnmatch_lines([f"simenv: seed=0, docker=available ({mode})"])
