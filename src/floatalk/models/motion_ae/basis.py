"""The learned orthonormal motion basis V (LIA; FLOAT §4.1, Eq. 9 and Eq. 15).

A free matrix W in R^{d x M} is orthonormalised by a reduced QR decomposition every time it is
used, so the M motion directions v_1..v_M (columns of Q) stay orthonormal while W is trained.
A motion latent is w = sum_k lambda_k v_k = lambda @ Q^T, and the coefficients of any latent are
recovered as lambda_k = <w, v_k>, i.e. lambda = w @ Q (the basis for lambda-editing).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["MotionBasis"]

# The released model orthonormalises W + 1e-8 (not W); kept so the basis matches bit for bit.
QR_OFFSET = 1e-8


class MotionBasis(nn.Module):
    """Orthonormal basis Q (d, M) from a learnable matrix; maps coefficients to latents.

    Args:
        latent_dim: d, the motion latent size.
        motion_dim: M, the number of directions (M <= d).
    """

    def __init__(self, latent_dim: int, motion_dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(latent_dim, motion_dim))

    def basis(self) -> Tensor:
        """Q with Q^T Q = I_M, from torch.linalg.qr of the weight (sign convention: LAPACK's). (d, M).

        Half-precision weights are orthonormalised in float32 (QR has no float16 / bfloat16 kernel on
        CPU, and an orthonormal basis rounded once keeps Q^T Q closest to I) and Q is cast back.
        """
        weight = self.weight
        if weight.dtype in (torch.float16, torch.bfloat16):
            q, _ = torch.linalg.qr(weight.float() + QR_OFFSET)
            return q.to(weight.dtype)
        q, _ = torch.linalg.qr(weight + QR_OFFSET)
        return q

    def forward(self, coeffs: Tensor) -> Tensor:
        """Motion latent w = lambda @ Q^T. coeffs: (..., M) -> (..., d).

        Eq. 9 (number to confirm): w_{r->D} = sum_i lambda_i v_i, the columns of Q being the v_i.
        """
        return coeffs @ self.basis().t()

    def coefficients(self, latent: Tensor) -> Tensor:
        """lambda_k = <w, v_k> (Eq. 15). latent: (..., d) -> (..., M)."""
        return latent @ self.basis()
