"""Lip sync of a talking-face video: mouth opening against the speech, and against a ground-truth track.

The visual side is :func:`floatalk.evaluate.mouth.track_mouth` (MediaPipe face mesh lip gap). The
speech side is :func:`speech_envelope`, a speech-band loudness envelope at the video frame rate:

1. for video frame ``i`` (shown at ``i / fps``), a Hann window of ``window_s`` (64 ms: its half-power
   width is about one 40 ms frame) centred on the middle of the frame, ``(i + 0.5) / fps``;
2. the mean power of the 300-3400 Hz band in that window (FFT; telephone speech band, which drops
   breath noise, hum and the voice fundamental), in dB;
3. mapped linearly from ``DYNAMIC_RANGE_DB`` (60 dB) below the loudest frame (0) to the loudest
   frame (1), so silence is 0 whatever the recording level (audio whose loudest frame is below
   ``QUIET_DB`` dBFS counts as silence throughout);
4. smoothed with a centred ``[1, 2, 1] / 4`` kernel (no delay).

Frames whose window centre lies past the end of the audio have no envelope (NaN).

Agreement (:func:`score_lipsync`): Pearson r between the opening and the envelope at the best lag
within ``±max_lag`` frames, and at lag 0, over the frames that have both a face and audio; Pearson r
against a ground-truth mouth track (e.g. ``mouth_open`` of a synthetic clip's ``tracks.npz``); the
fraction of silent frames (envelope more than ``silence_db`` below the loudest frame) whose mouth is
closed (opening below ``closed_threshold``). Lags follow one convention everywhere: the correlation at
lag ``k`` pairs ``opening[t]`` with ``envelope[t - k]``, so a positive lag means the mouth follows the
sound by ``k`` frames and a negative one that it moves before the sound.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from floatalk.errors import InputError

__all__ = [
    "BAND_HZ",
    "CLOSED_THRESHOLD",
    "DEFAULT_MAX_LAG",
    "DYNAMIC_RANGE_DB",
    "MIN_VALID_FRAMES",
    "SILENCE_DB",
    "LipSyncReport",
    "band_levels_db",
    "evaluate_lipsync",
    "lag_correlations",
    "lagged_pearson",
    "load_reference_track",
    "pearson",
    "score_lipsync",
    "speech_envelope",
]

#: Speech band whose power makes the envelope (Hz).
BAND_HZ = (300.0, 3400.0)
#: Length of the Hann window around each frame (seconds).
WINDOW_S = 0.064
#: The envelope spans this many dB below the loudest frame (0) up to it (1).
DYNAMIC_RANGE_DB = 60.0
#: Audio whose loudest frame is quieter than this (dBFS) is treated as silence throughout.
QUIET_DB = -70.0
#: A frame is silent when it is more than this many dB below the loudest frame.
SILENCE_DB = 35.0
#: A mouth is closed when its opening is below this (lip gap / inter-ocular distance).
CLOSED_THRESHOLD = 0.05
#: Default lag search range (frames either way).
DEFAULT_MAX_LAG = 4
#: Fewer frames with both a face and audio than this cannot be scored.
MIN_VALID_FRAMES = 10
#: A reference track may differ in length from the video by at most this fraction (or 2 frames).
_REFERENCE_LENGTH_TOLERANCE = 0.1
_CHUNK_FRAMES = 2048

PathLike = str | os.PathLike[str]


# ----------------------------------------------------------------------------------------------------
# Speech envelope
# ----------------------------------------------------------------------------------------------------


def band_levels_db(
    audio: np.ndarray,
    sample_rate: int,
    fps: float,
    num_frames: int | None = None,
    *,
    band: tuple[float, float] = BAND_HZ,
    window_s: float = WINDOW_S,
) -> np.ndarray:
    """Mean power (dBFS) of ``band`` in a Hann window around the middle of each video frame.

    Args:
        audio: 1-D mono waveform in ``[-1, 1]``.
        sample_rate: Its sample rate (Hz).
        fps: Video frame rate.
        num_frames: Number of frames (default: as many as the audio covers, rounded up).
        band: ``(low, high)`` band edges in Hz (``high`` is clipped to the Nyquist frequency).
        window_s: Window length in seconds.

    Returns:
        ``(num_frames,)`` float64 levels; a full-scale sine in the band is -3 dB. NaN for frames whose
        window centre lies past the end of the audio.

    Raises:
        ValueError: If the audio is not 1-D or a rate, length or band is invalid.
    """
    x = np.asarray(audio, np.float64)
    if x.ndim != 1:
        raise ValueError(f"audio must be a 1-D waveform, got shape {x.shape}")
    if not (sample_rate > 0 and fps > 0 and window_s > 0):
        raise ValueError("sample_rate, fps and window_s must be positive")
    if num_frames is None:
        num_frames = math.ceil(len(x) * fps / sample_rate)
    n = max(2, round(window_s * sample_rate))
    nfft = 1 << (n - 1).bit_length()
    freqs = np.fft.rfftfreq(nfft, 1.0 / sample_rate)
    lo, hi = band[0], min(band[1], 0.5 * sample_rate)
    if not 0 <= lo < hi:
        raise ValueError(f"invalid band {band!r} for a sample rate of {sample_rate} Hz")
    select = (freqs >= lo) & (freqs <= hi)
    window = np.hanning(n)
    scale = 2.0 / (nfft * float(np.sum(window**2)))
    padded = np.concatenate([np.zeros(n), x, np.zeros(n)])
    centres = (np.arange(num_frames) + 0.5) * (sample_rate / fps)
    starts = np.round(centres - n / 2).astype(np.int64) + n
    levels = np.full(num_frames, np.nan)
    offsets = np.arange(n)
    for a in range(0, num_frames, _CHUNK_FRAMES):
        b = min(num_frames, a + _CHUNK_FRAMES)
        idx = np.clip(starts[a:b, None] + offsets, 0, len(padded) - 1)
        spectrum = np.fft.rfft(padded[idx] * window, nfft, axis=1)
        power = scale * np.sum(np.abs(spectrum[:, select]) ** 2, axis=1)
        levels[a:b] = 10.0 * np.log10(power + 1e-20)
    levels[centres > len(x)] = np.nan
    return levels


def speech_envelope(
    audio: np.ndarray,
    sample_rate: int = 16000,
    fps: float = 25.0,
    num_frames: int | None = None,
    *,
    band: tuple[float, float] = BAND_HZ,
    window_s: float = WINDOW_S,
    smooth: bool = True,
) -> np.ndarray:
    """Speech-activity envelope at the video frame rate, in ``[0, 1]`` (see the module docstring).

    Args:
        audio: 1-D mono waveform in ``[-1, 1]``.
        sample_rate: Its sample rate (Hz).
        fps: Video frame rate.
        num_frames: Number of frames (default: as many as the audio covers, rounded up).
        band: Speech band in Hz.
        window_s: Window length in seconds.
        smooth: Apply the centred ``[1, 2, 1] / 4`` smoothing.

    Returns:
        ``(num_frames,)`` float64: 0 at or below ``DYNAMIC_RANGE_DB`` under the loudest frame, 1 at the
        loudest frame; NaN past the end of the audio.
    """
    levels = band_levels_db(audio, sample_rate, fps, num_frames, band=band, window_s=window_s)
    finite = np.isfinite(levels)
    if not finite.any():
        return levels
    peak = float(np.max(levels[finite]))
    if peak < QUIET_DB:
        return np.where(finite, 0.0, np.nan)
    env = np.clip((levels - (peak - DYNAMIC_RANGE_DB)) / DYNAMIC_RANGE_DB, 0.0, 1.0)
    if smooth:
        valid = env[finite]  # NaNs only ever trail (frames past the end of the audio)
        if valid.size >= 3:
            ext = np.concatenate([valid[:1], valid, valid[-1:]])
            env[finite] = 0.25 * ext[:-2] + 0.5 * ext[1:-1] + 0.25 * ext[2:]
    return env


# ----------------------------------------------------------------------------------------------------
# Correlations
# ----------------------------------------------------------------------------------------------------


def pearson(x: np.ndarray, y: np.ndarray, min_count: int = 3) -> float:
    """Pearson correlation over the positions where both are finite.

    Returns:
        r in ``[-1, 1]``; NaN if fewer than ``min_count`` pairs or either side is constant there.
    """
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    if x.shape != y.shape:
        raise ValueError(f"pearson needs equal shapes, got {x.shape} and {y.shape}")
    ok = np.isfinite(x) & np.isfinite(y)
    if int(ok.sum()) < max(2, min_count):
        return math.nan
    xs, ys = x[ok], y[ok]
    if np.ptp(xs) == 0 or np.ptp(ys) == 0:
        return math.nan
    a, b = xs - xs.mean(), ys - ys.mean()
    den = math.sqrt(float(np.dot(a, a)) * float(np.dot(b, b)))
    if not den > 0:
        return math.nan
    return float(np.clip(np.dot(a, b) / den, -1.0, 1.0))


def _shifted(x: np.ndarray, y: np.ndarray, lag: int) -> tuple[np.ndarray, np.ndarray]:
    """Pairs ``x[t]`` with ``y[t - lag]`` over the overlap."""
    n = min(len(x), len(y))
    x, y = x[:n], y[:n]
    if lag >= 0:
        return x[lag:], y[: n - lag]
    return x[: n + lag], y[-lag:]


def lag_correlations(
    x: np.ndarray, y: np.ndarray, max_lag: int, min_count: int = MIN_VALID_FRAMES
) -> dict[int, float]:
    """Pearson r of ``x[t]`` with ``y[t - k]`` for every lag ``k`` in ``[-max_lag, max_lag]``.

    The series are cut to the shorter one first; NaNs are excluded pairwise. A lag whose overlap has
    fewer than ``min_count`` valid pairs gives NaN.
    """
    if max_lag < 0:
        raise ValueError(f"max_lag must be >= 0, got {max_lag}")
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    return {k: pearson(*_shifted(x, y, k), min_count=min_count) for k in range(-max_lag, max_lag + 1)}


def lagged_pearson(
    x: np.ndarray, y: np.ndarray, max_lag: int = DEFAULT_MAX_LAG, min_count: int = MIN_VALID_FRAMES
) -> tuple[float, int, float]:
    """Best Pearson r of ``x[t]`` with ``y[t - k]`` over ``|k| <= max_lag``.

    Returns:
        ``(r_best, best_lag, r_lag0)``. The best lag maximises r (not |r|: anti-correlation is not
        sync); ties go to the smaller |lag|. ``(nan, 0, nan)`` if no lag can be scored.
    """
    rs = lag_correlations(x, y, max_lag, min_count)
    best_r, best_lag = math.nan, 0
    for k in sorted(rs, key=lambda k: (abs(k), k)):
        if math.isfinite(rs[k]) and not rs[k] <= best_r:  # first finite, then strictly better
            best_r, best_lag = rs[k], k
    return best_r, best_lag, rs[0]


# ----------------------------------------------------------------------------------------------------
# Reference tracks
# ----------------------------------------------------------------------------------------------------


def load_reference_track(path: PathLike, key: str = "mouth_open") -> np.ndarray:
    """Load a ground-truth mouth track: a ``.npy`` array, a ``.npz`` file or a dataset clip folder.

    Args:
        path: A ``(T,)`` ``.npy`` file; a ``.npz`` with array ``key``; or a clip folder whose
            ``tracks.npz`` has array ``key`` (synthetic datasets).
        key: Array name inside ``.npz`` files.

    Returns:
        ``(T,)`` float64.

    Raises:
        InputError: If the file or folder is missing or holds no usable 1-D track.
    """
    p = Path(path)
    shown = repr(os.fspath(path))
    if p.is_dir():
        if not (p / "tracks.npz").is_file():
            raise InputError(
                f"reference folder {shown} has no tracks.npz; "
                "give a synthetic dataset clip folder or a .npy file"
            )
        p = p / "tracks.npz"
    elif not p.exists():
        raise InputError(f"reference file {shown} does not exist; check the path")
    try:
        data = np.load(p, allow_pickle=False)
        if isinstance(data, np.lib.npyio.NpzFile):
            with data:
                names = list(data.files)
                track = np.asarray(data[key]) if key in names else None
            if track is None:
                raise InputError(
                    f"reference {str(p)!r} has no array {key!r} (it has: {', '.join(names) or 'none'})"
                )
        else:
            track = np.asarray(data)
    except InputError:
        raise
    except (OSError, ValueError, EOFError) as e:
        raise InputError(
            f"reference {shown} could not be read as .npy/.npz ({type(e).__name__}); "
            "give a .npy array or a clip folder with tracks.npz"
        ) from None
    track = np.squeeze(np.asarray(track))
    if track.ndim != 1 or track.size == 0 or not np.issubdtype(track.dtype, np.number):
        raise InputError(
            f"reference {shown} must hold a 1-D numeric track (one value per frame), "
            f"got shape {np.shape(track)} dtype {track.dtype}"
        )
    return track.astype(np.float64)


# ----------------------------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------------------------


@dataclass
class LipSyncReport:
    """Lip-sync measures of one video (NaN where a correlation is undefined, e.g. silent audio).

    Attributes:
        num_frames: Frames in the video.
        fps: Its frame rate.
        face_found_fraction: Fraction of frames where the face mesh found a face.
        valid_frames: Frames with both a face and audio (those that are scored).
        max_lag: Lag search range (frames either way).
        r_envelope: Pearson r of mouth opening vs speech envelope at the best lag.
        best_lag: That lag in frames (> 0: the mouth follows the sound; < 0: it moves before).
        r_envelope_lag0: Pearson r at lag 0.
        r_reference: Pearson r vs the reference mouth track at lag 0 (None without a reference).
        r_reference_best: Best Pearson r vs the reference within ``±max_lag``.
        reference_lag: Its lag (same convention as ``best_lag``).
        opening_mean: Mean opening over frames with a face.
        opening_std: Its standard deviation.
        opening_min: Smallest opening.
        opening_max: Largest opening.
        silent_fraction: Fraction of the scored frames that are silent.
        closed_during_silence: Fraction of silent scored frames whose mouth is closed (None if no
            frame is silent).
        closed_threshold: Opening below which a mouth counts as closed.
        silence_db: dB below the loudest frame under which a frame counts as silent.
        normalise: Normalisation of the opening (``interocular`` or ``face_height``).
        video: The video file (None when scoring arrays directly).
        audio: The audio file (None: the video's own sound track).
        reference: Where the reference track came from (None without one).
        seconds: Wall time of the evaluation.
        setup_seconds: The part of it spent starting MediaPipe.
        frames_per_second: Frames measured per second once MediaPipe has started (decoding included).
    """

    num_frames: int
    fps: float
    face_found_fraction: float
    valid_frames: int
    max_lag: int
    r_envelope: float
    best_lag: int
    r_envelope_lag0: float
    r_reference: float | None
    r_reference_best: float | None
    reference_lag: int | None
    opening_mean: float
    opening_std: float
    opening_min: float
    opening_max: float
    silent_fraction: float
    closed_during_silence: float | None
    closed_threshold: float
    silence_db: float
    normalise: str = "interocular"
    video: str | None = None
    audio: str | None = None
    reference: str | None = None
    seconds: float = 0.0
    setup_seconds: float = 0.0
    frames_per_second: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dict (NaN becomes None)."""

        def clean(v: Any) -> Any:
            if isinstance(v, float) and not math.isfinite(v):
                return None
            return v

        return {k: clean(v) for k, v in dataclasses.asdict(self).items()}

    def summary(self) -> str:
        """A few human-readable lines."""

        def r(v: float | None) -> str:
            return "n/a" if v is None or not math.isfinite(v) else f"{v:+.3f}"

        if self.best_lag > 0:
            lag_text = f"mouth follows the sound by {self.best_lag}"
        elif self.best_lag < 0:
            lag_text = f"mouth moves {-self.best_lag} before the sound"
        else:
            lag_text = "in step"
        lines = [
            f"lip sync of {self.video or 'the given tracks'}: "
            f"{self.num_frames} frames at {self.fps:.2f} fps, "
            f"face found in {100 * self.face_found_fraction:.1f}% ({self.valid_frames} frames scored)",
            f"  mouth opening ({self.normalise}): mean {self.opening_mean:.3f}, std {self.opening_std:.3f}, "
            f"range {self.opening_min:.3f} - {self.opening_max:.3f}",
            f"  vs speech envelope: r {r(self.r_envelope)} at lag {self.best_lag:+d} frames "
            f"({lag_text}; search ±{self.max_lag}), r {r(self.r_envelope_lag0)} at lag 0",
        ]
        if self.r_reference is not None:
            lines.append(
                f"  vs reference mouth track: r {r(self.r_reference)} at lag 0, "
                f"best {r(self.r_reference_best)} at lag {self.reference_lag:+d}"
            )
        closed = (
            "no silent frames"
            if self.closed_during_silence is None
            else f"mouth closed (< {self.closed_threshold:g}) "
            f"in {100 * self.closed_during_silence:.1f}% of them"
        )
        lines.append(
            f"  silence (> {self.silence_db:g} dB below the loudest frame): "
            f"{100 * self.silent_fraction:.1f}% of frames; {closed}"
        )
        if self.frames_per_second:
            lines.append(
                f"  measured in {self.seconds:.1f} s ({self.setup_seconds:.1f} s to start MediaPipe, "
                f"then {self.frames_per_second:.0f} frames/s)"
            )
        return "\n".join(lines)


def score_lipsync(
    opening: np.ndarray,
    envelope: np.ndarray,
    reference: np.ndarray | None = None,
    *,
    fps: float = 25.0,
    max_lag: int = DEFAULT_MAX_LAG,
    silence_db: float = SILENCE_DB,
    closed_threshold: float = CLOSED_THRESHOLD,
    normalise: str = "interocular",
    name: str = "",
) -> LipSyncReport:
    """Score a mouth-opening track against a speech envelope (and a reference track).

    Args:
        opening: ``(T,)`` mouth opening, NaN where no face was found.
        envelope: Speech envelope from :func:`speech_envelope` (NaN where there is no audio); cut or
            NaN-padded to ``T``.
        reference: Optional ground-truth mouth track; must have ``T`` frames within 10 % (or 2 frames);
            compared over the common frames.
        fps: Frame rate (reported only).
        max_lag: Lag search range in frames.
        silence_db: A frame is silent when its envelope is more than this many dB below the loudest.
        closed_threshold: Openings below this count as a closed mouth.
        normalise: Normalisation of ``opening`` (reported only).
        name: How to call the video in error messages.

    Returns:
        The :class:`LipSyncReport` (``video``/``audio``/``reference`` left None).

    Raises:
        InputError: If fewer than ``MIN_VALID_FRAMES`` frames have a face, or both a face and audio,
            or the reference length does not match.
    """
    opening = np.asarray(opening, np.float64).reshape(-1)
    t = opening.shape[0]
    env = np.full(t, np.nan)
    e = np.asarray(envelope, np.float64).reshape(-1)[:t]
    env[: e.shape[0]] = e
    face = np.isfinite(opening)
    n_face = int(face.sum())
    of = f" of {name}" if name else ""
    if n_face == 0:
        raise InputError(
            f"no face found in any of the {t} frames{of}; the lip-sync measure needs a visible face"
        )
    if n_face < MIN_VALID_FRAMES:
        raise InputError(
            f"a face was found in only {n_face} of the {t} frames{of}; the lip-sync measure needs at "
            f"least {MIN_VALID_FRAMES}"
        )
    valid = face & np.isfinite(env)
    n_valid = int(valid.sum())
    if n_valid < MIN_VALID_FRAMES:
        raise InputError(
            f"only {n_valid} frames have both a face and audio; the lip-sync measure needs at least "
            f"{MIN_VALID_FRAMES} (is the audio much shorter than the video?)"
        )
    r_best, lag, r0 = lagged_pearson(opening, env, max_lag)

    r_ref = r_ref_best = None
    ref_lag = None
    if reference is not None:
        ref = np.asarray(reference, np.float64).reshape(-1)
        if abs(ref.shape[0] - t) > max(2, _REFERENCE_LENGTH_TOLERANCE * t):
            raise InputError(
                f"the reference mouth track has {ref.shape[0]} frames but the video has {t}; "
                "give the track of the clip the video was made from"
            )
        r_ref_best, ref_lag, r_ref = lagged_pearson(opening, ref, max_lag)

    open_valid = opening[face]
    silence_level = 1.0 - silence_db / DYNAMIC_RANGE_DB
    silent = valid & (env < silence_level)
    n_silent = int(silent.sum())
    closed = float(np.mean(opening[silent] < closed_threshold)) if n_silent else None
    return LipSyncReport(
        num_frames=t,
        fps=float(fps),
        face_found_fraction=n_face / t,
        valid_frames=n_valid,
        max_lag=int(max_lag),
        r_envelope=r_best,
        best_lag=lag,
        r_envelope_lag0=r0,
        r_reference=r_ref,
        r_reference_best=r_ref_best,
        reference_lag=ref_lag,
        opening_mean=float(open_valid.mean()),
        opening_std=float(open_valid.std()),
        opening_min=float(open_valid.min()),
        opening_max=float(open_valid.max()),
        silent_fraction=n_silent / n_valid,
        closed_during_silence=closed,
        closed_threshold=float(closed_threshold),
        silence_db=float(silence_db),
        normalise=normalise,
    )


# ----------------------------------------------------------------------------------------------------
# Whole videos
# ----------------------------------------------------------------------------------------------------


def _has_audio(video: PathLike) -> bool:
    from floatalk.io.video_reader import VideoReader

    with VideoReader(video) as reader:
        return reader.has_audio


def evaluate_lipsync(
    video: PathLike,
    audio: PathLike | None = None,
    reference: PathLike | np.ndarray | None = None,
    *,
    max_lag: int = DEFAULT_MAX_LAG,
    normalise: str = "interocular",
    silence_db: float = SILENCE_DB,
    closed_threshold: float = CLOSED_THRESHOLD,
    progress: Callable[[int], None] | None = None,
) -> LipSyncReport:
    """Measure the lip sync of a talking-face video.

    Args:
        video: The video file (any container/codec FFmpeg reads).
        audio: The speech, if not the video's own sound track (any audio file, or a video with sound).
        reference: A ground-truth mouth track: an array, a ``.npy``/``.npz`` file or a dataset clip
            folder with ``tracks.npz`` (array ``mouth_open``).
        max_lag: Lag search range in frames (default 4).
        normalise: ``"interocular"`` or ``"face_height"``.
        silence_db: A frame is silent when its envelope is more than this many dB below the loudest.
        closed_threshold: Openings below this count as a closed mouth.
        progress: Called with the number of frames measured so far.

    Returns:
        The :class:`LipSyncReport`.

    Raises:
        InputError: For a missing or unreadable file, a file without a video track, a video without
            sound when no ``audio`` is given, no (or too little) face, a bad reference, or missing
            MediaPipe. The message is one line.
    """
    from floatalk.io import load_audio

    from .mouth import track_mouth

    if max_lag < 0:
        raise InputError(f"--max-lag must be >= 0, got {max_lag}")
    if normalise not in ("interocular", "face_height"):
        raise InputError(f"unknown normalisation {normalise!r}; use interocular or face_height")
    start = time.perf_counter()
    if audio is None and not _has_audio(video):
        raise InputError(f"video {os.fspath(video)!r} has no audio track; give the speech with --audio FILE")
    ref_track = None
    ref_name = None
    if reference is not None:
        if isinstance(reference, np.ndarray):
            ref_track, ref_name = np.asarray(reference, np.float64).reshape(-1), "array"
        else:
            ref_track, ref_name = load_reference_track(reference), os.fspath(reference)
    wave = load_audio(audio if audio is not None else video, 16000)
    track = track_mouth(video, normalise=normalise, progress=progress)
    fps = track.fps or 25.0
    if track.num_frames == 0:
        raise InputError(f"video {os.fspath(video)!r} has no frames; give a video with a visible face")
    envelope = speech_envelope(wave, 16000, fps, track.num_frames)
    report = score_lipsync(
        track.opening,
        envelope,
        ref_track,
        fps=fps,
        max_lag=max_lag,
        silence_db=silence_db,
        closed_threshold=closed_threshold,
        normalise=normalise,
        name=repr(os.fspath(video)),
    )
    seconds = time.perf_counter() - start
    return dataclasses.replace(
        report,
        video=os.fspath(video),
        audio=None if audio is None else os.fspath(audio),
        reference=ref_name,
        seconds=seconds,
        setup_seconds=track.setup_seconds,
        frames_per_second=track.frames_per_second,
    )
