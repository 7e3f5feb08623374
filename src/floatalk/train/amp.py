"""Mixed precision for a task's ``train_step``: autocast, fp16 loss scaling and gradient clipping.

The trainer builds one :class:`Amp` from the config and hands it to the task (``ctx.amp``). A task
with several optimisers (a GAN) uses the same object for each of its backward passes; the trainer
calls :meth:`Amp.update` once after ``train_step``, as GradScaler requires::

    with ctx.amp.autocast():
        d_loss = d_logistic_loss(disc(real), disc(fake.detach()))
    d_opt.zero_grad(set_to_none=True)
    ctx.amp.backward(d_loss)
    ctx.amp.step(d_opt)              # unscale, clip to config.grad_clip, step (skipped on inf/nan)

Autocast is used on CUDA only (``mixed_precision`` = "bf16" or "fp16"); on a CPU everything runs in
float32 and these calls reduce to ``loss.backward()`` / clipping / ``optimizer.step()``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer

__all__ = ["Amp"]


class Amp:
    """Autocast context, GradScaler (fp16 only) and gradient clipping.

    Args:
        mode: "no", "bf16" or "fp16".
        device: the training device; autocast is enabled only on CUDA.
        grad_clip: clip the global grad norm of each optimiser's parameters to this (0 = never).
    """

    def __init__(self, mode: str, device: torch.device, grad_clip: float = 0.0) -> None:
        if mode not in ("no", "bf16", "fp16"):
            raise ValueError(f"mixed_precision must be no, bf16 or fp16, got {mode!r}")
        self.device = device
        self.enabled = device.type == "cuda" and mode != "no"
        self.dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(mode, torch.float32)
        self.grad_clip = float(grad_clip)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.enabled and mode == "fp16")

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """Context for the forward pass (a no-op when mixed precision is off or not on CUDA)."""
        if not self.enabled:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)

    def backward(self, loss: Tensor, **kwargs: Any) -> None:
        """``loss.backward()``, scaled when training in fp16."""
        self.scaler.scale(loss).backward(**kwargs)

    def step(self, optimizer: Optimizer, parameters: Iterable[Tensor] | None = None) -> Tensor | None:
        """Unscale, clip (if ``grad_clip`` > 0) and step `optimizer`.

        Args:
            optimizer: the optimiser whose gradients were just computed.
            parameters: the parameters to clip (default: all of the optimiser's).

        Returns:
            The total grad norm before clipping, when clipping is on (a tensor; no sync); else None.
        """
        norm = None
        if self.grad_clip > 0:
            self.scaler.unscale_(optimizer)
            params = (
                list(parameters)
                if parameters is not None
                else [p for g in optimizer.param_groups for p in g["params"]]
            )
            norm = torch.nn.utils.clip_grad_norm_(params, self.grad_clip)
        self.scaler.step(optimizer)
        return norm

    def update(self) -> None:
        """Adjust the fp16 loss scale; the trainer calls this once per step, after train_step."""
        self.scaler.update()

    def state_dict(self) -> dict[str, Any]:
        return self.scaler.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state and self.scaler.is_enabled():
            self.scaler.load_state_dict(state)
