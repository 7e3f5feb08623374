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
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from .conditions import WindowConditions
from .guidance import ConditionalVelocityFn, IncrementalGuidance
from .process import FlowODE, GenerativeProcess
from .solvers import SOLVERS

__all__ = ["MotionSampler", "WindowContext", "WindowSample", "fmt_velocity", "num_windows", "window_track"]


def num_windows(num_frames: int, window: int) -> int:
    """ceil(T / L)."""
    return math.ceil(num_frames / window)


def window_track(track: Tensor, start: int, context: int, window: int) -> Tensor:
    """Frames [start - L', start + L) of a per-frame track (B, T, C), the ends repeated: (B, L'+L, C).

    Before the clip the first frame's value holds, past its end the last frame's (like the speech
    features of the last window).
    """
    total = track.shape[1]
    index = torch.arange(start - context, start + window, device=track.device).clamp(0, total - 1)
    return track[:, index]


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


@dataclass
class WindowContext:
    """What window k carries into window k+1: the last L' sampled latents and their speech features.

    Attributes:
        prev_motion: x_prev, (B, L', d); zeros before the first window.
        prev_audio: a_prev, (B, L', d_a); zeros before the first window.
    """

    prev_motion: Tensor
    prev_audio: Tensor

    @staticmethod
    def empty(audio_features: Tensor, latent_dim: int, context: int) -> WindowContext:
        """The zero context of a clip's first window, on the features' device and dtype."""
        b, _, d_a = audio_features.shape
        return WindowContext(
            audio_features.new_zeros(b, context, latent_dim), audio_features.new_zeros(b, context, d_a)
        )


@dataclass(frozen=True)
class MotionSampler:
    """Chunked flow-matching sampler (stateless: the window-to-window state is a WindowContext).

    `sample_window` is the unit step; `iter_windows` runs it over a whole clip. A streaming consumer
    calls `sample_window` itself as speech arrives, carrying the WindowContext from window to window.

    Attributes:
        window: L, frames per window.
        context: L', frames carried from the previous window.
        nfe: velocity evaluations per window (see solvers.py; the released `--nfe 10` is 9 here);
            under a diffusion process, its DDIM steps.
        method: "euler" or "midpoint" (the flow ODE's solver).
        guidance: incremental classifier-free guidance scales.
        process: how a window's noise becomes latents: None for the flow ODE (the paper), or another
            GenerativeProcess (flow/diffusion.py's DDIM for the Table 3 ablations); guidance combines
            its network outputs the same way.

    The values are checked where users give them (floatalk.options.GenerateOptions); here they are
    only asserted.
    """

    window: int
    context: int
    nfe: int
    method: str
    guidance: IncrementalGuidance
    process: GenerativeProcess | None = None  # None: the flow ODE with `method` (FLOAT); else e.g. DDIM

    def __post_init__(self) -> None:
        assert self.method in SOLVERS, self.method
        assert self.window >= 1 and 0 <= self.context <= self.window, (self.window, self.context)
        self.integrator.check_steps(self.nfe)

    @property
    def integrator(self) -> GenerativeProcess:
        """The process that maps a window's noise to its latents (flow ODE unless one was given)."""
        return FlowODE(self.method) if self.process is None else self.process

    def window_audio(self, audio_features: Tensor, start: int) -> tuple[Tensor, int]:
        """a^{start:start+L}, the final frame repeated past the clip end: ((B, L, d_a), valid frames)."""
        audio = audio_features[:, start : start + self.window]
        valid = audio.shape[1]
        if valid < self.window:  # repeat the final frame's features
            audio = F.pad(audio.transpose(1, 2), (0, self.window - valid), mode="replicate").transpose(1, 2)
        return audio, valid

    def sample_window(
        self,
        velocity: ConditionalVelocityFn,
        audio: Tensor,
        source_motion: Tensor,
        emotion: Tensor,
        context: WindowContext,
        x0: Tensor,
        callback: Callable[[int, int], None] | None = None,
        pose: Tensor | None = None,
        emotion_weight: Tensor | None = None,
    ) -> tuple[Tensor, WindowContext]:
        """Solve the flow ODE of one window (Eq. 14 guidance inside `velocity`'s wrapper).

        Args:
            velocity: v(t, x, c) for the current L frames, e.g. `fmt_velocity(fmt, L')`.
            audio: a, (B, L, d_a) speech features of the window.
            source_motion: w_{r->S}, (B, d).
            emotion: w_e, (B, E), or frame-wise over the window's L'+L frames, (B, L'+L, E).
            context: the previous window's WindowContext (WindowContext.empty for the first).
            x0: the initial noise, (B, L, d).
            callback: called after each evaluation with (done, nfe).
            pose: head pose of the window's L'+L frames, (B, L'+L, P), or None.
            emotion_weight: (B, L, 1) per-frame factor on g_e (emotion timeline intensities), or None.

        Returns:
            (x1, the context for the next window): x1 = w_{r->D} of the window, (B, L, d).
        """
        cond = WindowConditions(audio, source_motion, emotion, context.prev_motion, context.prev_audio, pose)
        guided = self.guidance.wrap(velocity, cond, emotion_weight)
        x1 = self.integrator.integrate(guided, x0, self.nfe, callback)
        lp, length = self.context, self.window
        if lp:
            context = WindowContext(x1[:, length - lp :], audio[:, length - lp :])
        return x1, context

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
        pose: Tensor | None = None,
        emotion_weight: Tensor | None = None,
    ) -> Iterator[WindowSample]:
        """Sample the clip window by window.

        Args:
            velocity: v(t, x, c) for the current L frames, e.g. `fmt_velocity(fmt, L')`.
            audio_features: (B, T, d_a) per-frame speech features of the whole clip.
            source_motion: w_{r->S}, (B, d).
            emotion: w_e, (B, E), or one per frame of the clip, (B, T, E).
            pose: head pose per frame of the clip, (B, T, P), for a pose-conditioned model.
            emotion_weight: per-frame factor on g_e, (B, T) (emotion timeline intensities).
            noise: optional x0 for every window, (B, ceil(T/L) * L, d); drawn when None.
            generator: torch.Generator for the noise (fresh noise for every window).
            callback: called with (evaluations done, evaluations total) over the whole clip.

        Yields:
            WindowSample per window, with the padding of the last window removed.
        """
        b, total, _ = audio_features.shape
        assert total >= 1, "audio_features must have at least one frame"
        d = source_motion.shape[-1]
        length = self.window
        count = num_windows(total, length)
        assert noise is None or tuple(noise.shape) == (b, count * length, d), tuple(noise.shape)
        tracks = (
            ("emotion", emotion if emotion.dim() == 3 else None),
            ("pose", pose),
            ("weight", emotion_weight),
        )
        for name, track in tracks:
            assert track is None or track.shape[:2] == (b, total), (name, tuple(track.shape))
        dtype, device = audio_features.dtype, audio_features.device
        context = WindowContext.empty(audio_features, d, self.context)
        evaluations = count * self.nfe
        for k in range(count):
            start = k * length
            audio, valid = self.window_audio(audio_features, start)
            if noise is not None:
                x0 = noise[:, start : start + length].to(device=device, dtype=dtype)
            else:
                noise_device = generator.device if generator is not None else device
                x0 = torch.randn(b, length, d, generator=generator, device=noise_device).to(
                    device=device, dtype=dtype
                )
            step_cb = None
            if callback is not None:
                done_before = k * self.nfe

                def step_cb(done: int, _total: int, _base: int = done_before) -> None:
                    callback(_base + done, evaluations)

            lp = self.context
            window_emotion = emotion if emotion.dim() == 2 else window_track(emotion, start, lp, length)
            window_pose = None if pose is None else window_track(pose, start, lp, length)
            weight = None
            if emotion_weight is not None:
                weight = window_track(emotion_weight[..., None], start, 0, length)  # (B, L, 1)
            x1, context = self.sample_window(
                velocity,
                audio,
                source_motion,
                window_emotion,
                context,
                x0,
                step_cb,
                pose=window_pose,
                emotion_weight=weight,
            )
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
