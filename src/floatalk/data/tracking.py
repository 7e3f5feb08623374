"""Face tracks over time for `floatalk prepare`: filling gaps, smoothing, facial component boxes.

Pure NumPy, no detector: :mod:`floatalk.data.prepare` feeds in per-frame detections and landmarks.

Boxes are ``(x0, y0, x1, y1)`` float arrays, one row per frame.

Facial component boxes (used by the stage-1 trainer's facial-component losses) are squares around the
eyes and the mouth computed from MediaPipe face mesh landmarks (468-point topology):

* ``left_eye_box``: the eye on the **left of the image** (the subject's right eye, MediaPipe's
  ``FACEMESH_RIGHT_EYE``); ``right_eye_box``: the eye on the right of the image. Each is a square
  centred on the eye contour's bounding box, of side ``EYE_BOX_SCALE`` x the contour's larger side
  (so it covers the eye and its lids, not the eyebrow).
* ``mouth_box``: a square centred on the outer lip contour's bounding box, of side
  ``MOUTH_BOX_SCALE`` x its larger side.
"""

from __future__ import annotations

import itertools

import numpy as np

__all__ = [
    "EYE_BOX_SCALE",
    "LEFT_EYE_LANDMARKS",
    "MOUTH_BOX_SCALE",
    "MOUTH_LANDMARKS",
    "RIGHT_EYE_LANDMARKS",
    "box_iou",
    "component_boxes",
    "coverage_mask",
    "fill_missing",
    "longest_run",
    "smooth_boxes",
    "template_component_boxes",
]

#: Side of an eye box, in units of the larger side of the eye contour's bounding box.
EYE_BOX_SCALE = 1.8
#: Side of the mouth box, in units of the larger side of the outer lip contour's bounding box.
MOUTH_BOX_SCALE = 1.4

# MediaPipe face mesh indices (the 468-point canonical face topology).
# Eye contour of the eye on the image's left (the subject's right eye, FACEMESH_RIGHT_EYE).
LEFT_EYE_LANDMARKS = (7, 33, 133, 144, 145, 153, 154, 155, 157, 158, 159, 160, 161, 163, 173, 246)
# Eye contour of the eye on the image's right (the subject's left eye, FACEMESH_LEFT_EYE).
RIGHT_EYE_LANDMARKS = (249, 263, 362, 373, 374, 380, 381, 382, 384, 385, 386, 387, 388, 390, 398, 466)
# Outer lip contour (the outer ring of FACEMESH_LIPS).
MOUTH_LANDMARKS = (0, 17, 37, 39, 40, 61, 84, 91, 146, 181, 185, 267, 269, 270, 291, 314, 321, 375, 405, 409)

# Component boxes relative to the face detector's box (centre offsets and side in units of the box's
# larger side), the mean over frames of real footage; used only when no landmarks are available.
_TEMPLATE = {
    "left_eye_box": (-0.19, -0.15, 0.28),
    "right_eye_box": (0.19, -0.15, 0.28),
    "mouth_box": (0.0, 0.22, 0.42),
}


def box_iou(a: np.ndarray | tuple[float, ...], b: np.ndarray | tuple[float, ...]) -> float:
    """Intersection over union of two ``(x0, y0, x1, y1)`` boxes (0 when either is empty)."""
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def coverage_mask(attempts: np.ndarray, hits: np.ndarray, num_frames: int) -> np.ndarray:
    """Which frames a face track covers, given detection attempts on some frames.

    A frame is covered if a detection on it found the face, or if it lies between two consecutive
    attempts that both found it (its box is then interpolated). Frames after a miss, up to the next
    attempt, are not covered; nor are frames after the last attempt.

    Args:
        attempts: Increasing frame indices where the detector ran.
        hits: Booleans, whether each attempt found the face.
        num_frames: Length of the track.

    Returns:
        ``(num_frames,)`` bool array.
    """
    covered = np.zeros(num_frames, bool)
    attempts = np.asarray(attempts, np.int64)
    hits = np.asarray(hits, bool)
    covered[attempts[hits]] = True
    for i in range(len(attempts) - 1):
        if hits[i] and hits[i + 1]:
            covered[attempts[i] : attempts[i + 1]] = True
    return covered


def longest_run(mask: np.ndarray) -> int:
    """Length of the longest run of True values in a 1-D bool array."""
    best = run = 0
    for v in np.asarray(mask, bool):
        run = run + 1 if v else 0
        best = max(best, run)
    return best


def fill_missing(values: np.ndarray, known: np.ndarray) -> np.ndarray:
    """Linearly interpolates rows of ``values`` (T, D) where ``known`` is False; holds them at the ends.

    Returns a float64 copy. With no known row at all, returns zeros.
    """
    values = np.asarray(values, np.float64)
    known = np.asarray(known, bool)
    out = np.zeros_like(values)
    idx = np.flatnonzero(known)
    if idx.size == 0:
        return out
    t = np.arange(values.shape[0])
    for d in range(values.shape[1]):
        out[:, d] = np.interp(t, idx, values[idx, d])
    return out


def _median_filter(x: np.ndarray, width: int) -> np.ndarray:
    half = width // 2
    if half < 1 or x.shape[0] < 3:
        return x.copy()
    padded = np.pad(x, half, mode="edge")
    windows = np.lib.stride_tricks.sliding_window_view(padded, width)
    return np.median(windows, axis=1)


def _line_fit(x: np.ndarray, at: np.ndarray, offset: int = 0) -> np.ndarray:
    """Least-squares line through ``x`` (at positions ``offset + 0 .. len(x) - 1``), evaluated at ``at``."""
    t = np.arange(x.shape[0], dtype=np.float64) + offset
    slope, intercept = np.polyfit(t, x, 1)
    return slope * at + intercept


def _moving_average(x: np.ndarray, width: int) -> np.ndarray:
    """Centred moving average; the first and last ``width // 2`` samples come from a line fitted to the
    first / last ``width`` samples (a first-order Savitzky-Golay filter), so constant motion is kept."""
    n, half = x.shape[0], width // 2
    if half < 1 or n < 3:
        return x.copy()
    if n <= width:
        return _line_fit(x, np.arange(n, dtype=np.float64))
    out = np.empty(n)
    out[half : n - half] = np.convolve(x, np.full(width, 1.0 / width), mode="valid")
    out[:half] = _line_fit(x[:width], np.arange(half, dtype=np.float64))
    out[n - half :] = _line_fit(x[n - width :], np.arange(n - half, n, dtype=np.float64), offset=n - width)
    return out


def smooth_boxes(boxes: np.ndarray, window: int, breaks: np.ndarray | None = None) -> np.ndarray:
    """Smooths a box track over time: a 5-frame median (drops single-frame outliers), then a centred
    moving average of ``window`` frames, each coordinate separately.

    Near the ends the average becomes a fitted line (first-order Savitzky-Golay), so a face moving at
    constant speed is not pulled back at the first and last frames. The track is smoothed piecewise
    between ``breaks`` (frame indices where a new, unrelated track starts, e.g. after a scene cut), so
    distinct shots are never blended.

    Args:
        boxes: ``(T, 4)`` boxes.
        window: Moving-average length in frames (made odd; 1 disables it).
        breaks: Optional increasing frame indices in ``(0, T)`` starting new pieces.

    Returns:
        ``(T, 4)`` float64 smoothed boxes.
    """
    boxes = np.asarray(boxes, np.float64)
    window = max(1, int(window) | 1)
    cuts = [0, *[int(b) for b in (breaks if breaks is not None else ()) if 0 < b < len(boxes)], len(boxes)]
    out = boxes.copy()
    for a, b in itertools.pairwise(cuts):
        if b - a < 2:
            continue
        for d in range(boxes.shape[1]):
            x = _median_filter(boxes[a:b, d], min(5, window))
            out[a:b, d] = _moving_average(x, window)
    return out


def _square(points: np.ndarray, scale: float) -> np.ndarray:
    lo, hi = points.min(axis=0), points.max(axis=0)
    cx, cy = (lo + hi) / 2
    half = scale * float(max(hi - lo)) / 2
    return np.array([cx - half, cy - half, cx + half, cy + half])


def component_boxes(landmarks: np.ndarray) -> dict[str, np.ndarray]:
    """Eye and mouth boxes from one face's mesh landmarks (see the module docstring).

    Args:
        landmarks: ``(468, 2)`` (or more points) pixel coordinates ``(x, y)``.

    Returns:
        ``{"left_eye_box", "right_eye_box", "mouth_box"}``, each a ``(4,)`` float64 ``x0, y0, x1, y1``.
    """
    pts = np.asarray(landmarks, np.float64)[:, :2]
    return {
        "left_eye_box": _square(pts[list(LEFT_EYE_LANDMARKS)], EYE_BOX_SCALE),
        "right_eye_box": _square(pts[list(RIGHT_EYE_LANDMARKS)], EYE_BOX_SCALE),
        "mouth_box": _square(pts[list(MOUTH_LANDMARKS)], MOUTH_BOX_SCALE),
    }


def template_component_boxes(face_boxes: np.ndarray) -> dict[str, np.ndarray]:
    """Rough component boxes placed at average positions inside face detector boxes (no landmarks).

    Args:
        face_boxes: ``(T, 4)`` face boxes.

    Returns:
        The three component tracks, each ``(T, 4)`` float64.
    """
    f = np.asarray(face_boxes, np.float64)
    cx, cy = (f[:, 0] + f[:, 2]) / 2, (f[:, 1] + f[:, 3]) / 2
    side = np.maximum(f[:, 2] - f[:, 0], f[:, 3] - f[:, 1])
    out = {}
    for name, (dx, dy, s) in _TEMPLATE.items():
        x, y, h = cx + dx * side, cy + dy * side, s * side / 2
        out[name] = np.stack([x - h, y - h, x + h, y + h], axis=1)
    return out
