"""`floatalk prepare`: talking-face videos -> a prepared dataset (see :mod:`floatalk.data.layout`).

Every video under the source folder (recursively; ``VIDEO_EXTENSIONS``, hidden files and folders
ignored) becomes one clip folder, or several when it is longer than ``max_seconds``:

* **frames** at 25 fps: for each 25 fps timestamp ``j / 25`` (from the first frame) the source frame
  whose timestamp is nearest is taken, so variable frame rates and any source rate work. A video lasting
  ``D`` seconds gives ``round(25 D)`` frames;
* **audio** of the first audio track at 16 kHz mono (:func:`floatalk.io.load_audio`), aligned with the
  frames (the container's start-time difference between the tracks is applied) and cut or zero-padded
  to exactly 640 samples per frame. Videos without sound are skipped unless ``allow_silent`` (silence
  is written then);
* a **face crop** per frame with exactly the geometry of inference (:func:`floatalk.face.crop_face`,
  FLOAT's square of 3.2 x the face box's larger half side) around a *smoothed* face track, resized to
  ``size`` x ``size``;
* ``tracks.npz`` with per-frame ``left_eye_box``, ``right_eye_box``, ``mouth_box`` (float32 ``(T, 4)``
  ``x0, y0, x1, y1`` in output-frame pixels, see :mod:`floatalk.data.tracking`), ``face_box`` (the
  smoothed detector box in output-frame pixels), ``crop_box`` (the crop square in source pixels; it may
  extend beyond the frame), ``face_found`` and ``landmarks_found`` (bool, whether the frame's face box /
  component boxes were measured rather than interpolated).

The face track. Videos are decoded twice, streaming (only the 16 kHz audio, about 4 MB a minute, and
a few numbers per frame are held in memory):

1. The MediaPipe face detector (:func:`floatalk.face.detect_faces`) runs on the selected frames
   (downscaled to a long side of at most ``DETECT_LONG_SIDE``), every ``detect_every``-th frame. The
   face followed is the one overlapping the previous detection; a non-overlapping face is taken as a
   new track only after the old one has been lost for half a second (a scene cut). After a miss the
   detector retries after 2, 4, then 8 frames, and stops for the rest of a segment that is already
   known to fail, so faceless footage is rejected quickly. Frames between two successful detections
   are interpolated; those next to a miss count as missing. A segment fails if the face is missing
   in more than ``max_missing`` of its frames or for more than ``max_gap_seconds`` in a row. The box
   track is then smoothed (5-frame median, then a centred moving average over ``smooth_seconds``;
   :func:`floatalk.data.tracking.smooth_boxes`), separately on each side of a scene cut.
2. Each frame is cropped on the smoothed box, written as JPEG (or PNG), and MediaPipe's face mesh
   (tracking mode, on the crop seen at >= 256 px) gives the landmarks for the component boxes every
   ``landmarks_every``-th frame; missing ones are interpolated (placed at average positions inside
   the face box if the mesh finds nothing in a whole clip).

Long videos are cut into segments of ``max_seconds`` (ids ``<id>-000``, ``<id>-001``, ...); a last
segment shorter than ``min_frames`` is dropped. Clip ids come from the path relative to the source
folder (``a/b c.mp4`` -> ``a__b_c``; colliding names get a hash of the path appended), and the
train/test split is decided per source video by hashing its id (``test_fraction``), so segments of one
video never end up on both sides.

Resuming: a video is skipped when every clip planned for it (recorded in its clips' ``meta.json``)
exists; missing segments of a partly done video are added. Clips appear atomically
(:func:`floatalk.data.layout.commit_clip`). Unreadable, corrupt, empty, silent, too short or faceless
videos are skipped with a reason in the :class:`PrepareReport`; the others are still processed.
Several videos are prepared in parallel in worker processes (spawned, each with its own detector).
"""

from __future__ import annotations

import collections
import concurrent.futures as cf
import dataclasses
import hashlib
import math
import multiprocessing
import os
import re
import shutil
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from floatalk.data import tracking
from floatalk.data.layout import (
    FRAME_FORMATS,
    ClipMeta,
    DatasetInfo,
    clip_dir,
    commit_clip,
    list_clips,
    read_dataset_info,
    staging_dir,
    write_audio,
    write_dataset_info,
    write_frame,
)
from floatalk.errors import InputError

if TYPE_CHECKING:
    from floatalk.io.video_reader import DecodedFrame, VideoReader

__all__ = [
    "DETECT_LONG_SIDE",
    "FPS",
    "SAMPLE_RATE",
    "VIDEO_EXTENSIONS",
    "FileResult",
    "PrepareOptions",
    "PrepareReport",
    "assign_clip_ids",
    "discover_videos",
    "prepare_dataset",
    "prepare_video",
    "split_for",
]

FPS = 25
SAMPLE_RATE = 16000
SAMPLES_PER_FRAME = SAMPLE_RATE // FPS
VIDEO_EXTENSIONS = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v", ".flv", ".mpg", ".mpeg")
#: Frames are downscaled to at most this long side for face detection (boxes are mapped back).
DETECT_LONG_SIDE = 640
#: The face mesh sees the crop at least this large (it is re-cropped when ``size`` is smaller).
MESH_MIN_SIZE = 256
#: A face that does not overlap the tracked one is accepted as a new track only after this long.
NEW_TRACK_AFTER_SECONDS = 0.5
#: Largest detection retry interval after misses, in frames.
MAX_RETRY_GAP = 8
_FILL_MODES = ("black", "edge", "reflect")
_ID_MAX_LEN = 100


class _SkipError(Exception):
    """A video (or a segment) that cannot be used; the message is the reason shown in the report."""


# ----------------------------------------------------------------------------------------------------
# Options and results
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PrepareOptions:
    """Settings of `floatalk prepare` (see the module docstring).

    Attributes:
        size: Side of the output face crops in pixels.
        max_seconds: Longer videos are cut into segments of at most this length (0: never cut).
        min_frames: Videos (and trailing segments) shorter than this many 25 fps frames are skipped.
        test_fraction: Fraction of source videos held out as the ``"test"`` split (by hash of the id).
        allow_silent: Use videos without an audio track, writing silence.
        detect_every: Run the face detector on every k-th frame and interpolate in between.
        landmarks_every: Run the face mesh (component boxes) on every k-th frame and interpolate.
        smooth_seconds: Length of the moving average that smooths the face track.
        max_missing: A segment fails when the face is missing in more than this fraction of frames.
        max_gap_seconds: ... or when it is missing for longer than this in a row.
        crop_fill: Fill of the crop outside the frame: ``black`` (as inference), ``edge`` or ``reflect``.
        frame_format: ``jpg`` or ``png``.
        jpeg_quality: JPEG quality of the frames.
        workers: Parallel worker processes (None: ``min(4, cpu_count)``).
    """

    size: int = 512
    max_seconds: float = 60.0
    min_frames: int = 25
    test_fraction: float = 0.0
    allow_silent: bool = False
    detect_every: int = 1
    landmarks_every: int = 1
    smooth_seconds: float = 0.5
    max_missing: float = 0.2
    max_gap_seconds: float = 2.0
    crop_fill: str = "black"
    frame_format: str = "jpg"
    jpeg_quality: int = 95
    workers: int | None = None

    def validate(self) -> PrepareOptions:
        """Checks every field; returns ``self``. Raises :class:`InputError` naming the bad option."""

        def integer(name: str, lo: int, hi: int | None = None) -> None:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo or (hi and v > hi):
                bound = f"between {lo} and {hi}" if hi else f"at least {lo}"
                raise InputError(f"--{name.replace('_', '-')} must be an integer {bound}, got {v!r}")

        def number(name: str, lo: float, hi: float | None = None) -> None:
            v = getattr(self, name)
            ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= lo
            if not ok or (hi is not None and v > hi):
                bound = f"between {lo:g} and {hi:g}" if hi is not None else f"at least {lo:g}"
                raise InputError(f"--{name.replace('_', '-')} must be a number {bound}, got {v!r}")

        integer("size", 16, 4096)
        number("max_seconds", 0.0)
        integer("min_frames", 1)
        number("test_fraction", 0.0, 1.0)
        integer("detect_every", 1, 100)
        integer("landmarks_every", 1, 100)
        number("smooth_seconds", 0.0, 10.0)
        number("max_missing", 0.0, 1.0)
        number("max_gap_seconds", 0.0)
        integer("jpeg_quality", 1, 100)
        if self.workers is not None:
            integer("workers", 1, 256)
        if self.crop_fill not in _FILL_MODES:
            raise InputError(f"--crop-fill must be one of {', '.join(_FILL_MODES)}, got {self.crop_fill!r}")
        if self.frame_format not in FRAME_FORMATS:
            raise InputError(
                f"--frame-format must be one of {', '.join(FRAME_FORMATS)}, got {self.frame_format!r}"
            )
        if 0 < self.max_seconds * FPS < self.min_frames:
            raise InputError(
                f"--max-seconds {self.max_seconds:g} is shorter than --min-frames {self.min_frames} frames"
            )
        return self

    @property
    def max_frames(self) -> int:
        """Segment length in frames (a huge number when videos are never cut)."""
        return max(1, round(self.max_seconds * FPS)) if self.max_seconds > 0 else 1 << 62


@dataclass
class FileResult:
    """What happened to one source video.

    Attributes:
        source: Path relative to the source folder.
        status: ``"prepared"`` (clips written now), ``"done"`` (all its clips existed already) or
            ``"skipped"``.
        clips: Ids of the clips written now (or that existed, for ``"done"``).
        frames: Number of 25 fps frames written now.
        reason: Why the video was skipped (``"skipped"`` only).
        notes: Segments that were dropped, and why.
        source_frames: Source frames decoded (both passes count once).
        seconds: Wall time spent on it.
    """

    source: str
    status: str
    clips: list[str] = field(default_factory=list)
    frames: int = 0
    reason: str = ""
    notes: list[str] = field(default_factory=list)
    source_frames: int = 0
    seconds: float = 0.0


@dataclass
class PrepareReport:
    """The outcome of :func:`prepare_dataset`: one :class:`FileResult` per source video, sorted by path."""

    out_dir: str
    results: list[FileResult]
    seconds: float = 0.0

    def _with(self, status: str) -> list[FileResult]:
        return [r for r in self.results if r.status == status]

    @property
    def prepared(self) -> list[FileResult]:
        return self._with("prepared")

    @property
    def done(self) -> list[FileResult]:
        return self._with("done")

    @property
    def skipped(self) -> list[FileResult]:
        return self._with("skipped")

    @property
    def ok(self) -> bool:
        """True when the dataset holds at least one clip from these videos (made now or before)."""
        return any(r.clips for r in self.results if r.status in ("prepared", "done"))

    def summary(self) -> str:
        """A multi-line report: counts, then one line per skipped video and per dropped segment."""
        clips = sum(len(r.clips) for r in self.prepared)
        frames = sum(r.frames for r in self.prepared)
        lines = [
            f"prepared {clips} clip{'s' * (clips != 1)} ({frames} frames, {frames / FPS:.1f} s) from "
            f"{len(self.prepared)} of {len(self.results)} videos in {self.seconds:.1f} s; "
            f"{len(self.done)} already done, {len(self.skipped)} skipped -> {self.out_dir}"
        ]
        for r in self.results:
            if r.status == "skipped":
                lines.append(f"  skipped {r.source}: {r.reason}")
            lines.extend(f"  dropped part of {r.source}: {note}" for note in r.notes)
        return "\n".join(lines)

    def error_line(self) -> str:
        """The one-line error when nothing could be prepared."""
        n = len(self.results)
        return f"no clip could be prepared: all {n} video{'s' * (n != 1)} were skipped (reasons above)"


# ----------------------------------------------------------------------------------------------------
# Discovery, ids, splits
# ----------------------------------------------------------------------------------------------------


def discover_videos(
    src_dir: str | os.PathLike[str], exclude: str | os.PathLike[str] | None = None
) -> list[Path]:
    """Video files under ``src_dir`` (recursive, sorted; hidden files/folders and ``exclude`` left out)."""
    root = Path(src_dir)
    skip = Path(exclude).resolve() if exclude is not None else None
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        dirnames[:] = sorted(
            d for d in dirnames if not d.startswith(".") and (skip is None or (here / d).resolve() != skip)
        )
        found.extend(
            here / name
            for name in sorted(filenames)
            if not name.startswith(".") and Path(name).suffix.lower() in VIDEO_EXTENSIONS
        )
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def _short_hash(text: str, n: int = 8) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:n]


def _sanitise(rel: str) -> str:
    stem = rel.rsplit(".", 1)[0] if "." in Path(rel).name else rel
    parts = [re.sub(r"[^A-Za-z0-9._-]", "_", p) for p in stem.split("/") if p]
    text = "__".join(parts).lstrip(".") or "clip"
    if len(text) > _ID_MAX_LEN:
        text = f"{text[: _ID_MAX_LEN - 9]}-{_short_hash(rel)}"
    return text


def assign_clip_ids(relative_paths: list[str]) -> dict[str, str]:
    """Clip ids for source paths (POSIX, relative to the source folder).

    The id is the path without its extension, folders joined by ``__``, characters other than letters,
    digits, ``.``, ``-``, ``_`` replaced by ``_``. Paths whose ids collide (``a.mp4`` and ``a.mov``,
    ``a b.mp4`` and ``a_b.mp4``) all get ``-<8 hex digits of a hash of the path>`` appended.
    """
    base = {rel: _sanitise(rel) for rel in relative_paths}
    counts: dict[str, int] = {}
    for v in base.values():
        counts[v] = counts.get(v, 0) + 1
    return {rel: (v if counts[v] == 1 else f"{v}-{_short_hash(rel)}") for rel, v in base.items()}


def split_for(clip_id: str, test_fraction: float) -> str:
    """``"test"`` for a deterministic ``test_fraction`` of ids (by SHA-256), else ``"train"``."""
    if test_fraction <= 0:
        return "train"
    u = int(hashlib.sha256(clip_id.encode("utf-8")).hexdigest()[:16], 16) / float(1 << 64)
    return "test" if u < test_fraction else "train"


def _segment_id(base: str, index: int, count: int) -> str:
    return base if count == 1 else f"{base}-{index:03d}"


# ----------------------------------------------------------------------------------------------------
# Decoding: frames at 25 fps, streaming
# ----------------------------------------------------------------------------------------------------


def _open_video(path: Path) -> VideoReader:
    """The reader of one source video; a file it cannot use becomes a skip with the reader's reason."""
    from floatalk.io.video_reader import VideoError, VideoReader

    try:
        return VideoReader(path)
    except VideoError as e:
        raise _SkipError(e.reason) from None


def _selected(video: VideoReader) -> Iterator[tuple[int, DecodedFrame]]:
    """``(j, frame)`` for 25 fps frame ``j``: the source frame nearest ``j / 25`` (see the module docstring).

    A video of which no frame decodes becomes a skip with the reader's reason.
    """
    from floatalk.io.video_reader import VideoError

    try:
        yield from video.resampled(FPS)
    except VideoError as e:
        raise _SkipError(e.reason) from None


def _reason(e: BaseException) -> str:
    strerror = getattr(e, "strerror", None)
    if isinstance(strerror, str) and strerror.strip():
        return strerror.strip().splitlines()[0]
    lines = str(e).strip().splitlines()
    return lines[0] if lines and lines[0] else type(e).__name__


# ----------------------------------------------------------------------------------------------------
# Pass 1: the face track
# ----------------------------------------------------------------------------------------------------


@dataclass
class _Track:
    num_frames: int
    boxes: np.ndarray  # (T, 4) smoothed face boxes, source pixels
    found: np.ndarray  # (T,) bool, face measured or interpolated between detections
    failed: dict[int, str]  # segment index -> reason
    source_size: tuple[int, int]


def _detect_track(video: VideoReader, options: PrepareOptions) -> _Track:
    from floatalk.face import detect_faces

    seg_len = options.max_frames
    max_missing_frames = options.max_missing * seg_len
    max_gap = max(1, round(options.max_gap_seconds * FPS))
    new_track_after = round(NEW_TRACK_AFTER_SECONDS * FPS)
    gap_reason = f"face missing for more than {options.max_gap_seconds:g} s in a row (--max-gap-seconds)"

    attempts: list[int] = []
    hits: list[bool] = []
    hit_frames: list[int] = []
    hit_boxes: list[tuple[float, float, float, float]] = []
    breaks: list[int] = []  # indices into hit_frames where a new track starts
    missing: dict[int, int] = {}
    run = 0
    doomed: dict[int, str] = {}
    next_attempt = 0
    misses = 0
    source_size = (0, 0)
    last: tuple[int, DecodedFrame] | None = None

    def attempt(j: int, frame: DecodedFrame) -> None:
        nonlocal next_attempt, misses, run
        small = frame.rgb(DETECT_LONG_SIDE)
        full_w, full_h = frame.size
        sx, sy = full_w / small.shape[1], full_h / small.shape[0]
        faces = [(f.x1 * sx, f.y1 * sy, f.x2 * sx, f.y2 * sy) for f in detect_faces(small)]
        chosen = None
        if faces:
            if not hit_boxes:
                chosen = faces[0]
            else:
                ious = [tracking.box_iou(f, hit_boxes[-1]) for f in faces]
                best = int(np.argmax(ious))
                if ious[best] > 0.2:
                    chosen = faces[best]
                elif j - hit_frames[-1] > new_track_after:
                    chosen = faces[0]
                    breaks.append(len(hit_frames))
        hit = chosen is not None
        # Frames since the previous attempt: missing unless both ends found the face.
        prev_attempt, prev_hit = (attempts[-1], hits[-1]) if attempts else (j, True)
        gap_missing = not (prev_hit and hit)
        for f in range(prev_attempt + 1, j + 1):
            miss = gap_missing if f < j else not hit
            c = f // seg_len
            if f % seg_len == 0:
                run = 0
            if miss:
                missing[c] = missing.get(c, 0) + 1
                run += 1
                if c not in doomed and run > max_gap:
                    doomed[c] = gap_reason
                elif c not in doomed and missing[c] > max_missing_frames:
                    doomed[c] = (
                        f"face missing in more than {options.max_missing:.0%} of frames (--max-missing)"
                    )
            else:
                run = 0
        if j == 0 and not hit:
            missing[0] = missing.get(0, 0) + 1
            run = 1
        attempts.append(j)
        hits.append(hit)
        if hit:
            hit_frames.append(j)
            hit_boxes.append(chosen)
            misses = 0
            next_attempt = j + options.detect_every
        else:
            misses += 1
            next_attempt = j + max(options.detect_every, min(2**misses, MAX_RETRY_GAP))

    for j, frame in _selected(video):
        if j == 0:
            source_size = frame.size
        segment = j // seg_len
        if (j == next_attempt or j % seg_len == 0) and segment not in doomed:
            if j % seg_len == 0 and j != next_attempt:
                next_attempt = j
            attempt(j, frame)
        last = (j, frame)
    if last is None:
        raise _SkipError(
            "not a readable video (no frame could be decoded)"
            if video.failures
            else "video track has no frames"
        )
    n = last[0] + 1
    if attempts and attempts[-1] != n - 1 and (n - 1) // seg_len not in doomed:
        attempt(n - 1, last[1])
    if n < options.min_frames:
        raise _SkipError(f"too short: {n} frames at {FPS} fps (< --min-frames {options.min_frames})")
    if not hit_frames:
        raise _SkipError("no face found")

    found = tracking.coverage_mask(np.array(attempts), np.array(hits), n)
    failed: dict[int, str] = {}
    num_segments = -(-n // seg_len)
    for c in range(num_segments):
        a, b = c * seg_len, min(n, (c + 1) * seg_len)
        miss = ~found[a:b]
        frac = float(miss.mean())
        gap = tracking.longest_run(miss)
        if b - a < options.min_frames:
            failed[c] = f"last {b - a} frames (< --min-frames {options.min_frames})"
        elif c in doomed:  # detection stopped there early: the reason it stopped
            failed[c] = doomed[c]
        elif frac > options.max_missing:
            failed[c] = f"face missing in {frac:.0%} of frames (> --max-missing {options.max_missing:g})"
        elif gap > max_gap:
            failed[c] = gap_reason
    if len(failed) == num_segments:
        first = failed[min(failed)]
        if num_segments == 1:
            raise _SkipError(f"no usable face track: {first}")
        raise _SkipError(f"no usable face track in any of its {num_segments} segments (segment 0: {first})")

    # Box per frame: interpolate between detections, piecewise between track breaks.
    fr = np.array(hit_frames)
    bx = np.array(hit_boxes, np.float64)
    starts = [0, *breaks, len(fr)]
    boxes = np.zeros((n, 4))
    frame_breaks = []
    for p in range(len(starts) - 1):
        lo_hit, hi_hit = starts[p], starts[p + 1]
        lo = 0 if p == 0 else (fr[lo_hit - 1] + fr[lo_hit]) // 2 + 1
        hi = n if p == len(starts) - 2 else (fr[hi_hit - 1] + fr[hi_hit]) // 2 + 1
        if p > 0:
            frame_breaks.append(lo)
        t = np.arange(lo, hi)
        for d in range(4):
            boxes[lo:hi, d] = np.interp(t, fr[lo_hit:hi_hit], bx[lo_hit:hi_hit, d])
    window = max(1, round(options.smooth_seconds * FPS))
    boxes = tracking.smooth_boxes(boxes, window, np.array(frame_breaks))
    return _Track(n, boxes, found, failed, source_size)


# ----------------------------------------------------------------------------------------------------
# Pass 2: crops, landmarks, clips
# ----------------------------------------------------------------------------------------------------


class _Mesh:
    """The face mesh of one segment (tracking mode), or nothing when MediaPipe is unusable."""

    def __init__(self) -> None:
        from floatalk.face.mediapipe import FaceMesh

        self._mesh: FaceMesh | None = None
        try:
            self._mesh = FaceMesh(purpose="the eye and mouth boxes")
        except Exception:  # an unusable mesh only means template component boxes
            self._mesh = None

    def landmarks(self, rgb: np.ndarray) -> np.ndarray | None:
        """``(468, 2)`` float64 pixel ``(x, y)`` of the face in ``rgb`` (the next frame), or None."""
        if self._mesh is None:
            return None
        lm = self._mesh.landmarks(rgb)
        return None if lm is None else lm[:, :2].copy()

    def close(self) -> None:
        if self._mesh is not None:
            self._mesh.close()
            self._mesh = None


@dataclass
class _Segment:
    index: int
    clip_id: str
    start: int
    stop: int
    staging: Path | None = None
    written: int = 0
    mesh: _Mesh | None = None
    comps: dict[str, np.ndarray] = field(default_factory=dict)
    lm_found: np.ndarray | None = None


def _load_audio(path: Path, video: VideoReader, options: PrepareOptions) -> tuple[np.ndarray | None, float]:
    """The 16 kHz mono track shifted so sample 0 is the first video frame, or None (silent)."""
    from floatalk.io.audio import load_audio

    if not video.has_audio:
        if options.allow_silent:
            return None, 0.0
        raise _SkipError("no audio track (pass --allow-silent to use it with silence)")
    try:
        audio = load_audio(path, SAMPLE_RATE)
    except InputError as e:
        raise _SkipError(f"audio unusable: {str(e).split(': ', 1)[-1]}") from None
    offset = video.start_time - video.audio_start_time
    shift = round(offset * SAMPLE_RATE)
    if shift > 0:
        audio = audio[shift:]
    elif shift < 0:
        audio = np.concatenate([np.zeros(-shift, np.float32), audio])
    return audio, offset


def _write_clip(
    root: Path,
    seg: _Segment,
    track: _Track,
    windows: list[Any],
    audio: np.ndarray | None,
    meta_common: dict[str, Any],
    options: PrepareOptions,
    split: str,
    rel: str,
) -> None:
    assert seg.staging is not None and seg.lm_found is not None
    n = seg.stop - seg.start
    size = options.size
    boxes = track.boxes[seg.start : seg.stop]
    face_out = np.zeros((n, 4))
    crop_box = np.zeros((n, 4))
    for i, win in enumerate(windows):
        s = size / win.side
        x0, y0 = win.left, win.top
        face_out[i] = (boxes[i] - (x0, y0, x0, y0)) * s
        crop_box[i] = (win.left, win.top, win.right, win.bottom)
    comps: dict[str, np.ndarray] = {}
    if seg.lm_found.any():
        for name, values in seg.comps.items():
            comps[name] = tracking.fill_missing(values, seg.lm_found)
        component_source = "face_mesh"
    else:
        comps = tracking.template_component_boxes(face_out)
        component_source = "template"
    tracks = {name: v.astype(np.float32) for name, v in comps.items()}
    tracks.update(
        face_box=face_out.astype(np.float32),
        crop_box=crop_box.astype(np.float32),
        face_found=track.found[seg.start : seg.stop].copy(),
        landmarks_found=seg.lm_found.copy(),
    )
    np.savez(seg.staging / "tracks.npz", **tracks)

    num_samples = n * SAMPLES_PER_FRAME
    padded = 0
    if audio is None:
        samples = np.zeros(num_samples, np.float32)
    else:
        samples = audio[seg.start * SAMPLES_PER_FRAME : seg.start * SAMPLES_PER_FRAME + num_samples]
        padded = num_samples - samples.shape[0]
        if padded > 0:
            samples = np.concatenate([samples, np.zeros(padded, np.float32)])
    write_audio(seg.staging, samples, SAMPLE_RATE)

    sides = crop_box[:, 2] - crop_box[:, 0]
    centres = (crop_box[:, :2] + crop_box[:, 2:]) / 2
    extra = {
        **meta_common,
        "segment": seg.index,
        "start_frame": seg.start,
        "start_time": seg.start / FPS,
        "face_found_fraction": round(float(track.found[seg.start : seg.stop].mean()), 4),
        "landmarks_found_fraction": round(float(seg.lm_found.mean()), 4),
        "component_boxes": component_source,
        "audio_padded_samples": max(0, int(padded)) if audio is not None else 0,
        "crop": {
            "side_min": int(sides.min()),
            "side_median": float(np.median(sides)),
            "side_max": int(sides.max()),
            "center_first": [float(v) for v in centres[0]],
            "center_mean": [round(float(v), 2) for v in centres.mean(axis=0)],
            "center_range": [round(float(v), 2) for v in centres.max(axis=0) - centres.min(axis=0)],
        },
    }
    meta = ClipMeta(
        clip_id=seg.clip_id,
        num_frames=n,
        num_samples=num_samples,
        size=size,
        frame_format=options.frame_format,
        split=split,
        emotion=None,
        source=rel,
        extra=extra,
    )
    commit_clip(root, seg.staging, meta)
    seg.staging = None


def prepare_video(
    path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    rel: str,
    clip_id: str,
    options: PrepareOptions,
    split: str = "train",
) -> FileResult:
    """Prepares one video into ``out_dir`` (see the module docstring); never raises for bad input.

    Args:
        path: The video file.
        out_dir: The dataset folder (``dataset.json`` is not written here).
        rel: The video's path relative to the source folder (stored as ``ClipMeta.source``).
        clip_id: Base clip id (segments get ``-000``, ``-001``, ...).
        options: Settings.
        split: ``"train"`` or ``"test"`` for all its clips.

    Returns:
        A :class:`FileResult` (status ``"prepared"`` or ``"skipped"`` with the reason).
    """
    started = time.perf_counter()
    result = FileResult(source=rel, status="skipped")
    segments: list[_Segment] = []
    video = None
    try:
        video = _open_video(Path(path))
        audio, offset = _load_audio(Path(path), video, options)
        track = _detect_track(video, options)
        pass1_decoded = video.decoded
        video.close()
        result.notes = [f"segment {c}: {reason}" for c, reason in sorted(track.failed.items())]
        num_segments = -(-track.num_frames // options.max_frames)
        ids = [_segment_id(clip_id, c, num_segments) for c in range(num_segments)]
        planned = [ids[c] for c in range(num_segments) if c not in track.failed]
        todo = [
            _Segment(c, ids[c], c * options.max_frames, min(track.num_frames, (c + 1) * options.max_frames))
            for c in range(num_segments)
            if c not in track.failed and not (clip_dir(out_dir, ids[c]) / "meta.json").is_file()
        ]
        from floatalk.face import crop_face, crop_window, detector_name

        meta_common = {
            "source_fps": round(video.fps, 6),
            "source_size": list(track.source_size),
            "source_frames": pass1_decoded,
            "source_duration": round(video.end_time, 6),
            "num_segments": num_segments,
            "planned_clips": planned,
            "silent": audio is None,
            "audio_offset_seconds": round(offset, 6),
            "detector": detector_name(),
            "detect_every": options.detect_every,
            "landmarks_every": options.landmarks_every,
            "smooth_seconds": options.smooth_seconds,
            "crop_fill": options.crop_fill,
        }
        video = _open_video(Path(path))
        by_start = {s.start: s for s in todo}
        current: _Segment | None = None
        windows: list[Any] = []
        cached: tuple[int, np.ndarray] | None = None
        last_stop = max((s.stop for s in todo), default=0)
        for j, frame in _selected(video) if todo else ():
            if j >= last_stop:
                break
            if j in by_start:
                current = by_start[j]
                current.staging = staging_dir(out_dir, current.clip_id)
                segments.append(current)
                current.mesh = _Mesh()
                n = current.stop - current.start
                current.comps = {k: np.zeros((n, 4)) for k in ("left_eye_box", "right_eye_box", "mouth_box")}
                current.lm_found = np.zeros(n, bool)
                windows = []
            if current is None or not current.start <= j < current.stop:
                continue
            if cached is None or cached[0] != frame.index:
                cached = (frame.index, frame.rgb())
            rgb = cached[1]
            box = tuple(track.boxes[j])
            windows.append(crop_window(box))
            crop = crop_face(rgb, box, options.size, options.crop_fill)
            i = j - current.start
            write_frame(current.staging, i, crop, options.frame_format, options.jpeg_quality)
            current.written += 1
            assert current.mesh is not None and current.lm_found is not None
            if i % options.landmarks_every == 0 or j == current.stop - 1:
                big = (
                    crop
                    if options.size >= MESH_MIN_SIZE
                    else crop_face(rgb, box, MESH_MIN_SIZE, options.crop_fill)
                )
                lm = current.mesh.landmarks(big)
                if lm is not None:
                    lm *= options.size / big.shape[0]
                    for name, b in tracking.component_boxes(lm).items():
                        current.comps[name][i] = b
                    current.lm_found[i] = True
            if j == current.stop - 1:
                current.mesh.close()
                _write_clip(Path(out_dir), current, track, windows, audio, meta_common, options, split, rel)
                result.clips.append(current.clip_id)
                result.frames += current.written
                current = None
        result.source_frames = pass1_decoded
        for seg in todo:
            if seg.staging is not None or seg.clip_id not in result.clips:
                result.notes.append(f"segment {seg.index}: decoding stopped after {seg.written} frames")
        if not result.clips and not todo:  # every planned clip existed already
            result.status = "done"
            result.clips = planned
        elif result.clips:
            result.status = "prepared"
        else:
            result.reason = "no clip could be written"
    except _SkipError as e:
        result.reason = str(e)
    except InputError as e:
        result.reason = str(e)
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as e:  # one bad video must not stop a long run
        where = traceback.extract_tb(e.__traceback__)[-1]
        at = f"{Path(where.filename).name}:{where.lineno}"
        result.reason = f"unexpected error ({type(e).__name__}: {_reason(e)}; at {at})"
    finally:
        if video is not None:
            video.close()
        for seg in segments:
            if seg.mesh is not None:
                seg.mesh.close()
            if seg.staging is not None:
                shutil.rmtree(seg.staging, ignore_errors=True)
    if result.status == "skipped":
        result.clips, result.frames = [], 0
    result.seconds = time.perf_counter() - started
    return result


# ----------------------------------------------------------------------------------------------------
# The whole folder
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Job:
    path: str
    out_dir: str
    rel: str
    clip_id: str
    split: str
    options: PrepareOptions


def _run_job(job: _Job) -> FileResult:
    return prepare_video(job.path, job.out_dir, job.rel, job.clip_id, job.options, job.split)


def _check_dataset(out: Path, options: PrepareOptions, src: Path) -> None:
    if out.exists() and not out.is_dir():
        raise InputError(f"output path {str(out)!r} exists and is not a folder; choose another OUT_DIR")
    if (out / "dataset.json").is_file():
        info = read_dataset_info(out)
        if info.source != "prepare":
            raise InputError(
                f"{str(out)!r} holds a {info.source!r} dataset; prepare real videos into another folder"
            )
        if (info.size, info.fps, info.sample_rate) != (options.size, FPS, SAMPLE_RATE):
            raise InputError(
                f"{str(out)!r} was prepared with --size {info.size}; resume with the same size or use "
                "another OUT_DIR"
            )
        return
    try:
        write_dataset_info(
            out,
            DatasetInfo(
                size=options.size,
                fps=FPS,
                sample_rate=SAMPLE_RATE,
                source="prepare",
                extra={"source_dir": str(src.resolve()), "options": options_dict(options)},
            ),
        )
    except OSError as e:
        raise InputError(
            f"cannot write to {str(out)!r} ({e.strerror or e}); choose another OUT_DIR"
        ) from None


def _done_sources(out: Path) -> dict[str, list[str]]:
    """Source path -> its planned clip ids, for sources whose planned clips all exist."""
    existing = {m.clip_id: m for m in list_clips(out)}
    planned: dict[str, set[str]] = {}
    for meta in existing.values():
        planned.setdefault(meta.source, set()).update(meta.extra.get("planned_clips", [meta.clip_id]))
    return {src: sorted(ids) for src, ids in planned.items() if ids and ids.issubset(existing)}


def prepare_dataset(
    src_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    options: PrepareOptions | None = None,
    progress: bool | Callable[[FileResult], None] = False,
) -> PrepareReport:
    """Prepares every video under ``src_dir`` into the dataset folder ``out_dir``.

    Args:
        src_dir: Folder searched recursively for videos.
        out_dir: Dataset folder (created; an existing one is resumed, see the module docstring).
        options: Settings (defaults: :class:`PrepareOptions`).
        progress: True for a tqdm bar on stderr, or a callback called with each finished video.

    Returns:
        The :class:`PrepareReport` (check ``report.ok``).

    Raises:
        InputError: If ``src_dir`` is missing or holds no video, ``out_dir`` is unusable or was prepared
            with another size, or an option is invalid.
    """
    started = time.perf_counter()
    options = (options or PrepareOptions()).validate()
    src, out = Path(src_dir), Path(out_dir)
    if not src.exists():
        raise InputError(f"source folder {str(src)!r} does not exist; check the path")
    if not src.is_dir():
        raise InputError(f"source {str(src)!r} is not a folder; give the folder that holds the videos")
    files = discover_videos(src, exclude=out)
    if not files:
        exts = ", ".join(e.lstrip(".") for e in VIDEO_EXTENSIONS)
        raise InputError(f"no video files ({exts}) found under {str(src)!r}")
    _check_dataset(out, options, src)
    rels = [p.relative_to(src).as_posix() for p in files]
    ids = assign_clip_ids(rels)
    done = _done_sources(out)
    results: dict[str, FileResult] = {}
    jobs: list[_Job] = []
    for path, rel in zip(files, rels):
        if rel in done:
            results[rel] = FileResult(source=rel, status="done", clips=done[rel])
        else:
            split = split_for(ids[rel], options.test_fraction)
            jobs.append(_Job(os.fspath(path), os.fspath(out), rel, ids[rel], split, options))

    bar = None
    callback = progress if callable(progress) else None
    if progress is True:
        from tqdm import tqdm

        bar = tqdm(
            total=len(files),
            initial=len(done),
            unit="video",
            desc="preparing",
            dynamic_ncols=True,
            file=sys.stderr,
        )

    def finished(result: FileResult) -> None:
        results[result.source] = result
        if bar is not None:
            bar.update(1)
            bar.set_postfix_str(f"{sum(len(r.clips) for r in results.values())} clips", refresh=False)
        if callback is not None:
            callback(result)

    workers = min(options.workers or min(4, os.cpu_count() or 1), max(1, len(jobs)))
    try:
        if workers <= 1:
            for job in jobs:
                finished(_run_job(job))
        else:
            _run_pool(jobs, workers, finished)
    finally:
        if bar is not None:
            bar.close()
    ordered = [results[rel] for rel in rels]
    return PrepareReport(out_dir=os.fspath(out), results=ordered, seconds=time.perf_counter() - started)


def _run_pool(
    jobs: list[_Job],
    workers: int,
    finished: Callable[[FileResult], None],
    fn: Callable[[_Job], FileResult] = _run_job,
) -> None:
    """Runs ``fn`` on jobs in spawned worker processes, at most ``workers`` videos in flight.

    A worker that dies (a crash in native code, the OOM killer) breaks the pool: the videos that were
    in flight are then retried one at a time in a fresh process, a video that kills it again is
    reported as skipped, and the others continue in a new pool.
    """
    queue = collections.deque(jobs)
    suspects: collections.deque[_Job] = collections.deque()
    context = multiprocessing.get_context("spawn")
    while queue or suspects:
        isolate = bool(suspects)
        source = suspects if isolate else queue
        width = 1 if isolate else min(workers, len(source))
        executor = cf.ProcessPoolExecutor(max_workers=width, mp_context=context)
        in_flight: dict[cf.Future[FileResult], _Job] = {}
        try:
            broken = False
            while (source or in_flight) and not broken:
                while source and len(in_flight) < width:
                    job = source.popleft()
                    in_flight[executor.submit(fn, job)] = job
                done, _ = cf.wait(in_flight, return_when=cf.FIRST_COMPLETED)
                for future in sorted(done, key=lambda f: in_flight[f].rel):
                    job = in_flight.pop(future)
                    try:
                        result = future.result()
                    except cf.process.BrokenProcessPool:
                        broken = True
                        if isolate:
                            finished(
                                FileResult(job.rel, "skipped", reason="the worker process crashed on it")
                            )
                        else:
                            suspects.append(job)
                    else:
                        finished(result)
            if broken and not isolate:
                suspects.extend(sorted(in_flight.values(), key=lambda job: job.rel))
        except BaseException:
            executor.shutdown(wait=False, cancel_futures=True)
            raise
        executor.shutdown(wait=True)


def options_dict(options: PrepareOptions) -> dict[str, Any]:
    """The options that shape the data, as a JSON-serialisable dict (``workers`` left out)."""
    data = dataclasses.asdict(options)
    data.pop("workers", None)
    return data
