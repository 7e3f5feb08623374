"""FID through torch-fidelity's Inception from a local weights file: layout checks, the metric's properties.

The published weights cannot be had here: the tests write random-weight files of the same format
(the extractor's own names and shapes, convolutions scaled so activations survive 90 layers).
"""

from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pytest
import torch

if importlib.util.find_spec("torch_fidelity") is None:  # the Makefile installs it
    pytest.skip("torch-fidelity is not installed", allow_module_level=True)

from floatalk.errors import InputError
from floatalk.evaluate.fid import FID_INCEPTION, InceptionFeatures, fid, inception_layout


@pytest.fixture(scope="module")
def random_inception(tmp_path_factory):
    gen = torch.Generator().manual_seed(0)
    state = inception_layout()
    for name, tensor in state.items():
        if name.endswith("conv.weight") or name == "fc.weight":
            fan_in = tensor[0].numel()
            tensor.copy_(torch.randn(tensor.shape, generator=gen) * (2.0 / fan_in) ** 0.5)
    path = tmp_path_factory.mktemp("fid") / "random-inception.pth"
    torch.save(state, path)
    return path


def _frames(seed: int, n: int, size: int = 48, bright: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.random((n, size // 8, size // 8, 3)).repeat(8, axis=1).repeat(8, axis=2)
    return (np.clip(base + bright, 0, 1) * 255).astype(np.uint8)


@pytest.fixture(scope="module")
def net(random_inception):
    return InceptionFeatures(random_inception, batch_size=3)


def test_features_are_deterministic_batch_independent_and_informative(net):
    frames = _frames(0, 5)
    a = net(list(frames))  # one frame at a time, regrouped into batches of 3
    net.batch_size = 5
    try:
        b = net([frames])
    finally:
        net.batch_size = 3
    assert a.shape == (5, 2048) and np.isfinite(a).all()
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6 * np.abs(a).max())
    assert a.std(axis=0).mean() > 1e-3 * np.abs(a).mean()  # different frames, different features


def test_fid_is_zero_for_identical_sets_and_grows_with_a_shift(net):
    real = net([_frames(1, 4)])
    other = net([_frames(2, 4)])
    same = fid(real, real)
    near = fid(real, other)
    far = fid(real, net([_frames(2, 4, bright=0.5)]))
    assert same == pytest.approx(0.0, abs=1e-6 * near)
    assert 0 < near < far
    assert fid(real[::-1], other[[3, 1, 0, 2]]) == pytest.approx(near, rel=1e-6)  # order


def test_report_says_a_random_file_is_not_the_published_one(net):
    backbone = net.backbone
    assert backbone.published is False
    assert "NOT the published file" in backbone.describe()


def test_missing_and_wrong_files_are_refused_in_one_line(tmp_path, monkeypatch, random_inception):
    monkeypatch.delenv(FID_INCEPTION.env, raising=False)
    with pytest.raises(InputError, match="--fid-weights PATH or set FLOATALK_FID_WEIGHTS"):
        InceptionFeatures(None)
    with pytest.raises(InputError, match="not found"):
        InceptionFeatures(tmp_path / "nope.pth")
    wrong = tmp_path / "wrong.pth"
    torch.save({"conv.weight": torch.zeros(3, 3)}, wrong)
    with pytest.raises(InputError, match="is not the FID Inception-v3 weights file") as info:
        InceptionFeatures(wrong)
    assert "\n" not in str(info.value)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="not a readable weights file"):
        InceptionFeatures(garbage)
    state = torch.load(random_inception, weights_only=True)
    key = next(k for k in state if k.endswith("conv.weight"))
    state[key] = torch.zeros(1, *state[key].shape[1:])
    reshaped = tmp_path / "reshaped.pth"
    torch.save(state, reshaped)
    with pytest.raises(InputError, match="wrong shape"):
        InceptionFeatures(reshaped)
    monkeypatch.setenv(FID_INCEPTION.env, str(random_inception))  # the variable works too
    assert InceptionFeatures().backbone.path == random_inception


def test_no_torchvision_placeholder_is_left_behind():
    inception_layout()
    assert "torchvision" not in sys.modules or type(sys.modules["torchvision"]).__name__ != "_Placeholder"


def test_bad_frames_are_refused(net):
    with pytest.raises(InputError, match="uint8 RGB"):
        net([np.zeros((8, 8, 3), np.float32)])
