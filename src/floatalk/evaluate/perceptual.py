"""LPIPS (v0.1, AlexNet): the perceptual distance of FLOAT's reconstruction table (Table 4).

LPIPS (Zhang et al. 2018, "The Unreasonable Effectiveness of Deep Features as a Perceptual Metric")
compares two images through the five ReLU outputs of an ImageNet AlexNet:

    d(x, y) = sum_l  mean_{h,w}  w_l . (f_l(x) / |f_l(x)| - f_l(y) / |f_l(y)|)^2

where f_l (n, C_l, H_l, W_l) is the l-th tap, each spatial position's feature vector is divided by its
L2 norm over channels (plus 1e-10), and w_l (C_l,) are the learned non-negative "linear heads" of
v0.1. Inputs are RGB in [-1, 1], shifted and scaled per channel first (:data:`INPUT_SHIFT`,
:data:`INPUT_SCALE`, the v0.1 scaling layer).

**Two files**, both local, never downloaded:

- the AlexNet trunk (:data:`LPIPS_ALEXNET`): torchvision's ``alexnet-owt-7be5be79.pth``, the ImageNet
  weights the reference ``lpips`` package loads through torchvision (its ``features.*`` tensors are
  used; ``classifier.*``, when present, is checked and ignored). The hex digits in the published
  name are the start of its SHA-256.
- the v0.1 linear heads (:data:`LPIPS_HEADS`): ``weights/v0.1/alex.pth`` inside the ``lpips``
  package (PyPI ``lpips==0.1.4``, installed without its dependencies by ``make install``; only the
  file is read, the package is not imported). Found in that package unless $FLOATALK_LPIPS_HEADS
  names another file; its SHA-256 is the one of the file in the published wheel.

The network (:class:`LPIPSNet`) is written here with the parameter names of those two files; the
tests check it against the reference package's own forward pass on random weights.

**Frames**: each real frame is compared with the generated frame shown at the same time, at the real
clip's resolution (a generated clip of another size is resized to it with antialiased bilinear
filtering); the reported value is the mean over all frames of all clips. The paper does not state its
resolution for Table 4; its frames are 512².
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError
from .backbones import BackboneFile, CheckedBackbone, check_layout, load_state_dict

__all__ = [
    "INPUT_SCALE",
    "INPUT_SHIFT",
    "LPIPS_ALEXNET",
    "LPIPS_HEADS",
    "AlexNetTaps",
    "LPIPSDistance",
    "LPIPSNet",
    "alexnet_layout",
    "heads_layout",
    "lpips_heads_path",
]

LPIPS_ALEXNET = BackboneFile(
    name="LPIPS AlexNet",
    option="--lpips-weights",
    env="FLOATALK_LPIPS_WEIGHTS",
    filename="alexnet-owt-7be5be79.pth",
    origin="the torchvision model zoo (download.pytorch.org/models/alexnet-owt-7be5be79.pth)",
    sha256="7be5be79",
)

LPIPS_HEADS = BackboneFile(
    name="LPIPS v0.1 AlexNet heads",
    option="FLOATALK_LPIPS_HEADS",
    env="FLOATALK_LPIPS_HEADS",
    filename="weights/v0.1/alex.pth",
    origin="the PyPI package lpips==0.1.4 (pip install --no-deps lpips==0.1.4)",
    sha256="df73285e35b22355a2df87cdb6b70b343713b667eddbda73e1977e0c860835c0",
)

#: The v0.1 scaling layer: x -> (x - shift) / scale per RGB channel, x in [-1, 1].
INPUT_SHIFT = (-0.030, -0.088, -0.188)
INPUT_SCALE = (0.458, 0.448, 0.450)
#: Channels of AlexNet's five taps (after relu1 ... relu5).
TAP_CHANNELS = (64, 192, 384, 256, 256)
#: torchvision's AlexNet classifier (present in the published file, unused by LPIPS).
_CLASSIFIER = {
    "classifier.1.weight": (4096, 256 * 6 * 6),
    "classifier.1.bias": (4096,),
    "classifier.4.weight": (4096, 4096),
    "classifier.4.bias": (4096,),
    "classifier.6.weight": (1000, 4096),
    "classifier.6.bias": (1000,),
}


class AlexNetTaps(nn.Module):
    """torchvision's AlexNet ``features`` (same indices), returning the five ReLU outputs LPIPS uses.

    (n, 3, H, W) -> [(n, 64, H/4, W/4), (n, 192, ., .), (n, 384, ., .), (n, 256, ., .), (n, 256, ., .)]
    (approximately: an 11x11 stride-4 conv, then 3x3 stride-2 max pools before taps 2 and 3).
    """

    #: Index in ``features`` after which each tap is read.
    TAPS = (1, 4, 7, 9, 11)

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(64, 192, kernel_size=5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(192, 384, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(384, 256, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(256, 256, kernel_size=3, padding=1),
            nn.ReLU(),
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        taps = []
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in self.TAPS:
                taps.append(x)
        return taps


class _Head(nn.Module):
    """One v0.1 linear head: a 1x1 conv to one channel without bias, at index 1 of ``model`` (index 0
    is the dropout of training, off at evaluation); names as in the heads file (``lin0.model.1.weight``)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.model = nn.Sequential(nn.Dropout(), nn.Conv2d(channels, 1, kernel_size=1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class LPIPSNet(nn.Module):
    """LPIPS v0.1 with AlexNet: two image batches (n, 3, H, W) in [-1, 1] -> (n,) distances (see module
    docstring for the equation). ``alexnet`` holds the trunk, ``lin0`` ... ``lin4`` the heads."""

    def __init__(self) -> None:
        super().__init__()
        self.alexnet = AlexNetTaps()
        for index, channels in enumerate(TAP_CHANNELS):
            setattr(self, f"lin{index}", _Head(channels))
        self.register_buffer("shift", torch.tensor(INPUT_SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(INPUT_SCALE).view(1, 3, 1, 1), persistent=False)

    @staticmethod
    def _unit(features: torch.Tensor) -> torch.Tensor:
        return features / (features.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        taps_x = self.alexnet((x - self.shift) / self.scale)
        taps_y = self.alexnet((y - self.shift) / self.scale)
        total = torch.zeros(x.shape[0], device=x.device, dtype=x.dtype)
        for index, (fx, fy) in enumerate(zip(taps_x, taps_y, strict=True)):
            head = getattr(self, f"lin{index}")
            total = total + head((self._unit(fx) - self._unit(fy)).pow(2)).mean(dim=(1, 2, 3))
        return total


def alexnet_layout() -> dict[str, torch.Tensor]:
    """The trunk's tensors (``features.*``) with initial values: what the AlexNet file must hold
    (besides, optionally, torchvision's ``classifier.*``)."""
    return {f"features.{k}": v.clone() for k, v in AlexNetTaps().features.state_dict().items()}


def heads_layout() -> dict[str, torch.Tensor]:
    """The five heads' tensors (``lin{k}.model.1.weight``, (1, C_k, 1, 1)) with initial values."""
    net = LPIPSNet()
    return {k: v.clone() for k, v in net.state_dict().items() if k.startswith("lin")}


def lpips_heads_path(path: str | os.PathLike | None = None) -> Path:
    """The heads file: `path`, else $FLOATALK_LPIPS_HEADS, else the one inside the installed ``lpips``
    package (located without importing it). InputError when none exists."""
    if path is not None or os.environ.get(LPIPS_HEADS.env):
        return LPIPS_HEADS.resolve(path)
    spec = importlib.util.find_spec("lpips")
    folders = [] if spec is None else list(spec.submodule_search_locations or [])
    for folder in folders:
        candidate = Path(folder) / "weights" / "v0.1" / "alex.pth"
        if candidate.is_file():
            return candidate
    raise InputError(
        f"{LPIPS_HEADS.name} not found: install them with `pip install --no-deps lpips==0.1.4` "
        f"(make install does) or set {LPIPS_HEADS.env} to an alex.pth"
    )


def _check_trunk(path: Path, state: Mapping[str, torch.Tensor]) -> CheckedBackbone:
    expected = {k: tuple(v.shape) for k, v in alexnet_layout().items()}
    if any(k.startswith("classifier.") for k in state):
        expected.update(_CLASSIFIER)
    return check_layout(LPIPS_ALEXNET, path, state, expected)


class LPIPSDistance:
    """LPIPS between paired frames, from a checked AlexNet file and the v0.1 heads.

    Args:
        path: the AlexNet file (else $FLOATALK_LPIPS_WEIGHTS).
        heads: the heads file (else $FLOATALK_LPIPS_HEADS, else the installed ``lpips`` package's).
        device: where the network runs.
        batch_size: frame pairs per forward pass.

    Attributes:
        backbone: the checked AlexNet file; heads: the checked heads file.
    """

    def __init__(
        self,
        path: str | os.PathLike | None = None,
        heads: str | os.PathLike | None = None,
        device: str = "cpu",
        batch_size: int = 16,
    ):
        if batch_size < 1:
            raise InputError(f"LPIPS batch size must be at least 1, got {batch_size}")
        trunk_path = LPIPS_ALEXNET.resolve(path)
        trunk = {k: v.float() for k, v in load_state_dict(LPIPS_ALEXNET, trunk_path).items()}
        self.backbone: CheckedBackbone = _check_trunk(trunk_path, trunk)
        heads_path = lpips_heads_path(heads)
        head_state = {k: v.float() for k, v in load_state_dict(LPIPS_HEADS, heads_path).items()}
        expected = {k: tuple(v.shape) for k, v in heads_layout().items()}
        self.heads: CheckedBackbone = check_layout(LPIPS_HEADS, heads_path, head_state, expected)
        net = LPIPSNet()
        state = {f"alexnet.{k}": v for k, v in trunk.items() if k.startswith("features.")}
        net.load_state_dict({**state, **head_state}, strict=True)
        self.net = net.to(device).eval().requires_grad_(False)
        self.device = torch.device(device)
        self.batch_size = batch_size

    @torch.inference_mode()
    def __call__(self, real: np.ndarray, generated: np.ndarray) -> np.ndarray:
        """uint8 RGB (T, H, W, 3) and (T, H', W', 3), paired by index -> (T,) float64 distances."""
        a, b = np.asarray(real), np.asarray(generated)
        for name, arr in (("real", a), ("generated", b)):
            if arr.ndim != 4 or arr.shape[-1] != 3 or arr.dtype != np.uint8:
                raise InputError(
                    f"LPIPS wants uint8 RGB frames (T, H, W, 3); the {name} ones are {arr.dtype} {arr.shape}"
                )
        if len(a) != len(b):
            raise InputError(f"LPIPS pairs frames one to one, got {len(a)} real and {len(b)} generated")
        out = np.zeros(len(a))
        for start in range(0, len(a), self.batch_size):
            x = self._tensor(a[start : start + self.batch_size], a.shape[1:3])
            y = self._tensor(b[start : start + self.batch_size], a.shape[1:3])
            out[start : start + len(x)] = self.net(x, y).double().cpu().numpy()
        return out

    def _tensor(self, frames: np.ndarray, size: tuple[int, int]) -> torch.Tensor:
        x = torch.from_numpy(np.ascontiguousarray(frames)).to(self.device).permute(0, 3, 1, 2).float()
        if tuple(x.shape[2:]) != tuple(size):
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
        return x / 127.5 - 1.0
