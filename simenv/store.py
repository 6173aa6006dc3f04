"""Deprecated: moved to :mod:`simenv.rollouts.store`; this alias is kept for one release."""

import warnings

from simenv.rollouts.store import EpisodeStore, job_key, read_episodes

__all__ = ["EpisodeStore", "job_key", "read_episodes"]

warnings.warn(
    "simenv.store moved to simenv.rollouts.store; import it from there"
    " (the old path is kept for one release, see CHANGELOG.md)",
    DeprecationWarning,
    stacklevel=2,
)
