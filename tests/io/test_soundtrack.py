"""The output video's sound track: the input's own rate and channels, and its exact length."""

from __future__ import annotations

import pathlib
from fractions import Fraction

import av
import numpy as np
import pytest

from floatalk.io import read_video_info
from floatalk.io.audio import load_audio
from floatalk.io.soundtrack import SoundTrack, mux_rate
from floatalk.io.video import VideoWriter


def _encode(path: pathlib.Path, x: np.ndarray, sr: int, codec: str) -> None:
    """(C, N) float samples -> an audio file (PyAV)."""
    layout = {1: "mono", 2: "stereo"}[x.shape[0]]
    with av.open(str(path), "w") as c:
        stream = c.add_stream(codec, rate=sr, layout=layout)
        for start in range(0, x.shape[1], 1024):
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(x[:, start : start + 1024], dtype=np.float32),
                format="fltp",
                layout=layout,
            )
            frame.sample_rate, frame.time_base, frame.pts = sr, Fraction(1, sr), start
            c.mux(stream.encode(frame))
        c.mux(stream.encode(None))


def _decoded_seconds(path: pathlib.Path) -> float:
    """Length of the audio as a decoder that ignores the MP4 edit list's end trim plays it."""
    return read_video_info(path)["audio_duration"]


def _mux(path: pathlib.Path, audio, seconds: float, sample_rate: int = 16000) -> dict:
    frames = int(np.ceil(seconds * 25))
    with VideoWriter(path, 32, 32, fps=25, audio=audio, sample_rate=sample_rate) as w:
        w.write(np.zeros((frames, 32, 32, 3), np.uint8))
    return read_video_info(path)


def test_mux_rate_keeps_high_rates_and_raises_low_ones_by_a_whole_factor():
    assert [mux_rate(r) for r in (48000, 44100, 96000)] == [48000, 44100, 96000]
    assert [mux_rate(r) for r in (16000, 22050, 8000, 24000, 11025)] == [48000, 44100, 48000, 48000, 44100]
    assert mux_rate(15000) == 48000  # no whole multiple is an AAC rate


def test_48khz_stereo_keeps_its_rate_and_channels(tmp_path):
    sr, n = 48000, int(48000 * 1.3)
    t = np.arange(n) / sr
    stereo = np.stack([np.sin(2 * np.pi * 440 * t), np.sin(2 * np.pi * 660 * t)]) * 0.3
    _encode(tmp_path / "in.wav", stereo, sr, "pcm_s16le")
    info = _mux(tmp_path / "out.mp4", tmp_path / "in.wav", n / sr)
    assert info["audio_sample_rate"] == 48000 and info["audio_channels"] == 2
    with av.open(str(tmp_path / "out.mp4")) as c:
        left, right = np.concatenate([f.to_ndarray() for f in c.decode(audio=0)], axis=1)[:, 4096:8192]
    assert np.corrcoef(left, right)[0, 1] < 0.5  # two different channels, not a mono copy
    assert abs(info["audio_declared_duration"] - n / sr) < 1e-6


@pytest.mark.parametrize("seconds", [0.05, 4.3, 4.337])
@pytest.mark.parametrize("rate", [16000, 22050])
def test_track_length_matches_the_input_within_25_ms(tmp_path, seconds, rate):
    """Also for a decoder that ignores the edit list (52 ms over at 4.3 s / 16 kHz before)."""
    n = int(rate * seconds)
    x = (0.3 * np.sin(np.arange(n) * 0.05)).astype(np.float32)
    _encode(tmp_path / "in.flac", x[None], rate, "flac")
    for source in (tmp_path / "in.flac", x):
        info = _mux(tmp_path / "out.mp4", source, n / rate, sample_rate=rate)
        assert abs(info["audio_declared_duration"] - n / rate) < 1e-4
        assert abs(_decoded_seconds(tmp_path / "out.mp4") - n / rate) <= 0.025
        assert abs(len(load_audio(tmp_path / "out.mp4", rate)) - n) <= 1


def test_aac_input_end_padding_is_cut(tmp_path):
    sr, n = 48000, 48000 * 2 + 333
    _encode(tmp_path / "in.m4a", 0.3 * np.sin(np.arange(n) * 0.05)[None], sr, "aac")
    seconds = len(load_audio(tmp_path / "in.m4a", sr)) / sr  # as its container declares it
    info = _mux(tmp_path / "out.mp4", tmp_path / "in.m4a", seconds)
    assert abs(info["audio_declared_duration"] - seconds) < 1e-6
    assert abs(_decoded_seconds(tmp_path / "out.mp4") - seconds) <= 0.025


def test_blocks_have_the_exact_length_and_follow_the_input():
    x = (0.5 * np.sin(np.arange(16000) * 0.02)).astype(np.float32)
    track = SoundTrack(x, 16000)
    y = np.concatenate(list(track.blocks()), axis=1)
    assert track.rate == 48000 and y.shape == (1, 48000)
    assert np.abs(y[0, ::3] - x).max() < 0.01  # 3x finer sampling of the same signal
