"""CSIM: cosine similarity of ArcFace identity embeddings, the source frame against the generated frames.

FLOAT (§5.3, §B.3) measures identity preservation as the cosine similarity between the ArcFace
embedding of the source image, the first frame of the real clip, and those of the generated frames.

The network is insightface's ``arcface_torch`` iresnet100 (:class:`IResNet`, layers 3, 13, 30, 3 of
"improved" basic blocks, 512-d embedding; written here from its description, with the parameter names
of the published ``backbone.pth`` so that file loads strictly). Its input is a 112x112 RGB face aligned
by five points onto the ArcFace template (:mod:`floatalk.evaluate.face_align`), scaled to [-1, 1]
as ``(x / 255 - 0.5) / 0.5``; the output is L2-normalised. At evaluation the batch norms use their
running statistics and the dropout before ``fc`` is off (p = 0 in the published models anyway); the
``fp16`` training flag only switches mixed precision on a GPU and does not change the file's names.

The weights come from a local file (:data:`CSIM_ARCFACE`; never downloaded): the model zoo's
``backbone.pth`` (e.g. ``ms1mv3_arcface_r100_fp16`` or ``glint360k_cosface_r100_fp16_0.1``), the
backbone's plain state dict. Its tensors are cast to float32 on loading (a file stored in half
precision is accepted). The published files, saved by PyTorch >= 1.6, hold the batch norms'
``num_batches_tracked`` counters; they are unused at evaluation and files without them are accepted
too. A ``module.`` prefix on every name (a state dict taken from the distributed wrapper) is removed.
No hash is published for the model zoo files, so the report cannot say that a file is the published
one.

Comparability: the published CSIM pipelines align faces with the five points of a face detector
(RetinaFace / MTCNN) whose weights cannot be had here; the points here come from MediaPipe's refined
face mesh (iris centres, nose tip, mouth corners), so crops differ by a few pixels and the numbers are
close to, not identical with, published CSIM values; the paper also does not say which ArcFace model
it used. Numbers from the same file and this code are comparable with each other.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from torch import nn

from ..errors import InputError
from .backbones import BackboneFile, load_checked, load_state_dict
from .face_align import ARCFACE_TEMPLATE, FivePointLocator, similarity_transform, warp_face

__all__ = [
    "CROP_SIZE",
    "CSIM_ARCFACE",
    "EMBEDDING_DIM",
    "ArcFaceEmbedder",
    "IResNet",
    "arcface_layout",
    "clip_csim",
    "csim",
    "iresnet100",
]

CSIM_ARCFACE = BackboneFile(
    name="CSIM ArcFace iresnet100",
    option="--arcface-weights",
    env="FLOATALK_ARCFACE_WEIGHTS",
    filename="backbone.pth",
    origin="insightface arcface_torch model zoo (ms1mv3_arcface_r100_fp16/backbone.pth)",
    sha256=None,
)

#: Side of the aligned face crop the network takes.
CROP_SIZE = 112
#: Length of the identity embedding.
EMBEDDING_DIM = 512
#: Blocks per stage of iresnet100, and the stages' widths.
IRESNET100_LAYERS = (3, 13, 30, 3)
_WIDTHS = (64, 128, 256, 512)


def _conv3x3(inputs: int, outputs: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(inputs, outputs, kernel_size=3, stride=stride, padding=1, bias=False)


class IBasicBlock(nn.Module):
    """Pre-activation residual block: BN, 3x3 conv, BN, PReLU, 3x3 conv (strided), BN, plus the shortcut.

    The shortcut is the identity, or a strided 1x1 conv + BN (``downsample``) where the shape changes.
    (n, inputs, H, W) -> (n, width, H / stride, W / stride).
    """

    def __init__(self, inputs: int, width: int, stride: int = 1) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(inputs, eps=1e-5)
        self.conv1 = _conv3x3(inputs, width)
        self.bn2 = nn.BatchNorm2d(width, eps=1e-5)
        self.prelu = nn.PReLU(width)
        self.conv2 = _conv3x3(width, width, stride)
        self.bn3 = nn.BatchNorm2d(width, eps=1e-5)
        self.downsample: nn.Sequential | None = None
        if stride != 1 or inputs != width:
            self.downsample = nn.Sequential(
                nn.Conv2d(inputs, width, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(width, eps=1e-5),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        shortcut = x if self.downsample is None else self.downsample(x)
        return branch + shortcut


class IResNet(nn.Module):
    """arcface_torch's IResNet: a 3x3 stem, four stages that each halve the side, BN, fc, BN.

    Input (n, 3, 112, 112) normalised to [-1, 1]; output (n, 512) embeddings (not normalised).
    Each stage starts with a stride-2 block, so 112 -> 56 -> 28 -> 14 -> 7 and ``fc`` maps
    512 * 7 * 7 features to the embedding.

    Args:
        layers: blocks per stage ((3, 13, 30, 3) for iresnet100).
        embedding: length of the output.
    """

    def __init__(self, layers: tuple[int, int, int, int] = IRESNET100_LAYERS, embedding: int = EMBEDDING_DIM):
        super().__init__()
        self.conv1 = _conv3x3(3, _WIDTHS[0])
        self.bn1 = nn.BatchNorm2d(_WIDTHS[0], eps=1e-5)
        self.prelu = nn.PReLU(_WIDTHS[0])
        inputs = _WIDTHS[0]
        for index, (count, width) in enumerate(zip(layers, _WIDTHS, strict=True), start=1):
            blocks = [IBasicBlock(inputs, width, stride=2)]
            blocks += [IBasicBlock(width, width) for _ in range(count - 1)]
            setattr(self, f"layer{index}", nn.Sequential(*blocks))
            inputs = width
        self.bn2 = nn.BatchNorm2d(inputs, eps=1e-5)
        side = CROP_SIZE // 16
        self.fc = nn.Linear(inputs * side * side, embedding)
        # The original keeps this norm's scale fixed at 1 during training; it is still a stored tensor.
        self.features = nn.BatchNorm1d(embedding, eps=1e-5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.prelu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = torch.flatten(self.bn2(x), 1)
        return self.features(self.fc(x))


def iresnet100() -> IResNet:
    """The iresnet100 of the arcface_torch model zoo (about 65 M parameters), randomly initialised."""
    return IResNet(IRESNET100_LAYERS, EMBEDDING_DIM)


def arcface_layout() -> dict[str, torch.Tensor]:
    """iresnet100's state dict with its initial (random) values: the names and shapes a weights file
    must have (also how the tests make a random-weight file of the right format)."""
    return {k: v.clone() for k, v in iresnet100().state_dict().items()}


class ArcFaceEmbedder:
    """L2-normalised 512-d ArcFace embeddings of faces, from a checked local iresnet100 file.

    Args:
        path: the weights file (else $FLOATALK_ARCFACE_WEIGHTS).
        device: where the network runs.
        batch_size: crops per forward pass.

    Attributes:
        backbone: the checked file (``backbone.describe()`` for reports).
    """

    def __init__(self, path: str | os.PathLike | None = None, device: str = "cpu", batch_size: int = 16):
        if batch_size < 1:
            raise InputError(f"CSIM batch size must be at least 1, got {batch_size}")
        resolved = CSIM_ARCFACE.resolve(path)
        state = load_state_dict(CSIM_ARCFACE, resolved)
        with torch.device("meta"):  # shapes only: no time spent on a random initialisation
            net = iresnet100()
        net, self.backbone = load_checked(CSIM_ARCFACE, resolved, net, state)
        self.net = net.to(device)
        self.device = torch.device(device)
        self.batch_size = batch_size

    @torch.inference_mode()
    def embed_aligned(self, crops: np.ndarray) -> np.ndarray:
        """Aligned uint8 RGB face crops (n, 112, 112, 3) -> (n, 512) float64 unit-length embeddings."""
        arr = np.asarray(crops)
        if arr.ndim != 4 or arr.shape[1:] != (CROP_SIZE, CROP_SIZE, 3) or arr.dtype != np.uint8:
            raise InputError(
                f"ArcFace wants aligned uint8 RGB crops (n, {CROP_SIZE}, {CROP_SIZE}, 3), "
                f"got {arr.dtype} {arr.shape}"
            )
        out = np.zeros((len(arr), EMBEDDING_DIM))
        for start in range(0, len(arr), self.batch_size):
            batch = torch.from_numpy(np.ascontiguousarray(arr[start : start + self.batch_size]))
            x = batch.to(self.device).permute(0, 3, 1, 2).float()
            x = (x / 255.0 - 0.5) / 0.5
            out[start : start + len(batch)] = self.net(x).double().cpu().numpy()
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(norms, 1e-12)

    def embed_clip(self, frames: np.ndarray) -> np.ndarray:
        """uint8 RGB frames (T, H, W, 3) of one clip, in video order -> (T, 512) unit-length embeddings.

        Each frame's face is found by its five points (MediaPipe's face mesh, one tracker for the
        clip), aligned onto the ArcFace template at 112² and embedded; rows of frames without a face
        are NaN.
        """
        arr = np.asarray(frames)
        if arr.ndim != 4 or arr.shape[-1] != 3 or arr.dtype != np.uint8:
            raise InputError(f"CSIM wants uint8 RGB frames (T, H, W, 3), got {arr.dtype} {arr.shape}")
        out = np.full((len(arr), EMBEDDING_DIM), np.nan)
        found: list[int] = []
        crops: list[np.ndarray] = []
        with FivePointLocator() as locator:
            for index, frame in enumerate(arr):
                points = locator.points(frame)
                if points is None:
                    continue
                matrix = similarity_transform(points, ARCFACE_TEMPLATE)
                crops.append(warp_face(frame, matrix, CROP_SIZE))
                found.append(index)
        if crops:
            out[found] = self.embed_aligned(np.stack(crops))
        return out


def csim(source: np.ndarray, generated: np.ndarray) -> float:
    """Mean cosine similarity between one embedding (d,) and the rows of (n, d) that are not NaN.

    Rows with any NaN (frames without a face) are left out; InputError when the source has no face or
    no row is left.
    """
    s = np.asarray(source, dtype=np.float64)
    g = np.asarray(generated, dtype=np.float64)
    if s.ndim != 1 or g.ndim != 2 or g.shape[1] != s.shape[0]:
        raise InputError(f"CSIM wants embeddings (d,) and (n, d), got {s.shape} and {g.shape}")
    if not np.isfinite(s).all():
        raise InputError("CSIM: no face was found in the source frame")
    rows = g[np.isfinite(g).all(axis=1)]
    if len(rows) == 0:
        raise InputError(f"CSIM: no face was found in any of the {len(g)} generated frames")
    s_norm = np.linalg.norm(s)
    r_norm = np.linalg.norm(rows, axis=1)
    if s_norm == 0 or (r_norm == 0).any():
        raise InputError("CSIM: an embedding is zero (its cosine is undefined)")
    return float(np.mean(rows @ s / (r_norm * s_norm)))


def clip_csim(embedder: ArcFaceEmbedder, source_frame: np.ndarray, frames: np.ndarray) -> tuple[float, int]:
    """CSIM of a generated clip against its source (the first real frame, FLOAT §B.3).

    Args:
        embedder: the checked ArcFace network.
        source_frame: uint8 RGB (H, W, 3), the first frame of the real clip.
        frames: uint8 RGB (T, H', W', 3), the generated clip in video order.

    Returns:
        (mean cosine over the generated frames with a face, how many frames had one).
    """
    source = np.asarray(source_frame)
    if source.ndim != 3:
        raise InputError(f"CSIM wants the source frame as uint8 RGB (H, W, 3), got {source.shape}")
    reference = embedder.embed_clip(source[None])[0]
    if not np.isfinite(reference).all():
        raise InputError("CSIM: no face was found in the source frame (the first real frame)")
    embeddings = embedder.embed_clip(frames)
    return csim(reference, embeddings), int(np.isfinite(embeddings).all(axis=1).sum())
