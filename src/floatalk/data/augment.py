"""Appearance augmentation of stage-1 frame pairs: one random look shared by source and driving.

Stage 1 must keep the identity of faces it never saw. A dataset with few people lets the motion
auto-encoder memorise their faces instead of learning to warp whatever face it is given; the same
random change of appearance applied to *both* frames of a pair (so the pair still differs only by
motion) turns every sample into a slightly different person and photograph:

* a horizontal **flip** (the eye boxes swap sides and mirror);
* **white balance** (a gain per channel), **brightness**, **contrast**, **saturation**, **gamma** and
  a small **hue** rotation (in YIQ space), and now and then **greyscale**, as photographs differ;
* a small **zoom and rotation** about the image centre (faces are not always framed alike), with
  the border pixels repeated, applied identically to both frames and to the component boxes.

Ranges are kept where faces still look like faces (no green skin). Everything is a pure function of
the generator it is given, so a sample stays a function of (seed, index) as :mod:`floatalk.data.pairs`
requires. Ours: the paper does not describe its augmentation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["PairAugmentation", "augment_pair"]

# YIQ <-> RGB (NTSC): the hue rotation turns the chroma plane (I, Q) and keeps the luma Y.
_RGB_TO_YIQ = torch.tensor(
    [[0.299, 0.587, 0.114], [0.5959, -0.2746, -0.3213], [0.2115, -0.5227, 0.3112]], dtype=torch.float64
)
_YIQ_TO_RGB = torch.linalg.inv(_RGB_TO_YIQ)
_LUMA = torch.tensor([0.299, 0.587, 0.114])


@dataclass(frozen=True)
class PairAugmentation:
    """Ranges of the shared appearance change (all off by default: ``enabled=False``)."""

    enabled: bool = False  # apply it at all
    flip: float = 0.5  # probability of a horizontal flip
    channel_gain: float = 0.08  # each channel times U(1 - g, 1 + g) (white balance)
    brightness: float = 0.2  # times U(1 - b, 1 + b)
    contrast: float = 0.25  # about the mean, times U(1 - c, 1 + c)
    saturation: float = 0.35  # chroma times U(1 - s, 1 + s)
    hue_deg: float = 12.0  # chroma plane rotated by U(-h, h) degrees
    gamma: float = 0.2  # intensity ** exp(U(-g, g))
    grayscale: float = 0.05  # probability of a greyscale photograph
    zoom: float = 0.08  # scale U(1 - z, 1 + z) about the centre
    rotate_deg: float = 6.0  # in-plane rotation U(-r, r) degrees

    def __post_init__(self) -> None:
        for name in ("flip", "grayscale"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"augment.{name} is a probability in [0, 1], got {getattr(self, name)}")
        for name in ("channel_gain", "brightness", "contrast", "saturation", "gamma", "zoom"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"augment.{name} must be in [0, 1), got {getattr(self, name)}")
        for name in ("hue_deg", "rotate_deg"):
            if not 0.0 <= getattr(self, name) <= 45.0:
                raise ValueError(f"augment.{name} must be in [0, 45] degrees, got {getattr(self, name)}")


def _photometric(x: Tensor, p: dict[str, float | np.ndarray]) -> Tensor:
    """(N, 3, H, W) in [0, 1] -> the same photograph with another white balance, exposure and tone."""
    x = x * torch.as_tensor(p["gain"], dtype=x.dtype).view(1, 3, 1, 1) * p["brightness"]
    mean = (x * _LUMA.to(x).view(1, 3, 1, 1)).sum(1, keepdim=True).mean((2, 3), keepdim=True)
    x = (x - mean) * p["contrast"] + mean
    angle = math.radians(float(p["hue"]))
    c, s = math.cos(angle), math.sin(angle)
    chroma = torch.tensor([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]], dtype=torch.float64)
    chroma[1:, 1:] *= 0.0 if p["gray"] else float(p["saturation"])
    mix = (_YIQ_TO_RGB @ chroma @ _RGB_TO_YIQ).to(x)
    x = torch.einsum("ij,njhw->nihw", mix, x)
    return x.clamp(0.0, 1.0).pow(float(p["gamma"]))


def _affine(x: Tensor, zoom: float, angle_deg: float) -> Tensor:
    """Zoom and rotate (N, C, H, W) about the centre, repeating border pixels."""
    a = math.radians(angle_deg)
    c, s = math.cos(a) / zoom, math.sin(a) / zoom
    theta = torch.tensor([[c, -s, 0.0], [s, c, 0.0]], dtype=x.dtype).expand(x.shape[0], 2, 3)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def _affine_boxes(boxes: Tensor, size: int, zoom: float, angle_deg: float) -> Tensor:
    """Boxes (K, 4) (x0, y0, x1, y1 pixels) after :func:`_affine`: the bounds of the moved corners."""
    a = math.radians(angle_deg)
    half = size / 2.0
    x0, y0, x1, y1 = boxes.unbind(-1)
    corners = torch.stack(
        [torch.stack(p, -1) for p in ((x0, y0), (x1, y0), (x0, y1), (x1, y1))], -2
    )  # (K, 4, 2)
    centred = corners - half
    # the sampling grid maps output u to input R(a) u / zoom, so content moves by zoom * R(-a)
    c, s = math.cos(a), math.sin(a)
    rot = torch.tensor([[c, s], [-s, c]], dtype=boxes.dtype)
    moved = zoom * centred @ rot.T + half
    lo, hi = moved.amin(-2), moved.amax(-2)
    return torch.cat([lo, hi], -1).clamp(0.0, float(size))


def augment_pair(
    source: Tensor, driving: Tensor, boxes: Tensor, cfg: PairAugmentation, rng: np.random.Generator
) -> tuple[Tensor, Tensor, Tensor]:
    """One random appearance change applied to both frames of a stage-1 pair.

    Args:
        source, driving: (3, S, S) float in [-1, 1].
        boxes: (3, 4) pixel boxes of the driving frame: left eye, right eye, mouth (image sides).
        cfg: the ranges; ``cfg.enabled=False`` returns the inputs unchanged.
        rng: where every random choice comes from.

    Returns:
        The changed (source, driving, boxes), same shapes; after a flip the eye boxes are swapped so
        that the first is still the eye on the image's left.
    """
    if not cfg.enabled:
        return source, driving, boxes
    u = lambda r: float(rng.uniform(1.0 - r, 1.0 + r))  # noqa: E731
    params: dict[str, float | np.ndarray] = {
        "gain": rng.uniform(1.0 - cfg.channel_gain, 1.0 + cfg.channel_gain, size=3),
        "brightness": u(cfg.brightness),
        "contrast": u(cfg.contrast),
        "saturation": u(cfg.saturation),
        "hue": float(rng.uniform(-cfg.hue_deg, cfg.hue_deg)),
        "gamma": math.exp(float(rng.uniform(-cfg.gamma, cfg.gamma))),
        "gray": bool(rng.random() < cfg.grayscale),
    }
    flip = bool(rng.random() < cfg.flip)
    zoom = u(cfg.zoom)
    angle = float(rng.uniform(-cfg.rotate_deg, cfg.rotate_deg))
    size = source.shape[-1]
    pair = torch.stack([source, driving]).add(1.0).mul(0.5)
    pair = _photometric(pair, params)
    boxes = boxes.clone()
    if flip:
        pair = pair.flip(-1)
        x0 = size - boxes[:, 2]
        x1 = size - boxes[:, 0]
        boxes[:, 0], boxes[:, 2] = x0, x1
        boxes = boxes[[1, 0, 2]]
    if cfg.zoom > 0 or cfg.rotate_deg > 0:
        pair = _affine(pair, zoom, angle)
        boxes = _affine_boxes(boxes, size, zoom, angle)
    pair = pair.mul(2.0).sub(1.0)
    return pair[0].contiguous(), pair[1].contiguous(), boxes
