"""The pipeline on a tiny model: seeding, forced emotion, lambda-control, streaming decode."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from floatalk.config import preset
from floatalk.models.emotion import emotion_one_hot
from floatalk.models.float_model import FloatModel
from floatalk.pipeline import FloatPipeline


@pytest.fixture
def pipe(tiny_model):
    return FloatPipeline(tiny_model)


@pytest.fixture
def inputs(pipe):
    rng = np.random.default_rng(0)
    image = torch.from_numpy(rng.uniform(-1, 1, (1, 3, 32, 32)).astype(np.float32))
    wave = (0.1 * np.sin(np.arange(16000 * 1.3) * 0.05) * rng.uniform(0.5, 1, 20800)).astype(np.float32)
    return pipe.encode_source(image), pipe.encode_audio(wave)


def sample(pipe, source, audio, emotion=None, **kw):
    emotion = pipe.emotion_probs(audio, "auto") if emotion is None else emotion
    return torch.cat([w.latents for w in pipe.iter_motion(source, audio, emotion, nfe=2, **kw)], dim=1)


def test_same_seed_same_latents_different_seed_different(pipe, inputs):
    source, audio = inputs
    assert audio.num_frames == 33  # ceil(1.3 s * 25)
    a = sample(pipe, source, audio, seed=7)
    b = sample(pipe, source, audio, seed=7)
    c = sample(pipe, source, audio, seed=8)
    assert a.shape == (1, 33, 32)
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


def test_forced_emotion_is_one_hot_and_changes_motion(pipe, inputs):
    source, audio = inputs
    assert torch.equal(pipe.emotion_probs(audio, "happy"), emotion_one_hot("happy"))
    happy = sample(pipe, source, audio, emotion=pipe.emotion_probs(audio, "happy"), seed=1, emotion_scale=2.0)
    sad = sample(pipe, source, audio, emotion=pipe.emotion_probs(audio, "sad"), seed=1, emotion_scale=2.0)
    assert not torch.allclose(happy, sad)
    with pytest.raises(ValueError, match="unknown emotion"):
        pipe.emotion_probs(audio, "joy")


def test_lambda_editing_moves_along_one_basis_direction(pipe, inputs):
    source, _ = inputs
    latents = torch.randn(5, 32)
    q = pipe.model.motion_ae.dec.direction.basis()
    edited = pipe.edit_motion(latents, source, {2: 1.5})
    coeff_change = (edited - latents) @ q
    expected = torch.zeros(5, q.shape[1])
    expected[:, 2] = 1.5
    assert torch.allclose(coeff_change, expected, atol=1e-5)
    still = pipe.edit_motion(latents, source, motion_scale=0.0)
    assert torch.allclose(still, source.source_motion.expand(5, -1))
    doubled = pipe.edit_motion(latents, source, motion_scale=2.0)
    assert torch.allclose(doubled - source.source_motion, 2 * (latents - source.source_motion), atol=1e-5)
    with pytest.raises(AssertionError, match="out of range"):  # users' values are checked by GenerateOptions
        pipe.edit_motion(latents, source, {99: 1.0})


def test_streamed_frames_match_batched_decoding(pipe, inputs):
    source, audio = inputs
    latents = sample(pipe, source, audio, seed=3)[0]
    frames = torch.cat(list(pipe.iter_frames(source, latents, batch_size=4)))
    single = torch.cat(list(pipe.iter_frames(source, latents, batch_size=1)))
    assert frames.shape == (33, 3, 32, 32)
    # same frames in the same order (a random decoder amplifies rounding, so compare on average)
    assert float((frames - single).abs().mean()) < 1e-4 * float(single.abs().mean())


def test_short_and_silent_audio(pipe):
    tiny = pipe.encode_audio(np.zeros(100, np.float32))  # shorter than one frame and silent
    assert tiny.num_frames == 1 and torch.isfinite(tiny.features).all()
    with pytest.raises(ValueError, match="no samples"):
        pipe.encode_audio(np.zeros(0, np.float32))


def _write_wav(path, wave_16k: np.ndarray) -> None:
    import wave as wave_module

    with wave_module.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(16000)
        f.writeframes((np.clip(wave_16k, -1, 1) * 32767).astype("<i2").tobytes())


def test_long_speech_is_read_from_its_file_block_by_block_in_bounded_memory(tmp_path, tiny_model):
    """Features of long speech streamed from the file = features of the same samples held in memory,
    and the streamed encoding never holds the waveform (Python-side peak far below its size)."""
    import tracemalloc

    from floatalk.io.audio import SpeechAudio

    model = FloatModel(preset("tiny-logmel"), with_emotion=False).eval()
    pipe = FloatPipeline(model, speech_chunk_seconds=8.0, speech_context_seconds=1.0)
    rng = np.random.default_rng(0)
    seconds = 400
    t = np.arange(16000 * seconds) / 16000
    speech = 0.3 * np.sin(2 * np.pi * 180 * t) * (
        np.sin(2 * np.pi * 2.3 * t) > 0
    ) + 0.01 * rng.standard_normal(t.size)
    _write_wav(tmp_path / "long.wav", speech)
    source = SpeechAudio.from_file(tmp_path / "long.wav")
    held = SpeechAudio.from_array(source.read())
    tracemalloc.start()
    try:
        streamed = pipe.encode_audio(source)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    in_memory = pipe.encode_audio(held)
    assert streamed.num_frames == in_memory.num_frames == seconds * 25
    assert streamed.waveform is None
    assert torch.allclose(streamed.features, in_memory.features, atol=1e-5)
    waveform_bytes = 4 * 16000 * seconds  # 25.6 MB as float32
    assert peak < waveform_bytes / 4, f"peak {peak / 2**20:.1f} MiB"


def test_emotion_of_long_speech_is_pooled_over_chunks(tiny_model):
    """The chunked emotion path (mean-pooled hidden states) on speech longer than one chunk."""
    pipe = FloatPipeline(tiny_model, speech_chunk_seconds=0.4, speech_context_seconds=0.08)
    wave = (0.2 * np.sin(np.arange(16000) * 0.05)).astype(np.float32)
    audio = pipe.encode_audio(wave)
    assert audio.waveform is None and audio.num_frames == 25
    probs = pipe.emotion_probs(audio, "auto")
    assert probs.shape == (1, 7) and torch.isclose(probs.sum(), torch.tensor(1.0))


def test_bfloat16_on_cpu_generates_close_to_float32():
    """QR has no bfloat16 kernel on CPU: the motion basis is orthonormalised in float32 (a fixed bug:
    `--dtype bfloat16` on CPU used to stop with NotImplementedError "geqrf_cpu")."""
    rng = np.random.default_rng(0)
    image = (rng.random((32, 32, 3)) * 255).astype(np.uint8)
    wave = (0.1 * np.sin(np.arange(16000) * 0.05)).astype(np.float32)
    videos = {}
    for dtype in (torch.float32, torch.bfloat16):
        torch.manual_seed(0)
        pipe = FloatPipeline(FloatModel(preset("tiny")).eval(), dtype=dtype)
        videos[dtype] = np.concatenate(
            list(pipe.generate(image, wave, crop=False, seed=0, nfe=2, output_size=32))
        )
    assert videos[torch.bfloat16].shape == (25, 32, 32, 3)
    assert np.abs(videos[torch.float32].astype(int) - videos[torch.bfloat16]).mean() < 8
