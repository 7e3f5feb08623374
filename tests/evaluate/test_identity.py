"""Identity measure: dlib's face descriptor on the shipped portraits, videos of them, the resize ceiling, CLI.

Tests that need dlib and its models (the ``floatalk[identity]`` extra) are skipped without them.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import floatalk
import floatalk.evaluate
from conftest import one_line_error
from floatalk.cli import main
from floatalk.errors import InputError
from floatalk.evaluate import (
    SAME_PERSON_THRESHOLD,
    FaceDescriber,
    evaluate_identity,
    identity_distance,
    resize_ceiling,
)
from floatalk.evaluate.identity import resize_round_trip
from floatalk.io import VideoWriter, load_image

PORTRAITS = Path(floatalk.__file__).parent / "assets" / "portraits"
NAMES = ("obama", "biden", "astronaut", "hopper")
SIDE = 256  # video frames: big enough that the descriptor barely moves (about 0.05 from the 512² image)


@pytest.fixture(scope="module")
def describer() -> FaceDescriber:
    pytest.importorskip("dlib")
    pytest.importorskip("face_recognition_models")
    return FaceDescriber()


@pytest.fixture(scope="module")
def portraits() -> dict[str, np.ndarray]:
    return {n: load_image(PORTRAITS / f"{n}.jpg") for n in NAMES}


@pytest.fixture(scope="module")
def descriptors(describer, portraits) -> dict[str, np.ndarray]:
    return {n: describer.describe(img) for n, img in portraits.items()}


def _small(img: np.ndarray, side: int = SIDE) -> np.ndarray:
    return np.asarray(Image.fromarray(img).resize((side, side), Image.Resampling.BOX))


def _write_video(path: Path, frames: list[np.ndarray]) -> Path:
    h, w = frames[0].shape[:2]
    with VideoWriter(path, w, h, fps=25) as writer:
        writer.write(np.stack(frames))
    return path


@pytest.fixture(scope="module")
def videos(portraits, tmp_path_factory) -> dict[str, Path]:
    """obama.mp4: obama, obama, obama, grey, noise, obama (two frames without a face); biden.mp4."""
    root = tmp_path_factory.mktemp("identity")
    grey = np.full((SIDE, SIDE, 3), 128, np.uint8)
    noise = np.random.default_rng(0).integers(0, 256, (SIDE, SIDE, 3), dtype=np.uint8)
    obama, biden = _small(portraits["obama"]), _small(portraits["biden"])
    return {
        "obama": _write_video(root / "obama.mp4", [obama, obama, obama, grey, noise, obama]),
        "biden": _write_video(root / "biden.mp4", [biden, biden, biden]),
    }


# --------------------------------------------------------------------------------------------------
# Optional dependency
# --------------------------------------------------------------------------------------------------


def test_import_does_not_load_dlib() -> None:
    code = (
        "import sys, floatalk.evaluate, floatalk.evaluate.identity; "
        "assert not {'dlib', 'face_recognition_models', 'torch', 'av'} & set(sys.modules)"
    )
    src = str(Path(floatalk.evaluate.__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr


def test_missing_dlib_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "dlib", None)  # makes `import dlib` raise ImportError
    with pytest.raises(InputError, match=r"needs dlib.*pip install 'floatalk\[identity\]'") as info:
        FaceDescriber()
    assert "\n" not in str(info.value)


def test_identity_distance_is_l2() -> None:
    a, b = np.zeros(128), np.zeros(128)
    b[:4] = 0.5
    assert identity_distance(a, b) == pytest.approx(1.0)
    assert identity_distance(b, b) == 0.0
    with pytest.raises(ValueError, match="shapes"):
        identity_distance(np.zeros(128), np.zeros(64))


def test_resize_round_trip_keeps_the_size_and_blurs() -> None:
    img = np.random.default_rng(0).integers(0, 256, (100, 80, 3), dtype=np.uint8)
    out = resize_round_trip(img, 16)
    assert out.shape == img.shape and out.dtype == np.uint8
    assert np.abs(out.astype(int) - img).mean() > 20  # noise does not survive 16x16
    with pytest.raises(InputError, match="positive"):
        resize_round_trip(img, 0)


# --------------------------------------------------------------------------------------------------
# Descriptor
# --------------------------------------------------------------------------------------------------


def test_descriptor_separates_the_shipped_portraits(describer, portraits, descriptors) -> None:
    for n in NAMES:
        d = descriptors[n]
        assert d is not None and d.shape == (128,) and d.dtype == np.float64
        assert identity_distance(d, describer.describe(portraits[n])) < 1e-6  # deterministic
    # Measured: obama-biden 0.853, the other pairs 0.81-0.85, astronaut-hopper 0.690.
    assert identity_distance(descriptors["obama"], descriptors["biden"]) > 0.75
    for i, a in enumerate(NAMES):
        for b in NAMES[i + 1 :]:
            assert identity_distance(descriptors[a], descriptors[b]) > SAME_PERSON_THRESHOLD, (a, b)
    # The same person, not the same pixels: a mirror image stays well below the threshold.
    flipped = describer.describe(np.ascontiguousarray(portraits["astronaut"][:, ::-1]))
    assert identity_distance(descriptors["astronaut"], flipped) < 0.3


def test_small_images_are_enlarged_and_faceless_ones_give_none(describer, portraits, descriptors) -> None:
    assert describer.upscale_factor(64, 64) == 4 and describer.upscale_factor(512, 300) == 1
    assert describer.upscale_factor(10, 10) == 8  # capped
    small = describer.describe(_small(portraits["obama"], 64))  # a 40-pixel face: found only enlarged
    assert small is not None and identity_distance(small, descriptors["obama"]) < 0.4
    assert describer.describe(np.full((64, 64, 3), 128, np.uint8)) is None
    with pytest.raises(InputError, match="uint8"):
        describer.describe(np.zeros((64, 64, 3), np.float32))


def test_resize_ceiling_grows_as_the_size_shrinks(describer, portraits, descriptors) -> None:
    c32, c128 = (
        resize_ceiling(portraits["obama"], s, describer=describer, reference=descriptors["obama"])
        for s in (32, 128)
    )
    assert 0 < c128 < 0.15 < c32  # measured 0.066 and 0.528


# --------------------------------------------------------------------------------------------------
# Videos
# --------------------------------------------------------------------------------------------------


def test_video_of_the_portrait_itself_and_of_another_person(describer, videos) -> None:
    obama = PORTRAITS / "obama.jpg"
    report = evaluate_identity(obama, videos["obama"], describer=describer)
    assert report.frames_evaluated == 6 and report.faces_found == 4
    assert report.face_found_fraction == pytest.approx(4 / 6)
    assert report.frame_indices == [0, 1, 2, 3, 4, 5]
    assert np.isnan(report.distances[3]) and np.isnan(report.distances[4])
    assert report.median_distance < 0.2 and report.same_person_fraction == 1.0
    assert (report.frame_width, report.frame_height, report.frame_upscale) == (SIDE, SIDE, 1)
    assert report.fps == pytest.approx(25) and report.ceiling_size is None
    data = report.to_dict()
    assert data["distances"][3] is None and json.loads(json.dumps(data)) == data
    assert "face found in 66.7% (4)" in report.summary()

    other = evaluate_identity(obama, videos["biden"], describer=describer)
    assert other.faces_found == 3 and other.median_distance > 0.6 and other.same_person_fraction == 0.0


def test_every_and_max_frames(describer, videos, portraits) -> None:
    portrait = portraits["obama"]  # an array works as well as a path
    strided = evaluate_identity(portrait, videos["obama"], every=2, describer=describer)
    assert strided.frame_indices == [0, 2, 4] and strided.faces_found == 2 and strided.image is None
    seen: list[int] = []
    first = evaluate_identity(
        portrait, videos["obama"], max_frames=2, describer=describer, progress=seen.append
    )
    assert first.frame_indices == [0, 1] and seen == [1, 2] and first.max_frames == 2
    with pytest.raises(InputError, match="--every"):
        evaluate_identity(portrait, videos["obama"], every=0, describer=describer)


def test_a_video_without_any_face_is_measured_not_an_error(describer, tmp_path: Path) -> None:
    video = _write_video(tmp_path / "grey.mp4", [np.full((64, 64, 3), 128, np.uint8)] * 3)
    report = evaluate_identity(PORTRAITS / "biden.jpg", video, describer=describer)
    assert report.frames_evaluated == 3 and report.faces_found == 0 and report.face_found_fraction == 0
    assert np.isnan(report.median_distance) and report.frame_upscale == 4
    assert report.to_dict()["median_distance"] is None and report.to_dict()["distances"] == [None] * 3
    assert "no face found in any evaluated frame" in report.summary()


# --------------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------------


def test_cli_writes_the_report(describer, videos, tmp_path: Path, capsys) -> None:
    out = tmp_path / "identity.json"
    argv = ["evaluate", "identity", "--image", str(PORTRAITS / "obama.jpg"), str(videos["obama"])]
    assert main([*argv, "--every", "2", "--ceiling-size", "64", "--json", str(out), "-q"]) == 0
    printed = capsys.readouterr().out
    assert "resize-only ceiling at 64x64" in printed and f"wrote {out}" in printed
    data = json.loads(out.read_text())
    for key in (
        "median_distance",
        "face_found_fraction",
        "frames_evaluated",
        "distances",
        "ceiling_distance",
    ):
        assert key in data, key
    assert data["frames_evaluated"] == 3 and data["every"] == 2 and data["ceiling_size"] == 64
    assert data["median_distance"] < 0.2 and 0.1 < data["ceiling_distance"] < 0.4  # measured 0.208
    assert data["video"] == str(videos["obama"]) and data["crop"] is False


@pytest.mark.skipif(importlib.util.find_spec("mediapipe") is None, reason="needs MediaPipe (face extra)")
def test_cli_crop(describer, videos, tmp_path: Path, capsys) -> None:
    out = tmp_path / "crop.json"
    argv = ["evaluate", "identity", "--image", str(PORTRAITS / "obama.jpg"), str(videos["obama"])]
    assert main([*argv, "--crop", "--max-frames", "1", "--json", str(out), "-q"]) == 0
    data = json.loads(out.read_text())
    assert data["crop"] is True and data["median_distance"] < 0.2
    assert "(cropped)" in capsys.readouterr().out


def test_cli_bad_inputs_are_one_line_and_write_nothing(describer, videos, tmp_path: Path, capsys) -> None:
    out = tmp_path / "never.json"
    video = str(videos["obama"])
    portrait = str(PORTRAITS / "obama.jpg")
    not_an_image = tmp_path / "notes.png"
    not_an_image.write_text("not an image\n")
    faceless = tmp_path / "grey.png"
    Image.fromarray(np.full((200, 200, 3), 128, np.uint8)).save(faceless)
    cases = {
        "does not exist": ["--image", str(tmp_path / "missing.jpg"), video],
        "could not be decoded": ["--image", str(not_an_image), video],
        "no face found in": ["--image", str(faceless), video],
        "video file": ["--image", portrait, str(tmp_path / "missing.mp4")],
        "no frame could be decoded": ["--image", portrait, str(not_an_image)],
        "--every must be a positive integer": ["--image", portrait, video, "--every", "0"],
        "--max-frames": ["--image", portrait, video, "--max-frames", "-1"],
        "--ceiling-size": ["--image", portrait, video, "--ceiling-size", "0"],
    }
    for expected, args in cases.items():
        err = one_line_error(capsys, ["evaluate", "identity", *args, "--json", str(out), "-q"])
        assert expected in err, (expected, err)
        assert not out.exists()
    err = one_line_error(
        capsys, ["evaluate", "identity", "--image", portrait, video, "--json", str(tmp_path)]
    )
    assert "is a directory" in err
