"""ODE solvers, OT path: exactness on analytic fields and NFE accounting."""

from __future__ import annotations

import pytest
import torch

from floatalk.flow.path import OTPath
from floatalk.flow.solvers import solve, time_grid


def counting(fn):
    calls = []

    def wrapped(t, x):
        calls.append(float(t))
        return fn(t, x)

    return wrapped, calls


def test_euler_is_exact_for_constant_velocity():
    v, calls = counting(lambda t, x: torch.full_like(x, 3.0))
    x1 = solve(v, torch.zeros(4), nfe=7, method="euler")
    assert torch.allclose(x1, torch.full((4,), 3.0))
    assert len(calls) == 7


def test_euler_is_the_left_riemann_sum_of_3t2():
    nfe = 9
    x1 = solve(lambda t, x: 3 * t**2 * torch.ones_like(x), torch.zeros(1, dtype=torch.float64), nfe=nfe)
    ts = torch.linspace(0, 1, nfe + 1, dtype=torch.float64)[:-1]
    assert torch.allclose(x1, (3 * ts**2).sum() / nfe, atol=1e-6)


def test_midpoint_is_exact_for_linear_in_time_velocity():
    v, calls = counting(lambda t, x: 2 * t * torch.ones_like(x))  # x(t) = t^2
    assert torch.allclose(solve(v, torch.zeros(2), nfe=4, method="midpoint"), torch.ones(2), atol=1e-6)
    assert len(calls) == 4
    assert calls == pytest.approx([0.0, 0.25, 0.5, 0.75])


def test_midpoint_is_second_order_on_exponential():
    err = []
    for nfe in (16, 32, 64):
        x1 = solve(lambda t, x: x, torch.ones(1, dtype=torch.float64), nfe=nfe, method="midpoint")
        err.append(abs(float(x1) - torch.e))
    assert err[0] / err[1] > 3.7 and err[1] / err[2] > 3.7


def test_released_grid_semantics():
    """The released `--nfe 10` is linspace(0, 1, 10): 9 Euler evaluations = nfe 9 here."""
    assert torch.equal(time_grid(9, "euler"), torch.linspace(0, 1, 10))
    _, calls = counting(lambda t, x: x)
    v, calls = counting(lambda t, x: x)
    solve(v, torch.zeros(1), nfe=9)
    assert calls == pytest.approx(torch.linspace(0, 1, 10)[:-1].tolist())


@pytest.mark.parametrize(("nfe", "method"), [(0, "euler"), (-1, "euler"), (3, "midpoint"), (4, "rk4")])
def test_invalid_nfe_or_method(nfe, method):
    """Users' values are refused by GenerateOptions.validate; the solver only asserts."""
    with pytest.raises(AssertionError):
        solve(lambda t, x: x, torch.zeros(1), nfe=nfe, method=method)


def test_callback_reports_every_evaluation():
    seen = []
    solve(lambda t, x: x, torch.zeros(1), nfe=6, method="midpoint", callback=lambda d, n: seen.append((d, n)))
    assert seen == [(i, 6) for i in range(1, 7)]


def test_ot_path_closed_form():
    torch.manual_seed(0)
    x0, x1, t = torch.randn(3, 5, 4), torch.randn(3, 5, 4), torch.tensor([0.0, 0.25, 1.0])
    s = OTPath().sample(x0, x1, t)
    assert torch.allclose(s.x_t[0], x0[0]) and torch.allclose(s.x_t[2], x1[2])
    assert torch.allclose(s.x_t[1], 0.75 * x0[1] + 0.25 * x1[1])
    assert torch.allclose(s.u_t, x1 - x0)
    # integrating the target velocity from x0 lands on x1
    assert torch.allclose(solve(lambda tt, x: s.u_t, x0, nfe=3), x1, atol=1e-6)
    s2 = OTPath(sigma_min=0.1).sample(x0, x1, t)
    assert torch.allclose(s2.x_t[2], 0.1 * x0[2] + x1[2])
