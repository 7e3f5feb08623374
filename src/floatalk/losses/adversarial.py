"""Adversarial losses for stage 1: non-saturating logistic GAN loss, lazy R1, Gram style matching.

* ``d_logistic_loss = E[softplus(-D(real))] + E[softplus(D(fake))]`` and
  ``g_nonsaturating_loss = E[softplus(-D(fake))]`` (Goodfellow et al. 2014, the non-saturating
  form used by StyleGAN2). The mean runs over every logit, so patch discriminators (one logit per
  patch) are the same as a binary cross-entropy with labels 1 / 0. Both accept one logits tensor
  or a sequence of them (one per discriminator scale), whose losses are summed.
* ``r1_penalty = E_x ||grad_x sum D(x)||^2`` on real images (Mescheder et al. 2018). StyleGAN2
  applies it lazily: every k-th discriminator step with weight ``gamma / 2 * k`` (`lazy_r1_loss`).
* `gram_matrix` and `gram_style_loss`: the feature-style term of GFPGAN's facial component loss,
  L1 between Gram matrices of discriminator features of generated and real crops.

Pure functions: no state, no device choice.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "d_logistic_loss",
    "g_nonsaturating_loss",
    "gram_matrix",
    "gram_style_loss",
    "lazy_r1_loss",
    "r1_penalty",
]

Logits = Tensor | Sequence[Tensor]


def _as_list(logits: Logits) -> list[Tensor]:
    if isinstance(logits, Tensor):
        return [logits]
    out = list(logits)
    if not out:
        raise ValueError("no logits given")
    return out


def d_logistic_loss(real_logits: Logits, fake_logits: Logits) -> Tensor:
    """Discriminator loss mean(softplus(-real)) + mean(softplus(fake)), summed over scales; a scalar.

    The discriminator side of FLOAT's adversarial terms (stage 1; Eq. 17-21 range, number to confirm).

    Lower when real logits go up and fake logits go down. Pass detached fakes for the
    discriminator step.
    """
    reals, fakes = _as_list(real_logits), _as_list(fake_logits)
    if len(reals) != len(fakes):
        raise ValueError(f"{len(reals)} real and {len(fakes)} fake logit tensors")
    return sum(
        (F.softplus(-r).mean() + F.softplus(f).mean() for r, f in zip(reals, fakes)),
        start=reals[0].new_zeros(()),
    )


def g_nonsaturating_loss(fake_logits: Logits) -> Tensor:
    """Generator loss mean(softplus(-D(fake))), summed over scales; a scalar.

    FLOAT's full-image and eye / lip adversarial terms of stage 1 (Eq. 17-21 range, number to confirm).
    """
    fakes = _as_list(fake_logits)
    return sum((F.softplus(-f).mean() for f in fakes), start=fakes[0].new_zeros(()))


def r1_penalty(real_logits: Logits, real_images: Tensor) -> Tensor:
    """R1 = mean over the batch of ||d(sum of logits)/d(image)||^2; a scalar, differentiable.

    Not among the stage-1 terms we know from FLOAT's paper (losses/weights.py): StyleGAN2's, our choice.

    `real_images` must have had ``requires_grad_(True)`` before the discriminator forward that
    produced `real_logits`. Logits of several scales computed from the same images are summed
    first, so the gradient is that of the total discriminator output.

    For a linear discriminator D(x) = <w, x> the penalty is ||w||^2.
    """
    if not real_images.requires_grad:
        raise ValueError("r1_penalty needs real_images.requires_grad_(True) before the discriminator forward")
    total = sum((r.sum() for r in _as_list(real_logits)), start=real_images.new_zeros(()))
    (grad,) = torch.autograd.grad(outputs=total, inputs=real_images, create_graph=True)
    return grad.pow(2).reshape(grad.shape[0], -1).sum(1).mean()


def lazy_r1_loss(real_logits: Logits, real_images: Tensor, gamma: float = 10.0, every: int = 16) -> Tensor:
    """The lazy R1 term to add on every `every`-th discriminator step: gamma / 2 * every * R1."""
    return (gamma / 2.0 * every) * r1_penalty(real_logits, real_images)


def gram_matrix(feat: Tensor) -> Tensor:
    """Normalised Gram matrix: (N, C, H, W) -> (N, C, C), G = F F^T / (C H W) with F = (N, C, HW).

    The normalisation by C*H*W is GFPGAN's.
    """
    n, c, h, w = feat.shape
    f = feat.reshape(n, c, h * w)
    return torch.bmm(f, f.transpose(1, 2)) / (c * h * w)


def gram_style_loss(fake_feats: Sequence[Tensor], real_feats: Sequence[Tensor]) -> Tensor:
    """Mean over layers of mean|gram(fake_l) - gram(real_l)|; real features are detached. A scalar.

    FLOAT's feature style matching (FSM) term for eyes and lips (Eq. 17-21 range, number to confirm).

    With the two feature maps of a component discriminator this equals GFPGAN's
    ``0.5 * sum_l L1(gram(fake_l), gram(real_l))``.
    """
    if len(fake_feats) != len(real_feats) or not fake_feats:
        raise ValueError(f"{len(fake_feats)} fake and {len(real_feats)} real feature maps")
    total = fake_feats[0].new_zeros(())
    for fake, real in zip(fake_feats, real_feats):
        total = total + (gram_matrix(fake) - gram_matrix(real.detach())).abs().mean()
    return total / len(fake_feats)
