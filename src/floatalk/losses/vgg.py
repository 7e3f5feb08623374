"""Frozen VGG-19 feature extractor for perceptual losses, in plain PyTorch (no torchvision).

The convolution stack is laid out exactly like torchvision's ``vgg19().features`` (configuration
"E" of Simonyan & Zisserman 2015: 16 3x3 convolutions with ReLUs and 5 max-pools, indices 0..36),
so the ImageNet weights load key for key: ``features.{i}.weight`` / ``features.{i}.bias``.

Getting the weights (never downloaded at run time; pass the local file to `load_vgg19`):

* on a machine with internet and torchvision::

      python -c "import torchvision; torchvision.models.vgg19(weights='IMAGENET1K_V1')"

  which stores ``~/.cache/torch/hub/checkpoints/vgg19-dcbb9e9d.pth``;
* or download https://download.pytorch.org/models/vgg19-dcbb9e9d.pth directly.

The full torchvision file (``features.*`` and ``classifier.*``) is accepted; only ``features.*``
is used. A ``.safetensors`` file with the same keys works too, e.g. after
``safetensors.torch.save_file({k: v for k, v in sd.items() if k.startswith("features.")}, path)``.

Inputs are images in [-1, 1] (the project's convention); they are mapped to [0, 1] and normalised
with the ImageNet mean/std inside the module. Inputs are *not* clamped, so gradients also reach
out-of-range pixels of an unclamped generator output.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from ..errors import CheckpointError

__all__ = ["DEFAULT_LAYERS", "VGG19_LAYER_INDEX", "VGG19Features", "load_vgg19", "vgg19_layer_index"]

# torchvision's configuration "E": channel counts, "M" = 2x2 max-pool.
_VGG19_CFG: tuple[int | str, ...] = (
    64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M",
)  # fmt: skip

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

DEFAULT_LAYERS: tuple[str, ...] = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")


def _layer_names() -> dict[str, int]:
    """Map "conv{b}_{i}", "relu{b}_{i}" and "pool{b}" to their index in ``features``."""
    names: dict[str, int] = {}
    index, block, conv = 0, 1, 0
    for item in _VGG19_CFG:
        if item == "M":
            names[f"pool{block}"] = index
            index += 1
            block += 1
            conv = 0
        else:
            conv += 1
            names[f"conv{block}_{conv}"] = index
            names[f"relu{block}_{conv}"] = index + 1
            index += 2
    return names


VGG19_LAYER_INDEX: dict[str, int] = _layer_names()


def vgg19_layer_index(name: str) -> int:
    """Index in ``features`` of a named layer output, e.g. "relu3_1" -> 11."""
    try:
        return VGG19_LAYER_INDEX[name]
    except KeyError:
        known = ", ".join(n for n in VGG19_LAYER_INDEX if n.startswith("relu"))
        raise ValueError(
            f"unknown VGG-19 layer {name!r}; use conv*_*/relu*_*/pool* names, e.g. {known}"
        ) from None


class VGG19Features(nn.Module):
    """VGG-19 ``features`` returning the activations of selected layers. Frozen.

    Constructed directly it has PyTorch's default random initialisation, which is only meant for
    tests; use `load_vgg19` for real training.

    Args:
        layers: names of the layer outputs to return ("relu1_1", "conv3_4", "pool2", ...).

    Shapes: forward((N, 3, H, W) in [-1, 1]) -> {name: (N, C_layer, H_layer, W_layer)} in the order
    of `layers`. Only the part of the network up to the deepest requested layer is run.
    """

    def __init__(self, layers: Sequence[str] = DEFAULT_LAYERS):
        super().__init__()
        if not layers:
            raise ValueError("VGG19Features needs at least one layer name")
        self.layers = tuple(layers)
        self._indices = [vgg19_layer_index(name) for name in self.layers]
        modules: list[nn.Module] = []
        in_ch = 3
        for item in _VGG19_CFG:
            if item == "M":
                modules.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                modules.append(nn.Conv2d(in_ch, int(item), kernel_size=3, padding=1))
                modules.append(nn.ReLU(inplace=False))
                in_ch = int(item)
        self.features = nn.Sequential(*modules)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> VGG19Features:
        """Always stays in eval mode (the feature extractor is frozen)."""
        return super().train(False)

    @property
    def min_input_size(self) -> int:
        """Smallest H and W for which every requested layer has at least a 1x1 output."""
        deepest = max(self._indices)
        pools = sum(1 for i, m in enumerate(self.features) if i <= deepest and isinstance(m, nn.MaxPool2d))
        return 2**pools

    def normalize(self, image: Tensor) -> Tensor:
        """[-1, 1] RGB -> ImageNet-normalised input."""
        return ((image + 1.0) * 0.5 - self.mean.to(image.dtype)) / self.std.to(image.dtype)

    def forward(self, image: Tensor) -> dict[str, Tensor]:
        """(N, 3, H, W) in [-1, 1] -> {layer name: activation}."""
        if image.ndim != 4 or image.shape[1] != 3:
            raise ValueError(f"VGG19Features expects (N, 3, H, W) images, got {tuple(image.shape)}")
        if min(image.shape[-2:]) < self.min_input_size:
            raise ValueError(
                f"images of {tuple(image.shape[-2:])} are too small for VGG layer(s) {self.layers}: "
                f"need at least {self.min_input_size} pixels per side"
            )
        wanted = {idx: name for name, idx in zip(self.layers, self._indices)}
        found: dict[str, Tensor] = {}
        x = self.normalize(image)
        last = max(self._indices)
        for i, module in enumerate(self.features):
            x = module(x)
            if i in wanted:
                found[wanted[i]] = x
            if i == last:
                break
        return {name: found[name] for name in self.layers}


def _read_state(path: Path) -> Mapping[str, object]:
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise CheckpointError(
                f"VGG-19 weights {str(path)!r} are not a valid safetensors file ({exc})"
            ) from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt or non-tensor pickles
        raise CheckpointError(
            f"VGG-19 weights {str(path)!r} are not a loadable PyTorch state dict "
            f"({type(exc).__name__}: {exc})"
        ) from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise CheckpointError(f"VGG-19 weights {str(path)!r} do not hold a name -> tensor state dict")
    return state


def _features_state(state: Mapping[str, object], where: str) -> dict[str, Tensor]:
    """Keep ``features.*`` tensors; a bare ``{i}.weight`` dict (a saved ``features``) is prefixed."""
    if not any(str(k).startswith("features.") for k in state):
        state = {f"features.{k}": v for k, v in state.items()}
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        if not str(key).startswith("features."):
            continue
        if not isinstance(value, Tensor):
            raise CheckpointError(f"VGG-19 weights {where}: {key} is not a tensor")
        out[str(key)] = value
    return out


def load_vgg19(path: str | os.PathLike, layers: Sequence[str] = DEFAULT_LAYERS) -> VGG19Features:
    """Build a frozen `VGG19Features` (CPU, float32, eval) from a local weights file.

    Args:
        path: torchvision's ``vgg19-dcbb9e9d.pth`` (or any ``.pth``/``.pt`` state dict with
            ``features.{i}.weight/bias`` keys), or a ``.safetensors`` file with the same keys.
        layers: layer outputs the extractor returns.

    Raises:
        CheckpointError: the file is missing or unreadable, or its ``features`` keys or shapes do
            not match VGG-19 (one line naming the keys).
    """
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(
            f"VGG-19 weights {str(p)!r} do not exist; get vgg19-dcbb9e9d.pth from "
            "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"
        )
    state = _features_state(_read_state(p), str(p))
    model = VGG19Features(layers)
    from ..weights import load_state_strict

    load_state_strict(model, {k: v.to(torch.float32) for k, v in state.items()}, f"VGG-19 weights {str(p)!r}")
    return model
