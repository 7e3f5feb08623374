"""Condition dropout for stage-2 training (FLOAT §4.3).

Each sample of a batch loses each of its conditions independently: the current window's speech,
the reference motion w_{r->S} and the emotion w_e with p = 0.1, the previous latents x_prev and the
previous speech a_prev with p = 0.5 (the original's training code). A dropped condition becomes zeros
(`WindowConditions.drop`), which is what the unconditional branches of guidance feed the network.

The keep-masks are drawn from the global torch RNG (or `generator`) in a fixed order, so that a seeded
run reproduces its losses exactly: prev_motion, audio, reference, emotion, prev_audio, one
``torch.rand(B) >= p`` each, drawn even when p is 0 or 1; then, only for conditions that carry a
head pose (a pose-conditioned model, Table 2 "A + 3DPose"), one more for the pose (p = 0.1), which
keeps the random stream of pose-free runs as it was.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .conditions import WindowConditions

__all__ = ["ConditionDropout"]

# the order in which the keep-masks are drawn (part of the training recipe's RNG stream)
DRAW_ORDER = ("prev_motion", "audio", "reference", "emotion", "prev_audio")


@dataclass(frozen=True)
class ConditionDropout:
    """Per-sample drop probabilities of the five window conditions.

    Attributes:
        audio: speech of the current window a^{1:L}.
        reference: source (reference) motion w_{r->S}.
        emotion: emotion w_e.
        prev_motion: previous latents x_prev.
        prev_audio: previous speech a_prev.
        pose: head pose p of the window's frames (drawn only when the conditions have one).
    """

    audio: float = 0.1
    reference: float = 0.1
    emotion: float = 0.1
    prev_motion: float = 0.5
    prev_audio: float = 0.5
    pose: float = 0.1

    def __post_init__(self) -> None:
        for name in (*DRAW_ORDER, "pose"):
            p = getattr(self, name)
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"drop probability {name} must be in [0, 1], got {p}")

    def keep_masks(
        self,
        batch_size: int,
        device: torch.device | str | None = None,
        generator: torch.Generator | None = None,
    ) -> dict[str, Tensor]:
        """Boolean keep-masks (B,) by condition name, True where the condition stays.

        Drawn in `DRAW_ORDER`, one ``torch.rand(B) >= p`` per condition.
        """
        return {
            name: torch.rand(batch_size, device=device, generator=generator) >= getattr(self, name)
            for name in DRAW_ORDER
        }

    def __call__(
        self,
        conditions: WindowConditions,
        device: torch.device | str | None = None,
        generator: torch.Generator | None = None,
    ) -> WindowConditions:
        """Draw the keep-masks for `conditions`' batch and return a copy with the dropped ones zeroed.

        The masks are drawn on `device` (default: that of ``conditions.audio``).
        """
        device = conditions.audio.device if device is None else device
        keep = self.keep_masks(conditions.batch_size, device, generator)
        if conditions.pose is not None:
            keep["pose"] = torch.rand(conditions.batch_size, device=device, generator=generator) >= self.pose
        return conditions.drop(**keep)
