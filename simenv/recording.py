"""Deprecated: moved to :mod:`simenv.rollouts.recording`; this alias is kept for one release."""

import warnings

from simenv.rollouts.recording import (
    CoverageReport,
    MissingCall,
    RecordReport,
    cassettes,
    coverage,
    record_scenario,
)

__all__ = [
    "CoverageReport",
    "MissingCall",
    "RecordReport",
    "cassettes",
    "coverage",
    "record_scenario",
]

warnings.warn(
    "simenv.recording moved to simenv.rollouts.recording; import it from there"
    " (the old path is kept for one release, see CHANGELOG.md)",
    DeprecationWarning,
    stacklevel=2,
)
