"""Face detection and FLOAT's automatic portrait crop.

Importing this package never imports MediaPipe; the optional detector is loaded on the first call to
:func:`detect_faces` / :func:`crop_portrait` (install it with ``pip install 'floatalk[face]'``).
:func:`crop_face` and :func:`crop_window` are pure geometry and need no detector.

Example:
    >>> import numpy as np
    >>> from PIL import Image
    >>> from floatalk.face import crop_portrait
    >>> photo = np.asarray(Image.open("photo.jpg").convert("RGB"))  # doctest: +SKIP
    >>> portrait = crop_portrait(photo, size=512)  # (512, 512, 3) uint8  # doctest: +SKIP
"""

from __future__ import annotations

from floatalk.face.crop import (
    CROP_SCALE,
    FILL_MODES,
    CropWindow,
    FillMode,
    crop_face,
    crop_portrait,
    crop_window,
    select_face,
)
from floatalk.face.detector import FaceBox, close_detector, detect_faces, detector_name, is_available

__all__ = [
    "CROP_SCALE",
    "FILL_MODES",
    "CropWindow",
    "FaceBox",
    "FillMode",
    "close_detector",
    "crop_face",
    "crop_portrait",
    "crop_window",
    "detect_faces",
    "detector_name",
    "is_available",
    "select_face",
]
