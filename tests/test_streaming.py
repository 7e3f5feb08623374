"""Streaming generation (floatalk.streaming): chunks of speech in, final frames out, flat memory,
the offline result when the whole speech comes at once, clear errors."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import randomize_
from floatalk.config import LogMelConfig, preset
from floatalk.errors import InputError
from floatalk.models.float_model import FloatModel
from floatalk.options import GenerateOptions
from floatalk.pipeline import FloatPipeline
from floatalk.streaming import StreamSettings

PORTRAIT = Path(__file__).parents[1] / "src" / "floatalk" / "assets" / "portraits" / "astronaut.jpg"
OPTIONS = GenerateOptions(crop=False, seed=3, output_size=32, emotion="happy")


def _pipe(frontend: str, pose: bool = False) -> FloatPipeline:
    cfg = preset("tiny")
    if frontend == "logmel":
        audio = dataclasses.replace(
            cfg.audio, frontend="logmel", feature_dim=cfg.fmt.audio_dim, logmel=LogMelConfig(channels=16)
        )
        cfg = dataclasses.replace(cfg, audio=audio)
    if pose:
        fmt = dataclasses.replace(cfg.fmt, pose_dim=6, pose_mean=(0.0,) * 6, pose_std=(2.0,) * 6)
        cfg = dataclasses.replace(cfg, fmt=fmt)
    torch.manual_seed(0)
    model = FloatModel(cfg)
    randomize_(model.fmt, 1)
    return FloatPipeline(model.eval())


@pytest.fixture(scope="module")
def pipes(one_thread):
    return {name: _pipe(name) for name in ("wav2vec2", "logmel")}


def _speech(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(round(16000 * seconds)) / 16000
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)  # syllable-like loudness
    return (0.1 * envelope * rng.standard_normal(t.size)).astype(np.float32)


def _offline(pipe: FloatPipeline, wave: np.ndarray, options=OPTIONS) -> np.ndarray:
    return np.concatenate(list(pipe.generate(str(PORTRAIT), wave, options)))


def _collect(batches) -> tuple[np.ndarray, list[int]]:
    return np.concatenate([b.frames for b in batches]), [b.start for b in batches]


@pytest.mark.parametrize("frontend", ["wav2vec2", "logmel"])
def test_the_whole_speech_at_once_gives_the_offline_frames(pipes, frontend):
    pipe = pipes[frontend]
    wave = _speech(1.7)  # several windows of L = 8 frames, a partial last one
    options = OPTIONS.replace(decode_batch_size=8)  # a stream decodes a step's frames in one batch
    offline = _offline(pipe, wave, options)
    stream = pipe.stream(str(PORTRAIT), options, StreamSettings(nfe=None))  # the options' nfe, as offline
    frames, starts = _collect(stream.push(wave, end=True))
    assert frames.shape == offline.shape and frames.dtype == np.uint8
    assert np.array_equal(frames, offline)
    assert starts == list(range(0, len(offline), pipe.config.fmt.clip_frames))


def test_chunked_speech_gives_every_frame_once_in_order_with_bounded_delay_and_memory(pipes):
    pipe = pipes["logmel"]
    settings = StreamSettings(hop_frames=4, lookahead_frames=2, first_hop_frames=2, context_seconds=0.5)
    stream = pipe.stream(str(PORTRAIT), OPTIONS, settings)
    wave = _speech(6.0, seed=1)
    rng = np.random.default_rng(0)
    batches, pos, peak_buffer = [], 0, 0
    spf = 640
    while pos < wave.size:
        n = int(rng.integers(1, 5000))  # chunks of any size, not aligned to frames
        batches += stream.push(wave[pos : pos + n])
        pos += n
        heard = min(pos, wave.size) // spf
        if stream.frames_done == 0:  # the first frames come after first_hop + lookahead frames of speech
            assert heard < settings.first_hop_frames + settings.lookahead_frames
        # every frame whose speech (plus the look-ahead) has arrived is out: the delay is bounded
        assert heard - stream.frames_done < settings.hop_frames + settings.lookahead_frames
        peak_buffer = max(peak_buffer, stream.buffer.size)
    batches += stream.end()
    frames, starts = _collect(batches)
    total = int(np.ceil(wave.size / spf))
    assert frames.shape == (total, 32, 32, 3) and stream.total_frames == total
    expected, at = [], 0
    for b in batches:
        expected.append(at)
        at += len(b.frames)
    assert starts == expected  # contiguous, in order, no frame twice
    assert np.allclose(batches[1].timestamps, np.arange(batches[1].start, at)[: len(batches[1].frames)] / 25)
    # flat memory: the stream keeps the encoder context, one window and the newest chunk, not 6 s
    window = pipe.config.fmt.clip_frames
    bound = (round(0.5 * 25) + window + settings.hop_frames + settings.lookahead_frames) * spf + 5000
    assert peak_buffer <= bound < wave.size
    # the streamed frames are not the offline ones (less speech was known), but close in content
    offline = _offline(pipe, wave)
    assert offline.shape == frames.shape
    assert np.abs(offline.astype(float) - frames).mean() < 40


def test_a_stream_rejects_what_it_cannot_do_in_one_line(pipes):
    pipe = pipes["logmel"]
    with pytest.raises(InputError, match="timeline"):
        pipe.stream(str(PORTRAIT), OPTIONS, emotion="0-1:happy,1-:sad")
    with pytest.raises(InputError, match="--pose-from"):
        pipe.stream(str(PORTRAIT), OPTIONS, pose_from="ref.mp4")
    with pytest.raises(InputError, match="still-head"):
        pipe.stream(str(PORTRAIT), OPTIONS, still_head=True)  # no pose condition in these weights
    with pytest.raises(InputError, match="hop_frames"):
        pipe.stream(str(PORTRAIT), OPTIONS, StreamSettings(hop_frames=0))
    with pytest.raises(InputError, match="lookahead"):
        pipe.stream(str(PORTRAIT), OPTIONS, StreamSettings(lookahead_frames=-1))
    with pytest.raises(InputError, match="nfe"):
        pipe.stream(str(PORTRAIT), OPTIONS, StreamSettings(nfe=0))
    # the stream's nfe (5 by default) is what it samples with; offline with nfe 5 gives its frames
    wave = _speech(1.0)
    options = OPTIONS.replace(decode_batch_size=8)
    frames, _ = _collect(pipe.stream(str(PORTRAIT), options).push(wave, end=True))
    assert np.array_equal(frames, _offline(pipe, wave, options.replace(nfe=5)))
    stream = pipe.stream(str(PORTRAIT), OPTIONS)
    with pytest.raises(InputError, match="NaN"):
        stream.push(np.array([0.0, np.nan], np.float32))
    with pytest.raises(InputError, match="without any speech"):
        stream.end()
    stream = pipe.stream(str(PORTRAIT), OPTIONS)
    stream.push(_speech(0.5), end=True)
    with pytest.raises(InputError, match="ended"):
        stream.push(_speech(0.1))


def test_still_head_streams_with_a_pose_model(one_thread):
    pipe = _pipe("logmel", pose=True)
    wave = _speech(1.0)
    options = OPTIONS.replace(still_head=True, decode_batch_size=8)
    stream = pipe.stream(str(PORTRAIT), options, StreamSettings(nfe=None))
    frames, _ = _collect(stream.push(wave, end=True))
    assert np.array_equal(frames, _offline(pipe, wave, options))


def test_auto_emotion_is_estimated_from_the_speech_heard_so_far(pipes):
    """emotion "auto" with a speech-emotion classifier: re-estimated every emotion_every_seconds on the
    speech heard so far; given the whole speech at once, the offline estimate (and frames)."""
    pipe = pipes["wav2vec2"]
    assert pipe.model.emotion is not None
    wave = _speech(1.5, seed=4)
    options = OPTIONS.replace(emotion="auto", decode_batch_size=8)
    at_once = pipe.stream(str(PORTRAIT), options, StreamSettings(nfe=None))
    frames, _ = _collect(at_once.push(wave, end=True))
    assert np.array_equal(frames, _offline(pipe, wave, options))
    live = pipe.stream(
        str(PORTRAIT), options, StreamSettings(hop_frames=4, lookahead_frames=2, emotion_every_seconds=0.5)
    )
    estimates = []
    for i in range(0, wave.size, 4000):
        live.push(wave[i : i + 4000])
        if live._emotion is not None:
            estimates.append(live._emotion.clone())
    live.end()
    assert len(estimates) >= 2
    assert all(abs(float(e.sum()) - 1) < 1e-4 for e in estimates)  # probabilities
    assert any(not torch.allclose(estimates[0], e) for e in estimates[1:])  # re-estimated as speech came
