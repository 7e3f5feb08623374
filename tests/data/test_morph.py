"""Face morphs for the synthetic world: endpoints, landmark interpolation, the host's background."""

from __future__ import annotations

import numpy as np
import pytest

from floatalk.data import synthetic as syn
from floatalk.data.morph import morph_portraits, tps_backward_map


def test_tps_interpolates_its_control_points() -> None:
    rng = np.random.default_rng(0)
    dst = rng.uniform(4, 60, size=(12, 2))
    src = dst + rng.normal(0, 2, size=dst.shape)
    where = tps_backward_map(dst, src, 64)
    for (x, y), target in zip(dst, src):
        i, j = int(y), int(x)  # the nearest pixel centre is within half a pixel
        assert np.abs(where[i, j] - target).max() < 2.0
    same = tps_backward_map(dst, dst, 64)
    c = np.arange(64) + 0.5
    assert np.allclose(same[..., 0], c[None, :], atol=1e-6) and np.allclose(
        same[..., 1], c[:, None], atol=1e-6
    )


@pytest.fixture(scope="module")
def pair() -> tuple[syn.Portrait, syn.Portrait]:
    a, b = syn.load_portraits(["obama", "astronaut"])
    return a, b


def _small(p: syn.Portrait) -> np.ndarray:
    return np.asarray(p.resized(96))


def test_alpha_zero_is_the_host_and_points_interpolate(pair) -> None:
    a, b = pair
    image, _ = morph_portraits(_small(a), a.points, _small(b), b.points, 0.0)
    assert np.abs(image.astype(int) - _small(a)).max() <= 1
    _, half = morph_portraits(_small(a), a.points, _small(b), b.points, 0.5)
    for name in ("mouth_left", "chin", "left_iris"):
        assert np.allclose(half[name], (np.array(a.points[name]) + np.array(b.points[name])) / 2)


def test_morph_blends_the_face_and_keeps_the_hosts_corners(pair) -> None:
    a, b = pair
    image, _ = morph_portraits(_small(a), a.points, _small(b), b.points, 0.5)
    corner = (slice(0, 8), slice(0, 8))
    assert np.abs(image[corner].astype(int) - _small(a)[corner]).mean() < 2  # background: the host's
    face = (slice(40, 60), slice(38, 58))
    da = np.abs(image[face].astype(float) - _small(a)[face]).mean()
    db = np.abs(image[face].astype(float) - _small(b)[face]).mean()
    assert da > 3 and db > 3  # between the two faces, neither one


def test_morph_names_plan_and_render() -> None:
    name = syn.morph_name("obama", "biden", 0.4)
    assert name == "obama~biden@0.40"
    portrait = syn.load_portraits([name])[0]
    assert portrait.split == "train" and portrait.image.shape[2] == 3
    frames = syn.render_frames(portrait, 32, {"mouth_open": np.zeros(2, np.float32)})
    assert frames.shape == (2, 32, 32, 3)
    with pytest.raises(syn.InputError, match="unknown"):
        syn.load_portraits(["obama~nobody@0.5"])
    cfg = syn.SyntheticConfig(num_clips=24, test_fraction=0.25, morphs=0.5)
    plans = syn.plan_clips(cfg)
    morphs = [p for p in plans if "~" in p.portrait]
    assert morphs and all(p.split == "train" for p in morphs)
    held = {p.name for p in syn.load_portraits(split="test")}
    assert not {p.portrait.split("~")[0] for p in plans if p.split == "train"} & held
    assert plans == syn.plan_clips(cfg)
