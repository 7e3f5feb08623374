"""The invisible watermark (floatalk.provenance.watermark) and `floatalk verify`: found after the MP4
encode and after a lower-quality re-encode, invisible (PSNR), absent from unmarked videos and photos,
its user id read back (issue 16)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from floatalk.cli import main as cli_main
from floatalk.errors import InputError
from floatalk.io.video import VideoWriter
from floatalk.io.video_reader import iter_video_frames
from floatalk.provenance.watermark import FRAME_THRESHOLD, Watermark

PORTRAITS = Path(__file__).resolve().parents[1] / "src" / "floatalk" / "assets" / "portraits"


def moving_frames(name: str, height: int, width: int, n: int = 25) -> np.ndarray:
    """n frames of a slowly panning crop of a repo portrait, (n, height, width, 3) uint8."""
    photo = np.asarray(Image.open(PORTRAITS / name).convert("RGB"))
    h, w = photo.shape[:2]
    side = min(h, w) - 24
    ch, cw = int(side * height / max(height, width)), int(side * width / max(height, width))
    out = []
    for i in range(n):
        dy, dx = 12 + int(6 * np.cos(i / 5)), 12 + int(9 * np.sin(i / 4))
        crop = Image.fromarray(photo[dy : dy + ch, dx : dx + cw])
        out.append(np.asarray(crop.resize((width, height), Image.Resampling.BICUBIC)))
    return np.stack(out)


def encode(frames: np.ndarray, path: Path, crf: float) -> np.ndarray:
    """Through the MP4 writer of `floatalk generate` and back."""
    with VideoWriter(path, frames.shape[2], frames.shape[1], fps=25, crf=crf) as w:
        w.write(frames)
    return np.stack(list(iter_video_frames(path)))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255.0**2 / np.mean((a.astype(np.float64) - b) ** 2)))


@pytest.mark.parametrize(
    ("name", "height", "width"), [("obama.jpg", 512, 512), ("pexels_langer.jpg", 720, 1280)]
)
def test_mark_survives_encoding_and_a_lower_quality_reencode(tmp_path, name, height, width):
    frames = moving_frames(name, height, width)
    mark = Watermark(user_id=424242)
    marked = mark.embed(frames)
    assert marked.shape == frames.shape and marked.dtype == np.uint8
    assert psnr(marked, frames) >= 38.0  # invisible
    default = encode(marked, tmp_path / "default.mp4", crf=18)  # generate's default quality
    lower = encode(default, tmp_path / "lower.mp4", crf=28)  # re-encoded at a lower quality
    for video in (default, lower):
        found = mark.read(video)
        assert found.marked_share >= 0.95 and found.found, found.signature_accuracy
        assert found.user_id == 424242
    unmarked = mark.read(encode(frames, tmp_path / "plain.mp4", crf=18))
    assert not unmarked.found and unmarked.marked_share == 0.0, unmarked.signature_accuracy
    assert unmarked.bit_accuracy < FRAME_THRESHOLD


def test_no_false_positive_on_the_repo_portraits():
    reader = Watermark()
    names = sorted(p.name for p in PORTRAITS.glob("*.jpg"))
    assert len(names) >= 10
    images = []
    for name in names:
        image = Image.open(PORTRAITS / name).convert("RGB")
        if image.width * image.height < 256 * 256:
            image = image.resize((max(256, image.width), max(256, image.height)), Image.Resampling.BICUBIC)
        images.append(np.asarray(image))
    accuracy = np.array([reader.read(im).signature_accuracy[0] for im in images])
    assert (accuracy < FRAME_THRESHOLD).all(), dict(zip(names, accuracy.round(3)))
    # the same photos marked are found: the reader can say yes
    assert all(reader.read(reader.embed(im)).found for im in images[:3])


def test_bad_ids_and_small_frames_are_one_line_errors():
    with pytest.raises(InputError, match="watermark id"):
        Watermark(user_id=2**32)
    with pytest.raises(InputError, match="too small"):
        Watermark().read(np.zeros((2, 64, 64, 3), np.uint8))


def test_verify_cli_exit_codes(tmp_path, capsys):
    frames = moving_frames("hopper.jpg", 320, 320, n=12)
    encode(Watermark(7).embed(frames), tmp_path / "marked.mp4", crf=18)
    encode(frames, tmp_path / "plain.mp4", crf=18)
    assert cli_main(["verify", str(tmp_path / "marked.mp4")]) == 0
    out = capsys.readouterr().out
    assert "watermark found" in out and "in 100% of 12 frames" in out and "watermark id: 7" in out
    assert cli_main(["verify", str(tmp_path / "plain.mp4")]) == 1
    assert "watermark not found" in capsys.readouterr().out
    assert cli_main(["verify", "--json", str(tmp_path / "marked.mp4")]) == 0
    assert '"found": true' in capsys.readouterr().out
    (tmp_path / "broken.mp4").write_bytes(b"not a video")
    assert cli_main(["verify", str(tmp_path / "broken.mp4")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("floatalk: error:") and len(err.strip().splitlines()) == 1
