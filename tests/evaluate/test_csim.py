"""CSIM through our iresnet100 from a local weights file: layout checks, embeddings, the metric's properties.

The published ArcFace weights cannot be had here: the tests write random-weight files of the same
format (the network's own names and shapes; convolutions kaiming-scaled, batch norms near the identity,
the residual branches damped so activations stay finite through 49 blocks). iresnet100 is heavy on a
CPU (about 0.3 s a crop), so the crops are few and computed once.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from floatalk.errors import InputError
from floatalk.evaluate.csim import (
    CSIM_ARCFACE,
    EMBEDDING_DIM,
    ArcFaceEmbedder,
    IResNet,
    arcface_layout,
    clip_csim,
    csim,
)
from sample_clips import CARPHONE


def _randomise(state: dict[str, torch.Tensor], seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    for name, tensor in state.items():
        if tensor.ndim == 4 or name == "fc.weight":
            fan_in = tensor[0].numel()
            tensor.copy_(torch.randn(tensor.shape, generator=gen) * (2.0 / fan_in) ** 0.5)
        elif name.endswith("running_mean"):
            tensor.copy_(0.05 * torch.randn(tensor.shape, generator=gen))
        elif name.endswith("running_var"):
            tensor.copy_(1.0 + 0.2 * torch.rand(tensor.shape, generator=gen))
        elif name.endswith("bn3.weight"):  # damp the residual branches
            tensor.copy_(0.3 + 0.03 * torch.randn(tensor.shape, generator=gen))
        elif name.endswith("bias") and tensor.ndim == 1:
            tensor.copy_(0.02 * torch.randn(tensor.shape, generator=gen))
        # other BN scales stay 1, PReLU slopes 0.25 (their initial values)
    return state


@pytest.fixture(scope="module")
def random_arcface(tmp_path_factory):
    path = tmp_path_factory.mktemp("arcface") / "backbone.pth"
    torch.save(_randomise(arcface_layout()), path)
    return path


@pytest.fixture(scope="module")
def embedder(random_arcface):
    return ArcFaceEmbedder(random_arcface, batch_size=3)


def _crops(seed: int, n: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.random((n, 14, 14, 3)).repeat(8, axis=1).repeat(8, axis=2) * 255).astype(np.uint8)


@pytest.fixture(scope="module")
def crops():
    base = _crops(0, 4)
    noise = np.random.default_rng(1).integers(-4, 5, base[0].shape)
    near = np.clip(base[0].astype(int) + noise, 0, 255).astype(np.uint8)  # crop 0, slightly disturbed
    return np.concatenate([base, near[None]])


@pytest.fixture(scope="module")
def embeddings(embedder, crops):
    return embedder.embed_aligned(crops)  # batches of 3 + 2


def test_embeddings_are_unit_deterministic_batch_independent_and_informative(embedder, crops, embeddings):
    assert embeddings.shape == (5, EMBEDDING_DIM) and embeddings.dtype == np.float64
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-12)
    embedder.batch_size = 1
    try:
        single = embedder.embed_aligned(crops[1:2])  # alone, not in a batch of 3 as before
        again = embedder.embed_aligned(crops[1:2])
    finally:
        embedder.batch_size = 3
    np.testing.assert_array_equal(single, again)
    np.testing.assert_allclose(single[0], embeddings[1], atol=1e-5)
    gram = embeddings[:4] @ embeddings[:4].T
    assert gram[~np.eye(4, dtype=bool)].max() < 0.95  # different pictures, different embeddings
    assert embedder.embed_aligned(np.zeros((0, 112, 112, 3), np.uint8)).shape == (0, EMBEDDING_DIM)


def test_csim_is_one_for_the_same_face_and_ranks_a_near_copy_above_other_pictures(embeddings):
    assert csim(embeddings[0], embeddings[[0, 0]]) == pytest.approx(1.0, abs=1e-12)
    near = csim(embeddings[0], embeddings[[4]])
    others = [csim(embeddings[0], embeddings[[i]]) for i in (1, 2, 3)]
    assert max(others) < near < 1.0
    assert csim(embeddings[0], embeddings[1:4]) == pytest.approx(np.mean(others), abs=1e-12)
    scaled = csim(3.0 * embeddings[0], embeddings[1:4] * np.array([[0.5], [2.0], [7.0]]))
    assert scaled == pytest.approx(np.mean(others), abs=1e-12)  # a cosine: lengths do not matter


def test_frames_without_a_face_are_left_out(embeddings):
    gaps = np.full((4, EMBEDDING_DIM), np.nan)
    gaps[1], gaps[3] = embeddings[1], embeddings[2]
    assert csim(embeddings[0], gaps) == pytest.approx(csim(embeddings[0], embeddings[1:3]), abs=1e-12)
    with pytest.raises(InputError, match="no face was found in any of the 2 generated frames"):
        csim(embeddings[0], np.full((2, EMBEDDING_DIM), np.nan))
    with pytest.raises(InputError, match="source frame"):
        csim(np.full(EMBEDDING_DIM, np.nan), embeddings)
    with pytest.raises(InputError, match=r"\(d,\) and \(n, d\)"):
        csim(embeddings[0], embeddings[:, :10])


def test_a_half_precision_file_with_a_wrapper_prefix_and_no_counters_loads(tmp_path, random_arcface, crops):
    state = torch.load(random_arcface, weights_only=True)
    half = {f"module.{k}": v.half() for k, v in state.items() if not k.endswith("num_batches_tracked")}
    path = tmp_path / "backbone-fp16.pth"
    torch.save(half, path)
    net = ArcFaceEmbedder(path, batch_size=2)
    assert all(p.dtype == torch.float32 for p in net.net.parameters())
    reference = ArcFaceEmbedder.__new__(ArcFaceEmbedder)  # the same file's float32 weights, rounded
    reference.net = IResNet().eval().requires_grad_(False)
    rounded = {k: v.half().float() if v.is_floating_point() else v for k, v in state.items()}
    reference.net.load_state_dict(rounded)
    reference.device, reference.batch_size = torch.device("cpu"), 2
    np.testing.assert_allclose(net.embed_aligned(crops[:2]), reference.embed_aligned(crops[:2]), atol=1e-6)
    assert net.backbone.published is None and "no published hash" in net.backbone.describe()


def test_missing_and_wrong_files_are_refused_in_one_line(tmp_path, monkeypatch, random_arcface):
    monkeypatch.delenv(CSIM_ARCFACE.env, raising=False)
    with pytest.raises(InputError, match="--arcface-weights PATH or set FLOATALK_ARCFACE_WEIGHTS"):
        ArcFaceEmbedder(None)
    with pytest.raises(InputError, match=r"not found.*--arcface-weights"):
        ArcFaceEmbedder(tmp_path / "nope.pth")
    state = torch.load(random_arcface, weights_only=True)
    state["features.scale"] = state.pop("features.weight")
    renamed = tmp_path / "renamed.pth"
    torch.save({k: v.half() if v.is_floating_point() else v for k, v in state.items()}, renamed)
    renamed_message = r"1 tensors missing \(e\.g\. features\.weight\); 1 unexpected"
    with pytest.raises(InputError, match=renamed_message) as info:
        ArcFaceEmbedder(renamed)
    assert "\n" not in str(info.value) and "--arcface-weights" in str(info.value)
    other = tmp_path / "iresnet18.pth"  # another network of the same family
    torch.save({k: v.half() for k, v in IResNet(layers=(2, 2, 2, 2)).state_dict().items()}, other)
    wanted = r"is not the CSIM ArcFace iresnet100 weights file.*--arcface-weights"
    with pytest.raises(InputError, match=wanted):
        ArcFaceEmbedder(other)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="not a readable weights file"):
        ArcFaceEmbedder(garbage)
    monkeypatch.setenv(CSIM_ARCFACE.env, str(renamed))  # the variable is read too
    with pytest.raises(InputError, match=r"renamed\.pth is not the CSIM ArcFace"):
        ArcFaceEmbedder()


def test_bad_inputs_are_refused(embedder):
    with pytest.raises(InputError, match="aligned uint8 RGB crops"):
        embedder.embed_aligned(np.zeros((1, 64, 64, 3), np.uint8))
    with pytest.raises(InputError, match="uint8 RGB frames"):
        embedder.embed_clip(np.zeros((2, 64, 64, 3), np.float32))


@pytest.mark.skipif(
    CARPHONE is None or importlib.util.find_spec("mediapipe") is None, reason="needs carphone and mediapipe"
)
def test_real_frames_are_aligned_and_embedded_and_faceless_frames_are_nan(embedder):
    from floatalk.io.video_reader import read_video_frames

    frames = read_video_frames(CARPHONE)[:3]
    clip = np.concatenate([frames, np.zeros((1, *frames.shape[1:]), np.uint8)])
    rows = embedder.embed_clip(clip)
    assert rows.shape == (4, EMBEDDING_DIM)
    assert np.isfinite(rows[:3]).all() and np.isnan(rows[3]).all()
    np.testing.assert_allclose(np.linalg.norm(rows[:3], axis=1), 1.0, atol=1e-12)
    value, with_face = clip_csim(embedder, frames[0], clip)
    assert with_face == 3
    assert value == pytest.approx(csim(rows[0], rows), abs=1e-6)  # the source is aligned like frame 0
    with pytest.raises(InputError, match="no face was found in the source frame"):
        clip_csim(embedder, clip[3], frames)
