"""Perceptual losses for stage 1: multi-scale VGG-19 loss and the facial-component loss.

* `multiscale_perceptual_loss`: images are resampled into a pyramid (scales 1, 1/2, 1/4, 1/8 by
  default, as in LIA/FOMM), each level goes through the frozen VGG-19, and the loss is
  ``sum_scales sum_layers w_layer * mean|phi_l(fake) - phi_l(real)|``. The real branch is computed
  without gradient.
* `roi_crop`: per-sample boxes (x0, y0, x1, y1) in pixels are resampled to a fixed size with
  ``affine_grid`` + ``grid_sample`` (bilinear, pixel-edge convention), a torchvision-free
  replacement for ``roi_align``. An integer box cropped to its own size equals the plain slice.
* `component_perceptual_loss`: the single-scale perceptual loss on such crops (eyes, mouth).
* `PerceptualLoss`: a module owning the VGG that computes both. Built with ``vgg=None`` (the user
  gave no VGG weights) it is *disabled*: it warns once at construction and returns 0, rather than
  silently using random VGG weights.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .vgg import VGG19Features

__all__ = [
    "DEFAULT_CROP",
    "DEFAULT_SCALES",
    "PerceptualLoss",
    "component_perceptual_loss",
    "downsample",
    "image_pyramid",
    "multiscale_perceptual_loss",
    "roi_crop",
]

DEFAULT_SCALES: tuple[float, ...] = (1.0, 0.5, 0.25, 0.125)  # LIA's (and FOMM's) pyramid
# Component crops are resampled to DEFAULT_CROP^2 (our choice). GFPGAN uses 80 for eyes and 120 for the
# mouth on 512x512 faces: pass crop_size={"left_eye": 80, "right_eye": 80, "mouth": 120} for that.
DEFAULT_CROP = 64

CropSize = int | tuple[int, int]  # a square side, or (height, width)


# --------------------------------------------------------------------------------------------------
# Resampling
# --------------------------------------------------------------------------------------------------


def _gaussian_taps(sigma: float, dtype: torch.dtype, device: torch.device) -> Tensor:
    radius = max(1, round(4.0 * sigma))
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    taps = torch.exp(-0.5 * (x / sigma) ** 2)
    return (taps / taps.sum()).to(dtype).to(device)  # cast on the CPU: MPS has no float64


def downsample(image: Tensor, scale: float) -> Tensor:
    """Anti-aliased resize by `scale` in (0, 1]: (N, C, H, W) -> (N, C, round(H*s), round(W*s)).

    A separable Gaussian low-pass with sigma = (1/scale - 1) / 2 (the pyramid filter of FOMM/LIA)
    with replicate padding, then centred bilinear resampling. scale == 1 returns the input.
    """
    if not 0.0 < scale <= 1.0:
        raise ValueError(f"downsample scale must be in (0, 1], got {scale}")
    if scale == 1.0:
        return image
    n, c, h, w = image.shape
    out_h, out_w = max(1, round(h * scale)), max(1, round(w * scale))
    sigma = (1.0 / scale - 1.0) / 2.0
    taps = _gaussian_taps(sigma, image.dtype, image.device)
    r = (taps.numel() - 1) // 2
    x = image.reshape(n * c, 1, h, w)
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="replicate"), taps.view(1, 1, 1, -1))
    x = F.conv2d(F.pad(x, (0, 0, r, r), mode="replicate"), taps.view(1, 1, -1, 1))
    x = F.interpolate(x, size=(out_h, out_w), mode="bilinear", align_corners=False)
    return x.reshape(n, c, out_h, out_w)


def image_pyramid(image: Tensor, scales: Sequence[float] = DEFAULT_SCALES) -> list[Tensor]:
    """[downsample(image, s) for s in scales]."""
    return [downsample(image, float(s)) for s in scales]


def roi_crop(image: Tensor, boxes: Tensor, size: int | tuple[int, int]) -> Tensor:
    """Resample one box per sample to a fixed size (bilinear; zeros outside the image).

    Args:
        image: (N, C, H, W).
        boxes: (N, 4) float or int boxes (x0, y0, x1, y1) in pixel-edge coordinates: pixel (i, j)
            covers [j, j+1) x [i, i+1), so the integer box (x0, y0, x1, y1) holds exactly
            ``image[:, :, y0:y1, x0:x1]``.
        size: output size, an int or (height, width).

    Returns:
        (N, C, height, width). Differentiable w.r.t. `image` (and the boxes). When a box is
        integer-aligned and `size` equals its size, the result equals the slice (up to float
        rounding of the sampling grid).
    """
    out_h, out_w = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    n, c, h, w = image.shape
    if boxes.shape != (n, 4):
        raise ValueError(f"boxes must have shape ({n}, 4) (x0, y0, x1, y1), got {tuple(boxes.shape)}")
    b = boxes.to(device=image.device, dtype=image.dtype)
    x0, y0, x1, y1 = b.unbind(1)
    # Output normalised coordinate u in [-1, 1] (align_corners=False) maps to the box edges:
    # x_norm = u * (x1 - x0) / W + (x0 + x1) / W - 1.
    zeros = torch.zeros_like(x0)
    theta = torch.stack(
        [
            torch.stack([(x1 - x0) / w, zeros, (x0 + x1) / w - 1.0], dim=1),
            torch.stack([zeros, (y1 - y0) / h, (y0 + y1) / h - 1.0], dim=1),
        ],
        dim=1,
    )  # (N, 2, 3)
    grid = F.affine_grid(theta, [n, c, out_h, out_w], align_corners=False)
    return F.grid_sample(image, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


# --------------------------------------------------------------------------------------------------
# Losses (pure functions of a VGG feature extractor)
# --------------------------------------------------------------------------------------------------


def _resolve_weights(vgg: VGG19Features, layer_weights: Sequence[float] | None) -> tuple[float, ...]:
    if layer_weights is None:
        return (1.0,) * len(vgg.layers)
    if len(layer_weights) != len(vgg.layers):
        raise ValueError(f"{len(layer_weights)} layer weights given for {len(vgg.layers)} VGG layers")
    return tuple(float(x) for x in layer_weights)


def _feature_l1(vgg: VGG19Features, fake: Tensor, real: Tensor, weights: Sequence[float]) -> Tensor:
    fake_feats = vgg(fake)
    with torch.no_grad():
        real_feats = vgg(real.detach())
    total = fake.new_zeros(())
    for weight, name in zip(weights, vgg.layers):
        if weight:
            total = total + weight * (fake_feats[name] - real_feats[name]).abs().mean()
    return total


def multiscale_perceptual_loss(
    vgg: VGG19Features,
    fake: Tensor,
    real: Tensor,
    scales: Sequence[float] = DEFAULT_SCALES,
    layer_weights: Sequence[float] | None = None,
) -> Tensor:
    """sum over scales and layers of w_l * mean|VGG_l(fake_s) - VGG_l(real_s)|; a scalar.

    Stands in for FLOAT's full-image perceptual term L_lp (LPIPS-VGG; appendix, Eq. 17-21 range,
    number to confirm): same role, not the same numbers.

    Args:
        vgg: frozen feature extractor (its `layers` define l).
        fake: (N, 3, H, W) generated images in [-1, 1]; gradients flow to it.
        real: (N, 3, H, W) targets in [-1, 1]; treated as constants.
        scales: pyramid scales (1 = full resolution).
        layer_weights: one weight per VGG layer (default 1 each).
    """
    if fake.shape != real.shape:
        raise ValueError(f"fake {tuple(fake.shape)} and real {tuple(real.shape)} images differ in shape")
    weights = _resolve_weights(vgg, layer_weights)
    total = fake.new_zeros(())
    for scale in scales:
        total = total + _feature_l1(
            vgg, downsample(fake, float(scale)), downsample(real, float(scale)), weights
        )
    return total


def _boxes_and_sizes(
    boxes: Tensor | Sequence[Tensor] | Mapping[str, Tensor],
    crop_size: CropSize | Sequence[CropSize] | Mapping[str, CropSize],
) -> list[tuple[Tensor, CropSize]]:
    """Pair each component's (N, 4) boxes with its crop size."""
    if isinstance(boxes, Mapping):
        names, box_list = list(boxes.keys()), list(boxes.values())
    elif isinstance(boxes, Tensor):
        names, box_list = None, [boxes] if boxes.ndim == 2 else list(boxes.unbind(0))
    else:
        names, box_list = None, list(boxes)
    if isinstance(crop_size, Mapping):
        if names is None:
            raise ValueError("crop sizes given by name need boxes given by name (a dict)")
        absent = [k for k in names if k not in crop_size]
        if absent:
            raise ValueError(f"no crop size for component(s) {', '.join(map(str, absent))}")
        sizes = [crop_size[k] for k in names]
    elif isinstance(crop_size, int) or (
        isinstance(crop_size, tuple) and len(crop_size) == 2 and all(isinstance(v, int) for v in crop_size)
    ):
        sizes = [crop_size] * len(box_list)
    else:
        sizes = list(crop_size)
        if len(sizes) != len(box_list):
            raise ValueError(f"{len(sizes)} crop sizes given for {len(box_list)} components")
    return list(zip(box_list, sizes))


def component_perceptual_loss(
    vgg: VGG19Features,
    fake: Tensor,
    real: Tensor,
    boxes: Tensor | Sequence[Tensor] | Mapping[str, Tensor],
    crop_size: CropSize | Sequence[CropSize] | Mapping[str, CropSize] = DEFAULT_CROP,
    layer_weights: Sequence[float] | None = None,
) -> Tensor:
    """Perceptual loss on facial components, summed over components; a scalar.

    FLOAT's facial-component perceptual term L_comp-lp (Eq. 17-21 range, number to confirm). The paper
    masks eye / mouth regions of a VGG-19 feature pyramid; here the regions are boxes cropped first.

    Args:
        vgg: frozen feature extractor.
        fake, real: (N, 3, H, W) images in [-1, 1].
        boxes: per component a (N, 4) box tensor (x0, y0, x1, y1) in pixels: a dict
            {"left_eye": ..., "right_eye": ..., "mouth": ...}, a list, or one (K, N, 4) tensor.
        crop_size: the size every crop is resampled to: an int, a (height, width) pair, one size
            per component (a list), or a dict of sizes by component name.
        layer_weights: one weight per VGG layer (default 1 each).
    """
    weights = _resolve_weights(vgg, layer_weights)
    total = fake.new_zeros(())
    for box, size in _boxes_and_sizes(boxes, crop_size):
        total = total + _feature_l1(vgg, roi_crop(fake, box, size), roi_crop(real, box, size), weights)
    return total


# --------------------------------------------------------------------------------------------------
# Module
# --------------------------------------------------------------------------------------------------


class PerceptualLoss(nn.Module):
    """Multi-scale and facial-component VGG-19 perceptual losses around one frozen VGG.

    Args:
        vgg: a `VGG19Features` with ImageNet weights (see `load_vgg19`), or None to disable the
            loss: then a single warning is emitted here and both losses return 0.
        scales: pyramid scales of the full-image loss.
        layer_weights: one weight per VGG layer (default 1 each). The overall weight is applied by
            the trainer (`Stage1LossWeights.perceptual`).
        crop_size: default size the component boxes are resampled to (see
            `component_perceptual_loss`).

    The VGG is the submodule ``vgg`` (frozen; trainers should keep it out of their checkpoints).
    """

    def __init__(
        self,
        vgg: VGG19Features | None,
        scales: Sequence[float] = DEFAULT_SCALES,
        layer_weights: Sequence[float] | None = None,
        crop_size: CropSize | Sequence[CropSize] | Mapping[str, CropSize] = DEFAULT_CROP,
    ):
        super().__init__()
        self.vgg = vgg
        self.scales = tuple(float(s) for s in scales)
        self.layer_weights = None if layer_weights is None else tuple(float(x) for x in layer_weights)
        self.crop_size = crop_size
        if vgg is None:
            warnings.warn(
                "no VGG-19 weights given: the perceptual losses are disabled (they return 0); "
                "pass vgg19-dcbb9e9d.pth to enable them",
                UserWarning,
                stacklevel=2,
            )
        else:
            _resolve_weights(vgg, self.layer_weights)  # validate now
            for s in self.scales:
                if not 0.0 < s <= 1.0:
                    raise ValueError(f"perceptual pyramid scales must be in (0, 1], got {s}")

    @property
    def enabled(self) -> bool:
        return self.vgg is not None

    def min_image_size(self) -> int:
        """Smallest image side that every pyramid level can take (0 when disabled)."""
        if self.vgg is None:
            return 0
        return math.ceil(self.vgg.min_input_size / min(self.scales))

    def forward(self, fake: Tensor, real: Tensor) -> Tensor:
        """Multi-scale loss: (N, 3, H, W) x2 in [-1, 1] -> scalar (0 when disabled)."""
        if self.vgg is None:
            return fake.new_zeros(())
        return multiscale_perceptual_loss(self.vgg, fake, real, self.scales, self.layer_weights)

    def components(
        self,
        fake: Tensor,
        real: Tensor,
        boxes: Tensor | Sequence[Tensor] | Mapping[str, Tensor],
        crop_size: CropSize | Sequence[CropSize] | Mapping[str, CropSize] | None = None,
    ) -> Tensor:
        """Facial-component loss on boxes (see `component_perceptual_loss`); 0 when disabled."""
        if self.vgg is None:
            return fake.new_zeros(())
        size = self.crop_size if crop_size is None else crop_size
        return component_perceptual_loss(self.vgg, fake, real, boxes, size, self.layer_weights)
