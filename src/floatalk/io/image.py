"""Loading portrait images and turning them into model input tensors.

Decoding uses Pillow, so every format Pillow reads works (PNG, JPEG, WebP, BMP, TIFF, GIF, AVIF, ...).
Whatever the file holds, :func:`load_image` returns 8-bit sRGB-coded RGB pixels, upright:

* The EXIF orientation tag is applied (phone photos come out the way they are displayed).
* Only the first frame of animated/multi-page files (GIF, APNG, WebP, TIFF) is used.
* Transparency (alpha channel, or a transparent palette entry / colour key) is composited over a
  **white** background. Cut-out portraits are usually saved with transparent backgrounds, and white is
  the neutral studio backdrop; a black backdrop would merge with dark hair.
* 16-bit samples (``I;16`` and ``I`` grayscale, 16-bit RGB PNG) are scaled to 8 bits with
  ``round(v / 257)``, which maps 0..65535 onto 0..255 exactly. Pillow itself reads 16-bit RGB PNGs as
  8-bit RGB keeping the high byte, which differs from this by at most one level.
* ``I`` (32-bit integer) images are assumed to hold 16-bit samples, which is how Pillow represents
  16-bit grayscale from PNG and TIFF files; values outside 0..65535 are clipped.
* ``F`` (32-bit float) images are taken to lie in [0, 1] when no finite value exceeds 1, and in [0, 255]
  otherwise; NaNs become 0 and values are clipped.
* CMYK (e.g. print JPEGs), YCbCr, 1-bit and palette images are converted with Pillow's conversions.
* Embedded ICC profiles are ignored: pixel values are used as they are stored, as common training
  pipelines (Pillow, OpenCV) do.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from floatalk.errors import InputError
from floatalk.io._common import check_input_file, display_path, short_reason

__all__ = ["image_to_tensor", "load_image"]

_FORMATS_HINT = "give a PNG, JPEG, WebP, BMP, TIFF or GIF file"
_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I"})
_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})


def load_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Loads an image file as upright 8-bit RGB.

    See the module docstring for how orientation, transparency and bit depth are handled.

    Args:
        path: Path of the image file.

    Returns:
        A writable, C-contiguous ``uint8`` array of shape ``(H, W, 3)`` in RGB order.

    Raises:
        InputError: If the file is missing, a directory, empty, unreadable, not an image, corrupt or
            truncated, too large to decode safely, or in a colour mode that cannot be converted to RGB.
    """
    p = check_input_file(path, "image", _FORMATS_HINT)
    shown = display_path(path)
    try:
        im = Image.open(p)
    except UnidentifiedImageError:
        raise InputError(
            f"image {shown} could not be decoded (not an image or an unsupported format); {_FORMATS_HINT}"
        ) from None
    except Image.DecompressionBombError as e:
        raise InputError(f"image {shown} is too large to decode safely ({e}); downscale it first") from None
    except PermissionError:
        raise InputError(
            f"image file {shown} cannot be read (permission denied); fix its permissions"
        ) from None
    except Exception as e:  # Pillow plugins raise many types (SyntaxError, struct.error, ...) on bad headers.
        raise InputError(
            f"image {shown} is corrupt or truncated ({short_reason(e)}); re-export it as PNG or JPEG"
        ) from None

    with im:
        try:
            im.seek(0)
            im.load()
        except Image.DecompressionBombError as e:
            raise InputError(
                f"image {shown} is too large to decode safely ({e}); downscale it first"
            ) from None
        except Exception as e:
            raise InputError(
                f"image {shown} is corrupt or truncated ({short_reason(e)}); re-export it as PNG or JPEG"
            ) from None
        im = _apply_exif_orientation(im, shown)
        try:
            rgb = _to_rgb_array(im)
        except ValueError as e:
            raise InputError(
                f"image {shown} has colour mode {im.mode!r}, which cannot be converted to RGB "
                f"({short_reason(e)}); save it as an 8-bit RGB PNG or JPEG"
            ) from None
    return np.array(rgb, dtype=np.uint8, order="C")  # a writable copy, detached from Pillow's buffer


def image_to_tensor(img: np.ndarray, size: int) -> torch.Tensor:
    """Resizes an RGB image to ``size`` x ``size`` and maps it to a ``[-1, 1]`` tensor.

    Non-square images are squashed, not cropped; cropping the face is done by a separate module
    beforehand. Pure downscaling (neither side grows) uses Pillow's ``BOX`` filter (area averaging);
    any upscaling uses ``BICUBIC``. Pixel values map as ``(x / 255 - 0.5) / 0.5``.

    Args:
        img: ``uint8`` array of shape ``(H, W, 3)``, RGB (as returned by :func:`load_image`).
        size: Output side length in pixels.

    Returns:
        A ``float32`` tensor of shape ``(1, 3, size, size)`` with values in ``[-1, 1]``.

    Raises:
        TypeError: If ``img`` is not a ``uint8`` NumPy array.
        ValueError: If ``img`` is not ``(H, W, 3)`` or ``size`` is not positive.
    """
    if not isinstance(img, np.ndarray) or img.dtype != np.uint8:
        raise TypeError(f"image_to_tensor expects a uint8 numpy array, got {type(img).__name__}")
    if img.ndim != 3 or img.shape[2] != 3 or img.shape[0] == 0 or img.shape[1] == 0:
        raise ValueError(f"image_to_tensor expects shape (H, W, 3), got {img.shape}")
    if int(size) != size or size <= 0:
        raise ValueError(f"size must be a positive integer, got {size!r}")
    size = int(size)
    h, w = img.shape[:2]
    if (h, w) != (size, size):
        downscale = h >= size and w >= size
        resample = Image.Resampling.BOX if downscale else Image.Resampling.BICUBIC
        img = np.asarray(Image.fromarray(np.ascontiguousarray(img)).resize((size, size), resample))
    x = torch.from_numpy(np.array(img, dtype=np.uint8, copy=True)).permute(2, 0, 1).unsqueeze(0)
    x = x.to(torch.float32)
    return ((x / 255.0 - 0.5) / 0.5).contiguous()


def _apply_exif_orientation(im: Image.Image, shown: str) -> Image.Image:
    """Rotates/flips ``im`` as its EXIF orientation tag says; broken EXIF is ignored with a warning."""
    try:
        out = ImageOps.exif_transpose(im)
    except Exception as e:
        warnings.warn(
            f"image {shown}: ignoring unreadable EXIF orientation ({short_reason(e)})", stacklevel=3
        )
        return im
    return im if out is None else out


def _to_rgb_array(im: Image.Image) -> np.ndarray:
    """Converts a loaded Pillow image of any mode to an ``(H, W, 3)`` uint8 RGB array."""
    mode = im.mode
    if mode == "RGB":
        return np.asarray(im)
    if mode in _SIXTEEN_BIT_MODES:
        v = np.clip(np.asarray(im).astype(np.int64), 0, 65535)
        gray = ((v * 255 + 32767) // 65535).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if mode == "F":
        f = np.nan_to_num(np.asarray(im, dtype=np.float64), nan=0.0, posinf=255.0, neginf=0.0)
        finite_max = float(f.max()) if f.size else 0.0
        if finite_max <= 1.0:
            f = f * 255.0
        gray = np.clip(np.rint(f), 0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    has_alpha = mode in _ALPHA_MODES or (
        "transparency" in im.info and mode in {"P", "L", "RGB", "1", "I;16", "I"}
    )
    if has_alpha:
        rgba = np.asarray(im.convert("RGBA")).astype(np.uint32)
        alpha = rgba[:, :, 3:4]
        # Composite over white with integer rounding: c * a/255 + 255 * (1 - a/255).
        out = (rgba[:, :, :3] * alpha + 255 * (255 - alpha) + 127) // 255
        return out.astype(np.uint8)
    return np.asarray(im.convert("RGB"))
