"""Speech encoder (frame-rate interpolation, layer concatenation) and emotion classifier."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from floatalk.models.audio import AudioEncoder, normalize_waveform, num_video_frames
from floatalk.models.emotion import Emotion, SpeechEmotionClassifier, emotion_one_hot


@pytest.mark.parametrize(
    ("samples", "frames"), [(16000, 25), (16001, 26), (640, 1), (1, 1), (41600, 65), (41599, 65)]
)
def test_num_video_frames(samples, frames):
    assert num_video_frames(samples, 16000, 25.0) == frames


def test_normalize_waveform():
    x = torch.randn(2, 1000) * 3 + 5
    y = normalize_waveform(x)
    assert torch.allclose(y.mean(-1), torch.zeros(2), atol=1e-5)
    assert torch.allclose(y.std(-1, unbiased=False), torch.ones(2), atol=1e-4)
    assert torch.count_nonzero(normalize_waveform(torch.zeros(1, 100))) == 0  # silence stays finite


def test_all_layer_features_equal_hf_hidden_states(tiny_config):
    """With T equal to wav2vec2's own frame count, interpolation is the identity: the concatenated
    layer outputs must equal transformers' hidden_states[1:]."""
    enc = AudioEncoder(tiny_config.audio).eval()
    wave = torch.randn(1, 8000)
    with torch.no_grad():
        native = enc.wav2vec2(wave, output_hidden_states=True).hidden_states
        ours = enc.hidden_states(wave, native[-1].shape[1])
    assert torch.allclose(ours, torch.cat(native[1:], dim=-1), atol=1e-5)


def test_features_are_resampled_to_video_frames(tiny_config):
    enc = AudioEncoder(tiny_config.audio).eval()
    with torch.no_grad():
        feats = enc(torch.randn(1, 16000 * 2 + 7))
    assert feats.shape == (1, 51, tiny_config.audio.feature_dim)
    last_only = AudioEncoder(dataclasses.replace(tiny_config.audio, all_layers=False))
    assert last_only.audio_projection[0].in_features == tiny_config.audio.wav2vec2["hidden_size"]


def test_waveform_is_padded_by_repeating_the_last_sample(tiny_config):
    enc = AudioEncoder(tiny_config.audio)
    padded = enc.pad_to_frames(torch.arange(5.0)[None], 1)
    assert padded.shape == (1, 640) and torch.all(padded[0, 4:] == 4.0)


def test_emotion_probabilities_and_labels(tiny_config):
    clf = SpeechEmotionClassifier(tiny_config.emotion).eval()
    with torch.no_grad():
        p = clf.probabilities(torch.randn(2, 4000))
    assert p.shape == (2, 7) and torch.allclose(p.sum(-1), torch.ones(2))
    assert [e.value for e in Emotion] == ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"]
    assert Emotion.parse(" Happy ") is Emotion.HAPPY
    assert emotion_one_hot("sad").tolist() == [[0, 0, 0, 0, 0, 1.0, 0]]
    with pytest.raises(ValueError, match="unknown emotion 'joy'; choose one of angry"):
        Emotion.parse("joy")
