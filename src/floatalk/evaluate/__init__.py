"""Evaluation of talking-face videos: mouth opening (MediaPipe face mesh) and lip sync with the speech.

Importing this package never imports MediaPipe; it is loaded on the first measurement.
"""

from __future__ import annotations

from floatalk.evaluate.lipsync import (
    LipSyncReport,
    evaluate_lipsync,
    lag_correlations,
    lagged_pearson,
    load_reference_track,
    pearson,
    score_lipsync,
    speech_envelope,
)
from floatalk.evaluate.mouth import MouthTrack, MouthTracker, mouth_opening, track_mouth

__all__ = [
    "LipSyncReport",
    "MouthTrack",
    "MouthTracker",
    "evaluate_lipsync",
    "lag_correlations",
    "lagged_pearson",
    "load_reference_track",
    "mouth_opening",
    "pearson",
    "score_lipsync",
    "speech_envelope",
    "track_mouth",
]
