"""Convert the original FLOAT release (`float.pth` + two Hugging Face wav2vec2 folders) to our format.

Everything that knows the original's layout lives here: its key prefixes (ORIGINAL_PREFIXES), the
buffers it stores that are recomputed here, legacy weight-norm names, and reading `float.pth` without
unpickling anything but tensors (`torch.load(weights_only=True)`).

    floatalk convert-original --checkpoint float.pth [--wav2vec2 DIR] [--emotion-model DIR] --out DIR

`float.pth` holds the motion auto-encoder, the transformer and the audio projection, and possibly
the two wav2vec2 models as well. When it does not, their weights come from the Hugging Face folders
the original release uses (`facebook/wav2vec2-base-960h` and
`r-f/wav2vec-english-speech-emotion-recognition`); a folder given on the command line always wins.
Everything is checked strictly before anything is written.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .config import FloatConfig, wav2vec2_base_960h_config
from .errors import CheckpointError
from .models.float_model import COMPONENT_NAMES, FloatModel
from .nn.embeddings import sinusoidal_positions
from .weights import load_state_strict, save_model

__all__ = [
    "ORIGINAL_PREFIXES",
    "convert_original",
    "convert_original_state_dict",
    "load_original_checkpoint",
    "read_hf_wav2vec2_folder",
]

# Original key prefix -> component. Below the prefix, parameter names are identical.
ORIGINAL_PREFIXES: dict[str, str] = {
    "motion_autoencoder.": "motion_ae",
    "fmt.": "fmt",
    "audio_encoder.": "audio_encoder",
    "emotion_encoder.wav2vec2_for_emotion.": "emotion",
}

# Keys of the original that are recomputed here rather than loaded.
_RECOMPUTED_SUFFIXES = (".kernel", "alignment_mask")
_POS_EMBED_KEY = "fmt.pos_embed"

# Older transformers / HF checkpoint files store the positional conv's weight norm as weight_g/v.
LEGACY_RENAMES = {
    "pos_conv_embed.conv.weight_g": "pos_conv_embed.conv.parametrizations.weight.original0",
    "pos_conv_embed.conv.weight_v": "pos_conv_embed.conv.parametrizations.weight.original1",
}

_HF_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
# Heads of HF wav2vec2 checkpoints that FLOAT does not use.
_IGNORED_HF_PREFIXES = ("lm_head.", "quantizer.", "project_hid.", "project_q.", "projector.")


def load_original_checkpoint(path: str | os.PathLike) -> dict[str, Tensor]:
    """Read `float.pth` (a flat {name: tensor} dict) without unpickling anything but tensors."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"checkpoint {str(p)!r} does not exist")
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt or non-tensor pickles
        raise CheckpointError(
            f"{p} is not a loadable PyTorch checkpoint ({type(exc).__name__}: {exc})"
        ) from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise CheckpointError(f"{p} does not hold a flat name -> tensor state dict")
    return state


def convert_original_state_dict(state: Mapping[str, Tensor]) -> dict[str, dict[str, Tensor]]:
    """Split an original FLOAT state dict into per-component state dicts.

    Buffers of the original (FIR kernels, the attention mask) are dropped because they are
    recomputed; `fmt.pos_embed` is checked against the fixed sinusoidal table and dropped.
    Legacy weight-norm names (weight_g / weight_v) are renamed. Keys with no known prefix raise.
    """
    out: dict[str, dict[str, Tensor]] = {name: {} for name in COMPONENT_NAMES}
    unknown = []
    for key, value in state.items():
        if key.endswith(_RECOMPUTED_SUFFIXES):
            continue
        if key == _POS_EMBED_KEY:
            expected = sinusoidal_positions(value.shape[-2], value.shape[-1])[None]
            if value.shape != expected.shape or not torch.allclose(value.float(), expected, atol=1e-5):
                raise CheckpointError(
                    "fmt.pos_embed differs from the fixed sinusoidal table; not a FLOAT checkpoint?"
                )
            continue
        for prefix, component in ORIGINAL_PREFIXES.items():
            if key.startswith(prefix):
                sub = key[len(prefix) :]
                for old, new in LEGACY_RENAMES.items():
                    if sub.endswith(old):
                        sub = sub[: -len(old)] + new
                out[component][sub] = value
                break
        else:
            unknown.append(key)
    if unknown:
        shown = ", ".join(unknown[:8]) + (f", ... ({len(unknown)} in all)" if len(unknown) > 8 else "")
        raise CheckpointError(f"unexpected key(s) in the original checkpoint: {shown}")
    return out


def _architecture(hf_config: dict[str, Any]) -> dict[str, Any]:
    """The architecture fields of a HF wav2vec2 config.json (those our built-in configs set)."""
    keys = set(wav2vec2_base_960h_config())
    return {k: hf_config[k] for k in sorted(keys) if k in hf_config}


def read_hf_wav2vec2_folder(directory: str | os.PathLike) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """Architecture and state dict of a local Hugging Face wav2vec2 folder.

    Returns:
        (architecture dict for Wav2Vec2Config, {key: tensor}) with keys as in our components:
        backbone keys under `wav2vec2.`, a sequence-classification head under `classifier.`.
    """
    root = Path(directory)
    cfg_path = root / "config.json"
    if not cfg_path.is_file():
        raise CheckpointError(f"{str(root)!r} is not a Hugging Face model folder (no config.json)")
    try:
        hf_config = json.loads(cfg_path.read_text())
    except ValueError as exc:
        raise CheckpointError(f"{cfg_path} is not valid JSON ({exc})") from None
    weights = next((root / f for f in _HF_WEIGHT_FILES if (root / f).is_file()), None)
    if weights is None:
        raise CheckpointError(f"{str(root)!r} has no {' or '.join(_HF_WEIGHT_FILES)}")
    try:
        if weights.suffix == ".safetensors":
            from safetensors.torch import load_file

            raw = load_file(str(weights))
        else:
            raw = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt file: many possible exception types
        raise CheckpointError(f"{weights} could not be read ({type(exc).__name__}: {exc})") from None
    state: dict[str, Tensor] = {}
    for key, value in raw.items():
        if key.startswith(_IGNORED_HF_PREFIXES):
            continue
        if not key.startswith(("wav2vec2.", "classifier.")):
            key = "wav2vec2." + key  # saved as a bare Wav2Vec2Model
        for old, new in LEGACY_RENAMES.items():
            if key.endswith(old):
                key = key[: -len(old)] + new
        state[key] = value
    return _architecture(hf_config), state


def _with_prefix(state: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    return {k: v for k, v in state.items() if k.startswith(prefix)}


def convert_original(
    checkpoint: str | os.PathLike,
    out: str | os.PathLike,
    wav2vec2: str | os.PathLike | None = None,
    emotion_model: str | os.PathLike | None = None,
    dtype: torch.dtype | None = None,
    config: FloatConfig | None = None,
) -> Path:
    """Convert `float.pth` (+ optional HF folders) into a floatalk weights folder at `out`.

    Args:
        checkpoint: the original `float.pth`.
        out: output folder (written atomically).
        wav2vec2: local `wav2vec2-base-960h` folder, if float.pth lacks those weights.
        emotion_model: local `wav2vec-english-speech-emotion-recognition` folder, likewise.
        dtype: optional storage dtype for the converted weights (e.g. torch.float16).
        config: architecture of float.pth (default: the released `float-512`); the wav2vec2
            architectures come from the HF folders when given.

    Returns:
        The output folder.
    """
    parts = convert_original_state_dict(load_original_checkpoint(checkpoint))
    base = config if config is not None else FloatConfig()
    audio_cfg, emotion_cfg = base.audio, base.emotion
    if wav2vec2 is not None:
        arch, hf_state = read_hf_wav2vec2_folder(wav2vec2)
        audio_cfg = dataclasses.replace(audio_cfg, wav2vec2=arch)
        backbone = _with_prefix(hf_state, "wav2vec2.")
        parts["audio_encoder"] = {
            k: v for k, v in parts["audio_encoder"].items() if not k.startswith("wav2vec2.")
        }
        parts["audio_encoder"].update(backbone)
    elif not _with_prefix(parts["audio_encoder"], "wav2vec2."):
        raise CheckpointError(
            f"{checkpoint} holds no wav2vec2 weights; pass --wav2vec2 DIR (the wav2vec2-base-960h folder)"
        )
    if emotion_model is not None:
        arch, hf_state = read_hf_wav2vec2_folder(emotion_model)
        emotion_cfg = dataclasses.replace(emotion_cfg, wav2vec2=arch)
        parts["emotion"] = hf_state
    elif not parts["emotion"]:
        raise CheckpointError(
            f"{checkpoint} holds no speech-emotion weights; pass --emotion-model DIR "
            "(the wav2vec-english-speech-emotion-recognition folder)"
        )
    model = FloatModel(dataclasses.replace(base, audio=audio_cfg, emotion=emotion_cfg))
    for name, module in model.components().items():
        load_state_strict(module, parts[name], f"{checkpoint} [{name}]")
    return save_model(model, out, dtype=dtype)
