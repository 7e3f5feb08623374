"""3DMM coefficients through Deep3DFaceRecon's ResNet-50 from a local checkpoint: the alignment rule on
constructed points, the checkpoint format and its checks, and the per-frame tracks on a real clip.

The published ``epoch_20.pth`` cannot be had here: the tests write random-weight checkpoints of the
same format ({"net_recon": state dict, "opt_00": ...}).
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from floatalk.errors import InputError
from floatalk.evaluate.face3d import (
    COEFFICIENTS,
    CROP_SIZE,
    FACE3D_RECON,
    RESCALE_FACTOR,
    STANDARD_LANDMARKS_3D,
    Face3DFitter,
    align_face,
    face3d_layout,
    fit_affine_camera,
    split_coefficients,
)
from sample_clips import CARPHONE


def _random_state(seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    state = face3d_layout()
    for name, tensor in state.items():
        if name.startswith("final_layers") and name.endswith("weight"):
            tensor.copy_(0.05 * torch.randn(tensor.shape, generator=gen))
        elif name.endswith("bn3.weight"):  # damp the residual branches
            tensor.copy_(0.3 * torch.ones(tensor.shape))
        elif name.endswith("running_mean"):
            tensor.copy_(0.05 * torch.randn(tensor.shape, generator=gen))
    return state


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("face3d") / "epoch_20.pth"
    torch.save({"net_recon": _random_state(), "opt_00": {"lr": torch.tensor(1e-4)}, "epoch": 20}, path)
    return path


@pytest.fixture(scope="module")
def fitter(checkpoint):
    return Face3DFitter(checkpoint, batch_size=2)


def _project(scale: float, centre: tuple[float, float], height: int) -> np.ndarray:
    """The standard landmarks under an orthographic camera of the given scale, as y-down pixels."""
    pts = STANDARD_LANDMARKS_3D[:, :2] * scale + np.array(centre)
    pts[:, 1] = height - 1 - pts[:, 1]
    return pts


def test_the_affine_camera_is_recovered_from_exact_projections():
    rng = np.random.default_rng(0)
    projection = rng.normal(size=(2, 3))
    shift = np.array([3.0, -2.0])
    points = STANDARD_LANDMARKS_3D @ projection.T + shift
    t, s = fit_affine_camera(points, STANDARD_LANDMARKS_3D)
    np.testing.assert_allclose(t, shift, atol=1e-9)
    assert s == pytest.approx(np.linalg.norm(projection, axis=1).mean(), rel=1e-9)


def test_alignment_puts_the_face_centre_in_the_crop_centre_at_the_standard_scale():
    height, width = 300, 400
    image = np.zeros((height, width, 3), np.uint8)
    centre = (210.0, 160.0)  # y-up image coordinates
    for scale in (120.0, 204.0):
        points = _project(scale, centre, height)
        crop, matrix = align_face(image, points)
        assert crop.shape == (CROP_SIZE, CROP_SIZE, 3)
        mapped = matrix @ np.append(points.T, np.ones((1, 5)), axis=0)  # the points in the crop
        # The resize brings the model to RESCALE_FACTOR pixels per unit, whatever the face's size.
        eye_gap = mapped[0, 1] - mapped[0, 0]
        model_gap = STANDARD_LANDMARKS_3D[1, 0] - STANDARD_LANDMARKS_3D[0, 0]
        assert eye_gap == pytest.approx(RESCALE_FACTOR * model_gap, rel=0.02)
        face_centre = matrix @ np.array([centre[0], height - 1 - centre[1], 1.0])
        # to within the original's integer crop offsets and pixel-centre conventions
        np.testing.assert_allclose(face_centre, [CROP_SIZE / 2, CROP_SIZE / 2], atol=2.5)


def test_the_crop_holds_the_image_where_it_falls_inside_and_black_outside():
    height, width = 200, 200
    image = np.full((height, width, 3), 180, np.uint8)
    crop, _ = align_face(image, _project(60.0, (20.0, 100.0), height))  # face near the left edge
    assert (crop[:, -5:] == 180).all()  # inside the photo
    assert (crop[:, :5] == 0).all()  # left of the photo
    assert align_face(image, np.full((5, 2), np.nan)) is None
    assert align_face(image, np.zeros((5, 2))) is None  # all points at one place: no scale


def test_split_follows_the_coefficient_order():
    values = np.arange(257, dtype=np.float64)[None].repeat(2, 0)
    parts = split_coefficients(values)
    assert list(parts) == list(COEFFICIENTS)
    assert parts["exp"][0, 0] == 80 and parts["angle"][0].tolist() == [224, 225, 226]
    assert parts["trans"][0].tolist() == [254, 255, 256]
    with pytest.raises(InputError, match=r"\(n, 257\)"):
        split_coefficients(values[:, :100])


def test_coefficients_are_deterministic_and_batch_independent(fitter):
    rng = np.random.default_rng(2)
    crops = (rng.random((3, 28, 28, 3)).repeat(8, 1).repeat(8, 2) * 255).astype(np.uint8)
    together = fitter.coefficients_aligned(crops)  # batches of 2 + 1
    alone = fitter.coefficients_aligned(crops[2:])
    assert together.shape == (3, 257) and np.isfinite(together).all()
    np.testing.assert_allclose(alone[0], together[2], rtol=1e-4, atol=1e-6)
    assert np.abs(together[0] - together[1]).max() > 1e-4  # different faces, different coefficients
    with pytest.raises(InputError, match=r"uint8 RGB \(n, 224, 224, 3\)"):
        fitter.coefficients_aligned(crops[:, :100])


def test_a_bare_state_dict_loads_and_wrong_files_are_refused_in_one_line(tmp_path, monkeypatch, fitter):
    bare = tmp_path / "bare.pth"
    torch.save(_random_state(), bare)
    assert Face3DFitter(bare).backbone.published is None
    monkeypatch.delenv(FACE3D_RECON.env, raising=False)
    with pytest.raises(InputError, match="--face3d-weights PATH or set FLOATALK_FACE3D_WEIGHTS"):
        Face3DFitter(None)
    state = _random_state()
    state.pop("final_layers.6.bias")
    short = tmp_path / "short.pth"
    torch.save({"net_recon": state}, short)
    with pytest.raises(InputError, match=r"1 tensors missing \(e\.g\. final_layers\.6\.bias\)") as info:
        Face3DFitter(short)
    assert "\n" not in str(info.value) and "--face3d-weights" in str(info.value)
    other = tmp_path / "other.pth"
    torch.save({"net_recon": [1, 2, 3]}, other)
    with pytest.raises(InputError, match="net_recon"):
        Face3DFitter(other)
    garbage = tmp_path / "garbage.pth"
    garbage.write_text("hello")
    with pytest.raises(InputError, match="not a readable weights file"):
        Face3DFitter(garbage)


@pytest.mark.skipif(
    CARPHONE is None or importlib.util.find_spec("mediapipe") is None, reason="needs carphone and mediapipe"
)
def test_real_frames_give_expression_and_pose_tracks_and_faceless_frames_nan(fitter):
    from floatalk.io.video_reader import read_video_frames

    frames = read_video_frames(CARPHONE)[:3]
    clip = np.concatenate([frames, np.zeros((1, *frames.shape[1:]), np.uint8)])
    params = fitter.track(clip)
    assert params.expression.shape == (4, 64) and params.pose.shape == (4, 6)
    assert np.isfinite(params.expression[:3]).all() and np.isfinite(params.pose[:3]).all()
    assert np.isnan(params.expression[3]).all() and np.isnan(params.pose[3]).all()
    with pytest.raises(InputError, match="no frames"):
        fitter.track([])
