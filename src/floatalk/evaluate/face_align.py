"""Five facial points per frame and the similarity-transform crops that face networks are trained on.

ArcFace (CSIM) and the 3D face reconstruction network (E-FID / P-FID) both take faces aligned by five
points: the two eye centres, the nose tip and the two mouth corners, in the order of MTCNN / RetinaFace
(image-left eye, image-right eye, nose, image-left mouth corner, image-right mouth corner). Their
published pipelines detect the points with detectors whose weights are downloaded; here the points
come from the shipped MediaPipe face mesh with irises (478 landmarks: iris centres 468 and 473, nose
tip 1, mouth corners 61 and 291), sorted left to right in the image.

:func:`similarity_transform` is the least-squares rotation + uniform scale + translation
(Umeyama 1991, no reflection) taking the five points onto a template; :func:`warp_face` resamples the
crop (bilinear). With :data:`ARCFACE_TEMPLATE` and 112² this is the standard ArcFace alignment.
"""

from __future__ import annotations

from types import TracebackType

import numpy as np
from PIL import Image

from ..errors import InputError

__all__ = [
    "ARCFACE_TEMPLATE",
    "FivePointLocator",
    "five_points_from_mesh",
    "similarity_transform",
    "warp_face",
]

#: The ArcFace / insightface five-point template for 112x112 crops (pixels; x, y).
ARCFACE_TEMPLATE = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ]
)

#: Below this short side frames are enlarged by an integer factor before the mesh runs.
MIN_SIDE = 384
_IRISES = (468, 473)
_NOSE_TIP = 1
_MOUTH_CORNERS = (61, 291)


def five_points_from_mesh(mesh: np.ndarray) -> np.ndarray:
    """(478, >=2) refined face-mesh landmarks in pixels -> (5, 2): left eye, right eye, nose, mouth L, R."""
    points = np.asarray(mesh, dtype=np.float64)
    if points.ndim != 2 or points.shape[0] < 478 or points.shape[1] < 2:
        raise InputError(f"five points need the 478 refined face-mesh landmarks, got {points.shape}")
    eyes = sorted((points[i, :2] for i in _IRISES), key=lambda p: p[0])
    mouth = sorted((points[i, :2] for i in _MOUTH_CORNERS), key=lambda p: p[0])
    return np.stack([eyes[0], eyes[1], points[_NOSE_TIP, :2], mouth[0], mouth[1]])


def similarity_transform(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """(2, 3) matrix M minimising sum |M [s; 1] - t|² over point pairs, M = [sR | b], R a rotation.

    Args:
        source: (N, 2) points, N >= 2, not all equal.
        target: (N, 2) points.
    """
    src, dst = np.asarray(source, np.float64), np.asarray(target, np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2 or len(src) < 2:
        raise InputError(f"similarity_transform wants two (N, 2) point sets, got {src.shape} and {dst.shape}")
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    var = (s**2).sum() / len(src)
    if var <= 0:
        raise InputError("similarity_transform: the source points are all the same point")
    cov = d.T @ s / len(src)
    u, sigma, vt = np.linalg.svd(cov)
    sign = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[1, 1] = -1.0
    rotation = u @ sign @ vt
    scale = float(np.trace(np.diag(sigma) @ sign)) / var
    matrix = np.empty((2, 3))
    matrix[:, :2] = scale * rotation
    matrix[:, 2] = mu_d - scale * rotation @ mu_s
    return matrix


def warp_face(image: np.ndarray, matrix: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Resample uint8 RGB `image` (H, W, 3) so that pixel p of the output is image point M^-1 p.

    Args:
        matrix: (2, 3) map from image pixels to output pixels (as from :func:`similarity_transform`).
        size: output side, or (width, height).

    Returns:
        (height, width, 3) uint8, bilinear, black outside the image.
    """
    width, height = (size, size) if isinstance(size, int) else size
    forward = np.vstack([np.asarray(matrix, np.float64), [0.0, 0.0, 1.0]])
    inverse = np.linalg.inv(forward)[:2]  # output pixel -> image pixel, what PIL's AFFINE wants
    # PIL samples at pixel centres offset by 0.5: conjugate the map so integer coordinates line up.
    shift = np.array([[1.0, 0.0, 0.5], [0.0, 1.0, 0.5], [0.0, 0.0, 1.0]])
    unshift = np.array([[1.0, 0.0, -0.5], [0.0, 1.0, -0.5], [0.0, 0.0, 1.0]])
    centred = (shift @ np.vstack([inverse, [0.0, 0.0, 1.0]]) @ unshift)[:2]
    picture = Image.fromarray(np.ascontiguousarray(image))
    out = picture.transform(
        (width, height), Image.Transform.AFFINE, tuple(centred.ravel()), Image.Resampling.BILINEAR
    )
    return np.asarray(out)


class FivePointLocator:
    """The five points of one face per frame, from MediaPipe's refined face mesh in video mode.

    Frames must come in video order (the mesh tracks between them): one locator per clip.
    ``points(frame)`` returns (5, 2) pixels or None where no face is found.
    """

    def __init__(self) -> None:
        from ..face.mediapipe import FaceMesh

        self._mesh = FaceMesh(purpose="five facial points (CSIM, 3D face fitting)", refine_landmarks=True)

    def points(self, rgb: np.ndarray) -> np.ndarray | None:
        image = np.asarray(rgb)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise InputError(f"frames must be uint8 RGB (H, W, 3), got {image.dtype} {image.shape}")
        factor = max(1, -(-MIN_SIDE // min(image.shape[:2])))  # small faces: enlarge first
        if factor > 1:
            enlarged = image.repeat(factor, axis=0).repeat(factor, axis=1)
            mesh = self._mesh.landmarks(enlarged, pixel_size=(image.shape[1], image.shape[0]))
        else:
            mesh = self._mesh.landmarks(image)
        if mesh is None or len(mesh) < 478:
            return None
        return five_points_from_mesh(mesh)

    def close(self) -> None:
        self._mesh.close()

    def __enter__(self) -> FivePointLocator:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None):
        self.close()
