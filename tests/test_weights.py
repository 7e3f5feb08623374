"""Saving/loading (strict), and conversion of the original release's key layout."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from floatalk.cli import main as cli_main
from floatalk.config import preset
from floatalk.convert import ORIGINAL_PREFIXES, convert_original_state_dict
from floatalk.errors import CheckpointError
from floatalk.models.float_model import FloatModel
from floatalk.weights import load_model, load_state_strict, save_model
from parity_weights import manifest_rows


def original_layout(model: FloatModel) -> dict[str, torch.Tensor]:
    """The tiny model's weights under the original release's key names."""
    prefix_of = {component: prefix for prefix, component in ORIGINAL_PREFIXES.items()}
    return {
        prefix_of[name] + key: value.clone()
        for name, module in model.components().items()
        for key, value in module.state_dict().items()
    }


def outputs(model: FloatModel) -> list[torch.Tensor]:
    torch.manual_seed(123)
    image = torch.rand(1, 3, 32, 32) * 2 - 1
    wave = torch.randn(1, 8000)  # 13 frames at 25 fps
    with torch.no_grad():
        src = model.motion_ae.encode_source(image)
        frames = model.motion_ae.decode(src, torch.randn(2, 32) * 0.1)
        audio = model.audio_encoder(wave)
        emo = model.emotion.probabilities(wave)
        cfg = model.config.fmt
        v = model.fmt(
            torch.randn(1, cfg.clip_frames, 32),
            torch.tensor(0.5),
            audio[:, : cfg.clip_frames],
            src.source_motion,
            emo,
            torch.randn(1, cfg.context_frames, 32),
            torch.randn(1, cfg.context_frames, 16),
        )
    return [src.identity_latent, frames, audio, emo, v]


def test_save_load_round_trip(tiny_model, tmp_path):
    out = save_model(tiny_model, tmp_path / "w")
    manifest = json.loads((out / "floatalk.json").read_text())
    assert manifest["components"] == ["motion_ae", "fmt", "audio_encoder", "emotion"]
    for name in manifest["components"]:
        assert (out / name / "config.json").is_file() and (out / name / "model.safetensors").is_file()
    loaded = load_model(out)
    assert loaded.config == tiny_model.config
    for a, b in zip(outputs(tiny_model), outputs(loaded)):
        assert torch.equal(a, b)
    # buffers (FIR kernels, masks, position table) are recomputed, never stored
    stored = load_file(str(out / "motion_ae" / "model.safetensors"))
    assert not any(k.endswith(".kernel") for k in stored)


def test_save_replaces_existing_folder_atomically(tiny_model, tmp_path):
    out = tmp_path / "w"
    save_model(tiny_model, out)
    (out / "stale.txt").write_text("x")
    save_model(tiny_model, out)
    assert not (out / "stale.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w"]


def test_strict_loading_names_missing_unexpected_and_mismatched(tiny_model, tmp_path):
    out = save_model(tiny_model, tmp_path / "w")
    path = out / "fmt" / "model.safetensors"
    state = load_file(str(path))
    state.pop("c_embedder.bias")
    state["bogus.weight"] = torch.zeros(1)
    state["x_embedder.proj.weight"] = torch.zeros(3, 3)
    save_file(state, str(path))
    with pytest.raises(CheckpointError) as err:
        load_model(out)
    message = str(err.value)
    assert "missing: c_embedder.bias" in message
    assert "unexpected: bogus.weight" in message
    assert "x_embedder.proj.weight (3, 3)" in message
    assert "\n" not in message


def test_missing_component_and_folder_are_clear_errors(tiny_model, tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_model(tmp_path / "nope")
    out = save_model(tiny_model, tmp_path / "w")
    (out / "fmt" / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match=r"fmt.*missing"):
        load_model(out)


def test_unknown_config_key_is_rejected(tiny_model, tmp_path):
    out = save_model(tiny_model, tmp_path / "w")
    cfg = json.loads((out / "fmt" / "config.json").read_text())
    cfg["config"]["hidden_dims"] = 3
    (out / "fmt" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="hidden_dims"):
        load_model(out)


def test_original_key_map_round_trip(tiny_model):
    parts = convert_original_state_dict(original_layout(tiny_model))
    fresh = FloatModel(preset("tiny"))
    for name, module in fresh.components().items():
        load_state_strict(module, parts[name], name)
    for a, b in zip(outputs(tiny_model), outputs(fresh.eval())):
        assert torch.equal(a, b)


def test_original_key_names_match_the_released_manifest():
    """Every learnable key of the released checkpoint maps onto the float-512 model, and vice versa."""
    with torch.device("meta"):
        model = FloatModel(preset("float-512"))
    ours = {
        prefix + key
        for prefix, component in ORIGINAL_PREFIXES.items()
        for key, value in getattr(model, component).state_dict().items()
    }
    shapes = {
        prefix + key: tuple(value.shape)
        for prefix, component in ORIGINAL_PREFIXES.items()
        for key, value in getattr(model, component).state_dict().items()
    }
    released = {k: tuple(s) for k, s, _ in manifest_rows() if not k.endswith((".kernel", "alignment_mask"))}
    released.pop("fmt.pos_embed")
    assert ours == set(released)
    assert all(shapes[k] == released[k] for k in released)


def test_legacy_weight_norm_names_and_unknown_keys():
    parts = convert_original_state_dict(
        {"audio_encoder.wav2vec2.encoder.pos_conv_embed.conv.weight_g": torch.ones(1)}
    )
    assert list(parts["audio_encoder"]) == [
        "wav2vec2.encoder.pos_conv_embed.conv.parametrizations.weight.original0"
    ]
    with pytest.raises(CheckpointError, match="unexpected key"):
        convert_original_state_dict({"module.fmt.c_embedder.weight": torch.ones(1)})
    with pytest.raises(CheckpointError, match="pos_embed"):
        convert_original_state_dict({"fmt.pos_embed": torch.ones(1, 60, 1024)})


def test_convert_original_with_hf_folders(tiny_model, tmp_path):
    """float.pth without wav2vec2 weights + the two HF folders -> same model."""
    state = {k: v for k, v in original_layout(tiny_model).items() if "wav2vec2" not in k}
    torch.save(state, tmp_path / "float.pth")
    # the HF speech model folder: a bare Wav2Vec2Model with legacy weight-norm names
    w2v_dir = tmp_path / "wav2vec2-base-960h"
    tiny_model.audio_encoder.wav2vec2.save_pretrained(w2v_dir)
    w2v_state = load_file(str(w2v_dir / "model.safetensors"))
    legacy = {
        k.replace("parametrizations.weight.original0", "weight_g").replace(
            "parametrizations.weight.original1", "weight_v"
        ): v
        for k, v in w2v_state.items()
    }
    legacy["lm_head.weight"] = torch.zeros(32, 32)  # a CTC head the converter must ignore
    (w2v_dir / "model.safetensors").unlink()
    torch.save(legacy, w2v_dir / "pytorch_model.bin")
    # the HF emotion folder: wav2vec2.* + classifier.* as the fine-tuned classifier stores them
    emo_dir = tmp_path / "emotion"
    emo_dir.mkdir()
    (emo_dir / "config.json").write_text(json.dumps(tiny_model.config.emotion.wav2vec2))
    save_file(
        {k: v.contiguous() for k, v in tiny_model.emotion.state_dict().items()},
        str(emo_dir / "model.safetensors"),
    )
    (w2v_dir / "config.json").write_text(json.dumps(tiny_model.config.audio.wav2vec2))

    from floatalk.convert import convert_original

    # float.pth alone is not enough: the error says which folder to pass
    with pytest.raises(CheckpointError, match="--wav2vec2"):
        convert_original(tmp_path / "float.pth", tmp_path / "out")
    # the tiny float.pth has tiny shapes: converting into the float-512 layout fails loudly
    with pytest.raises(CheckpointError, match="shape mismatch"):
        convert_original(tmp_path / "float.pth", tmp_path / "out", w2v_dir, emo_dir)
    assert not (tmp_path / "out").exists()
    assert (
        cli_main(
            [
                "convert-original",
                "--checkpoint",
                str(tmp_path / "float.pth"),
                "--wav2vec2",
                str(w2v_dir),
                "--emotion-model",
                str(emo_dir),
                "--out",
                str(tmp_path / "out"),
                "--preset",
                "tiny",
            ]
        )
        == 0
    )
    converted = load_model(tmp_path / "out")
    for a, b in zip(outputs(tiny_model), outputs(converted)):
        assert torch.equal(a, b)


def test_cli_reports_bad_checkpoint_in_one_line(tmp_path, capsys):
    bad = tmp_path / "float.pth"
    bad.write_bytes(b"not a checkpoint")
    assert cli_main(["convert-original", "--checkpoint", str(bad), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("floatalk: error:") and err.count("\n") == 1
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    ("file", "edit", "message"),
    [
        ("fmt/config.json", lambda d: d.update(extra=1), "unknown key(s) 'extra'"),
        ("fmt/config.json", lambda d: d["config"].update(hiden_dim=3), "fmt.hiden_dim"),
        ("floatalk.json", lambda d: d.update(note="x"), "unknown key(s) 'note'"),
        ("floatalk.json", lambda d: d.update(version=99), "format version 99"),
        ("motion_ae/config.json", lambda d: d.update(component="fmt"), "describes component 'fmt'"),
    ],
)
def test_unknown_or_wrong_keys_in_a_weights_folder_are_errors_naming_key_and_file(
    tiny_model, tmp_path, capsys, file, edit, message
):
    out = save_model(tiny_model, tmp_path / "w")
    path = out / file
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))
    with pytest.raises(CheckpointError) as e:
        load_model(out)
    assert message in str(e.value) and str(path) in str(e.value) and "\n" not in str(e.value)
    argv = [
        "generate",
        "--image",
        "x.png",
        "--audio",
        "y.wav",
        "--weights",
        str(out),
        "-o",
        str(tmp_path / "o.mp4"),
    ]
    assert cli_main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
    assert not (tmp_path / "o.mp4").exists()
