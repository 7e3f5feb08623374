"""FLOAT's portrait crop: a square around the detected face, resized to the model's input size.

The geometry reproduces the official FLOAT preprocessing exactly (see :func:`crop_window`); only the
face detector differs (MediaPipe BlazeFace instead of S3FD, see :mod:`floatalk.face.detector`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from PIL import Image

from floatalk.errors import InputError
from floatalk.face.detector import FaceBox, check_rgb_image, detect_faces

__all__ = ["CROP_SCALE", "FILL_MODES", "CropWindow", "FillMode", "crop_face", "crop_portrait", "crop_window"]

#: Half side of the crop square, in units of the larger half side of the face box.
CROP_SCALE = 1.6
#: Ways to fill the parts of the crop square that fall outside the image.
FILL_MODES = ("black", "edge", "reflect")
FillMode = Literal["black", "edge", "reflect"]


@dataclass(frozen=True)
class CropWindow:
    """The crop square in pixel coordinates of the original image (it may extend beyond the image).

    Attributes:
        top: First row (inclusive; negative when the square starts above the image).
        left: First column (inclusive).
        side: Side length in pixels (``2 * bs``); rows ``[top, top + side)``, columns ``[left, left + side)``.
    """

    top: int
    left: int
    side: int

    @property
    def bottom(self) -> int:
        """Row after the last one (exclusive)."""
        return self.top + self.side

    @property
    def right(self) -> int:
        """Column after the last one (exclusive)."""
        return self.left + self.side

    def inside(self, height: int, width: int) -> bool:
        """Tell whether the square lies entirely inside a ``height`` x ``width`` image."""
        return self.top >= 0 and self.left >= 0 and self.bottom <= height and self.right <= width


def crop_window(box: FaceBox | Sequence[float]) -> CropWindow:
    """Compute FLOAT's crop square for a face box.

    The box is first truncated to integer pixels (``int(x)``, as the original does when it rescales
    the detection to the full image), then::

        bsy = int((y2 - y1) / 2)        bsx = int((x2 - x1) / 2)      # half sizes
        my  = int((y1 + y2) / 2)        mx  = int((x1 + x2) / 2)      # center
        bs  = int(max(bsy, bsx) * 1.6)

    and the crop is rows ``[my - bs, my + bs)`` x columns ``[mx - bs, mx + bs)``: a square of side
    ``2 * bs`` (3.2 times the larger half side of the box) centered on the box.

    Args:
        box: A :class:`FaceBox` or ``(x1, y1, x2, y2)`` in pixels of the original image.

    Returns:
        The crop square.

    Raises:
        InputError: If the box is degenerate (the square would be empty).
    """
    x1, y1, x2, y2 = (int(v) for v in (box.as_tuple() if isinstance(box, FaceBox) else tuple(box)[:4]))
    bsy = int((y2 - y1) / 2)
    bsx = int((x2 - x1) / 2)
    my = int((y1 + y2) / 2)
    mx = int((x1 + x2) / 2)
    bs = int(max(bsy, bsx) * CROP_SCALE)
    if bs < 1:
        raise InputError(f"face box {(x1, y1, x2, y2)} is too small to crop (needs at least 2 px per side)")
    return CropWindow(top=my - bs, left=mx - bs, side=2 * bs)


def _source_indices(start: int, length: int, size: int, fill: str) -> np.ndarray:
    """Map window coordinates ``start .. start + length - 1`` to image indices in ``[0, size)``."""
    idx = np.arange(start, start + length)
    if fill == "reflect" and size > 1:  # mirror about the border pixel: ... 2 1 | 0 1 2 ... n-1 | n-2 ...
        period = 2 * (size - 1)
        idx = np.mod(idx, period)
        return np.where(idx >= size, period - idx, idx)
    return np.clip(idx, 0, size - 1)  # edge (and the in-image part for black)


def _extract(image: np.ndarray, win: CropWindow, fill: str) -> np.ndarray:
    """Cut the window out of the image, filling what lies outside; only the window is materialised."""
    h, w = image.shape[:2]
    if win.inside(h, w):
        return image[win.top : win.bottom, win.left : win.right]
    if fill == "black":
        out = np.zeros((win.side, win.side, 3), np.uint8)
        r0, r1 = max(win.top, 0), min(win.bottom, h)
        c0, c1 = max(win.left, 0), min(win.right, w)
        if r0 < r1 and c0 < c1:
            out[r0 - win.top : r1 - win.top, c0 - win.left : c1 - win.left] = image[r0:r1, c0:c1]
        return out
    rows = _source_indices(win.top, win.side, h, fill)
    cols = _source_indices(win.left, win.side, w, fill)
    r_lo, c_lo = int(rows.min()), int(cols.min())
    sub = image[r_lo : int(rows.max()) + 1, c_lo : int(cols.max()) + 1]  # a view: no full-image copy
    return sub[np.ix_(rows - r_lo, cols - c_lo)]


def crop_face(
    image: np.ndarray, box: FaceBox | Sequence[float], size: int = 512, fill: FillMode = "black"
) -> np.ndarray:
    """Crop a square portrait around a face box, exactly as FLOAT does, and resize it.

    Geometry (see :func:`crop_window`): with the box truncated to integers, ``bs = int(max(int(h / 2),
    int(w / 2)) * 1.6)`` and center ``(my, mx) = (int((y1 + y2) / 2), int((x1 + x2) / 2))``, the crop
    is the square ``[my - bs, my + bs) x [mx - bs, mx + bs)`` of the image padded by ``bs`` on every
    side, i.e. parts of the square outside the image are filled. It is then resized to
    ``size`` x ``size`` with Pillow: a box (area) filter when shrinking, bicubic when enlarging (the
    original used OpenCV's INTER_AREA / INTER_CUBIC but picked between them from the *detection*
    resize factor, a quirk not reproduced). Only the square itself is materialised, so cropping a huge
    photo stays cheap.

    Args:
        image: ``(H, W, 3)`` ``uint8`` RGB array.
        box: Face box (:class:`FaceBox` or ``(x1, y1, x2, y2)``) in pixels of ``image``.
        size: Output side in pixels (FLOAT uses 512).
        fill: How to fill the parts of the square outside the image: ``"black"`` (constant 0; what the
            original FLOAT code does), ``"edge"`` (replicate the border pixels) or ``"reflect"`` (mirror
            the image about its border pixels). ``"edge"`` and ``"reflect"`` avoid black bars for
            close-up photos where the face nearly fills the frame.

    Returns:
        ``(size, size, 3)`` ``uint8`` RGB array (a new array, never a view of ``image``).

    Raises:
        InputError: On a malformed image, an unknown ``fill``, a non-positive ``size`` or a degenerate box.
    """
    image = check_rgb_image(image)
    if fill not in FILL_MODES:
        raise InputError(f"unknown fill {fill!r}; use one of {', '.join(FILL_MODES)}")
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise InputError(f"crop size must be a positive integer, got {size!r}")
    size = int(size)
    win = crop_window(box)
    crop = _extract(image, win, fill)
    if win.side == size:
        return np.array(crop, dtype=np.uint8, order="C", copy=True)
    resample = Image.Resampling.BOX if win.side > size else Image.Resampling.BICUBIC
    return np.asarray(Image.fromarray(np.ascontiguousarray(crop)).resize((size, size), resample)).copy()


def crop_portrait(
    image: np.ndarray, size: int = 512, face_index: int | None = None, fill: FillMode = "black"
) -> np.ndarray:
    """Detect the face in a photo and crop FLOAT's square portrait around it.

    Args:
        image: ``(H, W, 3)`` ``uint8`` RGB array (any size; huge photos are fine).
        size: Output side in pixels.
        face_index: Which face to use when there are several, counting from 0 in order of decreasing
            box area; ``None`` (default) takes the largest face.
        fill: Outside-the-image fill, see :func:`crop_face` (``"black"`` is the original behaviour).

    Returns:
        ``(size, size, 3)`` ``uint8`` RGB array.

    Raises:
        InputError: If no face is found, ``face_index`` is out of range, MediaPipe is not installed, or an
            argument is malformed. The message is one line and names the fix (e.g. ``--no-crop``).
    """
    image = check_rgb_image(image)
    return crop_face(image, select_face(image, face_index), size=size, fill=fill)


def select_face(image: np.ndarray, face_index: int | None = None) -> FaceBox:
    """Detect the faces in a photo and return the box of the ``face_index``-th largest (default 0).

    Raises:
        InputError: If no face is found, ``face_index`` is out of range or malformed, or MediaPipe is not
            installed. The message is one line and names the fix (e.g. ``--no-crop``).
    """
    image = check_rgb_image(image)
    index = 0 if face_index is None else face_index
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or index < 0:
        raise InputError(f"face index must be a non-negative integer (0 = largest face), got {face_index!r}")
    faces = detect_faces(image)
    if not faces:
        raise InputError(
            "no face found in the image; pass --no-crop if it is already a cropped portrait "
            "(or use a photo with a clearly visible, roughly frontal face)"
        )
    if index >= len(faces):
        found = "1 face was" if len(faces) == 1 else f"{len(faces)} faces were"
        raise InputError(
            f"face index {index} is out of range: {found} found in the image "
            f"(valid: 0..{len(faces) - 1}, largest first)"
        )
    return faces[index]
