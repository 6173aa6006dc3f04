"""Deprecated: moved to :mod:`simenv.rollouts.policies.scripted`; kept for one release."""

import warnings

from simenv.rollouts.policies.scripted import (
    FINAL_ANSWER,
    Null,
    Oracle,
    Random,
    Scripted,
    from_string,
    random_value,
)

__all__ = ["FINAL_ANSWER", "Null", "Oracle", "Random", "Scripted", "from_string", "random_value"]

warnings.warn(
    "simenv.policies.scripted moved to simenv.rollouts.policies.scripted; import it from there"
    " (the old path is kept for one release, see CHANGELOG.md)",
    DeprecationWarning,
    stacklevel=2,
)
