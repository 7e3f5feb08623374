"""Training machinery shared by stage 1 (motion auto-encoder, GAN) and stage 2 (flow matching).

Plain PyTorch, one code path for a single process and torchrun DDP. The pieces, one per file:

- :mod:`.config`: typed dataclass configs, YAML files and ``key.sub=value`` overrides
  (:func:`load_config`), the common :class:`TrainingConfig`.
- :mod:`.distributed`: :func:`init_distributed`, rank helpers, :func:`wrap_ddp`.
- :mod:`.sampler`: :class:`ResumableSampler` (data order a function of seed and epoch; resumable at
  any position) and per-item seeding of dataset randomness.
- :mod:`.ema`: :class:`EMA` of a module.
- :mod:`.amp`: :class:`Amp`, autocast / fp16 loss scaling / gradient clipping for a task's steps.
- :mod:`.checkpointing`: crash-safe :func:`save_checkpoint`, :func:`load_latest`, RNG state capture.
- :mod:`.logging`: metrics.jsonl, TensorBoard scalars and images, preview PNGs.
- :mod:`.trainer`: the :class:`TrainTask` protocol a stage implements and the :class:`Trainer` loop.
- :mod:`.export`: checkpoint -> weights folder (:mod:`floatalk.weights`) (``floatalk export``).

See :mod:`floatalk.train.trainer` for a complete example of a stage task.
"""

from __future__ import annotations

from .amp import Amp
from .checkpointing import (
    capture_rng_state,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    load_latest,
    restore_rng_state,
    save_checkpoint,
)
from .config import (
    TrainingConfig,
    apply_overrides,
    config_from_dict,
    config_to_dict,
    load_config,
    save_config_yaml,
)
from .distributed import (
    DistInfo,
    all_reduce_mean,
    barrier,
    cleanup,
    init_distributed,
    is_main,
    rank,
    unwrap,
    world_size,
    wrap_ddp,
)
from .ema import EMA
from .export import (
    EXPORTER_MODULES,
    EXPORTERS,
    ExportOptions,
    export_checkpoint,
    model_state,
    register_exporter,
)
from .sampler import ResumableSampler, SeededItems, derive_seed
from .trainer import TrainContext, Trainer, TrainResult, TrainTask, move_to_device, seed_everything

__all__ = [
    "EMA",
    "EXPORTERS",
    "EXPORTER_MODULES",
    "Amp",
    "DistInfo",
    "ExportOptions",
    "ResumableSampler",
    "SeededItems",
    "TrainContext",
    "TrainResult",
    "TrainTask",
    "Trainer",
    "TrainingConfig",
    "all_reduce_mean",
    "apply_overrides",
    "barrier",
    "capture_rng_state",
    "cleanup",
    "config_from_dict",
    "config_to_dict",
    "derive_seed",
    "export_checkpoint",
    "init_distributed",
    "is_main",
    "latest_checkpoint",
    "list_checkpoints",
    "load_checkpoint",
    "load_config",
    "load_latest",
    "model_state",
    "move_to_device",
    "rank",
    "register_exporter",
    "restore_rng_state",
    "save_checkpoint",
    "save_config_yaml",
    "seed_everything",
    "unwrap",
    "world_size",
    "wrap_ddp",
]
