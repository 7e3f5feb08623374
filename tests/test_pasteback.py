"""Paste-back (floatalk.pasteback): pixels outside the blend stay the photo's, no seam, the photo's
size, nothing from the crop's padding; a wide photo with a small face, a tall photo, a face at the
border."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from floatalk.errors import InputError
from floatalk.face.crop import CropWindow, crop_face
from floatalk.pasteback import PasteBack, seam_step


def photo(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A smooth colour gradient with fine texture (neighbouring pixels differ a little)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([80 + 100 * x / w, 60 + 120 * y / h, 140 + 40 * np.sin(x / 37.0)], -1)
    return np.clip(base + rng.normal(0, 4, (h, w, 3)), 0, 255).astype(np.uint8)


def generated(image: np.ndarray, window: CropWindow, size: int = 64, shift: float = 25.0) -> np.ndarray:
    """A "generated" frame: the crop at the model's size, its colour off by `shift`, a bright mouth."""
    box = (window.left + window.side * 0.1875, window.top + window.side * 0.1875)
    frame = crop_face(image, (*box, box[0] + window.side * 0.625, box[1] + window.side * 0.625), size)
    frame = np.clip(frame.astype(float) + shift, 0, 255)
    frame[size // 2 : size // 2 + 6, size // 3 : 2 * size // 3] = 250
    return frame.astype(np.uint8)


CASES = {
    "wide photo, small face": ((720, 1280), CropWindow(300, 800, 160)),
    "tall photo": ((1001, 563), CropWindow(200, 120, 320)),
    "face at the border": ((480, 640), CropWindow(-60, 500, 200)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_paste_back_keeps_the_photo_outside_and_leaves_no_seam(case):
    (h, w), window = CASES[case]
    image = photo(h, w)
    paste = PasteBack(image, window)
    frame = generated(image, window)
    out = paste.paste(frame)
    assert out.shape == (h - h % 2, w - w % 2, 3) and out.dtype == np.uint8
    rows, cols = paste.region()
    outside = np.ones((h, w), bool)
    outside[rows, cols] = False
    outside = outside[: out.shape[0], : out.shape[1]]
    assert np.array_equal(out[outside], image[: out.shape[0], : out.shape[1]][outside])  # bit-identical
    # the frame shows in the middle of the window
    cy, cx = window.top + window.side // 2, window.left + window.side // 2
    if 0 <= cy < h and 0 <= cx < w:
        assert abs(int(out[cy, cx].astype(int).sum()) - int(image[cy, cx].astype(int).sum())) > 30
    # seam: the colour step across the window's edge is no larger than the photo's own steps
    # across every level line of the blend (its outer boundary, and where the mask passes 0.1 ...
    # 0.9) the colour step is no larger than the photo's own step between the same pixels
    for level in (0.0, 0.1, 0.25, 0.5, 0.75, 0.9):
        inside = (paste.mask > level).astype(np.float32)
        boundary, _ = seam_step(out, inside, rows, cols)
        same_place, _ = seam_step(image, inside, rows, cols)
        assert boundary <= same_place + 1e-3, (level, boundary, same_place)
    _, own = seam_step(image, paste.mask, rows, cols)  # the photo's own mean step, everywhere
    # without feathering and colour matching there would be a seam (the measure can fail)
    hard = image.copy()
    big = np.asarray(Image.fromarray(frame).resize((window.side, window.side)))
    hard[rows, cols] = big[
        rows.start - window.top : rows.stop - window.top, cols.start - window.left : cols.stop - window.left
    ]
    hard_mask = np.ones_like(paste.mask)
    assert seam_step(hard, hard_mask, rows, cols)[0] > 2 * own


def test_nothing_of_the_crops_padding_shows_and_bad_inputs_are_refused():
    image = photo(480, 640)
    window = CropWindow(-100, -100, 300)  # the face in the top left corner
    paste = PasteBack(image, window)
    rows, cols = paste.region()
    assert (rows.start, rows.stop, cols.start, cols.stop) == (0, 200, 0, 200)
    frame = np.zeros((64, 64, 3), np.uint8)
    frame[:, :] = 255  # the padding part of the frame (top-left) would show as white if pasted
    out = paste.paste(frame)
    assert out.shape == (480, 640, 3)
    assert np.array_equal(out[200:], image[200:]) and np.array_equal(out[:, 200:], image[:, 200:])
    assert out[100, 100].min() > image[100, 100].min()  # the frame's part inside the photo is there
    with pytest.raises(InputError, match="feather"):
        PasteBack(image, window, feather=0.0)
    with pytest.raises(InputError, match="overlap"):
        PasteBack(image, CropWindow(1000, 1000, 50))
    with pytest.raises(InputError, match="square"):
        paste.paste(np.zeros((64, 32, 3), np.uint8))
