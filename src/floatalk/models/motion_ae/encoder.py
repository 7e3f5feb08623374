"""Motion auto-encoder encoder: identity code, multi-scale features and motion coefficients.

E(S) maps a source image to the identity latent w_{S->r} (the 1x1 output of a ResNet of
down-sampling blocks) and keeps the intermediate feature maps, which the decoder warps with its
predicted flow fields. A head of five linear layers without non-linearity maps the identity code
to the M motion coefficients lambda (FLOAT §4.1 / LIA §3).

Attribute names follow the released checkpoint (`net_app.convs.*`, `fc.*`).
"""

from __future__ import annotations

from torch import Tensor, nn

from ...config import MotionAEConfig
from ...nn.stylegan import ConvLayer, EqualConv2d, EqualLinear, ResBlock

__all__ = ["AppearanceEncoder", "MotionEncoder"]


class AppearanceEncoder(nn.Module):
    """Image -> identity code h and the feature pyramid used for warping.

    convs[0] is a 1x1 ConvLayer (3 -> C(size)); convs[1..n] halve the resolution down to 4x4;
    the last entry is a 4x4 valid convolution to a 1x1 code of `latent_dim` channels.
    """

    def __init__(self, config: MotionAEConfig):
        super().__init__()
        taps = config.blur_kernel
        size = config.size
        self.convs = nn.ModuleList([ConvLayer(3, config.channels(size), 1, blur_taps=taps)])
        res = size
        while res > 4:
            self.convs.append(ResBlock(config.channels(res), config.channels(res // 2), taps))
            res //= 2
        self.convs.append(EqualConv2d(config.channels(4), config.latent_dim, 4, padding=0, bias=False))

    def forward(self, image: Tensor) -> tuple[Tensor, list[Tensor]]:
        """image: (N, 3, size, size) in [-1, 1].

        Returns:
            h: (N, latent_dim) identity code.
            feats: feature maps at 8x8, 16x16, ..., size x size (coarse to fine), i.e. the outputs
                of convs[n-1], ..., convs[0], each (N, C(r), r, r).
        """
        outs = []
        x = image
        for conv in self.convs:
            x = conv(x)
            outs.append(x)
        h = outs[-1].flatten(1)  # (N, latent_dim)
        feats = outs[-3::-1]  # drop the 1x1 code and the 4x4 map, coarse -> fine
        return h, feats


class MotionEncoder(nn.Module):
    """`enc` of the auto-encoder: appearance network plus the motion-coefficient head `fc`."""

    def __init__(self, config: MotionAEConfig):
        super().__init__()
        self.net_app = AppearanceEncoder(config)
        d = config.latent_dim
        self.fc = nn.Sequential(*[EqualLinear(d, d) for _ in range(4)], EqualLinear(d, config.motion_dim))

    def forward(self, image: Tensor) -> tuple[Tensor, list[Tensor]]:
        """(N,3,H,W) -> identity code (N, d) and feature pyramid (see AppearanceEncoder)."""
        return self.net_app(image)

    def coefficients(self, identity: Tensor) -> Tensor:
        """Motion coefficients lambda = fc(h): (N, d) -> (N, M).

        These are the lambda_i of Eq. 9 (number to confirm), the weights of the basis directions v_i.
        """
        return self.fc(identity)
