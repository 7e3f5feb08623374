"""Evaluation of talking-face videos: mouth opening (MediaPipe face mesh) and lip sync with the speech,
identity against the source portrait (dlib face descriptor), lip sync of a model on the held-out
clips of a synthetic dataset, and the paper's Fréchet distances (frechet.py): FID on Inception
features from a local weights file (fid.py), E-FID / P-FID on the shipped face landmarker's
blendshapes and head pose (face_params.py).

Importing this package never imports MediaPipe or dlib; they are loaded on the first measurement.
"""

from __future__ import annotations

from floatalk.evaluate.face_params import FaceParameters, FaceParameterTracker, face_parameter_distances
from floatalk.evaluate.frechet import frechet_distance, frechet_distance_from_stats, gaussian_stats
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
    "FaceParameterTracker",
    "FaceParameters",
    "IdentityReport",
    "LipSyncReport",
    "MouthTrack",
    "MouthTracker",
    "SyntheticClipScore",
    "SyntheticLipSyncReport",
    "evaluate_identity",
    "evaluate_lipsync",
    "evaluate_synthetic_lipsync",
    "face_parameter_distances",
    "frechet_distance",
    "frechet_distance_from_stats",
    "gaussian_stats",
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
