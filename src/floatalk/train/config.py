"""Typed training configs: dataclass defaults, YAML files and ``key.sub=value`` overrides.

A training config is a (preferably frozen) dataclass whose fields carry one comment each. Stage
trainers nest :class:`TrainingConfig` (the fields every run has) next to their own sections::

    @dataclass(frozen=True)
    class FMTTrainConfig:
        train: TrainingConfig = field(default_factory=TrainingConfig)
        model: FMTConfig = field(default_factory=FMTConfig)   # floatalk.config dataclasses nest too
        lr: float = 1e-4

    cfg = load_config(FMTTrainConfig, "configs/fmt.yaml", ["train.max_steps=10", "lr=3e-5"])

Resolution order: dataclass defaults, then the YAML file (a mapping, merged structurally: a nested
section only overrides the keys it names), then each override in turn. An override's value is parsed
with ``yaml.safe_load`` (``3``, ``1e-4``, ``true``, ``[1, 2]``, ``null``, ``{a: 1}``). Unknown keys and
wrong types raise a one-line :class:`floatalk.errors.InputError` that names the key and the valid
ones. Supported field types: int, float, bool, str, Literal[...], tuple[...], list[...], dict[str, ...],
Optional / unions of those, Any, and nested dataclasses.

Conversion between dicts and dataclasses is the project's one strict converter
(:mod:`floatalk.schema`, re-exported here): :func:`config_to_dict` gives the plain dict that
checkpoints store, and :func:`config_from_dict` rebuilds the dataclass from it.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

from ..errors import InputError
from ..schema import config_from_dict, config_to_dict
from .atomic import atomic_write

__all__ = [
    "TrainingConfig",
    "apply_overrides",
    "config_from_dict",
    "config_to_dict",
    "load_config",
    "save_config_yaml",
]

C = TypeVar("C")


@dataclass(frozen=True)
class TrainingConfig:
    """What every training run needs, whatever the stage. Stage configs nest or subclass it."""

    output_dir: str = "runs/default"  # run folder: checkpoints/, previews/, tensorboard/, metrics.jsonl
    seed: int = 0  # seeds weights (if built after seeding), data order, per-item and per-rank randomness
    max_steps: int = 100_000  # total optimisation steps (a resumed run continues up to this number)
    batch_size: int = 8  # samples per step *per process* (global batch = batch_size * world size)
    num_workers: int = 2  # DataLoader worker processes per rank (0 = load in the main process)
    shuffle: bool = True  # shuffle the data each epoch (order depends only on seed and epoch)
    log_every: int = 50  # steps between scalar logs (metrics.jsonl, TensorBoard, progress bar)
    ckpt_every: int = 5_000  # steps between checkpoints (0 = only the final / interrupt checkpoint)
    preview_every: int = 0  # steps between preview images (0 = never)
    keep_last: int = 3  # checkpoints kept on disk (older ones are deleted)
    ema_decay: float = 0.999  # EMA decay of the models the task names in ema_models() (0 = no EMA)
    mixed_precision: Literal["no", "bf16", "fp16"] = "no"  # autocast dtype on CUDA (ignored elsewhere)
    device: Literal["auto", "cpu", "cuda"] = "auto"  # auto = CUDA when available, else CPU
    grad_clip: float = 0.0  # max global grad norm applied by Amp.step (0 = no clipping)
    resume: bool = True  # continue from output_dir/checkpoints/latest when it exists
    tensorboard: bool = True  # write TensorBoard events (needs the `tensorboard` package)
    progress: bool = True  # tqdm progress bar on the main process
    ddp_find_unused_parameters: bool = False  # DDP option for models with branches unused in a step
    deterministic: bool = False  # torch.use_deterministic_algorithms (slower; exact on GPU too)

    def __post_init__(self) -> None:
        for name in ("max_steps", "batch_size", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("num_workers", "ckpt_every", "preview_every", "grad_clip"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.keep_last < 1:
            raise ValueError(f"keep_last must be >= 1, got {self.keep_last}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}")


# --------------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------------


def load_config(
    cls: type[C], path: str | os.PathLike | None = None, overrides: typing.Sequence[str] = ()
) -> C:
    """Defaults of dataclass `cls`, then the YAML file at `path` (optional), then the overrides.

    Args:
        cls: the config dataclass.
        path: a YAML mapping with any subset of the fields (nested sections as nested mappings).
        overrides: ``"dotted.key=value"`` strings; the value is parsed as YAML.

    Returns:
        A validated instance of `cls`.

    Raises:
        InputError: an unreadable file, an unknown key, a wrong type or an invalid value (one line).
    """
    data = config_to_dict(_defaults(cls, cls.__name__))
    if path is not None:
        p = Path(path)
        try:
            loaded = yaml.safe_load(p.read_text())
        except FileNotFoundError:
            raise InputError(f"config file {str(p)!r} does not exist") from None
        except (OSError, yaml.YAMLError) as exc:
            raise InputError(f"config file {str(p)!r} could not be read: {exc}") from None
        if loaded is not None:
            if not isinstance(loaded, dict):
                raise InputError(f"config file {str(p)!r} must hold a mapping, got {type(loaded).__name__}")
            data = _merge(cls, data, loaded, where="", source=f" (in {p})")
    data = apply_overrides(cls, data, overrides)
    return config_from_dict(cls, data)


def apply_overrides(cls: type, data: dict[str, Any], overrides: typing.Sequence[str]) -> dict[str, Any]:
    """Apply ``dotted.key=value`` overrides to the plain dict `data` of config class `cls`."""
    for text in overrides:
        key, sep, raw = text.partition("=")
        key = key.strip()
        if not sep or not key:
            raise InputError(f"config override {text!r} must look like key=value (e.g. train.max_steps=10)")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw  # not valid YAML: take it as a string; type checking decides
        nested: Any = value
        for part in reversed(key.split(".")):
            nested = {part: nested}
        data = _merge(cls, data, nested, where="", source=f" (override {text!r})")
    return data


def _merge(cls: Any, base: Any, new: dict[str, Any], where: str, source: str) -> dict[str, Any]:
    """Structural merge of mapping `new` into the plain dict `base` of dataclass `cls`."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    out = dict(base) if isinstance(base, dict) else {}
    for key, value in new.items():
        dotted = f"{where}.{key}" if where else str(key)
        if key not in names:
            raise InputError(f"unknown config key {dotted!r}{source}; valid keys here: {', '.join(names)}")
        target = _dataclass_in(hints[key])
        if target is not None and isinstance(value, dict):
            current = out.get(key)
            if current is None:  # Optional[Section] that is None: start from the section's defaults
                current = config_to_dict(_defaults(target, dotted))
            out[key] = _merge(target, current, value, dotted, source)
        else:
            out[key] = value
    return out


def _dataclass_in(hint: Any) -> type | None:
    """The dataclass in `hint` (itself, or the one member of an Optional/union), else None."""
    if dataclasses.is_dataclass(hint):
        return hint
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        found = [a for a in typing.get_args(hint) if dataclasses.is_dataclass(a)]
        if len(found) == 1:
            return found[0]
    return None


def _defaults(cls: Any, where: str) -> Any:
    try:
        return cls()
    except TypeError:
        raise InputError(f"config section {where!r} has required fields; give all of them") from None


# --------------------------------------------------------------------------------------------------
# YAML
# --------------------------------------------------------------------------------------------------


def save_config_yaml(config: Any, path: str | os.PathLike) -> Path:
    """Write the resolved config (a dataclass or a plain dict) as YAML, atomically."""
    data = config_to_dict(config) if dataclasses.is_dataclass(config) else config
    text = yaml.safe_dump(data, sort_keys=False, default_flow_style=False)
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(p, lambda f: f.write(text.encode()))
