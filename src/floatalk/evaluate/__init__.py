"""Evaluation of talking-face videos: mouth opening (MediaPipe face mesh) and lip sync with the speech,
identity against the source portrait (dlib face descriptor), and lip sync of a model on the held-out
clips of a synthetic dataset.

Importing this package never imports MediaPipe or dlib; they are loaded on the first measurement.
"""

from __future__ import annotations

from floatalk.evaluate.identity import (
    SAME_PERSON_THRESHOLD,
    FaceDescriber,
    IdentityReport,
    evaluate_identity,
    identity_distance,
    resize_ceiling,
)
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
from floatalk.evaluate.synthetic import (
    SyntheticClipScore,
    SyntheticLipSyncReport,
    evaluate_synthetic_lipsync,
)

__all__ = [
    "SAME_PERSON_THRESHOLD",
    "FaceDescriber",
    "IdentityReport",
    "LipSyncReport",
    "MouthTrack",
    "MouthTracker",
    "SyntheticClipScore",
    "SyntheticLipSyncReport",
    "evaluate_identity",
    "evaluate_lipsync",
    "evaluate_synthetic_lipsync",
    "identity_distance",
    "lag_correlations",
    "lagged_pearson",
    "load_reference_track",
    "mouth_opening",
    "pearson",
    "resize_ceiling",
    "score_lipsync",
    "speech_envelope",
    "track_mouth",
]
