"""FLOAT crop geometry: pure NumPy/Pillow checks, no face detector needed."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import floatalk.face.crop as crop_mod
from floatalk.errors import InputError
from floatalk.face import CropWindow, FaceBox, crop_face, crop_portrait, crop_window


def _image(h: int = 120, w: int = 160, seed: int = 0) -> np.ndarray:
    # Strictly positive values so that black (0) fill is unambiguous.
    return np.random.default_rng(seed).integers(1, 256, size=(h, w, 3), dtype=np.uint8)


def _reference_crop(image: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """The original FLOAT code, transcribed: pad the whole image by bs with black, then slice."""
    x1, y1, x2, y2 = box
    bsy, bsx = int((y2 - y1) / 2), int((x2 - x1) / 2)
    my, mx = int((y1 + y2) / 2), int((x1 + x2) / 2)
    bs = int(max(bsy, bsx) * 1.6)
    padded = np.pad(image, ((bs, bs), (bs, bs), (0, 0)))
    my, mx = my + bs, mx + bs
    return padded[my - bs : my + bs, mx - bs : mx + bs]


# --------------------------------------------------------------------------------------------------
# crop_window: hand-computed geometry
# --------------------------------------------------------------------------------------------------


def test_window_hand_computed() -> None:
    # bsy = int(120/2) = 60, bsx = int(100/2) = 50, my = 110, mx = 150, bs = int(60*1.6) = 96
    assert crop_window((100, 50, 200, 170)) == CropWindow(top=14, left=54, side=192)


def test_window_truncates_float_box_like_the_original() -> None:
    # ints: (10, 20, 71, 95) -> bsy = int(75/2) = 37, bsx = int(61/2) = 30, my = int(115/2) = 57,
    # mx = int(81/2) = 40, bs = int(37*1.6) = int(59.2) = 59
    win = crop_window(FaceBox(10.9, 20.7, 71.2, 95.9, score=0.9))
    assert win == CropWindow(top=57 - 59, left=40 - 59, side=118)
    assert crop_window((10.9, 20.7, 71.2, 95.9)) == win
    assert (win.bottom, win.right) == (57 + 59, 40 + 59)


def test_window_negative_coordinates_truncate_toward_zero() -> None:
    # bsy = int(13/2) = 6, bsx = int(35/2) = 17, my = int(-5/2) = -2, mx = int(-15/2) = -7,
    # bs = int(17 * 1.6) = int(27.2) = 27
    assert crop_window((-25, -9, 10, 4)) == CropWindow(top=-29, left=-34, side=54)


def test_window_uses_larger_half_side() -> None:
    # wide box: bsx = 40 > bsy = 10 -> bs = 64, center (my, mx) = (25, 60)
    assert crop_window((20, 15, 100, 35)) == CropWindow(top=25 - 64, left=60 - 64, side=128)


def test_degenerate_box_is_rejected() -> None:
    with pytest.raises(InputError, match="too small"):
        crop_window((10, 10, 11, 11))  # bs = int(0 * 1.6) = 0


# --------------------------------------------------------------------------------------------------
# crop_face: pixels
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "box",
    [
        (60, 40, 100, 90),  # well inside: no padding needed
        (0, 0, 40, 50),  # top-left corner: padding above and left
        (130, 90, 160, 120),  # bottom-right corner
        (-20, 30, 30, 100),  # box partly outside the image
        (10, 5, 150, 115),  # big face: the square overflows on all four sides
    ],
)
def test_black_fill_matches_original_exactly(box: tuple[int, int, int, int]) -> None:
    image = _image()
    ref = _reference_crop(image, box)
    side = ref.shape[0]
    out = crop_face(image, box, size=side, fill="black")
    np.testing.assert_array_equal(out, ref)


def test_black_outside_region_is_exactly_zero_and_inside_is_the_image() -> None:
    image = _image()
    box = (0, 0, 40, 50)  # bs = int(25*1.6) = 40, center (25, 20): rows [-15, 65), cols [-20, 60)
    win = crop_window(box)
    assert win == CropWindow(top=-15, left=-20, side=80)
    out = crop_face(image, box, size=win.side)
    assert (out[:15] == 0).all() and (out[:, :20] == 0).all()
    np.testing.assert_array_equal(out[15:, 20:], image[0:65, 0:60])


def test_edge_and_reflect_fill_match_numpy_padding() -> None:
    image = _image()
    box = (130, 90, 160, 120)  # bs = 24, center (105, 145): rows [81, 129), cols [121, 169) -> 9 outside
    win = crop_window(box)
    assert win == CropWindow(top=81, left=121, side=48)
    bs = win.side // 2
    for fill, mode in (("edge", "edge"), ("reflect", "reflect")):
        padded = np.pad(image, ((bs, bs), (bs, bs), (0, 0)), mode=mode)
        ref = padded[win.top + bs : win.bottom + bs, win.left + bs : win.right + bs]
        np.testing.assert_array_equal(crop_face(image, box, size=win.side, fill=fill), ref)


def test_edge_and_reflect_differ_from_black_only_outside() -> None:
    image = _image()
    box = (0, 0, 40, 50)  # outside region: first 15 rows and first 20 columns
    black = crop_face(image, box, size=80, fill="black")
    for fill in ("edge", "reflect"):
        other = crop_face(image, box, size=80, fill=fill)
        np.testing.assert_array_equal(other[15:, 20:], black[15:, 20:])
        assert (other[:15] > 0).all() and (other[:, :20] > 0).all()  # no black bars
    # above the image, column 20 of the window is image column 0: edge fill repeats pixel (0, 0)
    np.testing.assert_array_equal(
        crop_face(image, box, size=80, fill="edge")[:15, 20], np.tile(image[0, 0], (15, 1))
    )


def test_reflect_far_outside_mirrors_periodically() -> None:
    # A 3x3 image and a window much larger than it: rows/cols -4..5 map to 0 1 2 1 0 1 2 1 0 1.
    image = np.arange(27, dtype=np.uint8).reshape(3, 3, 3) + 1
    box = (-2, -2, 3, 3)  # bsy = bsx = 2, center (0, 0), bs = int(3.2) = 3: rows/cols [-3, 3)
    out = crop_face(image, box, size=6, fill="reflect")
    idx = [1, 2, 1, 0, 1, 2]  # reflect-101 of -3..2
    np.testing.assert_array_equal(out, image[np.ix_(idx, idx)])


def test_window_entirely_outside_is_black() -> None:
    image = _image()
    out = crop_face(image, (500, 500, 540, 540), size=64)
    assert out.shape == (64, 64, 3) and not out.any()


@pytest.mark.parametrize("size", [512, 64, 192])
def test_output_size_dtype_and_resize_filter(size: int) -> None:
    image = _image(300, 400)
    box = (150, 100, 250, 220)  # bs = 96, side 192, inside the image
    out = crop_face(image, box, size=size)
    assert out.shape == (size, size, 3) and out.dtype == np.uint8 and out.flags.c_contiguous
    ref = _reference_crop(image, box)
    if size == ref.shape[0]:
        expected = ref
    else:
        resample = Image.Resampling.BOX if ref.shape[0] > size else Image.Resampling.BICUBIC
        expected = np.asarray(Image.fromarray(np.ascontiguousarray(ref)).resize((size, size), resample))
    np.testing.assert_array_equal(out, expected)


def test_output_is_a_copy() -> None:
    image = _image()
    out = crop_face(image, (60, 40, 100, 90), size=crop_window((60, 40, 100, 90)).side)
    out[...] = 0
    assert image.min() > 0


def test_huge_image_crop_is_cheap_and_correct() -> None:
    image = np.zeros((3000, 4000, 3), np.uint8)
    image[1400:1600, 1900:2100] = 200  # a bright square where the face is
    out = crop_face(image, (1900, 1400, 2100, 1600), size=128)  # bs = 160: square [1340, 1660) x [1840, 2160)
    assert out.shape == (128, 128, 3)
    assert out[64, 64].tolist() == [200, 200, 200] and out[2, 2].tolist() == [0, 0, 0]


@pytest.mark.parametrize(
    ("image", "kwargs", "match"),
    [
        (np.zeros((10, 10), np.uint8), {}, "uint8 RGB"),
        (np.zeros((10, 10, 4), np.uint8), {}, "uint8 RGB"),
        (np.zeros((10, 10, 3), np.float32), {}, "uint8 RGB"),
        ([[0, 0, 0]], {}, "uint8 RGB"),
        (np.zeros((10, 10, 3), np.uint8), {"fill": "mirror"}, "unknown fill"),
        (np.zeros((10, 10, 3), np.uint8), {"size": 0}, "positive integer"),
    ],
)
def test_bad_arguments_raise_one_line_input_error(image: object, kwargs: dict, match: str) -> None:
    with pytest.raises(InputError, match=match) as info:
        crop_face(image, (2, 2, 8, 8), **kwargs)  # type: ignore[arg-type]
    assert "\n" not in str(info.value)


# --------------------------------------------------------------------------------------------------
# crop_portrait with a stub detector
# --------------------------------------------------------------------------------------------------


@pytest.fixture
def stub_faces(monkeypatch: pytest.MonkeyPatch) -> list[FaceBox]:
    faces: list[FaceBox] = []
    monkeypatch.setattr(crop_mod, "detect_faces", lambda image: list(faces))
    return faces


def test_crop_portrait_uses_largest_face_by_default(stub_faces: list[FaceBox]) -> None:
    image = _image(300, 400)
    big, small = FaceBox(150, 100, 250, 220, 0.9), FaceBox(20, 20, 60, 60, 0.99)
    stub_faces += [big, small]  # detect_faces returns largest first
    np.testing.assert_array_equal(crop_portrait(image, size=96), crop_face(image, big, size=96))
    np.testing.assert_array_equal(
        crop_portrait(image, size=96, face_index=1), crop_face(image, small, size=96)
    )
    edge = crop_portrait(image, size=96, face_index=1, fill="edge")
    np.testing.assert_array_equal(edge, crop_face(image, small, size=96, fill="edge"))


def test_crop_portrait_no_face(stub_faces: list[FaceBox]) -> None:
    with pytest.raises(InputError, match=r"no face found.*--no-crop") as info:
        crop_portrait(_image())
    assert "\n" not in str(info.value)


def test_crop_portrait_face_index_out_of_range(stub_faces: list[FaceBox]) -> None:
    stub_faces += [FaceBox(60, 40, 100, 90, 0.9), FaceBox(10, 10, 30, 30, 0.9)]
    with pytest.raises(InputError, match=r"face index 2 is out of range: 2 faces were found"):
        crop_portrait(_image(), face_index=2)
    with pytest.raises(InputError, match="non-negative"):
        crop_portrait(_image(), face_index=-1)
