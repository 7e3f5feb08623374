"""Flow-warping decoder (LIA "Synthesis"; FLOAT §4.1).

From a latent w = w_{S->r} + w_{r->D} the decoder runs a StyleGAN2-like generator from a learned 4x4
constant. At every resolution r = 8 .. size it predicts a 3-channel field: 2 channels of flow
(tanh offsets added to the identity sampling grid) and 1 occlusion mask (sigmoid). The encoder's
feature map at r is warped by the flow and masked; the generator continues from the blend
warp + out * (1 - mask), and the RGB image is accumulated from the *warped features* of every level
(skip connections with FIR upsampling). Flow fields are also accumulated coarse to fine.

Attribute names follow the released checkpoint (`direction`, `input`, `conv1`, `to_rgb1`,
`convs`, `to_rgbs`, `to_flows`). `to_rgb1` exists in the checkpoint but is unused.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...config import MotionAEConfig
from ...nn.stylegan import ConstantInput, ConvLayer, ModulatedConv2d, StyledConv, Upsample
from .basis import MotionBasis

__all__ = ["FlowWarpDecoder", "ToFlow", "ToRGB"]


def identity_grid(size: int, batch: int, like: Tensor) -> Tensor:
    """Sampling grid (N, size, size, 2) of (x, y) in [-1, 1] with corner-aligned spacing.

    The released model builds its identity grid with linspace(-1, 1, size) but samples with
    align_corners=False; we keep that pairing so outputs match.
    """
    lin = np.linspace(-1.0, 1.0, size)  # numpy's float64 grid, rounded once to the working dtype
    xs, ys = np.meshgrid(lin, lin)
    grid = torch.from_numpy(np.stack([xs, ys], axis=-1)).to(device=like.device, dtype=like.dtype)
    return grid.unsqueeze(0).expand(batch, -1, -1, -1)


class ToRGB(nn.Module):
    """1x1 conv (+ leaky ReLU, as released) to RGB, plus the upsampled coarser RGB skip."""

    def __init__(self, in_channels: int, upsample: bool = True, blur_taps: Sequence[int] = (1, 3, 3, 1)):
        super().__init__()
        if upsample:
            self.upsample = Upsample(blur_taps)
        self.conv = ConvLayer(in_channels, 3, 1, blur_taps=blur_taps)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, x: Tensor, skip: Tensor | None = None) -> Tensor:
        """x: (N, C, r, r), skip: (N, 3, r/2, r/2) or None -> (N, 3, r, r)."""
        out = self.conv(x) + self.bias
        if skip is not None:
            out = out + self.upsample(skip)
        return out


class ToFlow(nn.Module):
    """Predicts flow + mask at one resolution and warps the encoder feature map with it."""

    fast: bool = False  # blend in one pass (torch.lerp): the same function up to rounding

    def __init__(self, in_channels: int, style_dim: int, blur_taps: Sequence[int] = (1, 3, 3, 1)):
        super().__init__()
        self.upsample = Upsample(blur_taps)
        self.conv = ModulatedConv2d(in_channels, 3, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(
        self, x: Tensor, style: Tensor, feat: Tensor, skip: Tensor | None = None, blend: bool = True
    ) -> tuple[Tensor, Tensor | None, Tensor, Tensor]:
        """
        Args:
            x: (N, C, r, r) generator features.
            style: (N, S) latent.
            feat: (N, C, r, r) encoder features of the source at this resolution.
            skip: (N, 3, r/2, r/2) raw field of the previous level, or None at the first.
            blend: False skips the blend (the finest level's is never used): `blended` is None.

        Returns:
            warped: (N, C, r, r) masked warped source features.
            blended: warped + x * (1 - mask), or None without `blend`.
            field: (N, 3, r, r) raw field (flow logits, mask logit) for the next level.
            grid: (N, r, r, 2) sampling grid actually used.
        """
        field = self.conv(x, style) + self.bias
        if skip is not None:
            field = field + self.upsample(skip)
        # the flow warping of Eq. 10 (number to confirm): offsets on the identity grid, masked features
        grid = torch.tanh(field[:, 0:2]).permute(0, 2, 3, 1) + identity_grid(x.shape[2], x.shape[0], field)
        mask = torch.sigmoid(field[:, 2:3])
        sampled = F.grid_sample(feat, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        if not blend:
            return sampled * mask, None, field, grid
        if self.fast:
            # warped + x (1 - mask) = x + mask (sampled - x): one pass, in x's memory format
            return sampled * mask, torch.lerp(x, sampled, mask), field, grid
        warped = sampled * mask
        # x first: the sum takes x's memory format (grid_sample's output is always contiguous), so
        # channels-last maps stay channels-last (IEEE addition is commutative)
        return warped, x * (1 - mask) + warped, field, grid


class FlowWarpDecoder(nn.Module):
    """`dec` of the auto-encoder: latent + source feature pyramid -> image.

    Also owns the motion basis (`direction`), as in the released checkpoint.
    """

    def __init__(self, config: MotionAEConfig):
        super().__init__()
        taps = config.blur_kernel
        d = config.latent_dim
        c4 = config.channels(4)
        self.direction = MotionBasis(d, config.motion_dim)
        self.input = ConstantInput(c4)
        self.conv1 = StyledConv(c4, c4, 3, d, blur_taps=taps)
        self.to_rgb1 = ToRGB(c4, upsample=False, blur_taps=taps)  # unused; kept for checkpoint compatibility
        self.convs = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        self.to_flows = nn.ModuleList()
        in_ch = c4
        res = 8
        while res <= config.size:
            out_ch = config.channels(res)
            self.convs.append(StyledConv(in_ch, out_ch, 3, d, upsample=True, blur_taps=taps))
            self.convs.append(StyledConv(out_ch, out_ch, 3, d, blur_taps=taps))
            self.to_rgbs.append(ToRGB(out_ch, blur_taps=taps))
            self.to_flows.append(ToFlow(out_ch, d, blur_taps=taps))
            in_ch = out_ch
            res *= 2

    def forward(self, latent: Tensor, feats: Sequence[Tensor]) -> Tensor:
        """Decode w = w_{S->r} + w_{r->D} into an image.

        Eq. 10 (number to confirm): the image is G(w_{S->D}) with the source's features warped by
        the flow fields G predicts at each resolution (ToFlow); the latent itself is Eq. 8.

        Args:
            latent: (N, d).
            feats: the encoder pyramid at 8x8 .. size x size, each (N or 1, C(r), r, r); a batch of 1
                is broadcast to N (one source image, many frames).

        Returns:
            image (N, 3, size, size), unclamped.
        """
        return self.render(latent, feats)[0]

    def render(self, latent: Tensor, feats: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
        """`forward`, also returning the finest level's sampling grid: (image, grid).

        The finest RGB skip is a 1x1 convolution of the source features warped by `grid`, so that
        grid is where each output pixel takes its appearance from in the source image.

        Returns:
            image (N, 3, size, size) unclamped; grid (N, size, size, 2) of sampling positions in
            [-1, 1] (grid_sample's convention, align_corners=False).
        """
        n = latent.shape[0]
        out = self.conv1(self.input(n), latent)
        rgb = field = grid = None
        last = len(self.to_flows) - 1
        for j, (to_flow, to_rgb) in enumerate(zip(self.to_flows, self.to_rgbs)):
            out = self.convs[2 * j](out, latent)
            out = self.convs[2 * j + 1](out, latent)
            feat = feats[j]
            if feat.shape[0] != n:
                feat = feat.expand(n, -1, -1, -1)
            # the finest level's blend would feed no further convolution: not computed
            warped, out, field, grid = to_flow(out, latent, feat, field, blend=j < last)
            rgb = to_rgb(warped, rgb)
        return rgb, grid
