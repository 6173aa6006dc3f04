"""Deprecated: moved to :mod:`simenv.evaluation.charts`; this alias is kept for one release."""

import warnings

from simenv.evaluation.charts import PALETTE, bar_chart, histogram, line_chart, task_bars

__all__ = ["PALETTE", "bar_chart", "histogram", "line_chart", "task_bars"]

warnings.warn(
    "simenv.charts moved to simenv.evaluation.charts; import it from there"
    " (the old path is kept for one release, see CHANGELOG.md)",
    DeprecationWarning,
    stacklevel=2,
)
