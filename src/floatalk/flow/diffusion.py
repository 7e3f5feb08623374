"""Diffusion in the motion latent space: FLOAT's Table 3 ablation baselines (ε- and x0-prediction).

The paper compares its flow matching with a diffusion model over the same motion latents and the same
network, trained to predict either the noise ε or the clean latents x0 ("x0 with the velocity loss"),
and sampled with DDIM (50 steps). This module provides the three parts that plug into the flow
machinery in place of the OT path, the flow objective and the ODE:

Schedule (`CosineSchedule`, Nichol & Dhariwal 2021), N discrete steps n in {0, ..., N-1}:

    f(τ)  = cos²((τ + s) / (1 + s) · π/2)
    β_n   = min(1 - f((n+1)/N) / f(n/N), 0.999)
    ᾱ_n   = ∏_{i<=n} (1 - β_i)                  (≈ 1 at n = 0, ≈ 0 at n = N-1)
    x_n   = sqrt(ᾱ_n) x1 + sqrt(1 - ᾱ_n) ε,      ε ~ N(0, I)

Time input. One network class serves flow matching and diffusion, so the network sees FLOAT's flow
time (t = 0 pure noise, t = 1 data). Step n's noise level is that of the continuous cosine time
τ = (n+1)/N, and

    t = 1 - (n + 1) / N            n = N (1 - t) - 1   (rounded)

so n = N-1 (noisiest) is t = 0 and n = 0 (least noisy) is t = 1 - 1/N.

Objective (`DiffusionObjective`), on a window of clean previous latents x_prev (B, L', d) and clean
current latents x1 (B, L, d); out = net(x_n, t | c) is (B, L'+L, d) with out[:, :L'] the previous
frames' output (trained toward the clean x_prev, the "prev" term of FLOAT Eq. 11):

    ε-prediction:  L = |out[L':] - ε|_1 + |out[:L'] - x_prev|_1
    x0-prediction: L = |out[L':] - x1|_1 + |out[:L'] - x_prev|_1 + λ_vel |Δout - Δ[x_prev, x1]|_1

(Δ: one-frame differences over all L'+L frames, FLOAT Eq. 12 with [x_prev, x̂0] as the target.)

Sampler (`DDIMProcess`, Song et al. 2021), S steps n_k = (S - k) · floor(N / S), k = 1..S (the
"leading" spacing of DDIM's code and of diffusers: 490, 480, ..., 0 for N = 500, S = 50):

    x̂0 = clip((x - sqrt(1 - ᾱ_n) ε̂) / sqrt(ᾱ_n))    or    x̂0 = clip(network output)
    ε̂  = (x - sqrt(ᾱ_n) x̂0) / sqrt(1 - ᾱ_n)
    σ  = η sqrt((1 - ᾱ') / (1 - ᾱ_n)) sqrt(1 - ᾱ_n / ᾱ')
    x ← sqrt(ᾱ') x̂0 + sqrt(1 - ᾱ' - σ²) ε̂ + σ z

with ᾱ' the next step's ᾱ, and ᾱ' = 1 after the last (n_S = 0) step, which therefore returns x̂0.
η = 0 is the deterministic DDIM of the paper. clip(·) bounds x̂0 elementwise to ±c, c the training
latents' largest magnitude (FMTConfig.diffusion_clip), when given.

Why leading spacing and the clip (measured, docs/training.md): with the cosine schedule ᾱ_{N-1} is
about 1e-8, so ε-prediction's first x̂0 = (x - ...)/sqrt(ᾱ) multiplies the network's error by 1e4:
starting at N-1 the ε model's faces were lost (P-FID in the tens of thousands). Starting at
n = 490 (ᾱ ≈ 8e-4) divides by 0.028 instead, and the clip removes what is left of the blow-up.
x0-prediction is unaffected by both (its x̂0 is the output itself).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

from .conditions import WindowConditions
from .dropout import ConditionDropout
from .objective import Network, flow_matching_losses
from .process import PredictFn, StepCallback

__all__ = ["PREDICTIONS", "CosineSchedule", "DDIMProcess", "DiffusionObjective", "diffusion_losses"]

PREDICTIONS = ("epsilon", "x0")  # what the network is trained to output for the current frames


def _check_prediction(prediction: str) -> None:
    if prediction not in PREDICTIONS:
        raise ValueError(
            f"unknown diffusion prediction {prediction!r}; choose one of {', '.join(PREDICTIONS)}"
        )


@dataclass(frozen=True)
class CosineSchedule:
    """The cosine noise schedule of Nichol & Dhariwal (2021) over N discrete steps (see module doc).

    Attributes:
        num_steps: N, the number of diffusion steps.
        s: the offset that keeps β small near n = 0.

    Example:
        >>> schedule = CosineSchedule()
        >>> schedule.alpha_bar(torch.tensor([0, 499]))  # ≈ [1, 0]
        >>> schedule.time(torch.tensor(499))  # 0.0, pure noise in the flow convention
    """

    num_steps: int = 500
    s: float = 0.008

    def __post_init__(self) -> None:
        if self.num_steps < 1:
            raise ValueError(f"the diffusion schedule needs at least 1 step, got num_steps={self.num_steps}")
        if not 0.0 <= self.s < float("inf"):
            raise ValueError(f"the cosine schedule offset s must be >= 0, got {self.s}")

    def _f(self, tau: Tensor) -> Tensor:
        return torch.cos((tau + self.s) / (1 + self.s) * (math.pi / 2)) ** 2

    def betas(self) -> Tensor:
        """β_n for n = 0..N-1, (N,) float64, clipped at 0.999."""
        tau = torch.arange(self.num_steps + 1, dtype=torch.float64) / self.num_steps
        f = self._f(tau)
        return (1 - f[1:] / f[:-1]).clamp(max=0.999)

    def alpha_bars(self) -> Tensor:
        """ᾱ_n = ∏_{i<=n} (1 - β_i) for n = 0..N-1, (N,) float64, decreasing."""
        return torch.cumprod(1 - self.betas(), dim=0)

    def alpha_bar(self, n: Tensor) -> Tensor:
        """ᾱ at integer steps `n` (any shape, values in 0..N-1): float64 of n's shape, on n's device."""
        return self.alpha_bars().to(n.device)[n.long()]

    def time(self, n: Tensor) -> Tensor:
        """The network's time input of steps `n`: t = 1 - (n + 1) / N, float32 of n's shape."""
        return (1.0 - (n.to(torch.float64) + 1) / self.num_steps).to(torch.float32)

    def step(self, t: Tensor) -> Tensor:
        """The step of time `t` (the inverse of `time`): n = round(N (1 - t)) - 1 in 0..N-1, int64."""
        n = torch.round(self.num_steps * (1.0 - t.to(torch.float64))) - 1
        return n.clamp(0, self.num_steps - 1).long()

    def perturb(self, x1: Tensor, noise: Tensor, n: Tensor) -> Tensor:
        """x_n = sqrt(ᾱ_n) x1 + sqrt(1 - ᾱ_n) ε.

        Args:
            x1: clean latents, (B, ...).
            noise: ε, shaped like x1.
            n: steps, (B,).

        Returns:
            x_n, shaped and typed like x1.
        """
        ab = self.alpha_bar(n).reshape(-1, *([1] * (x1.dim() - 1)))
        return ab.sqrt().to(x1.dtype) * x1 + (1 - ab).sqrt().to(x1.dtype) * noise


def diffusion_losses(
    output: Tensor, target: Tensor, prev_motion: Tensor, prediction: str, velocity_weight: float = 1.0
) -> dict[str, Tensor]:
    """The diffusion ablation's losses on one window (see module doc).

    Args:
        output: the network's output over the window, (B, L'+L, d).
        target: what the current frames should be: ε (prediction "epsilon") or x1 ("x0"), (B, L, d).
        prev_motion: ground-truth latents of the previous frames, (B, L', d).
        prediction: "epsilon" or "x0".
        velocity_weight: λ_vel of the x0 velocity loss (unused for ε-prediction).

    Returns:
        {"denoise": L1 of the current frames against `target`, "prev": L1 of the previous frames
        against `prev_motion`, "velocity": the one-frame-difference L1 (x0 only; zero for ε),
        "loss": the sum (velocity weighted)}.
    """
    _check_prediction(prediction)
    if prediction == "x0":  # Eq. 11-13 with the clean x1 in place of u_t
        parts = flow_matching_losses(output, target, prev_motion, 1.0, velocity_weight)
        return {
            "denoise": parts["ot"],
            "prev": parts["prev"],
            "velocity": parts["velocity"],
            "loss": parts["loss"],
        }
    lp = prev_motion.shape[1]
    denoise = (output[:, lp:] - target).abs().mean()
    prev = (output[:, :lp] - prev_motion).abs().mean() if lp else output.new_zeros(())
    return {"denoise": denoise, "prev": prev, "velocity": output.new_zeros(()), "loss": denoise + prev}


@dataclass(frozen=True)
class DiffusionObjective:
    """Diffusion training in the motion latent space with condition dropout (FLOAT Table 3 ablations).

    Implements `floatalk.flow.objective.TrainingObjective`. The network gets x_n for the current
    frames and the flow-convention time t = schedule.time(n) of shape (B,).

    Attributes:
        prediction: "epsilon" (the network predicts ε) or "x0" (it predicts the clean x1).
        schedule: the noise schedule.
        velocity_weight: λ_vel of the x0-prediction velocity loss (ignored for ε-prediction).
        dropout: per-sample condition dropout, as in flow-matching training.

    Example:
        >>> objective = DiffusionObjective("x0")
        >>> objective.losses(fmt, x1, x_prev, conditions)["loss"].backward()
    """

    prediction: str = "epsilon"
    schedule: CosineSchedule = field(default_factory=CosineSchedule)
    velocity_weight: float = 1.0
    dropout: ConditionDropout = field(default_factory=ConditionDropout)

    def __post_init__(self) -> None:
        _check_prediction(self.prediction)

    def losses(
        self, network: Network, x1: Tensor, prev_motion: Tensor, conditions: WindowConditions
    ) -> dict[str, Tensor]:
        """Diffusion losses of a batch (see `TrainingObjective.losses`).

        Random draws from the global torch RNG, in this order: the dropout keep-masks
        (ConditionDropout), ε ~ N(0, I) like x1, n ~ randint(0, N) of shape (B,).

        Returns:
            {"denoise", "prev", "velocity", "loss"} as in `diffusion_losses`.
        """
        b = x1.shape[0]
        cond = self.dropout(conditions, device=x1.device)
        noise = torch.randn_like(x1)  # ε, (B, L, d)
        n = torch.randint(0, self.schedule.num_steps, (b,), device=x1.device)  # (B,)
        x_n = self.schedule.perturb(x1, noise, n)  # (B, L, d)
        output = network(x_n, self.schedule.time(n), **cond.as_kwargs())  # (B, L'+L, d)
        target = noise if self.prediction == "epsilon" else x1
        return diffusion_losses(output, target, prev_motion, self.prediction, self.velocity_weight)


@dataclass(frozen=True)
class DDIMProcess:
    """DDIM sampling (see module doc); a `floatalk.flow.process.GenerativeProcess`.

    Attributes:
        prediction: what `predict` returns for the current frames: "epsilon" or "x0".
        schedule: the schedule the network was trained with.
        eta: η; 0 is deterministic DDIM (the paper). For η > 0 the fresh noise z ~ N(0, I) of each
            step but the last is drawn from the global torch RNG (randn_like of the state).

    Example:
        >>> DDIMProcess("x0").integrate(predict, torch.randn(1, 50, 512), steps=50)
    """

    prediction: str = "epsilon"
    schedule: CosineSchedule = field(default_factory=CosineSchedule)
    eta: float = 0.0
    clip: float | None = None

    def __post_init__(self) -> None:
        _check_prediction(self.prediction)
        if not 0.0 <= self.eta < float("inf"):
            raise ValueError(f"DDIM eta must be >= 0, got {self.eta}")
        if self.clip is not None and not self.clip > 0:
            raise ValueError(f"DDIM clip must be > 0 or None, got {self.clip}")

    def check_steps(self, steps: int) -> None:
        """ValueError unless 1 <= steps <= N."""
        if not 1 <= steps <= self.schedule.num_steps:
            raise ValueError(
                f"DDIM takes 1 to {self.schedule.num_steps} steps (the schedule's num_steps), got {steps}"
            )

    def timesteps(self, steps: int) -> Tensor:
        """The steps visited, (steps,) int64 decreasing: (S - k) floor(N / S), k = 1..S, ending at 0.

        They are distinct for steps <= N; one step visits only step 0.
        """
        self.check_steps(steps)
        stride = self.schedule.num_steps // steps
        return torch.arange(steps - 1, -1, -1, dtype=torch.int64) * stride

    def integrate(
        self, predict: PredictFn, noise: Tensor, steps: int, callback: StepCallback | None = None
    ) -> Tensor:
        """The clean sample from x = `noise` at step N-1, with `steps` evaluations of `predict`.

        Args:
            predict: predict(t, x) -> ε̂ or x̂0 (per `prediction`) for the current frames, shaped like
                x; t is the 0-d float32 flow time schedule.time(n) of the step on noise's device.
            noise: x at the noisiest step, (B, L, d), drawn from N(0, I).
            steps: evaluations of `predict`, 1..N (the paper: 50).
            callback: called after every evaluation with (done, steps).

        Returns:
            x̂0 of the last step, shaped and typed like `noise`.
        """
        ns = self.timesteps(steps)
        alpha_bars = self.schedule.alpha_bars()
        times = self.schedule.time(ns).to(noise.device)
        x = noise
        for k in range(steps):
            a = float(alpha_bars[ns[k]])
            a_next = float(alpha_bars[ns[k + 1]]) if k + 1 < steps else 1.0
            out = predict(times[k], x).to(x.dtype)
            x0 = (x - math.sqrt(1 - a) * out) / math.sqrt(a) if self.prediction == "epsilon" else out
            if self.clip is not None:
                x0 = x0.clamp(-self.clip, self.clip)
            eps = (x - math.sqrt(a) * x0) / math.sqrt(1 - a)
            sigma = self.eta * math.sqrt((1 - a_next) / (1 - a) * (1 - a / a_next))
            x = math.sqrt(a_next) * x0 + math.sqrt(max(1 - a_next - sigma**2, 0.0)) * eps
            if sigma > 0:
                x = x + sigma * torch.randn_like(x)
            if callback is not None:
                callback(k + 1, steps)
        return x
