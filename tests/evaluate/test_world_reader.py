"""The world reader: the synthetic world's renderer fitted back to its own frames."""

from __future__ import annotations

import numpy as np
import pytest

from floatalk.data import synthetic as syn
from floatalk.errors import InputError
from floatalk.evaluate.world_reader import EXPRESSION_CENTRES, WorldReader, expression_labels

SIZE = 48
STEPS = (50, 30, 20)


def tracks_for(poses: np.ndarray, expressions: list[str], mouth: np.ndarray) -> dict[str, np.ndarray]:
    smile, raise_, inner = np.array([EXPRESSION_CENTRES[e] for e in expressions], np.float32).T
    return {
        "pose": poses.astype(np.float32),
        "mouth_open": mouth.astype(np.float32),
        "blink": np.zeros(len(poses), np.float32),
        "smile": smile,
        "brow_raise": raise_,
        "brow_inner": inner,
    }


@pytest.fixture(scope="module")
def rendered() -> tuple[np.ndarray, dict[str, np.ndarray], list[str]]:
    rng = np.random.default_rng(0)
    n = 10
    poses = np.zeros((n, 6))
    poses[:, :3] = rng.uniform(-6.0, 6.0, size=(n, 3))  # roll, yaw, pitch (deg)
    poses[:, 3:5] = rng.uniform(-0.03, 0.03, size=(n, 2))
    poses[:, 5] = 1.0 + rng.uniform(-0.03, 0.03, size=n)
    emotions = [list(EXPRESSION_CENTRES)[i % 5] for i in range(n)]
    tracks = tracks_for(poses, emotions, rng.uniform(0.0, 0.8, size=n))
    frames = syn.render_frames(syn.load_portraits(["astronaut"])[0], SIZE, tracks)
    return frames, tracks, emotions


def test_reads_back_the_pose_and_expression_it_was_rendered_with(rendered) -> None:
    frames, tracks, emotions = rendered
    reading = WorldReader("astronaut", SIZE, steps=STEPS).read(frames)
    error = np.abs(reading.pose[:, :3] - tracks["pose"][:, :3])
    assert error.max() < 0.6, error.max(0)  # the angles span ±6 deg
    assert np.abs(reading.pose[:, 3:5] - tracks["pose"][:, 3:5]).max() < 0.01
    assert reading.emotions() == emotions
    np.testing.assert_allclose(reading.angles, reading.pose[:, [1, 2, 0]])
    assert reading.residual.mean() < 6.0


def test_a_still_head_reads_as_still_whatever_the_mouth_and_expression_do() -> None:
    n = 8
    poses = np.tile([0.0, 0.0, 0.0, 0.0, 0.0, 1.0], (n, 1))
    emotions = ["neutral", "happy", "sad", "angry", "surprise", "neutral", "happy", "sad"]
    tracks = tracks_for(poses, emotions, np.linspace(0.0, 1.0, n))
    frames = syn.render_frames(syn.load_portraits(["biden"])[0], SIZE, tracks)
    reading = WorldReader("biden", SIZE, steps=STEPS).read(frames)
    assert reading.angles.std(0).max() < 0.3  # the landmarker reads the mouth as ~1 deg of pitch
    assert reading.emotions() == emotions


def test_another_portrait_does_not_fit(rendered) -> None:
    frames, _, _ = rendered
    right = WorldReader("astronaut", SIZE, steps=STEPS).read(frames[:3]).residual.mean()
    wrong = WorldReader("biden", SIZE, steps=STEPS).read(frames[:3]).residual.mean()
    assert wrong > 3 * right


def test_expression_labels_are_the_nearest_centre() -> None:
    assert expression_labels(np.array([[0.9, 0.0, 0.1], [0.0, 0.7, 0.0], [-0.6, -0.5, -0.7]])) == [
        "happy",
        "surprise",
        "angry",
    ]


def test_bad_input_is_refused() -> None:
    with pytest.raises(InputError, match="unknown world portrait"):
        WorldReader("no-such-face", SIZE)
    with pytest.raises(InputError, match="dataset's size"):
        WorldReader("astronaut", SIZE).read(np.zeros((2, SIZE + 1, SIZE + 1, 3), np.uint8))
