"""The generative process a window sampler integrates: the flow ODE, or (ablation) a diffusion sampler.

A process turns an initial noise tensor into a clean sample with a fixed number of evaluations of a
(guided) network output `predict(t, x)`:

    t: 0-d float tensor, the network's time input in FLOAT's flow convention (0 = noise, 1 = data);
    x: the current state, (B, L, d);
    predict(t, x): the network's output for the current frames, shaped like x; what it means (a
        velocity, a noise ε or a clean x0) is the process's business.

`FlowODE` (here) integrates dx/dt = v(t, x) with the fixed-grid solvers of solvers.py: the paper's
method. `floatalk.flow.diffusion.DDIMProcess` runs DDIM for the Table 3 diffusion ablations. Both
satisfy `GenerativeProcess`, so a sampler can take either; classifier-free guidance
(`IncrementalGuidance.wrap`) combines the network outputs linearly and works for any of them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from torch import Tensor

from .solvers import SOLVERS, solve

__all__ = ["FlowODE", "GenerativeProcess", "PredictFn", "StepCallback"]

PredictFn = Callable[[Tensor, Tensor], Tensor]  # (t: 0-d time, x: (B, L, d)) -> output like x
StepCallback = Callable[[int, int], None]  # (evaluations done, evaluations total)


@runtime_checkable
class GenerativeProcess(Protocol):
    """Maps noise to a clean sample with `steps` evaluations of `predict`."""

    def integrate(
        self, predict: PredictFn, noise: Tensor, steps: int, callback: StepCallback | None = None
    ) -> Tensor:
        """Run the process.

        Args:
            predict: the (guided) network output predict(t, x) for the current frames (see module doc).
            noise: the initial state, (B, L, d), drawn from N(0, I).
            steps: the number of evaluations of `predict` (valid per `check_steps`).
            callback: called after every evaluation with (done, steps).

        Returns:
            The clean sample, shaped like `noise`.
        """
        ...

    def check_steps(self, steps: int) -> None:
        """Raise ValueError (one line naming the limit) when the process cannot take `steps`."""
        ...


@dataclass(frozen=True)
class FlowODE:
    """The flow ODE dx/dt = v(t, x) from t = 0 (noise) to t = 1 (data), FLOAT's sampler.

    `integrate(v, x0, steps)` is `solve(v, x0, steps, method)`: exactly `steps` velocity evaluations
    (Euler: `steps` steps on linspace(0, 1, steps + 1); midpoint: steps / 2 steps of two evaluations).

    Example:
        >>> FlowODE("midpoint").integrate(lambda t, x: -x, torch.ones(2, 3, 4), steps=10)
    """

    method: str = "euler"  # "euler" or "midpoint" (solvers.SOLVERS)

    def __post_init__(self) -> None:
        if self.method not in SOLVERS:
            raise ValueError(f"unknown ODE solver {self.method!r}; choose one of {', '.join(SOLVERS)}")

    @property
    def evaluations_per_step(self) -> int:
        """Velocity evaluations per solver step: 1 (Euler) or 2 (midpoint)."""
        return 1 if self.method == "euler" else 2

    def check_steps(self, steps: int) -> None:
        """ValueError unless steps >= 1 and a whole number of solver steps."""
        per_step = self.evaluations_per_step
        if steps < 1 or steps % per_step:
            need = "a positive even number" if per_step == 2 else "at least 1"
            raise ValueError(f"the {self.method} solver needs {need} of evaluations, got {steps}")

    def integrate(
        self, predict: PredictFn, noise: Tensor, steps: int, callback: StepCallback | None = None
    ) -> Tensor:
        """x at t = 1 from x = `noise` at t = 0, with `steps` evaluations of the velocity `predict`.

        Args:
            predict: v(t, x), t a 0-d tensor on the time grid.
            noise: x0, (B, L, d).
            steps: velocity evaluations (see `check_steps`).
            callback: called after every evaluation with (done, steps).

        Returns:
            x1, shaped like `noise`.
        """
        self.check_steps(steps)
        return solve(predict, noise, steps, self.method, callback)
