"""Check results and the per-scenario report."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from simenv.types import Action

__all__ = ["CheckResult", "Report", "Status"]

Status = Literal["pass", "fail", "warn", "skip"]


@dataclass
class CheckResult:
    """The outcome of one check on one scenario.

    Attributes:
        check: The check's name, e.g. ``determinism``.
        status: ``pass``, ``fail``, ``warn`` (worth a look, not a failure) or ``skip``.
        message: What was found; for a failure, what is wrong and how to fix it.
        task_id: The task a failure was seen on.
        seed: The episode seed of that failure.
        reproduction: A short action sequence that reproduces it after
            ``reset(seed=seed, options={"task_id": task_id})``.
        details: Numbers behind the verdict (counts, means ...).
    """

    check: str
    status: Status
    message: str
    task_id: str | None = None
    seed: int | None = None
    reproduction: list[Action] | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        """Whether this is a failure."""
        return self.status == "fail"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


@dataclass
class Report:
    """Every check result for one scenario.

    Attributes:
        scenario_id: The scenario checked.
        results: One result per check that ran.
        seconds: Wall time of the whole run.
    """

    scenario_id: str
    results: list[CheckResult] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """True when no check failed (warnings and skips are fine)."""
        return not any(r.failed for r in self.results)

    @property
    def failures(self) -> list[CheckResult]:
        """The failed checks."""
        return [r for r in self.results if r.failed]

    def __getitem__(self, check: str) -> CheckResult:
        for result in self.results:
            if result.check == check:
                return result
        raise KeyError(f"no check named {check!r} in this report")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "scenario_id": self.scenario_id,
            "ok": self.ok,
            "seconds": round(self.seconds, 3),
            "results": [r.to_dict() for r in self.results],
        }

    def to_json(self) -> str:
        """The report as JSON."""
        return json.dumps(self.to_dict(), indent=2, default=str)

    def summary(self) -> str:
        """Plain text: one line per check, then the details of each failure."""
        lines = [f"{self.scenario_id}: {'ok' if self.ok else 'FAILED'} ({self.seconds:.1f}s)"]
        for r in self.results:
            lines.append(f"  {r.status.upper():5} {r.check}: {r.message.splitlines()[0]}")
        for r in self.failures:
            lines.append(f"\n[{r.check}] {r.message}")
            if r.task_id is not None or r.seed is not None:
                lines.append(f"  task={r.task_id} seed={r.seed}")
            if r.reproduction:
                lines.append("  reproduce: reset(seed, task_id), then step each of:")
                lines.extend(f"    {json.dumps(a, default=str)[:300]}" for a in r.reproduction)
        return "\n".join(lines)
