"""Face morphs: a new plausible face between two portraits, for a synthetic world with more identities.

Stage 1 generalises across identities only if it sees many; a handful of real portraits can be
multiplied by morphing pairs of them, the classic way of making new faces from landmarked photos:

1. the target geometry is the landmark interpolation ``(1 - alpha) * p_a + alpha * p_b``;
2. both photographs are warped onto it with a thin-plate spline through the landmarks (plus fixed
   anchors on the image border, so the frame edges stay put);
3. inside the face (the feathered outline through forehead, cheeks, jaw and chin) the two warped
   faces are cross-dissolved with weight ``alpha``; outside it the *host* photograph (``a``, warped)
   is kept, so hair, ears and background come from one photograph and never double-expose.

The result is a face whose shape and appearance lie between the two, on the host's head. Pure
numpy/torch; ours (the paper trains on real video and needs no morphs).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

__all__ = ["face_outline", "morph_portraits", "tps_backward_map"]

#: Facial points (names of the synthetic world's landmark file) that outline the face, in order.
_OUTLINE = ("forehead", "face_right", "jaw_right", "chin", "jaw_left", "face_left")


def _tps_kernel(r2: np.ndarray) -> np.ndarray:
    """U(r) = r^2 log r^2 (0 at r = 0)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(r2 > 0, r2 * np.log(np.maximum(r2, 1e-300)), 0.0)


def tps_backward_map(dst: np.ndarray, src: np.ndarray, size: int, regular: float = 1e-6) -> np.ndarray:
    """Thin-plate spline f with f(dst_k) = src_k, evaluated at every pixel centre of a size x size image.

    Args:
        dst: (K, 2) control points in the output image, pixels (pixel i spans [i, i + 1)).
        src: (K, 2) where each control point samples the input image.
        size: output side.
        regular: a small ridge on the kernel matrix (keeps near-duplicate points solvable).

    Returns:
        (size, size, 2) float64: x, y input positions per output pixel.
    """
    dst = np.asarray(dst, np.float64) / size  # work in [0, 1] units: a well-conditioned system
    src = np.asarray(src, np.float64) / size
    k = len(dst)
    d2 = ((dst[:, None, :] - dst[None, :, :]) ** 2).sum(-1)
    system = np.zeros((k + 3, k + 3))
    system[:k, :k] = _tps_kernel(d2) + regular * np.eye(k)
    system[:k, k] = 1.0
    system[:k, k + 1 :] = dst
    system[k, :k] = 1.0
    system[k + 1 :, :k] = dst.T
    rhs = np.zeros((k + 3, 2))
    rhs[:k] = src
    coef = np.linalg.solve(system, rhs)
    c = (np.arange(size, dtype=np.float64) + 0.5) / size
    X, Y = np.meshgrid(c, c)
    P = np.stack([X.ravel(), Y.ravel()], -1)
    r2 = ((P[:, None, :] - dst[None, :, :]) ** 2).sum(-1)
    out = _tps_kernel(r2) @ coef[:k] + coef[k] + P @ coef[k + 1 :]
    return (out * size).reshape(size, size, 2)


def _border_anchors(size: int, per_side: int = 4) -> np.ndarray:
    t = np.linspace(0.0, size, per_side + 1)[:-1]
    s = float(size)
    return np.concatenate(
        [
            np.stack([t, np.zeros_like(t)], 1),
            np.stack([np.full_like(t, s), t], 1),
            np.stack([s - t, np.full_like(t, s)], 1),
            np.stack([np.zeros_like(t), s - t], 1),
        ]
    )


def _warp(image: np.ndarray, where: np.ndarray) -> np.ndarray:
    """Bilinear sample of (S, S, 3) uint8 at (S, S, 2) pixel positions, edge-replicated: float32."""
    import torch
    import torch.nn.functional as F

    s = image.shape[0]
    grid = torch.from_numpy((where * (2.0 / s) - 1.0).astype(np.float32))[None]
    x = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).permute(2, 0, 1)[None]
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out[0].permute(1, 2, 0).numpy()


def face_outline(points: Mapping[str, tuple[float, float]], size: int, feather: float = 0.04) -> np.ndarray:
    """A soft mask (size, size) in [0, 1] of the face region, grown a little and feathered.

    The polygon runs through the outline points (forehead, cheeks, jaw, chin), pushed 4 % outwards
    from the face centre, blurred by ``feather`` x size.
    """
    from PIL import Image, ImageDraw, ImageFilter

    poly = np.array([points[n] for n in _OUTLINE], np.float64) * size
    centre = poly.mean(0)
    poly = centre + (poly - centre) * 1.04
    mask = Image.new("L", (size, size), 0)
    ImageDraw.Draw(mask).polygon([tuple(p) for p in poly], fill=255)
    mask = mask.filter(ImageFilter.GaussianBlur(radius=max(1.0, feather * size)))
    return np.asarray(mask, np.float32) / 255.0


def morph_portraits(
    image_a: np.ndarray,
    points_a: Mapping[str, tuple[float, float]],
    image_b: np.ndarray,
    points_b: Mapping[str, tuple[float, float]],
    alpha: float,
) -> tuple[np.ndarray, dict[str, tuple[float, float]]]:
    """A morph of portrait b's face into portrait a (the host).

    Args:
        image_a, image_b: (S, S, 3) uint8 face crops of the same side.
        points_a, points_b: the same named facial points of each, [x, y] as fractions of the side.
        alpha: 0 gives a, 1 gives b's face (with b's shape) on a's head.

    Returns:
        The morph (S, S, 3) uint8 and its facial points (fractions of the side).
    """
    if image_a.shape != image_b.shape:
        raise ValueError(f"portraits differ in shape: {image_a.shape} vs {image_b.shape}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    names = sorted(set(points_a) & set(points_b))
    size = image_a.shape[0]
    pa = np.array([points_a[n] for n in names], np.float64) * size
    pb = np.array([points_b[n] for n in names], np.float64) * size
    target = (1.0 - alpha) * pa + alpha * pb
    anchors = _border_anchors(size)
    dst = np.concatenate([target, anchors])
    warped_a = _warp(image_a, tps_backward_map(dst, np.concatenate([pa, anchors]), size))
    warped_b = _warp(image_b, tps_backward_map(dst, np.concatenate([pb, anchors]), size))
    points = {n: (float(target[i, 0] / size), float(target[i, 1] / size)) for i, n in enumerate(names)}
    weight = alpha * face_outline(points, size)[..., None]
    out = warped_a * (1.0 - weight) + warped_b * weight
    return np.clip(np.rint(out), 0, 255).astype(np.uint8), points
