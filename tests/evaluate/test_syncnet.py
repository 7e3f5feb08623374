"""LSE-D / LSE-C through our SyncNet from a local weights file: layout checks, window packing, the offset
search on constructed embeddings, the MFCCs, and the one-line refusals.

The published ``syncnet_v2.model`` cannot be had here: the tests write random-weight files with the
network's own names and shapes. A random network cannot tell sync, so the search itself is tested on
constructed embeddings whose true shift is known; the network tests check what the scorer feeds it
(which frames and MFCC steps, in which channel order) against windows built by hand.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from floatalk.errors import InputError
from floatalk.evaluate.syncnet import (
    EMBEDDING_DIM,
    MAX_OFFSET,
    SYNCNET,
    SyncNet,
    SyncNetScorer,
    SyncResult,
    lse,
    mfcc_features,
    offset_search,
    syncnet_layout,
)

FRAMES = 12  # 7 windows: the original drops the last possible one
WINDOWS = FRAMES - 5


def _randomise(state: dict[str, torch.Tensor], seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    for name, tensor in state.items():
        if name.endswith("weight") and tensor.ndim >= 2:
            fan_in = tensor[0].numel()
            tensor.copy_(torch.randn(tensor.shape, generator=gen) * (2.0 / fan_in) ** 0.5)
        elif name.endswith("running_mean"):
            tensor.copy_(0.05 * torch.randn(tensor.shape, generator=gen))
        elif name.endswith("running_var"):
            tensor.copy_(1.0 + 0.2 * torch.rand(tensor.shape, generator=gen))
        elif name.endswith("bias"):
            tensor.copy_(0.02 * torch.randn(tensor.shape, generator=gen))
    return state


@pytest.fixture(scope="module")
def random_syncnet(tmp_path_factory):
    path = tmp_path_factory.mktemp("syncnet") / "syncnet_v2.model"
    torch.save(_randomise(syncnet_layout()), path)
    return path


@pytest.fixture(scope="module")
def scorer(random_syncnet):
    return SyncNetScorer(random_syncnet, batch_size=4)  # 7 windows: batches of 4 + 3


@pytest.fixture(scope="module")
def clip():
    rng = np.random.default_rng(3)
    frames = (rng.random((FRAMES, 28, 28, 3)).repeat(8, axis=1).repeat(8, axis=2) * 255).astype(np.uint8)
    audio = (0.1 * rng.standard_normal(FRAMES * 640 + 100)).astype(np.float32)
    return frames, audio  # 224x224 frames: the scorer does not resize them


@pytest.fixture(scope="module")
def clip_features(scorer, clip):
    return scorer.features(*clip)


def test_network_has_the_original_names_and_shapes():
    layout = syncnet_layout()
    assert {k.split(".")[0] for k in layout} == {"netcnnaud", "netfcaud", "netcnnlip", "netfclip"}
    for stream in ("netcnnaud", "netcnnlip"):
        indices = sorted({int(k.split(".")[1]) for k in layout if k.startswith(stream)})
        assert indices == [0, 1, 4, 5, 8, 9, 11, 12, 14, 15, 18, 19]  # convs and norms between ReLUs/pools
    assert tuple(layout["netcnnaud.18.weight"].shape) == (512, 256, 5, 4)
    assert tuple(layout["netcnnlip.0.weight"].shape) == (96, 3, 5, 7, 7)
    assert tuple(layout["netcnnlip.18.weight"].shape) == (512, 256, 1, 6, 6)
    assert tuple(layout["netfclip.3.weight"].shape) == (EMBEDDING_DIM, 512)
    assert tuple(layout["netfcaud.1.running_var"].shape) == (512,)
    net = SyncNet().eval()
    with torch.no_grad():
        assert net.audio(torch.randn(2, 1, 13, 20)).shape == (2, EMBEDDING_DIM)
        assert net.lips(torch.randn(2, 3, 5, 224, 224)).shape == (2, EMBEDDING_DIM)


def _shifted(k: int, n: int = 40, d: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors: the picture of window i equals the sound of window i - k."""
    rng = np.random.default_rng(seed)
    base = rng.standard_normal((n + 2 * MAX_OFFSET, d))
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    video = base[MAX_OFFSET : MAX_OFFSET + n]
    audio = base[MAX_OFFSET + k : MAX_OFFSET + k + n]  # audio[j] = video[j + k]
    return video, audio


@pytest.mark.parametrize("k", [-11, -3, 0, 1, 7])
def test_the_known_shift_is_found_with_its_sign(k):
    video, audio = _shifted(k)
    result = offset_search(video, audio)
    assert result.offset == k
    assert result.mean_distances.shape == (2 * MAX_OFFSET + 1,)
    assert result.mean_distances[k + MAX_OFFSET] == result.distance
    # matched pairs are at ~0; the |k| windows whose partner falls outside the clip meet a zero vector
    assert result.distance == pytest.approx(abs(k) / len(video), abs=1e-4)
    assert result.confidence > 1.0  # unrelated unit vectors are ~sqrt(2) apart
    assert result.confidence == pytest.approx(np.median(result.mean_distances) - result.distance)


def test_a_mouth_that_moves_after_the_sound_has_a_positive_offset():
    rng = np.random.default_rng(1)
    audio = 0.01 * rng.standard_normal((30, 8))
    video = 0.01 * rng.standard_normal((30, 8))
    audio[10] += 1.0  # a sound at window 10 ...
    video[13] += 1.0  # ... and the mouth showing it three windows later
    assert offset_search(video, audio).offset == 3
    assert offset_search(audio, video).offset == -3


def test_flat_and_constant_features_and_the_padding_penalty():
    flat = offset_search(np.ones((8, 4)), np.zeros((8, 4)))  # every shift alike
    assert flat.confidence == 0.0
    assert flat.offset == MAX_OFFSET  # ties go to the largest shift, in the original's order
    same = offset_search(np.ones((8, 4)), np.ones((8, 4)))  # no information but the zero padding
    assert same.offset == 0 and same.distance == pytest.approx(0.0, abs=1e-5)
    shifts = np.arange(-MAX_OFFSET, MAX_OFFSET + 1)
    expected = np.minimum(np.abs(shifts), 8) / 8 * 2.0  # |(1, 1, 1, 1)| = 2 for each padded window
    np.testing.assert_allclose(same.mean_distances, expected, atol=1e-5)
    small = offset_search(*_shifted(2), max_offset=3)
    assert small.offset == 2 and small.mean_distances.shape == (7,)
    with pytest.raises(InputError, match=r"\(N, d\) and \(M, d\)"):
        offset_search(np.ones((4, 3)), np.ones((4, 5)))


def test_mfccs_have_syncnets_rate_and_scale():
    rng = np.random.default_rng(2)
    sound = (0.05 * rng.standard_normal(16000)).astype(np.float32)  # no clipping at twice the level
    steps = mfcc_features(sound)
    assert steps.shape == (99, 13)  # 1 + ceil((16000 - 400) / 160): ~100 a second
    assert mfcc_features(np.concatenate([sound, sound, sound[:8000]])).shape == (249, 13)
    pcm = np.clip(np.round(sound.astype(np.float64) * 32768), -32768, 32767).astype(np.int16)
    np.testing.assert_array_equal(steps, mfcc_features(pcm))  # float is read as 16-bit PCM
    louder = mfcc_features(2 * sound)  # only the energy (column 0) depends on the level
    np.testing.assert_allclose(louder[:, 0] - steps[:, 0], np.log(4.0), atol=1e-3)
    np.testing.assert_allclose(louder[:, 1:], steps[:, 1:], atol=0.02)  # up to rounding
    assert 19 < steps[:, 0].mean() < 23  # log energy of 16-bit samples (about 0 on the [-1, 1] scale)
    with pytest.raises(InputError, match="1-D"):
        mfcc_features(np.zeros((2, 100)))


def test_missing_python_speech_features_is_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "python_speech_features", None)  # import fails
    with pytest.raises(InputError, match="pip install python_speech_features") as info:
        mfcc_features(np.zeros(1600, np.float32))
    assert "\n" not in str(info.value)


def test_windows_are_packed_as_the_original(scorer, clip, clip_features):
    frames, audio = clip
    video, sound = clip_features
    assert video.shape == sound.shape == (WINDOWS, EMBEDDING_DIM)
    assert np.isfinite(video).all() and np.isfinite(sound).all()
    bgr = torch.from_numpy(np.ascontiguousarray(frames[2:7, :, :, ::-1])).float()  # frames 2..6, BGR
    with torch.no_grad():
        by_hand = scorer.net.lips(bgr.permute(3, 0, 1, 2)[None]).double().numpy()[0]
        steps = torch.from_numpy(mfcc_features(audio)[12:32].T.copy()).float()  # MFCC steps 4*3 .. 4*3+19
        heard = scorer.net.audio(steps[None, None]).double().numpy()[0]
    np.testing.assert_allclose(video[2], by_hand, rtol=1e-4, atol=1e-4 * np.abs(by_hand).max())
    np.testing.assert_allclose(sound[3], heard, rtol=1e-4, atol=1e-4 * np.abs(heard).max())
    assert np.abs(video[1] - video[2]).max() > 1e-3 * np.abs(video).max()  # windows differ


def test_scores_are_finite_batch_independent_and_cut_to_the_shorter_stream(scorer, clip, clip_features):
    frames, audio = clip
    result = scorer.score(frames, audio)
    assert isinstance(result, SyncResult)
    assert np.isfinite([result.distance, result.confidence]).all() and result.confidence >= 0
    assert -MAX_OFFSET <= result.offset <= MAX_OFFSET and isinstance(result.offset, int)
    scorer.batch_size = 20
    try:
        video, _ = scorer.features(frames[:9], audio)  # the picture is the shorter stream
    finally:
        scorer.batch_size = 4
    assert len(video) == 4
    np.testing.assert_allclose(video, clip_features[0][:4], rtol=1e-4, atol=1e-4 * np.abs(video).max())
    _, sound = scorer.features(frames[:7], audio[: 6 * 640 + 10])  # the sound is the shorter stream
    assert len(sound) == 1


def test_frames_of_another_size_are_resized_whole(scorer):
    colour = np.array([200, 90, 20], np.uint8)  # a flat colour stays flat when resized
    small = np.broadcast_to(colour, (6, 60, 100, 3)).copy()
    full = np.broadcast_to(colour, (6, 224, 224, 3)).copy()
    swapped = np.broadcast_to(colour[::-1], (6, 224, 224, 3)).copy()
    audio = np.zeros(6 * 640, np.float32)
    a = scorer.features(small, audio)[0]
    np.testing.assert_allclose(a, scorer.features(full, audio)[0], rtol=1e-5, atol=1e-5 * np.abs(a).max())
    assert np.abs(a - scorer.features(swapped, audio)[0]).max() > 1e-3 * np.abs(a).max()  # order matters


def test_short_or_malformed_clips_are_refused(scorer, clip):
    frames, audio = clip
    with pytest.raises(InputError, match=r"at least 6 frames and 0\.24 s"):
        scorer.score(frames[:5], audio)
    with pytest.raises(InputError, match="at least 6 frames"):
        scorer.score(frames, audio[: 5 * 640 + 639])
    with pytest.raises(InputError, match="uint8 RGB frames"):
        scorer.score(frames.astype(np.float32), audio)
    with pytest.raises(InputError, match="1-D"):
        scorer.score(frames, np.stack([audio, audio], axis=1))


def test_lse_averages_the_clips():
    results = [
        SyncResult(distance=7.0, confidence=2.0, offset=1, mean_distances=np.zeros(31)),
        SyncResult(distance=8.0, confidence=5.0, offset=-2, mean_distances=np.zeros(31)),
    ]
    assert lse(results) == {"LSE-D": 7.5, "LSE-C": 3.5}
    with pytest.raises(InputError, match="no clip"):
        lse([])


def test_a_half_precision_file_without_counters_loads(tmp_path, random_syncnet):
    state = torch.load(random_syncnet, weights_only=True)
    half = {f"module.{k}": v.half() for k, v in state.items() if not k.endswith("num_batches_tracked")}
    path = tmp_path / "syncnet-fp16.model"
    torch.save(half, path)
    net = SyncNetScorer(path)
    assert all(p.dtype == torch.float32 for p in net.net.parameters())
    loaded = net.net.state_dict()["netcnnlip.0.weight"]
    torch.testing.assert_close(loaded, state["netcnnlip.0.weight"].half().float())
    assert net.backbone.published is None and "no published hash" in net.backbone.describe()


def test_missing_and_wrong_files_are_refused_in_one_line(tmp_path, monkeypatch, random_syncnet):
    monkeypatch.delenv(SYNCNET.env, raising=False)
    with pytest.raises(InputError, match="--syncnet-weights PATH or set FLOATALK_SYNCNET_WEIGHTS"):
        SyncNetScorer(None)
    with pytest.raises(InputError, match=r"not found.*--syncnet-weights"):
        SyncNetScorer(tmp_path / "nope.model")
    state = torch.load(random_syncnet, weights_only=True)
    narrow = dict(state)
    narrow["netfclip.3.weight"] = torch.zeros(512, 512)  # another embedding size
    other = tmp_path / "syncnet-512.model"
    torch.save(narrow, other)
    with pytest.raises(InputError, match=r"wrong shape \(e\.g\. netfclip\.3\.weight") as info:
        SyncNetScorer(other)
    assert "\n" not in str(info.value) and "--syncnet-weights" in str(info.value)
    state["netcnnaud.18.kernel"] = state.pop("netcnnaud.18.weight")
    renamed = tmp_path / "renamed.model"
    torch.save(state, renamed)
    with pytest.raises(InputError, match=r"is not the LSE SyncNet weights file.*--syncnet-weights"):
        SyncNetScorer(renamed)
    pickled = tmp_path / "whole-module.model"  # a pickled network, not a state dict: not loaded
    torch.save(SyncNet(), pickled)
    with pytest.raises(InputError, match="not a readable weights file"):
        SyncNetScorer(pickled)
    garbage = tmp_path / "garbage.model"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="not a readable weights file"):
        SyncNetScorer(garbage)
    monkeypatch.setenv(SYNCNET.env, str(renamed))  # the variable is read too
    with pytest.raises(InputError, match=r"renamed\.model is not the LSE SyncNet"):
        SyncNetScorer()
