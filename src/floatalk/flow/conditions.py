"""The conditions of one FMT window, and how they are dropped ("nulled") for guidance and training.

A dropped condition is replaced by zeros, exactly as in training with condition dropout (FLOAT
§4.3), so the unconditional branches of classifier-free guidance are the zero-condition outputs.
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


@dataclass
class WindowConditions:
    """Conditions c of one window of L current and L' previous frames.

    Attributes:
        audio: a^{1:L}, (B, L, d_a).
        source_motion: w_{r->S}, (B, d).
        emotion: w_e, (B, E).
        prev_motion: x_prev, clean latents of the previous L' frames, (B, L', d).
        prev_audio: a_prev, (B, L', d_a).
    """

    audio: Tensor
    source_motion: Tensor
    emotion: Tensor
    prev_motion: Tensor
    prev_audio: Tensor

    @property
    def batch_size(self) -> int:
        return self.audio.shape[0]

    def as_kwargs(self) -> dict[str, Tensor]:
        """Keyword arguments for FlowMatchingTransformer.forward."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def drop(
        self,
        audio: Tensor | None = None,
        emotion: Tensor | None = None,
        reference: Tensor | None = None,
        prev_motion: Tensor | None = None,
        prev_audio: Tensor | None = None,
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
        )

    @staticmethod
    def cat(parts: list[WindowConditions]) -> WindowConditions:
        """Concatenate along the batch."""
        return WindowConditions(
            **{f.name: torch.cat([getattr(p, f.name) for p in parts]) for f in fields(WindowConditions)}
        )
