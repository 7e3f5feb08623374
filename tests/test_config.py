"""Configs: presets, validation, dict round trips that reject typos."""

from __future__ import annotations

import pytest

from floatalk.config import FloatConfig, FMTConfig, MotionAEConfig, config_from_dict, config_to_dict, preset


def test_float_512_is_the_released_architecture():
    cfg = preset("float-512")
    assert (cfg.fmt.hidden_dim, cfg.fmt.depth, cfg.fmt.num_heads, cfg.fmt.clip_frames) == (1024, 8, 8, 50)
    assert (
        cfg.fmt.context_frames,
        cfg.fmt.attention_window,
        cfg.motion_ae.size,
        cfg.motion_ae.motion_dim,
    ) == (10, 2, 512, 20)
    assert cfg.audio.wav2vec2["num_hidden_layers"] == 12 and cfg.emotion.wav2vec2["hidden_size"] == 1024


@pytest.mark.parametrize("name", ["float-512", "tiny", "tiny-logmel"])
def test_round_trip(name):
    cfg = preset(name)
    assert config_from_dict(FloatConfig, config_to_dict(cfg)) == cfg


def test_logmel_preset_and_configs_saved_before_the_frontend_field():
    tiny, logmel = preset("tiny"), preset("tiny-logmel")
    assert tiny.audio.frontend == "wav2vec2" and logmel.audio.frontend == "logmel"
    assert (logmel.fmt, logmel.motion_ae, logmel.emotion) == (tiny.fmt, tiny.motion_ae, tiny.emotion)
    old = config_to_dict(tiny)
    del old["audio"]["frontend"], old["audio"]["logmel"]
    assert config_from_dict(FloatConfig, old) == tiny
    with pytest.raises(ValueError, match=r"audio\.logmel\.n_mel\b"):
        config_from_dict(FloatConfig, {"audio": {"logmel": {"n_mel": 40}}})


def test_unknown_and_mistyped_keys_are_errors():
    with pytest.raises(ValueError, match=r"fmt\.hiden_dim"):
        config_from_dict(FloatConfig, {"fmt": {"hiden_dim": 3}})
    with pytest.raises(ValueError, match="depth must be int"):
        config_from_dict(FMTConfig, {"depth": "eight"})
    with pytest.raises(ValueError, match="unknown preset"):
        preset("huge")


def test_validation():
    with pytest.raises(ValueError, match="power of two"):
        MotionAEConfig(size=100)
    with pytest.raises(ValueError, match="divisible"):
        FMTConfig(hidden_dim=10, num_heads=3)
    with pytest.raises(ValueError, match="latent_dim"):
        FloatConfig(fmt=FMTConfig(latent_dim=8))
