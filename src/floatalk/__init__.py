"""floatalk: FLOAT, audio-driven talking portraits by flow matching in a motion latent space.

The heavy modules import lazily, so `import floatalk` is cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["FloatConfig", "FloatModel", "FloatPipeline", "__version__", "preset"]

if TYPE_CHECKING:
    from .config import FloatConfig, preset
    from .models.float_model import FloatModel
    from .pipeline import FloatPipeline

_LAZY = {
    "FloatConfig": ".config",
    "preset": ".config",
    "FloatModel": ".models.float_model",
    "FloatPipeline": ".pipeline",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module 'floatalk' has no attribute {name!r}")
