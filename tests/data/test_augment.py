"""Stage-1 pair augmentation: one look shared by both frames, boxes that follow, off by default."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from floatalk.data.augment import PairAugmentation, augment_pair


def _pair(size: int = 32) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    src = torch.rand(3, size, size, generator=g) * 2 - 1
    drv = torch.rand(3, size, size, generator=g) * 2 - 1
    boxes = torch.tensor([[4.0, 6.0, 12.0, 12.0], [18.0, 6.0, 26.0, 12.0], [9.0, 18.0, 23.0, 28.0]])
    return src, drv, boxes


def test_disabled_is_the_identity() -> None:
    src, drv, boxes = _pair()
    out = augment_pair(src, drv, boxes, PairAugmentation(), np.random.default_rng(0))
    assert out[0] is src and out[1] is drv and out[2] is boxes


def test_same_change_for_both_frames_and_deterministic() -> None:
    src, _, boxes = _pair()
    cfg = PairAugmentation(enabled=True)
    a = augment_pair(src, src.clone(), boxes, cfg, np.random.default_rng(3))
    b = augment_pair(src, src.clone(), boxes, cfg, np.random.default_rng(3))
    assert torch.equal(a[0], a[1])  # the same frame twice stays the same frame twice
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    c = augment_pair(src, src.clone(), boxes, cfg, np.random.default_rng(4))
    assert not torch.equal(a[0], c[0])
    assert a[0].min() >= -1 and a[0].max() <= 1 and a[0].shape == src.shape


def test_flip_mirrors_pixels_and_swaps_the_eyes() -> None:
    src, drv, boxes = _pair()
    cfg = PairAugmentation(
        enabled=True, flip=1.0, channel_gain=0, brightness=0, contrast=0, saturation=0, hue_deg=0, gamma=0,
        grayscale=0, zoom=0, rotate_deg=0,
    )  # fmt: skip
    s, d, b = augment_pair(src, drv, boxes, cfg, np.random.default_rng(0))
    assert torch.allclose(s, src.flip(-1), atol=1e-5) and torch.allclose(d, drv.flip(-1), atol=1e-5)
    assert torch.equal(b[0], torch.tensor([6.0, 6.0, 14.0, 12.0]))  # old right eye, mirrored
    assert torch.equal(b[1], torch.tensor([20.0, 6.0, 28.0, 12.0]))
    assert torch.equal(b[2], torch.tensor([9.0, 18.0, 23.0, 28.0]))


def test_boxes_follow_zoom_and_rotation() -> None:
    size = 64
    image = -torch.ones(3, size, size)
    image[:, 40:48, 20:30] = 1.0  # a bright block
    box = torch.tensor([[20.0, 40.0, 30.0, 48.0]] * 3)
    cfg = PairAugmentation(
        enabled=True, flip=0.0, channel_gain=0, brightness=0, contrast=0, saturation=0, hue_deg=0, gamma=0,
        grayscale=0, zoom=0.3, rotate_deg=30,
    )  # fmt: skip
    for seed in range(4):
        out, _, b = augment_pair(image, image, box, cfg, np.random.default_rng(seed))
        ys, xs = np.nonzero(out[0].numpy() > 0.5)
        x0, y0, x1, y1 = b[0].tolist()
        assert x0 - 1 <= xs.min() and xs.max() + 1 <= x1 + 1 and y0 - 1 <= ys.min() and ys.max() + 1 <= y1 + 1


def test_colour_changes_keep_greys_grey_without_hue() -> None:
    grey = torch.full((3, 8, 8), 0.2)
    cfg = PairAugmentation(enabled=True, flip=0, channel_gain=0, hue_deg=0, zoom=0, rotate_deg=0)
    s, _, _ = augment_pair(grey, grey, torch.zeros(3, 4), cfg, np.random.default_rng(1))
    assert torch.allclose(s[0], s[1], atol=1e-5) and torch.allclose(s[1], s[2], atol=1e-5)


def test_invalid_ranges_are_refused() -> None:
    with pytest.raises(ValueError, match="flip"):
        PairAugmentation(flip=1.5)
    with pytest.raises(ValueError, match="hue_deg"):
        PairAugmentation(hue_deg=90)
