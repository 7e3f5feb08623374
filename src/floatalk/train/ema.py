"""Exponential moving average of a module's weights (the generator's export weights).

After each optimisation step, ``ema = decay * ema + (1 - decay) * live`` for every floating-point
parameter; buffers (running statistics, fixed tables) and non-float tensors are copied as they are.
The average lives in a frozen deep copy of the module, on the same device, in eval mode::

    ema = EMA(generator, decay=0.999)
    ...
    g_opt.step()
    ema.update()
    samples = ema.module(x)        # inference with the averaged weights
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from .distributed import unwrap

__all__ = ["EMA"]


class EMA:
    """EMA of `model`'s parameters, with its buffers copied.

    Args:
        model: the live module (a DDP wrapper is unwrapped). Its structure must not change later.
        decay: weight of the old average per update, in [0, 1).
    """

    def __init__(self, model: nn.Module, decay: float = 0.999) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.source = unwrap(model)
        self.decay = float(decay)
        self.num_updates = 0
        self.module = copy.deepcopy(self.source).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self) -> None:
        """Move the average towards the current weights of the live model by (1 - decay)."""
        avg, live = [], []
        for p_ema, p in zip(self.module.parameters(), self.source.parameters(), strict=True):
            if p_ema.is_floating_point():
                avg.append(p_ema)
                live.append(p.detach())
            else:
                p_ema.copy_(p)
        if avg:
            # lerp: avg + (1 - decay) * (live - avg), one fused kernel per dtype/device group.
            torch._foreach_lerp_(avg, live, 1.0 - self.decay)
        for b_ema, b in zip(self.module.buffers(), self.source.buffers(), strict=True):
            b_ema.copy_(b)
        self.num_updates += 1

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        """Overwrite `model`'s weights with the average (e.g. to evaluate or export)."""
        unwrap(model).load_state_dict(self.module.state_dict())

    def state_dict(self) -> dict[str, Any]:
        """Tensors and numbers only (loads with ``torch.load(weights_only=True)``)."""
        return {"decay": self.decay, "num_updates": self.num_updates, "module": self.module.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the average (strict: the module structure must match)."""
        self.module.load_state_dict(state["module"])
        self.num_updates = int(state.get("num_updates", 0))
