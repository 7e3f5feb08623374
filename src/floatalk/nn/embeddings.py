"""Sinusoidal embeddings: the flow-time embedding and the fixed frame-position table."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor, nn

__all__ = ["TimestepEmbedder", "sinusoidal_positions", "timestep_frequencies"]


def timestep_frequencies(t: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """[cos(t f_k), sin(t f_k)] with f_k = max_period^(-k / (dim/2)), k < dim/2 (DiT convention).

    t is used as given: FLOAT feeds flow time t in [0, 1] without rescaling.

    Args:
        t: (B,) times.
        dim: even output size.

    Returns:
        (B, dim).
    """
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t[:, None].float() * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class TimestepEmbedder(nn.Module):
    """Flow time t -> (B, hidden): sinusoidal features -> Linear -> SiLU -> Linear (`mlp.0`, `mlp.2`)."""

    def __init__(self, hidden_dim: int, frequency_dim: int = 256):
        super().__init__()
        self.frequency_dim = frequency_dim
        self.mlp = nn.Sequential(
            nn.Linear(frequency_dim, hidden_dim), nn.SiLU(), nn.Linear(hidden_dim, hidden_dim)
        )

    def forward(self, t: Tensor) -> Tensor:
        """t: () or (B,) -> (1 or B, hidden)."""
        t = t.reshape(-1)
        return self.mlp(timestep_frequencies(t, self.frequency_dim).to(self.mlp[0].weight.dtype))


def sinusoidal_positions(length: int, dim: int) -> Tensor:
    """Fixed position table (length, dim): even channels sin(p / 10000^(2(j//2)/dim)), odd channels cos.

    Computed in float64 and rounded once to float32, as the released model does.
    """
    pos = np.arange(length, dtype=np.float64)[:, None]
    j = np.arange(dim)[None, :]
    angles = pos / np.power(10000.0, 2 * (j // 2) / dim)
    table = np.where(j % 2 == 0, np.sin(angles), np.cos(angles))
    return torch.from_numpy(table).float()
