"""Loading speech audio from any media file as mono float32 at a fixed sample rate.

Decoding uses PyAV (FFmpeg), so any container and codec FFmpeg reads works: WAV (8-bit unsigned,
16/24/32-bit integer, 32/64-bit float), FLAC, MP3, M4A/AAC, OGG/Vorbis, Opus, and the audio track of a
video file (MP4, MOV, MKV, WebM, ...).

Processing, in order:

1. Every decoded frame is converted to float in [-1, 1] (integer samples divided by their full scale,
   unsigned 8-bit centred at 128) and **downmixed to mono by averaging all channels** (LFE included).
2. For MP4/MOV/M4A files, the AAC end padding is removed using the duration the container declares,
   so audio written by :class:`floatalk.io.video.VideoWriter` comes back with its exact length. Encoder
   delay (priming) is already removed by FFmpeg for MP4 edit lists, MP3 LAME/Xing headers and Opus
   pre-skip.
3. The mono signal is resampled with libswresample through :class:`av.AudioResampler`, configured
   for high quality: a 256-tap Kaiser-windowed sinc (``beta = 14``) with its cutoff at 97% of the
   lower Nyquist frequency. FFmpeg's default (32 taps, ``beta = 9``) lets 8.4 kHz content through
   at -22 dB when going from 44.1 kHz to 16 kHz, where it aliases into the speech band; this
   configuration is flat (< 0.1 dB) up to 7.6 kHz and attenuates everything above 8.1 kHz by more
   than 140 dB, comparable to soxr "HQ" (which this FFmpeg build lacks) used by librosa. It still
   resamples a minute of 48 kHz audio in about 0.1 s. The output has exactly
   ``ceil(n * sample_rate / source_rate)`` samples and no delay (the filter delay is compensated).
4. If resampling overshoot (or a float file) takes the peak above 1, the whole signal is scaled down
   so the peak is exactly 1 rather than being clipped. A NaN or infinite sample is an error.

:func:`iter_audio` gives steps 1-3 as a stream of blocks (flat memory for any length);
:func:`load_audio` concatenates them. :class:`SpeechAudio` is what the pipeline hears: a mono
waveform at the model's rate, from a file (read block by block, as often as needed) or an array.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

from floatalk.errors import InputError
from floatalk.io._common import check_input_file, display_path, exact_fraction, short_reason

__all__ = [
    "SampleRanges",
    "SpeechAudio",
    "audio_duration_frames",
    "iter_audio",
    "load_audio",
    "resample_audio",
]

_FORMATS_HINT = "give a WAV, FLAC, MP3, M4A/AAC, OGG/Vorbis or Opus file, or a video with sound"

# libswresample options for the aresample filter behind av.AudioResampler (see the module docstring).
RESAMPLER_OPTIONS = {"filter_size": "256", "cutoff": "0.97", "kaiser_beta": "14", "phase_shift": "10"}
RESAMPLE_CHUNK = 1 << 16

# Full-scale values of the integer sample formats; u8 is handled separately (it is offset by 128).
_INT_FULL_SCALE = {"s16": 2.0**15, "s32": 2.0**31, "s64": 2.0**63}
_FLOAT_FORMATS = frozenset({"flt", "dbl"})

# Containers whose declared stream duration is exact (edit lists), so decoded padding can be trimmed.
EXACT_DURATION_FORMATS = frozenset({"mov", "mp4", "m4a", "3gp", "3g2", "mj2"})
# Trim at most this much end padding; more than that means the declared duration is not trustworthy.
_MAX_END_PADDING = 4096


def load_audio(path: str | os.PathLike[str], sample_rate: int = 16000) -> np.ndarray:
    """Decodes the first audio track of a media file to mono float32 at ``sample_rate``.

    See the module docstring for downmixing, resampling and normalisation details. This holds the
    whole waveform; :class:`SpeechAudio` reads long files block by block instead.

    Args:
        path: Path of an audio file, or of a video file with an audio track.
        sample_rate: Output sample rate in Hz.

    Returns:
        A 1-D ``float32`` array with values in ``[-1, 1]``.

    Raises:
        InputError: If the file is missing, a directory, empty, unreadable, not a media file or corrupt,
            has no audio track, contains no audio samples, or contains NaN or infinite samples.
        ValueError: If ``sample_rate`` is not a positive integer.
    """
    audio = np.concatenate([np.zeros(0, np.float32), *iter_audio(path, sample_rate)])
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    if peak > 1.0:
        audio /= peak
    return np.ascontiguousarray(audio, dtype=np.float32)


def iter_audio(
    path: str | os.PathLike[str], sample_rate: int = 16000, *, warn: bool = True
) -> Iterator[np.ndarray]:
    """Streams the first audio track of a media file as mono float32 blocks at ``sample_rate``.

    Steps 1-3 of the module docstring, in bounded memory: the blocks concatenated are exactly what
    :func:`load_audio` returns before its peak normalisation (step 4). Errors about the file are raised
    at the first ``next()``; a file with no samples raises once the whole track has been read.

    Args:
        path: Path of an audio file, or of a video file with an audio track.
        sample_rate: Output sample rate in Hz.
        warn: Warn about skipped packets and truncated files (off when re-reading a checked file).

    Yields:
        1-D ``float32`` arrays of consecutive samples (at most about 64k samples each).
    """
    sample_rate = _check_rate(sample_rate, "sample_rate")
    p = check_input_file(path, "audio", _FORMATS_HINT)
    shown = display_path(path)
    try:
        container = av.open(os.fspath(p), mode="r")
    except PermissionError:
        raise InputError(
            f"audio file {shown} cannot be read (permission denied); fix its permissions"
        ) from None
    except (av.FFmpegError, OSError, ValueError, UnicodeError) as e:
        raise InputError(
            f"audio file {shown} could not be decoded (not a media file or corrupt: {short_reason(e)}); "
            f"{_FORMATS_HINT}"
        ) from None
    with container:
        if not container.streams.audio:
            raise InputError(f"{shown}: file has no audio track; {_FORMATS_HINT}")
        stream = container.streams.best("audio") or container.streams.audio[0]
        exact = container.format.name.split(",")[0] in EXACT_DURATION_FORMATS
        segment: _Segment | None = None
        segments = 0
        total = 0
        for rate, mono in _decode_mono(container, stream, shown, warn):
            if segment is None or segment.rate != rate:
                if segment is not None:
                    yield from segment.finish(None)
                segment = _Segment(rate, sample_rate)
                segments += 1
            total += len(mono)
            yield from segment.push(mono)
        if total == 0:
            raise InputError(f"{shown}: audio contains no samples; give a file with at least some speech")
        assert segment is not None
        declared = _declared_length(stream, segment.rate) if segments == 1 else None
        keep = None
        if declared is not None:
            excess = segment.received - declared
            if exact and 0 < excess <= _MAX_END_PADDING:
                keep = declared
            if warn and segment.received < 0.9 * declared:
                warnings.warn(
                    f"audio file {shown} seems truncated: decoded {segment.received / segment.rate:.3f} s of "
                    f"the {declared / segment.rate:.3f} s its header declares",
                    stacklevel=2,
                )
        yield from segment.finish(keep)


class _Segment:
    """Resamples one constant-rate stretch of decoded audio as it arrives.

    The input is fed to the resampler in blocks of ``RESAMPLE_CHUNK`` samples counted from the
    segment's start (the blocks :func:`resample_audio` uses, so the output is identical to resampling
    the whole segment at once), holding back the last ``_MAX_END_PADDING`` samples until the end is
    known, so that end padding can still be cut. Output never runs past
    ``ceil(received * target / rate)`` samples, the exact length of the whole segment.
    """

    def __init__(self, rate: int, target: int) -> None:
        self.rate, self.target = rate, target
        self.received = 0  # source samples pushed
        self._fed = 0  # source samples given to the resampler
        self._emitted = 0  # output samples yielded
        self._pending: list[np.ndarray] = []  # source samples not fed yet
        self._pending_len = 0
        self._out: list[np.ndarray] = []  # resampled samples not yielded yet
        self._resampler = (
            None
            if rate == target
            else av.AudioResampler(format="flt", layout="mono", rate=target, options=RESAMPLER_OPTIONS)
        )

    def push(self, x: np.ndarray) -> Iterator[np.ndarray]:
        self._pending.append(x)
        self._pending_len += len(x)
        self.received += len(x)
        while self._pending_len >= RESAMPLE_CHUNK + _MAX_END_PADDING:
            self._feed(self._take(RESAMPLE_CHUNK))
            yield from self._drain(-(-self._fed * self.target // self.rate))

    def finish(self, keep: int | None) -> Iterator[np.ndarray]:
        """Feed the rest (only the first `keep` source samples of the segment, if given) and flush."""
        rest = self._take(self._pending_len)
        if keep is not None:
            rest = rest[: max(0, keep - self._fed)]
        length = self._fed + len(rest)
        for start in range(0, len(rest), RESAMPLE_CHUNK):
            self._feed(rest[start : start + RESAMPLE_CHUNK])
        if self._resampler is not None:
            self._out.extend(out.to_ndarray()[0].copy() for out in self._resampler.resample(None))
        want = -(-length * self.target // self.rate)
        yield from self._drain(want)
        if self._emitted < want:  # the resampler gave fewer samples than the exact length
            yield np.zeros(want - self._emitted, np.float32)
            self._emitted = want

    def _take(self, n: int) -> np.ndarray:
        joined = np.concatenate(self._pending) if len(self._pending) != 1 else self._pending[0]
        head, tail = joined[:n], joined[n:]
        self._pending = [tail] if len(tail) else []
        self._pending_len = len(tail)
        return head

    def _feed(self, x: np.ndarray) -> None:
        if self._resampler is None:
            self._out.append(np.asarray(x, np.float32).copy())
        elif len(x):
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(x, np.float32)[None, :], format="flt", layout="mono"
            )
            frame.sample_rate = self.rate
            frame.time_base = Fraction(1, self.rate)
            frame.pts = self._fed
            self._out.extend(out.to_ndarray()[0].copy() for out in self._resampler.resample(frame))
        self._fed += len(x)

    def _drain(self, limit: int) -> Iterator[np.ndarray]:
        """Yield buffered output up to a total of `limit` samples; keep the rest buffered."""
        if not self._out:
            return
        y = np.concatenate(self._out) if len(self._out) > 1 else self._out[0]
        n = max(0, min(len(y), limit - self._emitted))
        self._out = [y[n:]] if n < len(y) else []
        if n:
            self._emitted += n
            yield np.ascontiguousarray(y[:n], dtype=np.float32)


class SpeechAudio:
    """The speech the model hears: a mono float32 waveform at ``sample_rate``, held or streamed.

    From a file (:meth:`from_file`), the whole track is decoded once at construction to check it and
    to measure its length, peak and mean / variance (everything a caller needs up front), then again,
    block by block, each time :meth:`blocks` is called: memory stays flat however long the file. The
    samples are exactly :func:`load_audio`'s, peak normalisation included. From an array
    (:meth:`from_array`), the array is used as it is (it must already be at ``sample_rate``).

    Attributes:
        sample_rate: Hz.
        num_samples: N.
        mean, var: mean and (biased) variance of the samples, float64.
        path: the file it was read from (the muxer re-reads its original sound), or None.
    """

    def __init__(
        self,
        sample_rate: int,
        num_samples: int,
        mean: float,
        var: float,
        *,
        path: Path | None = None,
        array: np.ndarray | None = None,
        peak: float = 1.0,
    ) -> None:
        assert (path is None) != (array is None)
        self.sample_rate, self.num_samples, self.mean, self.var = sample_rate, num_samples, mean, var
        self.path, self._array, self._peak = path, array, peak

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], sample_rate: int = 16000) -> SpeechAudio:
        """Read and check a media file's first audio track (InputError, one line, if unusable)."""
        count, total, squares, peak = 0, 0.0, 0.0, 0.0
        for block in iter_audio(path, sample_rate):
            b = block.astype(np.float64)
            count += b.size
            total += float(b.sum())
            squares += float(np.dot(b, b))
            peak = max(peak, float(np.max(np.abs(b))))
        scale = peak if peak > 1.0 else 1.0
        mean = total / count / scale
        var = max(0.0, squares / count / scale**2 - mean * mean)
        return cls(sample_rate, count, mean, var, path=Path(path), peak=scale)

    @classmethod
    def from_array(cls, waveform: Any, sample_rate: int = 16000) -> SpeechAudio:
        """A mono waveform already at ``sample_rate`` ((N,) or (1, N) floats); InputError if unusable."""
        try:
            wave = np.asarray(waveform, dtype=np.float32)
        except (TypeError, ValueError) as e:
            raise InputError(
                f"audio must be a path or a mono float waveform, not {type(waveform).__name__} ({e})"
            ) from None
        if wave.ndim == 2 and 1 in wave.shape:
            wave = wave.reshape(-1)
        if wave.ndim != 1:
            raise InputError(f"audio array must be a mono waveform (N,), got shape {wave.shape}")
        if wave.size == 0:
            raise InputError("audio contains no samples; give a non-empty speech recording")
        if not np.isfinite(wave).all():
            raise InputError("audio contains NaN or infinite samples; give a finite waveform")
        w = wave.astype(np.float64)
        mean = float(w.mean())
        return cls(sample_rate, wave.size, mean, float(w.var()), array=wave)

    @property
    def seconds(self) -> float:
        return self.num_samples / self.sample_rate

    def blocks(self) -> Iterator[np.ndarray]:
        """Consecutive float32 blocks of the waveform, from the start."""
        if self._array is not None:
            for start in range(0, self.num_samples, RESAMPLE_CHUNK):
                yield self._array[start : start + RESAMPLE_CHUNK]
            return
        assert self.path is not None
        peak = np.float32(self._peak)
        for block in iter_audio(self.path, self.sample_rate, warn=False):
            yield block / peak if self._peak != 1.0 else block

    def read(self) -> np.ndarray:
        """The whole waveform (N,) float32 (for clips short enough to hold)."""
        if self._array is not None:
            return self._array
        return np.concatenate([np.zeros(0, np.float32), *self.blocks()])

    def ranges(self) -> SampleRanges:
        """A reader of sample ranges [first, last) asked for in non-decreasing order (one pass)."""
        return SampleRanges(self.blocks())


class SampleRanges:
    """Reads ranges [first, last) of a block stream, with `first` and `last` non-decreasing.

    Holds only the samples between the smallest `first` still to come and the largest `last` asked
    for, so overlapping windows over a long stream cost memory of one window.
    """

    def __init__(self, blocks: Iterator[np.ndarray]) -> None:
        self._blocks = blocks
        self._buffer = np.zeros(0, np.float32)  # the stream's samples [_pos - len(_buffer), _pos)
        self._pos = 0  # samples taken from the stream so far
        self._first = 0

    def read(self, first: int, last: int) -> np.ndarray:
        """Samples [first, last) (fewer at the end of the stream); `first` never below an earlier one."""
        assert first >= self._first, (first, self._first)
        self._first = first
        parts = [self._buffer[max(0, len(self._buffer) - (self._pos - first)) :]] if self._pos > first else []
        while self._pos < last:
            block = next(self._blocks, None)
            if block is None:
                break
            start = self._pos
            self._pos += len(block)
            if self._pos > first:
                parts.append(block[max(0, first - start) :])
        self._buffer = np.concatenate(parts) if len(parts) > 1 else (parts[0] if parts else self._buffer[:0])
        return self._buffer[: max(0, last - first)]


def resample_audio(x: np.ndarray, orig_rate: int, target_rate: int) -> np.ndarray:
    """Resamples a mono signal with libswresample (high-quality settings, see the module docstring).

    Args:
        x: 1-D float array.
        orig_rate: Sample rate of ``x`` in Hz.
        target_rate: Wanted sample rate in Hz.

    Returns:
        A 1-D ``float32`` array of exactly ``ceil(len(x) * target_rate / orig_rate)`` samples, aligned
        with the input (no filter delay).

    Raises:
        ValueError: If ``x`` is not 1-D or a rate is not a positive integer.
    """
    orig_rate = _check_rate(orig_rate, "orig_rate")
    target_rate = _check_rate(target_rate, "target_rate")
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 1:
        raise ValueError(f"resample_audio expects a 1-D signal, got shape {x.shape}")
    n = x.shape[0]
    if orig_rate == target_rate or n == 0:
        return x.copy()
    want = -(-n * target_rate // orig_rate)
    resampler = av.AudioResampler(format="flt", layout="mono", rate=target_rate, options=RESAMPLER_OPTIONS)
    time_base = Fraction(1, orig_rate)
    pieces: list[np.ndarray] = []
    for start in range(0, n, RESAMPLE_CHUNK):
        chunk = np.ascontiguousarray(x[start : start + RESAMPLE_CHUNK])[None, :]
        frame = av.AudioFrame.from_ndarray(chunk, format="flt", layout="mono")
        frame.sample_rate = orig_rate
        frame.time_base = time_base
        frame.pts = start
        pieces.extend(out.to_ndarray()[0].copy() for out in resampler.resample(frame))
    pieces.extend(out.to_ndarray()[0].copy() for out in resampler.resample(None))
    y = np.concatenate(pieces) if pieces else np.zeros(0, np.float32)
    if y.shape[0] >= want:
        return np.ascontiguousarray(y[:want], dtype=np.float32)
    return np.concatenate([y, np.zeros(want - y.shape[0], np.float32)])


def audio_duration_frames(num_samples: int, sample_rate: int, fps: float | Fraction = 25) -> int:
    """Number of video frames needed to cover an audio clip: ``ceil(num_samples * fps / sample_rate)``.

    Computed exactly with integers/fractions, so e.g. 16000 samples at 16 kHz and 25 fps give exactly
    25 frames (no float rounding up to 26). Float ``fps`` values are read as their shortest decimal
    (``29.97`` means ``2997/100``).

    Args:
        num_samples: Number of audio samples (>= 0).
        sample_rate: Audio sample rate in Hz.
        fps: Video frame rate (int, float or Fraction).

    Returns:
        The number of frames.

    Raises:
        ValueError: If an argument is negative, zero where it must be positive, or not a number.
    """
    if isinstance(num_samples, (bool, float)) or int(num_samples) != num_samples or num_samples < 0:
        raise ValueError(f"num_samples must be a non-negative integer, got {num_samples!r}")
    rate = _check_rate(sample_rate, "sample_rate")
    return math.ceil(Fraction(int(num_samples)) * exact_fraction(fps, "fps") / rate)


def _check_rate(rate: int, name: str) -> int:
    """Validates a sample rate given as a positive integer (or integral float)."""
    try:
        ok = not isinstance(rate, bool) and int(rate) == rate and rate > 0
    except (TypeError, ValueError, OverflowError):
        ok = False
    if not ok:
        raise ValueError(f"{name} must be a positive integer number of Hz, got {rate!r}")
    return int(rate)


def _frame_to_mono(frame: av.AudioFrame) -> np.ndarray:
    """Converts a decoded audio frame of any sample format/layout to mono float64 in [-1, 1]."""
    data = frame.to_ndarray()
    fmt = frame.format
    if frame.samples == 0 or data.size == 0:
        return np.zeros(0, np.float64)
    if not fmt.is_planar:  # packed: (1, samples * channels), interleaved
        data = data.reshape(frame.samples, -1).T
    base = fmt.name.removesuffix("p")
    x = data.astype(np.float64)
    if base == "u8":
        x = (x - 128.0) / 128.0
    elif base in _INT_FULL_SCALE:
        x /= _INT_FULL_SCALE[base]
    elif base not in _FLOAT_FORMATS:
        raise ValueError(f"unsupported sample format {fmt.name!r}")
    return x.mean(axis=0)


def _decode_mono(
    container: av.container.InputContainer, stream: av.audio.stream.AudioStream, shown: str, warn: bool
) -> Iterator[tuple[int, np.ndarray]]:
    """Decodes ``stream`` to (sample rate, mono float32 samples) pieces, in order.

    Packets that fail to decode are skipped with a warning (as FFmpeg does); a file where nothing
    decodes raises :class:`InputError`, and so does a NaN or infinite sample.
    """
    failures = 0
    first_error = ""
    decoded = 0
    try:
        for packet in container.demux(stream):
            try:
                frames = packet.decode()
            except av.FFmpegError as e:
                failures += 1
                first_error = first_error or short_reason(e)
                continue
            for frame in frames:
                mono = _frame_to_mono(frame)
                if mono.size == 0:
                    continue
                if not np.isfinite(mono).all():
                    at = decoded / int(frame.sample_rate)
                    raise InputError(
                        f"audio file {shown} contains NaN or infinite samples (from {at:.2f} s); "
                        "re-export it (e.g. as 16-bit PCM WAV)"
                    )
                decoded += mono.size
                yield int(frame.sample_rate), mono.astype(np.float32)
    except av.FFmpegError as e:  # the demuxer gave up (e.g. truncated or garbled container)
        failures += 1
        first_error = first_error or short_reason(e)
    except ValueError as e:
        if isinstance(e, InputError):
            raise
        raise InputError(
            f"audio file {shown} could not be decoded ({short_reason(e)}); {_FORMATS_HINT}"
        ) from None
    if failures and decoded == 0:
        raise InputError(f"audio file {shown} is corrupt (decoding failed: {first_error}); {_FORMATS_HINT}")
    if failures and warn:
        warnings.warn(
            f"audio file {shown}: skipped {failures} undecodable packet(s) ({first_error}); "
            "lip sync may drift after the damaged part",
            stacklevel=4,
        )


def _declared_length(stream: av.audio.stream.AudioStream, rate: int) -> int | None:
    """Length in samples that the container declares for ``stream``, if it declares one."""
    if stream.duration is not None and stream.time_base is not None and stream.duration > 0:
        return round(stream.duration * stream.time_base * rate)
    return None
