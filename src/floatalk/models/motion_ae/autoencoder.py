"""The motion latent auto-encoder (FLOAT §4.1, built on LIA).

An image I is represented as w_{I} = w_{S->r} + w_{r->I}: an identity latent from the encoder and
a motion latent in the span of an orthonormal basis, w_{r->I} = lambda(I) @ Q^T. FLOAT generates
motion latents w_{r->D} with the flow-matching transformer and decodes each frame as
D(w_{S->r} + w_{r->D}, features of S).

Submodule names `enc` and `dec` follow the released checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from ...config import MotionAEConfig
from .basis import MotionBasis
from .decoder import FlowWarpDecoder
from .encoder import MotionEncoder

__all__ = ["MotionAutoEncoder", "SourceEncoding"]


@dataclass
class SourceEncoding:
    """Everything the decoder needs from the source image S.

    Attributes:
        identity_latent: w_{S->r}, (N, d).
        motion_coeffs: lambda(S), (N, M).
        source_motion: w_{r->S} = lambda @ Q^T, (N, d): the FMT's reference-motion condition.
        feats: encoder pyramid at 8x8 .. size x size.
    """

    identity_latent: Tensor
    motion_coeffs: Tensor
    source_motion: Tensor
    feats: list[Tensor]

    def to(self, *args, **kwargs) -> SourceEncoding:
        return SourceEncoding(
            self.identity_latent.to(*args, **kwargs),
            self.motion_coeffs.to(*args, **kwargs),
            self.source_motion.to(*args, **kwargs),
            [f.to(*args, **kwargs) for f in self.feats],
        )


class MotionAutoEncoder(nn.Module):
    """Encoder E, motion basis Q and flow-warping decoder G (pure module: no I/O, no device choice)."""

    def __init__(self, config: MotionAEConfig):
        super().__init__()
        self.config = config
        self.enc = MotionEncoder(config)
        self.dec = FlowWarpDecoder(config)

    @property
    def basis(self) -> MotionBasis:
        return self.dec.direction

    def encode_source(self, image: Tensor) -> SourceEncoding:
        """Encode S: (N, 3, size, size) in [-1, 1] -> SourceEncoding."""
        identity, feats = self.enc(image)
        coeffs = self.enc.coefficients(identity)
        # Eq. 9 (number to confirm) for S itself: w_{r->S} = sum_i lambda_i(S) v_i
        return SourceEncoding(identity, coeffs, self.dec.direction(coeffs), feats)

    def encode_motion(self, image: Tensor) -> Tensor:
        """Motion latent of a (driving) frame, w_{r->D} = lambda(D) @ Q^T: (N,3,H,W) -> (N, d).

        This is how stage-2 training targets are obtained from real frames.
        """
        identity, _ = self.enc(image)
        # Eq. 9 (number to confirm): w_{r->D} = sum_i lambda_i(D) v_i
        return self.dec.direction(self.enc.coefficients(identity))

    def decode(self, source: SourceEncoding, motion: Tensor) -> Tensor:
        """Frames D(w_{S->r} + w_{r->D}): motion (N, d), source batch N or 1 -> (N, 3, size, size)."""
        # Eq. 8 (number to confirm): w_{S->D} = w_{S->r} + w_{r->D}; the decoder G of Eq. 10 renders it
        return self.dec(source.identity_latent + motion, source.feats)

    def decode_with_warp(self, source: SourceEncoding, motion: Tensor) -> tuple[Tensor, Tensor]:
        """`decode`, also returning the finest level's sampling grid (N, size, size, 2) into the source.

        The grid says where each output pixel takes its appearance from in S (FlowWarpDecoder.render);
        floatalk.detail uses it to carry the full-resolution portrait's detail into the frames.
        """
        return self.dec.render(source.identity_latent + motion, source.feats)

    def forward(self, source: Tensor, driving: Tensor) -> Tensor:
        """Reconstruct `driving` with the appearance of `source` (stage 1): (N,3,H,W) x2 -> (N,3,H,W).

        D̂ = G(w_{S->r} + w_{r->D}, feats(S)): Eq. 8-10 end to end (numbering: docs/architecture.md).
        """
        src = self.encode_source(source)
        return self.decode(src, self.encode_motion(driving))
