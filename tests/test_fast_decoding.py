"""The fast decoding path (floatalk.acceleration.set_decoding): the exact path's frames up to rounding.

Issue #12's bound: max |diff| <= 2/255 and PSNR >= 45 dB on 8-bit frames, on the shipped demo
weights and on a model trained here; the exact path unchanged, bit for bit.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch

from floatalk.acceleration import in_decoding_layout, set_decoding
from floatalk.config import preset
from floatalk.models.motion_ae.autoencoder import MotionAutoEncoder
from floatalk.nn.stylegan import ModulatedConv2d, StyledConv
from floatalk.pipeline import FloatPipeline
from floatalk.weights import DEMO_WEIGHTS, load_model


def _levels(frames: torch.Tensor) -> torch.Tensor:
    return (frames.clamp(-1, 1) + 1) / 2 * 255


def _compare(ae: MotionAutoEncoder, batch: int = 1) -> tuple[float, float]:
    """Max |diff| (8-bit levels) and PSNR of fast against exact decoding of random latents."""
    torch.manual_seed(0)
    size = ae.config.size
    with torch.inference_mode():
        src = ae.encode_source(torch.rand(1, 3, size, size) * 2 - 1)
        motion = torch.randn(6, ae.config.latent_dim) * 0.5
        out = {}
        for mode in ("exact", "fast"):
            set_decoding(ae.dec, mode)
            source = in_decoding_layout(src, mode)
            out[mode] = torch.cat([ae.decode(source, m) for m in motion.split(batch)])
        set_decoding(ae.dec, "exact")
    diff = _levels(out["fast"]) - _levels(out["exact"])
    mse = float((diff**2).mean())
    return float(diff.abs().max()), 10 * math.log10(255**2 / max(mse, 1e-20))


def _trained_tiny_autoencoder(steps: int = 40) -> MotionAutoEncoder:
    """A tiny auto-encoder trained here to reconstruct moving blobs (stage 1's L1 objective)."""
    torch.manual_seed(1)
    ae = MotionAutoEncoder(preset("tiny").motion_ae)
    size = ae.config.size
    opt = torch.optim.Adam(ae.parameters(), lr=2e-3)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")

    def blobs(centres: torch.Tensor) -> torch.Tensor:  # (N, 2) -> (N, 3, size, size)
        d = (xx - centres[:, 0, None, None]) ** 2 + (yy - centres[:, 1, None, None]) ** 2
        g = torch.exp(-d / 0.1)
        return torch.stack([g, 1 - g, g * 0.5], 1) * 2 - 1

    first = None
    for _ in range(steps):
        c = torch.rand(8, 2) - 0.5
        loss = (ae(blobs(c), blobs(c.roll(1, 0))) - blobs(c.roll(1, 0))).abs().mean()
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < first  # it did learn something
    return ae.eval().requires_grad_(False)


@pytest.mark.parametrize("batch", [1, 3])
def test_fast_matches_exact_on_the_demo_weights(batch):
    ae = load_model(DEMO_WEIGHTS).motion_ae.eval().requires_grad_(False)
    max_diff, psnr = _compare(ae, batch)
    assert max_diff <= 2.0 and psnr >= 45, (max_diff, psnr)


def test_fast_matches_exact_on_a_model_trained_here():
    max_diff, psnr = _compare(_trained_tiny_autoencoder(), batch=2)
    assert max_diff <= 2.0 and psnr >= 45, (max_diff, psnr)


def test_exact_path_is_unchanged_after_a_round_trip_through_fast(tiny_model):
    ae = tiny_model.motion_ae.eval().requires_grad_(False)
    fresh = copy.deepcopy(ae)
    torch.manual_seed(0)
    with torch.inference_mode():
        src = ae.encode_source(torch.rand(1, 3, 32, 32) * 2 - 1)
        motion = torch.randn(2, ae.config.latent_dim)
        set_decoding(ae.dec, "fast")
        ae.decode(src, motion)
        set_decoding(ae.dec, "exact")
        assert torch.equal(ae.decode(src, motion), fresh.decode(src, motion))


def test_fast_keeps_feature_maps_channels_last():
    """The point of the layout: no conversion back and forth between the convolutions."""
    ae = load_model(DEMO_WEIGHTS).motion_ae.eval().requires_grad_(False)
    set_decoding(ae.dec, "fast")
    seen = []
    hooks = [
        m.register_forward_hook(lambda mod, inp, out: seen.append(out))
        for m in ae.dec.modules()
        if isinstance(m, StyledConv)
    ]
    with torch.inference_mode():
        size = ae.config.size
        src = ae.encode_source(torch.rand(1, 3, size, size) * 2 - 1)
        ae.decode(in_decoding_layout(src, "fast"), src.source_motion)
    for h in hooks:
        h.remove()
    wide = [t for t in seen if t.shape[1] > 1 and t.shape[2] > 1]
    assert wide and all(t.is_contiguous(memory_format=torch.channels_last) for t in wide)


@pytest.mark.parametrize("upsample", [False, True])
@pytest.mark.parametrize("fast", [False, True])
@pytest.mark.parametrize("batch", [1, 2])
def test_folded_gain_and_bias_equal_gain_times_conv_plus_bias(upsample, fast, batch):
    # the fast StyledConv folds the activation's bias and gain into the convolution (into the
    # blur's convolution after an upsampling one): gain * (conv(x) + bias), whatever the path
    torch.manual_seed(0)
    conv = ModulatedConv2d(4, 5, 3, 8, upsample=upsample)
    conv.fast = fast
    x, style, bias = torch.randn(batch, 4, 6, 6), torch.randn(batch, 8), torch.randn(5)
    with torch.no_grad():
        plain = conv(x, style)
        folded = conv(x, style, gain=1.7, bias=bias)
    assert folded.shape == plain.shape == (batch, 5) + ((12, 12) if upsample else (6, 6))
    torch.testing.assert_close(folded, 1.7 * (plain + bias[:, None, None]), rtol=1e-5, atol=1e-5)
    assert not torch.allclose(folded, plain, atol=1e-2)


def test_pipeline_defaults_to_fast_and_rejects_an_unknown_path(tiny_model):
    from floatalk.errors import InputError

    assert FloatPipeline(tiny_model).decoding == "fast"
    assert all(m.fast for m in tiny_model.motion_ae.dec.modules() if isinstance(m, ModulatedConv2d))
    assert FloatPipeline(tiny_model, decoding="exact").decoding == "exact"
    assert not any(m.fast for m in tiny_model.motion_ae.dec.modules() if isinstance(m, ModulatedConv2d))
    with pytest.raises(InputError, match="decoding must be one of"):
        FloatPipeline(tiny_model, decoding="turbo")
