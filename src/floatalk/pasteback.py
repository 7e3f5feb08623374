"""Paste-back: generated square frames returned into the photo they were cropped from (issue 16).

The crop (:mod:`floatalk.face.crop`) is a square window of the photo, possibly reaching outside
it. Each generated frame (S x S) is resized to the window's side and put back through the inverse
of the crop, blended with a feathered mask:

    m(u, v) = s(d(u, v) / f)     d: distance in pixels to the nearest edge of the window, f: the
                                 feather width (a fraction of the side), s: smoothstep clamped to [0, 1]
    out     = m (frame + c (1 - m)) + (1 - m) photo     inside the window and the photo
    out     = photo                                     everywhere else (the very same pixels)

c is a colour correction: the per-channel mean difference between the photo and the frame over the
feather ring (0 < m < 1), so that the frame meets the photo without a colour step; it fades to 0
towards the window's centre. Parts of the window outside the photo (a face near the border) are
never shown: only the window's intersection with the photo is written. Output dimensions are the
photo's, cut to even numbers (H.264), by dropping the last row / column when odd.

Pure array code: no I/O, no model.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .errors import InputError
from .face.crop import CropWindow

__all__ = ["PasteBack", "seam_step"]


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


@dataclass
class PasteBack:
    """Put frames back into `photo` ((H, W, 3) uint8) at the crop `window`.

    Attributes:
        feather: width of the blend ramp as a fraction of the window's side (0 < feather <= 0.5).
        color_match: correct the frame's mean colour on the ramp to the photo's.
    """

    photo: np.ndarray
    window: CropWindow
    feather: float = 0.1
    color_match: bool = True
    _rows: slice = field(init=False, repr=False)
    _cols: slice = field(init=False, repr=False)
    _mask: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        photo = np.asarray(self.photo)
        if photo.ndim != 3 or photo.shape[2] != 3 or photo.dtype != np.uint8:
            raise InputError(f"paste-back needs an (H, W, 3) uint8 photo, got {photo.dtype} {photo.shape}")
        if not 0.0 < self.feather <= 0.5:
            raise InputError(f"paste-back feather must be in (0, 0.5], got {self.feather}")
        h, w = photo.shape[:2]
        win = self.window
        top, left = max(win.top, 0), max(win.left, 0)
        bottom, right = min(win.bottom, h), min(win.right, w)
        if top >= bottom or left >= right:
            raise InputError("the crop window does not overlap the photo; nothing to paste back")
        self.photo = photo
        self._rows, self._cols = slice(top, bottom), slice(left, right)
        # distance of each pixel centre of the window to its nearest edge, in pixels
        v = np.arange(top, bottom) - win.top + 0.5
        u = np.arange(left, right) - win.left + 0.5
        dv = np.minimum(v, win.side - v)[:, None]
        du = np.minimum(u, win.side - u)[None, :]
        ramp = self.feather * win.side
        self._mask = _smoothstep(np.minimum(dv, du) / ramp).astype(np.float32)  # (h_r, w_r)
        # per-frame constants of the blend  out = m part + m (1 - m) c + (1 - m) photo
        m = self._mask[..., None]
        self._under = photo[self._rows, self._cols].astype(np.float32)
        self._background = (1.0 - m) * self._under
        self._fade = m * (1.0 - m)
        ring = np.nonzero((self._mask > 0.0) & (self._mask < 1.0))
        step = max(1, ring[0].size // 20000)  # a subsample of the ring is enough for a mean colour
        self._ring = (ring[0][::step], ring[1][::step])

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) of the output: the photo's, cut to even numbers."""
        h, w = self.photo.shape[:2]
        return h - h % 2, w - w % 2

    @property
    def mask(self) -> np.ndarray:
        """The blend weight of the frame over the window's part inside the photo, (h_r, w_r)."""
        return self._mask

    def region(self) -> tuple[slice, slice]:
        """(rows, columns) of the photo that paste-back may change."""
        return self._rows, self._cols

    def paste(self, frame: np.ndarray) -> np.ndarray:
        """One generated frame (S, S, 3) uint8 -> the photo with it blended in, (H', W', 3) uint8."""
        frame = np.asarray(frame)
        if frame.ndim != 3 or frame.shape[0] != frame.shape[1] or frame.shape[2] != 3:
            raise InputError(f"paste-back needs square (S, S, 3) frames, got {frame.shape}")
        win = self.window
        if frame.shape[0] != win.side:
            import cv2

            frame = cv2.resize(frame, (win.side, win.side), interpolation=cv2.INTER_CUBIC)
        rows, cols = self._rows, self._cols
        part = frame[rows.start - win.top : rows.stop - win.top, cols.start - win.left : cols.stop - win.left]
        part = part.astype(np.float32)
        blend = self._mask[..., None] * part
        blend += self._background
        if self.color_match and self._ring[0].size:
            offset = (self._under[self._ring] - part[self._ring]).mean(axis=0)  # (3,)
            blend += self._fade * offset
        out = self.photo.copy()
        np.rint(blend, out=blend)
        out[rows, cols] = np.clip(blend, 0, 255).astype(np.uint8)
        h, w = self.size
        return out[:h, :w]


def seam_step(image: np.ndarray, mask: np.ndarray, rows: slice, cols: slice) -> tuple[float, float]:
    """(mean absolute colour step between neighbouring pixels on the blend's outer boundary, the same
    over the whole image): the seam measure of issue 16. The boundary is where the mask turns from 0
    (photo) to > 0, measured across (horizontal and vertical neighbours), in the image's own units."""
    img = image.astype(np.float32)
    full = np.zeros(img.shape[:2], bool)
    full[rows, cols] = mask > 0
    steps_x = np.abs(np.diff(img, axis=1)).mean(axis=2)  # (H, W-1)
    steps_y = np.abs(np.diff(img, axis=0)).mean(axis=2)  # (H-1, W)
    edge_x = full[:, 1:] != full[:, :-1]
    edge_y = full[1:, :] != full[:-1, :]
    boundary = np.concatenate([steps_x[edge_x], steps_y[edge_y]])
    overall = np.concatenate([steps_x.ravel(), steps_y.ravel()])
    return float(boundary.mean()) if boundary.size else 0.0, float(overall.mean())
