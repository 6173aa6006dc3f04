"""The CI rule of tests/ci_skips.py, run through pytester: in CI a skip is a failure."""

from __future__ import annotations

import ci_skips
import pytest

pytest_plugins = ["pytester"]

TESTS = """
import pytest

def test_runs():
    pass

def test_skipped():
    pytest.skip("the browser is not installed")

@pytest.mark.parametrize("n", [1, 2])
def test_allowed(n):
    pytest.skip("no GPU here")
"""


def _run(pytester: pytest.Pytester, *args: str, **files: str) -> pytest.RunResult:
    pytester.makeconftest("from ci_skips import pytest_configure")  # as tests/conftest.py does
    pytester.makepyfile(**(files or {"test_suite": TESTS}))
    return pytester.runpytest("-p", "no:cacheprovider", *args)


@pytest.fixture
def allow(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ci_skips, "ALLOWED_SKIPS", {"test_suite.py::test_allowed": "no GPU"})


def test_a_skipped_test_fails_the_run_in_ci(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, allow: None
) -> None:
    monkeypatch.setenv("CI", "true")
    result = _run(pytester)
    result.assert_outcomes(passed=1, skipped=3)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        [
            "*skips outside ALLOWED_SKIPS (CI=true: the run fails)*",
            "SKIPPED test_suite.py::test_skipped: the browser is not installed",
            "1 skipped; in CI a skip is a failure*",
        ]
    )
    assert "SKIPPED test_suite.py::test_allowed" not in result.stdout.str()


def test_allowed_skips_pass_in_ci(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, allow: None
) -> None:
    monkeypatch.setenv("CI", "true")
    result = _run(pytester, "-k", "not test_skipped")
    result.assert_outcomes(passed=1, skipped=2)
    assert result.ret == pytest.ExitCode.OK
    assert "ALLOWED_SKIPS" not in result.stdout.str()


def test_outside_ci_skips_are_only_reported(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CI", raising=False)
    result = _run(pytester)
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(
        ["*skips outside ALLOWED_SKIPS (not in CI: reported only)*", "3 skipped;*"]
    )


def test_a_module_skipped_at_collection_fails_the_run_in_ci(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CI", "true")
    result = _run(pytester, test_wheel='import pytest\npytest.importorskip("no_such_wheel")\n')
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["SKIPPED test_wheel.py: could not import 'no_such_wheel'*"])


def test_a_failing_run_keeps_its_status(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CI", "true")
    bad = (
        "import pytest\n\ndef test_f():\n    assert False\n\ndef test_s():\n    pytest.skip('x')\n"
    )
    result = _run(pytester, test_bad=bad)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(failed=1, skipped=1)
