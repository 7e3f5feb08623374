"""Incremental guidance on toy fields and the chunked long-audio sampler's bookkeeping."""

from __future__ import annotations

import pytest
import torch

from conftest import random_conditions
from floatalk.flow.guidance import IncrementalGuidance
from floatalk.flow.sampler import MotionSampler


def conditions(b=2, L=6, Lp=2, d=3, da=4, e=7, seed=0):
    return random_conditions(b, L, Lp, d, da, e, seed)


def toy_velocity(calls):
    """A nonlinear field whose value depends on every condition."""

    def v(t, x, c):
        calls.append(x.shape[0])
        a = c.audio.sum(-1, keepdim=True)[..., :1]
        e = (c.emotion * torch.arange(1.0, 8.0)).sum(-1)[:, None, None]
        return (
            torch.tanh(x) * (1 + a**2)
            + e * t
            + c.source_motion[:, None]
            + c.prev_motion.mean(1, keepdim=True)
        )

    return v


@pytest.mark.parametrize(("ga", "ge"), [(2.0, 1.0), (0.0, 0.0), (1.0, 3.0), (4.5, 0.5)])
def test_guidance_matches_eq14(ga, ge):
    cond, x, t = conditions(), torch.randn(2, 6, 3), torch.tensor(0.4)
    calls = []
    v = toy_velocity(calls)
    guided = IncrementalGuidance(ga, ge).wrap(v, cond)(t, x)
    off = torch.zeros(2, dtype=torch.bool)
    u = v(t, x, cond.drop(audio=off, emotion=off))
    v_a = v(t, x, cond.drop(emotion=off))
    v_ae = v(t, x, cond)
    assert torch.allclose(guided, u + ga * (v_a - u) + ge * (v_ae - v_a), atol=1e-6)
    assert calls[0] == 6  # the three branches ran as one batch of 3B


def posed_velocity(calls):
    """The toy field plus a term in the pose (the null pose, NaN, counts as a pose of 5)."""
    base = toy_velocity(calls)

    def v(t, x, c):
        pose = torch.nan_to_num(c.pose, nan=5.0).mean(-1, keepdim=True)[:, -x.shape[1] :]
        return base(t, x, c) + torch.sin(pose) * x

    return v


@pytest.mark.parametrize(("ga", "ge", "gp"), [(1.0, 1.0, 3.0), (2.0, 1.5, 2.0), (2.0, 1.0, 0.0)])
def test_pose_guidance_adds_the_pose_term(ga, ge, gp):
    import dataclasses

    cond, x, t = conditions(), torch.randn(2, 6, 3), torch.tensor(0.4)
    cond = dataclasses.replace(cond, pose=torch.randn(2, 8, 6))
    calls = []
    v = posed_velocity(calls)
    guided = IncrementalGuidance(ga, ge, gp).wrap(v, cond)(t, x)
    off = torch.zeros(2, dtype=torch.bool)
    u = v(t, x, cond.drop(audio=off, emotion=off))
    v_a = v(t, x, cond.drop(emotion=off))
    v_ae = v(t, x, cond)
    v_null_pose = v(t, x, cond.drop(pose=off))
    assert not torch.allclose(v_ae, v_null_pose)  # the toy field does depend on the pose
    expected = u + ga * (v_a - u) + ge * (v_ae - v_a) + (gp - 1) * (v_ae - v_null_pose)
    assert torch.allclose(guided, expected, atol=1e-6)
    assert calls[0] == 8  # four branches in one batch of 4B
    # g_p = 1 is Eq. 14 with the pose kept in every branch; without a pose, g_p changes nothing
    calls.clear()
    plain = IncrementalGuidance(ga, ge, 1.0).wrap(v, cond)(t, x)
    assert torch.allclose(plain, u + ga * (v_a - u) + ge * (v_ae - v_a), atol=1e-6)
    no_pose = dataclasses.replace(cond, pose=None)
    base = toy_velocity([])
    assert torch.equal(
        IncrementalGuidance(ga, ge, gp).wrap(base, no_pose)(t, x),
        IncrementalGuidance(ga, ge, 1.0).wrap(base, no_pose)(t, x),
    )


def test_unit_scales_run_one_conditional_pass():
    cond, x, t = conditions(), torch.randn(2, 6, 3), torch.tensor(0.4)
    calls = []
    v = toy_velocity(calls)
    out = IncrementalGuidance(1.0, 1.0).wrap(v, cond)(t, x)
    assert calls == [2]
    assert torch.equal(out, v(t, x, cond))


def test_zero_scales_give_the_unconditional_field():
    cond, x, t = conditions(), torch.randn(2, 6, 3), torch.tensor(0.4)
    v = toy_velocity([])
    off = torch.zeros(2, dtype=torch.bool)
    out = IncrementalGuidance(0.0, 0.0).wrap(v, cond)(t, x)
    assert torch.allclose(out, v(t, x, cond.drop(audio=off, emotion=off)), atol=1e-6)


def test_drop_does_not_mutate_and_keeps_reference_and_context():
    cond = conditions()
    before = cond.audio.clone()
    dropped = cond.drop(audio=torch.tensor([False, True]))
    assert torch.equal(cond.audio, before)
    assert torch.count_nonzero(dropped.audio[0]) == 0 and torch.equal(dropped.audio[1], cond.audio[1])
    assert torch.equal(dropped.prev_audio, cond.prev_audio)
    assert torch.equal(dropped.source_motion, cond.source_motion)


@pytest.mark.parametrize("scale", [-1.0, float("nan"), float("inf")])
def test_bad_scales_are_refused_at_the_boundary_and_asserted_inside(scale):
    from floatalk.errors import InputError
    from floatalk.options import GenerateOptions

    with pytest.raises(InputError, match="audio-scale must be"):
        GenerateOptions(audio_scale=scale).validate()
    with pytest.raises(AssertionError):
        IncrementalGuidance(audio_scale=scale, emotion_scale=1.0)


# --------------------------------------------------------------------------------------------------
# Chunked sampler
# --------------------------------------------------------------------------------------------------


def recording_velocity(log):
    def v(t, x, c):
        log.append(c)
        return x * 0 + c.audio[..., :1].mean() + c.prev_motion.mean() * 0.1 + t

    return v


def test_sampler_carries_context_between_windows():
    L, Lp, T, d = 8, 3, 21, 5  # three windows, the last one 5 frames long
    audio = torch.randn(1, T, 4)
    sampler = MotionSampler(
        window=L, context=Lp, nfe=2, method="euler", guidance=IncrementalGuidance(1.0, 1.0)
    )
    log = []
    windows = list(
        sampler.iter_windows(
            recording_velocity(log),
            audio,
            torch.randn(1, d),
            torch.ones(1, 7) / 7,
            generator=torch.Generator().manual_seed(0),
        )
    )
    assert [w.start for w in windows] == [0, 8, 16]
    assert [w.latents.shape[1] for w in windows] == [8, 8, 5]
    per_window = [log[2 * k] for k in range(3)]  # nfe=2 calls per window, conditions fixed within a window
    # first window: zeros for both kinds of context
    assert torch.count_nonzero(per_window[0].prev_motion) == 0
    assert torch.count_nonzero(per_window[0].prev_audio) == 0
    for k in (1, 2):
        assert torch.equal(per_window[k].prev_motion, windows[k - 1].latents[:, -Lp:])
        assert torch.equal(per_window[k].prev_audio, audio[:, k * L - Lp : k * L])
    # the last window's audio is padded by repeating the final frame
    last_audio = per_window[2].audio
    assert torch.equal(last_audio[:, :5], audio[:, 16:])
    assert torch.equal(last_audio[:, 5:], audio[:, -1:].expand(1, 3, 4))


def test_sampler_uses_injected_noise_and_fresh_noise_per_window():
    L, T, d = 4, 8, 3
    sampler = MotionSampler(
        window=L, context=1, nfe=1, method="euler", guidance=IncrementalGuidance(1.0, 1.0)
    )
    zero_field = lambda t, x, c: torch.zeros_like(x)  # noqa: E731 - x1 = x0 exactly
    args = (zero_field, torch.zeros(1, T, 2), torch.zeros(1, d), torch.zeros(1, 7))
    noise = torch.randn(1, 8, d)
    assert torch.equal(sampler.sample(*args, noise=noise), noise)
    drawn = sampler.sample(*args, generator=torch.Generator().manual_seed(3))
    assert not torch.allclose(drawn[:, :L], drawn[:, L:])  # each window draws its own noise
    again = sampler.sample(*args, generator=torch.Generator().manual_seed(3))
    other = sampler.sample(*args, generator=torch.Generator().manual_seed(4))
    assert torch.equal(drawn, again) and not torch.allclose(drawn, other)
    with pytest.raises(AssertionError):  # the pipeline checks user noise (InputError) before this
        sampler.sample(*args, noise=torch.zeros(1, 5, d))


def test_sampler_progress_callback_counts_all_evaluations():
    sampler = MotionSampler(
        window=4, context=1, nfe=3, method="euler", guidance=IncrementalGuidance(1.0, 1.0)
    )
    seen = []
    sampler.sample(
        lambda t, x, c: x,
        torch.zeros(1, 10, 2),
        torch.zeros(1, 3),
        torch.zeros(1, 7),
        callback=lambda done, total: seen.append((done, total)),
    )
    assert seen == [(i, 9) for i in range(1, 10)]
