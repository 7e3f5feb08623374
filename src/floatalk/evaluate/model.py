"""`floatalk evaluate model`: generate a prepared dataset's test split with a model and evaluate it.

For every clip of the split (in id order), the clip's **first frame is the source image** (§B.3) and
its speech the driving audio; the video is generated at the dataset's frame size (so real and
generated frames are compared pixel for pixel, as LPIPS needs) and evaluated against the real clip
with :func:`floatalk.evaluate.videos.evaluate_videos`. Clip ``i`` uses seed ``seed + i``.

One output folder holds everything, so any number of settings can be compared on one split::

    OUT/real/<clip>.mp4          the real clips (frames + speech of the dataset, written once)
    OUT/cache/                   real-clip features, computed once per backbone
    OUT/<run>/<clip>.mp4         the generated clips of one run
    OUT/<run>/settings.json      what made them
    OUT/<run>/report.json, .md   the numbers

Resumable: a clip already in ``OUT/<run>`` (written atomically) is not generated again; a run folder
made with other settings is refused. Baselines need no model: ``still`` holds the source frame for
the whole clip, ``ground-truth`` is the real clip itself; ``zero_audio`` samples the model's motion
without the speech.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError

__all__ = ["BASELINES", "ModelReport", "RunSettings", "evaluate_model", "run_name"]

BASELINES = ("model", "still", "ground-truth")
#: Quality of the clips written here (real clips and baselines; the model's videos too).
CRF = 12


@dataclass(frozen=True)
class RunSettings:
    """What one run generates: the baseline, or the model and its sampling settings."""

    baseline: str = "model"
    weights: str | None = None
    nfe: int = 10
    audio_scale: float = 2.0
    emotion_scale: float = 1.0
    emotion: str = "label"  # each clip's label, "auto" (from the speech) or one label for all
    zero_audio: bool = False
    seed: int = 0
    split: str = "test"
    max_clips: int | None = None
    # "none" (the model's own head motion) or "real": each clip's measured head-pose track drives a
    # pose-conditioned model (data/driving.py, retargeted to the source frame: the track itself)
    pose: str = "none"

    def uses_model(self) -> bool:
        return self.baseline == "model"


def run_name(settings: RunSettings) -> str:
    """A folder name that says what the run is ("ground-truth", "model-nfe10-ga2-ge1-label-seed0")."""
    if not settings.uses_model():
        return settings.baseline
    parts = [
        "zero-audio" if settings.zero_audio else "model",
        f"nfe{settings.nfe}",
        f"ga{settings.audio_scale:g}",
        f"ge{settings.emotion_scale:g}",
        settings.emotion,
        f"seed{settings.seed}",
    ]
    if settings.pose != "none":
        parts.append(f"pose-{settings.pose}")
    return "-".join(parts)


@dataclass
class ModelReport:
    """One run's numbers (the videos report) and what made them."""

    run: str
    folder: str
    settings: dict[str, Any]
    videos: Any
    generated: int
    reused: int
    seconds: float
    extra: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> str:
        lines = [
            f"run {self.run}: {self.generated} clips generated, {self.reused} reused ({self.folder})",
            self.videos.summary(),
        ]
        if "generated frames/s" in self.extra:
            lines.append(
                f"generation: {self.extra['generated frames']} frames at "
                f"{self.extra['generated frames/s']:.1f} frames/s (writing the videos included)"
            )
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "run": self.run,
            "folder": self.folder,
            "settings": self.settings,
            "generated": self.generated,
            "reused": self.reused,
            "seconds": self.seconds,
            **self.extra,
            **self.videos.to_dict(),
        }


def _select(data: Path, split: str, max_clips: int | None) -> list[Any]:
    from ..data.layout import list_clips, read_dataset_info

    fix = "prepare one with `floatalk prepare` (or `floatalk prepare --synthetic DIR`)"
    if not data.is_dir():
        raise InputError(f"dataset folder {str(data)!r} does not exist; {fix}")
    if split not in ("train", "test"):
        raise InputError(f"unknown split {split!r}; use test or train")
    if max_clips is not None and (isinstance(max_clips, bool) or max_clips < 1):
        raise InputError(f"--max-clips must be >= 1, got {max_clips!r}")
    read_dataset_info(data)  # one line for a folder that is not a dataset
    metas = list_clips(data, split)
    if not metas:
        raise InputError(f"dataset {str(data)!r} has no {split} clips; {fix} with --test-fraction > 0")
    return metas if max_clips is None else metas[:max_clips]


def _write_real(data: Path, meta: Any, path: Path) -> None:
    """The dataset clip as a video: its frames at 25 fps with its speech."""
    from ..data.layout import clip_dir, read_audio, read_frames
    from ..io.video import VideoWriter

    folder = clip_dir(data, meta.clip_id)
    frames = read_frames(folder, range(meta.num_frames), meta.frame_format)
    audio, rate = read_audio(folder)
    with VideoWriter(
        path, frames.shape[2], frames.shape[1], fps=25, audio=audio, sample_rate=rate, crf=CRF
    ) as w:
        w.write(frames)


def _write_still(real: Path, path: Path) -> None:
    """The real clip's first frame held for its whole length, with its sound."""
    from ..io import load_audio
    from ..io.video import VideoWriter
    from ..io.video_reader import read_video_frames

    frames = read_video_frames(real)
    audio = load_audio(real, 16000)
    held = np.repeat(frames[:1], len(frames), axis=0)
    with VideoWriter(
        path, frames.shape[2], frames.shape[1], fps=25, audio=audio, sample_rate=16000, crf=CRF
    ) as w:
        w.write(held)


def _check_settings(folder: Path, settings: RunSettings) -> None:
    stamp = folder / "settings.json"
    wanted = asdict(settings)
    if stamp.is_file():
        # a key missing from an older stamp had its default then (settings added later)
        found = {**asdict(RunSettings()), **json.loads(stamp.read_text())}
        if found != wanted:
            changed = sorted(k for k in wanted if found.get(k) != wanted[k])
            raise InputError(
                f"{folder} holds a run made with other settings ({', '.join(changed)} differ); "
                "give another --name or remove that folder"
            )
    else:
        folder.mkdir(parents=True, exist_ok=True)
        stamp.write_text(json.dumps(wanted, indent=2) + "\n")


def evaluate_model(
    data: str | os.PathLike,
    out: str | os.PathLike,
    settings: RunSettings = RunSettings(),
    *,
    name: str | None = None,
    metrics: tuple[str, ...] | None = None,
    backbones: dict[str, Any] | None = None,
    fvd_stride: int = 1,
    identity_step: int = 1,
    device: str = "cpu",
    progress: Callable[[int, int], None] | None = None,
) -> ModelReport:
    """Generate (or reuse) one run's clips of `data`'s split into `out` and evaluate them.

    Args:
        data: a prepared dataset folder (floatalk prepare).
        out: the evaluation folder (module docstring).
        settings: the baseline or model settings.
        name: the run's folder name (default :func:`run_name`).
        metrics, backbones, fvd_stride, identity_step: as :func:`floatalk.evaluate.videos.evaluate_videos`.
        device: where the model runs.
        progress: called as progress(done, total) over generation then evaluation (2 steps per clip).
    """
    from ..config import EMOTION_LABELS
    from ..options import GenerateOptions
    from .videos import choose_metrics, evaluate_videos

    start = time.perf_counter()
    data, out = Path(data), Path(out)
    if settings.baseline not in BASELINES:
        raise InputError(f"unknown baseline {settings.baseline!r}; choose from {', '.join(BASELINES)}")
    if settings.emotion not in ("label", "auto", *EMOTION_LABELS):
        raise InputError(
            f"unknown emotion {settings.emotion!r}; use label (each clip's), auto or one of "
            + ", ".join(EMOTION_LABELS)
        )
    if settings.pose not in ("none", "real"):
        raise InputError(f"unknown pose source {settings.pose!r}; use none or real")
    metas = _select(data, settings.split, settings.max_clips)
    choose_metrics(metrics, dict(backbones or {}))  # a bad metric name fails before any work
    run = name or run_name(settings)
    if not run or os.sep in run or run in ("real", "cache") or run.startswith("."):
        raise InputError(
            f"--name {run!r} cannot be a run folder name; give a plain name other than real/cache"
        )
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {str(out)!r} is a file; give a folder")
    from ..data.layout import read_dataset_info

    size = read_dataset_info(data).size
    real_dir, run_dir = out / "real", out / run
    real_dir.mkdir(parents=True, exist_ok=True)
    _check_settings(run_dir, settings)

    def options_for(index: int, meta: Any) -> GenerateOptions:
        emotion = settings.emotion
        if emotion == "label":
            emotion = meta.emotion or "neutral"
        return (
            GenerateOptions()
            .replace(
                emotion=emotion,
                emotion_scale=settings.emotion_scale,
                audio_scale=settings.audio_scale,
                nfe=settings.nfe,
                seed=settings.seed + index,
                crop=False,
                zero_audio=settings.zero_audio,
                pose_from=str(run_dir / f".{meta.clip_id}.pose.npy") if settings.pose == "real" else None,
                output_size=size,
            )
            .validate()
        )

    if settings.uses_model():
        for i, meta in enumerate(metas):  # every option checked before the model is loaded
            options_for(i, meta)
    total = 2 * len(metas)
    pipe = None
    generated = reused = 0
    generate_seconds, generated_frames = 0.0, 0
    for i, meta in enumerate(metas):
        real = real_dir / f"{meta.clip_id}.mp4"
        if not real.is_file():
            _write_real(data, meta, real)
        target = run_dir / f"{meta.clip_id}.mp4"
        if target.is_file():
            reused += 1
        else:
            if settings.baseline == "ground-truth":
                partial = target.with_suffix(".partial.mp4")
                shutil.copyfile(real, partial)
                os.replace(partial, target)
            elif settings.baseline == "still":
                _write_still(real, target)
            else:
                if pipe is None:
                    from ..pipeline import FloatPipeline
                    from ..weights import resolve_weights

                    pipe = FloatPipeline.from_pretrained(resolve_weights(settings.weights), device=device)
                from ..data.layout import clip_dir, read_frame

                folder = clip_dir(data, meta.clip_id)
                image = read_frame(folder, 0, meta.frame_format)
                options = options_for(i, meta)
                if options.pose_from is not None:  # the real clip's head pose, measured as in training
                    from ..data.driving import head_pose_track
                    from ..data.layout import read_frames

                    frames = read_frames(folder, range(meta.num_frames), meta.frame_format)
                    np.save(options.pose_from, head_pose_track(frames, what=f"clip {meta.clip_id}"))
                began = time.perf_counter()
                pipe.write_video(image, folder / "audio.wav", target, options, crf=CRF)
                generate_seconds += time.perf_counter() - began
                generated_frames += meta.num_frames
            generated += 1
        if progress is not None:
            progress(i + 1, total)

    def evaluated(done: int, count: int) -> None:
        if progress is not None:
            progress(len(metas) + done, total)

    videos = evaluate_videos(
        real_dir,
        run_dir,
        metrics=metrics,
        weights=backbones,
        fvd_stride=fvd_stride,
        identity_step=identity_step,
        cache_dir=out / "cache",
        progress=evaluated,
    )
    report = ModelReport(
        run=run,
        folder=str(run_dir),
        settings=asdict(settings),
        videos=videos,
        generated=generated,
        reused=reused,
        seconds=time.perf_counter() - start,
    )
    if generated_frames:  # the model's speed in this invocation (clips written here, not reused)
        report.extra["generated frames/s"] = generated_frames / generate_seconds
        report.extra["generated frames"] = generated_frames
    (run_dir / "report.json").write_text(json.dumps(_finite(report.to_dict()), indent=2) + "\n")
    (run_dir / "report.md").write_text(report.summary() + "\n")
    return report


def _finite(value: Any) -> Any:
    """JSON without NaN: NaN and infinities become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value
