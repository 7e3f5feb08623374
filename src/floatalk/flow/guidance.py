"""Incremental classifier-free guidance over audio and emotion (FLOAT Eq. 14).

    v = v(0_a, 0_e) + g_a [v(a, 0_e) - v(0_a, 0_e)] + g_e [v(a, e) - v(a, 0_e)]

g_a (audio_scale) strengthens the dependence on speech, g_e (emotion_scale) the dependence on the
emotion label on top of it; g_e may also vary frame by frame (an emotion timeline's intensities).
The reference motion, the head pose and the previous frames are kept in every branch. The three
branches run as one batched forward of 3B; with g_a = g_e = 1 the formula reduces to the fully
conditional velocity and a single forward of B is run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from .conditions import WindowConditions
from .solvers import VelocityFn

__all__ = ["ConditionalVelocityFn", "IncrementalGuidance"]

ConditionalVelocityFn = Callable[[Tensor, Tensor, WindowConditions], Tensor]  # (t, x, c) -> v


@dataclass(frozen=True)
class IncrementalGuidance:
    """Wraps a conditional velocity v(t, x, c) into a guided VelocityFn v(t, x)."""

    audio_scale: float  # g_a (users give it through floatalk.options.GenerateOptions, checked there)
    emotion_scale: float  # g_e

    def __post_init__(self) -> None:
        for value in (self.audio_scale, self.emotion_scale):
            assert 0.0 <= value < float("inf"), value

    @property
    def is_identity(self) -> bool:
        """True when the guided field equals the fully conditional one (one pass suffices)."""
        return self.audio_scale == 1.0 and self.emotion_scale == 1.0

    def wrap(
        self, velocity: ConditionalVelocityFn, cond: WindowConditions, emotion_weight: Tensor | None = None
    ) -> VelocityFn:
        """The guided velocity field for fixed conditions `cond` (batch B).

        `emotion_weight` (B, L, 1) multiplies g_e frame by frame (an emotion timeline's intensities);
        None is 1 everywhere.
        """
        if emotion_weight is not None and bool((emotion_weight == 1).all()):
            emotion_weight = None
        if self.is_identity and emotion_weight is None:
            return lambda t, x: velocity(t, x, cond)
        b = cond.batch_size
        off = torch.zeros(b, dtype=torch.bool, device=cond.audio.device)
        branches = WindowConditions.cat(
            [
                cond.drop(audio=off, emotion=off),  # v(0_a, 0_e)
                cond,  # v(a, e)
                cond.drop(emotion=off),  # v(a, 0_e)
            ]
        )
        g_a = self.audio_scale
        g_e = self.emotion_scale if emotion_weight is None else self.emotion_scale * emotion_weight

        def guided(t: Tensor, x: Tensor) -> Tensor:
            v_null, v_full, v_audio = velocity(t, x.repeat(3, *([1] * (x.dim() - 1))), branches).chunk(3)
            # Eq. 14: v = v(0_a, 0_e) + g_a [v(a, 0_e) - v(0_a, 0_e)] + g_e [v(a, e) - v(a, 0_e)]
            return v_null + g_a * (v_audio - v_null) + g_e * (v_full - v_audio)

        return guided
