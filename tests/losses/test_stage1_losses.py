"""Stage-1 losses and discriminators: VGG-19 layout and loading, perceptual losses, ROI crops,
StyleGAN2 / multi-scale / component discriminators, GAN losses, R1, Gram style loss, weights."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from floatalk.errors import CheckpointError
from floatalk.losses import (
    PerceptualLoss,
    Stage1LossWeights,
    VGG19Features,
    component_perceptual_loss,
    d_logistic_loss,
    downsample,
    g_nonsaturating_loss,
    gram_matrix,
    gram_style_loss,
    image_pyramid,
    lazy_r1_loss,
    load_vgg19,
    multiscale_perceptual_loss,
    r1_penalty,
    roi_crop,
)
from floatalk.losses.vgg import vgg19_layer_index
from floatalk.models.discriminator import (
    ComponentDiscriminator,
    MultiScaleDiscriminator,
    StyleGAN2Discriminator,
    minibatch_stddev,
)

# torchvision's vgg19().features state dict: 16 conv layers (3x3), channels 64, 64 | 128, 128 |
# 256 x4 | 512 x4 | 512 x4, at indices 0, 2 | 5, 7 | 10, 12, 14, 16 | 19, 21, 23, 25 | 28, 30, 32, 34.
TORCHVISION_VGG19_FEATURES = [
    ("features.0.weight", (64, 3, 3, 3)),
    ("features.0.bias", (64,)),
    ("features.2.weight", (64, 64, 3, 3)),
    ("features.2.bias", (64,)),
    ("features.5.weight", (128, 64, 3, 3)),
    ("features.5.bias", (128,)),
    ("features.7.weight", (128, 128, 3, 3)),
    ("features.7.bias", (128,)),
    ("features.10.weight", (256, 128, 3, 3)),
    ("features.10.bias", (256,)),
    ("features.12.weight", (256, 256, 3, 3)),
    ("features.12.bias", (256,)),
    ("features.14.weight", (256, 256, 3, 3)),
    ("features.14.bias", (256,)),
    ("features.16.weight", (256, 256, 3, 3)),
    ("features.16.bias", (256,)),
    ("features.19.weight", (512, 256, 3, 3)),
    ("features.19.bias", (512,)),
    ("features.21.weight", (512, 512, 3, 3)),
    ("features.21.bias", (512,)),
    ("features.23.weight", (512, 512, 3, 3)),
    ("features.23.bias", (512,)),
    ("features.25.weight", (512, 512, 3, 3)),
    ("features.25.bias", (512,)),
    ("features.28.weight", (512, 512, 3, 3)),
    ("features.28.bias", (512,)),
    ("features.30.weight", (512, 512, 3, 3)),
    ("features.30.bias", (512,)),
    ("features.32.weight", (512, 512, 3, 3)),
    ("features.32.bias", (512,)),
    ("features.34.weight", (512, 512, 3, 3)),
    ("features.34.bias", (512,)),
]

SHALLOW = ("relu1_1", "relu2_1", "relu3_1")  # keeps most tests fast: runs VGG only to index 11


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors: a single intra-op thread is much faster than two competing ones on a busy CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def images(seed: int, n: int = 2, size: int = 32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, size, size, generator=g) * 2 - 1


@pytest.fixture(scope="module")
def vgg() -> VGG19Features:
    torch.manual_seed(0)
    return VGG19Features(SHALLOW)


@pytest.fixture(scope="module")
def random_vgg_state() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return {k: torch.randn(shape, generator=g) * 0.05 for k, shape in TORCHVISION_VGG19_FEATURES}


# --------------------------------------------------------------------------------------------------
# VGG-19
# --------------------------------------------------------------------------------------------------


def test_vgg19_state_dict_matches_torchvision_layout():
    state = VGG19Features().state_dict()
    assert [(k, tuple(v.shape)) for k, v in state.items()] == TORCHVISION_VGG19_FEATURES


def test_vgg19_layer_names():
    expected = {"relu1_1": 1, "relu2_1": 6, "relu3_1": 11, "relu4_1": 20, "relu5_1": 29}
    assert {k: vgg19_layer_index(k) for k in expected} == expected
    assert vgg19_layer_index("conv1_1") == 0 and vgg19_layer_index("conv5_4") == 34
    assert vgg19_layer_index("pool5") == 36
    with pytest.raises(ValueError, match="unknown VGG-19 layer"):
        VGG19Features(("relu6_1",))


def test_vgg19_frozen_outputs_and_normalisation():
    model = VGG19Features(("relu1_1", "relu2_1", "pool2"))
    assert all(not p.requires_grad for p in model.parameters())
    model.train()
    assert not model.training
    out = model(images(0, n=2, size=16))
    assert list(out) == ["relu1_1", "relu2_1", "pool2"]
    assert out["relu1_1"].shape == (2, 64, 16, 16)
    assert out["relu2_1"].shape == (2, 128, 8, 8)
    assert out["pool2"].shape == (2, 128, 4, 4)
    # ImageNet normalisation of [-1, 1] inputs: the mean colour maps to 0.
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1) * 2 - 1
    assert torch.allclose(model.normalize(mean), torch.zeros(1, 3, 1, 1), atol=1e-6)
    with pytest.raises(ValueError, match="too small"):
        VGG19Features()(images(0, size=8))


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_load_vgg19_round_trip(tmp_path, random_vgg_state, suffix):
    path = tmp_path / f"vgg19{suffix}"
    if suffix == ".pth":
        # torchvision's full file also holds the classifier, which is ignored.
        torch.save({**random_vgg_state, "classifier.0.weight": torch.zeros(2, 2)}, path)
    else:
        save_file(random_vgg_state, str(path))
    model = load_vgg19(path, layers=("relu1_1",))
    assert model.layers == ("relu1_1",)
    for key, value in model.state_dict().items():
        assert torch.equal(value, random_vgg_state[key]), key
    assert all(not p.requires_grad for p in model.parameters()) and not model.training


def test_load_vgg19_accepts_bare_features_state(tmp_path, random_vgg_state):
    path = tmp_path / "features.pth"
    torch.save({k.removeprefix("features."): v for k, v in random_vgg_state.items()}, path)
    assert torch.equal(load_vgg19(path).features[0].weight, random_vgg_state["features.0.weight"])


def test_load_vgg19_bad_files(tmp_path, random_vgg_state):
    def check(path, match):
        with pytest.raises(CheckpointError, match=match) as info:
            load_vgg19(path)
        assert "\n" not in str(info.value)

    check(tmp_path / "absent.pth", "do not exist")
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint at all")
    check(garbage, "not a loadable")
    bad_st = tmp_path / "garbage.safetensors"
    bad_st.write_bytes(b"\x00\x01junk")
    check(bad_st, "not a valid safetensors")
    missing = tmp_path / "missing.pth"
    torch.save({k: v for k, v in random_vgg_state.items() if k != "features.34.bias"}, missing)
    check(missing, "missing: features.34.bias")
    wrong = tmp_path / "wrong.pth"
    torch.save({**random_vgg_state, "features.0.weight": torch.zeros(64, 1, 3, 3)}, wrong)
    check(wrong, "shape mismatch: features.0.weight")
    vgg16_like = tmp_path / "extra.pth"
    torch.save({**random_vgg_state, "features.40.weight": torch.zeros(1)}, vgg16_like)
    check(vgg16_like, "unexpected: features.40.weight")


# --------------------------------------------------------------------------------------------------
# Resampling and crops
# --------------------------------------------------------------------------------------------------


def test_downsample_and_pyramid():
    x = images(3, size=32)
    assert downsample(x, 1.0) is x
    assert [p.shape[-1] for p in image_pyramid(x, (1, 0.5, 0.25))] == [32, 16, 8]
    const = torch.full((1, 3, 16, 16), 0.3)
    assert torch.allclose(downsample(const, 0.5), torch.full((1, 3, 8, 8), 0.3), atol=1e-6)
    with pytest.raises(ValueError):
        downsample(x, 2.0)


def test_roi_crop_equals_slice_for_integer_boxes():
    x = images(4, n=3, size=24)
    boxes = torch.tensor([[2, 3, 10, 11], [0, 0, 8, 8], [16, 12, 24, 20]], dtype=torch.float32)
    crops = roi_crop(x, boxes, 8)
    for i, (x0, y0, x1, y1) in enumerate(boxes.long().tolist()):
        assert torch.allclose(crops[i], x[i, :, y0:y1, x0:x1], atol=1e-5)
    # Non-square output (height, width) and a box twice the output size (= 2x2 averages).
    rect = roi_crop(x, torch.tensor([[4.0, 2.0, 10.0, 6.0]] * 3), (4, 6))
    assert torch.allclose(rect, x[:, :, 2:6, 4:10], atol=1e-5)
    half = roi_crop(x, torch.tensor([[0.0, 0.0, 16.0, 16.0]] * 3), 8)
    assert torch.allclose(half, F.avg_pool2d(x[:, :, :16, :16], 2), atol=1e-5)
    with pytest.raises(ValueError, match="boxes must have shape"):
        roi_crop(x, boxes[:2], 8)


# --------------------------------------------------------------------------------------------------
# Perceptual losses
# --------------------------------------------------------------------------------------------------


def test_perceptual_loss_properties(vgg):
    loss = PerceptualLoss(vgg, scales=(1.0, 0.5))
    real, other = images(5), images(6)
    assert loss(real, real).item() == 0.0
    a, b = loss(other, real), loss(real, other)
    assert a.item() > 0
    assert math.isclose(a.item(), b.item(), rel_tol=1e-5)  # L1 is symmetric
    # Per-layer weights scale the terms linearly.
    doubled = multiscale_perceptual_loss(vgg, other, real, (1.0, 0.5), layer_weights=(2.0, 2.0, 2.0))
    assert torch.allclose(doubled, 2 * a, rtol=1e-5)


def test_perceptual_loss_gradients_reach_fake_only(vgg):
    loss = PerceptualLoss(vgg, scales=(1.0, 0.5))
    fake = images(7).requires_grad_(True)
    real = images(8).requires_grad_(True)
    loss(fake, real).backward()
    assert fake.grad is not None and fake.grad.abs().sum() > 0
    assert real.grad is None
    assert all(p.grad is None and not p.requires_grad for p in vgg.parameters())


def test_component_perceptual_loss_sees_only_the_boxes(vgg):
    real = images(9, size=32)
    boxes = {
        "left_eye": torch.tensor([[4.0, 8.0, 12.0, 16.0], [5.0, 9.0, 13.0, 17.0]]),
        "mouth": torch.tensor([[10.0, 20.0, 22.0, 28.0], [10.0, 20.0, 22.0, 28.0]]),
    }
    assert component_perceptual_loss(vgg, real, real, boxes, crop_size=16).item() == 0.0
    outside = real.clone()
    outside[:, :, :, 26:] = -outside[:, :, :, 26:]  # right strip, no box touches it
    assert component_perceptual_loss(vgg, outside, real, boxes, crop_size=16).item() == pytest.approx(0.0)
    inside = real.clone()
    inside[:, :, 22:26, 12:20] = 1.0  # inside the mouth boxes
    fake = inside.clone().requires_grad_(True)
    sizes = {"left_eye": 16, "mouth": (16, 24)}
    value = PerceptualLoss(vgg, scales=(1.0,)).components(fake, real, boxes, crop_size=sizes)
    assert value.item() > 0
    value.backward()
    assert fake.grad[:, :, 22:26, 12:20].abs().sum() > 0
    assert fake.grad[:, :, :, 26:].abs().sum() == 0  # no gradient outside every box
    # A (K, N, 4) tensor of boxes with one size per component gives the same value.
    stacked = torch.stack(list(boxes.values()))
    same = component_perceptual_loss(vgg, inside, real, stacked, crop_size=[16, (16, 24)])
    assert torch.allclose(same, value.detach())


def test_disabled_perceptual_loss_warns_once_and_returns_zero():
    with pytest.warns(UserWarning, match="perceptual losses are disabled") as record:
        loss = PerceptualLoss(None)
    assert len(record) == 1
    assert not loss.enabled
    fake, real = images(10).requires_grad_(True), images(11)
    boxes = torch.tensor([[0.0, 0.0, 8.0, 8.0]] * 2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for _ in range(2):
            assert loss(fake, real).item() == 0.0
            assert loss.components(fake, real, boxes).item() == 0.0
    assert list(loss.parameters()) == []


# --------------------------------------------------------------------------------------------------
# Discriminators
# --------------------------------------------------------------------------------------------------


def tiny_disc(size: int = 32) -> StyleGAN2Discriminator:
    torch.manual_seed(0)
    return StyleGAN2Discriminator(size, channel_max=16)


@pytest.mark.parametrize("batch", [1, 3, 4, 6])
def test_stylegan2_discriminator_shapes_and_gradients(batch):
    disc = tiny_disc()
    x = images(12, n=batch).requires_grad_(True)
    logits = disc(x)
    assert logits.shape == (batch, 1)
    logits.sum().backward()
    assert x.grad.abs().sum() > 0
    assert all(p.grad is not None for p in disc.parameters())
    with pytest.raises(ValueError, match="expects"):
        disc(images(0, size=16))


def test_discriminator_channels_follow_stylegan2():
    disc = StyleGAN2Discriminator(512, channel_multiplier=2)
    widths = [disc.convs[0][0].weight.shape[0]] + [b.conv2[1].weight.shape[0] for b in disc.convs[1:]]
    # 512 .. 4: 64, then 128, 256, 512, 512, 512, 512, 512 (StyleGAN2, channel multiplier 2)
    assert widths == [64, 128, 256, 512, 512, 512, 512, 512]
    assert disc.final_linear[1].weight.shape == (1, 512)


def test_minibatch_stddev_groups():
    g = torch.Generator().manual_seed(13)
    x = torch.randn(6, 4, 2, 2, generator=g)
    out = minibatch_stddev(x, group_size=4, num_features=1)  # 6 % 4 != 0 -> groups of 3
    assert out.shape == (6, 5, 2, 2)
    assert torch.equal(out[:, :4], x)
    for i in range(6):
        group = x[i % 2 :: 2]  # sample i is in group i mod (N / G)
        expected = torch.sqrt(group.var(0, unbiased=False) + 1e-8).mean()
        assert torch.allclose(out[i, 4], expected.expand(2, 2), atol=1e-6)
    same = minibatch_stddev(torch.ones(4, 4, 2, 2))
    assert torch.allclose(same[:, 4], torch.full((4, 2, 2), 1e-4))
    two = minibatch_stddev(x[:4], group_size=4, num_features=2)
    assert two.shape == (4, 6, 2, 2)
    assert not torch.allclose(two[0, 4], two[0, 5])
    assert minibatch_stddev(x[:5]).shape == (5, 5, 2, 2)  # prime batch: groups of 1


def test_multiscale_discriminator():
    torch.manual_seed(0)
    disc = MultiScaleDiscriminator(32, num_scales=2, channel_max=16)
    assert [d.size for d in disc.discriminators] == [32, 16]
    x = images(14, n=3).requires_grad_(True)
    logits = disc(x)
    assert len(logits) == 2 and all(lg.shape == (3, 1) for lg in logits)
    g_nonsaturating_loss(logits).backward()
    assert x.grad.abs().sum() > 0
    assert all(p.grad is not None for p in disc.parameters())
    # The second scale sees the 2x box-filtered image.
    with torch.no_grad():
        assert torch.allclose(disc(x)[1], disc.discriminators[1](F.avg_pool2d(x, 2)))
    with pytest.raises(ValueError):
        MultiScaleDiscriminator(8, num_scales=3)


def test_component_discriminator_features():
    torch.manual_seed(0)
    disc = ComponentDiscriminator(channels=8)
    crop = images(15, n=2, size=16).requires_grad_(True)
    logits, feats = disc(crop, return_features=True)
    assert logits.shape == (2, 1, 4, 4)
    assert [tuple(f.shape) for f in feats] == [(2, 16, 8, 8), (2, 32, 4, 4)]
    assert torch.equal(disc(crop), logits)
    (g_nonsaturating_loss(logits) + gram_style_loss(feats, [f.detach() * 0.5 for f in feats])).backward()
    assert crop.grad.abs().sum() > 0


# --------------------------------------------------------------------------------------------------
# Adversarial losses
# --------------------------------------------------------------------------------------------------


def test_logistic_losses_values_and_gradient_signs():
    real = torch.zeros(4, 1, requires_grad=True)
    fake = torch.zeros(4, 1, requires_grad=True)
    d_loss = d_logistic_loss(real, fake)
    assert d_loss.item() == pytest.approx(2 * math.log(2))
    d_loss.backward()
    assert (real.grad < 0).all()  # raising real logits lowers the loss
    assert (fake.grad > 0).all()  # lowering fake logits lowers the loss
    fake_g = torch.zeros(4, 1, requires_grad=True)
    g_loss = g_nonsaturating_loss(fake_g)
    assert g_loss.item() == pytest.approx(math.log(2))
    g_loss.backward()
    assert (fake_g.grad < 0).all()
    lo, hi = torch.tensor([[-2.0]]), torch.tensor([[2.0]])
    assert d_logistic_loss(hi, lo) < d_logistic_loss(lo, hi)
    # Several scales are summed; patch logits are averaged.
    two = d_logistic_loss([real, real], [fake, fake])
    assert two.item() == pytest.approx(4 * math.log(2))
    assert g_nonsaturating_loss(torch.zeros(2, 1, 3, 3)).item() == pytest.approx(math.log(2))
    with pytest.raises(ValueError):
        d_logistic_loss([real], [fake, fake])


def test_r1_penalty_linear_discriminator_closed_form():
    g = torch.Generator().manual_seed(16)
    w = torch.randn(3, 4, 4, generator=g)
    x = torch.randn(5, 3, 4, 4, generator=g).requires_grad_(True)
    logits = (x * w).flatten(1).sum(1, keepdim=True)  # D(x) = <w, x>
    r1 = r1_penalty(logits, x)
    assert torch.allclose(r1, w.pow(2).sum())
    assert torch.allclose(lazy_r1_loss(logits, x, gamma=10.0, every=16), 80 * w.pow(2).sum())
    # Multi-scale logits from the same images: the gradient of their sum.
    assert torch.allclose(r1_penalty([logits, 2 * logits], x), 9 * w.pow(2).sum())
    with pytest.raises(ValueError, match="requires_grad"):
        r1_penalty(logits, x.detach())


def test_r1_penalty_is_differentiable_for_a_real_discriminator():
    disc = tiny_disc(16)
    x = images(17, n=2, size=16).requires_grad_(True)
    r1 = r1_penalty(disc(x), x)
    assert r1.item() > 0
    r1.backward()
    # Every weight shapes the input gradient except the last bias, which only shifts the logit.
    no_grad = [name for name, p in disc.named_parameters() if p.grad is None]
    assert no_grad in ([], ["final_linear.1.bias"])


def test_gram_matrix_closed_form():
    feat = torch.tensor([[[[1.0, 2.0]], [[3.0, 4.0]]]])  # (1, 2, 1, 2): rows (1, 2) and (3, 4)
    expected = torch.tensor([[[5.0, 11.0], [11.0, 25.0]]]) / 4.0  # F F^T / (C H W)
    assert torch.allclose(gram_matrix(feat), expected)
    x = torch.randn(3, 5, 4, 6)
    gm = gram_matrix(x)
    assert gm.shape == (3, 5, 5)
    assert torch.allclose(gm, gm.transpose(1, 2))
    assert torch.allclose(gm, torch.einsum("nchw,ndhw->ncd", x, x) / (5 * 4 * 6), atol=1e-6)


def test_gram_style_loss():
    a = [torch.randn(2, 4, 3, 3), torch.randn(2, 8, 2, 2)]
    assert gram_style_loss(a, a).item() == 0.0
    fake = [t.clone().requires_grad_(True) for t in a]
    real = [t * 2 for t in a]
    real[0].requires_grad_(True)
    loss = gram_style_loss(fake, real)
    # Mean over layers of the L1 between Gram matrices: Gram(2x) = 4 Gram(x).
    expected = sum((3 * gram_matrix(t)).abs().mean() for t in a) / 2
    assert torch.allclose(loss, expected)
    loss.backward()
    assert fake[0].grad is not None and real[0].grad is None


def test_discriminator_training_reduces_logistic_loss():
    torch.manual_seed(0)
    disc = StyleGAN2Discriminator(16, channel_max=8)
    g = torch.Generator().manual_seed(18)
    real = (0.5 + 0.1 * torch.randn(8, 3, 16, 16, generator=g)).clamp(-1, 1)
    fake = (-0.5 + 0.1 * torch.randn(8, 3, 16, 16, generator=g)).clamp(-1, 1)
    opt = torch.optim.Adam(disc.parameters(), lr=2e-3, betas=(0.0, 0.99))
    with torch.no_grad():
        before = d_logistic_loss(disc(real), disc(fake)).item()
    for _ in range(15):
        opt.zero_grad()
        d_logistic_loss(disc(real), disc(fake)).backward()
        opt.step()
    with torch.no_grad():
        after = d_logistic_loss(disc(real), disc(fake)).item()
    assert after < before - 0.1


# --------------------------------------------------------------------------------------------------
# Weights
# --------------------------------------------------------------------------------------------------


def test_stage1_loss_weights():
    w = Stage1LossWeights()
    assert (w.l1, w.perceptual, w.component_perceptual) == (1.0, 10.0, 100.0)
    assert (w.gan, w.component_gan, w.component_style) == (1.0, 1.0, 100.0)
    assert (w.r1_gamma, w.r1_every, w.r1_weight) == (10.0, 16, 80.0)
    total = w.generator_loss(
        {"l1": torch.tensor(0.5), "perceptual": torch.tensor(0.1), "gan": torch.tensor(2.0)}
    )
    assert total.item() == pytest.approx(0.5 + 1.0 + 2.0)
    with pytest.raises(ValueError, match="unknown loss term"):
        w.generator_loss({"lpips": torch.tensor(1.0)})
    with pytest.raises(ValueError):
        Stage1LossWeights(gan=-1.0)
    with pytest.raises(ValueError):
        Stage1LossWeights(r1_every=0)


def test_laplacian_l1_weighs_detail_and_is_zero_only_for_equal_images():
    from floatalk.losses.laplacian import laplacian_l1, laplacian_pyramid

    g = torch.Generator().manual_seed(0)
    image = torch.rand(2, 3, 32, 32, generator=g)
    bands = laplacian_pyramid(image, 3)
    assert [b.shape[-1] for b in bands] == [32, 16, 8, 4]
    # the pyramid is complete: collapsing it gives the image back
    rebuilt = bands[-1]
    for band in reversed(bands[:-1]):
        rebuilt = band + torch.nn.functional.interpolate(
            rebuilt, size=band.shape[-2:], mode="bilinear", align_corners=False
        )
    assert torch.allclose(rebuilt, image, atol=1e-6)
    assert float(laplacian_l1(image, image)) == 0.0
    blurred = torch.nn.functional.avg_pool2d(image, 3, stride=1, padding=1, count_include_pad=False)
    shifted = image + (blurred - image).abs().mean()  # the same mean pixel error, no detail lost
    assert float((blurred - image).abs().mean()) == pytest.approx(float((shifted - image).abs().mean()))
    assert float(laplacian_l1(blurred, image)) > 1.3 * float(laplacian_l1(shifted, image))
