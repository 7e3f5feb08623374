"""Motion latent auto-encoder: encoder, orthonormal motion basis, flow-warping decoder."""

from .autoencoder import MotionAutoEncoder, SourceEncoding
from .basis import MotionBasis

__all__ = ["MotionAutoEncoder", "MotionBasis", "SourceEncoding"]
