"""Long speech is encoded in bounded chunks; short speech exactly as a whole clip."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from floatalk.chunking import frame_chunks
from floatalk.pipeline import FloatPipeline


@pytest.mark.parametrize("total", [1, 7, 50, 51, 99, 100, 101, 1234])
@pytest.mark.parametrize(("chunk", "context"), [(50, 5), (10, 0), (33, 40)])
def test_chunks_cover_every_frame_once_within_bounds(total, chunk, context):
    chunks = frame_chunks(total, chunk, context)
    kept = np.concatenate([np.arange(c.start, c.stop) for c in chunks])
    assert np.array_equal(kept, np.arange(total))
    for c in chunks:
        assert 0 <= c.context_start <= c.start < c.stop <= c.context_stop <= total
        assert c.start - c.context_start <= context and c.context_stop - c.stop <= context
        assert c.stop - c.start <= chunk + max(context, 1)  # only the merged last chunk grows
        assert c.context_stop - c.context_start - (c.keep.stop - c.keep.start) <= 2 * context
    if total <= chunk:
        assert len(chunks) == 1 and chunks[0].context_start == 0 and chunks[0].context_stop == total


def _speech(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(16000 * seconds)) / 16000
    return (
        0.2 * np.sin(2 * np.pi * 180 * t) * (1 + np.sin(2 * np.pi * 3 * t)) + 0.01 * rng.normal(size=t.size)
    ).astype(np.float32)


def _record_lengths(module: torch.nn.Module) -> list[int]:
    seen: list[int] = []
    module.register_forward_hook(lambda _m, inputs, _o: seen.append(inputs[0].shape[-1]))
    return seen


def test_long_speech_is_encoded_in_bounded_chunks(tiny_model):
    pipe = FloatPipeline(tiny_model, speech_chunk_seconds=1.0, speech_context_seconds=0.2)
    audio_lengths = _record_lengths(pipe.model.audio_encoder.wav2vec2.feature_extractor)
    emotion_lengths = _record_lengths(pipe.model.emotion.wav2vec2.feature_extractor)
    wave = _speech(4.3)
    audio = pipe.encode_audio(wave)
    assert audio.features.shape[1] == audio.num_frames == 108  # ceil(4.3 * 25)
    # every encoder call sees at most one chunk plus context on both sides, never the whole clip
    assert len(audio_lengths) == 5 and max(audio_lengths) <= (1.0 + 2 * 0.2) * 16000 + 640
    probs = pipe.emotion_probs(audio, "auto")
    assert len(emotion_lengths) == 5 and max(emotion_lengths) <= 1.0 * 16000 + 640
    assert torch.allclose(probs.sum(), torch.tensor(1.0)) and (probs > 0).all()

    # The chunked features agree with the whole-clip ones (global attention and GroupNorm make them
    # differ slightly): far closer than features of other speech are.
    whole = FloatPipeline(tiny_model, speech_chunk_seconds=10.0).encode_audio(wave).features
    other = FloatPipeline(tiny_model, speech_chunk_seconds=10.0).encode_audio(_speech(4.3, 1) * 3).features
    err = (audio.features - whole).abs().mean()
    assert err < 0.25 * (other - whole).abs().mean()


def test_short_speech_is_encoded_whole_exactly(tiny_model):
    wave = _speech(1.5)
    a = FloatPipeline(tiny_model, speech_chunk_seconds=1.5).encode_audio(wave)
    b = FloatPipeline(tiny_model, speech_chunk_seconds=100.0).encode_audio(wave)
    assert torch.equal(a.features, b.features)
    assert torch.equal(
        FloatPipeline(tiny_model, speech_chunk_seconds=1.5).emotion_probs(a, "auto"),
        FloatPipeline(tiny_model).emotion_probs(b, "auto"),
    )
