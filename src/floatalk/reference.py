"""Driving signals from a reference: head pose and frame-wise emotion for `--pose-from` / `--emotion-from`.

A reference video is read at the model's 25 fps; the face of its first frame (the largest, or
`face_index`) fixes one crop window, the same crop `floatalk generate` makes of a portrait, and every
frame is cut with it at the model's size, so that the measures see what they saw in training
(data/driving.py measures prepared clips, which are such crops):

* head pose (T, 6): MediaPipe's face landmarker (yaw, pitch, roll in degrees, x, y, z), frames
  without a face interpolated; or a saved track, a ``.npy`` file holding a (T, 6) array at 25 fps;
* emotion (T, 7): the fer facial-expression model's probabilities, FLOAT's label order.

Pose retargeting (`retarget_pose`): the generated head makes the reference's *movements* from the
portrait's own pose, p(t) = p_portrait + s (p_ref(t) - p_ref(0)), so a reference filmed from another
angle does not turn the portrait's head to that angle; the model's condition is the displacement
s (p_ref(t) - p_ref(0)) itself. Tracks shorter than the speech hold their last value; longer ones
are cut.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .errors import InputError

__all__ = [
    "POSE_DIM",
    "fit_length",
    "portrait_pose",
    "reference_emotion",
    "reference_frames",
    "reference_pose",
    "retarget_pose",
]

#: Channels of a head-pose track.
POSE_DIM = 6


def reference_frames(
    path: str | os.PathLike, size: int, fps: float = 25.0, face_index: int | None = None, crop: bool = True
) -> np.ndarray:
    """The reference video's frames at `fps`, cut with its first face's crop: (T, size, size, 3) uint8."""
    from .face import crop_face, select_face
    from .io.image import image_to_tensor
    from .io.video_reader import VideoReader

    frames = []
    with VideoReader(path, errors="raise") as video:
        window = None
        for _, frame in video.resampled(fps):
            rgb = frame.rgb()
            if crop:
                if window is None:
                    window = select_face(rgb, face_index)
                frames.append(crop_face(rgb, window, size=size))
            else:
                tensor = image_to_tensor(rgb, size)  # (1, 3, size, size) in [-1, 1]
                frames.append(((tensor[0].permute(1, 2, 0) + 1) * 127.5).round().clamp(0, 255).byte().numpy())
    if not frames:
        raise InputError(f"the reference video {path} has no frames")
    return np.stack(frames)


def _is_track_file(path: Path) -> bool:
    return path.suffix.lower() == ".npy"


def reference_pose(
    path: str | os.PathLike, size: int, fps: float = 25.0, face_index: int | None = None
) -> np.ndarray:
    """(T, 6) head pose of a reference video (measured), or of a saved ``.npy`` track (as stored)."""
    source = Path(path).expanduser()
    if not source.is_file():
        raise InputError(f"pose reference not found: {source}")
    if _is_track_file(source):
        try:
            track = np.load(source, allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise InputError(
                f"cannot read the pose track {source} ({exc}); save a (T, 6) float array"
            ) from None
        if track.ndim != 2 or track.shape[1] != POSE_DIM or len(track) < 1 or not np.isfinite(track).all():
            raise InputError(f"pose track {source} must be a finite (frames, 6) array, got {track.shape}")
        return track.astype(np.float32)
    from .data.driving import head_pose_track

    return head_pose_track(reference_frames(source, size, fps, face_index), fps, what=f"the video {source}")


def reference_emotion(
    path: str | os.PathLike, size: int, fps: float = 25.0, face_index: int | None = None
) -> np.ndarray:
    """(T, 7) facial-expression probabilities of a reference video's frames (FLOAT's label order)."""
    from .data.driving import image_emotion_track

    source = Path(path).expanduser()
    if not source.is_file():
        raise InputError(f"emotion reference not found: {source}")
    return image_emotion_track(reference_frames(source, size, fps, face_index))


def portrait_pose(image: np.ndarray) -> np.ndarray:
    """(6,) head pose of the portrait as the model sees it (uint8 (S, S, 3))."""
    from .data.driving import head_pose_track

    return head_pose_track(image[None], what="the portrait")[0]


def retarget_pose(reference: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """The reference's movements as the pose condition: scale (p_ref(t) - p_ref(0)), (T, 6).

    The condition is the head's displacement from the source frame's pose (FMTConfig.pose_dim), so
    the portrait makes the reference's movements from its own pose, whatever angle the reference was
    filmed from; a still head is all zeros. The absolute pose this asks for is the portrait's own
    (`portrait_pose`) plus this track.
    """
    reference = np.asarray(reference, dtype=np.float32)
    return (scale * (reference - reference[:1])).astype(np.float32)


def fit_length(track: np.ndarray, num_frames: int) -> np.ndarray:
    """Cut a (T', C) track to `num_frames` rows, or hold its last row to reach them."""
    if len(track) >= num_frames:
        return track[:num_frames]
    return np.concatenate([track, np.repeat(track[-1:], num_frames - len(track), axis=0)])
