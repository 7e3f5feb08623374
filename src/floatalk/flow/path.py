"""The optimal-transport conditional probability path used for training (Lipman et al. 2023).

Notation: x0 ~ N(0, I) noise, x1 data, t in [0, 1].
    x_t = (1 - (1 - sigma_min) t) x0 + t x1
    u_t = x1 - (1 - sigma_min) x0            (the target velocity, FLOAT Eq. 11)
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

__all__ = ["OTPath", "PathSample"]


@dataclass
class PathSample:
    """A point on the path: x_t, its target velocity u_t and the time t (shape (B,))."""

    x_t: Tensor
    u_t: Tensor
    t: Tensor


@dataclass(frozen=True)
class OTPath:
    """Straight-line (OT) path from noise to data.

    Example:
        >>> path = OTPath()
        >>> s = path.sample(torch.randn(4, 50, 512), latents, torch.rand(4))
        >>> loss = (model(s.x_t, s.t) - s.u_t).abs().mean()
    """

    sigma_min: float = 0.0  # std of the path's end point around x1

    def sample(self, x0: Tensor, x1: Tensor, t: Tensor) -> PathSample:
        """x0, x1: (B, ...); t: (B,) -> PathSample with x_t, u_t shaped like x1."""
        tt = t.reshape(-1, *([1] * (x1.dim() - 1))).to(x1.dtype)
        x_t = (1 - (1 - self.sigma_min) * tt) * x0 + tt * x1
        u_t = x1 - (1 - self.sigma_min) * x0
        return PathSample(x_t, u_t, t)
