"""Source detail transfer (floatalk.detail): a small model's frames upscaled with the portrait's detail."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from floatalk.detail import detail_cutoff, transfer_detail
from floatalk.errors import InputError
from floatalk.pipeline import MIN_OUTPUT_SIZE, FloatPipeline, resize_frames


def pixel_grid(size: int, shift: float = 0.0) -> torch.Tensor:
    """(1, size, size, 2) grid_sample positions of the pixel centres (align_corners=False), moved
    right by `shift` pixels of a size x size image: sampling there shifts the picture left."""
    centres = (torch.arange(size, dtype=torch.float32) * 2 + 1) / size - 1
    ys, xs = torch.meshgrid(centres, centres, indexing="ij")
    return torch.stack([xs + 2 * shift / size, ys], dim=-1)[None]


def textured_portrait(size: int, seed: int = 0) -> torch.Tensor:
    """(1, 3, size, size) in [-1, 1]: smooth shading plus fine texture (what a 64² model loses)."""
    g = torch.Generator().manual_seed(seed)
    coarse = F.interpolate(torch.rand(1, 3, 6, 6, generator=g) * 1.2 - 0.6, size=(size, size), mode="bicubic")
    fine = (torch.rand(1, 1, size // 2, size // 2, generator=g) - 0.5) * 0.5
    return (coarse + F.interpolate(fine, size=(size, size), mode="nearest")).clamp(-1, 1)


def down(x: torch.Tensor, size: int) -> torch.Tensor:
    return F.interpolate(x, size=(size, size), mode="area")


def test_a_perfect_small_frame_gets_the_portraits_detail_back():
    portrait = textured_portrait(128)
    frame = down(portrait, 32)  # what a perfect 32² model renders for the source's own pose
    out = transfer_detail(frame, pixel_grid(32), portrait, detail_cutoff(32))
    plain = F.interpolate(frame, size=(128, 128), mode="bicubic", align_corners=False)
    err, plain_err = (out - portrait).abs().mean(), (plain - portrait).abs().mean()
    assert out.shape == (1, 3, 128, 128)
    assert err < 0.25 * plain_err, (err, plain_err)


def test_the_detail_follows_the_models_motion():
    portrait = textured_portrait(128, seed=1)
    shift = 3.0  # pixels of the 32² frame, i.e. 12 of the 128² output
    moved = torch.roll(portrait, shifts=-12, dims=-1)  # the portrait moved left by 12 px
    frame = down(moved, 32)
    out = transfer_detail(frame, pixel_grid(32, shift), portrait, detail_cutoff(32))
    inner = (slice(None), slice(None), slice(8, -8), slice(8, -24))  # away from the wrapped edge
    err = (out - moved)[inner].abs().mean()
    unmoved = transfer_detail(frame, pixel_grid(32), portrait, detail_cutoff(32))
    assert err < 0.5 * (unmoved - moved)[inner].abs().mean(), err
    assert err < 0.05


def test_where_the_model_paints_new_content_its_own_frame_is_kept():
    portrait = textured_portrait(256, seed=2)
    frame = down(portrait, 64).clone()
    frame[:, :, 24:40, 20:44] = -1.0  # an open mouth: dark, where the portrait has skin
    out = transfer_detail(frame, pixel_grid(64), portrait, detail_cutoff(64))
    plain = F.interpolate(frame, size=(256, 256), mode="bicubic", align_corners=False)
    mouth = (slice(None), slice(None), slice(104, 152), slice(88, 168))
    # inside the new content the output is the model's own frame, not the portrait's skin texture
    assert (out - plain)[mouth].abs().mean() < 0.02
    assert (out - portrait)[mouth].abs().mean() > 0.5


def test_batch_and_dtype():
    portrait = textured_portrait(64)
    frames = down(portrait, 16).expand(3, -1, -1, -1).clone()
    grid = pixel_grid(16).expand(3, -1, -1, -1)
    out = transfer_detail(frames, grid, portrait, detail_cutoff(16))
    assert out.shape == (3, 3, 64, 64) and out.dtype == torch.float32
    assert torch.allclose(out[0], out[2])
    assert detail_cutoff(64) == 8 and detail_cutoff(8) == 4


# --- in the pipeline ------------------------------------------------------------------------------


@pytest.fixture
def pipe(tiny_model):
    return FloatPipeline(tiny_model)


@pytest.fixture
def photo():
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (12, 12, 3)).astype(np.float32)
    img = np.kron(base, np.ones((16, 16, 1))) + rng.normal(0, 20, (192, 192, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def _frames(pipe, photo, **kw):
    wave = (0.1 * np.sin(np.arange(16000 * 0.4) * 0.05)).astype(np.float32)
    run = pipe.generate(
        photo, wave, crop=False, seed=0, nfe=2, **{"watermark": False, **kw}
    )  # decoder frames
    return run, np.concatenate(list(run))


def test_render_is_forward_plus_the_finest_grid(tiny_model):
    ae = tiny_model.motion_ae
    src = ae.encode_source(torch.rand(1, 3, 32, 32) * 2 - 1)
    motion = torch.randn(2, 32)
    image, grid = ae.decode_with_warp(src, motion)
    assert torch.equal(image, ae.decode(src, motion))
    assert grid.shape == (2, 32, 32, 2)


def test_default_output_is_at_least_256_with_detail_and_no_detail_is_plain_bicubic(pipe, photo):
    from floatalk.io.image import image_to_tensor
    from floatalk.pipeline import frames_to_uint8

    assert pipe.image_size == 32 and MIN_OUTPUT_SIZE == 256
    captured = []
    run, frames = _frames(pipe, photo, on_motion=captured.append)
    assert (run.height, run.width) == (256, 256) and frames.shape == (10, 256, 256, 3)
    # the frames are the decoder's, with the 256² photo's detail carried along its finest grid
    source = pipe.encode_source(image_to_tensor(photo, 32))
    image, grid = pipe.model.motion_ae.decode_with_warp(source, captured[0])
    expected = frames_to_uint8(transfer_detail(image, grid, image_to_tensor(photo, 256), detail_cutoff(32)))
    assert np.abs(frames.astype(int) - expected).max() <= 1  # batch 1 vs 10: rounding only
    _, native = _frames(pipe, photo, output_size=32)
    _, plain = _frames(pipe, photo, detail=False)
    assert np.array_equal(plain, resize_frames(native, 256))  # --no-detail: today's bicubic upscale
    assert not np.array_equal(frames, plain)


def test_at_the_models_own_size_nothing_changes(pipe, photo):
    _, native = _frames(pipe, photo, output_size=32)
    _, no_detail = _frames(pipe, photo, output_size=32, detail=False)
    assert np.array_equal(native, no_detail)


def test_a_prepared_tensor_has_no_sharper_source_so_frames_are_resized(pipe, photo):
    from floatalk.io.image import image_to_tensor

    tensor = image_to_tensor(photo, 32)
    wave = (0.1 * np.sin(np.arange(16000 * 0.4) * 0.05)).astype(np.float32)
    frames = np.concatenate(list(pipe.generate(tensor, wave, seed=0, nfe=2, output_size=64)))
    small = np.concatenate(list(pipe.generate(tensor, wave, seed=0, nfe=2, output_size=32)))
    assert np.array_equal(frames, resize_frames(small, 64))


def test_detail_must_be_a_bool(pipe, photo):
    with pytest.raises(InputError, match="detail must be True or False"):
        _frames(pipe, photo, detail="yes")
