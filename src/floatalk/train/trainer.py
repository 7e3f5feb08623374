"""The training loop shared by both stages: a :class:`TrainTask` says *what* to train, the
:class:`Trainer` does everything else.

A task owns its networks, optimisers and losses and performs its own backward passes and optimiser
steps (a GAN has several per step). The trainer owns the run: device, seeding, DDP, data loading
(resumable and deterministic), EMA, mixed precision, logging, previews, checkpoints, resume and
Ctrl-C. A minimal task::

    class FMTTask(TrainTask):
        name = "fmt"                                   # selects the exporter (floatalk.train.export)

        def __init__(self, cfg):
            self.fmt = FlowMatchingTransformer(cfg.model)
            self.lr = cfg.lr

        def models(self):
            return {"fmt": self.fmt}                   # checkpointed, moved to the device, DDP-wrapped

        def ema_models(self):
            return ("fmt",)                            # averaged with config.ema_decay

        def optimizers(self):                          # called after the models moved to the device
            return {"fmt": torch.optim.AdamW(self.fmt.parameters(), lr=self.lr)}

        def train_step(self, batch, step):
            fmt, amp = self.ctx.models["fmt"], self.ctx.amp      # the DDP-wrapped module
            with amp.autocast():
                loss = flow_matching_loss(fmt, batch)
            opt = self.ctx.optimizers["fmt"]
            opt.zero_grad(set_to_none=True)
            amp.backward(loss)
            amp.step(opt)
            return {"loss": loss.detach()}           # tensors: no GPU sync until logged

        def preview(self, step):                       # main rank only: never call a DDP module here
            return {"sample": sample_images(self.ctx.ema["fmt"].module)}   # [-1, 1] images

    seed_everything(cfg.train.seed)                    # the same initial weights on every rank
    trainer = Trainer(cfg.train, FMTTask(cfg), dataset, collate, run_config=cfg)
    result = trainer.fit()                             # resumes from RUN/checkpoints/latest if present

Rules for tasks, so that resume is exact (same losses, same weights as an uninterrupted run):

* All randomness comes from the global RNGs (``torch``, ``numpy``, ``random``) or generators seeded
  from them inside ``train_step``; the trainer checkpoints and restores those states per rank.
  Randomness inside ``dataset[i]`` is reseeded per item (see :mod:`floatalk.train.sampler`).
* State that changes during training and is not in a model, optimiser, scheduler or EMA (counters,
  adaptive weights) goes through :meth:`TrainTask.state_dict` / :meth:`TrainTask.load_state_dict`.
* ``preview`` runs under ``torch.no_grad()`` and an RNG seeded with ``config.seed`` (the same noise
  at every preview), and leaves the training RNG untouched; model train/eval modes are restored.

Running it:

* Under ``torchrun`` every rank runs the same program; each rank gets ``batch_size`` samples per
  step, so the global batch is ``batch_size * world_size``. Call :func:`floatalk.train.cleanup` at
  the end of the program to close the process group.
* Ctrl-C (SIGINT) or SIGTERM (cluster preemption, torchrun shutting down) finishes the current step,
  writes a checkpoint and returns ``TrainResult(interrupted=True)``; a second Ctrl-C aborts at once.
  Exit with status 130 in that case; running the same command again resumes.
* :meth:`Trainer.fit` is called once per Trainer. Resume is automatic (``config.resume``); the data
  order, per-item randomness and RNG streams continue exactly where the checkpoint left them.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from torch.optim import Optimizer
from torch.utils.data import DataLoader

from ..errors import CheckpointError, InputError
from . import distributed as D
from .amp import Amp
from .checkpointing import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_VERSION,
    CHECKPOINTS,
    capture_rng_state,
    load_latest,
    restore_rng_state,
    save_checkpoint,
)
from .config import TrainingConfig, config_to_dict
from .ema import EMA
from .logging import RunLogger
from .sampler import ResumableSampler, SeededItems, derive_seed

__all__ = ["TrainContext", "TrainResult", "TrainTask", "Trainer", "move_to_device", "seed_everything"]


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, NumPy's global RNG and torch (CPU and every CUDA device)."""
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed % (1 << 32))
    torch.manual_seed(seed)


@contextlib.contextmanager
def isolated_rng(seed: int) -> Iterator[None]:
    """Run a block with every global RNG seeded with `seed`, then restore the previous states."""
    saved = capture_rng_state()
    try:
        seed_everything(seed)
        yield
    finally:
        restore_rng_state(saved)


def move_to_device(batch: Any, device: torch.device) -> Any:
    """Tensors inside dicts, lists and tuples (named tuples too) moved to `device`; other values kept."""
    if isinstance(batch, Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return {k: move_to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):
        return type(batch)(*(move_to_device(v, device) for v in batch))
    if isinstance(batch, (list, tuple)):
        return type(batch)(move_to_device(v, device) for v in batch)
    return batch


# --------------------------------------------------------------------------------------------------
# The task protocol
# --------------------------------------------------------------------------------------------------


@dataclass
class TrainContext:
    """What the trainer hands a task in :meth:`TrainTask.setup` (kept as ``task.ctx``)."""

    config: TrainingConfig
    dist: D.DistInfo  # rank, world size, device
    device: torch.device
    amp: Amp  # autocast / backward / step helpers (see floatalk.train.amp)
    models: dict[str, nn.Module]  # DDP-wrapped where DDP is on: call these in train_step
    optimizers: dict[str, Optimizer]
    ema: dict[str, EMA]  # ema[name].module: the averaged copy (eval mode); empty if ema_decay is 0
    run_dir: Path

    def module(self, name: str) -> nn.Module:
        """The plain (unwrapped) module `name`: for previews and anything run on one rank only."""
        return D.unwrap(self.models[name])


class TrainTask:
    """What a stage trains. Subclass it; override at least models, optimizers and train_step.

    Lifecycle, in :meth:`Trainer.fit`: ``models()`` -> moved to the device -> ``optimizers()`` and
    ``schedulers()`` -> DDP wrapping and EMA copies -> ``setup(ctx)`` -> checkpoint restore (models,
    optimisers, schedulers, EMA, ``load_state_dict``) -> ``train_step`` per step, ``preview`` every
    ``preview_every`` steps on the main rank.
    """

    name: ClassVar[str] = "task"  # stored in checkpoints; picks the exporter of `floatalk export`
    ctx: TrainContext

    def models(self) -> dict[str, nn.Module]:
        """The trained networks by name (checkpointed; moved to the device; DDP-wrapped)."""
        raise NotImplementedError

    def optimizers(self) -> dict[str, Optimizer]:
        """The optimisers by name; called after the models were moved to the training device."""
        raise NotImplementedError

    def schedulers(self) -> dict[str, Any]:
        """LR schedulers by name (checkpointed; stepped by the task itself). Default: none."""
        return {}

    def ema_models(self) -> tuple[str, ...]:
        """Names of the models to average (EMA with ``config.ema_decay``). Default: none."""
        return ()

    def ddp_options(self, name: str) -> dict[str, Any]:
        """Extra DistributedDataParallel arguments for model `name` (e.g. broadcast_buffers=False).

        In a GAN's generator step, run the discriminator through ``self.ctx.module(name)`` (the
        unwrapped module, its parameters with requires_grad off): a DDP forward there would make DDP
        wait for discriminator gradients that the generator loss does not produce.
        """
        return {}

    def setup(self, ctx: TrainContext) -> None:
        """Receive the run context (stored as ``self.ctx``); move auxiliary frozen networks here."""
        self.ctx = ctx

    def train_step(self, batch: Any, step: int) -> Mapping[str, float | Tensor]:
        """One optimisation step on `batch` (already on the device); `step` counts completed steps.

        Returns scalar metrics to log (the same keys on every rank); tensors are not synchronised
        with the GPU until they are logged.
        """
        raise NotImplementedError

    def preview(self, step: int) -> Mapping[str, Tensor]:
        """Images to save and show (main rank only; see the module docstring). Default: none."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        """Extra task state for checkpoints (plain data and tensors only). Default: none."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""


@dataclass(frozen=True)
class TrainResult:
    """How :meth:`Trainer.fit` ended."""

    step: int  # steps completed
    interrupted: bool  # stopped by SIGINT / SIGTERM (a checkpoint was saved first)
    checkpoint: Path | None  # the last checkpoint written (None if none was)
    metrics: dict[str, float]  # the last logged metrics


# --------------------------------------------------------------------------------------------------
# The trainer
# --------------------------------------------------------------------------------------------------


class Trainer:
    """Runs a :class:`TrainTask` on a dataset up to ``config.max_steps``; one process or torchrun DDP.

    Args:
        config: the run's :class:`TrainingConfig`.
        task: what to train.
        dataset: anything with ``__len__`` and ``__getitem__(int)``.
        collate: DataLoader ``collate_fn`` (default: torch's default collation).
        run_config: the complete resolved config to store in checkpoints and config.yaml (a
            dataclass or plain dict; default: `config`).

    Output folder (``config.output_dir``): ``checkpoints/`` (see :mod:`floatalk.train.checkpointing`),
    ``metrics.jsonl``, ``tensorboard/``, ``previews/``.
    """

    def __init__(
        self,
        config: TrainingConfig,
        task: TrainTask,
        dataset: Any,
        collate: Callable[[list[Any]], Any] | None = None,
        *,
        run_config: Any = None,
    ) -> None:
        self.config = config
        self.task = task
        self.dataset = dataset
        self.collate = collate
        run_config = config if run_config is None else run_config
        self.run_config = run_config if isinstance(run_config, dict) else config_to_dict(run_config)
        self.run_dir = Path(config.output_dir)
        self.ckpt_dir = self.run_dir / CHECKPOINTS
        self.step = 0
        self.epoch = 0
        self.index = 0  # global samples consumed in the current epoch
        self._stop = False
        self._old_handlers: dict[int, Any] = {}

    # ------------------------------------------------------------------ setup

    def _build(self) -> None:
        cfg = self.config
        if cfg.deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.use_deterministic_algorithms(True)
            torch.backends.cudnn.benchmark = False
        self.dist = D.init_distributed(cfg.device)
        self.device = self.dist.device
        models = self.task.models()
        if not models or not all(isinstance(m, nn.Module) for m in models.values()):
            raise TypeError(f"{type(self.task).__name__}.models() must return a non-empty dict of nn.Module")
        self.models = {name: m.to(self.device).train() for name, m in models.items()}
        self.optimizers = dict(self.task.optimizers())
        self.schedulers = dict(self.task.schedulers())
        self.wrapped = {
            name: D.wrap_ddp(
                m,
                **{"find_unused_parameters": cfg.ddp_find_unused_parameters, **self.task.ddp_options(name)},
            )
            for name, m in self.models.items()
        }
        ema_names = tuple(self.task.ema_models()) if cfg.ema_decay > 0 else ()
        if unknown := [n for n in ema_names if n not in self.models]:
            raise ValueError(f"ema_models() names {unknown}, which models() does not return")
        # After DDP wrapping: the wrapper broadcast rank 0's weights, so the averages start equal too.
        self.ema = {name: EMA(self.models[name], cfg.ema_decay) for name in ema_names}
        self.amp = Amp(cfg.mixed_precision, self.device, cfg.grad_clip)
        self.task.setup(
            TrainContext(
                config=cfg,
                dist=self.dist,
                device=self.device,
                amp=self.amp,
                models=self.wrapped,
                optimizers=self.optimizers,
                ema=self.ema,
                run_dir=self.run_dir,
            )
        )
        self.sampler = ResumableSampler(
            len(self.dataset),
            seed=cfg.seed,
            shuffle=cfg.shuffle,
            rank=self.dist.rank,
            world_size=self.dist.world_size,
            with_seeds=True,
        )
        self.per_step = cfg.batch_size * self.dist.world_size
        self.steps_per_epoch = self.sampler.usable // self.per_step
        if self.steps_per_epoch == 0:
            raise InputError(
                f"the dataset has {len(self.dataset)} samples, fewer than one global batch "
                f"({cfg.batch_size} x {self.dist.world_size} processes); lower batch_size"
            )
        self.loader = DataLoader(
            SeededItems(self.dataset),
            batch_size=cfg.batch_size,
            sampler=self.sampler,
            collate_fn=self.collate,
            num_workers=cfg.num_workers,
            drop_last=True,
            pin_memory=self.device.type == "cuda",
            worker_init_fn=_ignore_sigint,
            # A private generator: creating a loader iterator must not consume the global torch RNG.
            generator=torch.Generator().manual_seed(cfg.seed),
        )

    # ------------------------------------------------------------------ checkpoints

    def state_dict(self) -> dict[str, Any]:
        """The complete training state (collective under DDP: every rank must call it)."""
        rng = D.all_gather_objects(capture_rng_state())
        return {
            "format": CHECKPOINT_FORMAT,
            "version": CHECKPOINT_VERSION,
            "task": self.task.name,
            "step": self.step,
            "world_size": self.dist.world_size,
            "models": {n: m.state_dict() for n, m in self.models.items()},
            "optimizers": {n: o.state_dict() for n, o in self.optimizers.items()},
            "schedulers": {n: s.state_dict() for n, s in self.schedulers.items()},
            "ema": {n: e.state_dict() for n, e in self.ema.items()},
            "scaler": self.amp.state_dict(),
            "task_state": self.task.state_dict(),
            "data": {"epoch": self.epoch, "index": self.index},
            "rng": rng,
            "config": self.run_config,
        }

    def save(self) -> Path | None:
        """Write a checkpoint of the current step (collective; the main rank writes)."""
        state = self.state_dict()
        path = None
        if self.dist.is_main:
            path = save_checkpoint(self.ckpt_dir, state, keep_last=self.config.keep_last)
        D.barrier()
        return path

    def _restore(self, state: dict[str, Any]) -> None:
        if state.get("task") != self.task.name:
            raise CheckpointError(
                f"{self.ckpt_dir} holds a checkpoint of task {state.get('task')!r}, not {self.task.name!r}; "
                "use another output_dir"
            )
        for kind, own in (
            ("models", self.models),
            ("optimizers", self.optimizers),
            ("schedulers", self.schedulers),
        ):
            saved = state.get(kind, {})
            if missing := sorted(set(own) - set(saved)):
                raise CheckpointError(f"checkpoint of step {state['step']} has no {kind} {missing}")
            for name, obj in own.items():
                obj.load_state_dict(saved[name])
        for name, ema in self.ema.items():
            if name in state.get("ema", {}):
                ema.load_state_dict(state["ema"][name])
            else:  # EMA switched on after this checkpoint: start the average at the current weights
                ema.module.load_state_dict(self.models[name].state_dict())
        self.amp.load_state_dict(state.get("scaler", {}))
        self.task.load_state_dict(state.get("task_state", {}))
        self.step = int(state["step"])
        epoch, index = int(state["data"]["epoch"]), int(state["data"]["index"])
        # A different world size or batch size still resumes in order, at the last whole position.
        index -= index % self.dist.world_size
        if index + self.per_step > self.sampler.usable:
            epoch, index = epoch + 1, 0
        self.epoch, self.index = epoch, index
        rng = state.get("rng") or []
        if len(rng) == self.dist.world_size:
            restore_rng_state(rng[self.dist.rank])
        else:  # another world size: continue with fresh, still deterministic, per-rank streams
            seed_everything(derive_seed(self.config.seed, "rank", self.dist.rank, "resume", self.step))
            if self.dist.is_main:
                print(
                    f"floatalk: resuming a {len(rng)}-process run with {self.dist.world_size}; "
                    "random streams restart (not bit-exact)",
                    file=sys.stderr,
                )

    # ------------------------------------------------------------------ signals

    def _on_signal(self, signum: int, frame: Any) -> None:
        if self._stop:  # second Ctrl-C: give up without a checkpoint
            self._restore_handlers()
            raise KeyboardInterrupt
        self._stop = True
        if D.is_main():
            print(
                f"\nfloatalk: {signal.Signals(signum).name}: saving a checkpoint after this step "
                "(press Ctrl-C again to abort without one)",
                file=sys.stderr,
            )

    def _install_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old_handlers[sig] = signal.signal(sig, self._on_signal)

    def _restore_handlers(self) -> None:
        for sig, handler in self._old_handlers.items():
            signal.signal(sig, handler)
        self._old_handlers = {}

    def request_stop(self) -> None:
        """Ask the loop to save a checkpoint and return after the current step (as on SIGINT)."""
        self._stop = True

    # ------------------------------------------------------------------ the loop

    def _preview(self, logger: RunLogger) -> None:
        modes = {name: m.training for name, m in self.models.items()}
        with isolated_rng(self.config.seed), torch.no_grad():
            images = dict(self.task.preview(self.step))
        for name, m in self.models.items():
            m.train(modes[name])
        logger.images(self.step, images)

    def fit(self) -> TrainResult:
        """Train from the latest checkpoint (or from scratch) up to ``config.max_steps``.

        Returns when max_steps is reached or after a SIGINT / SIGTERM (or :meth:`request_stop`),
        in both cases after writing a checkpoint. Under torchrun every rank calls this.
        """
        cfg = self.config
        self._build()
        seed_everything(derive_seed(cfg.seed, "rank", self.dist.rank))
        state = load_latest(self.ckpt_dir, map_location="cpu") if cfg.resume else None
        if state is not None:
            self._restore(state)
            del state
        is_main = self.dist.is_main
        logger = RunLogger(self.run_dir, enabled=is_main, tensorboard=cfg.tensorboard, start_step=self.step)
        bar = None
        if is_main and cfg.progress:
            from tqdm import tqdm

            bar = tqdm(
                total=cfg.max_steps,
                initial=self.step,
                desc=self.task.name,
                dynamic_ncols=True,
                file=sys.stderr,
            )
        self._install_handlers()
        sums: dict[str, Any] = {}
        count = 0
        last: dict[str, float] = {}
        path: Path | None = None
        saved_step = self.step if self.step else -1
        try:
            while self.step < cfg.max_steps and not self._stop:
                self.sampler.set_epoch(self.epoch, self.index)
                for batch in self.loader:
                    batch = move_to_device(batch, self.device)
                    metrics = self.task.train_step(batch, self.step)
                    self.amp.update()
                    for ema in self.ema.values():
                        ema.update()
                    self.step += 1
                    self.index += self.per_step
                    end_of_epoch = self.index >= self.steps_per_epoch * self.per_step
                    if end_of_epoch:
                        self.epoch, self.index = self.epoch + 1, 0
                    for key, value in metrics.items():
                        value = value.detach().float().mean() if isinstance(value, Tensor) else float(value)
                        sums[key] = sums.get(key, 0.0) + value
                    count += 1
                    if bar is not None:
                        bar.update(1)
                    stop = D.any_rank(self._stop)
                    done = self.step >= cfg.max_steps
                    if self.step % cfg.log_every == 0 or done or stop:
                        last = D.all_reduce_mean({k: v / count for k, v in sums.items()})
                        logger.scalars(self.step, last)
                        if bar is not None:
                            bar.set_postfix({k: f"{v:.4g}" for k, v in last.items()}, refresh=False)
                        sums, count = {}, 0
                    if cfg.preview_every and self.step % cfg.preview_every == 0 and is_main:
                        self._preview(logger)
                    if stop or done or (cfg.ckpt_every and self.step % cfg.ckpt_every == 0):
                        path = self.save() or path
                        saved_step = self.step
                    if stop:
                        self._stop = True
                    if stop or done or end_of_epoch:
                        break
                else:  # the loader ran dry before the epoch's last step (batch size changed on resume)
                    self.epoch, self.index = self.epoch + 1, 0
            if saved_step != self.step:  # e.g. max_steps already reached, or stopped between epochs
                path = self.save() or path
        finally:
            self._restore_handlers()
            if bar is not None:
                bar.close()
            logger.close()
        return TrainResult(step=self.step, interrupted=self._stop, checkpoint=path, metrics=last)


def _ignore_sigint(worker_id: int) -> None:
    """DataLoader workers leave Ctrl-C to the main process, which finishes the step and saves."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
