"""The sound track of an output video: the input's own sound, streamed into the AAC encoder.

The model hears 16 kHz mono; the video keeps what the user gave. From a media file, the first
audio track is decoded block by block (flat memory for any length) and kept at its own channel
layout (mono, stereo, 5.1, ...; layouts the AAC encoder lacks are downmixed to stereo) and sample
rate. AAC codes 1024 samples per frame and pads the last one; players that ignore the MP4 edit list
then play up to one frame of silence more. So that this never exceeds 25 ms (1024 samples at
>= 40.96 kHz), rates below 44.1 kHz are raised by the smallest whole factor that gives an AAC rate
of at least 44.1 kHz (16 kHz -> 48 kHz, 22.05 kHz -> 44.1 kHz): the content is unchanged, only
sampled more finely. Rates AAC cannot store at all become 48 kHz.

Resampling uses the same high-quality libswresample settings as floatalk.io.audio, and the
output has exactly ceil(n * rate_out / rate_in) samples per channel for n input samples (after the
end padding of an AAC input in an MP4 is cut, as its container declares).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator
from fractions import Fraction
from typing import Any

import av
import numpy as np
import torch

from floatalk.errors import InputError
from floatalk.io._common import display_path, short_reason
from floatalk.io.audio import EXACT_DURATION_FORMATS, RESAMPLE_CHUNK, RESAMPLER_OPTIONS

__all__ = ["SoundTrack", "mux_rate"]

_MIN_RATE = 44100  # 1024 / 44100 s = 23.2 ms < 25 ms


def _aac_rates() -> tuple[int, ...]:
    return tuple(av.Codec("aac", "w").audio_rates or (48000, 44100, 32000, 24000, 22050, 16000, 8000))


@functools.lru_cache(maxsize=32)
def _aac_takes(layout: str) -> bool:
    """Whether the AAC encoder opens with this channel layout."""
    try:
        ctx = av.CodecContext.create("aac", "w")
        ctx.sample_rate, ctx.format, ctx.layout = 48000, "fltp", layout
        ctx.open()
    except (av.FFmpegError, ValueError):
        return False
    return True


def mux_rate(rate: int) -> int:
    """The AAC sample rate the sound track is stored at for an input at `rate` Hz (see module doc)."""
    rates = set(_aac_rates())
    if rate >= _MIN_RATE and rate in rates:
        return rate
    for factor in range(2, 13):
        if rate * factor >= _MIN_RATE and rate * factor in rates:
            return rate * factor
    return 48000


class SoundTrack:
    """Planar float32 audio at `rate` with `layout`, produced block by block.

    Args:
        source: a media file (its first audio track), or a mono waveform (N,) / (1, N) at
            `sample_rate` (NumPy or torch; values outside [-1, 1] are clipped, NaN become 0).
        sample_rate: the waveform's rate (ignored for a file).

    Attributes:
        rate: output sample rate (Hz); layout: output channel layout name; channels: its count.
    """

    def __init__(self, source: Any, sample_rate: int = 16000) -> None:
        self._path: str | None = None
        self._array: np.ndarray | None = None
        if isinstance(source, (str, os.PathLike)):
            self._path = os.fspath(source)
            try:
                with av.open(self._path) as container:
                    if not container.streams.audio:
                        raise InputError(f"{display_path(source)}: file has no audio track")
                    stream = container.streams.audio[0]
                    in_rate = int(stream.codec_context.sample_rate)
                    layout = stream.codec_context.layout.name
            except (av.FFmpegError, OSError) as e:
                raise InputError(
                    f"audio file {display_path(source)} could not be opened ({short_reason(e)})"
                ) from None
            if not _aac_takes(layout):
                layout = "stereo" if stream.codec_context.layout.nb_channels > 1 else "mono"
        else:
            if isinstance(source, torch.Tensor):
                source = source.detach().to("cpu", torch.float32).numpy()
            x = np.asarray(source, dtype=np.float32)
            if x.ndim == 2 and 1 in x.shape:
                x = x.reshape(-1)
            if x.ndim != 1:
                raise ValueError(f"audio must be a mono 1-D waveform, got shape {x.shape}")
            if x.size == 0:
                raise ValueError("audio is empty; pass audio=None to write a silent video")
            if isinstance(sample_rate, bool) or int(sample_rate) != sample_rate or sample_rate <= 0:
                raise ValueError(f"sample_rate must be a positive integer, got {sample_rate!r}")
            self._array, in_rate, layout = x, int(sample_rate), "mono"
        self.input_rate = in_rate
        self.rate = mux_rate(in_rate)
        self.layout = layout
        self.channels = av.AudioLayout(layout).nb_channels

    def blocks(self) -> Iterator[np.ndarray]:
        """(channels, n) float32 blocks in [-1, 1], in order, exactly ceil(N * rate / input_rate) samples."""
        resampler = av.AudioResampler(
            format="fltp", layout=self.layout, rate=self.rate, options=RESAMPLER_OPTIONS
        )
        received = 0  # input samples given to the resampler
        emitted = 0
        for frame in self._input_frames():
            received += frame.samples
            cap = -(-min(received, self._declared or received) * self.rate // self.input_rate)
            for out in resampler.resample(frame):
                block, emitted = _capped(out, emitted, cap)
                if block is not None:
                    yield block
        if self._declared is not None and self._declared < received:  # cut the input's end padding
            received = self._declared
        want = -(-received * self.rate // self.input_rate)
        for out in resampler.resample(None):
            block, emitted = _capped(out, emitted, want)
            if block is not None:
                yield block
        if emitted < want:
            yield np.zeros((self.channels, want - emitted), np.float32)

    def _input_frames(self) -> Iterator[av.AudioFrame]:
        self._declared: int | None = None
        if self._array is not None:
            x = np.clip(np.nan_to_num(self._array, nan=0.0, posinf=1.0, neginf=-1.0), -1.0, 1.0)
            for start in range(0, x.size, RESAMPLE_CHUNK):
                frame = av.AudioFrame.from_ndarray(
                    np.ascontiguousarray(x[None, start : start + RESAMPLE_CHUNK]),
                    format="flt",
                    layout="mono",
                )
                frame.sample_rate = self.input_rate
                frame.time_base = Fraction(1, self.input_rate)
                frame.pts = start
                yield frame
            return
        assert self._path is not None
        with av.open(self._path) as container:
            stream = container.streams.audio[0]
            if (
                container.format.name.split(",")[0] in EXACT_DURATION_FORMATS
                and stream.duration
                and stream.time_base
            ):
                self._declared = round(stream.duration * stream.time_base * self.input_rate)
            try:
                for packet in container.demux(stream):
                    try:
                        frames = packet.decode()
                    except av.FFmpegError:
                        continue  # skipped, as when the model's audio was read (warned there)
                    for frame in frames:
                        # a stretch at another rate (a concatenated file) is left out of the track
                        if frame.samples and int(frame.sample_rate) == self.input_rate:
                            frame.pts = None
                            yield frame
            except av.FFmpegError:  # a truncated container ends the track
                return


def _capped(frame: av.AudioFrame, emitted: int, cap: int) -> tuple[np.ndarray | None, int]:
    data = frame.to_ndarray()
    n = max(0, min(data.shape[1], cap - emitted))
    if n == 0:
        return None, emitted
    return np.clip(data[:, :n], -1.0, 1.0).astype(np.float32), emitted + n
