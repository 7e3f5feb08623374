"""`floatalk evaluate videos`: the paper's distribution metrics between a folder of real clips and a
folder of generated ones.

Clips are paired by file name without extension (``real/id07_003.mp4`` with ``generated/id07_003.mp4``);
names found on one side only are listed and left out. Each clip's frames are taken at
:data:`EVAL_FPS` (25, the paper's rate): frame ``i`` is the source frame shown at ``i / 25`` s
(nearest earlier frame), and a pair is cut to its shorter clip, so both sides cover the same moments.

Metrics (``--metrics``, default: every one that can run here):

* ``fid``: FID (Eq. 22) of Inception-v3 features of all frames (evaluate/fid.py); needs the Inception
  weights file (``--fid-weights`` or $FLOATALK_FID_WEIGHTS), so it is skipped, with a notice, when no
  file is given and it was not asked for by name;
* ``identity``: the shipped CSIM analogue: dlib's face descriptor of every generated frame against
  that of the pair's first *real* frame (the source image, §B.3); the median L2 distance over all
  frames with a face (below 0.6 = the same person for dlib; lower is better; evaluate/identity.py).
  Not the paper's ArcFace cosine, so not comparable with its CSIM;
* ``efid``, ``pfid``: Fréchet distances of per-frame expression (52 blendshapes) and head pose (6-d) from
  the shipped MediaPipe Face Landmarker (evaluate/face_params.py): not the paper's 3DMM features, so
  not comparable with its numbers.

The report names the backbone behind each number and whether it is the published file.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError

__all__ = ["EVAL_FPS", "METRICS", "VideosReport", "evaluate_videos", "pair_clips", "resample_indices"]

EVAL_FPS = 25.0
METRICS: tuple[str, ...] = ("fid", "identity", "efid", "pfid")
VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v")


def pair_clips(
    real_dir: str | os.PathLike, generated_dir: str | os.PathLike
) -> tuple[list[tuple[str, Path, Path]], list[str]]:
    """[(name, real, generated)] sorted by name, and the names found on one side only."""

    def clips(folder: str | os.PathLike, role: str) -> dict[str, Path]:
        root = Path(folder)
        if not root.is_dir():
            raise InputError(f"--{role} must be a folder of videos, got {root}")
        found: dict[str, Path] = {}
        for path in sorted(root.iterdir()):
            if path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES:
                if path.stem in found:
                    raise InputError(
                        f"two videos named {path.stem} in {root}: {found[path.stem].name} and {path.name}"
                    )
                found[path.stem] = path
        return found

    real, generated = clips(real_dir, "real"), clips(generated_dir, "generated")
    names = sorted(set(real) & set(generated))
    if not names:
        raise InputError(
            f"no clip names in common between {real_dir} ({len(real)} videos) and {generated_dir} "
            f"({len(generated)} videos); clips are paired by file name without extension"
        )
    unpaired = sorted(set(real) ^ set(generated))
    return [(n, real[n], generated[n]) for n in names], unpaired


def resample_indices(num_frames: int, fps: float, target_fps: float = EVAL_FPS) -> np.ndarray:
    """Indices of the source frames shown at times k / target_fps (nearest earlier frame)."""
    if num_frames <= 0:
        return np.zeros(0, dtype=np.int64)
    duration = num_frames / fps
    count = int(np.floor(duration * target_fps + 1e-9))
    idx = np.floor(np.arange(count) * fps / target_fps + 1e-9).astype(np.int64)
    return idx[idx < num_frames]


def _clip_frames(path: Path, limit: int | None) -> np.ndarray:
    from ..io.video_reader import read_video_frames, video_fps

    frames = read_video_frames(path)
    if len(frames) == 0:
        raise InputError(f"{path} has no video frames")
    frames = frames[resample_indices(len(frames), video_fps(path))]
    return frames if limit is None else frames[:limit]


@dataclass
class VideosReport:
    """Numbers, the backbone behind each, and what was skipped."""

    pairs: int
    frames: int
    metrics: dict[str, float] = field(default_factory=dict)
    backbones: dict[str, str] = field(default_factory=dict)
    notices: list[str] = field(default_factory=list)

    def summary(self) -> str:
        lines = [
            f"{self.pairs} clip pairs, {self.frames} frame pairs at {EVAL_FPS:g} fps",
            "",
            "| metric | value | backbone |",
            "|---|---|---|",
        ]
        for name, value in self.metrics.items():
            lines.append(f"| {name} | {value:.4f} | {self.backbones.get(name, '')} |")
        lines += [f"note: {n}" for n in self.notices]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "pairs": self.pairs,
            "frames": self.frames,
            "fps": EVAL_FPS,
            "metrics": self.metrics,
            "backbones": self.backbones,
            "notices": self.notices,
        }


def evaluate_videos(
    real_dir: str | os.PathLike,
    generated_dir: str | os.PathLike,
    metrics: tuple[str, ...] | None = None,
    fid_weights: str | os.PathLike | None = None,
    max_frames: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> VideosReport:
    """Pair the clips, align their frames at 25 fps and compute the chosen metrics (module docstring)."""
    from .fid import FID_INCEPTION

    asked = metrics is not None
    chosen = tuple(METRICS if metrics is None else metrics)
    unknown = sorted(set(chosen) - set(METRICS))
    if unknown or not chosen:
        raise InputError(f"unknown metric {', '.join(unknown) or '(none)'}; choose from {', '.join(METRICS)}")
    if max_frames is not None and max_frames < 2:
        raise InputError(f"--max-frames must be >= 2, got {max_frames}")
    notices: list[str] = []
    fid_path = fid_weights if fid_weights is not None else os.environ.get(FID_INCEPTION.env) or None
    if "fid" in chosen and fid_path is None and not asked:
        chosen = tuple(m for m in chosen if m != "fid")
        notices.append(
            f"FID skipped: no Inception weights given ({FID_INCEPTION.option} or {FID_INCEPTION.env})"
        )
    pairs, unpaired = pair_clips(real_dir, generated_dir)
    if unpaired:
        notices.append(f"{len(unpaired)} clips without a partner left out: {', '.join(unpaired[:5])}")

    inception = None
    if "fid" in chosen:
        from .fid import InceptionFeatures

        inception = InceptionFeatures(fid_path)  # checked before any clip is read
    report = VideosReport(pairs=len(pairs), frames=0, notices=notices)
    feats: dict[str, list[np.ndarray]] = {"real": [], "generated": []}
    params: dict[str, list[Any]] = {"real": [], "generated": []}
    distances_id: list[float] = []
    describer = None
    if "identity" in chosen:
        from .identity import FaceDescriber

        describer = FaceDescriber()
    for done, (_, real_path, gen_path) in enumerate(pairs):
        real, gen = _clip_frames(real_path, max_frames), _clip_frames(gen_path, max_frames)
        n = min(len(real), len(gen))
        report.frames += n
        for side, frames in (("real", real[:n]), ("generated", gen[:n])):
            if inception is not None:
                feats[side].append(inception([frames]))
            if {"efid", "pfid"} & set(chosen):
                from .face_params import FaceParameterTracker

                with FaceParameterTracker(fps=EVAL_FPS) as tracker:
                    params[side].append(tracker.track(frames))
        if describer is not None:
            distances_id += _identity_distances(describer, real[0], gen[:n], real_path)
        if progress is not None:
            progress(done + 1, len(pairs))
    if inception is not None:
        from .fid import fid

        report.metrics["FID"] = fid(np.concatenate(feats["real"]), np.concatenate(feats["generated"]))
        report.backbones["FID"] = inception.backbone.describe()
    if describer is not None:
        if not distances_id:
            raise InputError("identity: dlib found no face in any generated frame")
        report.metrics["identity (median L2)"] = float(np.median(distances_id))
        report.backbones["identity (median L2)"] = (
            "dlib face descriptor (shipped; not the paper's ArcFace CSIM: "
            "not comparable with published numbers)"
        )
        if len(distances_id) < report.frames:
            notices.append(f"identity: faces in {len(distances_id)} of {report.frames} generated frames")
    if {"efid", "pfid"} & set(chosen):
        from .face_params import face_parameter_distances

        distances = face_parameter_distances(params["real"], params["generated"])
        landmarker = (
            "MediaPipe Face Landmarker (shipped; not the paper's 3DMM: not comparable with published numbers)"
        )
        for key, name in (("efid", "E-FID"), ("pfid", "P-FID")):
            if key in chosen:
                report.metrics[name] = distances[name]
                report.backbones[name] = landmarker
        faces = distances["frames with a face"]
        if min(faces.values()) < report.frames:
            notices.append(
                f"frames with a face: real {faces['real']}, generated {faces['generated']} of {report.frames}"
            )
    return report


def _identity_distances(
    describer: Any, source: np.ndarray, frames: np.ndarray, source_path: Path
) -> list[float]:
    """L2 distances of the faces in `frames` to the face of `source` (frames without a face left out)."""
    from .identity import identity_distance

    reference = describer.describe(source)
    if reference is None:
        raise InputError(f"identity: no face in the first frame of {source_path} (the source image)")
    out = []
    for frame in frames:
        descriptor = describer.describe(frame)
        if descriptor is not None:
            out.append(identity_distance(reference, descriptor))
    return out
