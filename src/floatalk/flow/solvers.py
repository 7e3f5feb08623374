"""Fixed-grid ODE solvers for dx/dt = v(t, x) from t = 0 (noise) to t = 1 (data).

Notation: `VelocityFn` is any callable (t: 0-d tensor, x: (B, ...)) -> v shaped like x.

NFE (number of function evaluations) here is the true number of calls to the velocity:
    euler:    nfe steps on linspace(0, 1, nfe + 1), one evaluation per step;
    midpoint: nfe / 2 steps, two evaluations per step (nfe must be even).
The released FLOAT's `--nfe 10` means 10 *grid points* with Euler, i.e. 9 evaluations: that is
`nfe=9` here.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import torch
from torch import Tensor

__all__ = ["SOLVERS", "VelocityFn", "solve", "time_grid"]

VelocityFn = Callable[[Tensor, Tensor], Tensor]
StepCallback = Callable[[int, int], None]  # (evaluations done, evaluations total)

SOLVERS = ("euler", "midpoint")


def _evaluations_per_step(method: str) -> int:
    assert method in SOLVERS, f"unknown solver {method!r}"
    return 1 if method == "euler" else 2


def time_grid(nfe: int, method: str = "euler") -> Tensor:
    """The float32 time grid a solver with this NFE steps over: linspace(0, 1, steps + 1).

    nfe and method are checked where users give them (floatalk.options); here they are asserted.
    """
    per_step = _evaluations_per_step(method)
    assert nfe >= 1 and nfe % per_step == 0, f"the {method} solver cannot take nfe={nfe}"
    return torch.linspace(0.0, 1.0, nfe // per_step + 1)


def solve(
    velocity: VelocityFn,
    x0: Tensor,
    nfe: int,
    method: str = "euler",
    callback: StepCallback | None = None,
) -> Tensor:
    """Integrate from t=0 to t=1 with exactly `nfe` velocity evaluations.

    Args:
        velocity: v(t, x).
        x0: initial state (noise), any shape.
        nfe: number of velocity evaluations.
        method: "euler" or "midpoint".
        callback: called after every evaluation with (done, total).

    Returns:
        x at t = 1, shaped like x0.

    Example:
        >>> solve(lambda t, x: 3 * t**2 * torch.ones_like(x), torch.zeros(2), nfe=4, method="midpoint")
    """
    grid = time_grid(nfe, method).to(x0.device)
    x = x0
    done = 0

    def evaluate(t: Tensor, state: Tensor) -> Tensor:
        nonlocal done
        v = velocity(t, state)
        done += 1
        if callback is not None:
            callback(done, nfe)
        return v

    for t0, t1 in itertools.pairwise(grid):
        dt = t1 - t0
        if method == "euler":
            x = x + dt * evaluate(t0, x)
        else:
            half = 0.5 * dt
            x_mid = x + evaluate(t0, x) * half
            x = x + dt * evaluate(t0 + half, x_mid)
    return x
