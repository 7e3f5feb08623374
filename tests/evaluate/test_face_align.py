"""Five-point alignment: the similarity fit, the warp, and the points on a real face."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from floatalk.errors import InputError
from floatalk.evaluate.face_align import (
    ARCFACE_TEMPLATE,
    FivePointLocator,
    five_points_from_mesh,
    similarity_transform,
    warp_face,
)
from sample_clips import CARPHONE


def _apply(matrix, points):
    return points @ matrix[:, :2].T + matrix[:, 2]


def test_similarity_transform_recovers_a_known_map_and_fits_noisy_points_best():
    angle, scale, shift = 0.3, 1.7, np.array([12.0, -5.0])
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    source = np.random.default_rng(0).random((5, 2)) * 100
    target = scale * source @ rotation.T + shift
    matrix = similarity_transform(source, target)
    np.testing.assert_allclose(matrix[:, :2], scale * rotation, atol=1e-9)
    np.testing.assert_allclose(_apply(matrix, source), target, atol=1e-9)
    noisy = target + np.random.default_rng(1).normal(0, 2, target.shape)
    best = similarity_transform(source, noisy)
    error = ((_apply(best, source) - noisy) ** 2).sum()
    for delta in (1e-3, -1e-3):  # any nearby similarity fits worse
        moved = best.copy()
        moved[:, 2] += delta * 50
        assert ((_apply(moved, source) - noisy) ** 2).sum() > error
    mirrored = target * np.array([-1.0, 1.0])  # no reflection: a mirror image cannot be fitted exactly
    assert not np.allclose(_apply(similarity_transform(source, mirrored), source), mirrored, atol=1e-3)
    with pytest.raises(InputError, match="all the same point"):
        similarity_transform(np.ones((5, 2)), target)


def test_warp_moves_a_marked_pixel_where_the_matrix_says():
    image = np.zeros((80, 100, 3), np.uint8)
    image[30:33, 60:63] = 255  # a bright 3x3 spot centred on (61, 31)
    matrix = np.array([[0.5, 0.0, 4.0], [0.0, 0.5, 2.0]])  # (61, 31) -> (34.5, 17.5)
    out = warp_face(image, matrix, (56, 40))
    assert out.shape == (40, 56, 3)
    y, x = np.unravel_index(out[..., 0].astype(float).argmax(), out.shape[:2])
    assert abs(x - 34.5) <= 1 and abs(y - 17.5) <= 1
    identity = warp_face(image, np.array([[1.0, 0, 0], [0, 1.0, 0]]), (100, 80))
    np.testing.assert_array_equal(identity, image)


def test_five_points_are_ordered_left_to_right():
    mesh = np.zeros((478, 3))
    mesh[468, :2], mesh[473, :2] = (70, 50), (30, 50)  # irises given right first
    mesh[1, :2] = (50, 70)
    mesh[61, :2], mesh[291, :2] = (35, 90), (65, 90)
    points = five_points_from_mesh(mesh)
    np.testing.assert_array_equal(points, [[30, 50], [70, 50], [50, 70], [35, 90], [65, 90]])
    with pytest.raises(InputError, match="478 refined"):
        five_points_from_mesh(np.zeros((468, 3)))


@pytest.mark.skipif(
    CARPHONE is None or importlib.util.find_spec("mediapipe") is None, reason="needs carphone and mediapipe"
)
def test_points_on_a_real_face_align_it_onto_the_arcface_template():
    from floatalk.io.video_reader import read_video_frames

    frame = read_video_frames(CARPHONE)[0]
    with FivePointLocator() as locator:
        points = locator.points(frame)
        assert locator.points(np.zeros((120, 160, 3), np.uint8)) is None
    assert points is not None
    left_eye, right_eye, nose, mouth_left, mouth_right = points
    assert left_eye[0] < nose[0] < right_eye[0] and mouth_left[0] < mouth_right[0]
    assert max(left_eye[1], right_eye[1]) < nose[1] < min(mouth_left[1], mouth_right[1])
    matrix = similarity_transform(points, ARCFACE_TEMPLATE)
    residual = np.abs(_apply(matrix, points) - ARCFACE_TEMPLATE).max()
    assert residual < 8  # a real face is close to a similarity image of the template (pixels of 112)
    crop = warp_face(frame, matrix, 112)
    assert crop.shape == (112, 112, 3) and crop.std() > 10
