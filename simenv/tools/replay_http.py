"""Deprecated: moved to :mod:`simenv.tools.replay.http`; this alias is kept for one release."""

import warnings

from simenv.tools.replay.http import SECRET_HEADERS, SECRET_PARAMS, HttpCassette, HttpResponse

__all__ = ["SECRET_HEADERS", "SECRET_PARAMS", "HttpCassette", "HttpResponse"]

warnings.warn(
    "simenv.tools.replay_http moved to simenv.tools.replay.http; import it from there"
    " (the old path is kept for one release, see CHANGELOG.md)",
    DeprecationWarning,
    stacklevel=2,
)
