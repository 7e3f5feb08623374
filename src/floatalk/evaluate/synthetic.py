"""Lip sync of a model on the held-out clips of a synthetic dataset (``floatalk evaluate synthetic``).

For every clip of the chosen split (sorted by id, the ``i``-th one with seed ``seed + i``), the model
animates the clip's first frame (already a cropped portrait, so no face crop) with the clip's speech
and the clip's emotion label (``neutral`` when it has none), and the video is measured as by
``floatalk evaluate lipsync VIDEO --reference CLIP_DIR``: the mouth opening (MediaPipe face mesh)
against the video's sound track and against the clip's ground-truth ``mouth_open`` track.

Clips where the face mesh finds a face in fewer than ``MIN_VALID_FRAMES`` frames (an untrained model
rarely draws a face) are not an error: their correlations are NaN, they are counted and named in the
summary, and they are left out of the means and of the pooled correlation.

``zero_audio=True`` is the baseline: the same clips, seeds and emotions, but the motion is sampled
with the null speech condition (:attr:`floatalk.options.GenerateOptions.zero_audio`); the video still
carries the speech, so the measure sees how much of the agreement the speech condition accounts for.

Importing this module imports neither torch nor MediaPipe; they are loaded by the evaluation itself.
"""

from __future__ import annotations

import dataclasses
import math
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from floatalk.errors import InputError
from floatalk.options import GenerateOptions

from .lipsync import MIN_VALID_FRAMES, load_reference_track, pearson, score_lipsync, speech_envelope

if TYPE_CHECKING:
    import torch

_DEFAULTS = GenerateOptions()

__all__ = [
    "SyntheticClipScore",
    "SyntheticLipSyncReport",
    "evaluate_synthetic_lipsync",
]

PathLike = str | os.PathLike[str]
_SPLITS = ("train", "test")


@dataclass
class SyntheticClipScore:
    """Lip sync of the video made for one clip (NaN/None where it could not be scored).

    Attributes:
        clip_id: The clip's id.
        emotion: The emotion label the video was made with.
        num_frames: Frames of the generated video.
        seed: The sampling seed of this clip.
        r_reference: Pearson r of the measured mouth opening vs the clip's ``mouth_open`` track, lag 0.
        r_envelope: Pearson r of the opening vs the speech envelope at the best lag.
        best_lag: That lag in frames (> 0: the mouth follows the sound); None when not scored.
        face_found_fraction: Fraction of the video's frames where the face mesh found a face.
        valid_frames: Frames with both a face and audio.
        video: The generated video (None when it was written to a temporary folder).
        note: Why the clip was not scored (None when it was).
    """

    clip_id: str
    emotion: str
    num_frames: int
    seed: int
    r_reference: float
    r_envelope: float
    best_lag: int | None
    face_found_fraction: float
    valid_frames: int
    video: str | None = None
    note: str | None = None


def _clean(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_clean(x) for x in v]
    return v


def _r(v: float | None) -> str:
    return "n/a" if v is None or not math.isfinite(v) else f"{v:+.3f}"


@dataclass
class SyntheticLipSyncReport:
    """Lip sync of a weights folder on the clips of one split of a synthetic dataset.

    Attributes:
        clips: One row per clip, in id order.
        mean_r_reference: Mean of the clips' ``r_reference`` over the clips where it is a number.
        min_r_reference: The smallest of them.
        pooled_r_reference: Pearson r over the frames of all measured clips together (each clip's
            opening against its reference track; clips with fewer than ``MIN_VALID_FRAMES`` frames
            with a face and audio are left out).
        pooled_frames: Frames (with a face) in that pooled correlation.
        mean_r_envelope: Mean of the clips' ``r_envelope`` over the clips where it is a number.
        num_nan: Clips whose ``r_reference`` is NaN (left out of the means).
        num_no_face: Of all clips, those where no face was found in any frame.
        weights: The weights folder.
        data: The dataset folder.
        split: The evaluated split.
        zero_audio: Whether the motion was sampled without the speech condition (the baseline).
        seed: Seed of the first clip (clip ``i`` uses ``seed + i``).
        nfe: Velocity evaluations per window.
        audio_scale: Audio guidance g_a.
        emotion_scale: Emotion guidance g_e.
        device: Where the model ran.
        seconds: Wall time of the whole evaluation.
    """

    clips: list[SyntheticClipScore]
    mean_r_reference: float
    min_r_reference: float
    pooled_r_reference: float
    pooled_frames: int
    mean_r_envelope: float
    num_nan: int
    num_no_face: int
    weights: str
    data: str
    split: str
    zero_audio: bool
    seed: int
    nfe: int
    audio_scale: float
    emotion_scale: float
    device: str = "cpu"
    seconds: float = 0.0

    @property
    def num_clips(self) -> int:
        """Number of evaluated clips."""
        return len(self.clips)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dict (NaN becomes None)."""
        return _clean({**dataclasses.asdict(self), "num_clips": self.num_clips})

    def summary(self) -> str:
        """A short human-readable table and the aggregates."""
        speech = "without the speech condition (zero audio)" if self.zero_audio else "with the speech"
        lines = [
            f"lip sync of {self.weights} on {self.num_clips} {self.split} clips of {self.data}, "
            f"motion sampled {speech} (seeds {self.seed}..{self.seed + max(0, self.num_clips - 1)}, "
            f"nfe {self.nfe}, audio scale {self.audio_scale:g}, emotion scale {self.emotion_scale:g})",
        ]
        id_width = max([len("clip"), *(len(c.clip_id) for c in self.clips)])
        emo_width = max([len("emotion"), *(len(c.emotion) for c in self.clips)])
        lines.append(f"  {'clip':<{id_width}}  {'emotion':<{emo_width}}  frames   face   r_ref   r_env  lag")
        for c in self.clips:
            lag = "  -" if c.best_lag is None else f"{c.best_lag:+3d}"
            note = f"  ({c.note})" if c.note else ""
            lines.append(
                f"  {c.clip_id:<{id_width}}  {c.emotion:<{emo_width}}  {c.num_frames:6d}  "
                f"{100 * c.face_found_fraction:4.0f}%  {_r(c.r_reference):>6}  {_r(c.r_envelope):>6}  "
                f"{lag}{note}"
            )
        scored = self.num_clips - self.num_nan
        left_out = ""
        if self.num_nan:
            no_face = f"; no face found in {self.num_no_face}" if self.num_no_face else ""
            left_out = f" ({self.num_nan} n/a, left out{no_face})"
        lines.append(
            f"  vs reference mouth track: mean r {_r(self.mean_r_reference)} over {scored} "
            f"clip{'s' if scored != 1 else ''}{left_out}, min {_r(self.min_r_reference)}, "
            f"pooled {_r(self.pooled_r_reference)} ({self.pooled_frames} frames)"
        )
        lines.append(f"  vs speech envelope: mean r {_r(self.mean_r_envelope)}")
        lines.append(f"  {self.seconds:.1f} s on {self.device}")
        return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------
# Inputs
# ----------------------------------------------------------------------------------------------------


def _select_clips(data: Path, split: str, clips: int | None) -> list[Any]:
    """The clips to evaluate, checked before any model is loaded."""
    from floatalk.data.layout import clip_dir, list_clips, read_dataset_info

    fix = "write one with `floatalk prepare --synthetic DIR`"
    if split not in _SPLITS:
        raise InputError(f"unknown split {split!r}; use train or test")
    if clips is not None and (isinstance(clips, bool) or not isinstance(clips, int) or clips < 1):
        raise InputError(f"--max-clips must be an integer >= 1, got {clips!r}")
    if not data.exists():
        raise InputError(f"dataset folder {str(data)!r} does not exist; {fix}")
    if not data.is_dir():
        raise InputError(f"dataset {str(data)!r} is not a folder; give the dataset folder ({fix})")
    read_dataset_info(data)  # a one-line error for a folder that is not a dataset
    metas = list_clips(data, split)
    if not metas:
        others = len(list_clips(data)) if (data / "clips").is_dir() else 0
        other = "train" if split == "test" else "test"
        hint = (
            f"it has {others} clip{'s' if others != 1 else ''} in the {other} split; "
            f"choose --split {other} or {fix} with held-out clips"
            if others
            else fix
        )
        raise InputError(f"dataset {str(data)!r} has no clips in the {split!r} split; {hint}")
    if clips is not None:
        metas = metas[:clips]
    missing = [m.clip_id for m in metas if not (clip_dir(data, m.clip_id) / "tracks.npz").is_file()]
    if missing:
        raise InputError(
            f"{len(missing)} of the {len(metas)} {split} clips of {str(data)!r} have no tracks.npz "
            f"(e.g. {missing[0]}); the lip-sync reference needs a synthetic dataset: {fix}"
        )
    return metas


def _measure(video: Path, reference: np.ndarray) -> tuple[dict[str, Any], np.ndarray | None]:
    """Lip sync of one video as ``evaluate_lipsync(video, reference=...)``, but a video without a
    usable face is a NaN row instead of an error.

    Returns:
        The row's measured fields, and the mouth opening (None when not scored).
    """
    from floatalk.io import load_audio

    from . import mouth

    track = mouth.track_mouth(video)
    fps = track.fps or 25.0
    t = track.num_frames
    found = int(track.found.sum())
    row: dict[str, Any] = {
        "num_frames": t,
        "r_reference": math.nan,
        "r_envelope": math.nan,
        "best_lag": None,
        "face_found_fraction": track.face_found_fraction,
        "valid_frames": 0,
    }
    if found == 0:
        return {**row, "note": "no face found"}, None
    if found < MIN_VALID_FRAMES:
        return {**row, "note": f"face found in only {found} frames"}, None
    envelope = speech_envelope(load_audio(video, 16000), 16000, fps, t)
    valid = int((track.found & np.isfinite(envelope)).sum())
    if valid < MIN_VALID_FRAMES:
        return {**row, "valid_frames": valid, "note": f"only {valid} frames with a face and audio"}, None
    report = score_lipsync(track.opening, envelope, reference, fps=fps, name=repr(str(video)))
    r_ref = math.nan if report.r_reference is None else report.r_reference
    row.update(
        r_reference=r_ref,
        r_envelope=report.r_envelope,
        best_lag=report.best_lag,
        valid_frames=report.valid_frames,
        note=None if math.isfinite(r_ref) else "reference r undefined",
    )
    return row, track.opening


def _finite_mean(values: list[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return float(np.mean(finite)) if finite else math.nan


# ----------------------------------------------------------------------------------------------------
# The evaluation
# ----------------------------------------------------------------------------------------------------


def evaluate_synthetic_lipsync(
    weights: PathLike | None,
    data: PathLike,
    *,
    split: str = "test",
    zero_audio: bool = False,
    seed: int = 0,
    nfe: int = _DEFAULTS.nfe,
    audio_scale: float = _DEFAULTS.audio_scale,
    emotion_scale: float = _DEFAULTS.emotion_scale,
    device: str | torch.device = "cpu",
    videos_dir: PathLike | None = None,
    clips: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> SyntheticLipSyncReport:
    """Generate a video for every clip of a synthetic dataset's split and measure its lip sync.

    Args:
        weights: Weights folder (None: ``$FLOATALK_WEIGHTS``, else the demo weights, as ``generate``).
        data: Synthetic dataset folder (``floatalk prepare --synthetic``; each clip has ``tracks.npz``).
        split: ``"test"`` (the held-out clips, default) or ``"train"``.
        zero_audio: Sample the motion with the null speech condition (the baseline).
        seed: Seed of the first clip; the ``i``-th clip (in id order) uses ``seed + i``.
        nfe: Velocity evaluations per window.
        audio_scale: Audio guidance g_a.
        emotion_scale: Emotion guidance g_e.
        device: Where the model runs.
        videos_dir: Keep the videos there as ``<clip_id>.mp4`` (created if needed); None: a temporary
            folder, removed afterwards.
        clips: Evaluate at most this many clips (the first ones in id order).
        progress: Called as ``progress(done, total)`` once the model is loaded (``done = 0``) and
            after each clip.

    Returns:
        The :class:`SyntheticLipSyncReport`.

    Raises:
        InputError: For a missing or empty dataset (or split), clips without ``tracks.npz``, bad
            settings or weights, or missing MediaPipe. The message is one line.
    """
    from floatalk.data.layout import clip_dir, read_frame
    from floatalk.weights import resolve_weights

    start = time.perf_counter()
    data = Path(data)
    metas = _select_clips(data, split, clips)

    def options_for(index: int, emotion: str) -> GenerateOptions:
        return _DEFAULTS.replace(
            emotion=emotion,
            emotion_scale=emotion_scale,
            audio_scale=audio_scale,
            nfe=nfe,
            seed=seed + index,
            crop=False,
            zero_audio=zero_audio,
        ).validate()

    if isinstance(seed, bool) or not isinstance(seed, int):
        raise InputError(f"seed must be an integer, got {seed!r}")
    emotions = [m.emotion or "neutral" for m in metas]
    for i, emotion in enumerate(emotions):  # every option checked before the model is loaded
        options_for(i, emotion)
    references = [load_reference_track(clip_dir(data, m.clip_id)) for m in metas]
    if videos_dir is not None:
        out_dir = Path(videos_dir)
        if out_dir.exists() and not out_dir.is_dir():
            raise InputError(f"--videos {str(out_dir)!r} is a file; give a folder for the videos")
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise InputError(f"--videos {str(out_dir)!r} could not be created ({e.strerror})") from None
    weights_dir = resolve_weights(weights)
    from . import mouth

    mouth.require_face_mesh()  # a missing MediaPipe fails here, not after the first video

    from floatalk.pipeline import FloatPipeline

    pipe = FloatPipeline.from_pretrained(weights_dir, device=device)
    if progress is not None:
        progress(0, len(metas))
    rows: list[SyntheticClipScore] = []
    pooled_open: list[np.ndarray] = []
    pooled_ref: list[np.ndarray] = []
    with tempfile.TemporaryDirectory(prefix="floatalk-eval-") as tmp:
        folder = Path(tmp) if videos_dir is None else Path(videos_dir)
        for i, (meta, emotion, reference) in enumerate(zip(metas, emotions, references, strict=True)):
            cdir = clip_dir(data, meta.clip_id)
            video = folder / f"{meta.clip_id}.mp4"
            image = read_frame(cdir, 0, meta.frame_format)
            pipe.write_video(image, cdir / "audio.wav", video, options_for(i, emotion))
            measured, opening = _measure(video, reference)
            rows.append(
                SyntheticClipScore(
                    clip_id=meta.clip_id,
                    emotion=emotion,
                    seed=seed + i,
                    video=None if videos_dir is None else str(video),
                    **measured,
                )
            )
            if opening is not None:
                ref = np.full(opening.shape[0], np.nan)
                n = min(opening.shape[0], reference.shape[0])
                ref[:n] = reference[:n]
                pooled_open.append(opening)
                pooled_ref.append(ref)
            if progress is not None:
                progress(i + 1, len(metas))

    r_refs = [c.r_reference for c in rows]
    finite = [r for r in r_refs if math.isfinite(r)]
    if pooled_open:
        all_open, all_ref = np.concatenate(pooled_open), np.concatenate(pooled_ref)
        pooled = pearson(all_open, all_ref, min_count=MIN_VALID_FRAMES)
        pooled_frames = int((np.isfinite(all_open) & np.isfinite(all_ref)).sum())
    else:
        pooled, pooled_frames = math.nan, 0
    return SyntheticLipSyncReport(
        clips=rows,
        mean_r_reference=_finite_mean(r_refs),
        min_r_reference=min(finite) if finite else math.nan,
        pooled_r_reference=pooled,
        pooled_frames=pooled_frames,
        mean_r_envelope=_finite_mean([c.r_envelope for c in rows]),
        num_nan=len(r_refs) - len(finite),
        num_no_face=sum(1 for c in rows if c.face_found_fraction == 0),
        weights=str(weights_dir),
        data=str(data),
        split=split,
        zero_audio=bool(zero_audio),
        seed=seed,
        nfe=nfe,
        audio_scale=float(audio_scale),
        emotion_scale=float(emotion_scale),
        device=str(pipe.device),
        seconds=time.perf_counter() - start,
    )
