"""Incremental classifier-free guidance over audio and emotion (FLOAT Eq. 14), and over the head pose.

    v = v(0_a, 0_e) + g_a [v(a, 0_e) - v(0_a, 0_e)] + g_e [v(a, e) - v(a, 0_e)]
        + (g_p - 1) [v(a, e, p) - v(a, e, 0_p)]

g_a (audio_scale) strengthens the dependence on speech, g_e (emotion_scale) the dependence on the
emotion label on top of it; g_e may also vary frame by frame (an emotion timeline's intensities).
The reference motion and the previous frames are kept in every branch. The last term is not in the
paper: for a pose-conditioned model given a pose (``--pose-from``, ``--still-head``), g_p
(pose_guidance) > 1 pushes the motion further from the model's own head motion (the null pose 0_p,
condition dropout in training) towards the given pose; with g_p = 1 the term vanishes and the pose is
kept in every branch, as before. The branches run as one batched forward (3B, or 4B with the pose
term); with g_a = g_e = g_p = 1 the formula reduces to the fully conditional velocity and a single
forward of B is run.
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
    pose_guidance: float = 1.0  # g_p (used only when the conditions carry a pose)

    def __post_init__(self) -> None:
        for value in (self.audio_scale, self.emotion_scale, self.pose_guidance):
            assert 0.0 <= value < float("inf"), value

    def wrap(
        self, velocity: ConditionalVelocityFn, cond: WindowConditions, emotion_weight: Tensor | None = None
    ) -> VelocityFn:
        """The guided velocity field for fixed conditions `cond` (batch B).

        `emotion_weight` (B, L, 1) multiplies g_e frame by frame (an emotion timeline's intensities);
        None is 1 everywhere.
        """
        if emotion_weight is not None and bool((emotion_weight == 1).all()):
            emotion_weight = None
        g_p = self.pose_guidance if cond.pose is not None else 1.0
        unguided = self.audio_scale == 1.0 and self.emotion_scale == 1.0 and g_p == 1.0
        if unguided and emotion_weight is None:
            return lambda t, x: velocity(t, x, cond)
        b = cond.batch_size
        off = torch.zeros(b, dtype=torch.bool, device=cond.audio.device)
        parts = [
            cond.drop(audio=off, emotion=off),  # v(0_a, 0_e)
            cond,  # v(a, e)
            cond.drop(emotion=off),  # v(a, 0_e)
        ]
        if g_p != 1.0:
            parts.append(cond.drop(pose=off))  # v(a, e, 0_p)
        branches = WindowConditions.cat(parts)
        g_a = self.audio_scale
        g_e = self.emotion_scale if emotion_weight is None else self.emotion_scale * emotion_weight
        n = len(parts)

        def guided(t: Tensor, x: Tensor) -> Tensor:
            v = velocity(t, x.repeat(n, *([1] * (x.dim() - 1))), branches).chunk(n)
            v_null, v_full, v_audio = v[:3]
            # Eq. 14: v = v(0_a, 0_e) + g_a [v(a, 0_e) - v(0_a, 0_e)] + g_e [v(a, e) - v(a, 0_e)]
            out = v_null + g_a * (v_audio - v_null) + g_e * (v_full - v_audio)
            if n == 4:  # + (g_p - 1) [v(a, e, p) - v(a, e, 0_p)]
                out = out + (g_p - 1.0) * (v_full - v[3])
            return out

        return guided
