"""Saving and loading models, and converting the original FLOAT release.

Format of a saved model (one folder per component, diffusers-style):

    DIR/floatalk.json                 {"format": "floatalk", "version": 1, "components": [...]}
    DIR/<component>/config.json       the component's config dataclass as JSON
    DIR/<component>/model.safetensors its state dict (float32 unless saved otherwise)

Components: motion_ae, fmt, audio_encoder, emotion (optional). Loading is strict: a missing or
unexpected parameter, or a shape mismatch, is a CheckpointError that lists them. Nothing is ever
unpickled except plain tensors (safetensors; `torch.load(weights_only=True)` for .pth files).

The original release's state dict (`float.pth`, keys as in `FLOAT.named_parameters()`) maps onto
these components by prefix; see ORIGINAL_PREFIXES and `convert_original_state_dict`.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .config import (
    AudioEncoderConfig,
    EmotionConfig,
    FloatConfig,
    FMTConfig,
    MotionAEConfig,
    config_from_dict,
    config_to_dict,
)
from .errors import CheckpointError
from .models.float_model import COMPONENT_NAMES, FloatModel
from .nn.embeddings import sinusoidal_positions

__all__ = [
    "ORIGINAL_PREFIXES",
    "convert_original_state_dict",
    "load_component_state",
    "load_model",
    "load_original_checkpoint",
    "save_model",
]

FORMAT_NAME = "floatalk"
FORMAT_VERSION = 1
MANIFEST = "floatalk.json"
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"

COMPONENT_CONFIGS: dict[str, type] = {
    "motion_ae": MotionAEConfig,
    "fmt": FMTConfig,
    "audio_encoder": AudioEncoderConfig,
    "emotion": EmotionConfig,
}

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


# --------------------------------------------------------------------------------------------------
# Saving
# --------------------------------------------------------------------------------------------------


def _component_config(config: FloatConfig, name: str) -> Any:
    return {
        "motion_ae": config.motion_ae,
        "fmt": config.fmt,
        "audio_encoder": config.audio,
        "emotion": config.emotion,
    }[name]


def save_model(model: FloatModel, directory: str | os.PathLike, dtype: torch.dtype | None = None) -> Path:
    """Write every present component of `model` to `directory` (created; replaced atomically).

    Args:
        model: the model to save.
        directory: output folder.
        dtype: optionally cast floating-point weights (e.g. torch.float16) to save space.

    Returns:
        The folder path.
    """
    from safetensors.torch import save_file

    out = Path(directory)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        names = []
        for name, module in model.components().items():
            sub = tmp / name
            sub.mkdir()
            state = {}
            for key, value in module.state_dict().items():
                value = value.detach().cpu()
                if dtype is not None and value.is_floating_point():
                    value = value.to(dtype)
                state[key] = value.contiguous().clone()
            save_file(state, str(sub / WEIGHTS_FILE), metadata={"format": "pt"})
            cfg = {"component": name, "config": config_to_dict(_component_config(model.config, name))}
            (sub / CONFIG_FILE).write_text(json.dumps(cfg, indent=2) + "\n")
            names.append(name)
        manifest = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "components": names}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        if out.exists():
            backup = out.with_name(f".{out.name}.old")
            shutil.rmtree(backup, ignore_errors=True)
            out.rename(backup)
            tmp.rename(out)
            shutil.rmtree(backup, ignore_errors=True)
        else:
            tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


# --------------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------------


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{path} is missing; the weights folder is incomplete") from None
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path} could not be read ({exc}); re-export the weights") from None


def read_config(directory: str | os.PathLike) -> tuple[FloatConfig, list[str]]:
    """Config and present component names of a saved model folder."""
    root = Path(directory)
    if not root.is_dir():
        raise CheckpointError(
            f"weights folder {str(root)!r} does not exist; pass --weights DIR "
            "(see `floatalk convert-original --help`)"
        )
    manifest = _read_json(root / MANIFEST)
    if manifest.get("format") != FORMAT_NAME:
        raise CheckpointError(f"{root / MANIFEST} is not a floatalk weights manifest")
    names = list(manifest.get("components", []))
    required = {"motion_ae", "fmt", "audio_encoder"}
    if missing := sorted(required - set(names)):
        raise CheckpointError(f"weights folder {str(root)!r} lacks component(s) {', '.join(missing)}")
    parts: dict[str, Any] = {}
    for name in names:
        if name not in COMPONENT_CONFIGS:
            raise CheckpointError(f"weights folder {str(root)!r} lists unknown component {name!r}")
        cfg = _read_json(root / name / CONFIG_FILE)
        try:
            parts[name] = config_from_dict(COMPONENT_CONFIGS[name], cfg["config"], where=name)
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"{root / name / CONFIG_FILE}: {exc}") from None
    try:
        config = FloatConfig(
            motion_ae=parts["motion_ae"],
            fmt=parts["fmt"],
            audio=parts["audio_encoder"],
            emotion=parts.get("emotion", EmotionConfig()),
        )
    except ValueError as exc:
        raise CheckpointError(f"weights folder {str(root)!r} has inconsistent components: {exc}") from None
    return config, names


def load_component_state(directory: str | os.PathLike, name: str) -> dict[str, Tensor]:
    """The raw state dict of one component folder."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(directory) / name / WEIGHTS_FILE
    if not path.is_file():
        raise CheckpointError(f"{path} is missing; the weights folder is incomplete")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path} is not a valid safetensors file ({exc})") from None


def load_state_strict(module: nn.Module, state: Mapping[str, Tensor], where: str) -> None:
    """load_state_dict(strict=True), with missing/unexpected/mismatched keys listed in one error."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    mismatched = [
        f"{k} {tuple(state[k].shape)} != {tuple(own[k].shape)}"
        for k in sorted(set(own) & set(state))
        if tuple(own[k].shape) != tuple(state[k].shape)
    ]
    problems = []
    for label, keys in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", mismatched)):
        if keys:
            shown = ", ".join(keys[:8]) + (f", ... ({len(keys)} in all)" if len(keys) > 8 else "")
            problems.append(f"{label}: {shown}")
    if problems:
        raise CheckpointError(f"{where} does not match the model: " + "; ".join(problems))
    with torch.no_grad():
        for key, value in state.items():
            own[key].copy_(value)


def load_model(directory: str | os.PathLike, with_emotion: bool | None = None) -> FloatModel:
    """Build a FloatModel from a saved folder (strict), on CPU in float32.

    Args:
        directory: folder written by `save_model` / `floatalk convert-original` / `floatalk export`.
        with_emotion: load the emotion classifier; None = if the folder has one.
    """
    config, names = read_config(directory)
    has_emotion = "emotion" in names
    if with_emotion and not has_emotion:
        raise CheckpointError(f"weights folder {str(directory)!r} has no emotion component")
    model = FloatModel(config, with_emotion=has_emotion if with_emotion is None else with_emotion)
    for name, module in model.components().items():
        state = {
            k: v.float() if v.is_floating_point() else v
            for k, v in load_component_state(directory, name).items()
        }
        load_state_strict(module, state, f"{Path(directory) / name}")
    return model.eval()


# --------------------------------------------------------------------------------------------------
# The original release
# --------------------------------------------------------------------------------------------------


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
