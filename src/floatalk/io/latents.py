"""Motion latents and initial noise as .safetensors files (`--save-motion`, `--motion`, `--noise`).

A motion file holds the sampled motion latents w_{r->D}^{1:T}, one tensor ``motion_latents`` of
shape (T, d) in float32, with metadata {"format": "floatalk-motion", "fps", "seed"}. A noise file
holds one tensor ``noise`` of shape (W * L, d) or (1, W * L, d): the initial noise x0 of each of the
W windows of L frames, e.g. exported from another implementation to reproduce its run exactly.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from floatalk.errors import InputError

__all__ = ["check_motion_path", "load_motion_file", "load_noise_file", "save_motion_file"]


def check_motion_path(path: str | os.PathLike) -> Path:
    """Check, before any work, that a motion file can be written at `path`."""
    p = Path(path)
    if p.suffix != ".safetensors":
        raise InputError(f"motion file {str(p)!r} must end in .safetensors")
    if not p.parent.is_dir():
        raise InputError(f"directory of motion file {str(p)!r} does not exist; create it first")
    return p


def save_motion_file(path: str | os.PathLike, latents: torch.Tensor, fps: float, seed: int | None) -> None:
    """Write sampled motion latents (T, d) as safetensors, atomically."""
    from safetensors.torch import save_file

    p = Path(path)
    tmp = p.with_name(f".{p.name}.tmp")
    meta = {"format": "floatalk-motion", "fps": str(fps), "seed": "" if seed is None else str(seed)}
    try:
        save_file({"motion_latents": latents.float().contiguous()}, str(tmp), metadata=meta)
        os.replace(tmp, p)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def load_motion_file(path: str | os.PathLike) -> torch.Tensor:
    """Motion latents (T, d) from a file written by --save-motion."""
    return _load_tensor_file(path, "motion_latents", "motion file", "write it with --save-motion")


def load_noise_file(path: str | os.PathLike) -> torch.Tensor:
    """Initial noise (W * L, d) or (1, W * L, d) from a .safetensors file with a tensor named "noise"."""
    return _load_tensor_file(path, "noise", "noise file", 'save a tensor named "noise" with safetensors')


def _load_tensor_file(path: str | os.PathLike, key: str, kind: str, hint: str) -> torch.Tensor:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    p = Path(path)
    if not p.is_file():
        raise InputError(f"{kind} {str(p)!r} does not exist")
    try:
        data = load_file(str(p))
    except (SafetensorError, OSError, ValueError) as exc:
        raise InputError(f"{kind} {str(p)!r} is not a valid safetensors file ({exc})") from None
    if key not in data:
        raise InputError(f"{kind} {str(p)!r} has no tensor named {key!r}; {hint}")
    return data[key]
