"""In CI, a skipped test is a failure unless it is declared here (loaded by tests/conftest.py).

A suite that skips what it cannot run passes without proving anything: a browser that failed to
install, a Docker engine that did not start or a wheel that does not import would each turn a
suite of tests into a line of "s". Under ``CI=true`` (``.ci/run`` exports it) every skipped or
xfailed test, collection skips included, that :data:`ALLOWED_SKIPS` does not name makes the run
fail (exit status 1), and the terminal summary lists them with their reasons. Outside CI the same
list is printed and the exit status is left alone.

The rule is tested with pytester in tests/test_ci_skips.py.
"""

from __future__ import annotations

import os

import pytest

__all__ = ["ALLOWED_SKIPS", "SkipRule", "allowed", "in_ci", "pytest_configure"]

ALLOWED_SKIPS: dict[str, str] = {
    # "tests/test_file.py::test_name": "why skipping it in CI proves nothing is lost",
    # A key names a test id or a prefix of ids (every parametrized case of a test). Keep this
    # list short: a test that cannot run in CI should be restructured so it does not generate
    # the case, not allowed to skip.
}
"""Test ids (or id prefixes) that may skip in CI, each with the reason it is acceptable."""


def in_ci() -> bool:
    """Whether the environment says this is a CI run (``CI=true``, ``1`` or ``yes``)."""
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def allowed(nodeid: str) -> bool:
    """Whether :data:`ALLOWED_SKIPS` names this test id (or a prefix of it)."""
    return any(nodeid == key or nodeid.startswith((f"{key}[", f"{key}::")) for key in ALLOWED_SKIPS)


def _reason(report: pytest.CollectReport | pytest.TestReport) -> str:
    if hasattr(report, "wasxfail"):
        return f"xfail {report.wasxfail}".strip()
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


class SkipRule:
    """The plugin: collects the skips the list does not allow, then judges the session."""

    def __init__(self) -> None:
        self.skipped: list[tuple[str, str]] = []

    def _record(self, report: pytest.CollectReport | pytest.TestReport) -> None:
        if report.skipped and not allowed(report.nodeid):
            self.skipped.append((report.nodeid, _reason(report)))

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """A test skipped in setup or call (``pytest.skip``, ``skipif``, a fixture's skip)."""
        self._record(report)

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        """A module or class skipped at collection (``pytest.importorskip``)."""
        self._record(report)

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        """Under CI, unexpected skips turn a passing run into a failing one."""
        passing = (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED)
        if in_ci() and self.skipped and exitstatus in passing:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        """Name every skipped test that the list does not allow, and what CI makes of it."""
        if not self.skipped:
            return
        verdict = "CI=true: the run fails" if in_ci() else "not in CI: reported only"
        terminalreporter.section(f"skips outside ALLOWED_SKIPS ({verdict})", sep="=")
        for nodeid, reason in self.skipped:
            terminalreporter.line(f"SKIPPED {nodeid}: {reason}")
        terminalreporter.line(
            f"{len(self.skipped)} skipped; in CI a skip is a failure unless tests/ci_skips.py's "
            "ALLOWED_SKIPS names the test with a reason (or the test stops generating the case)"
        )


def pytest_configure(config: pytest.Config) -> None:
    """Register the rule for this session."""
    config.pluginmanager.register(SkipRule(), "simenv-ci-skips")
