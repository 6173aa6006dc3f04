"""Deprecated: moved to :mod:`simenv.tools.replay.standin`; this alias is kept for one release."""

import warnings

from simenv.tools.replay.standin import JSONHandler, serve

__all__ = ["JSONHandler", "serve"]

warnings.warn(
    "simenv.testing.http moved to simenv.tools.replay.standin; import it from there"
    " (the old path is kept for one release, see CHANGELOG.md)",
    DeprecationWarning,
    stacklevel=2,
)
