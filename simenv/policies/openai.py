"""Deprecated: moved to :mod:`simenv.rollouts.policies.openai`; kept for one release."""

import warnings

from simenv.rollouts.policies.openai import OpenAI

__all__ = ["OpenAI"]

warnings.warn(
    "simenv.policies.openai moved to simenv.rollouts.policies.openai; import it from there"
    " (the old path is kept for one release, see CHANGELOG.md)",
    DeprecationWarning,
    stacklevel=2,
)
