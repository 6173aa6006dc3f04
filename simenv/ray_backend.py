"""Deprecated: moved to :mod:`simenv.rollouts.ray`; this alias is kept for one release."""

import warnings

from simenv.rollouts.ray import EnvWorker, RayPool

__all__ = ["EnvWorker", "RayPool"]

warnings.warn(
    "simenv.ray_backend moved to simenv.rollouts.ray; import it from there"
    " (the old path is kept for one release, see CHANGELOG.md)",
    DeprecationWarning,
    stacklevel=2,
)
