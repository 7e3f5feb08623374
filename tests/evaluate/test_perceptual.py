"""LPIPS (AlexNet, v0.1) from local files: layout checks, parity with the reference package, properties.

torchvision's AlexNet weights cannot be had here: the tests write random-weight files of its format.
The v0.1 heads are the real ones, from the installed ``lpips`` wheel. The reference package imports
torchvision (which does not load beside this torch); for the parity test a stand-in ``torchvision``
module hands it the same random AlexNet, so its own forward pass is compared with ours.
"""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
import torch

from floatalk.errors import InputError
from floatalk.evaluate.perceptual import (
    LPIPS_ALEXNET,
    AlexNetTaps,
    LPIPSDistance,
    alexnet_layout,
    heads_layout,
    lpips_heads_path,
)


def _random_trunk(seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    state = alexnet_layout()
    for tensor in state.values():
        if tensor.ndim == 4:
            tensor.copy_(torch.randn(tensor.shape, generator=gen) * (2.0 / tensor[0].numel()) ** 0.5)
        else:
            tensor.copy_(0.01 * torch.randn(tensor.shape, generator=gen))
    return state


@pytest.fixture(scope="module")
def trunk_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("lpips") / "alexnet-owt-7be5be79.pth"
    torch.save(_random_trunk(), path)
    return path


@pytest.fixture(scope="module")
def distance(trunk_file):
    return LPIPSDistance(trunk_file, batch_size=3)


def _frames(seed: int, n: int = 4, size: int = 64) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def test_the_installed_heads_file_is_the_published_one(distance):
    assert lpips_heads_path().is_file()
    assert distance.heads.published is True
    assert distance.backbone.published is False  # a random file, not torchvision's


def test_identical_frames_are_at_distance_zero_and_others_are_not(distance):
    a, b = _frames(0), _frames(1)
    assert np.allclose(distance(a, a), 0.0, atol=1e-7)
    d = distance(a, b)
    assert d.shape == (4,) and (d > 1e-3).all() and np.isfinite(d).all()
    assert np.allclose(d, distance(b, a), rtol=1e-5)  # symmetric
    # batching does not change the values
    assert np.allclose(d, LPIPSDistance(distance.backbone.path, batch_size=1)(a, b), rtol=1e-5)


def test_more_noise_is_farther(distance):
    rng = np.random.default_rng(3)
    base = np.tile(np.linspace(0, 255, 64, dtype=np.float64)[None, :, None], (64, 1, 3))[None].repeat(2, 0)
    small = np.clip(base + rng.normal(0, 8, base.shape), 0, 255).astype(np.uint8)
    large = np.clip(base + rng.normal(0, 60, base.shape), 0, 255).astype(np.uint8)
    ref = base.astype(np.uint8)
    assert (distance(ref, small) < distance(ref, large)).all()


def test_generated_frames_of_another_size_are_resized_to_the_real_ones(distance):
    a = _frames(5, n=2, size=64)
    up = np.repeat(np.repeat(a, 2, axis=1), 2, axis=2)  # the same picture at 128²
    d_same = distance(a, up)
    d_other = distance(a, np.repeat(np.repeat(_frames(6, 2, 64), 2, axis=1), 2, axis=2))
    assert (d_same < d_other).all()


def test_parity_with_the_reference_package(trunk_file, monkeypatch):
    pytest.importorskip("scipy")
    pytest.importorskip("tqdm")
    state = torch.load(trunk_file, weights_only=True)
    trunk = AlexNetTaps()
    trunk.features.load_state_dict({k[len("features.") :]: v for k, v in state.items()})

    fake = types.ModuleType("torchvision")
    fake.models = types.SimpleNamespace(alexnet=lambda pretrained=True, **_: trunk)
    monkeypatch.setitem(sys.modules, "torchvision", fake)
    for name in [m for m in sys.modules if m == "lpips" or m.startswith("lpips.")]:
        monkeypatch.delitem(sys.modules, name)
    import lpips

    reference = lpips.LPIPS(net="alex", version="0.1", verbose=False).eval()
    a, b = _frames(7, n=3), _frames(8, n=3)
    x = torch.from_numpy(a).permute(0, 3, 1, 2).float() / 127.5 - 1
    y = torch.from_numpy(b).permute(0, 3, 1, 2).float() / 127.5 - 1
    with torch.no_grad():
        expected = reference(x, y).flatten().double().numpy()
    ours = LPIPSDistance(trunk_file)(a, b)
    assert np.allclose(ours, expected, rtol=1e-5, atol=1e-7)
    for name in [m for m in sys.modules if m == "lpips" or m.startswith("lpips.")]:
        del sys.modules[name]


def test_wrong_or_missing_files_stop_with_one_line(tmp_path, trunk_file):
    with pytest.raises(InputError, match="--lpips-weights") as missing:
        LPIPSDistance(tmp_path / "nope.pth")
    assert "\n" not in str(missing.value)

    heads_as_trunk = tmp_path / "alex.pth"
    torch.save(heads_layout(), heads_as_trunk)
    with pytest.raises(InputError, match="is not the LPIPS AlexNet weights file") as wrong:
        LPIPSDistance(heads_as_trunk)
    assert "\n" not in str(wrong.value)

    text = tmp_path / "notes.pth"
    text.write_text("not weights")
    with pytest.raises(InputError, match="not a readable weights file"):
        LPIPSDistance(text)

    bad_classifier = tmp_path / "with_classifier.pth"
    torch.save({**_random_trunk(), "classifier.1.weight": torch.zeros(3, 3)}, bad_classifier)
    with pytest.raises(InputError, match="classifier"):
        LPIPSDistance(bad_classifier)

    trunk_as_heads = tmp_path / "heads.pth"
    torch.save(_random_trunk(), trunk_as_heads)
    with pytest.raises(InputError, match=r"LPIPS v0\.1 AlexNet heads"):
        LPIPSDistance(trunk_file, heads=trunk_as_heads)
    assert LPIPS_ALEXNET.sha256 == "7be5be79"


def test_mismatched_frame_counts_are_refused(distance):
    with pytest.raises(InputError, match="one to one"):
        distance(_frames(0, 3), _frames(1, 2))
    with pytest.raises(InputError, match="uint8"):
        distance(_frames(0).astype(np.float32), _frames(1))
