"""Deprecated: moved to :mod:`simenv.tools.sqlite.results`; this alias is kept for one release."""

import warnings

from simenv.tools.sqlite.results import QueryResult, format_table, is_ordered, same_rows

__all__ = ["QueryResult", "format_table", "is_ordered", "same_rows"]

warnings.warn(
    "simenv.tools.resultset moved to simenv.tools.sqlite.results; import it from there"
    " (the old path is kept for one release, see CHANGELOG.md)",
    DeprecationWarning,
    stacklevel=2,
)
