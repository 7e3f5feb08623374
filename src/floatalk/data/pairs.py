"""Training samples from a prepared dataset: clip scanning with clear reports, and stage-1 frame pairs.

Stage 1 (the motion auto-encoder) learns to turn a *source* frame into a *driving* frame of the same
clip, or (``cross_clip``) a source frame of another clip of the same person into the driving frame;
:class:`FramePairs` serves such pairs with the eye and mouth boxes of the driving frame for the
facial-component losses.

Every sample is a pure function of (seed, index): the dataset is a long "virtual" list of
``samples_per_epoch`` items whose order the training sampler shuffles per epoch, so a resumed run
sees exactly the samples an uninterrupted one would.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from floatalk.data.augment import PairAugmentation, augment_pair
from floatalk.data.layout import (
    ClipMeta,
    clip_dir,
    frame_path,
    list_clips,
    read_dataset_info,
    read_frame,
    same_person_clips,
)
from floatalk.errors import InputError

__all__ = ["COMPONENT_NAMES", "TEMPLATE_BOXES", "ClipScan", "FramePairs", "scan_clips"]

#: Facial components with boxes in tracks.npz, in this order.
COMPONENT_NAMES = ("left_eye_box", "right_eye_box", "mouth_box")

#: Where eyes and mouth sit in a FLOAT-geometry face crop, as fractions of the side (x0, y0, x1, y1),
#: used for clips without landmark tracks (measured on the synthetic world's portraits).
TEMPLATE_BOXES = np.array(
    [[0.27, 0.33, 0.48, 0.50], [0.53, 0.35, 0.73, 0.50], [0.29, 0.57, 0.70, 0.85]], dtype=np.float32
)


@dataclass
class ClipScan:
    """The usable clips of a dataset split, and why the others were left out."""

    root: Path
    clips: list[ClipMeta]
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (clip id, reason)

    def report(self) -> str:
        lines = [f"{len(self.clips)} usable clip(s) in {self.root}"]
        lines += [f"  skipped {cid}: {why}" for cid, why in self.skipped]
        return "\n".join(lines)


def scan_clips(
    root: str | Path, split: str | None = "train", min_frames: int = 2, need_audio: bool = False
) -> ClipScan:
    """Check every clip of `split` once, up front, so that training never fails half-way.

    A clip is left out (with its reason) when it has fewer than `min_frames` frames, when a frame
    file or (with `need_audio`) the audio file is missing. A missing or empty dataset raises a
    one-line InputError.
    """
    root = Path(root)
    read_dataset_info(root)  # one-line errors for a missing folder or a folder that is no dataset
    scan = ClipScan(root, [])
    for meta in list_clips(root, split):
        folder = clip_dir(root, meta.clip_id)
        if meta.num_frames < min_frames:
            scan.skipped.append((meta.clip_id, f"{meta.num_frames} frames, shorter than {min_frames}"))
        elif not all(frame_path(folder, i, meta.frame_format).is_file() for i in range(meta.num_frames)):
            scan.skipped.append((meta.clip_id, "frame files missing"))
        elif need_audio and not (folder / "audio.wav").is_file():
            scan.skipped.append((meta.clip_id, "audio.wav missing"))
        else:
            scan.clips.append(meta)
    if not scan.clips:
        what = f"{split} clips" if split else "clips"
        raise InputError(
            f"no usable {what} in {str(root)!r} ({len(scan.skipped)} skipped"
            + (f", e.g. {scan.skipped[0][0]}: {scan.skipped[0][1]}" if scan.skipped else "")
            + "); prepare data with `floatalk prepare`"
        )
    return scan


def _to_tensor(frame: np.ndarray, size: int) -> torch.Tensor:
    """(S, S, 3) uint8 -> (3, size, size) float in [-1, 1]."""
    pixels = np.require(frame, requirements=["C", "W"])  # PIL arrays are read-only
    x = torch.from_numpy(pixels).permute(2, 0, 1).float().div(127.5).sub(1.0)
    if x.shape[-1] != size:
        x = torch.nn.functional.interpolate(x[None], size=(size, size), mode="area")[0]
    return x


class FramePairs(Dataset):
    """(source, driving) frames of one clip, with the driving frame's component boxes.

    Item ``i`` (``0 <= i < samples_per_epoch``) is ``{"source": (3, S, S), "driving": (3, S, S)``
    in [-1, 1], ``"boxes": (3, 4)`` float32 pixel boxes (left eye, right eye, mouth) at size S,
    ``"clip": int}``. Clips are visited evenly (item i uses clip ``i % num_clips``); the two frames
    are drawn from ``numpy.random.default_rng((seed, i))``. With ``augment`` enabled, one random change
    of appearance (:mod:`floatalk.data.augment`, drawn from ``default_rng((seed, i, 1))``) is applied to
    both frames and the boxes. With ``cross_clip`` p > 0, a share p of the items (where the person has
    another clip, :func:`~floatalk.data.layout.person_of`) take the source frame from another clip of
    the same person: within one clip the expression (and in a world of one emotion per clip, the
    emotion) never changes between source and driving, so an auto-encoder trained on such pairs only
    learns to keep the source's expression, and no stage-2 condition can then change it. A frame
    that cannot be read at run time (a file corrupted after the scan) is replaced by another sample,
    with a warning.
    """

    def __init__(
        self,
        root: str | Path,
        size: int,
        split: str = "train",
        samples_per_epoch: int | None = None,
        seed: int = 0,
        scan: ClipScan | None = None,
        augment: PairAugmentation | None = None,
        cross_clip: float = 0.0,
    ) -> None:
        if not 0.0 <= cross_clip <= 1.0:
            raise ValueError(f"cross_clip must be in [0, 1], got {cross_clip}")
        self.scan = scan if scan is not None else scan_clips(root, split, min_frames=2)
        self.root = Path(root)
        self.size = int(size)
        self.seed = int(seed)
        self.clips = self.scan.clips
        self.samples_per_epoch = int(samples_per_epoch or 100 * len(self.clips))
        self._boxes: dict[int, np.ndarray] = {}
        self.augment = augment if augment is not None else PairAugmentation()
        self.cross_clip = float(cross_clip)
        self._others = same_person_clips(self.clips)

    def __len__(self) -> int:
        return self.samples_per_epoch

    def _clip_boxes(self, k: int) -> np.ndarray:
        """(T, 3, 4) boxes of clip k in pixels of this dataset's size."""
        if k not in self._boxes:
            meta = self.clips[k]
            path = clip_dir(self.root, meta.clip_id) / "tracks.npz"
            boxes = None
            if path.is_file():
                with np.load(path) as z:
                    if all(name in z.files for name in COMPONENT_NAMES):
                        boxes = np.stack([z[name] for name in COMPONENT_NAMES], 1).astype(np.float32)
                        boxes *= self.size / meta.size
            if boxes is None or boxes.shape[0] != meta.num_frames:
                boxes = np.broadcast_to(TEMPLATE_BOXES * self.size, (meta.num_frames, 3, 4)).copy()
            self._boxes[k] = boxes
        return self._boxes[k]

    def pick(self, index: int) -> tuple[int, int, int, int]:
        """(driving clip, source clip, source frame, driving frame) of item `index`."""
        k = index % len(self.clips)
        rng = np.random.default_rng((self.seed, index))
        n = self.clips[k].num_frames
        src, drv = rng.choice(n, size=2, replace=False)
        if self.cross_clip > 0:  # its own stream: pairs without cross_clip stay what they were
            extra = np.random.default_rng((self.seed, index, 2))
            if self._others[k] and extra.random() < self.cross_clip:
                j = self._others[k][int(extra.integers(len(self._others[k])))]
                return k, j, int(extra.integers(self.clips[j].num_frames)), int(drv)
        return k, k, int(src), int(drv)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        for attempt in range(8):
            k, j, src, drv = self.pick((index + attempt * 7919) % self.samples_per_epoch)
            meta, donor = self.clips[k], self.clips[j]
            try:
                source = read_frame(clip_dir(self.root, donor.clip_id), src, donor.frame_format)
                driving = read_frame(clip_dir(self.root, meta.clip_id), drv, meta.frame_format)
            except (OSError, ValueError) as e:
                warnings.warn(f"skipping unreadable frame of clip {meta.clip_id}: {e}", stacklevel=2)
                continue
            src_t, drv_t, boxes = augment_pair(
                _to_tensor(source, self.size),
                _to_tensor(driving, self.size),
                torch.from_numpy(self._clip_boxes(k)[drv]),
                self.augment,
                np.random.default_rng((self.seed, index, 1)),
            )
            return {"source": src_t, "driving": drv_t, "boxes": boxes, "clip": torch.tensor(k)}
        raise InputError(
            f"frames of dataset {str(self.root)!r} keep failing to load; re-run `floatalk prepare`"
        )
