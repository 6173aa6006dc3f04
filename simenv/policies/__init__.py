"""Deprecated: moved to :mod:`simenv.rollouts.policies`; this alias is kept for one release."""

import warnings

from simenv.rollouts.policies import (
    HF,
    Conversation,
    Null,
    OpenAI,
    Oracle,
    Policy,
    Random,
    Scripted,
    from_string,
)

__all__ = [
    "HF",
    "Conversation",
    "Null",
    "OpenAI",
    "Oracle",
    "Policy",
    "Random",
    "Scripted",
    "from_string",
]

warnings.warn(
    "simenv.policies moved to simenv.rollouts.policies; import it from there"
    " (the old path is kept for one release, see CHANGELOG.md)",
    DeprecationWarning,
    stacklevel=2,
)
