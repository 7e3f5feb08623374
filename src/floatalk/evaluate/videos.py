"""`floatalk evaluate videos`: the paper's distribution metrics between a folder of real clips and a
folder of generated ones.

Clips are paired by file name without extension (``real/id07_003.mp4`` with ``generated/id07_003.mp4``);
names found on one side only are listed and left out. Each clip's frames are taken at
:data:`EVAL_FPS` (25, the paper's rate): frame ``i`` is the source frame shown at ``i / 25`` s
(nearest earlier frame), and a pair is cut to its shorter clip, so both sides cover the same moments.

Metrics (``--metrics``, default: the shipped ones and every paper metric whose weights file is given
by option or environment variable; the others are skipped with a notice):

* paper metrics, each reading its network from a local file (evaluate/backbones.py): ``fid`` (FID,
  Inception-v3, evaluate/fid.py), ``fvd`` (I3D logits of 16-frame sliding windows, evaluate/fvd.py),
  ``csim`` (ArcFace cosine of the source frame with every generated frame, evaluate/csim.py),
  ``efid3d`` / ``pfid3d`` (Fréchet distances of 3DMM expression and pose from Deep3DFaceRecon,
  evaluate/face3d.py), ``lse`` (SyncNet LSE-D / LSE-C, evaluate/syncnet.py), ``lpips`` (AlexNet
  LPIPS between frames shown at the same time, evaluate/perceptual.py);
* shipped measures (not comparable with published numbers): ``identity`` (dlib descriptor L2 to the
  source face, evaluate/identity.py), ``efid`` / ``pfid`` (MediaPipe blendshapes and head pose,
  evaluate/face_params.py), ``lipsync`` (mouth opening vs speech envelope, its Pearson r at the best
  offset within ±15 frames and at 0, and the offset; evaluate/measures.py).

Every distribution metric pools all frames (or windows) of all pairs on each side. The per-metric
accumulators live in evaluate/measures.py.
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
from .measures import EVAL_FPS  # the paper's 25 fps, defined beside the measures that use it

__all__ = ["EVAL_FPS", "METRICS", "VideosReport", "evaluate_videos", "pair_clips", "resample_indices"]


METRICS: tuple[str, ...] = (
    "fid",
    "fvd",
    "csim",
    "identity",
    "efid",
    "pfid",
    "efid3d",
    "pfid3d",
    "lse",
    "lipsync",
    "lpips",
)
#: The metrics that need a weights file, and the name of their entry in `weights`.
NEEDS_FILE: dict[str, str] = {
    "fid": "fid",
    "fvd": "fvd",
    "csim": "csim",
    "efid3d": "face3d",
    "pfid3d": "face3d",
    "lse": "lse",
    "lpips": "lpips",
}
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
    clips: dict[str, dict[str, float]] = field(default_factory=dict)

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
            "clips": self.clips,
        }


#: Where each weights-file spec lives: (module of floatalk.evaluate, constant).
_SPECS = {
    "fid": ("fid", "FID_INCEPTION"),
    "fvd": ("fvd", "FVD_I3D"),
    "csim": ("csim", "CSIM_ARCFACE"),
    "face3d": ("face3d", "FACE3D_RECON"),
    "lse": ("syncnet", "SYNCNET"),
    "lpips": ("perceptual", "LPIPS_ALEXNET"),
}


def backbone_file(entry: str) -> Any:
    """The BackboneFile of a weights entry ("fid", "fvd", "csim", "face3d", "lse", "lpips")."""
    import importlib

    module, name = _SPECS[entry]
    return getattr(importlib.import_module(f"{__package__}.{module}"), name)


def choose_metrics(
    metrics: tuple[str, ...] | None, weights: dict[str, Any]
) -> tuple[tuple[str, ...], dict[str, Any], list[str]]:
    """(metrics to run, the weights path of each file entry (option, else environment), notices).

    Without `metrics`, every metric that can run: the shipped ones, and each paper metric whose
    weights file is given (the others are skipped with a notice). A metric asked for by name whose
    file is missing stops with the one-line error of its spec.
    """
    asked = metrics is not None
    chosen = tuple(dict.fromkeys(METRICS if metrics is None else metrics))
    unknown = sorted(set(chosen) - set(METRICS))
    if unknown or not chosen:
        raise InputError(f"unknown metric {', '.join(unknown) or '(none)'}; choose from {', '.join(METRICS)}")
    unknown_files = sorted(set(weights) - set(_SPECS))
    if unknown_files:
        raise InputError(f"unknown weights entry {unknown_files[0]}; known: {', '.join(_SPECS)}")
    specs = {NEEDS_FILE[m]: backbone_file(NEEDS_FILE[m]) for m in chosen if m in NEEDS_FILE}
    paths = {
        k: weights.get(k) if weights.get(k) is not None else os.environ.get(s.env) or None
        for k, s in specs.items()
    }
    notices = []
    if not asked:
        skipped = [m for m in chosen if m in NEEDS_FILE and paths[NEEDS_FILE[m]] is None]
        if skipped:
            files = sorted({NEEDS_FILE[m] for m in skipped})
            notices.append(
                f"skipped {', '.join(skipped)}: no weights file given ("
                + ", ".join(f"{specs[f].option} or {specs[f].env}" for f in files)
                + "; docs/evaluation.md names each file)"
            )
        chosen = tuple(m for m in chosen if m not in skipped)
    return chosen, paths, notices


def _clip_audio(generated: Path, real: Path) -> np.ndarray | None:
    """The speech at 16 kHz: the generated clip's own sound track, else the real clip's, else None."""
    from ..io import load_audio
    from ..io.video_reader import VideoReader

    for path in (generated, real):
        with VideoReader(path) as reader:
            if reader.has_audio:
                return load_audio(path, 16000)
    return None


def evaluate_videos(
    real_dir: str | os.PathLike,
    generated_dir: str | os.PathLike,
    metrics: tuple[str, ...] | None = None,
    weights: dict[str, Any] | None = None,
    max_frames: int | None = None,
    fvd_stride: int = 1,
    identity_step: int = 1,
    cache_dir: str | os.PathLike | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> VideosReport:
    """Pair the clips, align their frames at 25 fps and compute the chosen metrics (module docstring).

    Args:
        weights: weights file per entry of :data:`NEEDS_FILE` ("fid", "fvd", "csim", "face3d", "lse",
            "lpips"); missing entries are read from their environment variables.
        max_frames: use at most the first N frames (at 25 fps) of each clip.
        fvd_stride: step between FVD's 16-frame windows.
        identity_step: the identity measure describes every Nth generated frame (frames 0, N, 2N...).
        cache_dir: keep real-clip features there and reuse them (measures.FeatureCache).
        progress: called as progress(done, total) after each pair.
    """
    from .measures import ClipPair, FeatureCache, build_measures

    if max_frames is not None and max_frames < 2:
        raise InputError(f"--max-frames must be >= 2, got {max_frames}")
    if fvd_stride < 1:
        raise InputError(f"--fvd-stride must be >= 1, got {fvd_stride}")
    if identity_step < 1:
        raise InputError(f"--identity-step must be >= 1, got {identity_step}")
    chosen, paths, notices = choose_metrics(metrics, dict(weights or {}))
    if not chosen:
        raise InputError("no metric to compute: " + "; ".join(notices))
    pairs, unpaired = pair_clips(real_dir, generated_dir)
    if unpaired:
        notices.append(f"{len(unpaired)} clips without a partner left out: {', '.join(unpaired[:5])}")
    measures = build_measures(
        chosen, paths, fvd_stride, identity_step
    )  # every file checked before any clip is read
    report = VideosReport(pairs=len(pairs), frames=0, notices=notices)
    cache = FeatureCache(cache_dir)
    hears = bool({"lipsync", "lse"} & set(chosen))
    for done, (name, real_path, gen_path) in enumerate(pairs):
        real, gen = _clip_frames(real_path, max_frames), _clip_frames(gen_path, max_frames)
        n = min(len(real), len(gen))
        report.frames += n
        pair = ClipPair(
            name, real[:n], gen[:n], _clip_audio(gen_path, real_path) if hears else None, real_path, gen_path
        )
        for measure in measures:
            measure.add(pair, cache)
        if progress is not None:
            progress(done + 1, len(pairs))
    for measure in measures:
        silent = getattr(measure, "skipped", None) and not getattr(measure, "rows", True)
        if metrics is None and measure.key == "lipsync" and silent:  # chosen by default, nothing to hear
            report.notices.append("lip sync skipped: no clip could be measured (no sound track or no face)")
            continue
        measure.finish(report)
    return report
