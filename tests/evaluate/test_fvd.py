"""FVD through our I3D from a local weights file: windows, the 'SAME' padding rule, preprocessing,
layout checks, features and the metric's properties.

The published rgb_imagenet.pt cannot be had here: the tests write random-weight files of its format
(the network's own names and shapes; convolutions kaiming-scaled, batch norms near the identity so
activations stay finite through the 57 convolutions). I3D costs a few seconds a 16-frame window on a
CPU, so the network sees three windows in all, computed once.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from floatalk.errors import InputError
from floatalk.evaluate.fvd import (
    CLASSES,
    FVD_I3D,
    WINDOW,
    I3DFeatures,
    InceptionI3d,
    SamePool3d,
    Unit3D,
    fvd,
    fvd_windows,
    i3d_layout,
    prepare_frames,
    same_padding,
)


def _randomise(state: dict[str, torch.Tensor], seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    for name, tensor in state.items():
        if tensor.ndim == 5:
            fan_in = tensor[0].numel()
            tensor.copy_(torch.randn(tensor.shape, generator=gen) * (2.0 / fan_in) ** 0.5)
        elif name.endswith("running_mean") or name.endswith("bias"):
            tensor.copy_(0.05 * torch.randn(tensor.shape, generator=gen))
        elif name.endswith("running_var"):
            tensor.copy_(1.0 + 0.2 * torch.rand(tensor.shape, generator=gen))
        elif name.endswith("bn.weight"):
            tensor.copy_(1.0 + 0.1 * torch.randn(tensor.shape, generator=gen))
    return state


@pytest.fixture(scope="module")
def random_i3d(tmp_path_factory):
    path = tmp_path_factory.mktemp("i3d") / "rgb_imagenet.pt"
    torch.save(_randomise(i3d_layout()), path)
    return path


@pytest.fixture(scope="module")
def net(random_i3d):
    return I3DFeatures(random_i3d, batch_size=2, stride=2)


def _clip(seed: int, frames: int, height: int = 56, width: int = 72) -> np.ndarray:
    """Blocky random frames, each different (8x8 blocks), uint8 (frames, height, width, 3)."""
    rng = np.random.default_rng(seed)
    base = rng.random((frames, height // 8, width // 8, 3)).repeat(8, axis=1).repeat(8, axis=2)
    return (base * 255).astype(np.uint8)


@pytest.fixture(scope="module")
def clip():
    return _clip(0, 18)


@pytest.fixture(scope="module")
def rows(net, clip):
    return net([clip, _clip(1, WINDOW - 1)])  # 18 frames, stride 2: windows 0-16 and 2-18; then none


def test_windows_cover_every_full_stretch_from_the_first_frame():
    assert WINDOW == 16
    assert fvd_windows(16) == [(0, 16)]
    assert fvd_windows(15) == [] and fvd_windows(0) == []
    assert fvd_windows(18) == [(0, 16), (1, 17), (2, 18)]
    assert fvd_windows(18, stride=2) == [(0, 16), (2, 18)]
    assert fvd_windows(47, stride=16) == [(0, 16), (16, 32)]
    assert fvd_windows(48, stride=16)[-1] == (32, 48)
    assert len(fvd_windows(100, stride=3)) == (100 - 16) // 3 + 1
    assert fvd_windows(5, length=2, stride=2) == [(0, 2), (2, 4)]
    for length, stride in ((0, 1), (16, 0), (-1, 2)):
        with pytest.raises(InputError, match="at least 1"):
            fvd_windows(20, length, stride)


def test_same_padding_is_tensorflows_with_the_larger_half_after():
    assert same_padding(224, 7, 2) == (2, 3)
    assert same_padding(16, 7, 2) == (2, 3)
    assert same_padding(7, 3, 2) == (1, 1)  # odd size: k - size % s
    assert same_padding(8, 3, 1) == (1, 1)
    assert same_padding(4, 2, 2) == (0, 0)
    assert same_padding(5, 2, 2) == (0, 1)
    for size in range(1, 30):
        for kernel, stride in ((7, 2), (3, 2), (3, 1), (2, 2), (1, 1)):
            before, after = same_padding(size, kernel, stride)
            assert (size + before + after - kernel) // stride + 1 == -(-size // stride)
    # A summing 1x1x3 convolution, stride 2, on four ones: windows [0, 1, 2] and [2, 3, zero].
    unit = Unit3D(1, 1, (1, 1, 3), (1, 1, 2), norm=False, relu=False)
    with torch.no_grad():
        unit.conv3d.weight.fill_(1.0)
        assert unit(torch.ones(1, 1, 1, 1, 4)).flatten().tolist() == [3.0, 2.0]
    pool = SamePool3d((1, 1, 3), (1, 1, 2))
    values = torch.tensor([1.0, 5.0, 2.0, 4.0]).view(1, 1, 1, 1, 4)  # pads (0, 1): [1, 5, 2], [2, 4, 0]
    assert pool(values).flatten().tolist() == [5.0, 4.0]


def test_layout_is_the_published_files():
    layout = i3d_layout()
    assert len(layout) == 57 * 5 + 2 and not any("num_batches_tracked" in k for k in layout)
    assert sum(v.numel() for v in layout.values()) == 12_711_824
    shapes = {k: tuple(v.shape) for k, v in layout.items()}
    assert shapes["Conv3d_1a_7x7.conv3d.weight"] == (64, 3, 7, 7, 7)
    assert shapes["Conv3d_2c_3x3.bn.running_var"] == (192,)
    assert shapes["Mixed_3b.b1b.conv3d.weight"] == (128, 96, 3, 3, 3)
    assert shapes["Mixed_4b.b0.conv3d.weight"] == (192, 480, 1, 1, 1)
    assert shapes["Mixed_5c.b3b.bn.weight"] == (128,)
    assert shapes["logits.conv3d.weight"] == (CLASSES, 1024, 1, 1, 1)
    assert shapes["logits.conv3d.bias"] == (CLASSES,)
    assert "logits.bn.weight" not in shapes and "Mixed_3b.b0.conv3d.bias" not in shapes
    bn = InceptionI3d().Conv3d_1a_7x7.bn
    assert bn.eps == pytest.approx(1e-3) and bn.momentum == pytest.approx(0.01)


def test_preprocessing_resizes_to_224_and_scales_to_plus_minus_one():
    small = np.stack([np.full((30, 40, 3), v, np.uint8) for v in (0, 255, 51)])
    x = prepare_frames(small)
    assert x.shape == (3, 3, 224, 224) and x.dtype == torch.float32
    np.testing.assert_allclose(x[0].numpy(), -1.0, atol=1e-6)
    np.testing.assert_allclose(x[1].numpy(), 1.0, atol=1e-6)
    np.testing.assert_allclose(x[2].numpy(), 51 / 127.5 - 1, atol=1e-6)
    exact = _clip(3, 1, 224, 224)
    np.testing.assert_allclose(
        prepare_frames(exact)[0].permute(1, 2, 0).numpy(), exact[0] / 127.5 - 1, atol=1e-6
    )
    # A one-pixel checkerboard shrunk threefold: antialiased to grey, where plain bilinear would alias.
    board = ((np.indices((672, 672)).sum(axis=0) % 2) * 255).astype(np.uint8)
    grey = prepare_frames(np.repeat(board[None, :, :, None], 3, axis=3))
    assert grey.shape == (1, 3, 224, 224) and float(grey.abs().max()) < 0.2


def test_features_are_finite_ordered_batch_independent_and_informative(net, clip, rows):
    assert rows.shape == (2, CLASSES) and rows.dtype == np.float64 and np.isfinite(rows).all()
    assert np.abs(rows[0] - rows[1]).max() > 1e-2 * np.abs(rows).max()  # different frames, different rows
    net.batch_size, net.stride = 1, 1
    try:
        second = net([clip[2:]])  # the second window alone, in a batch of one
    finally:
        net.batch_size, net.stride = 2, 2
    assert second.shape == (1, CLASSES)
    np.testing.assert_allclose(second[0], rows[1], rtol=1e-4, atol=1e-4 * np.abs(rows).max())
    assert net([]).shape == (0, CLASSES) and net([_clip(2, 3)]).shape == (0, CLASSES)


def test_fvd_is_zero_for_the_same_set_and_grows_with_the_difference(rows):
    assert fvd(rows, rows[::-1]) == pytest.approx(0.0, abs=1e-6 * float((rows**2).sum()))
    rng = np.random.default_rng(0)
    a = rng.normal(size=(300, CLASSES))
    b = rng.normal(size=(300, CLASSES)) * 1.5
    shift = np.zeros(CLASSES)
    shift[:4] = 2.0
    assert fvd(a, a) == pytest.approx(0.0, abs=1e-8)
    assert fvd(a, a + shift) == pytest.approx(16.0, rel=1e-5)  # same covariance: the squared mean shift
    assert fvd(a, b) > 50 and fvd(a, b) == pytest.approx(fvd(b, a), rel=1e-8)


def test_bad_clips_are_refused(net):
    for bad in (
        _clip(0, 16).astype(np.float32),
        _clip(0, 16)[..., :2],
        _clip(0, 16)[0],
        np.zeros((16, 0, 8, 3), np.uint8),
    ):
        with pytest.raises(InputError, match=r"uint8 RGB clips \(T, H, W, 3\)"):
            net([bad])
    for kwargs in ({"batch_size": 0}, {"stride": 0}):
        with pytest.raises(InputError, match="at least 1"):
            I3DFeatures(None, **kwargs)


def test_a_half_precision_file_with_a_wrapper_prefix_and_counters_loads(tmp_path, random_i3d):
    state = torch.load(random_i3d, weights_only=True)
    saved = {f"module.{k}": v.half() for k, v in state.items()}
    saved["module.Conv3d_1a_7x7.bn.num_batches_tracked"] = torch.tensor(7)
    path = tmp_path / "wrapped.pt"
    torch.save(saved, path)
    loaded = I3DFeatures(path).net.state_dict()
    assert all(v.dtype == torch.float32 for k, v in loaded.items() if "num_batches" not in k)
    for key, value in state.items():
        torch.testing.assert_close(loaded[key], value.half().float(), rtol=0, atol=0)
    assert int(loaded["Conv3d_1a_7x7.bn.num_batches_tracked"]) == 7


def test_missing_and_wrong_files_are_refused_in_one_line(tmp_path, monkeypatch, random_i3d, net):
    assert net.backbone.published is None and "no published hash" in net.backbone.describe()
    assert len(net.backbone.sha256) == 64
    monkeypatch.delenv(FVD_I3D.env, raising=False)
    with pytest.raises(InputError, match="--fvd-weights PATH or set FLOATALK_FVD_WEIGHTS"):
        I3DFeatures(None)
    with pytest.raises(InputError, match=r"not found.*--fvd-weights"):
        I3DFeatures(tmp_path / "nope.pt")
    text = tmp_path / "notes.pt"
    text.write_text("not weights\n")
    one = tmp_path / "one.pt"
    torch.save({"weight": torch.randn(3, 3)}, one)
    charades = tmp_path / "rgb_charades.pt"  # the same network fine-tuned on Charades' 157 classes
    torch.save({k: v.half() for k, v in InceptionI3d(classes=157).state_dict().items()}, charades)
    state = torch.load(random_i3d, weights_only=True)
    state["Mixed_4c.b1b.bn.scale"] = state.pop("Mixed_4c.b1b.bn.weight")
    renamed = tmp_path / "renamed.pt"
    torch.save(state, renamed)
    cases = {
        text: "not a readable weights file",
        one: r"287 tensors missing .*; 1 unexpected \(e\.g\. weight\)",
        charades: r"of the wrong shape \(e\.g\. logits\.conv3d\.\w+: \(157",
        renamed: r"1 tensors missing \(e\.g\. Mixed_4c\.b1b\.bn\.weight\); 1 unexpected",
    }
    for path, message in cases.items():
        with pytest.raises(InputError, match=message) as info:
            I3DFeatures(path)
        assert "\n" not in str(info.value) and "--fvd-weights" in str(info.value)
    monkeypatch.setenv(FVD_I3D.env, str(random_i3d))
    assert I3DFeatures(None).backbone.sha256 == net.backbone.sha256
