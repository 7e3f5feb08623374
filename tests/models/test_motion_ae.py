"""Motion auto-encoder: basis properties, encoder/decoder structure, StyleGAN ops."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from floatalk.config import MotionAEConfig
from floatalk.models.motion_ae import MotionAutoEncoder, MotionBasis
from floatalk.nn.stylegan import ModulatedConv2d, fir_filter, make_fir_kernel


def test_basis_is_orthonormal_and_lambda_round_trips():
    torch.manual_seed(0)
    basis = MotionBasis(64, 10)
    q = basis.basis()
    assert torch.allclose(q.t() @ q, torch.eye(10), atol=1e-5)
    coeffs = torch.randn(5, 10)
    latent = basis(coeffs)
    # lambda_k = <w, v_k> (Eq. 15) recovers the coefficients
    assert torch.allclose(basis.coefficients(latent), coeffs, atol=1e-5)
    # moving one coefficient moves the latent along exactly one direction
    shifted = coeffs.clone()
    shifted[:, 3] += 2.0
    assert torch.allclose(basis(shifted) - latent, 2.0 * q[:, 3].expand(5, -1), atol=1e-5)


def test_basis_equals_released_formula():
    """sum(diag_embed(lambda) @ Q^T, dim=1) is the released code's way of writing lambda @ Q^T."""
    torch.manual_seed(1)
    basis = MotionBasis(32, 6)
    coeffs = torch.randn(3, 6)
    q, _ = torch.linalg.qr(basis.weight + 1e-8)
    released = torch.sum(torch.diag_embed(coeffs) @ q.t(), dim=1)
    assert torch.allclose(basis(coeffs), released, atol=1e-6)


def test_channel_table_matches_released_model():
    cfg = MotionAEConfig()
    assert [cfg.channels(r) for r in (4, 8, 16, 32, 64, 128, 256, 512)] == [
        512,
        512,
        512,
        512,
        256,
        128,
        64,
        32,
    ]


@pytest.mark.parametrize("size", [32, 64])
def test_encoder_pyramid_and_decoder_shapes(size):
    cfg = MotionAEConfig(size=size, latent_dim=32, motion_dim=4, channel_base=512, channel_max=32)
    ae = MotionAutoEncoder(cfg).eval()
    image = torch.rand(2, 3, size, size) * 2 - 1
    with torch.no_grad():
        src = ae.encode_source(image)
        assert src.identity_latent.shape == (2, 32)
        assert src.motion_coeffs.shape == (2, 4)
        assert [f.shape[-1] for f in src.feats] == [2**k for k in range(3, int(math.log2(size)) + 1)]
        assert [f.shape[1] for f in src.feats] == [cfg.channels(f.shape[-1]) for f in src.feats]
        # source motion lies in the span of the basis
        q = ae.basis.basis()
        assert torch.allclose(src.source_motion @ q @ q.t(), src.source_motion, atol=1e-4)
        frames = ae.decode(src, torch.zeros(2, 32))
        assert frames.shape == (2, 3, size, size)
        assert torch.isfinite(frames).all()


def test_decoder_broadcasts_one_source_over_many_frames():
    cfg = MotionAEConfig(size=32, latent_dim=32, motion_dim=4, channel_base=256, channel_max=16)
    ae = MotionAutoEncoder(cfg).eval()
    with torch.no_grad():
        src = ae.encode_source(torch.rand(1, 3, 32, 32))
        motion = torch.randn(3, 32) * 0.1
        batched = ae.decode(src, motion)
        single = torch.cat([ae.decode(src, m[None]) for m in motion])
    assert torch.allclose(batched, single, atol=1e-4)
    assert not torch.allclose(batched[0], batched[1])  # motion changes the frame


def test_fir_filter_matches_naive_upsampling():
    """x2 upsampling = zero insertion then a 4x4 convolution with the x4 kernel and pad (2, 1)."""
    torch.manual_seed(0)
    x = torch.randn(1, 2, 5, 5)
    kernel = make_fir_kernel((1, 3, 3, 1)) * 4
    up = torch.zeros(1, 2, 10, 10)
    up[:, :, ::2, ::2] = x
    naive = F.conv2d(F.pad(up, (2, 1, 2, 1)), kernel.flip(0, 1).expand(2, 1, 4, 4), groups=2)
    assert torch.allclose(fir_filter(x, kernel, up=2, pad=(2, 1)), naive, atol=1e-6)
    # a constant image stays constant away from the borders (kernel sums to 1 after zero insertion)
    flat = fir_filter(torch.ones(1, 1, 8, 8), kernel, up=2, pad=(2, 1))
    assert torch.allclose(flat[..., 2:-2, 2:-2], torch.ones(1, 1, 12, 12))


def test_modulated_conv_demodulation_normalises_output_scale():
    torch.manual_seed(0)
    conv = ModulatedConv2d(16, 8, 3, style_dim=4)
    x = torch.randn(1, 16, 16, 16)
    y1 = conv(x, torch.randn(1, 4))
    # scaling the style uniformly leaves a demodulated output unchanged
    with torch.no_grad():
        conv.modulation.bias.zero_()
    style = torch.randn(1, 4)
    assert torch.allclose(conv(x, style), conv(x, 3.0 * style), atol=1e-4)
    assert y1.shape == (1, 8, 16, 16)


def test_modulated_conv_batch_equals_per_sample():
    torch.manual_seed(0)
    for upsample in (False, True):
        conv = ModulatedConv2d(8, 4, 3, style_dim=6, upsample=upsample)
        x, s = torch.randn(3, 8, 6, 6), torch.randn(3, 6)
        batched = conv(x, s)
        single = torch.cat([conv(x[i : i + 1], s[i : i + 1]) for i in range(3)])
        assert torch.allclose(batched, single, atol=1e-5)
