"""The on-disk layout of a prepared dataset, shared by `floatalk prepare`, the synthetic world and training.

A dataset is a folder::

    DATASET/
      dataset.json              {"format": "floatalk-dataset", "version": 1, "fps": 25,
                                 "sample_rate": 16000, "size": S, "source": "prepare" | "synthetic", ...}
      clips/
        <clip_id>/
          meta.json             ClipMeta (below)
          frames/000000.jpg     face crops, S x S RGB, one per video frame at 25 fps
          frames/000001.jpg     (or .png: ClipMeta.frame_format)
          audio.wav             16 kHz mono 16-bit PCM, ceil-aligned to the frames
          tracks.npz            optional ground truth (synthetic world): arrays of length num_frames

A clip folder is complete only when its ``meta.json`` exists: writers fill a temporary folder and
rename it into place as the very last step (:func:`commit_clip`), so an interrupted run never leaves a
half-written clip that looks finished, and a resumed run simply skips clips whose ``meta.json`` exists.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import wave
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from floatalk.errors import InputError

__all__ = [
    "DATASET_FORMAT",
    "ClipMeta",
    "DatasetInfo",
    "clip_dir",
    "commit_clip",
    "frame_path",
    "list_clips",
    "person_of",
    "read_audio",
    "read_dataset_info",
    "read_frame",
    "read_frames",
    "read_meta",
    "read_tracks",
    "same_person_clips",
    "staging_dir",
    "write_audio",
    "write_dataset_info",
    "write_frame",
]

DATASET_FORMAT = "floatalk-dataset"
LAYOUT_VERSION = 1
FRAME_FORMATS = ("jpg", "png")


@dataclass(frozen=True)
class DatasetInfo:
    """Dataset-wide facts stored in ``dataset.json``."""

    size: int
    fps: int = 25
    sample_rate: int = 16000
    source: str = "prepare"
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ClipMeta:
    """One clip's ``meta.json``.

    Attributes:
        clip_id: folder name under ``clips/`` (letters, digits, ``-``, ``_``, ``.``).
        num_frames: number of frames in ``frames/`` (25 fps).
        num_samples: number of audio samples in ``audio.wav`` (16 kHz).
        size: frame side in pixels.
        frame_format: ``"jpg"`` or ``"png"``.
        split: ``"train"`` or ``"test"`` (held out).
        emotion: an emotion label of :data:`floatalk.config.EMOTION_LABELS`, or None if unknown.
        source: where the clip came from (a path relative to the prepared source folder, or
            ``"synthetic:<seed>"``).
        extra: anything else (crop boxes, speech clip name, ...), JSON-serialisable.
    """

    clip_id: str
    num_frames: int
    num_samples: int
    size: int
    frame_format: str = "jpg"
    split: str = "train"
    emotion: str | None = None
    source: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.frame_format not in FRAME_FORMATS:
            raise ValueError(f"frame_format must be one of {FRAME_FORMATS}, got {self.frame_format!r}")
        if self.split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {self.split!r}")


def clip_dir(root: str | os.PathLike[str], clip_id: str) -> Path:
    """``root/clips/<clip_id>``."""
    return Path(root) / "clips" / clip_id


def staging_dir(root: str | os.PathLike[str], clip_id: str) -> Path:
    """An empty temporary folder (``root/clips/.<clip_id>.partial``) to fill before :func:`commit_clip`."""
    path = Path(root) / "clips" / f".{clip_id}.partial"
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    (path / "frames").mkdir()
    return path


def commit_clip(root: str | os.PathLike[str], staging: Path, meta: ClipMeta) -> Path:
    """Writes ``meta.json`` into ``staging`` and renames it to the clip's final folder.

    A previous complete clip of the same id is replaced.
    """
    with open(staging / "meta.json", "w") as f:
        json.dump(dataclasses.asdict(meta), f, indent=1)
    final = clip_dir(root, meta.clip_id)
    if final.exists():
        shutil.rmtree(final)
    os.replace(staging, final)
    return final


def write_dataset_info(root: str | os.PathLike[str], info: DatasetInfo) -> None:
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    data = {"format": DATASET_FORMAT, "version": LAYOUT_VERSION, **dataclasses.asdict(info)}
    tmp = root / "dataset.json.tmp"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1)
    os.replace(tmp, root / "dataset.json")


def read_dataset_info(root: str | os.PathLike[str]) -> DatasetInfo:
    path = Path(root) / "dataset.json"
    if not Path(root).is_dir():
        raise InputError(f"dataset folder {str(root)!r} does not exist; create one with `floatalk prepare`")
    if not path.is_file():
        raise InputError(
            f"{str(root)!r} is not a prepared dataset (no dataset.json); create one with `floatalk prepare`"
        )
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise InputError(f"{str(path)!r} is unreadable ({e}); re-run `floatalk prepare`") from None
    if data.pop("format", None) != DATASET_FORMAT:
        raise InputError(f"{str(path)!r} is not a floatalk dataset description; re-run `floatalk prepare`")
    data.pop("version", None)
    known = {f.name for f in dataclasses.fields(DatasetInfo)}
    return DatasetInfo(**{k: v for k, v in data.items() if k in known})


def list_clips(root: str | os.PathLike[str], split: str | None = None) -> list[ClipMeta]:
    """Complete clips of a dataset (those with a ``meta.json``), sorted by id, optionally one split."""
    clips_root = Path(root) / "clips"
    if not clips_root.is_dir():
        return []
    metas = []
    for d in sorted(clips_root.iterdir()):
        if d.name.startswith(".") or not (d / "meta.json").is_file():
            continue
        meta = read_meta(d)
        if split is None or meta.split == split:
            metas.append(meta)
    return metas


def read_meta(path: str | os.PathLike[str]) -> ClipMeta:
    """Reads ``meta.json`` of a clip folder."""
    data = json.loads((Path(path) / "meta.json").read_text())
    return ClipMeta(**data)


def frame_path(clip: Path, index: int, frame_format: str = "jpg") -> Path:
    return clip / "frames" / f"{index:06d}.{frame_format}"


def write_frame(
    clip: Path, index: int, image: np.ndarray, frame_format: str = "jpg", quality: int = 95
) -> None:
    """Saves one (S, S, 3) uint8 RGB frame."""
    from PIL import Image

    im = Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8), "RGB")
    if frame_format == "jpg":
        im.save(frame_path(clip, index, "jpg"), quality=quality, subsampling=0)
    else:
        im.save(frame_path(clip, index, "png"), compress_level=1)


def read_frame(clip: Path, index: int, frame_format: str = "jpg") -> np.ndarray:
    """Loads one frame as (S, S, 3) uint8 RGB."""
    from PIL import Image

    with Image.open(frame_path(clip, index, frame_format)) as im:
        return np.asarray(im.convert("RGB"))


def read_frames(clip: Path, indices: list[int] | range, frame_format: str = "jpg") -> np.ndarray:
    """Loads frames as (N, S, S, 3) uint8 RGB."""
    return np.stack([read_frame(clip, i, frame_format) for i in indices])


def write_audio(clip: Path, samples: np.ndarray, sample_rate: int = 16000) -> None:
    """Saves mono float audio in [-1, 1] as 16-bit PCM ``audio.wav``."""
    pcm = np.clip(np.round(np.asarray(samples, dtype=np.float64) * 32767.0), -32768, 32767).astype("<i2")
    with wave.open(str(clip / "audio.wav"), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(pcm.tobytes())


def read_audio(clip: Path) -> tuple[np.ndarray, int]:
    """Loads ``audio.wav`` as (float32 mono samples in [-1, 1], sample rate)."""
    with wave.open(str(clip / "audio.wav"), "rb") as w:
        rate = w.getframerate()
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    return pcm.astype(np.float32) / 32768.0, rate


def read_tracks(clip: Path) -> dict[str, np.ndarray]:
    """Ground-truth tracks (``tracks.npz``) of a clip, or an empty dict if it has none."""
    path = clip / "tracks.npz"
    if not path.is_file():
        return {}
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def person_of(meta: ClipMeta) -> str:
    """Who a clip shows: a synthetic clip's portrait, else the source video it was cut from."""
    return str(meta.extra.get("portrait") or meta.source or meta.clip_id)


def same_person_clips(clips: list[ClipMeta]) -> list[list[int]]:
    """For each clip of `clips`, the indices of the other clips that show the same person."""
    people: dict[str, list[int]] = {}
    for k, meta in enumerate(clips):
        people.setdefault(person_of(meta), []).append(k)
    return [[j for j in people[person_of(meta)] if j != k] for k, meta in enumerate(clips)]
