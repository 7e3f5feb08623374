"""Local weight files for the evaluation networks: where to find them, how they are checked.

None of the paper's evaluation networks (FID's Inception, FVD's I3D, ArcFace, the 3D face model,
SyncNet, LPIPS's AlexNet) can be downloaded at run time here, and floatalk never fetches anything.
Each metric reads its network from a local file named by a command-line option or an environment
variable (:class:`BackboneFile`). Before a file is used:

1. it must exist (otherwise a one-line error names the option, the variable and the file's public
   origin);
2. its tensors must have exactly the expected names and shapes (otherwise a one-line error says
   which: a wrong file never produces numbers);
3. its SHA-256 is compared with the published one where one is published. A file that passes (2) but
   not (3) (a re-export, another training run) is used, and the report says that its numbers are
   not comparable with published ones (:attr:`CheckedBackbone.published`).

docs/evaluation.md lists every file, its origin and its hash.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import InputError

__all__ = ["BackboneFile", "CheckedBackbone", "check_layout", "sha256_of"]


@dataclass(frozen=True)
class BackboneFile:
    """One evaluation network's weight file.

    Attributes:
        name: the metric's network, for messages ("FID Inception-v3").
        option: the command-line option that gives the path ("--fid-weights").
        env: the environment variable read when the option is not given.
        filename: the published file's name.
        origin: where the published file comes from (for messages and docs; never fetched).
        sha256: the published file's SHA-256, or a prefix of it (the hex digits published in
            its name), or None where none is published.
    """

    name: str
    option: str
    env: str
    filename: str
    origin: str
    sha256: str | None = None

    def resolve(self, path: str | os.PathLike | None = None) -> Path:
        """The file to use: `path`, else the environment variable; InputError when neither exists."""
        given = path if path is not None else os.environ.get(self.env) or None
        hint = f"pass {self.option} PATH or set {self.env} (the file is {self.filename}, from {self.origin})"
        if given is None:
            raise InputError(f"{self.name} needs its weights file: {hint}")
        resolved = Path(given).expanduser()
        if not resolved.is_file():
            raise InputError(f"{self.name} weights file not found: {resolved}; {hint}")
        return resolved


@dataclass(frozen=True)
class CheckedBackbone:
    """A weight file that passed the layout check: its path, hash, and whether it is the published one."""

    spec: BackboneFile
    path: Path
    sha256: str
    published: bool | None  # None: no published hash to compare with

    def describe(self) -> str:
        """One line for reports: the network, the file and its provenance."""
        if self.published is None:
            status = "no published hash to compare"
        elif self.published:
            status = "the published file"
        else:
            status = "NOT the published file: numbers are not comparable with published ones"
        return f"{self.spec.name} ({self.path.name}, sha256 {self.sha256[:12]}..., {status})"


def sha256_of(path: str | os.PathLike, block: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(block):
            digest.update(chunk)
    return digest.hexdigest()


def load_state_dict(
    spec: BackboneFile, path: Path, entries: tuple[str, ...] = ("state_dict",)
) -> dict[str, torch.Tensor]:
    """The file's tensors (safetensors, or a torch pickle read with weights_only); InputError if not.

    A checkpoint that wraps the state dict under one of `entries` (e.g. Deep3DFaceRecon's
    ``{"net_recon": ..., "opt_00": ...}``) is unwrapped at the first entry it holds.
    """
    wants = f"{spec.option} wants {spec.filename} from {spec.origin}"
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [""])[0][:160]
        raise InputError(
            f"{spec.name}: {path} is not a readable weights file ({type(exc).__name__}: {first}); {wants}"
        ) from None
    for entry in entries:
        if isinstance(state, Mapping) and isinstance(state.get(entry), Mapping):
            state = state[entry]
            break
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        inside = " or ".join(repr(e) for e in entries)
        raise InputError(
            f"{spec.name}: {path} does not hold a table of tensors (a state dict, or one under {inside}); "
            f"{wants}"
        )
    return dict(state)


def check_layout(
    spec: BackboneFile,
    path: Path,
    state: Mapping[str, torch.Tensor],
    expected: Mapping[str, tuple[int, ...]],
) -> CheckedBackbone:
    """Refuse `state` unless its names and shapes are exactly `expected`; then compare the hash."""
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state) if tuple(state[k].shape) != tuple(expected[k]))
    if missing or extra or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} tensors missing (e.g. {missing[0]})")
        if extra:
            parts.append(f"{len(extra)} unexpected (e.g. {extra[0]})")
        if wrong:
            k = wrong[0]
            got, want = tuple(state[k].shape), tuple(expected[k])
            parts.append(f"{len(wrong)} of the wrong shape (e.g. {k}: {got}, expected {want})")
        raise InputError(
            f"{path} is not the {spec.name} weights file ({'; '.join(parts)}); "
            f"{spec.option} wants {spec.filename} from {spec.origin}"
        )
    digest = sha256_of(path)
    published = None if spec.sha256 is None else digest.startswith(spec.sha256.lower())
    return CheckedBackbone(spec, path, digest, published)


_COUNTER = "num_batches_tracked"


def normalise_state(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop a ``module.`` prefix carried by every name (a state dict taken from a distributed
    wrapper) and cast floating tensors to float32 (a file stored in half precision)."""
    prefix = "module."
    if state and all(k.startswith(prefix) for k in state):
        state = {k[len(prefix) :]: v for k, v in state.items()}
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}


def load_checked(
    spec: BackboneFile, path: Path, net: torch.nn.Module, state: Mapping[str, torch.Tensor]
) -> tuple[torch.nn.Module, CheckedBackbone]:
    """Check `state` against `net`'s names and shapes (batch-norm ``num_batches_tracked`` counters
    optional: unused at evaluation, absent from files saved by old PyTorch) and load it strictly.

    `net` may live on the meta device (shapes only); it is then materialised on the CPU first.
    Returns (the loaded network in evaluation mode, without gradients; the checked file).
    """
    layout = net.state_dict()
    expected = {k: tuple(v.shape) for k, v in layout.items() if not k.endswith(_COUNTER)}
    state = normalise_state(state)
    given = {k: v for k, v in state.items() if not k.endswith(_COUNTER)}
    checked = check_layout(spec, path, given, expected)
    for key in layout:
        if key.endswith(_COUNTER):
            given[key] = state.get(key, torch.zeros((), dtype=torch.long))
    if any(t.is_meta for t in layout.values()):
        net = net.to_empty(device="cpu")
    net.load_state_dict(given, strict=True)
    return net.eval().requires_grad_(False), checked
