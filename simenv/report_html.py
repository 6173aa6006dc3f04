"""Deprecated: moved to :mod:`simenv.evaluation.report`; this alias is kept for one release."""

import warnings

from simenv.evaluation.report import render_report

__all__ = ["render_report"]

warnings.warn(
    "simenv.report_html moved to simenv.evaluation.report; import it from there"
    " (the old path is kept for one release, see CHANGELOG.md)",
    DeprecationWarning,
    stacklevel=2,
)
