"""Deprecated: moved to :mod:`simenv.evaluation.tracking`; this alias is kept for one release."""

import warnings

from simenv.evaluation.tracking import MLflowLogger, default_tracking_uri, metric_name

__all__ = ["MLflowLogger", "default_tracking_uri", "metric_name"]

warnings.warn(
    "simenv.tracking moved to simenv.evaluation.tracking; import it from there"
    " (the old path is kept for one release, see CHANGELOG.md)",
    DeprecationWarning,
    stacklevel=2,
)
