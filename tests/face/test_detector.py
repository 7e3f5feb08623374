"""Face detector on real face photos (needs the optional MediaPipe backend and scikit-image's astronaut).

The first two tests need neither: they check that floatalk works without MediaPipe.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import floatalk.face
import floatalk.face.detector as det
from floatalk.errors import InputError
from floatalk.face import FaceBox, crop_face, crop_portrait, detect_faces

# MTCNN's box for the astronaut's face (facenet-pytorch): a reference from a different detector.
ASTRONAUT_FACE = (181.0, 62.0, 268.0, 172.0)


def _iou(box: FaceBox, ref: tuple[float, float, float, float]) -> float:
    iw = min(box.x2, ref[2]) - max(box.x1, ref[0])
    ih = min(box.y2, ref[3]) - max(box.y1, ref[1])
    inter = max(iw, 0.0) * max(ih, 0.0)
    return inter / (box.area + (ref[2] - ref[0]) * (ref[3] - ref[1]) - inter)


def _shift(ref: tuple[float, float, float, float], scale: float, dx: float, dy: float) -> tuple[float, ...]:
    return (ref[0] * scale + dx, ref[1] * scale + dy, ref[2] * scale + dx, ref[3] * scale + dy)


def _resize(image: np.ndarray, size: tuple[int, int], box: tuple[float, ...] | None = None) -> np.ndarray:
    src = max(box[2] - box[0], box[3] - box[1]) if box else max(image.shape[:2])
    resample = Image.Resampling.BOX if src > max(size) else Image.Resampling.BICUBIC
    return np.asarray(Image.fromarray(image).resize(size, resample, box=box))


# --------------------------------------------------------------------------------------------------
# Without MediaPipe
# --------------------------------------------------------------------------------------------------


def test_package_import_does_not_import_mediapipe() -> None:
    src = str(Path(floatalk.face.__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    code = "import sys, floatalk.face; assert 'mediapipe' not in sys.modules; print('ok')"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_missing_mediapipe_gives_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    det.close_detector()  # forget a cached backend so that the import is attempted again
    monkeypatch.setitem(sys.modules, "mediapipe", None)  # makes `import mediapipe` raise ImportError
    image = np.zeros((64, 64, 3), np.uint8)
    for call in (detect_faces, crop_portrait):
        with pytest.raises(InputError, match=r"floatalk\[face\].*--no-crop") as info:
            call(image)
        assert "\n" not in str(info.value)
    monkeypatch.undo()
    det.close_detector()


# --------------------------------------------------------------------------------------------------
# With MediaPipe
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    pytest.importorskip(
        "mediapipe", reason="optional face detector not installed (pip install 'floatalk[face]')"
    )
    data = pytest.importorskip("skimage.data", reason="scikit-image provides the test photo")
    try:
        det.detector_name()  # creates and caches the backend once (~0.5-1 s)
    except InputError as exc:  # mediapipe present but unusable (missing deps or model)
        pytest.skip(str(exc))
    return np.ascontiguousarray(data.astronaut())


def test_astronaut_face_box(astronaut: np.ndarray) -> None:
    faces = detect_faces(astronaut)
    assert len(faces) == 1
    face = faces[0]
    assert face.score >= 0.75
    assert _iou(face, ASTRONAUT_FACE) >= 0.6, face  # full-range: ~(173, 67, 278, 172)
    cx, cy = face.center
    assert abs(cx - 224.5) < 15 and abs(cy - 117) < 16


def test_detector_is_cached(astronaut: np.ndarray) -> None:
    backend = det._BACKEND
    assert backend is not None
    detect_faces(astronaut)
    assert det._BACKEND is backend


def test_huge_photo(astronaut: np.ndarray) -> None:
    image = np.zeros((3000, 4000, 3), np.uint8)
    image[:, 500:3500] = _resize(astronaut, (3000, 3000))
    start = time.perf_counter()
    faces = detect_faces(image)
    elapsed = time.perf_counter() - start
    assert len(faces) == 1
    assert _iou(faces[0], _shift(ASTRONAUT_FACE, 3000 / 512, 500, 0)) >= 0.6, faces
    assert elapsed < 2.0  # ~0.07 s on 2 cores; generous bound for slow CI machines
    out = crop_portrait(image)
    assert out.shape == (512, 512, 3) and out.dtype == np.uint8


def test_tight_64px_face_crop(astronaut: np.ndarray) -> None:
    image = _resize(astronaut, (64, 64), box=(180, 72, 270, 162))  # the face fills the frame
    faces = detect_faces(image)
    assert len(faces) == 1
    assert _iou(faces[0], (0, 0, 64, 64)) >= 0.6, faces
    assert crop_portrait(image, fill="edge").shape == (512, 512, 3)


def test_small_face_in_large_photo(astronaut: np.ndarray) -> None:
    # Face ~190 px wide in a 4000x3000 photo (under 5 % of the width): found by the tiled pass.
    image = np.full((3000, 4000, 3), 128, np.uint8)
    image[1000:1950, 2500:3450] = _resize(astronaut, (950, 950))
    faces = detect_faces(image)
    assert len(faces) == 1
    assert _iou(faces[0], _shift(ASTRONAUT_FACE, 950 / 512, 2500, 1000)) >= 0.5, faces


def test_two_faces_largest_first(astronaut: np.ndarray) -> None:
    image = np.full((600, 900, 3), 90, np.uint8)
    image[50:562, 0:512] = astronaut
    image[300:556, 600:856] = _resize(astronaut, (256, 256))
    faces = detect_faces(image)
    assert len(faces) == 2
    assert faces[0].area > faces[1].area
    assert _iou(faces[0], _shift(ASTRONAUT_FACE, 1.0, 0, 50)) >= 0.6
    assert _iou(faces[1], _shift(ASTRONAUT_FACE, 0.5, 600, 300)) >= 0.5
    np.testing.assert_array_equal(
        crop_portrait(image, face_index=1, size=128), crop_face(image, faces[1], size=128)
    )
    with pytest.raises(InputError, match="2 faces were found"):
        crop_portrait(image, face_index=2)


@pytest.mark.parametrize("shape", [(512, 512, 3), (3000, 4000, 3), (8, 8, 3)])
def test_blank_image_has_no_face(astronaut: np.ndarray, shape: tuple[int, int, int]) -> None:
    image = np.full(shape, 200, np.uint8)
    assert detect_faces(image) == []
    with pytest.raises(InputError, match="no face found"):
        crop_portrait(image)


def test_cat_is_not_a_face(astronaut: np.ndarray) -> None:
    data = pytest.importorskip("skimage.data")
    assert detect_faces(np.ascontiguousarray(data.chelsea())) == []
