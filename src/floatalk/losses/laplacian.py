"""Laplacian-pyramid L1: a reconstruction term that weighs edges and fine detail like flat regions.

Pixel L1 lets a blurred reconstruction cost little where the image has detail; comparing the band-pass
levels of a Laplacian pyramid (each level: the image minus its blurred, 2x-downsampled and re-upsampled
self) makes every octave of detail count with the same weight (Bojanowski et al. 2018, "Optimizing the
Latent Space of Generative Networks", the "Lap1" loss, with level weights 2^(-2j) there; equal here,
normalised by the number of levels). Ours: a stand-in for the paper's VGG-19 perceptual term where no
VGG weights are at hand; not in the paper.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

__all__ = ["laplacian_l1", "laplacian_pyramid"]


def laplacian_pyramid(image: Tensor, levels: int) -> list[Tensor]:
    """Band-pass levels (finest first) and the low-pass residual: (N, C, H, W) -> levels + 1 tensors."""
    bands = []
    current = image
    for _ in range(levels):
        if min(current.shape[-2:]) < 2:
            break
        low = F.avg_pool2d(current, 2)
        bands.append(
            current - F.interpolate(low, size=current.shape[-2:], mode="bilinear", align_corners=False)
        )
        current = low
    bands.append(current)
    return bands


def laplacian_l1(fake: Tensor, real: Tensor, levels: int = 4) -> Tensor:
    """Mean over the pyramid levels of the mean absolute difference: (N, C, H, W) x2 -> scalar."""
    pairs = list(zip(laplacian_pyramid(fake, levels), laplacian_pyramid(real, levels)))
    return sum((a - b).abs().mean() for a, b in pairs) / len(pairs)
