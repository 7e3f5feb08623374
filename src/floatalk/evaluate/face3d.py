"""3DMM coefficients per frame from Deep3DFaceRecon's ResNet-50 (E-FID / P-FID features, paper §5.3).

The paper's E-FID and P-FID are Fréchet distances of 3DMM expression (64-d) and head pose (6-d)
parameters fitted per frame; the usual fitter is the face reconstruction network of Deng et al. 2019,
"Accurate 3D Face Reconstruction with Weakly-Supervised Learning" (github.com/sicxu/Deep3DFaceRecon_pytorch).

**Network** (:class:`Face3DRecon`): a ResNet-50 trunk (torchvision's layout, v1.5 bottlenecks with the
stride on the 3x3 convolution, no ``fc``; global average pool to (n, 2048, 1, 1)) under the name
``backbone``, and ``final_layers``, seven 1x1 convolutions with bias whose outputs are concatenated in
this order into 257 coefficients (:data:`COEFFICIENTS`): identity 80, expression 64, texture 80,
angles 3 (radians, rotation about x, y, z), lighting (SH gamma) 27, translation 2 (x, y) + 1 (z).
Its parameter names are exactly those of the published ``epoch_20.pth``, which is a training
checkpoint ``{"net_recon": state dict, "opt_00": optimiser state, ...}``: the ``net_recon`` entry is
taken explicitly (a bare state dict is accepted too), checked for names and shapes
(:func:`face3d_layout`) and loaded strictly.

**Preprocessing** (:func:`align_face`): the repository's ``align_img`` on five points (eye centres,
nose tip, mouth corners; here from :class:`~floatalk.evaluate.face_align.FivePointLocator`, MTCNN in
the original). With the image's y axis flipped (y' = H - 1 - y), an affine camera is fitted by least
squares from the five standard 3-D landmarks of the BFM mean face (:data:`STANDARD_LANDMARKS_3D`, from
the repository's ``BFM/similarity_Lm3D_all.mat``) to the points; its scale s (the mean norm of the two
projection rows) and translation t give the image resize factor 102 / s and the 224² crop that puts t
at the centre. This is scale and translation only: the face is not rotated (the network estimates
roll). The image is resized with PIL's bicubic filter and cropped (black outside), then fed as RGB in
[0, 1] without further normalisation.

**Comparability**: with the published checkpoint the network and the alignment rule are those of the
original, so the coefficients are close to what the reference pipeline gives; the five points come
from MediaPipe's face mesh (iris centres for eye centres) instead of MTCNN, so crops differ by a few
pixels and E-FID / P-FID are close to, but not bit-comparable with, published numbers. The published
file has no published hash (:data:`FACE3D_RECON`), so reports cannot confirm it is the published one.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import numpy as np
import torch
from PIL import Image
from torch import nn

from ..errors import InputError
from .backbones import BackboneFile, CheckedBackbone, check_layout, load_state_dict
from .face_align import FivePointLocator
from .face_params import FaceParameters

__all__ = [
    "COEFFICIENTS",
    "CROP_SIZE",
    "FACE3D_RECON",
    "RESCALE_FACTOR",
    "STANDARD_LANDMARKS_3D",
    "Face3DFitter",
    "Face3DRecon",
    "align_face",
    "face3d_layout",
    "fit_affine_camera",
    "split_coefficients",
]

FACE3D_RECON = BackboneFile(
    name="3DMM Deep3DFaceRecon ResNet-50",
    option="--face3d-weights",
    env="FLOATALK_FACE3D_WEIGHTS",
    filename="epoch_20.pth",
    origin="github.com/sicxu/Deep3DFaceRecon_pytorch (checkpoints/face_recon_feat0.2_augment/epoch_20.pth)",
    sha256=None,
)

#: The coefficient groups in output order and their sizes (sum 257). The translation comes from two
#: heads (x, y: 2; z: 1) and is one group of 3 here.
COEFFICIENTS: dict[str, int] = {"id": 80, "exp": 64, "tex": 80, "angle": 3, "gamma": 27, "trans": 3}
#: Output sizes of the seven 1x1 heads in ``final_layers``, in order.
HEAD_SIZES = (80, 64, 80, 3, 27, 2, 1)
#: The aligned crop's side and the resize rule's constant (pixels per unit of the standard landmarks).
CROP_SIZE = 224
RESCALE_FACTOR = 102.0

#: The five standard 3-D landmarks of the BFM mean face used by ``align_img`` (units of the model;
#: x right, y up, z towards the camera), in the five-point order (image-left eye, image-right eye,
#: nose tip, image-left mouth corner, image-right mouth corner). From the 68 points of
#: ``BFM/similarity_Lm3D_all.mat``: eyes are the means of points 37/40 and 43/46 (1-based), the nose
#: point 31, the mouth corners 49 and 55.
STANDARD_LANDMARKS_3D = np.array(
    [
        [-0.311486572, 0.2903607786, 0.1337795258],
        [0.3097988665, 0.2897203565, 0.1317952573],
        [0.0032534988, -0.0461793244, 0.5524424314],
        [-0.2521692812, -0.3813391626, 0.2240573168],
        [0.2484661937, -0.3812823594, 0.2223576903],
    ]
)


class _Bottleneck(nn.Module):
    """ResNet v1.5 bottleneck: 1x1 -> 3x3 (stride here) -> 1x1 (x4 channels), BN after each, residual."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1, project: bool = False):
        super().__init__()
        out = planes * 4
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = (
            nn.Sequential(nn.Conv2d(inplanes, out, 1, stride=stride, bias=False), nn.BatchNorm2d(out))
            if project
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(y + shortcut)


class _ResNet50Trunk(nn.Module):
    """torchvision's ResNet-50 without ``fc``: (n, 3, H, W) -> (n, 2048, 1, 1), globally average-pooled."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        inplanes = 64
        for index, (planes, blocks, stride) in enumerate(((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2))):
            stage = [_Bottleneck(inplanes, planes, stride, project=True)]
            stage += [_Bottleneck(planes * 4, planes) for _ in range(blocks - 1)]
            setattr(self, f"layer{index + 1}", nn.Sequential(*stage))
            inplanes = planes * 4
        self.avgpool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.avgpool(x)


class Face3DRecon(nn.Module):
    """Deep3DFaceRecon's coefficient regressor: aligned faces (n, 3, 224, 224) RGB in [0, 1] -> (n, 257).

    Initialised as the original before training: convolutions of the trunk Kaiming-normal (fan out),
    batch norms identity, the seven heads zero.
    """

    def __init__(self):
        super().__init__()
        self.backbone = _ResNet50Trunk()
        self.final_layers = nn.ModuleList(nn.Conv2d(2048, size, 1, bias=True) for size in HEAD_SIZES)
        for module in self.backbone.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        for head in self.final_layers:
            nn.init.zeros_(head.weight)
            nn.init.zeros_(head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.backbone(x)
        return torch.cat([head(features) for head in self.final_layers], dim=1).flatten(1)


def face3d_layout() -> dict[str, torch.Tensor]:
    """The regressor's state dict with its initial values: the names and shapes the ``net_recon`` entry
    of a checkpoint (or a bare state dict) must have; also how the tests make random-weight files."""
    return {k: v.clone() for k, v in Face3DRecon().state_dict().items()}


def split_coefficients(coefficients: np.ndarray) -> dict[str, np.ndarray]:
    """(n, 257) -> {"id": (n, 80), "exp": (n, 64), "tex": (n, 80), "angle": (n, 3), "gamma": (n, 27),
    "trans": (n, 3)}, the slices of the original's ``split_coeff``."""
    coefficients = np.asarray(coefficients)
    if coefficients.ndim != 2 or coefficients.shape[1] != sum(COEFFICIENTS.values()):
        raise InputError(f"3DMM coefficients must be (n, 257), got {coefficients.shape}")
    out, start = {}, 0
    for name, size in COEFFICIENTS.items():
        out[name] = coefficients[:, start : start + size]
        start += size
    return out


def fit_affine_camera(points: np.ndarray, landmarks: np.ndarray) -> tuple[np.ndarray, float]:
    """Least-squares affine projection `points ≈ P landmarks + t` (P 2x3); returns (t, mean row norm of P).

    Args:
        points: (N, 2) image points (any y convention; ``align_img`` uses y up).
        landmarks: (N, 3) model points, N >= 4.
    """
    pts, model = np.asarray(points, np.float64), np.asarray(landmarks, np.float64)
    design = np.concatenate([model, np.ones((len(model), 1))], axis=1)  # (N, 4)
    solution, *_ = np.linalg.lstsq(design, pts, rcond=None)  # (4, 2): one column per image axis
    rows = solution[:3].T  # (2, 3) projection rows
    scale = float(np.linalg.norm(rows, axis=1).mean())
    return solution[3], scale


def align_face(image: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Deep3DFaceRecon's ``align_img`` on five points: the 224² crop and its pixel map.

    Args:
        image: uint8 RGB (H, W, 3).
        points: (5, 2) pixels (x right, y down), in :data:`STANDARD_LANDMARKS_3D`'s order.

    Returns:
        (crop uint8 (224, 224, 3), matrix (2, 3) taking image pixel centres to crop pixel centres), or
        None when the points cannot be fitted (degenerate or non-finite).
    """
    frame = np.asarray(image)
    height0, width0 = frame.shape[:2]
    pts = np.asarray(points, np.float64).copy()
    if pts.shape != (5, 2) or not np.isfinite(pts).all():
        return None
    pts[:, 1] = height0 - 1 - pts[:, 1]  # the original's y-up convention
    centre, projection_scale = fit_affine_camera(pts, STANDARD_LANDMARKS_3D)
    if not np.isfinite(projection_scale) or projection_scale <= 1e-6:
        return None
    scale = RESCALE_FACTOR / projection_scale
    # The original resizes the whole image to int(W s) x int(H s), then crops 224² at integer offsets
    # (truncated towards zero) that put the fitted translation at the centre.
    width, height = int(width0 * scale), int(height0 * scale)
    if width < 1 or height < 1:
        return None
    left = int(width / 2 - CROP_SIZE / 2 + (centre[0] - width0 / 2) * scale)
    top = int(height / 2 - CROP_SIZE / 2 + (height0 / 2 - centre[1]) * scale)
    # Resample only the part of the resized image that falls inside the crop: PIL's resize with a
    # source box gives the same pixels as the full resize (same filter scale and kernel positions).
    x0, x1 = max(left, 0), min(left + CROP_SIZE, width)
    y0, y1 = max(top, 0), min(top + CROP_SIZE, height)
    crop = np.zeros((CROP_SIZE, CROP_SIZE, 3), np.uint8)
    if x1 > x0 and y1 > y0:
        fx, fy = width0 / width, height0 / height
        box = (x0 * fx, y0 * fy, x1 * fx, y1 * fy)
        part = Image.fromarray(np.ascontiguousarray(frame)).resize(
            (x1 - x0, y1 - y0), Image.Resampling.BICUBIC, box=box
        )
        crop[y0 - top : y1 - top, x0 - left : x1 - left] = np.asarray(part)
    sx, sy = width / width0, height / height0
    matrix = np.array([[sx, 0.0, 0.5 * sx - 0.5 - left], [0.0, sy, 0.5 * sy - 0.5 - top]])
    return crop, matrix


class Face3DFitter:
    """Per-frame 3DMM coefficients from Deep3DFaceRecon's regressor, read from a checked local file.

    Args:
        path: the checkpoint (else $FLOATALK_FACE3D_WEIGHTS).
        device: where the network runs.
        batch_size: crops per forward pass.
    """

    def __init__(self, path: str | os.PathLike | None = None, device: str = "cpu", batch_size: int = 8):
        resolved = FACE3D_RECON.resolve(path)
        state = load_state_dict(FACE3D_RECON, resolved, entries=("net_recon", "state_dict"))
        net = Face3DRecon()
        layout = {k: tuple(v.shape) for k, v in net.state_dict().items()}
        self.backbone: CheckedBackbone = check_layout(FACE3D_RECON, resolved, state, layout)
        net.load_state_dict(state, strict=True)
        self.net = net.to(device).eval().requires_grad_(False)
        self.device = torch.device(device)
        self.batch_size = max(1, int(batch_size))

    @torch.inference_mode()
    def coefficients_aligned(self, crops: np.ndarray) -> np.ndarray:
        """Aligned faces uint8 RGB (n, 224, 224, 3) -> (n, 257) float64 coefficients."""
        batch = np.asarray(crops)
        if batch.ndim != 4 or batch.shape[1:] != (CROP_SIZE, CROP_SIZE, 3) or batch.dtype != np.uint8:
            raise InputError(
                f"aligned faces must be uint8 RGB (n, 224, 224, 3), got {batch.dtype} {batch.shape}"
            )
        out = []
        for start in range(0, len(batch), self.batch_size):
            chunk = torch.from_numpy(np.ascontiguousarray(batch[start : start + self.batch_size]))
            x = chunk.to(self.device).permute(0, 3, 1, 2).float() / 255.0
            out.append(self.net(x).double().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, sum(COEFFICIENTS.values())))

    def track(self, frames: Iterable[np.ndarray]) -> FaceParameters:
        """All frames of one clip, in order, uint8 RGB (H, W, 3) -> FaceParameters: expression (T, 64),
        pose (T, 6) = angles (radians, x/y/z) + translation; NaN rows where no face is found."""
        rows: list[np.ndarray] = []  # (k, 257) per batch of found faces
        pending: list[np.ndarray] = []
        found: list[bool] = []
        with FivePointLocator() as locator:
            for frame in frames:
                points = locator.points(frame)  # checks the frame
                aligned = None if points is None else align_face(frame, points)
                found.append(aligned is not None)
                if aligned is not None:
                    pending.append(aligned[0])
                if len(pending) == self.batch_size:
                    rows.append(self.coefficients_aligned(np.stack(pending)))
                    pending = []
        if pending:
            rows.append(self.coefficients_aligned(np.stack(pending)))
        if not found:
            raise InputError("no frames to fit 3DMM expression and pose on")
        expression = np.full((len(found), COEFFICIENTS["exp"]), np.nan)
        pose = np.full((len(found), 6), np.nan)
        if rows:
            parts = split_coefficients(np.concatenate(rows))
            mask = np.array(found)
            expression[mask] = parts["exp"]
            pose[mask] = np.concatenate([parts["angle"], parts["trans"]], axis=1)
        names = tuple(f"exp{i}" for i in range(COEFFICIENTS["exp"]))
        return FaceParameters(expression, pose, names)
