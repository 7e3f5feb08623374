"""Weights folders: reading, writing and strict loading of every component (the one home of weights I/O).

Format of a saved model (one folder per component, diffusers-style):

    DIR/floatalk.json                 {"format": "floatalk", "version": 1, "components": [...]}
    DIR/<component>/config.json       {"component": NAME, "config": the component's config dataclass}
    DIR/<component>/model.safetensors its state dict (float32 unless saved otherwise)

Components: motion_ae, fmt, audio_encoder, emotion (optional). Reading is strict throughout: an
unknown key in either JSON file (the configs go through floatalk.schema), a missing or unexpected
parameter, or a shape mismatch is a one-line CheckpointError naming the key and the file. Nothing is
unpickled; weights are safetensors.

Who uses it: FloatPipeline.from_pretrained and `floatalk generate` (load_model, resolve_weights),
`floatalk convert-original` and `floatalk export` (save_model), the trainers (load_component,
read_component_config), the VGG loss (load_state_strict). The networks and FloatModel do no I/O.
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

from .config import AudioEncoderConfig, EmotionConfig, FloatConfig, FMTConfig, MotionAEConfig
from .errors import CheckpointError, InputError
from .models.float_model import FloatModel
from .schema import config_from_dict, config_to_dict

__all__ = [
    "DEMO_WEIGHTS",
    "WEIGHTS_ENV",
    "load_component",
    "load_component_state",
    "load_model",
    "load_state_strict",
    "read_component_config",
    "read_config",
    "resolve_weights",
    "save_model",
]

#: Environment variable naming the default weights folder of `floatalk generate`.
WEIGHTS_ENV = "FLOATALK_WEIGHTS"
#: The small demo model shipped inside the package (see README).
DEMO_WEIGHTS = Path(__file__).parent / "assets" / "demo_weights"

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


def resolve_weights(weights: str | os.PathLike | None) -> Path:
    """--weights, else $FLOATALK_WEIGHTS, else the demo weights shipped with the package."""
    if weights:
        return Path(weights)
    if os.environ.get(WEIGHTS_ENV):
        return Path(os.environ[WEIGHTS_ENV])
    if (DEMO_WEIGHTS / MANIFEST).is_file():
        return DEMO_WEIGHTS
    raise InputError(
        "no model weights: pass --weights DIR or set FLOATALK_WEIGHTS; get them by converting the original "
        "release (floatalk convert-original --checkpoint float.pth ... --out DIR) or by training"
    )


def _read_json(path: Path, keys: tuple[str, ...], required: tuple[str, ...]) -> dict:
    """A JSON object with only `keys` (those in `required` must be there); CheckpointError otherwise."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{path} is missing; the weights folder is incomplete") from None
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path} could not be read ({exc}); re-export the weights") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} must hold a JSON object, got {type(data).__name__}")
    if unknown := sorted(set(data) - set(keys)):
        raise CheckpointError(
            f"{path}: unknown key(s) {', '.join(map(repr, unknown))}; valid keys: {', '.join(keys)}"
        )
    if missing := [k for k in required if k not in data]:
        shown = ", ".join(map(repr, missing))
        raise CheckpointError(f"{path}: missing key(s) {shown}; re-export the weights")
    return data


def _check_folder(root: Path) -> None:
    if root.exists() and not root.is_dir():
        raise CheckpointError(
            f"weights path {str(root)!r} is a file, not a weights folder; pass --weights DIR"
        )
    if not root.is_dir():
        raise CheckpointError(
            f"weights folder {str(root)!r} does not exist; pass --weights DIR "
            "(see `floatalk convert-original --help`)"
        )


def read_component_config(directory: str | os.PathLike, name: str) -> Any:
    """The config dataclass of component `name` from DIR/<name>/config.json (strict)."""
    root = Path(directory)
    _check_folder(root)
    if name not in COMPONENT_CONFIGS:
        raise CheckpointError(f"weights folder {str(root)!r} lists unknown component {name!r}")
    path = root / name / CONFIG_FILE
    data = _read_json(path, ("component", "config"), ("config",))
    if data.get("component", name) != name:
        raise CheckpointError(f"{path} describes component {data['component']!r}, not {name!r}")
    try:
        return config_from_dict(COMPONENT_CONFIGS[name], data["config"], where=name)
    except InputError as exc:
        raise CheckpointError(f"{path}: {exc}") from None


def read_config(directory: str | os.PathLike) -> tuple[FloatConfig, list[str]]:
    """Config and present component names of a saved model folder."""
    root = Path(directory)
    _check_folder(root)
    manifest = _read_json(root / MANIFEST, ("format", "version", "components"), ("format", "components"))
    if manifest["format"] != FORMAT_NAME:
        raise CheckpointError(f"{root / MANIFEST} is not a floatalk weights manifest")
    if manifest.get("version", FORMAT_VERSION) != FORMAT_VERSION:
        raise CheckpointError(
            f"{root / MANIFEST} has format version {manifest['version']!r}; this floatalk reads "
            f"version {FORMAT_VERSION} (upgrade floatalk)"
        )
    names = list(manifest["components"])
    required = {"motion_ae", "fmt", "audio_encoder"}
    if missing := sorted(required - set(names)):
        raise CheckpointError(f"weights folder {str(root)!r} lacks component(s) {', '.join(missing)}")
    parts = {name: read_component_config(root, name) for name in names}
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
    """load_state_dict(strict=True), with missing/unexpected/mismatched keys listed in one error.

    A module with an ``upgrade_state(state)`` method first renames or fills what older saves lack.
    """
    upgrade = getattr(module, "upgrade_state", None)
    if callable(upgrade):
        state = upgrade(state)
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


def load_component(directory: str | os.PathLike, name: str, module: nn.Module) -> nn.Module:
    """Load component `name` of a weights folder into `module` (strict; weights cast to float32)."""
    state = {
        k: v.float() if v.is_floating_point() else v for k, v in load_component_state(directory, name).items()
    }
    load_state_strict(module, state, f"{Path(directory) / name}")
    return module


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
        load_component(directory, name, module)
    return model.eval()
