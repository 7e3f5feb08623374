"""Table 3 diffusion ablations: the cosine schedule, the ε/x0 objectives, DDIM; the flow ODE process."""

from __future__ import annotations

import math

import pytest
import torch

from conftest import random_conditions
from floatalk.flow import ConditionDropout, TrainingObjective
from floatalk.flow.diffusion import CosineSchedule, DDIMProcess, DiffusionObjective, diffusion_losses
from floatalk.flow.process import FlowODE, GenerativeProcess
from floatalk.flow.solvers import solve

B, L, LP, D, DA, E = 6, 5, 2, 3, 4, 7


# ---------------------------------------------------------------------------------------------- schedule


def test_schedule_alpha_bar_falls_from_one_to_zero():
    schedule = CosineSchedule()
    betas, ab = schedule.betas(), schedule.alpha_bars()
    assert betas.shape == ab.shape == (500,)
    assert bool((betas > 0).all()) and bool((betas <= 0.999).all())
    assert float(betas[-1]) == pytest.approx(0.999)  # f(1) = 0: the last β is the clipped one
    assert bool((ab[1:] < ab[:-1]).all())
    assert float(ab[0]) > 0.9999 and float(ab[-1]) < 1e-7
    # below the clip the product telescopes to f((n+1)/N) / f(0)
    n = torch.arange(499, dtype=torch.float64)
    f = lambda tau: torch.cos((tau + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    assert torch.allclose(
        ab[:-1], f((n + 1) / 500) / f(torch.zeros((), dtype=torch.float64)), rtol=1e-9, atol=1e-12
    )
    # alpha_bar of a step tensor of any shape
    steps = torch.tensor([[0, 499], [250, 7]])
    assert torch.equal(schedule.alpha_bar(steps), ab[steps])


def test_schedule_step_time_mapping_round_trips():
    schedule = CosineSchedule(num_steps=500)
    n = torch.arange(500)
    t = schedule.time(n)
    assert t.dtype == torch.float32
    assert float(t[-1]) == 0.0  # the noisiest step is flow time 0 (pure noise)
    assert float(t[0]) == pytest.approx(1 - 1 / 500)  # the least noisy step is next to the data
    assert torch.allclose(t.double(), 1 - (n.double() + 1) / 500, atol=1e-7)
    assert bool((t[1:] < t[:-1]).all())  # more noise is earlier flow time
    assert torch.equal(schedule.step(t), n)
    assert torch.equal(schedule.time(schedule.step(t)), t)
    # off-grid times go to the nearest step and stay in range
    assert schedule.step(torch.tensor([1.0, -0.5, 0.5011])).tolist() == [0, 499, 248]
    small = CosineSchedule(num_steps=7)
    assert torch.equal(small.step(small.time(torch.arange(7))), torch.arange(7))


def test_schedule_validation():
    with pytest.raises(ValueError, match="num_steps"):
        CosineSchedule(num_steps=0)
    with pytest.raises(ValueError, match="offset"):
        CosineSchedule(s=-0.1)


# -------------------------------------------------------------------------------- DDIM on Gaussian data

MU = torch.tensor([1.5, -2.0, 0.5])
SIGMA = torch.tensor([0.5, 2.0, 0.3])


def gaussian_predictor(prediction: str, schedule: CosineSchedule, calls: list | None = None):
    """Bayes-optimal E[ε | x_n] or E[x1 | x_n] for x1 ~ N(MU, diag(SIGMA²)), x_n = a x1 + b ε.

    x_n ~ N(a μ, a² σ² + b²), so E[x1 | x_n] = μ + a σ² / v (x_n - a μ) and E[ε | x_n] = b / v (x_n - a μ).
    """

    def predict(t, x):
        if calls is not None:
            calls.append(t)
        a = schedule.alpha_bar(schedule.step(t)).float()
        sa, sb = a.sqrt(), (1 - a).sqrt()
        v = a * SIGMA**2 + (1 - a)
        r = x - sa * MU
        return sb / v * r if prediction == "epsilon" else MU + sa * SIGMA**2 / v * r

    return predict


@pytest.fixture(scope="module")
def gaussian_noise():
    return torch.randn(4000, 5, 3, generator=torch.Generator().manual_seed(0))  # 20000 samples per dim


def moments_error(samples):
    """(max |mean - μ| / σ, max |std / σ - 1|) over the dims."""
    flat = samples.reshape(-1, 3)
    return float(((flat.mean(0) - MU).abs() / SIGMA).max()), float((flat.std(0) / SIGMA - 1).abs().max())


@pytest.mark.parametrize("prediction", ["epsilon", "x0"])
def test_ddim_samples_gaussian_data_with_fifty_steps(prediction, gaussian_noise):
    schedule = CosineSchedule()
    process = DDIMProcess(prediction, schedule)
    predict = gaussian_predictor(prediction, schedule)
    out = process.integrate(predict, gaussian_noise, steps=50)
    assert out.shape == gaussian_noise.shape and out.dtype == gaussian_noise.dtype
    mean_err, std_err = moments_error(out)
    assert mean_err < 0.05 and std_err < 0.08, (mean_err, std_err)
    # the test is sensitive: one step collapses onto the mean, ten are in between, 500 are closer still
    _, std_1 = moments_error(process.integrate(predict, gaussian_noise, steps=1))
    _, std_10 = moments_error(process.integrate(predict, gaussian_noise, steps=10))
    _, std_500 = moments_error(process.integrate(predict, gaussian_noise, steps=500))
    assert std_1 > 0.9, std_1
    assert std_1 > std_10 > std_err > std_500, (std_1, std_10, std_err, std_500)
    assert std_500 < 0.03


def test_ddim_epsilon_and_x0_agree_for_the_same_optimal_predictor(gaussian_noise):
    schedule = CosineSchedule()
    noise = gaussian_noise[:64]
    eps = DDIMProcess("epsilon", schedule).integrate(gaussian_predictor("epsilon", schedule), noise, 20)
    x0 = DDIMProcess("x0", schedule).integrate(gaussian_predictor("x0", schedule), noise, 20)
    assert torch.allclose(eps, x0, atol=2e-3)


def test_ddim_is_deterministic_and_stochastic_with_eta(gaussian_noise):
    schedule = CosineSchedule()
    predict = gaussian_predictor("x0", schedule)
    noise = gaussian_noise[:500]
    deterministic = DDIMProcess("x0", schedule)
    assert torch.equal(
        deterministic.integrate(predict, noise, 20), deterministic.integrate(predict, noise, 20)
    )
    stochastic = DDIMProcess("x0", schedule, eta=1.0)
    torch.manual_seed(1)
    a = stochastic.integrate(predict, noise, 20)
    torch.manual_seed(1)
    assert torch.equal(a, stochastic.integrate(predict, noise, 20))  # seeded by the global RNG
    b = stochastic.integrate(predict, noise, 20)
    assert not torch.allclose(a, b)
    mean_err, std_err = moments_error(stochastic.integrate(predict, gaussian_noise, 50))
    assert mean_err < 0.05 and std_err < 0.15, (mean_err, std_err)
    with pytest.raises(ValueError, match="eta"):
        DDIMProcess("x0", schedule, eta=-1.0)


def test_ddim_timesteps_times_and_callback():
    schedule = CosineSchedule(num_steps=500)
    process = DDIMProcess("epsilon", schedule)
    ns = process.timesteps(50)
    assert ns.dtype == torch.int64 and ns.shape == (50,)
    # "leading" spacing: 490, 480, ..., 0 (never the step N-1, where sqrt(ᾱ) is about 1e-4)
    assert int(ns[0]) == 490 and int(ns[-1]) == 0 and bool((ns[1:] < ns[:-1]).all())
    assert set((ns[:-1] - ns[1:]).tolist()) == {10}  # evenly spaced
    assert torch.equal(process.timesteps(500), torch.arange(499, -1, -1))
    assert process.timesteps(1).tolist() == [0]
    assert process.timesteps(7).tolist() == [426, 355, 284, 213, 142, 71, 0]

    calls, progress = [], []
    noise = torch.randn(2, 5, 3)
    process.integrate(gaussian_predictor("epsilon", schedule, calls), noise, 7, lambda *a: progress.append(a))
    assert progress == [(k, 7) for k in range(1, 8)]
    assert len(calls) == 7
    assert all(t.dim() == 0 and t.dtype == torch.float32 for t in calls)
    assert torch.equal(torch.stack(calls), schedule.time(process.timesteps(7)))
    assert float(calls[0]) == pytest.approx(1 - 427 / 500)


def test_ddim_epsilon_survives_a_biased_predictor_where_the_first_step_at_n_minus_1_did_not(gaussian_noise):
    """Regression: ε-prediction's x̂0 = (x - ...)/sqrt(ᾱ) blew the ablation's small errors up 1e4x
    at the step N-1 (its faces were lost). A predictor off by 0.05 everywhere must still give the
    data's moments roughly, with the leading spacing and the clip."""
    schedule = CosineSchedule()
    optimal = gaussian_predictor("epsilon", schedule)

    def biased(t, x):
        return optimal(t, x) + 0.05

    clipped = DDIMProcess("epsilon", schedule, clip=4.0)
    out = clipped.integrate(biased, gaussian_noise, steps=50)
    assert bool((out.abs() <= 4.0).all())
    mean_err, std_err = moments_error(out)
    assert mean_err < 0.5 and std_err < 0.5, (mean_err, std_err)
    # the same predictor started at N-1 (the old spacing) is far off: the fix is what makes it work
    old = DDIMProcess("epsilon", schedule)
    x = gaussian_noise
    alpha_bars = schedule.alpha_bars()
    a = float(alpha_bars[-1])
    x0 = (x - (1 - a) ** 0.5 * biased(schedule.time(torch.tensor(499)), x)) / a**0.5
    assert float(x0.abs().mean()) > 100  # the blow-up the leading spacing avoids
    assert old.timesteps(50)[0] == 490


def test_ddim_clip_bounds_x0_and_rejects_a_bad_bound():
    process = DDIMProcess("x0", CosineSchedule(num_steps=50), clip=1.5)
    out = process.integrate(lambda t, x: torch.full_like(x, 9.0), torch.randn(2, 4, 3), 10)
    assert torch.allclose(out, torch.full_like(out, 1.5))
    with pytest.raises(ValueError, match="clip"):
        DDIMProcess("x0", clip=0.0)


def test_ddim_step_limits():
    process = DDIMProcess("x0", CosineSchedule(num_steps=20))
    process.check_steps(1)
    process.check_steps(20)
    for bad in (0, -3, 21):
        with pytest.raises(ValueError, match="1 to 20 steps"):
            process.check_steps(bad)
    with pytest.raises(ValueError, match="21"):
        process.integrate(lambda t, x: x, torch.zeros(1, 2, 3), 21)
    with pytest.raises(ValueError, match="prediction"):
        DDIMProcess("v")


# ------------------------------------------------------------------------------------------- objective


class ToyNet(torch.nn.Module):
    """A network with the FMT call signature that reads x, t and the previous latents only."""

    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(D + 1, D)
        self.calls = []

    def forward(self, x, t, audio, source_motion, emotion, prev_motion, prev_audio):
        self.calls.append({"x": x, "t": t, "prev_motion": prev_motion})
        seq = torch.cat([prev_motion, x], 1)
        return self.lin(torch.cat([seq, t[:, None, None].expand(-1, seq.shape[1], 1)], -1))


def conditions():
    return random_conditions(B, L, LP, D, DA, E, seed=0)


@pytest.fixture(scope="module")
def toy_net():
    torch.manual_seed(0)
    return ToyNet()


@pytest.mark.parametrize("prediction", ["epsilon", "x0"])
def test_objective_losses_finite_backpropagate_reproduce(prediction, toy_net):
    c, x1 = conditions(), torch.randn(B, L, D, generator=torch.Generator().manual_seed(1))
    objective = DiffusionObjective(prediction)
    torch.manual_seed(5)
    out = objective.losses(toy_net, x1, c.prev_motion, c)
    assert set(out) == {"denoise", "prev", "velocity", "loss"}
    assert all(v.dim() == 0 and bool(torch.isfinite(v)) for v in out.values())
    assert float(out["prev"].detach()) > 0
    if prediction == "epsilon":
        assert float(out["velocity"]) == 0.0
        assert torch.allclose(out["loss"], out["denoise"] + out["prev"])
    else:
        assert float(out["velocity"].detach()) > 0
        assert torch.allclose(out["loss"], out["denoise"] + out["prev"] + out["velocity"])
    toy_net.zero_grad()
    out["loss"].backward()
    assert toy_net.lin.weight.grad is not None and bool(toy_net.lin.weight.grad.abs().sum() > 0)
    torch.manual_seed(5)
    again = objective.losses(toy_net, x1, c.prev_motion, c)
    assert all(torch.equal(out[k], again[k]) for k in out)
    other = objective.losses(toy_net, x1, c.prev_motion, c)  # the RNG moved on: new draws
    assert not torch.equal(out["denoise"], other["denoise"])


def test_objective_prediction_types_differ(toy_net):
    c, x1 = conditions(), torch.randn(B, L, D)
    torch.manual_seed(2)
    eps = DiffusionObjective("epsilon").losses(toy_net, x1, c.prev_motion, c)
    torch.manual_seed(2)
    x0 = DiffusionObjective("x0").losses(toy_net, x1, c.prev_motion, c)
    torch.manual_seed(2)
    x0_no_velocity = DiffusionObjective("x0", velocity_weight=0.0).losses(toy_net, x1, c.prev_motion, c)
    # same draws, same network output: the previous-frame term agrees, the denoising targets do not
    assert torch.equal(eps["prev"], x0["prev"])
    assert not torch.allclose(eps["denoise"], x0["denoise"])
    assert torch.allclose(x0_no_velocity["loss"], x0["denoise"] + x0["prev"])


@pytest.mark.parametrize("prediction", ["epsilon", "x0"])
def test_objective_matches_the_spelled_out_recipe(prediction, toy_net):
    c, x1 = conditions(), torch.randn(B, L, D)
    schedule = CosineSchedule(num_steps=100)
    objective = DiffusionObjective(prediction, schedule, velocity_weight=0.7)
    toy_net.calls.clear()
    torch.manual_seed(11)
    out = objective.losses(toy_net, x1, c.prev_motion, c)

    torch.manual_seed(11)  # the documented order: dropout masks, ε, n
    dropped = ConditionDropout()(c)
    eps = torch.randn_like(x1)
    n = torch.randint(0, 100, (B,))
    ab = schedule.alpha_bars()[n].float()[:, None, None]
    x_n = ab.sqrt() * x1 + (1 - ab).sqrt() * eps
    t = 1 - (n.float() + 1) / 100
    call = toy_net.calls[0]
    assert torch.allclose(call["x"], x_n, atol=1e-6)
    assert call["t"].shape == (B,) and torch.allclose(call["t"], t)
    assert torch.equal(call["prev_motion"], dropped.prev_motion)
    output = toy_net(x_n, t, **dropped.as_kwargs())
    target = eps if prediction == "epsilon" else x1
    denoise = (output[:, LP:] - target).abs().mean()
    prev = (output[:, :LP] - c.prev_motion).abs().mean()  # toward the clean previous latents
    full = torch.cat([c.prev_motion, x1], 1)
    velocity = (output.diff(dim=1) - full.diff(dim=1)).abs().mean()
    assert torch.allclose(out["denoise"], denoise, atol=1e-6)
    assert torch.allclose(out["prev"], prev, atol=1e-6)
    if prediction == "x0":
        assert torch.allclose(out["velocity"], velocity, atol=1e-6)
        assert torch.allclose(out["loss"], denoise + prev + 0.7 * velocity, atol=1e-6)


class Oracle(torch.nn.Module):
    """Returns the true target: [x_prev, ε recovered from x_n and t] or [x_prev, x1]."""

    def __init__(self, prediction, schedule, x1, prev_motion):
        super().__init__()
        self.prediction, self.schedule, self.x1, self.prev = prediction, schedule, x1, prev_motion

    def forward(self, x, t, **conditions):
        if self.prediction == "x0":
            current = self.x1
        else:
            ab = self.schedule.alpha_bar(self.schedule.step(t)).double()[:, None, None]
            current = ((x.double() - ab.sqrt() * self.x1.double()) / (1 - ab).sqrt()).float()
        return torch.cat([self.prev, current], 1)


@pytest.mark.parametrize("prediction", ["epsilon", "x0"])
def test_a_perfect_network_has_zero_denoising_loss(prediction):
    c, x1 = conditions(), torch.randn(B, L, D)
    schedule = CosineSchedule()
    torch.manual_seed(3)
    out = DiffusionObjective(prediction, schedule).losses(
        Oracle(prediction, schedule, x1, c.prev_motion), x1, c.prev_motion, c
    )
    assert float(out["prev"]) == 0.0
    if prediction == "x0":
        assert float(out["denoise"]) == 0.0 and float(out["velocity"]) == 0.0 and float(out["loss"]) == 0.0
    else:
        assert float(out["denoise"]) < 1e-3 and float(out["loss"]) < 1e-3  # ε recovered up to rounding
    # and the wrong oracle is far from zero
    wrong = "x0" if prediction == "epsilon" else "epsilon"
    torch.manual_seed(3)
    bad = DiffusionObjective(prediction, schedule).losses(
        Oracle(wrong, schedule, x1, c.prev_motion), x1, c.prev_motion, c
    )
    assert float(bad["denoise"]) > 0.3


def test_diffusion_losses_without_previous_frames_and_validation():
    out = diffusion_losses(torch.randn(2, 3, 3), torch.randn(2, 3, 3), torch.zeros(2, 0, 3), "epsilon")
    assert float(out["prev"]) == 0.0 and torch.equal(out["loss"], out["denoise"])
    with pytest.raises(ValueError, match="prediction"):
        diffusion_losses(torch.zeros(1, 2, 3), torch.zeros(1, 2, 3), torch.zeros(1, 0, 3), "v")
    with pytest.raises(ValueError, match="prediction"):
        DiffusionObjective("eps")


def test_protocols():
    assert isinstance(DiffusionObjective(), TrainingObjective)
    assert isinstance(DDIMProcess(), GenerativeProcess)
    assert isinstance(FlowODE(), GenerativeProcess)


# -------------------------------------------------------------------------------------------- flow ODE


@pytest.mark.parametrize("method", ["euler", "midpoint"])
def test_flow_ode_is_solve(method):
    def velocity(t, x):
        return torch.cos(3 * t) * x + t

    x0 = torch.randn(2, 5, 3, generator=torch.Generator().manual_seed(0))
    progress = []
    out = FlowODE(method).integrate(velocity, x0, 8, lambda *a: progress.append(a))
    assert torch.equal(out, solve(velocity, x0, 8, method))
    assert progress == [(k, 8) for k in range(1, 9)]
    # a linear field integrates to its closed form with enough steps
    exact = x0 * math.exp(1.0)
    assert torch.allclose(FlowODE(method).integrate(lambda t, x: x, x0, 400), exact, rtol=1e-2)
    assert not torch.allclose(FlowODE(method).integrate(lambda t, x: x, x0, 2), exact, rtol=1e-2)


def test_flow_ode_step_limits():
    FlowODE("euler").check_steps(1)
    FlowODE("midpoint").check_steps(4)
    with pytest.raises(ValueError, match="at least 1"):
        FlowODE("euler").check_steps(0)
    with pytest.raises(ValueError, match="even"):
        FlowODE("midpoint").check_steps(3)
    with pytest.raises(ValueError, match="even"):
        FlowODE("midpoint").integrate(lambda t, x: x, torch.zeros(1, 2, 3), 5)
    with pytest.raises(ValueError, match="rk4"):
        FlowODE("rk4")
