"""The last stage of generation (floatalk.output_frames): paste-back into the photo by default when
the face was cropped from a larger one, --crop-only, --max-side, and the watermark on the written
video (issue 16)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from floatalk.cli import main as cli_main
from floatalk.errors import InputError
from floatalk.face.crop import crop_window
from floatalk.options import GenerateOptions
from floatalk.pasteback import PasteBack
from floatalk.pipeline import FloatPipeline

SR = 16000


@pytest.fixture(scope="module")
def photo():
    """A 900 x 520 photo (wide, odd neither) with the astronaut's face in it."""
    skimage_data = pytest.importorskip("skimage.data")
    from floatalk.face import is_available

    if not is_available():
        pytest.skip("the face detector (floatalk[face]) is not installed")
    canvas = np.zeros((521, 901, 3), np.uint8)
    canvas[...] = np.linspace(40, 200, 901, dtype=np.float32)[None, :, None].astype(np.uint8)
    face = np.asarray(Image.fromarray(skimage_data.astronaut()).resize((300, 300), Image.Resampling.LANCZOS))
    canvas[120:420, 450:750] = face
    return canvas


@pytest.fixture(scope="module")
def speech():
    t = np.arange(int(SR * 1.2)) / SR
    return (0.3 * np.sin(2 * np.pi * 200 * t) * (np.sin(2 * np.pi * 3 * t) > 0)).astype(np.float32)


@pytest.fixture
def pipe(tiny_model):
    torch.manual_seed(0)
    return FloatPipeline(tiny_model)


def frames_of(pipe, photo, speech, **options):
    run = pipe.generate(photo, speech, seed=0, **options)
    out = np.concatenate(list(run))
    assert out.shape[1:3] == (run.height, run.width)
    return out, run


def test_paste_back_is_the_default_for_a_face_in_a_larger_photo(pipe, photo, speech):
    out, _ = frames_of(pipe, photo, speech, watermark=False)
    h, w = photo.shape[:2]
    assert out.shape[1:] == (h - h % 2, w - w % 2, 3)
    from floatalk.face import select_face

    paste = PasteBack(photo, crop_window(select_face(photo)))
    rows, cols = paste.region()
    outside = np.ones((h, w), bool)
    outside[rows, cols] = False
    outside = outside[: out.shape[1], : out.shape[2]]
    for frame in out:  # bit-identical to the photo outside the blend
        assert np.array_equal(frame[outside], photo[: out.shape[1], : out.shape[2]][outside])
    assert not np.array_equal(out[0][~outside], photo[: out.shape[1], : out.shape[2]][~outside])

    square, _ = frames_of(pipe, photo, speech, watermark=False, crop_only=True)
    size = pipe.output_size(GenerateOptions())
    assert square.shape[1:] == (size, size, 3) and len(square) == len(out)


def test_max_side_caps_the_longer_side_with_even_dimensions(pipe, photo, speech):
    out, _ = frames_of(pipe, photo, speech, watermark=False, max_side=451)
    assert out.shape[1:] == (260, 450, 3)  # 901 x 521 scaled by 451 / 901, rounded to even numbers


def test_written_video_is_marked_unless_asked_not_to(pipe, photo, speech, tmp_path, capsys):
    marked = pipe.write_video(photo, speech, tmp_path / "marked.mp4", seed=0, watermark_id=99)
    assert marked.path.exists()
    plain = pipe.write_video(photo, speech, tmp_path / "plain.mp4", seed=0, watermark=False)
    assert plain.path.exists()
    assert cli_main(["verify", str(tmp_path / "marked.mp4")]) == 0
    assert "watermark id: 99" in capsys.readouterr().out
    assert cli_main(["verify", str(tmp_path / "plain.mp4")]) == 1


def test_small_square_outputs_are_not_marked_and_say_so(pipe, speech):
    image = np.random.default_rng(0).integers(0, 255, (40, 40, 3), dtype=np.uint8)
    run = pipe.generate(image, speech, seed=0, crop=False, output_size=64)
    list(run)
    assert any("too small for the watermark" in n for n in run.result.notices)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"paste_back": True, "crop_only": True}, "either --paste-back or --crop-only"),
        ({"paste_back": True, "crop": False}, "needs the face crop"),
        ({"max_side": 8}, "max-side"),
        ({"watermark_id": -1}, "watermark-id"),
        ({"watermark_id": 3, "watermark": False}, "leave out --no-watermark"),
    ],
)
def test_bad_framing_options_are_one_line_errors(changes, message):
    with pytest.raises(InputError, match=message):
        GenerateOptions(**changes).validate()


def test_paste_back_of_a_prepared_tensor_is_refused(pipe, speech):
    tensor = torch.zeros(1, 3, pipe.image_size, pipe.image_size)
    with pytest.raises(InputError, match="paste-back needs the photo"):
        pipe.generate(tensor, speech, paste_back=True)


def test_a_stream_refuses_paste_back(pipe, photo):
    with pytest.raises(InputError, match="stream sends the square face crop"):
        pipe.stream(photo, paste_back=True)
