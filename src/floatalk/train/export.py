"""Training run -> inference weights folder (``floatalk export RUN_DIR OUT_DIR``).

The inference format is the weights folder of :mod:`floatalk.weights` (``save_model`` /
``load_model``: one folder per component, ``config.json`` +
``model.safetensors``). How a run's networks become those components depends on the stage, so each
stage registers an exporter under its task name (``TrainTask.name``, stored in every checkpoint)::

    @register_exporter("fmt")
    def export_fmt(checkpoint: dict, out_dir: Path, options: ExportOptions) -> Path:
        cfg = config_from_dict(FMTTrainConfig, checkpoint["config"])
        states = {"fmt": model_state(checkpoint, "fmt", ema=options.use_ema)}
        return write_float_model(out_dir, cfg.float_config(), states, base=options.base)

and is listed in ``EXPORTER_MODULES`` (task -> the module that runs that decorator),
so that ``floatalk export`` finds it without importing every trainer up front.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import Tensor

from ..errors import CheckpointError, InputError
from .checkpointing import latest_checkpoint, load_checkpoint

__all__ = [
    "EXPORTERS",
    "EXPORTER_MODULES",
    "ExportOptions",
    "export_checkpoint",
    "model_state",
    "register_exporter",
    "write_float_model",
]


@dataclass(frozen=True)
class ExportOptions:
    """Choices of `floatalk export` passed to every exporter."""

    use_ema: bool = True  # export the EMA weights of the models that have them
    base: str | None = None  # weights folder supplying the components this stage does not train


ExportFn = Callable[[dict[str, Any], Path, ExportOptions], Path]

# Task name -> exporter. Filled by @register_exporter when a stage's module is imported.
EXPORTERS: dict[str, ExportFn] = {}
# Task name -> module to import so that it registers its exporter (kept lazy: trainers are heavy).
EXPORTER_MODULES: dict[str, str] = {
    "autoencoder": "floatalk.train.autoencoder",
    "fmt": "floatalk.train.fmt",
}


def register_exporter(task: str) -> Callable[[ExportFn], ExportFn]:
    """Decorator: make `fn` the exporter of checkpoints whose ``task`` is `task`."""

    def decorate(fn: ExportFn) -> ExportFn:
        EXPORTERS[task] = fn
        return fn

    return decorate


def _exporter(task: str) -> ExportFn:
    if task not in EXPORTERS and task in EXPORTER_MODULES:
        importlib.import_module(EXPORTER_MODULES[task])
    if task not in EXPORTERS:
        known = sorted(set(EXPORTERS) | set(EXPORTER_MODULES))
        raise InputError(
            f"no exporter for checkpoints of task {task!r}; known tasks: {', '.join(known) or 'none'}"
        )
    return EXPORTERS[task]


def model_state(checkpoint: Mapping[str, Any], name: str, *, ema: bool = True) -> dict[str, Tensor]:
    """The weights of model `name` in a training checkpoint: its EMA average if present and wanted."""
    averaged = checkpoint.get("ema", {}).get(name)
    if ema and averaged is not None:
        return dict(averaged["module"])
    models = checkpoint.get("models", {})
    if name not in models:
        raise CheckpointError(f"the checkpoint has no model {name!r}; it has {', '.join(sorted(models))}")
    return dict(models[name])


def export_checkpoint(
    run_dir: str | os.PathLike, out_dir: str | os.PathLike, options: ExportOptions | None = None
) -> Path:
    """Export the latest checkpoint of `run_dir` (a run folder or its checkpoints/ folder) to `out_dir`.

    Returns:
        The written weights folder.

    Raises:
        InputError: no checkpoint in `run_dir`, or no exporter for its task.
        CheckpointError: an unreadable checkpoint or weights that do not fit the model.
    """
    path = latest_checkpoint(run_dir)
    if path is None:
        raise InputError(f"{str(run_dir)!r} has no training checkpoint (no checkpoints/latest)")
    checkpoint = load_checkpoint(path)
    exporter = _exporter(str(checkpoint.get("task")))
    return exporter(checkpoint, Path(out_dir), options or ExportOptions())


def write_float_model(
    out_dir: str | os.PathLike,
    config: Any,
    states: Mapping[str, Mapping[str, Tensor]],
    *,
    base: str | os.PathLike | None = None,
    with_emotion: bool | None = None,
) -> Path:
    """Save a FloatModel whose components come from `states` (trained) or the `base` weights folder.

    Args:
        out_dir: the weights folder to write (replaced atomically by ``save_model``).
        config: the :class:`floatalk.config.FloatConfig` of the result.
        states: component name (``motion_ae``, ``fmt``, ``audio_encoder``, ``emotion``) -> state dict.
        base: weights folder for every component not in `states` (e.g. a converted release).
        with_emotion: include the emotion classifier; None = if `states` or `base` has one.

    Every component must come from somewhere: a missing one is a CheckpointError, never random weights.
    Loading is strict (missing, unexpected or mis-shaped keys are listed).
    """
    from ..models.float_model import FloatModel
    from ..weights import load_component, load_state_strict, read_config, save_model

    base_names: list[str] = []
    if base is not None:
        _, base_names = read_config(base)
    if with_emotion is None:
        with_emotion = "emotion" in states or "emotion" in base_names
    model = FloatModel(config, with_emotion=with_emotion)
    components = model.components()
    if unknown := sorted(set(states) - set(components)):
        raise CheckpointError(f"unknown component(s) {unknown}; this model has {sorted(components)}")
    if missing := sorted(set(components) - set(states) - set(base_names)):
        raise CheckpointError(
            f"component(s) {', '.join(missing)} are neither trained in this run nor in a base weights "
            "folder; pass --base DIR (e.g. a converted release)"
        )
    for name, module in components.items():
        if name in states:
            load_state_strict(module, states[name], f"trained {name}")
        else:
            load_component(base, name, module)  # type: ignore[arg-type]
    return save_model(model, out_dir)
