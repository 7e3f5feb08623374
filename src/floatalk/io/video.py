"""Writing generated frames and the driving audio to an MP4 file (PyAV only, no ffmpeg binary).

:class:`VideoWriter` encodes H.264 (``libx264``; fallbacks: the build's default H.264 encoder, then
MPEG-4 Part 2) in ``yuv420p`` at a constant frame rate, plus an AAC audio track, into one
container. Frames are encoded as they are written, so memory use does not grow with the video length;
the audio is interleaved with the video as the frames arrive, read from its source as needed.

Colour: RGB frames are converted to limited-range BT.709 YCbCr (the matrix for sRGB/HD content) and
the stream is tagged as such (BT.709 primaries, transfer and matrix), so players that honour the tags
show the colours that were written.

The file appears at its path atomically: everything is written to a hidden temporary file in the same
directory, which is renamed over the destination only when the writer is closed without an error.
If the ``with`` block raises (including ``KeyboardInterrupt``), the temporary file is deleted and
whatever was at the destination before is left untouched.
"""

from __future__ import annotations

import contextlib
import functools
import os
import secrets
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import Any

import av
import numpy as np
import torch
from av.video.reformatter import ColorRange, Colorspace, Interpolation

from floatalk.errors import InputError
from floatalk.io._common import display_path, exact_fraction
from floatalk.io.soundtrack import SoundTrack
from floatalk.io.video_reader import read_video_frames, read_video_info  # re-exported: the old home

__all__ = ["VideoWriter", "check_output_path", "read_video_frames", "read_video_info", "select_video_encoder"]

_CONTAINER_FORMATS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska"}
_VIDEO_ENCODERS = ("libx264", "h264", "mpeg4")
_AAC_FRAME = 1024
_AAC_BIT_RATE = 128_000
# AVCOL_PRI_BT709 / AVCOL_TRC_BT709 / AVCOL_SPC_BT709 in FFmpeg's pixfmt.h.
_BT709 = 1


def check_output_path(path: str | os.PathLike[str]) -> Path:
    """Checks, before any heavy work, that a video can be written at ``path``.

    Args:
        path: Destination file; must end in ``.mp4`` (also accepted: ``.m4v``, ``.mov``, ``.mkv``).

    Returns:
        The path as a :class:`~pathlib.Path`.

    Raises:
        InputError: If the path is empty, is a directory or another non-file, has an unsupported
            extension, or its directory does not exist or is not writable.
    """
    shown = display_path(path)
    if os.fspath(path) == "":
        raise InputError("no output path given (empty path); give a file name such as 'out.mp4'")
    p = Path(path)
    if p.is_dir():
        raise InputError(
            f"output path {shown} is a directory; give a file name such as {os.fspath(p / 'out.mp4')!r}"
        )
    if p.exists() and not p.is_file():
        raise InputError(f"output path {shown} exists and is not a regular file; choose another output path")
    if p.suffix.lower() not in _CONTAINER_FORMATS:
        raise InputError(
            f"output path {shown} must end in .mp4 (or .m4v/.mov/.mkv), not {p.suffix or 'no extension'!r}; "
            "rename the output"
        )
    parent = p.parent
    if not parent.exists():
        raise InputError(f"output directory {os.fspath(parent)!r} does not exist; create it first (mkdir -p)")
    if not parent.is_dir():
        raise InputError(f"output directory {os.fspath(parent)!r} is not a directory; fix the output path")
    probe = parent / f".floatalk-write-test-{secrets.token_hex(6)}"
    try:
        fd = os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except OSError as e:
        reason = "permission denied" if isinstance(e, PermissionError) else (e.strerror or type(e).__name__)
        raise InputError(
            f"output directory {os.fspath(parent)!r} is not writable ({reason}); choose another output path"
        ) from None
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(probe)
    return p


@functools.lru_cache(maxsize=1)
def select_video_encoder() -> str:
    """Returns the name of the first working video encoder among libx264, default H.264, MPEG-4.

    Each candidate is opened once on a tiny frame size to make sure it actually works (a listed
    hardware encoder may still fail to open).

    Returns:
        The FFmpeg encoder name, e.g. ``"libx264"``.

    Raises:
        RuntimeError: If PyAV's FFmpeg has none of them.
    """
    for name in _VIDEO_ENCODERS:
        try:
            ctx = av.CodecContext.create(name, "w")
            ctx.width, ctx.height, ctx.pix_fmt = 64, 64, "yuv420p"
            ctx.time_base = Fraction(1, 25)
            ctx.framerate = Fraction(25)
            ctx.open()
        except (av.FFmpegError, ValueError):
            continue
        return ctx.codec.name
    raise RuntimeError(
        "PyAV has no usable H.264 or MPEG-4 video encoder; "
        "install the PyPI wheel of 'av', which bundles libx264"
    )


class VideoWriter:
    """Context manager that encodes frames and audio into an MP4 file, atomically.

    Example:
        >>> with VideoWriter("out.mp4", 512, 512, fps=25, audio=wav, sample_rate=16000) as w:
        ...     for chunk in generate():  # (N, 3, H, W) tensors in [-1, 1]
        ...         w.write(chunk)

    The file is committed by :meth:`close` (called by ``__exit__`` when the block succeeds); after an
    exception :meth:`abort` deletes the partial file instead. Odd frame sizes are padded by repeating
    the last column/row, because ``yuv420p`` needs even dimensions; the file then is one pixel wider
    and/or taller than requested (``encoded_width``/``encoded_height``).

    Args:
        path: Destination (``.mp4``; ``.m4v``/``.mov``/``.mkv`` also work). Checked with
            :func:`check_output_path` right away.
        width: Frame width in pixels.
        height: Frame height in pixels.
        fps: Frame rate (int, float or Fraction).
        audio: The sound track, muxed as AAC (io.soundtrack.SoundTrack): a media file, whose first
            audio track is streamed at its own sample rate and channel layout, or a mono waveform (1-D
            float array or tensor, values in [-1, 1]) at ``sample_rate``. The whole track is written,
            even if it is longer than the video. Rates below 44.1 kHz are raised by a whole factor
            (16 kHz -> 48 kHz) so that AAC's last, padded frame adds at most 23 ms for players that
            ignore the edit list; rates AAC cannot store become 48 kHz.
        sample_rate: Sample rate of a waveform ``audio`` in Hz.
        crf: Quality for libx264 (0 = lossless, 18 = visually lossless, 23 = x264 default, 51 = worst);
            mapped to a quantiser/bit rate for the fallback encoders.
        preset: x264 speed/size preset ("ultrafast" ... "veryslow").

    Raises:
        InputError: If the output path is unusable.
        ValueError: If a size, rate or the audio is invalid.
        RuntimeError: If no video encoder is available.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        width: int,
        height: int,
        fps: float | Fraction = 25,
        audio: np.ndarray | torch.Tensor | None = None,
        sample_rate: int = 16000,
        crf: float = 18,
        *,
        preset: str = "medium",
    ) -> None:
        self.path = check_output_path(path)
        self.width = _positive_int(width, "width")
        self.height = _positive_int(height, "height")
        self.fps = exact_fraction(fps, "fps")
        if not 0 <= crf <= 51:
            raise ValueError(f"crf must be between 0 and 51, got {crf!r}")
        self.encoded_width = self.width + self.width % 2
        self.encoded_height = self.height + self.height % 2
        self.frames_written = 0
        self._track = None if audio is None else SoundTrack(audio, sample_rate)
        self._audio_blocks = None if self._track is None else self._track.blocks()
        self._audio_buffer = np.zeros((0 if self._track is None else self._track.channels, 0), np.float32)
        self._audio_pos = 0  # samples encoded so far
        self._audio_done = False  # the track has no more samples
        self._closed = False
        self._container: Any = None
        self._audio_stream: Any = None
        codec = select_video_encoder()

        self._tmp_path = _create_temp_file(self.path)
        try:
            fmt = _CONTAINER_FORMATS[self.path.suffix.lower()]
            options: dict[str, str] = {}
            if fmt in ("mp4", "mov"):
                options["movflags"] = "+faststart"  # index first: playable while downloading
                if self._track is not None:
                    # Edit lists (which trim AAC priming/padding) are in movie time units; the default
                    # 1/1000 s would round the audio length to whole milliseconds.
                    options["movie_timescale"] = str(self._track.rate)
            self._container = av.open(os.fspath(self._tmp_path), mode="w", format=fmt, options=options)
            self._video_stream = self._add_video_stream(codec, crf, preset)
            if self._track is not None:
                track = self._track
                self._audio_stream = self._container.add_stream("aac", rate=track.rate, layout=track.layout)
                # AAC stores at most 6144 bits per 1024-sample frame and channel.
                self._audio_stream.bit_rate = min(
                    _AAC_BIT_RATE * track.channels, 6 * track.rate * track.channels
                )
        except BaseException:
            self.abort()
            raise

    def _add_video_stream(self, codec: str, crf: float, preset: str) -> Any:
        options = {"crf": f"{crf:g}", "preset": preset} if codec == "libx264" else {}
        stream = self._container.add_stream(codec, rate=self.fps, options=options)
        stream.width = self.encoded_width
        stream.height = self.encoded_height
        stream.pix_fmt = "yuv420p"
        ctx = stream.codec_context
        ctx.time_base = 1 / self.fps
        ctx.color_range = ColorRange.MPEG
        ctx.colorspace = _BT709
        ctx.color_primaries = _BT709
        ctx.color_trc = _BT709
        if codec == "mpeg4":
            ctx.qscale = True
            ctx.global_quality = int(max(2, min(31, round(crf / 6))) * 118)  # FF_QP2LAMBDA = 118
        elif codec != "libx264":  # another H.264 encoder without CRF: bit rate from the quality setting
            bits_per_pixel = 0.3 * 2 ** ((18 - crf) / 6)
            ctx.bit_rate = int(
                max(200_000, bits_per_pixel * self.encoded_width * self.encoded_height * self.fps)
            )
        return stream

    # ------------------------------------------------------------------ writing

    def write(self, frames: np.ndarray | torch.Tensor) -> None:
        """Encodes one frame or a batch of frames.

        Args:
            frames: A ``uint8`` NumPy array ``(N, H, W, 3)`` or ``(H, W, 3)`` (RGB), or a floating
                torch tensor ``(N, 3, H, W)`` or ``(3, H, W)`` with values in ``[-1, 1]`` (on any
                device), converted as ``round((clamp(x, -1, 1) + 1) / 2 * 255)``.

        Raises:
            RuntimeError: If the writer is closed.
            TypeError: If ``frames`` has an unsupported type or dtype.
            ValueError: If the shape or frame size does not match the writer.
        """
        if self._closed or self._container is None:
            raise RuntimeError("VideoWriter is closed")
        batch = _frames_to_uint8(frames, self.height, self.width)
        pad_h, pad_w = self.encoded_height - self.height, self.encoded_width - self.width
        for rgb in batch:
            if pad_h or pad_w:
                rgb = np.pad(rgb, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            frame = frame.reformat(
                format="yuv420p",
                dst_colorspace=Colorspace.ITU709,
                dst_color_range=ColorRange.MPEG,
                interpolation=Interpolation.BILINEAR | Interpolation.ACCURATE_RND,
            )
            frame.pts = self.frames_written
            frame.time_base = 1 / self.fps
            self._container.mux(self._video_stream.encode(frame))
            self.frames_written += 1
            if self._track is not None:
                # Keep the audio up with the video so the two are interleaved in the file.
                self._write_audio(until=-(-self.frames_written * self._track.rate // self.fps), final=False)

    def _write_audio(self, until: int | None, final: bool) -> None:
        """Encodes the sound track up to sample ``until`` (None: to its end) in whole AAC frames
        (and the last partial one if ``final``), pulling blocks from the track as needed."""
        assert self._track is not None and self._audio_blocks is not None
        track = self._track
        while True:
            while (
                not self._audio_done
                and (until is None or self._audio_pos + self._audio_buffer.shape[1] < until)
                and self._audio_buffer.shape[1] < _AAC_FRAME * 64
            ):
                block = next(self._audio_blocks, None)
                if block is None:
                    self._audio_done = True
                else:
                    self._audio_buffer = np.concatenate([self._audio_buffer, block], axis=1)
            limit = (
                self._audio_buffer.shape[1]
                if until is None
                else min(until - self._audio_pos, self._audio_buffer.shape[1])
            )
            if limit <= 0:
                return
            n = min(_AAC_FRAME, limit)
            if n < _AAC_FRAME and not (final and self._audio_done):
                return
            chunk = np.ascontiguousarray(self._audio_buffer[:, :n])
            self._audio_buffer = self._audio_buffer[:, n:]
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=track.layout)
            frame.sample_rate = track.rate
            frame.time_base = Fraction(1, track.rate)
            frame.pts = self._audio_pos
            self._container.mux(self._audio_stream.encode(frame))
            self._audio_pos += n

    # ------------------------------------------------------------------ finishing

    def close(self) -> None:
        """Flushes the encoders, finalises the file and renames it to :attr:`path`.

        Does nothing if already closed. If finalising fails, the partial file is deleted.

        Raises:
            ValueError: If no frame was written (the partial file is deleted).
        """
        if self._closed:
            return
        try:
            if self.frames_written == 0:
                raise ValueError(f"no frames were written to {os.fspath(self.path)!r}; nothing to save")
            self._container.mux(self._video_stream.encode(None))
            if self._track is not None:
                self._write_audio(until=None, final=True)
                self._container.mux(self._audio_stream.encode(None))
            self._container.close()
            self._container = None
            with open(self._tmp_path, "rb+") as f:
                os.fsync(f.fileno())
            os.replace(self._tmp_path, self.path)
        except BaseException:
            self.abort()
            raise
        self._closed = True

    def abort(self) -> None:
        """Stops writing and deletes the partial file; the destination is left as it was."""
        self._closed = True
        container, self._container = self._container, None
        if container is not None:
            with contextlib.suppress(Exception):
                container.close()
        tmp = getattr(self, "_tmp_path", None)
        if tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def __del__(self) -> None:
        # A writer dropped without close() must not leave its temporary file behind.
        if not getattr(self, "_closed", True):
            with contextlib.suppress(Exception):
                self.abort()


# ---------------------------------------------------------------------- reading (for tests and checks)


# The reader lives in floatalk.io.video_reader; these two names stay importable from here.

# ---------------------------------------------------------------------- helpers


def _positive_int(value: int, name: str) -> int:
    if isinstance(value, bool) or int(value) != value or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _frames_to_uint8(frames: np.ndarray | torch.Tensor, height: int, width: int) -> np.ndarray:
    """Converts accepted frame inputs to a ``(N, H, W, 3)`` uint8 RGB array."""
    if isinstance(frames, torch.Tensor):
        if not frames.is_floating_point():
            raise TypeError(f"torch frames must be floating point in [-1, 1], got dtype {frames.dtype}")
        if frames.ndim == 3:
            frames = frames.unsqueeze(0)
        if frames.ndim != 4 or frames.shape[1] != 3:
            raise ValueError(
                f"torch frames must have shape (N, 3, H, W) or (3, H, W), got {tuple(frames.shape)}"
            )
        x = torch.nan_to_num(frames.detach(), nan=0.0).clamp(-1.0, 1.0)
        x = ((x + 1.0) / 2.0 * 255.0).round().to(torch.uint8)
        batch = x.permute(0, 2, 3, 1).contiguous().cpu().numpy()
    elif isinstance(frames, np.ndarray):
        if frames.dtype != np.uint8:
            raise TypeError(f"numpy frames must be uint8 RGB, got dtype {frames.dtype}")
        batch = frames[None] if frames.ndim == 3 else frames
        if batch.ndim != 4 or batch.shape[3] != 3:
            raise ValueError(f"numpy frames must have shape (N, H, W, 3) or (H, W, 3), got {frames.shape}")
    else:
        raise TypeError(f"frames must be a numpy uint8 array or a torch tensor, got {type(frames).__name__}")
    if batch.shape[1:3] != (height, width):
        raise ValueError(
            f"frame size {batch.shape[2]}x{batch.shape[1]} (WxH) does not match the writer's {width}x{height}"
        )
    return batch


def _create_temp_file(path: Path) -> Path:
    """Creates an empty hidden file next to ``path`` (same suffix), honouring the umask."""
    for _ in range(100):
        tmp = path.with_name(f".{path.stem}.{secrets.token_hex(6)}.partial{path.suffix}")
        try:
            fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
        except FileExistsError:
            continue
        except OSError as e:
            raise InputError(
                f"cannot create a file in {os.fspath(path.parent)!r} ({e.strerror}); "
                "choose another output path"
            ) from None
        os.close(fd)
        return tmp
    raise RuntimeError(f"could not create a temporary file next to {os.fspath(path)!r}")
