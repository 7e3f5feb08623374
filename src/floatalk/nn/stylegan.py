"""StyleGAN2 building blocks in pure PyTorch (no compiled extensions).

These are the layers the LIA-style motion auto-encoder is made of: equalized-learning-rate
convolutions and linears (weights stored with unit variance, scaled at run time by 1/sqrt(fan_in)),
a biased leaky ReLU with gain sqrt(2), FIR anti-aliasing for up- and down-sampling, and the
style-modulated convolution of StyleGAN2 (Karras et al. 2020, Eq. 1-3).

Attribute names and parameter shapes match the released FLOAT checkpoint (parameter names are an
API). FIR kernels are non-persistent buffers: they are recomputed from the config, never loaded.

Shapes: N batch, C channels, H x W spatial size, S style (latent) size.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "Blur",
    "ConstantInput",
    "ConvLayer",
    "EqualConv2d",
    "EqualLinear",
    "FusedLeakyReLU",
    "ModulatedConv2d",
    "NoiseInjection",
    "ResBlock",
    "StyledConv",
    "Upsample",
    "fir_filter",
    "make_fir_kernel",
]

LEAKY_SLOPE = 0.2
LEAKY_GAIN = math.sqrt(2.0)


# --------------------------------------------------------------------------------------------------
# FIR filtering (the "native" upfirdn2d: upsample by zero insertion, pad, filter, downsample)
# --------------------------------------------------------------------------------------------------


def make_fir_kernel(taps: Sequence[int]) -> Tensor:
    """2-D separable FIR kernel from 1-D taps, normalised to sum 1. Shape: (K, K)."""
    k = torch.tensor(list(taps), dtype=torch.float32)
    k = k[None, :] * k[:, None]
    return k / k.sum()


def fir_filter(
    x: Tensor,
    kernel: Tensor,
    up: int = 1,
    down: int = 1,
    pad: tuple[int, int] = (0, 0),
    bias: Tensor | None = None,
) -> Tensor:
    """Upsample by zero insertion, pad, convolve with `kernel`, then keep every `down`-th pixel.

    Args:
        x: (N, C, H, W) input.
        kernel: (K, K) FIR kernel (applied as a true convolution, i.e. flipped).
        up: integer upsampling factor.
        down: integer downsampling factor.
        pad: (before, after) padding applied to both spatial axes after upsampling;
            negative values crop.
        bias: optional (C,) added to each channel in the same convolution (before `down`).

    Returns:
        (N, C, (H*up + pad0 + pad1 - K) // down + 1, same for W).
    """
    n, c, h, w = x.shape
    if up > 1:
        x = x.reshape(n, c, h, 1, w, 1)
        x = F.pad(x, (0, up - 1, 0, 0, 0, up - 1))
        x = x.reshape(n, c, h * up, w * up)
    p0, p1 = pad
    conv_pad = 0
    if p0 == p1 >= 0:
        conv_pad = p0  # the convolution pads itself: no padded copy, the same sums (tested)
    else:
        x = F.pad(x, (max(p0, 0), max(p1, 0), max(p0, 0), max(p1, 0)))
        if p0 < 0 or p1 < 0:
            x = x[:, :, max(-p0, 0) : x.shape[2] - max(-p1, 0), max(-p0, 0) : x.shape[3] - max(-p1, 0)]
    weight = torch.flip(kernel, (0, 1)).to(x.dtype)[None, None].expand(c, 1, *kernel.shape)
    x = F.conv2d(x, weight, bias, padding=conv_pad, groups=c)
    if down > 1:
        x = x[:, :, ::down, ::down]
    return x


class Blur(nn.Module):
    """FIR low-pass filter used around strided and transposed convolutions."""

    def __init__(self, taps: Sequence[int], pad: tuple[int, int], upsample_factor: int = 1):
        super().__init__()
        kernel = make_fir_kernel(taps)
        if upsample_factor > 1:
            kernel = kernel * upsample_factor**2  # keep the mean after zero insertion
        self.register_buffer("kernel", kernel, persistent=False)
        self.pad = pad

    def forward(self, x: Tensor, bias: Tensor | None = None) -> Tensor:
        """x (N, C, H, W), optional bias (C,) added in the filter's convolution."""
        return fir_filter(x, self.kernel, pad=self.pad, bias=bias)


class Upsample(nn.Module):
    """x2 FIR upsampling (zero insertion + low-pass). (N,C,H,W) -> (N,C,2H,2W)."""

    def __init__(self, taps: Sequence[int], factor: int = 2):
        super().__init__()
        self.factor = factor
        kernel = make_fir_kernel(taps) * factor**2
        self.register_buffer("kernel", kernel, persistent=False)
        p = kernel.shape[0] - factor
        self.pad = ((p + 1) // 2 + factor - 1, p // 2)

    def forward(self, x: Tensor) -> Tensor:
        return fir_filter(x, self.kernel, up=self.factor, pad=self.pad)


# --------------------------------------------------------------------------------------------------
# Equalized learning-rate layers
# --------------------------------------------------------------------------------------------------


class EqualConv2d(nn.Module):
    """Conv2d whose unit-variance weight is scaled by 1/sqrt(in*k*k) at run time."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        bias: bool = True,
    ):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.scale = 1.0 / math.sqrt(in_channels * kernel_size**2)
        self.stride = stride
        self.padding = padding

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.weight * self.scale, self.bias, stride=self.stride, padding=self.padding)


class EqualLinear(nn.Module):
    """Linear layer with equalized learning rate: y = x (W * lr_mul/sqrt(in))^T + b * lr_mul."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        bias_init: float = 0.0,
        lr_mul: float = 1.0,
    ):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_features,), float(bias_init))) if bias else None
        self.scale = lr_mul / math.sqrt(in_features)
        self.lr_mul = lr_mul

    def forward(self, x: Tensor) -> Tensor:
        bias = self.bias * self.lr_mul if self.bias is not None else None
        return F.linear(x, self.weight * self.scale, bias)


class FusedLeakyReLU(nn.Module):
    """leaky_relu(x + b, 0.2) * sqrt(2) with a per-channel bias of shape (1, C, 1, 1)."""

    def __init__(self, channels: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return F.leaky_relu(x + self.bias, LEAKY_SLOPE) * LEAKY_GAIN


class ConvLayer(nn.Sequential):
    """[Blur] -> EqualConv2d -> [FusedLeakyReLU], optionally downsampling by 2.

    Indices inside the Sequential follow the released checkpoint: with `downsample` the blur is
    item 0, the conv item 1 and the activation item 2; without it the conv is item 0.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        downsample: bool = False,
        blur_taps: Sequence[int] = (1, 3, 3, 1),
        bias: bool = True,
        activate: bool = True,
    ):
        layers: list[nn.Module] = []
        if downsample:
            p = (len(blur_taps) - 2) + (kernel_size - 1)
            layers.append(Blur(blur_taps, pad=((p + 1) // 2, p // 2)))
            stride, padding = 2, 0
        else:
            stride, padding = 1, kernel_size // 2
        layers.append(
            EqualConv2d(in_channels, out_channels, kernel_size, stride, padding, bias=bias and not activate)
        )
        if activate:
            layers.append(FusedLeakyReLU(out_channels))
        super().__init__(*layers)


class ResBlock(nn.Module):
    """Residual down-sampling block: (conv2(conv1(x)) + skip(x)) / sqrt(2). (N,Cin,H,W)->(N,Cout,H/2,W/2)."""

    def __init__(self, in_channels: int, out_channels: int, blur_taps: Sequence[int] = (1, 3, 3, 1)):
        super().__init__()
        self.conv1 = ConvLayer(in_channels, in_channels, 3, blur_taps=blur_taps)
        self.conv2 = ConvLayer(in_channels, out_channels, 3, downsample=True, blur_taps=blur_taps)
        self.skip = ConvLayer(
            in_channels, out_channels, 1, downsample=True, blur_taps=blur_taps, bias=False, activate=False
        )

    def forward(self, x: Tensor) -> Tensor:
        return (self.conv2(self.conv1(x)) + self.skip(x)) / math.sqrt(2.0)


# --------------------------------------------------------------------------------------------------
# Style-modulated layers
# --------------------------------------------------------------------------------------------------


class ModulatedConv2d(nn.Module):
    """StyleGAN2 modulated convolution (Karras et al. 2020, Eq. 1-3).

    Per sample, the weight is w'_{oik} = s_i * w_{oik} / sqrt(in*k*k) with s = A(style) (bias init 1),
    optionally demodulated by 1/sqrt(sum_{ik} w'^2 + 1e-8), and the input is convolved with it.

    The weight is modulated (rather than scaling the input by s and the output by the demodulation,
    which is the same function) because the flow-warping decoder amplifies float rounding a lot:
    computing it the released way reproduces the released outputs to the last bit at batch size 1.
    A batch runs as one grouped convolution.

    With `fast = True` (floatalk.acceleration's fast decoding) the same function is computed with
    fewer passes over memory, equal up to float rounding: the demodulation from the weight's
    per-(out, in) norms (a small matmul), modulation and demodulation applied to the weight in one
    product, and a batch as one ordinary convolution of the input scaled by s with its output
    scaled by the demodulation, which keeps channels-last feature maps in their layout.
    """

    fast: bool = False

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        style_dim: int,
        demodulate: bool = True,
        upsample: bool = False,
        blur_taps: Sequence[int] = (1, 3, 3, 1),
    ):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.demodulate = demodulate
        self.upsample = upsample
        self.scale = 1.0 / math.sqrt(in_channels * kernel_size**2)
        self.padding = kernel_size // 2
        self.weight = nn.Parameter(torch.randn(1, out_channels, in_channels, kernel_size, kernel_size))
        self.modulation = EqualLinear(style_dim, in_channels, bias_init=1.0)
        if upsample:
            factor = 2
            p = (len(blur_taps) - factor) - (kernel_size - 1)
            self.blur = Blur(blur_taps, pad=((p + 1) // 2 + factor - 1, p // 2 + 1), upsample_factor=factor)

    def modulated_weight(self, style: Tensor) -> Tensor:
        """Per-sample weights (N, Cout, Cin, k, k) for styles (N, S)."""
        s = self.modulation(style)[:, None, :, None, None]  # (N, 1, Cin, 1, 1)
        weight = self.scale * self.weight * s
        if self.demodulate:
            weight = weight * self._demodulation(weight)[:, :, None, None, None]
        return weight

    def _demodulation_from_norms(self, s: Tensor) -> Tensor:
        """The demodulation (N, Cout) for scaled styles s = scale * A(style) (N, Cin), without the
        modulated weights: sum_{ik} (s_i w_oik)^2 = sum_i s_i^2 ||w_oi||^2, a small matmul."""
        norms = torch.linalg.vector_norm(self.weight[0], dim=(2, 3)).square()  # (Cout, Cin)
        return torch.rsqrt(s.square() @ norms.T + 1e-8)

    @staticmethod
    def _demodulation(modulated: Tensor) -> Tensor:
        """1/sqrt(sum_{ik} w'^2 + 1e-8) for modulated weights (N, Cout, Cin, k, k) -> (N, Cout)."""
        return torch.rsqrt(modulated.pow(2).sum([2, 3, 4]) + 1e-8)

    def forward(self, x: Tensor, style: Tensor, gain: float = 1.0, bias: Tensor | None = None) -> Tensor:
        """x: (N, Cin, H, W), style: (N, S) -> (N, Cout, H', W') (H' = 2H when upsampling).

        `gain` and `bias` (Cout,) give gain * (conv + bias) in the convolution itself (used by
        the fast decoding path to fold the activation's bias and gain); when upsampling, the
        bias goes into the blur's convolution that follows the transposed one.
        """
        n, c, h, w = x.shape
        bias = None if bias is None else (bias * gain).to(x.dtype)
        if self.fast:
            s = self.modulation(style) * self.scale  # (N, Cin)
            demod = self._demodulation_from_norms(s) if self.demodulate else None  # (N, Cout)
            if n > 1:
                # the whole batch as one ordinary convolution: the input scaled by s, the output by
                # the demodulation (StyleGAN2's non-fused form)
                out = self._convolve(x * s[:, :, None, None].to(x.dtype), self.weight * gain, groups=1)
                if demod is not None:
                    out = out * demod[:, :, None, None].to(x.dtype)
                return out if bias is None else out + bias[:, None, None]
            coef = s[:, None, :] * gain  # (1, 1, Cin): modulation and demodulation in one pass
            if demod is not None:
                coef = coef * demod[:, :, None]
            return self._convolve(x, self.weight * coef[..., None, None], groups=1, bias=bias)
        weight = self.modulated_weight(style)  # (N, Cout, Cin, k, k)
        if gain != 1.0:
            weight = weight * gain
        if n > 1:
            x = x.reshape(1, n * c, h, w)  # the batch as one grouped convolution
        return self._convolve(x, weight, groups=n, bias=bias)

    def _convolve(self, x: Tensor, weight: Tensor, groups: int, bias: Tensor | None = None) -> Tensor:
        """x (B, groups*Cin, H, W) with weights (groups, Cout, Cin, k, k) and a bias (Cout,) or
        None -> (B*groups, Cout, H', W')."""
        cout, cin, k = self.out_channels, self.in_channels, self.kernel_size
        if self.upsample:
            weight = weight.transpose(1, 2).reshape(groups * cin, cout, k, k)
            out = F.conv_transpose2d(x, weight, stride=2, groups=groups)
            return self.blur(_per_sample(out, cout), bias)
        weight = weight.reshape(groups * cout, cin, k, k)
        out = F.conv2d(
            x, weight, None if bias is None else bias.repeat(groups), padding=self.padding, groups=groups
        )
        return _per_sample(out, cout)


def _per_sample(out: Tensor, channels: int) -> Tensor:
    """(1, N*C, H, W) grouped-convolution output -> (N, C, H, W); a batch of one is left as it is.

    (Even a same-shape reshape of a channels-last map of batch 1 gives it a batch stride that
    later ops read as "not channels-last", and they then copy it.)
    """
    return out if out.shape[1] == channels else out.reshape(-1, channels, *out.shape[2:])


class NoiseInjection(nn.Module):
    """Per-pixel noise with a learned gain; FLOAT never feeds noise, so without it this is identity."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, x: Tensor, noise: Tensor | None = None) -> Tensor:
        return x if noise is None else x + self.weight * noise


class StyledConv(nn.Module):
    """ModulatedConv2d -> NoiseInjection -> FusedLeakyReLU."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        style_dim: int,
        upsample: bool = False,
        blur_taps: Sequence[int] = (1, 3, 3, 1),
        demodulate: bool = True,
    ):
        super().__init__()
        self.conv = ModulatedConv2d(
            in_channels, out_channels, kernel_size, style_dim, demodulate, upsample, blur_taps
        )
        self.noise = NoiseInjection()
        self.activate = FusedLeakyReLU(out_channels)

    fast: bool = False  # fold the activation's bias and gain into the convolution (same function)

    def forward(self, x: Tensor, style: Tensor, noise: Tensor | None = None) -> Tensor:
        if self.fast and noise is None:
            # leaky_relu(c + b) * g = leaky_relu(g * (c + b)) for g > 0: one pass after the conv
            # (after the blur when upsampling: it is linear, so the gain and bias go through it)
            out = self.conv(x, style, gain=LEAKY_GAIN, bias=self.activate.bias.reshape(-1))
            return F.leaky_relu(out, LEAKY_SLOPE, inplace=not torch.is_grad_enabled())
        return self.activate(self.noise(self.conv(x, style), noise))


class ConstantInput(nn.Module):
    """Learned constant (1, C, 4, 4), repeated over the batch."""

    def __init__(self, channels: int, size: int = 4):
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channels, size, size))

    def forward(self, batch_size: int) -> Tensor:
        return self.input.expand(batch_size, -1, -1, -1)
