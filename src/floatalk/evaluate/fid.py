"""FID (paper Eq. 22 on frames): Fréchet distance of Inception-v3 pool features, through torch-fidelity.

The network is the standard FID Inception (TensorFlow's 2015-12-05 graph, converted to PyTorch), as
implemented by torch-fidelity's ``FeatureExtractorInceptionV3``: uint8 RGB frames of any size,
resized inside to 299² with TensorFlow 1.x's bilinear rule, 2048-d pool features. Its weights are read
from a local file (:data:`FID_INCEPTION`; torch-fidelity would otherwise download them), checked for
names and shapes and compared with the hash published in its name.

torch-fidelity (``pip install --no-deps torch-fidelity``; the Makefile does) imports torchvision at
package level for datasets and other feature extractors this metric does not use, and PyPI's
torchvision does not load beside this project's torch. When torchvision cannot be imported, an empty
placeholder stands in for it only while torch-fidelity is being imported, and is removed again, so
nothing else in the process sees it.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
import tempfile
import types
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import torch

from ..errors import InputError
from .backbones import BackboneFile, CheckedBackbone, check_layout, load_state_dict
from .frechet import frechet_distance

__all__ = ["FID_INCEPTION", "InceptionFeatures", "fid", "inception_layout"]

FID_INCEPTION = BackboneFile(
    name="FID Inception-v3",
    option="--fid-weights",
    env="FLOATALK_FID_WEIGHTS",
    filename="weights-inception-2015-12-05-6726825d.pth",
    origin=(
        "github.com/toshas/torch-fidelity/releases/tag/v0.2.0 "
        "(also pytorch-fid's pt_inception-2015-12-05-6726825d.pth)"
    ),
    sha256="6726825d",  # the digits in its name: the SHA-256 start by torch.hub convention (unverified)
)

FEATURES = "2048"


class _Placeholder(types.ModuleType):
    """An importable empty module whose attributes are placeholders: empty classes for capitalised
    names (torch-fidelity subclasses torchvision's dataset classes), modules otherwise."""

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        full = f"{self.__name__}.{name}"
        value = type(name, (), {"__module__": self.__name__}) if name[:1].isupper() else _Placeholder(full)
        setattr(self, name, value)
        return value


def _import_torch_fidelity():
    """torch_fidelity's InceptionV3 extractor class; InputError when torch-fidelity is not installed."""
    try:
        importlib.import_module("torchvision")
        stub = False
    except Exception:  # missing, or a CUDA build that does not load beside this torch
        stub = True
    added: list[str] = []
    if stub:
        for name in (
            "torchvision",
            "torchvision.datasets",
            "torchvision.transforms",
            "torchvision.transforms.functional",
        ):
            if name not in sys.modules or isinstance(sys.modules[name], _Placeholder):
                sys.modules[name] = _Placeholder(name)
                added.append(name)
    try:
        module = importlib.import_module("torch_fidelity.feature_extractor_inceptionv3")
    except ImportError as exc:
        raise InputError(
            f"FID needs torch-fidelity ({exc}); install it with `pip install --no-deps torch-fidelity`"
        ) from None
    finally:
        for name in added:
            sys.modules.pop(name, None)
    return module.FeatureExtractorInceptionV3


@contextlib.contextmanager
def _skeleton(cls):
    """A subclass of `cls` that builds its layers but loads no weights (for the expected layout)."""

    class Skeleton(cls):
        def load_state_dict(self, state_dict, strict=True, assign=False):
            return None

    with tempfile.TemporaryDirectory() as tmp:
        empty = Path(tmp) / "empty.pth"
        torch.save({}, empty)
        yield lambda: Skeleton("inception-v3-compat", [FEATURES], feature_extractor_weights_path=str(empty))


def inception_layout() -> dict[str, torch.Tensor]:
    """The extractor's state dict with its initial (random) values: the names and shapes a weights
    file must have (also how the tests make a random-weight file of the right format)."""
    cls = _import_torch_fidelity()
    with _skeleton(cls) as build:
        return {k: v.clone() for k, v in build().state_dict().items()}


class InceptionFeatures:
    """2048-d FID features of uint8 frames, from a checked local weights file.

    Args:
        path: the weights file (else $FLOATALK_FID_WEIGHTS).
        batch_size: frames per forward pass.
        device: where the network runs.
    """

    def __init__(self, path: str | os.PathLike | None = None, batch_size: int = 32, device: str = "cpu"):
        resolved = FID_INCEPTION.resolve(path)
        state = load_state_dict(FID_INCEPTION, resolved)
        with _skeleton(_import_torch_fidelity()) as build:
            net = build()
        layout = {k: tuple(v.shape) for k, v in net.state_dict().items()}
        self.backbone: CheckedBackbone = check_layout(FID_INCEPTION, resolved, state, layout)
        torch.nn.Module.load_state_dict(net, state)  # the skeleton's own override loads nothing
        self.net = net.to(device).eval().requires_grad_(False)
        self.batch_size = batch_size
        self.device = torch.device(device)

    @torch.inference_mode()
    def __call__(self, frames: Iterable[np.ndarray]) -> np.ndarray:
        """frames: uint8 arrays (H, W, 3) or batches (n, H, W, 3) -> (N, 2048) float64 features."""
        out = [self._batch(b) for b in _batches(frames, self.batch_size)]
        return np.concatenate(out) if out else np.zeros((0, 2048))

    def _batch(self, frames: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).to(self.device)
        (features,) = self.net(x)
        return features.double().cpu().numpy()


def _batches(frames: Iterable[np.ndarray], size: int) -> Iterator[np.ndarray]:
    """Regroup frames (H, W, 3) or batches (n, H, W, 3) of uint8 into batches of `size`."""
    pending: list[np.ndarray] = []
    count = 0
    for item in frames:
        arr = np.asarray(item)
        if arr.ndim == 3:
            arr = arr[None]
        if arr.ndim != 4 or arr.shape[-1] != 3 or arr.dtype != np.uint8:
            raise InputError(f"FID wants uint8 RGB frames (H, W, 3), got {arr.dtype} {arr.shape}")
        pending.append(arr)
        count += arr.shape[0]
        while count >= size:
            joined = np.concatenate(pending)
            yield joined[:size]
            rest = joined[size:]
            pending, count = ([rest] if len(rest) else []), len(rest)
    if count:
        yield np.concatenate(pending)


def fid(real: np.ndarray, generated: np.ndarray) -> float:
    """FID between two sets of Inception features (n, 2048) (Eq. 22)."""
    return frechet_distance(real, generated)
