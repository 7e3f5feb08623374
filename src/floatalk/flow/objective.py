"""The stage-2 training objective: flow matching in the motion latent space (FLOAT §4.2–4.3, Eq. 11–13).

A training window is L'+L consecutive frames: the clean previous latents x_prev (B, L', d) and the
clean target x1 (B, L, d). With x0 ~ N(0, I), t ~ U[0, 1] and the OT path x_t = (1 - t) x0 + t x1,
u_t = x1 - x0 (flow/path.py):

    v = v_θ(x_t, t | x_prev, a_prev, a, w_{r->S}, w_e)              (B, L'+L, d)
    L_OT   = |v[L':] - u_t|_1 + |v[:L'] - x_prev|_1                   (Eq. 11)
    L_vel  = |Δv - Δ[x_prev, u_t]|_1   (one-frame differences over all L'+L frames, Eq. 12)
    L      = λ_OT L_OT + λ_vel L_vel                                  (Eq. 13, λ = 1)

The conditions are dropped per sample first (flow/dropout.py), which trains the unconditional
branches used by guidance.

`TrainingObjective` is what a stage-2 objective provides; `FlowMatchingObjective` is the paper's.
The paper's ablations (ε- and x0-prediction diffusion) would be other implementations of it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor

from .conditions import WindowConditions
from .dropout import ConditionDropout
from .path import OTPath

__all__ = ["FlowMatchingObjective", "Network", "TrainingObjective", "flow_matching_losses"]


class Network(Protocol):
    """The trained network: ``net(x_t, t, **conditions.as_kwargs()) -> (B, L'+L, d)``.

    x_t: (B, L, d) noisy current frames; t: (B,) time (or noise level) per sample.
    """

    def __call__(self, x: Tensor, t: Tensor, **conditions: Tensor) -> Tensor: ...


@runtime_checkable
class TrainingObjective(Protocol):
    """What a stage-2 objective provides: the training losses of one batch of windows.

    An implementation draws its own randomness (condition dropout, noise, time) from the global torch
    RNG, so that resumed runs stay exact (see floatalk.train.trainer).
    """

    def losses(
        self, network: Network, x1: Tensor, prev_motion: Tensor, conditions: WindowConditions
    ) -> dict[str, Tensor]:
        """Losses of a batch.

        Args:
            network: the trained network (see `Network`).
            x1: clean latents of the current frames, (B, L, d).
            prev_motion: clean latents of the previous frames, (B, L', d).
            conditions: the batch's conditions before dropout (their prev_motion is normally `prev_motion`).

        Returns:
            Named scalar loss tensors; "loss" is the one to minimise.
        """
        ...


def flow_matching_losses(
    velocity: Tensor, u_t: Tensor, prev_motion: Tensor, ot_weight: float = 1.0, velocity_weight: float = 1.0
) -> dict[str, Tensor]:
    """FLOAT Eq. 11–13 on one window.

    Args:
        velocity: v_θ over the window, (B, L'+L, d).
        u_t: target velocity of the current frames, (B, L, d).
        prev_motion: ground-truth latents of the previous frames, (B, L', d).
        ot_weight: λ_OT.
        velocity_weight: λ_vel.

    Returns:
        {"ot": L_OT, "prev": the previous-frame part of L_OT, "velocity": L_vel, "loss": total}.
    """
    lp = prev_motion.shape[1]
    # Eq. 11: L1 of the current frames' velocity against u_t, of the previous frames' output against x_prev
    ot = (velocity[:, lp:] - u_t).abs().mean()
    prev = (velocity[:, :lp] - prev_motion).abs().mean() if lp else velocity.new_zeros(())
    # Eq. 12: L1 between the one-frame differences of the output and of the target [x_prev, u_t]
    target = torch.cat([prev_motion, u_t], dim=1)
    vel = (velocity.diff(dim=1) - target.diff(dim=1)).abs().mean()
    # Eq. 13: the weighted sum
    total = ot_weight * (ot + prev) + velocity_weight * vel
    return {"ot": ot, "prev": prev, "velocity": vel, "loss": total}


@dataclass(frozen=True)
class FlowMatchingObjective:
    """Conditional flow matching on the OT path with condition dropout (FLOAT Eq. 11–13).

    Example:
        >>> objective = FlowMatchingObjective()
        >>> losses = objective.losses(fmt, x1, x_prev, conditions)
        >>> losses["loss"].backward()
    """

    path: OTPath = field(default_factory=OTPath)
    ot_weight: float = 1.0  # λ_OT
    velocity_weight: float = 1.0  # λ_vel
    dropout: ConditionDropout = field(default_factory=ConditionDropout)

    def losses(
        self, network: Network, x1: Tensor, prev_motion: Tensor, conditions: WindowConditions
    ) -> dict[str, Tensor]:
        """Flow-matching losses of a batch (see `TrainingObjective.losses`).

        Random draws, in this order: the dropout keep-masks (ConditionDropout), x0 ~ N(0, I) like x1,
        t ~ U[0, 1] of shape (B,).

        Returns:
            {"ot", "prev", "velocity", "loss"} as in `flow_matching_losses`.
        """
        b = x1.shape[0]
        cond = self.dropout(conditions, device=x1.device)
        x0 = torch.randn_like(x1)  # (B, L, d)
        t = torch.rand(b, device=x1.device)  # (B,)
        sample = self.path.sample(x0, x1, t)  # x_t and u_t (Eq. 11's target), (B, L, d)
        velocity = network(sample.x_t, sample.t, **cond.as_kwargs())  # (B, L'+L, d)
        return flow_matching_losses(velocity, sample.u_t, prev_motion, self.ot_weight, self.velocity_weight)
