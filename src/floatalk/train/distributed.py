"""One code path for a single process and for ``torchrun`` DDP.

Launch either way; nothing in a trainer changes::

    python -m floatalk ... train ...                                  # one process
    torchrun --nproc_per_node 4 -m floatalk ... train ...             # DDP, one process per GPU

:func:`init_distributed` reads ``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK`` (set by torchrun), picks the
device (``cuda:LOCAL_RANK`` on CUDA, else the CPU) and, with more than one process, starts the
process group: NCCL on CUDA, gloo on CPU. Every other helper here works without it (world size 1)
and needs no ``if distributed:`` at the call site.

Small control messages (logged metrics, the stop flag, RNG states) go through a gloo group on the
CPU, so they never force a CUDA synchronisation of their own.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from ..errors import InputError

__all__ = [
    "DistInfo",
    "all_gather_objects",
    "all_reduce_mean",
    "any_rank",
    "barrier",
    "cleanup",
    "init_distributed",
    "is_main",
    "rank",
    "resolve_device",
    "unwrap",
    "world_size",
    "wrap_ddp",
]


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands: its rank among `world_size` processes and its device."""

    rank: int
    local_rank: int
    world_size: int
    device: torch.device
    backend: str | None  # None when running as a single process

    @property
    def is_main(self) -> bool:
        return self.rank == 0


_INFO: DistInfo | None = None
_CONTROL: Any = None  # gloo process group for CPU-side messages (None: the default group)
_OWNS_GROUP = False  # whether init_distributed started the process group (and cleanup ends it)


def resolve_device(name: str = "auto", local_rank: int = 0) -> torch.device:
    """``auto`` -> ``cuda:LOCAL_RANK`` when CUDA is available, else CPU; ``cpu``; ``cuda``."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise InputError("device=cuda requested but no CUDA GPU is available; use device=cpu")
        return torch.device("cuda", local_rank)
    if name == "cpu":
        return torch.device("cpu")
    raise InputError(f"unknown training device {name!r}; use auto, cpu or cuda")


def init_distributed(device: str = "auto") -> DistInfo:
    """Set up this process (idempotent) and return its :class:`DistInfo`.

    Args:
        device: ``auto``, ``cpu`` or ``cuda`` (the config's ``device`` field).

    With ``WORLD_SIZE`` > 1 in the environment the default process group is initialised from the
    torchrun variables (``MASTER_ADDR`` / ``MASTER_PORT``). A process group started by the caller
    beforehand (e.g. ``torch.multiprocessing.spawn`` tests) is adopted as is.
    """
    global _INFO, _CONTROL, _OWNS_GROUP
    if _INFO is not None:
        if _INFO.world_size == 1 and resolve_device(device) != _INFO.device:
            _INFO = DistInfo(0, 0, 1, resolve_device(device), None)  # another run in this process
            if _INFO.device.type == "cuda":
                torch.cuda.set_device(_INFO.device)
        return _INFO
    env_world = int(os.environ.get("WORLD_SIZE", "1"))
    if dist.is_available() and dist.is_initialized():
        n, r = dist.get_world_size(), dist.get_rank()
    else:
        n, r = env_world, int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", str(r if n > 1 else 0)))
    dev = resolve_device(device, local_rank)
    if dev.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise InputError(
                f"LOCAL_RANK {local_rank} but only {torch.cuda.device_count()} CUDA device(s) are visible"
            )
        torch.cuda.set_device(dev)
    backend = None
    if n > 1:
        if not dist.is_available():
            raise InputError("WORLD_SIZE > 1 but this PyTorch build has no torch.distributed")
        if not dist.is_initialized():
            backend = "nccl" if dev.type == "cuda" else "gloo"
            kwargs: dict[str, Any] = {"device_id": dev} if dev.type == "cuda" else {}
            dist.init_process_group(backend=backend, rank=r, world_size=n, **kwargs)
            _OWNS_GROUP = True
        backend = dist.get_backend()
        # NCCL only moves CUDA tensors; control messages use a CPU group so they need no GPU sync.
        _CONTROL = dist.new_group(backend="gloo") if backend != "gloo" else None
    _INFO = DistInfo(rank=r, local_rank=local_rank, world_size=n, device=dev, backend=backend)
    return _INFO


def _active() -> bool:
    return _INFO is not None and _INFO.world_size > 1


def rank() -> int:
    """This process's rank (0 without DDP)."""
    return _INFO.rank if _INFO is not None else 0


def world_size() -> int:
    """Number of processes (1 without DDP)."""
    return _INFO.world_size if _INFO is not None else 1


def is_main() -> bool:
    """True on rank 0, the process that logs, previews and writes checkpoints."""
    return rank() == 0


def barrier() -> None:
    """Wait for every rank (no-op in a single process)."""
    if _active():
        dist.barrier(group=_CONTROL)


def all_reduce_mean(values: Mapping[str, float | Tensor]) -> dict[str, float]:
    """Mean over ranks of scalar metrics, for logging. Every rank must pass the same keys."""
    keys = sorted(values)
    flat = torch.tensor(
        [
            float(v.detach().float().mean()) if isinstance(v, Tensor) else float(v)
            for v in (values[k] for k in keys)
        ],
        dtype=torch.float64,
    )
    if _active() and keys:
        dist.all_reduce(flat, group=_CONTROL)
        flat /= world_size()
    return dict(zip(keys, flat.tolist()))


def any_rank(flag: bool) -> bool:
    """True on every rank when `flag` is true on at least one (e.g. a Ctrl-C seen by one rank)."""
    if not _active():
        return flag
    t = torch.tensor([1 if flag else 0], dtype=torch.int32)
    dist.all_reduce(t, op=dist.ReduceOp.MAX, group=_CONTROL)
    return bool(t.item())


def all_gather_objects(obj: Any) -> list[Any]:
    """`obj` of every rank, in rank order (picklable objects; a single-element list without DDP)."""
    if not _active():
        return [obj]
    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, obj, group=_CONTROL)
    return out


def wrap_ddp(module: nn.Module, **ddp_kwargs: Any) -> nn.Module:
    """DistributedDataParallel around `module` (already on its device); identity without DDP.

    Modules without trainable parameters (frozen encoders) are returned unwrapped: DDP has nothing to
    synchronise there. Keyword arguments go to DistributedDataParallel (e.g.
    ``find_unused_parameters=True``).
    """
    if not _active() or not any(p.requires_grad for p in module.parameters()):
        return module
    device = next(module.parameters()).device
    ids = (
        [device.index if device.index is not None else torch.cuda.current_device()]
        if device.type == "cuda"
        else None
    )
    return nn.parallel.DistributedDataParallel(module, device_ids=ids, **ddp_kwargs)


def unwrap(module: nn.Module) -> nn.Module:
    """The module inside a DDP wrapper (the module itself otherwise)."""
    return module.module if isinstance(module, nn.parallel.DistributedDataParallel) else module


def cleanup() -> None:
    """End the process group if :func:`init_distributed` started it; forget the setup."""
    global _INFO, _CONTROL, _OWNS_GROUP
    if _OWNS_GROUP and dist.is_initialized():
        dist.destroy_process_group()
    _INFO, _CONTROL, _OWNS_GROUP = None, None, False
