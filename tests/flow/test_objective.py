"""The stage-2 training objective: Eq. 11-13, condition dropout and its draw order, the protocol."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from conftest import random_conditions
from floatalk.flow import (
    ConditionDropout,
    FlowMatchingObjective,
    OTPath,
    TrainingObjective,
    flow_matching_losses,
)


def conditions(b=6, L=5, Lp=2, d=3, da=4, e=7, seed=0):
    return random_conditions(b, L, Lp, d, da, e, seed)


def test_losses_are_eq_11_to_13():
    torch.manual_seed(0)
    v, u, prev = torch.randn(2, 5, 3), torch.randn(2, 3, 3), torch.randn(2, 2, 3)
    out = flow_matching_losses(v, u, prev)
    assert torch.allclose(out["ot"], (v[:, 2:] - u).abs().mean())
    assert torch.allclose(out["prev"], (v[:, :2] - prev).abs().mean())
    target = torch.cat([prev, u], 1)
    assert torch.allclose(
        out["velocity"], ((v[:, 1:] - v[:, :-1]) - (target[:, 1:] - target[:, :-1])).abs().mean()
    )
    assert torch.allclose(out["loss"], out["ot"] + out["prev"] + out["velocity"])
    perfect = flow_matching_losses(target.clone(), u, prev)
    assert float(perfect["loss"]) == 0.0
    weighted = flow_matching_losses(v, u, prev, ot_weight=2.0, velocity_weight=0.5)
    assert torch.allclose(weighted["loss"], 2 * (out["ot"] + out["prev"]) + 0.5 * out["velocity"])


def test_losses_without_previous_frames():
    v, u = torch.randn(2, 3, 3), torch.randn(2, 3, 3)
    out = flow_matching_losses(v, u, torch.zeros(2, 0, 3))
    assert float(out["prev"]) == 0.0
    assert torch.allclose(out["loss"], out["ot"] + out["velocity"])


def test_dropout_draws_in_the_training_order():
    p = ConditionDropout(audio=0.2, reference=0.3, emotion=0.4, prev_motion=0.6, prev_audio=0.7)
    torch.manual_seed(3)
    masks = p.keep_masks(64)
    torch.manual_seed(3)
    expected = {
        name: torch.rand(64) >= prob
        for name, prob in [("prev_motion", 0.6), ("audio", 0.2), ("reference", 0.3), ("emotion", 0.4)]
    }
    expected["prev_audio"] = torch.rand(64) >= 0.7
    assert list(masks) == ["prev_motion", "audio", "reference", "emotion", "prev_audio"]
    for name, mask in expected.items():
        assert mask.dtype == torch.bool and torch.equal(masks[name], mask), name
    # the RNG stream advanced by exactly five draws of B
    after = torch.rand(3)
    torch.manual_seed(3)
    torch.rand(5 * 64)
    assert torch.equal(after, torch.rand(3))


def test_dropout_zeros_whole_samples_and_keeps_the_input():
    c = conditions(b=64)
    before = {k: v.clone() for k, v in c.as_kwargs().items()}
    torch.manual_seed(0)
    dropped = ConditionDropout()(c)
    torch.manual_seed(0)
    keep = ConditionDropout().keep_masks(64)
    names = {"audio": "audio", "source_motion": "reference", "emotion": "emotion"}
    names |= {"prev_motion": "prev_motion", "prev_audio": "prev_audio"}
    for field, mask_name in names.items():
        out, src, mask = getattr(dropped, field), getattr(c, field), keep[mask_name]
        flat = out.reshape(64, -1)
        assert torch.equal(flat[mask], src.reshape(64, -1)[mask]), field
        assert not flat[~mask].any(), field
        assert torch.equal(src, before[field])  # the caller's tensors are untouched
    assert 0 < int((~keep["prev_motion"]).sum()) < 64


def test_dropout_extremes_and_validation():
    c = conditions()
    everything = ConditionDropout(1.0, 1.0, 1.0, 1.0, 1.0)(c)
    assert all(not v.any() for v in everything.as_kwargs().values())
    nothing = ConditionDropout(0.0, 0.0, 0.0, 0.0, 0.0)(c)
    assert all(torch.equal(v, getattr(c, k)) for k, v in nothing.as_kwargs().items())
    with pytest.raises(ValueError, match="emotion"):
        ConditionDropout(emotion=1.5)
    with pytest.raises(ValueError, match="prev_audio"):
        ConditionDropout(prev_audio=-0.1)


class ToyNet(torch.nn.Module):
    """A velocity field that reads every condition; records what it was called with."""

    def __init__(self, d=3, da=4, e=7):
        super().__init__()
        self.lin = torch.nn.Linear(d + da + d + e, d)
        self.calls = []

    def forward(self, x, t, audio, source_motion, emotion, prev_motion, prev_audio):
        self.calls.append({"x": x, "t": t, "audio": audio, "prev_motion": prev_motion})
        seq = torch.cat([prev_motion, x], 1)
        a = torch.cat([prev_audio, audio], 1)
        n = seq.shape[1]
        feats = [seq, a, source_motion[:, None].expand(-1, n, -1), emotion[:, None].expand(-1, n, -1)]
        return self.lin(torch.cat(feats, -1)) * (1 + t[:, None, None])


def test_objective_matches_the_spelled_out_recipe():
    c = conditions()
    x1 = torch.randn(6, 5, 3)
    objective = FlowMatchingObjective(ot_weight=0.7, velocity_weight=1.3)
    net = ToyNet()
    torch.manual_seed(11)
    out = objective.losses(net, x1, c.prev_motion, c)
    assert set(out) == {"ot", "prev", "velocity", "loss"}

    torch.manual_seed(11)
    dropped = ConditionDropout()(c)
    x0 = torch.randn_like(x1)
    t = torch.rand(6)
    s = OTPath().sample(x0, x1, t)
    v = net(s.x_t, s.t, **dropped.as_kwargs())
    ref = flow_matching_losses(v, s.u_t, c.prev_motion, 0.7, 1.3)
    for k in out:
        assert torch.equal(out[k], ref[k]), k
    call = net.calls[0]
    assert torch.equal(call["x"], (1 - t)[:, None, None] * x0 + t[:, None, None] * x1)
    assert call["t"].shape == (6,)
    out["loss"].backward()
    assert net.lin.weight.grad is not None


def test_objective_targets_the_clean_previous_latents():
    # every previous latent is dropped from the input, yet the previous-frame loss uses the clean ones
    c = conditions()
    objective = FlowMatchingObjective(dropout=ConditionDropout(0.0, 0.0, 0.0, 1.0, 1.0))
    net = ToyNet()
    out = objective.losses(net, torch.randn(6, 5, 3), c.prev_motion, c)
    assert not net.calls[0]["prev_motion"].any()
    assert float(out["prev"].detach()) > 0


def test_flow_matching_is_a_training_objective():
    assert isinstance(FlowMatchingObjective(), TrainingObjective)


def test_flow_package_imports_neither_train_nor_models():
    code = (
        "import sys, floatalk.flow, floatalk.flow.sampler, floatalk.flow.guidance, floatalk.flow.solvers;"
        "bad = [m for m in sys.modules if m.startswith(('floatalk.train', 'floatalk.models'))];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
