"""Test helper: the deterministic pseudo-random weights the parity references were made with.

The recipe (documented in the parity reference's README): for every float32 key of the original
checkpoint's manifest, except FIR kernels, the attention mask and the fixed position table, draw
float64 normal noise from a generator seeded with seed * 1_000_003 + crc32(key), then scale and
offset it by the kind of parameter, and round to float32.
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import torch

FIXTURES = Path(__file__).parent / "fixtures"
MANIFEST = FIXTURES / "official_float_state_dict.json"
REFERENCE = FIXTURES / "reference_seed0.npz"

_SKIP_SUFFIXES = (".kernel", "alignment_mask")
_SKIP_KEYS = ("fmt.pos_embed",)


def manifest_rows(path: Path = MANIFEST) -> list[tuple[str, list[int], str]]:
    return [tuple(row) for row in json.loads(Path(path).read_text())]


def _scale_offset(key: str, shape: list[int]) -> tuple[float, float]:
    if key.endswith("bias"):
        return 0.1, (1.0 if "modulation" in key else 0.0)
    if len(shape) == 1 and key.endswith("weight"):  # norm gains
        return 0.1, 1.0
    if key.startswith("motion_autoencoder."):  # equalized-lr layers store unit-variance weights
        return 1.0, 0.0
    if key.endswith(("original0", "weight_g")):  # weight-norm gain of wav2vec2's positional conv
        return 0.1, 1.0
    return 0.02, 0.0


def parity_weight(key: str, shape: list[int], seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(key.encode()))
    scale, offset = _scale_offset(key, shape)
    return (torch.randn(shape, generator=generator, dtype=torch.float64) * scale + offset).float()


def parity_state_dict(seed: int = 0, manifest: Path = MANIFEST) -> dict[str, torch.Tensor]:
    """{original key: tensor} for every learnable key of the manifest."""
    return {
        key: parity_weight(key, shape, seed)
        for key, shape, dtype in manifest_rows(manifest)
        if dtype == "float32" and not key.endswith(_SKIP_SUFFIXES) and key not in _SKIP_KEYS
    }
