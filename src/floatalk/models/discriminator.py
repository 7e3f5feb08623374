"""Discriminators for stage-1 (motion auto-encoder) training.

* `StyleGAN2Discriminator` (Karras et al. 2020, the residual "ResNet" discriminator): a 1x1
  from-RGB ConvLayer, residual blocks with FIR-blurred down-sampling down to 4x4, a minibatch
  standard-deviation feature, a 3x3 ConvLayer and two equalised linears -> one logit per image.
  Channels at resolution r: min(channel_max, channel_base * channel_multiplier // r), i.e. the
  usual 512 up to 32x32, then 256, 128, 64, 32 at 64..512 for channel_multiplier 1.
* `MultiScaleDiscriminator`: FLOAT's 2-scale discriminator, separate StyleGAN2 discriminators on
  the full-resolution image and on a 2x (box-filter) down-sampled copy.
* `ComponentDiscriminator`: a small VGG-like patch discriminator for eye / mouth crops (the role
  of GFPGAN's facial component discriminators) that can return its intermediate features for the
  Gram-matrix style loss.

Pure modules: no I/O, no device choice. Built from `floatalk.nn.stylegan`'s layers. Images are
(N, 3, H, W) in [-1, 1].
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..nn.stylegan import LEAKY_GAIN, LEAKY_SLOPE, ConvLayer, EqualLinear, ResBlock

__all__ = [
    "ComponentDiscriminator",
    "MultiScaleDiscriminator",
    "StyleGAN2Discriminator",
    "minibatch_stddev",
]


def minibatch_stddev(x: Tensor, group_size: int = 4, num_features: int = 1) -> Tensor:
    """Append minibatch standard-deviation channels (StyleGAN, Karras et al. 2018 §3).

    The batch is split into groups of G samples (sample i belongs to group i mod (N/G)). Within a
    group, the std over samples of every (channel, pixel) is averaged over channels (in
    `num_features` channel slices) and pixels, and broadcast as `num_features` extra channels.

    G = the largest divisor of N that is <= group_size, so any batch size works (a batch of a
    prime size larger than group_size uses G = 1, where the feature is a constant 1e-4).

    Args:
        x: (N, C, H, W); C must be divisible by num_features.

    Returns:
        (N, C + num_features, H, W).
    """
    n, c, h, w = x.shape
    if c % num_features:
        raise ValueError(f"{c} channels cannot be split into {num_features} stddev features")
    g = max(d for d in range(1, min(group_size, n) + 1) if n % d == 0)
    y = x.reshape(g, n // g, num_features, c // num_features, h, w)
    std = torch.sqrt(y.var(dim=0, unbiased=False) + 1e-8)  # (N/G, F, C/F, H, W)
    std = std.mean(dim=(2, 3, 4))  # (N/G, F)
    std = std.reshape(n // g, num_features, 1, 1).repeat(g, 1, h, w)  # (N, F, H, W)
    return torch.cat([x, std], dim=1)


class _LeakyLinear(nn.Module):
    """EqualLinear followed by leaky_relu(0.2) * sqrt(2) (StyleGAN2's fused activation on a linear)."""

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.linear = EqualLinear(in_features, out_features)

    def forward(self, x: Tensor) -> Tensor:
        return F.leaky_relu(self.linear(x), LEAKY_SLOPE) * LEAKY_GAIN


class StyleGAN2Discriminator(nn.Module):
    """StyleGAN2 residual discriminator for square images of side `size` (a power of 2, >= 4).

    Args:
        size: input resolution.
        channel_multiplier: scales the channels of the high-resolution layers (StyleGAN2: 2,
            LIA: 1).
        channel_max: channel cap (512 in StyleGAN2; small values make tiny test models).
        channel_base: channels(r) = min(channel_max, channel_base * channel_multiplier // r).
        blur_taps: FIR taps of the down-sampling blur.
        stddev_group: minibatch-stddev group size (see `minibatch_stddev`).
        stddev_features: number of minibatch-stddev channels.

    Shapes: forward((N, 3, size, size)) -> (N, 1) logits.
    """

    def __init__(
        self,
        size: int,
        channel_multiplier: int = 1,
        channel_max: int = 512,
        channel_base: int = 16384,
        blur_taps: Sequence[int] = (1, 3, 3, 1),
        stddev_group: int = 4,
        stddev_features: int = 1,
    ):
        super().__init__()
        if size < 4 or size & (size - 1):
            raise ValueError(f"discriminator size must be a power of 2 >= 4, got {size}")
        self.size = size
        self.stddev_group = stddev_group
        self.stddev_features = stddev_features

        def channels(res: int) -> int:
            return max(1, min(channel_max, channel_base * channel_multiplier // res))

        self.convs = nn.ModuleList([ConvLayer(3, channels(size), 1, blur_taps=blur_taps)])
        res = size
        while res > 4:
            self.convs.append(ResBlock(channels(res), channels(res // 2), blur_taps))
            res //= 2
        c4 = channels(4)
        self.final_conv = ConvLayer(c4 + stddev_features, c4, 3, blur_taps=blur_taps)
        self.final_linear = nn.Sequential(_LeakyLinear(c4 * 4 * 4, c4), EqualLinear(c4, 1))

    def forward(self, image: Tensor) -> Tensor:
        """(N, 3, size, size) -> (N, 1) logits (real > 0)."""
        if image.ndim != 4 or tuple(image.shape[1:]) != (3, self.size, self.size):
            raise ValueError(
                f"discriminator expects (N, 3, {self.size}, {self.size}) images, got {tuple(image.shape)}"
            )
        x = image
        for conv in self.convs:
            x = conv(x)
        x = minibatch_stddev(x, self.stddev_group, self.stddev_features)
        x = self.final_conv(x)
        return self.final_linear(x.flatten(1))


class MultiScaleDiscriminator(nn.Module):
    """Separate StyleGAN2 discriminators on the image at full, 1/2, ... resolution (FLOAT: 2 scales).

    Args:
        size: full input resolution.
        num_scales: number of scales; scale k sees the image box-filtered down by 2^k.
        **kwargs: passed to every `StyleGAN2Discriminator`.

    Shapes: forward((N, 3, size, size)) -> [(N, 1)] * num_scales, full resolution first.
    """

    def __init__(self, size: int, num_scales: int = 2, **kwargs):
        super().__init__()
        if num_scales < 1 or size >> (num_scales - 1) < 4:
            raise ValueError(f"cannot build {num_scales} scales for {size}x{size} images")
        self.size = size
        self.discriminators = nn.ModuleList(
            StyleGAN2Discriminator(size >> k, **kwargs) for k in range(num_scales)
        )

    def forward(self, image: Tensor) -> list[Tensor]:
        logits = []
        x = image
        for k, disc in enumerate(self.discriminators):
            if k:
                x = F.avg_pool2d(x, kernel_size=2, stride=2)
            logits.append(disc(x))
        return logits


class ComponentDiscriminator(nn.Module):
    """Patch discriminator for facial-component crops (eyes, mouth).

    ConvLayer 3x3 (3 -> c), then per stage a down-sampling 3x3 ConvLayer (doubling the channels)
    and a 3x3 ConvLayer, then a 3x3 linear conv to one logit per patch. With the default two
    stages, c = 64 gives GFPGAN's component-discriminator widths (64, 128, 256).

    Args:
        channels: width of the first layer.
        num_stages: number of 2x down-sampling stages.
        channel_max: channel cap.
        blur_taps: FIR taps of the down-sampling blur.

    Shapes: forward((N, 3, h, w)) -> (N, 1, h / 2^stages, w / 2^stages) patch logits; with
    ``return_features=True`` also the list of each stage's output (N, C_s, h_s, w_s), the
    features used by the Gram-matrix style loss.
    """

    def __init__(
        self,
        channels: int = 64,
        num_stages: int = 2,
        channel_max: int = 512,
        blur_taps: Sequence[int] = (1, 3, 3, 1),
    ):
        super().__init__()
        self.stem = ConvLayer(3, min(channels, channel_max), 3, blur_taps=blur_taps)
        self.stages = nn.ModuleList()
        ch = min(channels, channel_max)
        for _ in range(num_stages):
            out = min(ch * 2, channel_max)
            self.stages.append(
                nn.Sequential(
                    ConvLayer(ch, out, 3, downsample=True, blur_taps=blur_taps),
                    ConvLayer(out, out, 3, blur_taps=blur_taps),
                )
            )
            ch = out
        self.final_conv = ConvLayer(ch, 1, 3, blur_taps=blur_taps, bias=True, activate=False)

    def forward(self, image: Tensor, return_features: bool = False) -> Tensor | tuple[Tensor, list[Tensor]]:
        x = self.stem(image)
        feats = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        logits = self.final_conv(x)
        return (logits, feats) if return_features else logits
