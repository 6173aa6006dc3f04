"""Deprecated: moved to :mod:`simenv.evaluation.viewer`; this alias is kept for one release."""

import warnings

from simenv.evaluation.viewer import render_transcripts, transcript_record

__all__ = ["render_transcripts", "transcript_record"]

warnings.warn(
    "simenv.viewer moved to simenv.evaluation.viewer; import it from there"
    " (the old path is kept for one release, see CHANGELOG.md)",
    DeprecationWarning,
    stacklevel=2,
)
