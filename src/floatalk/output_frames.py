"""The last stage of a generation: from the model's square frames to the frames that are written.

    (n, S, S, 3) generated -> pasted back into the photo (floatalk.pasteback) or kept square
                           -> capped at --max-side (aspect ratio kept, even dimensions)
                           -> watermarked (floatalk.provenance.watermark)

Paste-back is the default when the face was cropped from a larger photo, i.e. when some of the
photo lies outside the crop window; --crop-only keeps the square, --paste-back forces it. Pure array
code around the two stages; the pipeline builds one `FrameFinisher` per generation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from .face.crop import CropWindow
from .options import GenerateOptions

__all__ = ["FrameFinisher", "PortraitCrop"]


@dataclass(frozen=True)
class PortraitCrop:
    """Where the model's input came from: the photo ((H, W, 3) uint8 RGB) and the crop window."""

    photo: np.ndarray
    window: CropWindow

    @property
    def from_larger_photo(self) -> bool:
        """Some of the photo lies outside the crop window."""
        h, w = self.photo.shape[:2]
        win = self.window
        return win.top > 0 or win.left > 0 or win.bottom < h or win.right < w


def _even_scaled(height: int, width: int, max_side: int | None) -> tuple[int, int, float]:
    """(height', width', factor): scaled so that the longer side is at most max_side, even numbers."""
    factor = 1.0 if max_side is None or max(height, width) <= max_side else max_side / max(height, width)
    h, w = max(2, round(height * factor)), max(2, round(width * factor))
    return h - h % 2, w - w % 2, factor


class FrameFinisher:
    """Generated (n, S, S, 3) uint8 batches -> the written (n, height, width, 3) uint8 batches.

    Args:
        crop: the photo and window the portrait was cut from (None: a prepared or uncropped input,
            which can only be kept square).
        size: S, the side of the generated frames.
        options: paste_back / crop_only / max_side / watermark / watermark_id are used.
    """

    def __init__(self, crop: PortraitCrop | None, size: int, options: GenerateOptions) -> None:
        from .errors import InputError

        if options.paste_back and crop is None:
            raise InputError("--paste-back needs the photo the face was cropped from (a path or an array)")
        self._paste_back = None
        if crop is not None and (options.paste_back or (not options.crop_only and crop.from_larger_photo)):
            from .pasteback import PasteBack

            photo, win = crop.photo, crop.window
            h, w, factor = _even_scaled(*photo.shape[:2], options.max_side)
            if factor != 1.0:
                photo = np.asarray(Image.fromarray(photo).resize((w, h), Image.Resampling.LANCZOS))
                win = CropWindow(
                    round(win.top * factor), round(win.left * factor), max(1, round(win.side * factor))
                )
            self._paste_back = PasteBack(photo, win)
            self.height, self.width = self._paste_back.size
        else:
            cap = options.max_side
            self.height = self.width = size if cap is None or cap >= size else cap - cap % 2
        self._size = size
        self.watermark = None
        self.notices: list[str] = []
        if options.watermark:
            from .provenance.watermark import MIN_PIXELS, Watermark

            if self.height * self.width >= MIN_PIXELS:
                self.watermark = Watermark(options.watermark_id)
            else:
                self.notices.append(
                    f"{self.width}x{self.height} frames are too small for the watermark "
                    f"(it needs {MIN_PIXELS} pixels): not marked"
                )

    @property
    def paste(self) -> bool:
        """The frames go back into the photo."""
        return self._paste_back is not None

    @property
    def identity(self) -> bool:
        """The frames pass unchanged."""
        return not self.paste and self.watermark is None and self.height == self._size

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        if self._paste_back is not None:
            frames = np.stack([self._paste_back.paste(f) for f in frames])
        elif frames.shape[1] != self.height:
            frames = np.stack(
                [
                    np.asarray(Image.fromarray(f).resize((self.width, self.height), Image.Resampling.LANCZOS))
                    for f in frames
                ]
            )
        if self.watermark is not None:
            frames = self.watermark.embed(frames)
        return frames
