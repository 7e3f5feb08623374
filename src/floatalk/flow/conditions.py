"""The conditions of one FMT window, and how they are dropped ("nulled") for guidance and training.

A dropped condition is replaced by zeros, exactly as in training with condition dropout (FLOAT
§4.3), so the unconditional branches of classifier-free guidance are the zero-condition outputs;
the head pose, whose zero is a meaningful value, is replaced by NaN.
Dropping never mutates the caller's tensors.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
from torch import Tensor

__all__ = ["WindowConditions"]


def _zero_where(x: Tensor, keep: Tensor | None) -> Tensor:
    if keep is None:
        return x
    return x * keep.to(x.dtype).reshape(-1, *([1] * (x.dim() - 1)))


def _nan_where(x: Tensor, keep: Tensor | None) -> Tensor:
    """The pose's null is NaN (zero is a real pose: no movement from the source)."""
    if keep is None:
        return x
    return torch.where(keep.reshape(-1, *([1] * (x.dim() - 1))), x, torch.full_like(x, float("nan")))


@dataclass
class WindowConditions:
    """Conditions c of one window of L current and L' previous frames.

    Attributes:
        audio: a^{1:L}, (B, L, d_a).
        source_motion: w_{r->S}, (B, d).
        emotion: w_e, (B, E), or frame-wise over the window's L'+L frames, (B, L'+L, E).
        prev_motion: x_prev, clean latents of the previous L' frames, (B, L', d).
        prev_audio: a_prev, (B, L', d_a).
        pose: head pose of the window's L'+L frames relative to the source frame's, (B, L'+L, P),
            for a pose-conditioned model; None otherwise. Dropping it makes it NaN (the null pose;
            zeros are a head held at the source pose).
    """

    audio: Tensor
    source_motion: Tensor
    emotion: Tensor
    prev_motion: Tensor
    prev_audio: Tensor
    pose: Tensor | None = None

    @property
    def batch_size(self) -> int:
        return self.audio.shape[0]

    def as_kwargs(self) -> dict[str, Tensor]:
        """Keyword arguments for FlowMatchingTransformer.forward (pose only when there is one)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}

    def drop(
        self,
        audio: Tensor | None = None,
        emotion: Tensor | None = None,
        reference: Tensor | None = None,
        prev_motion: Tensor | None = None,
        prev_audio: Tensor | None = None,
        pose: Tensor | None = None,
    ) -> WindowConditions:
        """Copy with conditions zeroed per sample where the given keep-mask (B,) is False/0.

        A mask left as None keeps that condition for every sample.
        """
        return WindowConditions(
            audio=_zero_where(self.audio, audio),
            source_motion=_zero_where(self.source_motion, reference),
            emotion=_zero_where(self.emotion, emotion),
            prev_motion=_zero_where(self.prev_motion, prev_motion),
            prev_audio=_zero_where(self.prev_audio, prev_audio),
            pose=None if self.pose is None else _nan_where(self.pose, pose),
        )

    @staticmethod
    def cat(parts: list[WindowConditions]) -> WindowConditions:
        """Concatenate along the batch (the parts all have a pose or none has)."""
        out = {}
        for f in fields(WindowConditions):
            values = [getattr(p, f.name) for p in parts]
            if all(v is None for v in values):
                out[f.name] = None
            else:
                assert all(v is not None for v in values), f"{f.name} is missing in some parts"
                # a window-wide emotion (B, E) beside frame-wise ones (B, N, E): broadcast to frames
                if f.name == "emotion" and len({v.dim() for v in values}) > 1:
                    n = next(v.shape[1] for v in values if v.dim() == 3)
                    values = [v if v.dim() == 3 else v[:, None].expand(-1, n, -1) for v in values]
                out[f.name] = torch.cat(values)
        return WindowConditions(**out)
