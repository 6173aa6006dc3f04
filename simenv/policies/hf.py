"""Deprecated: moved to :mod:`simenv.rollouts.policies.hf`; this alias is kept for one release."""

import warnings

from simenv.rollouts.policies.hf import HF

__all__ = ["HF"]

warnings.warn(
    "simenv.policies.hf moved to simenv.rollouts.policies.hf; import it from there"
    " (the old path is kept for one release, see CHANGELOG.md)",
    DeprecationWarning,
    stacklevel=2,
)
