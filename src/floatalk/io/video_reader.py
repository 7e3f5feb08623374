"""Reading video files (PyAV only): the one video reader of floatalk.

:class:`VideoReader` opens a file's first video track and decodes it one frame at a time, so memory
does not grow with the length of the video. It offers

* the **native frames** (:meth:`VideoReader.frames`), from the start or from a frame index or time:
  the reader then seeks to the keyframe before that point and decodes forward to the exact frame, so
  the pixels are the same as when decoding from the start;
* a **constant-rate selection** (:meth:`VideoReader.resampled`, 25 fps by default): for each output
  timestamp ``j / fps`` (counted from the first frame) the source frame whose timestamp is nearest is
  taken (a tie goes to the earlier frame), so variable frame rates and any source rate work. A video
  lasting ``D`` seconds gives ``round(fps * D)`` frames (at least one). It can start at an output frame
  as well, seeking like :meth:`VideoReader.frames`.

Frames come as :class:`DecodedFrame` (the PyAV frame with its index and time); converting one to RGB
(:meth:`DecodedFrame.rgb`) turns phone videos upright (their display matrix) and can downscale.

Errors. A file that cannot be used raises :class:`VideoError`, an :class:`~floatalk.errors.InputError`
with a one-line message (path and fix) plus a short ``reason`` without either, for reports. Decoding
is per packet: with ``errors="skip"`` (the default) a packet that does not decode is counted in
:attr:`VideoReader.failures` and skipped, unreadable container data (a truncated file) ends the stream,
and only a pass that decodes no frame at all raises; with ``errors="raise"`` the first failure raises.

The thin functions :func:`read_video_info`, :func:`read_video_frames`, :func:`video_fps` and
:func:`iter_video_frames` cover the common cases.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import Any

import av
import numpy as np

from floatalk.errors import InputError
from floatalk.io._common import check_input_file, display_path, short_reason

__all__ = [
    "DEFAULT_FPS",
    "DecodedFrame",
    "VideoError",
    "VideoReader",
    "iter_video_frames",
    "read_video_frames",
    "read_video_info",
    "video_fps",
]

#: Rate of :meth:`VideoReader.resampled` by default, and the frame spacing assumed when a video
#: declares no rate and a frame has no timestamp.
DEFAULT_FPS = 25
#: Frames whose timestamps do not increase are placed this many seconds after the previous one.
_TIME_STEP = 1e-6
_HINT = "give an MP4 file"
_DECODE_HINT = "give an intact video file"


class VideoError(InputError):
    """A video file that cannot be used.

    Attributes:
        kind: What failed: ``"file"`` (missing, empty or unreadable file), ``"format"`` (not a media
            file FFmpeg can open), ``"no_video"`` (no video track) or ``"decode"`` (frames do not decode).
        reason: The problem in a few words, without the path or a fix, e.g. ``"no video track"`` or
            ``"not a readable video (corrupt or unknown format: Invalid data found ...)"``.
    """

    def __init__(self, message: str, kind: str, reason: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.reason = reason


@dataclass(frozen=True, eq=False)
class DecodedFrame:
    """One decoded frame of a video track.

    Attributes:
        index: Position of the frame in the track (0 = first). Counted while decoding from the start;
            after a seek it is ``round(time * fps)``, which is the same for constant-rate video.
        time: Seconds from the track's first frame (timestamps that do not increase are moved just
            after the previous frame; a frame without one is placed one frame interval later).
        frame: The ``av.VideoFrame`` (stored size, as coded).
    """

    index: int
    time: float
    frame: Any

    @property
    def quarter_turns(self) -> int:
        """Counter-clockwise quarter turns that make the frame upright (its display matrix; PyAV >= 14)."""
        return round((getattr(self.frame, "rotation", 0) or 0) / 90) % 4

    @property
    def size(self) -> tuple[int, int]:
        """Upright ``(width, height)`` in pixels."""
        w, h = self.frame.width, self.frame.height
        return (h, w) if self.quarter_turns % 2 else (w, h)

    def rgb(self, long_side: int | None = None, *, upright: bool = True) -> np.ndarray:
        """The frame as an RGB ``uint8`` array ``(H, W, 3)``.

        Args:
            long_side: If given, frames whose stored long side is larger are downscaled (area filter)
                to this long side, keeping the aspect ratio.
            upright: Turn the frame as its display matrix says (phone videos); False: as stored.
        """
        frame = self.frame
        w, h = frame.width, frame.height
        if long_side is not None and max(w, h) > long_side:
            s = long_side / max(w, h)
            rgb = frame.to_ndarray(
                width=max(1, round(w * s)), height=max(1, round(h * s)), format="rgb24", interpolation="AREA"
            )
        else:
            rgb = frame.to_ndarray(format="rgb24")
        k = self.quarter_turns if upright else 0
        return np.ascontiguousarray(np.rot90(rgb, k)) if k else rgb


def _abs_time(frame: Any) -> float | None:
    """A frame's presentation time in seconds (None without a timestamp)."""
    if frame.pts is None or not frame.time_base:
        return None
    return float(frame.pts * frame.time_base)


def _stream_seconds(value: int | None, time_base: Fraction | None) -> float | None:
    return float(value * time_base) if value is not None and time_base else None


def _file_problem(path: str | os.PathLike[str]) -> str:
    """Why a file that :func:`check_input_file` refused is unusable, in a few words."""
    if os.fspath(path) == "":
        return "no file given"
    p = Path(path)
    try:
        size = p.stat().st_size
        if p.is_dir():
            return "a folder, not a file"
        if size == 0:
            return "empty file (0 bytes)"
        with p.open("rb") as f:
            f.read(1)
    except PermissionError:
        return "cannot be read (permission denied)"
    except OSError as e:
        return f"cannot be read ({e.strerror or type(e).__name__})"
    return "cannot be read"


class VideoReader:
    """An open video file: its first video track, decoded one frame at a time (a context manager).

    Example:
        >>> with VideoReader("talk.mp4") as video:  # doctest: +SKIP
        ...     for j, frame in video.resampled(25):
        ...         rgb = frame.rgb()  # (H, W, 3) uint8, upright

    Args:
        path: The video file.
        errors: ``"skip"`` (count and skip packets that do not decode; a truncated file just ends) or
            ``"raise"`` (raise :class:`VideoError` at the first failure).

    Attributes:
        path: The file, as given.
        container: The open PyAV input container.
        stream: Its first video stream.
        fps: Declared average frame rate (float; 0.0 when the file declares none).
        width: Stored frame width in pixels (before any rotation).
        height: Stored frame height in pixels.
        num_frames: Number of frames the container declares (0 when unknown; decode to be sure).
        duration: Declared duration of the video track in seconds (None when unknown).
        codec: Name of the video codec, e.g. ``"h264"``.
        pix_fmt: Pixel format of the decoded frames, e.g. ``"yuv420p"``.
        start_time: Declared start of the video track in seconds (0.0 when unknown).
        has_audio: Whether the file has an audio track.
        audio_start_time: Declared start of the first audio track in seconds (0.0 when unknown or
            without audio).
        decoded: Frames decoded so far, over all passes.
        failures: Packets that failed so far (bad packets, and unreadable container data).
        end_time: After a :meth:`resampled` pass that reached the end: seconds from the first frame to
            the end of the last one (0.0 before).

    Raises:
        VideoError: If the file is missing, empty or unreadable, is not a media file, or has no video
            track (one-line message).
        ValueError: If ``errors`` is not ``"skip"`` or ``"raise"``.
    """

    def __init__(self, path: str | os.PathLike[str], *, errors: str = "skip") -> None:
        if errors not in ("skip", "raise"):
            raise ValueError(f"errors must be 'skip' or 'raise', got {errors!r}")
        self.path = path
        self._shown = display_path(path)
        self._strict = errors == "raise"
        try:
            self._file = check_input_file(path, "video", _HINT)
        except InputError as e:
            raise VideoError(str(e), "file", _file_problem(path)) from None
        self._open()
        stream = self.stream
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        self.fps = float(rate) if rate else 0.0
        self.width = stream.codec_context.width
        self.height = stream.codec_context.height
        self.num_frames = int(stream.frames or 0)
        self.duration = _stream_seconds(stream.duration, stream.time_base)
        self.codec = stream.codec_context.name
        self.pix_fmt = stream.codec_context.pix_fmt
        self.start_time = _stream_seconds(stream.start_time, stream.time_base) or 0.0
        audio = self.container.streams.audio
        self.has_audio = bool(audio)
        audio_start = _stream_seconds(audio[0].start_time, audio[0].time_base) if audio else None
        self.audio_start_time = audio_start or 0.0
        self.decoded = 0
        self.failures = 0
        self.end_time = 0.0
        self._first_time: float | None = None  # absolute time of the first frame, once known
        self._fresh = True  # nothing read since the container was opened

    def _open(self) -> None:
        try:
            container = av.open(os.fspath(self._file))
        except PermissionError as e:
            raise VideoError(
                f"video file {self._shown} could not be opened ({short_reason(e)}); {_HINT}",
                "file",
                "cannot be read (permission denied)",
            ) from None
        except (av.FFmpegError, OSError, ValueError) as e:
            raise VideoError(
                f"video file {self._shown} could not be opened ({short_reason(e)}); {_HINT}",
                "format",
                f"not a readable video (corrupt or unknown format: {short_reason(e)})",
            ) from None
        if not container.streams.video:
            container.close()
            raise VideoError(f"{self._shown}: file has no video track; {_HINT}", "no_video", "no video track")
        self.container = container
        self.stream = container.streams.video[0]
        self.stream.thread_type = "AUTO"
        self._fresh = True

    def _rewind(self) -> None:
        """Back to the first frame: the file is opened again (exact, unlike a seek)."""
        if not self._fresh:
            self.container.close()
            self._open()

    def close(self) -> None:
        """Closes the file (also done on leaving a ``with`` block)."""
        self.container.close()

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ------------------------------------------------------------------ decoding

    def _decode_error(self, e: BaseException) -> VideoError:
        return VideoError(
            f"video file {self._shown} could not be decoded ({short_reason(e)}); {_DECODE_HINT}",
            "decode",
            f"not a readable video (decoding failed: {short_reason(e)})",
        )

    def _decode(self) -> Iterator[Any]:
        """PyAV frames from the current position, one packet at a time (see the module docstring)."""
        self._fresh = False
        packets = self.container.demux(self.stream)
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                return
            except av.FFmpegError as e:  # unreadable container data: the end of a truncated file
                self.failures += 1
                if self._strict:
                    raise self._decode_error(e) from None
                return
            try:
                frames = packet.decode()
            except av.FFmpegError as e:
                self.failures += 1
                if self._strict:
                    raise self._decode_error(e) from None
                continue
            for frame in frames:
                self.decoded += 1
                yield frame

    @property
    def _frame_dt(self) -> float:
        """Frame interval assumed for frames without a timestamp."""
        return 1.0 / self.fps if self.fps > 0 else 1.0 / DEFAULT_FPS

    def _from_start(self) -> Iterator[DecodedFrame]:
        """Every frame, from the first; raises when the pass decodes nothing but had failures."""
        self._rewind()
        failures_before = self.failures
        dt = self._frame_dt
        t_prev = 0.0
        index = -1
        for index, frame in enumerate(self._decode()):
            t_abs = _abs_time(frame)
            if index == 0:
                self._first_time = t_abs if t_abs is not None else 0.0
                t = 0.0
            else:
                t = t_abs - self._first_time if t_abs is not None else t_prev + dt
                if t <= t_prev:  # repeated or backward timestamps: keep the order of decoding
                    t = t_prev + _TIME_STEP
            t_prev = t
            yield DecodedFrame(index, t, frame)
        if index < 0 and self.failures > failures_before:
            n = self.failures - failures_before
            raise VideoError(
                f"video file {self._shown} could not be decoded (no frame could be decoded, "
                f"{n} bad packet{'s' * (n != 1)}); {_DECODE_HINT}",
                "decode",
                "not a readable video (no frame could be decoded)",
            )

    def _start_time(self) -> float | None:
        """Absolute time of the first frame (decodes it if not yet known); None for an empty track."""
        if self._first_time is None:
            self._rewind()
            for frame in self._decode():
                t_abs = _abs_time(frame)
                self._first_time = t_abs if t_abs is not None else 0.0
                break
        return self._first_time

    def _from_seek(self, seconds: float) -> Iterator[DecodedFrame] | None:
        """Frames from the keyframe at or before ``seconds`` (from the first frame), or None if that fails.

        None means the caller should decode from the start: the track is empty, the seek failed, or it
        landed after the requested time or on a frame without a timestamp.
        """
        t0 = self._start_time()
        if t0 is None:
            return None
        tb = self.stream.time_base
        try:
            # In stream ticks; the small tolerance keeps a frame exactly at the time (float error) in.
            target = math.floor(Fraction(t0 + seconds) / tb + Fraction(1, 1000))
            self.container.seek(target, backward=True, any_frame=False, stream=self.stream)
        except (av.FFmpegError, OverflowError, TypeError, ValueError, ZeroDivisionError):
            self._fresh = False
            return None
        frames = self._decode()
        first = next(frames, None)
        if first is None or first.pts is None or first.time_base != tb or first.pts > target:
            return None  # nothing, no timestamp, or landed after the requested time

        def timed(first: Any) -> Iterator[DecodedFrame]:
            dt = self._frame_dt
            t_prev = -math.inf
            for frame in itertools.chain((first,), frames):
                t_abs = _abs_time(frame)
                t = t_abs - t0 if t_abs is not None else t_prev + dt
                if t <= t_prev:
                    t = t_prev + _TIME_STEP
                t_prev = t
                yield DecodedFrame(round(t * self.fps), t, frame)

        return timed(first)

    def frames(self, *, start_frame: int = 0, start_time: float | None = None) -> Iterator[DecodedFrame]:
        """Yields the native frames in order, from the first or from a given frame or time.

        Args:
            start_frame: Start at the frame with this index (see :attr:`DecodedFrame.index`).
            start_time: Instead, start at the frame shown at this time: the last frame whose time (seconds
                from the first frame) is at most ``start_time``.

        With a start after the first frame and a known frame rate, the reader seeks to the keyframe
        before it and decodes forward from there; otherwise (or if the seek fails) it decodes from the
        start and drops the frames before. Each call starts a new pass over the file.

        Raises:
            VideoError: See the class (``errors``); with ``"skip"``, when a pass from the start decodes
                no frame although packets failed.
            ValueError: If both a start frame and a start time are given.
        """
        if start_time is not None and start_frame:
            raise ValueError("give start_frame or start_time, not both")
        if start_time is not None and start_time > 0:
            seek_to: float | None = start_time
        elif start_time is None and start_frame > 0:
            seek_to = start_frame / self.fps if self.fps > 0 else None
        else:
            seek_to = None
        source = self._from_seek(seek_to) if seek_to is not None and self.fps > 0 else None
        if source is None:
            source = self._from_start()
        if start_time is not None and start_time > 0:
            yield from _from_time(source, start_time)
        elif start_frame > 0:
            yield from (f for f in source if f.index >= start_frame)
        else:
            yield from source

    def resampled(
        self, fps: float | Fraction = DEFAULT_FPS, *, start_frame: int = 0
    ) -> Iterator[tuple[int, DecodedFrame]]:
        """Yields ``(j, frame)`` for output frame ``j`` at ``fps``: the source frame nearest ``j / fps``.

        Source frames repeat when the video is slower than ``fps`` and are dropped when it is faster
        (``frame.index`` tells which one it is). The last frame lasts its declared duration (else the
        previous frame interval), so a video lasting ``D`` seconds gives ``round(fps * D)`` frames, at
        least one. Sets :attr:`end_time` when the pass reaches the end.

        Args:
            fps: Output rate.
            start_frame: First output frame ``j`` to yield; the reader seeks close to it (the frames
                are the same as when starting at 0).

        Raises:
            VideoError: As :meth:`frames`.
        """
        rate = float(fps)
        if not rate > 0:
            raise ValueError(f"fps must be positive, got {fps!r}")
        if start_frame > 0 and self.fps > 0:
            # One source frame of margin: the chosen frame may lie just after j / fps.
            source = self.frames(start_time=max(0.0, start_frame / rate - 1.0 / self.fps))
        else:
            source = self.frames()
        prev: DecodedFrame | None = None
        dt = self._frame_dt
        j = start_frame
        for frame in source:
            if prev is None:
                prev = frame
                continue
            mid = (prev.time + frame.time) / 2
            while j <= mid * rate:
                yield j, prev
                j += 1
            dt = frame.time - prev.time
            prev = frame
        if prev is None:
            return
        duration = getattr(prev.frame, "duration", None)  # PyAV >= 13
        last = float(duration * prev.frame.time_base) if duration and prev.frame.time_base else 0.0
        end = prev.time + (last if last > 0 else dt)
        self.end_time = end
        while j < end * rate - 0.5 or j == 0:
            yield j, prev
            j += 1


def _from_time(frames: Iterable[DecodedFrame], start: float) -> Iterator[DecodedFrame]:
    """The frame shown at ``start`` (the last one with ``time <= start``) and every frame after it."""
    held = None
    it = iter(frames)
    for frame in it:
        if frame.time > start:
            if held is not None:
                yield held
            yield frame
            yield from it
            return
        held = frame
    if held is not None:
        yield held


# ---------------------------------------------------------------------- thin functions


def read_video_info(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Describes a video file, counting frames and audio samples by decoding them.

    Args:
        path: A video file.

    Returns:
        A dict with ``num_frames`` (int, decoded), ``fps`` (float, average), ``width``, ``height``,
        ``video_codec``, ``pix_fmt``, ``has_audio`` (bool), ``audio_duration`` (seconds of decoded
        audio, which for AAC includes up to one frame of end padding; 0.0 without audio),
        ``audio_declared_duration`` (seconds the container declares for the audio track, e.g. from an
        MP4 edit list; None if unknown or without audio), ``audio_sample_rate`` and ``audio_channels``
        (0 without audio), ``audio_codec`` (None without audio).

    Raises:
        InputError: If the file is missing, unreadable or not a media file, has no video track, or
            does not decode.
    """
    with VideoReader(path, errors="raise") as video:
        info: dict[str, Any] = {
            "num_frames": sum(1 for _ in video.frames()),
            "fps": video.fps,
            "width": video.width,
            "height": video.height,
            "video_codec": video.codec,
            "pix_fmt": video.pix_fmt,
            "has_audio": video.has_audio,
            "audio_duration": 0.0,
            "audio_declared_duration": None,
            "audio_sample_rate": 0,
            "audio_channels": 0,
            "audio_codec": None,
        }
    if info["has_audio"]:
        with av.open(os.fspath(path)) as container:
            audio = container.streams.audio[0]
            samples = sum(frame.samples for frame in container.decode(audio))
            rate = audio.codec_context.sample_rate
            declared = audio.duration * audio.time_base if audio.duration and audio.time_base else None
            info.update(
                audio_duration=samples / rate if rate else 0.0,
                audio_declared_duration=float(declared) if declared is not None else None,
                audio_sample_rate=rate,
                audio_channels=audio.codec_context.layout.nb_channels,
                audio_codec=audio.codec_context.name,
            )
    return info


def read_video_frames(path: str | os.PathLike[str]) -> np.ndarray:
    """Decodes all frames of a video's first video track as RGB (as stored, not turned upright).

    Args:
        path: A video file.

    Returns:
        A ``uint8`` array ``(N, H, W, 3)`` (``(0, 0, 0, 3)`` for a track without frames).

    Raises:
        InputError: If the file is missing, unreadable, not a media file, has no video track, or does
            not decode.
    """
    with VideoReader(path, errors="raise") as video:
        frames = [f.rgb(upright=False) for f in video.frames()]
    if not frames:
        return np.zeros((0, 0, 0, 3), np.uint8)
    return np.stack(frames)


def video_fps(path: str | os.PathLike[str]) -> float:
    """Average frame rate of a video's first video track (25.0 when the file declares none).

    Raises:
        InputError: If the file is missing, not a media file or has no video track.
    """
    with VideoReader(path) as video:
        return video.fps or 25.0


def iter_video_frames(path: str | os.PathLike[str]) -> Iterator[np.ndarray]:
    """Decode a video's first video track one RGB ``uint8`` frame ``(H, W, 3)`` at a time (as stored).

    Raises:
        InputError: If the file is missing, not a media file, has no video track, or is corrupt.
    """
    with VideoReader(path, errors="raise") as video:
        for frame in video.frames():
            yield frame.rgb(upright=False)
