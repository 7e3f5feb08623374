"""The log-mel speech front-end: filterbank, spectrogram alignment, locality, save/load, pipeline."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from conftest import randomize_
from floatalk.config import AudioEncoderConfig, LogMelConfig, preset
from floatalk.models.audio import AudioEncoder, normalize_waveform
from floatalk.models.emotion import Emotion, emotion_one_hot
from floatalk.models.float_model import FloatModel
from floatalk.models.logmel import LogMelEncoder, hz_to_mel, log_mel_spectrogram, mel_filterbank, mel_to_hz
from floatalk.options import GenerateOptions
from floatalk.pipeline import FloatPipeline
from floatalk.weights import load_model, save_model

SR = 16000


def _speech(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(SR * seconds)) / SR
    voiced = sum(np.sin(2 * np.pi * k * 140 * t) / k for k in range(1, 12)) * (np.sin(2 * np.pi * 3 * t) > 0)
    return (0.2 * voiced + 0.01 * rng.normal(size=t.size)).astype(np.float32)


@pytest.fixture(scope="module")
def logmel_model():
    torch.manual_seed(0)
    model = FloatModel(preset("tiny-logmel"), with_emotion=False)
    randomize_(model.fmt, seed=1)
    return model.eval()


# --------------------------------------------------------------------------------------------------
# Filterbank and spectrogram
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("scale", ["slaney", "htk"])
def test_mel_filterbank_properties(scale):
    cfg = LogMelConfig(mel_scale=scale)
    fb = mel_filterbank(cfg, SR)
    assert fb.shape == (80, 201)
    assert (fb >= 0).all() and (fb.sum(1) > 0).all()  # no empty filter
    freqs = np.linspace(0, SR / 2, 201)
    centroid = (fb * freqs).sum(1) / fb.sum(1)
    # Below ~300 Hz HTK filters are narrower than the 40 Hz FFT bins, so neighbours can share a bin
    # (the reason "slaney" is the default); Slaney filters always move up.
    assert (np.diff(centroid) > 0).all() if scale == "slaney" else (np.diff(centroid) >= 0).all()
    nonzero = fb > 0
    first = nonzero.argmax(1)
    last = 200 - nonzero[:, ::-1].argmax(1)
    assert (np.diff(first) >= 0).all() and (np.diff(last) >= 0).all() and (first <= last).all()
    assert fb[:, freqs > cfg.f_max].max(initial=0) == 0
    if scale == "slaney":  # area-normalised: each filter integrates to ~1 over Hz
        area = fb.sum(1) * (freqs[1] - freqs[0])  # narrow low filters see only a few FFT bins
        assert np.allclose(area, 1.0, atol=0.1) and abs(area.mean() - 1.0) < 0.01
    else:  # peak-1 triangles
        assert fb.max() <= 1.0 + 1e-12
    # the same filters as transformers' implementation of both conventions
    from transformers.audio_utils import mel_filter_bank

    ref = mel_filter_bank(
        201, 80, 0.0, 8000.0, SR, norm="slaney" if scale == "slaney" else None, mel_scale=scale
    )
    assert np.allclose(fb, ref.T, atol=1e-12)
    mels = np.array([0.0, 500.0, 999.0, 1000.0, 4000.0])
    assert np.allclose(mel_to_hz(hz_to_mel(mels, scale), scale), mels)


@pytest.mark.parametrize("tone", [300.0, 1000.0, 2500.0, 6000.0])
def test_pure_tone_peaks_in_its_mel_band(tone):
    cfg = LogMelConfig()
    t = torch.arange(SR, dtype=torch.float64) / SR
    spec = log_mel_spectrogram(torch.sin(2 * math.pi * tone * t)[None].float(), cfg, SR)
    assert spec.shape == (1, 80, 100)
    edges = mel_to_hz(np.linspace(hz_to_mel(0.0), hz_to_mel(8000.0), 82))
    centres = edges[1:-1]
    peak = spec[0, :, 10:90].mean(-1).argmax().item()
    assert abs(peak - np.abs(centres - tone).argmin()) <= 1
    assert edges[peak] < tone < edges[peak + 2]  # inside that filter's support


def test_mel_frames_are_centred_on_hop_midpoints():
    """Frame j is centred on sample 160 j + 80: a click there is loudest in frame j."""
    cfg = LogMelConfig()
    for j in (0, 7, 50, 99):
        x = torch.zeros(1, SR)
        x[0, 160 * j + 80] = 1.0
        energy = log_mel_spectrogram(x, cfg, SR).exp().sum(1)[0]
        assert energy.argmax().item() == j
    for n in (160, 161, 639, 640, 12345):
        assert log_mel_spectrogram(torch.randn(2, n), cfg, SR).shape == (2, 80, n // 160)
    with pytest.raises(ValueError, match="hop_length"):
        log_mel_spectrogram(torch.randn(1, 100), cfg, SR)


@pytest.mark.parametrize("n", [1, 100, 639, 640, 641, 1599, 16000, 20800, 12345])
def test_one_feature_per_video_frame(n):
    enc = AudioEncoder(preset("tiny-logmel").audio).eval()
    out = enc(normalize_waveform(torch.randn(2, n)))
    assert out.shape == (2, math.ceil(n * 25 / SR), 16)
    assert torch.isfinite(out).all()
    # an explicit T pads (repeating the last sample) or trims: frame t is samples [640 t, 640 t + 640)
    wave = torch.randn(1, 6400)
    assert enc(wave, 13).shape == (1, 13, 16)
    assert torch.allclose(enc(wave, 4), enc(wave[:, :2560])[:, :4], atol=1e-6)


# --------------------------------------------------------------------------------------------------
# Locality: output frame t depends only on audio near frame t
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["tiny", "default"])
def test_receptive_field_is_local_and_as_documented(which):
    cfg = preset("tiny-logmel").audio.logmel if which == "tiny" else LogMelConfig()
    torch.manual_seed(0)
    enc = LogMelEncoder(cfg, feature_dim=8).double()
    left, right = enc.receptive_field
    assert (left + right + 640) / SR < 0.5  # a few hundred milliseconds
    wave = torch.randn(1, 30 * 640, dtype=torch.float64, requires_grad=True)
    out = enc(wave)
    assert out.shape == (1, 30, 8)
    for t in (10, 17):
        (grad,) = torch.autograd.grad(out[0, t].sum(), wave, retain_graph=True)
        nonzero = torch.nonzero(grad[0]).flatten()
        lo, hi = t * 640 - left, (t + 1) * 640 + right
        assert nonzero.min() >= lo and nonzero.max() < hi
        assert nonzero.max() - nonzero.min() > 0.9 * (hi - lo)  # the bound is tight


# --------------------------------------------------------------------------------------------------
# Config, training rule, save / load
# --------------------------------------------------------------------------------------------------


def test_config_validation():
    with pytest.raises(ValueError, match="frontend"):
        AudioEncoderConfig(frontend="mfcc")
    with pytest.raises(ValueError, match="hop_length"):
        AudioEncoderConfig(frontend="logmel", fps=30.0)
    with pytest.raises(ValueError, match="Nyquist"):
        AudioEncoderConfig(frontend="logmel", sample_rate=8000)
    with pytest.raises(ValueError, match="mel_scale"):
        LogMelConfig(mel_scale="bark")
    AudioEncoderConfig(fps=30.0)  # the wav2vec2 front-end interpolates to any rate


def test_trainable_parameters_rule(tiny_config):
    logmel = AudioEncoder(preset("tiny-logmel").audio)
    assert logmel.wav2vec2 is None and logmel.audio_projection is None
    assert all(name.startswith("logmel.") for name, _ in logmel.named_parameters())
    assert len(logmel.trainable_parameters()) == len(list(logmel.parameters()))
    w2v = AudioEncoder(tiny_config.audio).freeze_pretrained_()
    trained = {name for name, p in w2v.named_parameters() if p.requires_grad}
    assert trained == {name for name, _ in w2v.trainable_named_parameters()}
    assert trained and all(name.startswith("audio_projection.") for name in trained)


def test_tiny_logmel_saves_and_loads_bit_exactly(logmel_model, tmp_path):
    path = save_model(logmel_model, tmp_path / "w")
    saved = json.loads((path / "audio_encoder" / "config.json").read_text())["config"]
    assert saved["frontend"] == "logmel" and saved["logmel"]["n_mels"] == 40
    for loaded in (load_model(path), load_model(path, with_emotion=False)):
        assert loaded.config.audio == logmel_model.config.audio and loaded.emotion is None
        assert loaded.config.fmt == logmel_model.config.fmt
        ref, got = logmel_model.state_dict(), loaded.state_dict()
        assert set(ref) == set(got) and all(torch.equal(ref[k], got[k]) for k in ref)
        wave = torch.randn(1, 5000)
        assert torch.equal(loaded.audio_encoder(wave), logmel_model.audio_encoder(wave))


def test_configs_saved_before_the_frontend_field_still_load(tiny_model, tmp_path):
    path = save_model(tiny_model, tmp_path / "old")
    cfg_file = path / "audio_encoder" / "config.json"
    data = json.loads(cfg_file.read_text())
    del data["config"]["frontend"], data["config"]["logmel"]
    cfg_file.write_text(json.dumps(data))
    loaded = load_model(path)
    assert loaded.config.audio.frontend == "wav2vec2" and loaded.config == tiny_model.config


# --------------------------------------------------------------------------------------------------
# In the pipeline
# --------------------------------------------------------------------------------------------------


def test_generate_end_to_end_without_emotion_model(logmel_model):
    pipe = FloatPipeline(logmel_model)
    image = torch.rand(1, 3, 32, 32) * 2 - 1
    wave = _speech(0.7)
    run = pipe.generate(image, wave, GenerateOptions(nfe=2, seed=0, output_size=32))
    video = np.concatenate(list(run))
    assert video.shape == (18, 32, 32, 3) and video.dtype == np.uint8  # ceil(0.7 s * 25)
    assert any("neutral" in n for n in run.result.notices) and run.result.emotion == "auto (neutral)"
    assert run.result.num_frames == 18 and run.result.seed == 0
    again = np.concatenate(list(pipe.generate(image, wave, nfe=2, seed=0, output_size=32)))
    assert np.array_equal(video, again)
    # the speech conditions the motion
    audio = pipe.encode_audio(wave)
    assert torch.equal(pipe.emotion_probs(audio, "auto"), emotion_one_hot(Emotion.NEUTRAL))
    source = pipe.encode_source(image)
    emotion = emotion_one_hot(Emotion.NEUTRAL)
    a = torch.cat([w.latents for w in pipe.iter_motion(source, audio, emotion, nfe=2, seed=3)], 1)
    other = pipe.encode_audio(_speech(0.7, seed=1)[::-1].copy())
    b = torch.cat([w.latents for w in pipe.iter_motion(source, other, emotion, nfe=2, seed=3)], 1)
    assert a.shape == (1, 18, 32) and not torch.allclose(a, b)


def test_chunked_encoding_is_exact(logmel_model):
    left, right = logmel_model.audio_encoder.logmel.receptive_field
    context = 0.2  # 3200 samples, more than the receptive field on either side
    assert max(left, right) <= context * SR
    wave = _speech(4.3)
    calls: list[int] = []
    hook = logmel_model.audio_encoder.logmel.register_forward_hook(
        lambda _m, inputs, _o: calls.append(inputs[0].shape[-1])
    )
    try:
        chunked = FloatPipeline(logmel_model, speech_chunk_seconds=1.0, speech_context_seconds=context)
        features = chunked.encode_audio(wave).features
    finally:
        hook.remove()
    assert len(calls) == 5 and max(calls) <= (1.0 + 2 * context) * SR + 640
    whole = FloatPipeline(logmel_model, speech_chunk_seconds=10.0).encode_audio(wave).features
    assert features.shape == whole.shape == (1, 108, 16)
    assert (features - whole).abs().max() < 1e-5
    # without context the chunk edges differ: the agreement above is not trivial
    no_context = FloatPipeline(logmel_model, speech_chunk_seconds=1.0, speech_context_seconds=0.0)
    assert (no_context.encode_audio(wave).features - whole).abs().max() > 1e-3


def test_low_precision_runs():
    enc = AudioEncoder(preset("tiny-logmel").audio).to(torch.bfloat16)
    out = enc(torch.randn(1, 3000, dtype=torch.bfloat16))
    assert out.dtype == torch.bfloat16 and out.shape == (1, 5, 16) and torch.isfinite(out).all()
