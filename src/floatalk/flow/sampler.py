"""Sampling motion latents for audio of any length, window by window (FLOAT §4.2, "long videos").

Notation: T frames in the clip, L frames per window, L' context frames, d latent size.

The clip's per-frame speech features are cut into windows of L frames. Window k is sampled by
solving the flow ODE from fresh noise, conditioned on the last L' *sampled* latents and speech
features of window k-1 (zeros for the first window). The last window's speech features are padded
by repeating the final frame, and the output is cut back to T frames.

`iter_motion_windows` yields each window as soon as it is sampled, so a caller can decode and
write frames while later windows are still being generated (flat memory for any length).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from .conditions import WindowConditions
from .guidance import ConditionalVelocityFn, IncrementalGuidance
from .solvers import SOLVERS, solve, time_grid

__all__ = ["MotionSampler", "WindowSample", "fmt_velocity", "num_windows"]


def num_windows(num_frames: int, window: int) -> int:
    """ceil(T / L)."""
    return math.ceil(num_frames / window)


def fmt_velocity(model: Callable[..., Tensor], context_frames: int) -> ConditionalVelocityFn:
    """Adapt a FlowMatchingTransformer to v(t, x, c) over the current frames only."""

    def velocity(t: Tensor, x: Tensor, cond: WindowConditions) -> Tensor:
        return model(x, t, **cond.as_kwargs())[:, context_frames:]

    return velocity


@dataclass
class WindowSample:
    """One sampled window: `latents` (B, n, d) are the clip's frames [start, start + n)."""

    index: int
    start: int
    latents: Tensor


@dataclass(frozen=True)
class MotionSampler:
    """Chunked flow-matching sampler (stateless; everything per call).

    Attributes:
        window: L, frames per window.
        context: L', frames carried from the previous window.
        nfe: velocity evaluations per window (see solvers.py; the released `--nfe 10` is 9 here).
        method: "euler" or "midpoint".
        guidance: incremental classifier-free guidance scales.
    """

    window: int = 50
    context: int = 10
    nfe: int = 10
    method: str = "euler"
    guidance: IncrementalGuidance = field(default_factory=IncrementalGuidance)

    def __post_init__(self) -> None:
        if self.method not in SOLVERS:
            raise ValueError(f"unknown solver {self.method!r}; choose one of {', '.join(SOLVERS)}")
        time_grid(self.nfe, self.method)  # validates nfe for the method
        if self.window < 1 or not 0 <= self.context <= self.window:
            raise ValueError(
                f"need window >= 1 and 0 <= context <= window, got {self.window}, {self.context}"
            )

    def iter_windows(
        self,
        velocity: ConditionalVelocityFn,
        audio_features: Tensor,
        source_motion: Tensor,
        emotion: Tensor,
        *,
        noise: Tensor | None = None,
        generator: torch.Generator | None = None,
        callback: Callable[[int, int], None] | None = None,
    ) -> Iterator[WindowSample]:
        """Sample the clip window by window.

        Args:
            velocity: v(t, x, c) for the current L frames, e.g. `fmt_velocity(fmt, L')`.
            audio_features: (B, T, d_a) per-frame speech features of the whole clip.
            source_motion: w_{r->S}, (B, d).
            emotion: w_e, (B, E).
            noise: optional x0 for every window, (B, ceil(T/L) * L, d); drawn when None.
            generator: torch.Generator for the noise (fresh noise for every window).
            callback: called with (evaluations done, evaluations total) over the whole clip.

        Yields:
            WindowSample per window, with the padding of the last window removed.
        """
        b, total, _ = audio_features.shape
        if total < 1:
            raise ValueError("audio_features must have at least one frame")
        d = source_motion.shape[-1]
        L, Lp = self.window, self.context
        count = num_windows(total, L)
        if noise is not None and tuple(noise.shape) != (b, count * L, d):
            raise ValueError(f"noise must have shape {(b, count * L, d)}, got {tuple(noise.shape)}")
        dtype, device = audio_features.dtype, audio_features.device
        prev_motion = audio_features.new_zeros(b, Lp, d)
        prev_audio = audio_features.new_zeros(b, Lp, audio_features.shape[-1])
        evaluations = count * self.nfe
        for k in range(count):
            start = k * L
            audio = audio_features[:, start : start + L]
            valid = audio.shape[1]
            if valid < L:  # repeat the final frame's features
                audio = F.pad(audio.transpose(1, 2), (0, L - valid), mode="replicate").transpose(1, 2)
            if noise is not None:
                x0 = noise[:, start : start + L].to(device=device, dtype=dtype)
            else:
                noise_device = generator.device if generator is not None else device
                x0 = torch.randn(b, L, d, generator=generator, device=noise_device).to(
                    device=device, dtype=dtype
                )
            cond = WindowConditions(audio, source_motion, emotion, prev_motion, prev_audio)
            step_cb = None
            if callback is not None:
                done_before = k * self.nfe

                def step_cb(done: int, _total: int, _base: int = done_before) -> None:
                    callback(_base + done, evaluations)

            x1 = solve(self.guidance.wrap(velocity, cond), x0, self.nfe, self.method, step_cb)
            if Lp:
                prev_motion, prev_audio = x1[:, L - Lp :], audio[:, L - Lp :]
            yield WindowSample(k, start, x1[:, :valid])

    def sample(
        self,
        velocity: ConditionalVelocityFn,
        audio_features: Tensor,
        source_motion: Tensor,
        emotion: Tensor,
        **kwargs,
    ) -> Tensor:
        """All windows concatenated: (B, T, d). Same arguments as `iter_windows`."""
        parts = [
            w.latents for w in self.iter_windows(velocity, audio_features, source_motion, emotion, **kwargs)
        ]
        return torch.cat(parts, dim=1)
