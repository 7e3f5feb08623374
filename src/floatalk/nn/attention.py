"""Multi-head self-attention restricted to a band of neighbouring frames (FLOAT §4.2).

Each frame attends only to frames within +-T of itself (T = 2 in the paper): lip motion depends on
local speech, and a narrow receptive field keeps windows consistent when they are stitched.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["BandedContextAttention", "BandedSelfAttention", "band_mask"]


def band_mask(length: int, half_width: int, device: torch.device | None = None) -> Tensor:
    """Boolean (length, length) mask, True where |i - j| <= half_width (allowed to attend)."""
    idx = torch.arange(length, device=device)
    return (idx[:, None] - idx[None, :]).abs() <= half_width


class BandedSelfAttention(nn.Module):
    """Self-attention with a fused qkv projection (`qkv`) and output projection (`proj`).

    Args:
        dim: model width.
        num_heads: number of heads (dim must be divisible by it).
    """

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor, allowed: Tensor) -> Tensor:
        """x: (B, N, dim); allowed: (N, N) bool band mask -> (B, N, dim)."""
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # each (B, heads, N, head_dim)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class BandedContextAttention(nn.Module):
    """Attention of N frames over themselves and N per-frame condition tokens at once (Table 3 ablation).

    Queries come from the frames x; keys and values from [x, context] (2N tokens), and frame i sees
    frame j and condition token j only where |i - j| <= T (the same band as self-attention). So one
    attention both mixes neighbouring frames and reads their conditions, instead of adaLN.

    Args:
        dim: model width.
        num_heads: number of heads (dim must be divisible by it).
    """

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, dim * 2)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor, context: Tensor, allowed: Tensor) -> Tensor:
        """x, context: (B, N, dim); allowed: (N, N) bool band mask -> (B, N, dim)."""
        b, n, c = x.shape
        heads, hd = self.num_heads, c // self.num_heads
        q = self.q(x).reshape(b, n, heads, hd).transpose(1, 2)  # (B, heads, N, hd)
        kv = self.kv(torch.cat([x, context], dim=1)).reshape(b, 2 * n, 2, heads, hd).permute(2, 0, 3, 1, 4)
        k, v = kv.unbind(0)  # each (B, heads, 2N, hd)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=torch.cat([allowed, allowed], dim=1))
        return self.proj(out.transpose(1, 2).reshape(b, n, c))
