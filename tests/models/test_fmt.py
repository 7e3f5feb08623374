"""Flow-matching transformer: adaLN-Zero init, banded attention locality, conditioning."""

from __future__ import annotations

import torch

from conftest import randomize_
from floatalk.config import FMTConfig
from floatalk.models.fmt import FlowMatchingTransformer
from floatalk.nn.attention import BandedSelfAttention, band_mask

CFG = FMTConfig(
    latent_dim=8,
    audio_dim=6,
    hidden_dim=16,
    depth=2,
    num_heads=2,
    timestep_dim=8,
    clip_frames=12,
    context_frames=4,
    attention_window=2,
)


def inputs(b=1, cfg=CFG, seed=0):
    g = torch.Generator().manual_seed(seed)
    L, Lp = cfg.clip_frames, cfg.context_frames
    return dict(
        x=torch.randn(b, L, cfg.latent_dim, generator=g),
        t=torch.tensor(0.3),
        audio=torch.randn(b, L, cfg.audio_dim, generator=g),
        source_motion=torch.randn(b, cfg.latent_dim, generator=g),
        emotion=torch.softmax(torch.randn(b, cfg.num_emotions, generator=g), -1),
        prev_motion=torch.randn(b, Lp, cfg.latent_dim, generator=g),
        prev_audio=torch.randn(b, Lp, cfg.audio_dim, generator=g),
    )


def test_output_is_exactly_zero_at_init():
    model = FlowMatchingTransformer(CFG)
    out = model(**inputs(2))
    assert out.shape == (2, CFG.sequence_frames, CFG.latent_dim)
    assert torch.count_nonzero(out) == 0


def test_band_mask():
    m = band_mask(6, 1)
    assert m.tolist()[0] == [True, True, False, False, False, False]
    assert m.sum().item() == 6 + 2 * 5


def test_attention_gradient_is_zero_beyond_window():
    torch.manual_seed(0)
    attn = randomize_(BandedSelfAttention(16, 2), std=0.3)
    x = torch.randn(1, 20, 16, requires_grad=True)
    i, T = 9, 2
    attn(x, band_mask(20, T))[0, i].sum().backward()
    touched = x.grad[0].abs().sum(-1) > 0
    assert touched.tolist() == [abs(j - i) <= T for j in range(20)]


def test_transformer_receptive_field_is_depth_times_window():
    model = randomize_(FlowMatchingTransformer(CFG), std=0.3)
    args = inputs()
    x = args["x"].requires_grad_(True)
    prev = args["prev_motion"].requires_grad_(True)
    audio = args["audio"].requires_grad_(True)
    frame = 7  # index in the L'+L sequence
    model(**args)[0, frame].sum().backward()
    seq_grad = torch.cat([prev.grad, x.grad], 1)[0].abs().sum(-1)
    reach = CFG.depth * CFG.attention_window
    for j in range(CFG.sequence_frames):
        assert (seq_grad[j] > 0) == (abs(j - frame) <= reach), j
    # speech of frame j conditions frame j directly and frames within reach through attention
    audio_grad = audio.grad[0].abs().sum(-1)
    for j in range(CFG.clip_frames):
        assert (audio_grad[j] > 0) == (abs(j + CFG.context_frames - frame) <= reach), j


def test_every_condition_changes_the_output():
    model = randomize_(FlowMatchingTransformer(CFG), std=0.3)
    base = inputs()
    ref = model(**base)
    for name in ("t", "audio", "source_motion", "emotion", "prev_motion", "prev_audio", "x"):
        changed = dict(base)
        changed[name] = base[name] + 0.5
        assert not torch.allclose(model(**changed), ref), name


def test_batch_elements_are_independent():
    model = randomize_(FlowMatchingTransformer(CFG), std=0.3)
    a, b = inputs(1, seed=1), inputs(1, seed=2)
    both = {k: torch.cat([a[k], b[k]]) if k != "t" else a[k] for k in a}
    out = model(**both)
    assert torch.allclose(out[:1], model(**a), atol=1e-5)
    assert torch.allclose(out[1:], model(**b), atol=1e-5)
