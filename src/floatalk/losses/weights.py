"""Loss weights of stage-1 training (the motion auto-encoder).

FLOAT (arXiv 2412.01064, §A.3) trains the auto-encoder with L1 + 10·perceptual (LPIPS-VGG) +
100·facial-component perceptual + a 2-scale discriminator (adversarial weight 1) + eye/lip component
discriminators (weight 1) + Gram-matrix feature style matching (weight 100), with Adam, lr 2e-4,
batch 8 (as summarised in the shared float-reference.md, "Paper: motion AE training"). Those are
the defaults below. What the paper does not give comes from the works it builds on:

=======================  =======  ===========================================================
field                    default  source
=======================  =======  ===========================================================
l1                       1        paper
perceptual               10       paper (its term is LPIPS-VGG; ours is LIA's multi-scale
                                  VGG-19 L1 with per-layer weight 1, as no LPIPS heads ship
                                  offline: same role, not the same numbers)
component_perceptual     100      paper
gan                      1        paper (summed over the 2 scales by `g_nonsaturating_loss`)
component_gan            1        paper
component_style          100      paper (FSM weight; `gram_style_loss` averages the feature maps)
r1_gamma, r1_every       10, 16   not in the paper: StyleGAN2 (gamma = 10, lazy regularisation
                                  every 16 D steps), also GFPGAN's values. Term: gamma / 2 * every * R1.
=======================  =======  ===========================================================
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

from torch import Tensor

__all__ = ["GENERATOR_TERMS", "Stage1LossWeights"]

# Names of the weighted generator-side terms, as accepted by Stage1LossWeights.generator_loss.
GENERATOR_TERMS = ("l1", "perceptual", "component_perceptual", "gan", "component_gan", "component_style")


@dataclass(frozen=True)
class Stage1LossWeights:
    """Weights of the stage-1 losses (see the module docstring for where each default comes from)."""

    l1: float = 1.0
    perceptual: float = 10.0
    component_perceptual: float = 100.0
    gan: float = 1.0
    component_gan: float = 1.0
    component_style: float = 100.0
    r1_gamma: float = 10.0
    r1_every: int = 16

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value < 0:
                raise ValueError(f"loss weight {f.name} must be >= 0, got {value}")
        if self.r1_every < 1:
            raise ValueError(f"r1_every must be >= 1, got {self.r1_every}")

    @property
    def r1_weight(self) -> float:
        """Weight of the lazy R1 penalty on the steps where it is applied: gamma / 2 * every."""
        return self.r1_gamma / 2.0 * self.r1_every

    def generator_loss(self, terms: Mapping[str, Tensor]) -> Tensor:
        """sum_k weight_k * terms[k] over the given terms (names from GENERATOR_TERMS).

        The weighted stage-1 generator objective (appendix, Eq. 17-21 range; number to confirm).
        """
        unknown = sorted(set(terms) - set(GENERATOR_TERMS))
        if unknown:
            raise ValueError(
                f"unknown loss term(s) {', '.join(unknown)}; known: {', '.join(GENERATOR_TERMS)}"
            )
        if not terms:
            raise ValueError("no loss terms given")
        values = list(terms.items())
        total = values[0][1].new_zeros(())
        for name, value in values:
            total = total + getattr(self, name) * value
        return total
