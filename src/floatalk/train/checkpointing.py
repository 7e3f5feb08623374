"""Training checkpoints: crash-safe writes, a ``latest`` pointer, pruning, RNG state capture.

Layout of a run's checkpoint folder (``RUN_DIR/checkpoints``)::

    step_00005000.pt     one training checkpoint per saved step (torch.save of plain data)
    step_00010000.pt
    latest               text: the file name of the newest complete checkpoint
    config.yaml          the resolved config of the run (as stored in the newest checkpoint)

Crash safety: a checkpoint is written to a temporary file in the same folder, flushed and fsynced,
then renamed into place with ``os.replace`` (atomic on POSIX and Windows); only then is ``latest``
replaced the same way, and only after that are old checkpoints deleted. A process killed at any
moment (SIGKILL, power loss after the fsyncs) leaves ``latest`` naming a complete file; at worst a
stray ``.*.tmp`` file remains, which the next save removes.

Everything in a checkpoint loads with ``torch.load(path, weights_only=True)``: only tensors, dicts,
lists, tuples, str, int, float, bool and None. :func:`save_checkpoint` checks this before writing,
so a stray NumPy array or dataclass fails at save time with its path in the state, not at resume.

A trainer checkpoint (see :class:`floatalk.train.trainer.Trainer`) holds::

    {"format": "floatalk-train", "version": 1, "task": str, "step": int, "world_size": int,
     "models": {name: state_dict}, "optimizers": {name: state_dict}, "ema": {name: EMA state},
     "scaler": GradScaler state, "task_state": dict, "data": {"epoch": int, "index": int},
     "rng": [per-rank capture_rng_state()], "config": plain dict}
"""

from __future__ import annotations

import os
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..errors import CheckpointError
from .atomic import atomic_write
from .config import save_config_yaml

__all__ = [
    "CHECKPOINT_FORMAT",
    "capture_rng_state",
    "check_weights_only",
    "checkpoint_dir",
    "latest_checkpoint",
    "list_checkpoints",
    "load_checkpoint",
    "load_latest",
    "restore_rng_state",
    "save_checkpoint",
]

CHECKPOINT_FORMAT = "floatalk-train"
CHECKPOINT_VERSION = 1
LATEST = "latest"
CONFIG_YAML = "config.yaml"
CHECKPOINTS = "checkpoints"
_NAME = re.compile(r"^step_(\d+)\.pt$")


def checkpoint_name(step: int) -> str:
    """File name of the checkpoint of `step` (zero-padded so names sort by step)."""
    return f"step_{step:08d}.pt"


def checkpoint_dir(path: str | os.PathLike) -> Path:
    """The checkpoint folder of a run folder (``RUN/checkpoints``), or `path` itself if it is one."""
    p = Path(path)
    if (p / LATEST).is_file() or list_checkpoints(p):
        return p
    return p / CHECKPOINTS


# --------------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------------


_PLAIN = (str, int, float, bool, type(None))


def check_weights_only(value: Any, where: str = "state") -> None:
    """Raise TypeError naming the first entry that ``torch.load(weights_only=True)`` would refuse."""
    if isinstance(value, Tensor):
        return
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, (str, int)):
                raise TypeError(f"checkpoint key {where}[{k!r}] must be str or int, not {type(k).__name__}")
            check_weights_only(v, f"{where}[{k!r}]")
        return
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            check_weights_only(v, f"{where}[{i}]")
        return
    if type(value) in _PLAIN or isinstance(value, torch.dtype):  # exact types: np.float64 is a float
        return
    raise TypeError(
        f"checkpoint entry {where} is a {type(value).__module__}.{type(value).__name__}; store only tensors, "
        "dicts, lists, str, int, float, bool and None (convert NumPy arrays with torch.from_numpy)"
    )


def save_checkpoint(directory: str | os.PathLike, state: dict[str, Any], *, keep_last: int = 3) -> Path:
    """Write `state` as the checkpoint of ``state["step"]``, point ``latest`` at it, prune old ones.

    Args:
        directory: the checkpoint folder (created if needed).
        state: plain data (see the module docstring); must hold an int ``"step"``. If it holds a
            ``"config"`` dict, that is also written as ``config.yaml`` beside the checkpoints.
        keep_last: how many checkpoints to keep (the newest by step; ``latest``'s is always kept).

    Returns:
        The path of the written checkpoint.
    """
    if not isinstance(state.get("step"), int):
        raise ValueError("checkpoint state needs an int 'step'")
    check_weights_only(state)
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    name = checkpoint_name(state["step"])
    path = d / name
    atomic_write(path, lambda f: torch.save(state, f))
    atomic_write(d / LATEST, lambda f: f.write((name + "\n").encode()))
    if isinstance(state.get("config"), dict):
        save_config_yaml(state["config"], d / CONFIG_YAML)
    _prune(d, keep=max(1, keep_last), current=name)
    return path


def list_checkpoints(directory: str | os.PathLike) -> list[tuple[int, Path]]:
    """``(step, path)`` of every complete checkpoint file in `directory`, by increasing step."""
    d = Path(directory)
    if not d.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in d.iterdir() if (m := _NAME.match(p.name))]
    return sorted(found)


def _prune(directory: Path, keep: int, current: str) -> None:
    for _, p in list_checkpoints(directory)[:-keep]:
        if p.name != current:
            p.unlink(missing_ok=True)
    for p in directory.glob(".*.tmp"):  # left by a process killed while writing (single writer)
        p.unlink(missing_ok=True)


# --------------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------------


def latest_checkpoint(directory: str | os.PathLike) -> Path | None:
    """The file ``latest`` points to (run folder or checkpoint folder), or None if there is none."""
    d = checkpoint_dir(directory)
    pointer = d / LATEST
    if not pointer.is_file():
        return None
    name = pointer.read_text().strip()
    if not _NAME.match(name):
        raise CheckpointError(f"{pointer} does not name a checkpoint file (found {name!r})")
    path = d / name
    if not path.is_file():
        raise CheckpointError(f"{pointer} names {name}, which does not exist; restore it or delete {pointer}")
    return path


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load one training checkpoint with ``weights_only=True``; CheckpointError if unusable."""
    p = Path(path)
    try:
        state = torch.load(p, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {str(p)!r} does not exist") from None
    except Exception as exc:  # torch raises many types for truncated or foreign files
        raise CheckpointError(f"{p} is not a loadable checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(state, dict) or state.get("format", CHECKPOINT_FORMAT) != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{p} is not a floatalk training checkpoint")
    return state


def load_latest(
    directory: str | os.PathLike, map_location: str | torch.device = "cpu"
) -> dict[str, Any] | None:
    """The newest complete checkpoint of a run folder or checkpoint folder; None if there is none.

    Safe while the run is still writing checkpoints: if the file ``latest`` named is pruned before
    it is read, the pointer is read again.
    """
    pointer = checkpoint_dir(directory) / LATEST
    for _ in range(5):
        before = _read_text(pointer)
        try:
            path = latest_checkpoint(directory)
            return None if path is None else load_checkpoint(path, map_location)
        except CheckpointError:
            if _read_text(pointer) == before:  # nothing moved meanwhile: the checkpoint is unusable
                raise
    raise CheckpointError(f"{pointer} changed too fast to follow; try again")


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


# --------------------------------------------------------------------------------------------------
# RNG state
# --------------------------------------------------------------------------------------------------


def capture_rng_state() -> dict[str, Any]:
    """Python ``random``, NumPy global, torch CPU and (if initialised) current CUDA device RNG states."""
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    # Only the current device's: get_rng_state_all() would open a context on every GPU of the node.
    cuda = torch.cuda.get_rng_state() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
    return {
        "python": {"version": version, "state": torch.tensor(internal, dtype=torch.int64), "gauss": gauss},
        "numpy": {
            "kind": str(kind),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "torch": torch.get_rng_state(),
        "cuda": cuda,
    }


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state` (the CUDA state goes to the current device)."""
    py = state["python"]
    random.setstate((int(py["version"]), tuple(int(x) for x in py["state"].tolist()), py["gauss"]))
    n = state["numpy"]
    np.random.set_state(
        (n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"])
    )
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])
