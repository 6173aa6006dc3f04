"""Deprecated: moved to :mod:`simenv.rollouts.policies.base`; this alias is kept for one release."""

import warnings

from simenv.rollouts.policies.base import Conversation, Policy

__all__ = ["Conversation", "Policy"]

warnings.warn(
    "simenv.policies.base moved to simenv.rollouts.policies.base; import it from there"
    " (the old path is kept for one release, see CHANGELOG.md)",
    DeprecationWarning,
    stacklevel=2,
)
