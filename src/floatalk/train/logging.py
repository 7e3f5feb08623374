"""What a run writes for people to look at: metrics.jsonl, TensorBoard events, preview PNGs.

Only the main rank writes. Folder layout inside ``output_dir``::

    metrics.jsonl               one JSON object per logged step: {"step": 100, "loss": 0.12, ...}
    tensorboard/                event files (scalars under their metric names, images under preview/)
    previews/<name>_<step>.png  preview images

Images are float tensors in [-1, 1] (the project's convention) or uint8 in [0, 255], shaped
(H, W), (C, H, W) or (N, C, H, W) with C = 1 or 3; a batch becomes a grid.

On resume, metrics.jsonl lines and TensorBoard events after the resumed step are dropped, so a run
that crashed after its last checkpoint does not show those steps twice.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..errors import InputError

__all__ = ["RunLogger", "save_png", "to_image"]

METRICS_FILE = "metrics.jsonl"


def to_image(images: Tensor, pad: int = 2) -> np.ndarray:
    """(H, W, 3) uint8 array of an image or of a grid of a batch of images (see module docstring)."""
    x = images.detach().cpu()
    if x.dim() == 2:
        x = x[None]
    if x.dim() == 3:
        x = x[None]
    if x.dim() != 4 or x.shape[1] not in (1, 3):
        raise ValueError(
            f"preview image must be (H,W), (C,H,W) or (N,C,H,W) with C in (1, 3); got {tuple(x.shape)}"
        )
    # [-1, 1] floats map to [0, 255] with a fixed affine map and clamp (never per-image rescaling).
    x = x.float() if x.dtype == torch.uint8 else ((x.float().clamp(-1, 1) + 1) * 127.5).round()
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    n, _, h, w = x.shape
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    grid = torch.zeros(3, rows * h + (rows - 1) * pad, cols * w + (cols - 1) * pad)
    for i in range(n):
        r, c = divmod(i, cols)
        grid[:, r * (h + pad) : r * (h + pad) + h, c * (w + pad) : c * (w + pad) + w] = x[i]
    return grid.permute(1, 2, 0).to(torch.uint8).numpy()


def save_png(images: Tensor, path: str | os.PathLike) -> Path:
    """Write an image (or a grid of a batch) as PNG; returns the path."""
    from PIL import Image

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(to_image(images)).save(p, format="PNG")
    return p


def _summary_writer(log_dir: Path, purge_step: int | None) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise InputError(
            "TensorBoard logging needs the `tensorboard` package (pip install 'tensorboard<2.20'); "
            "or set tensorboard=false in the training config"
        ) from None
    return SummaryWriter(log_dir=str(log_dir), purge_step=purge_step)


class RunLogger:
    """Scalars and images of a run (a no-op object on ranks other than the main one).

    Args:
        run_dir: the run's output folder.
        enabled: False on non-main ranks: every method does nothing.
        tensorboard: also write TensorBoard events.
        start_step: the step a resumed run starts from (0 for a new run).
    """

    def __init__(self, run_dir: str | os.PathLike, *, enabled: bool, tensorboard: bool, start_step: int = 0):
        self.run_dir = Path(run_dir)
        self.enabled = enabled
        self.writer = None
        if not enabled:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._truncate_metrics(start_step)
        if tensorboard:
            self.writer = _summary_writer(
                self.run_dir / "tensorboard", start_step + 1 if start_step else None
            )

    def _truncate_metrics(self, start_step: int) -> None:
        path = self.run_dir / METRICS_FILE
        if not path.is_file():
            return
        kept = []
        for line in path.read_text().splitlines():
            try:
                if json.loads(line).get("step", 0) <= start_step:
                    kept.append(line)
            except ValueError:
                continue  # a line cut short by a crash
        path.write_text("".join(line + "\n" for line in kept))

    def scalars(self, step: int, values: dict[str, float]) -> None:
        """Append one metrics.jsonl line and the TensorBoard scalars of `step`."""
        if not self.enabled:
            return
        with open(self.run_dir / METRICS_FILE, "a") as f:
            f.write(json.dumps({"step": step, **values}) + "\n")
        if self.writer is not None:
            for key, value in values.items():
                self.writer.add_scalar(key, value, step)

    def images(self, step: int, images: dict[str, Tensor]) -> list[Path]:
        """Save each image as previews/<name>_<step>.png (and to TensorBoard); returns the PNG paths."""
        if not self.enabled:
            return []
        paths = []
        for name, tensor in images.items():
            safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in name)
            paths.append(save_png(tensor, self.run_dir / "previews" / f"{safe}_{step:08d}.png"))
            if self.writer is not None:
                self.writer.add_image(f"preview/{name}", to_image(tensor), step, dataformats="HWC")
        return paths

    def flush(self) -> None:
        if self.writer is not None:
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
