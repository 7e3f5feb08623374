"""Stage 1: training the motion auto-encoder (`floatalk train autoencoder`), FLOAT §4.1 and §A.3.

A source frame S and a driving frame D of the same clip go through the auto-encoder, which must
rebuild D with S's appearance: D̂ = G(w_{S->r} + w_{r->D}, feats(S)). The generator loss is

    L_G = λ_1 |D̂ - D|_1 + λ_p L_VGG(D̂, D) + λ_c L_VGG(eyes, mouth of D̂, D)
          + λ_adv L_adv(D̂) + λ_cadv L_adv(eyes, mouth) + λ_fsm L_Gram(eyes, mouth)

with a 2-scale StyleGAN2 discriminator and eye / mouth component discriminators, all trained with
the non-saturating logistic loss and lazy R1 (weights: floatalk.losses.weights). Without VGG-19
weights the two perceptual terms are off (with a warning); `component_l1` then adds an L1 term on
the eye and mouth boxes so that those small regions still weigh in.

The paper states these terms in its appendix, which our index (docs/architecture.md) files under
Eq. 17-21; which number belongs to which term is still to be checked against the paper.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..config import MotionAEConfig
from ..data.augment import PairAugmentation
from ..errors import InputError
from ..losses import (
    PerceptualLoss,
    Stage1LossWeights,
    d_logistic_loss,
    g_nonsaturating_loss,
    gram_style_loss,
    lazy_r1_loss,
    load_vgg19,
    roi_crop,
)
from ..losses.laplacian import laplacian_l1
from ..models.discriminator import ComponentDiscriminator, MultiScaleDiscriminator
from ..models.motion_ae import MotionAutoEncoder
from .config import TrainingConfig, config_from_dict
from .export import ExportOptions, model_state, register_exporter, write_float_model
from .trainer import TrainTask

__all__ = [
    "AutoencoderTask",
    "AutoencoderTrainConfig",
    "autoencoder_fingerprint",
    "identity_flow_init_",
    "load_motion_autoencoder",
    "reconstruction_l1",
    "train_autoencoder",
]

TASK = "autoencoder"


def _train_defaults() -> TrainingConfig:
    return TrainingConfig(output_dir="runs/autoencoder", batch_size=8, ema_decay=0.999, log_every=20)


def _model_defaults() -> MotionAEConfig:
    return MotionAEConfig(size=128, latent_dim=256, motion_dim=20, channel_base=4096, channel_max=128)


@dataclass(frozen=True)
class AutoencoderTrainConfig:
    """Everything of a stage-1 run (YAML sections mirror the fields; see configs/autoencoder-*.yaml)."""

    data: str = ""  # prepared dataset folder (floatalk prepare / prepare --synthetic)
    train: TrainingConfig = field(default_factory=_train_defaults)
    model: MotionAEConfig = field(default_factory=_model_defaults)
    losses: Stage1LossWeights = field(default_factory=Stage1LossWeights)
    vgg_weights: str | None = None  # local vgg19-dcbb9e9d.pth; None = perceptual terms off (warned)
    component_l1: float = 0.0  # extra L1 on eye / mouth boxes (ours; useful without VGG)
    laplacian_l1: float = 0.0  # Laplacian-pyramid L1 on the whole frame (ours; sharper without VGG)
    lr: float = 2e-4  # Adam, generator (paper: 2e-4)
    d_lr: float = 2e-4  # Adam, discriminators
    betas: tuple[float, float] = (0.5, 0.99)
    adversarial_start: int = 0  # steps of pure reconstruction before the GAN terms start
    disc_channel_max: int = 256  # width cap of the 2-scale discriminator
    disc_channel_base: int = 16384  # its width at resolution r: min(disc_channel_max, base // r)
    component_channels: int = 32  # first-layer width of the eye / mouth discriminators (GFPGAN: 64)
    component_crop: int = 32  # side the eye / mouth boxes are resampled to
    samples_per_epoch: int | None = None  # length of the virtual dataset (default 100 per clip)
    preview_pairs: int = 4  # held-out (source, driving) pairs shown in previews
    flow_init: str = "identity"  # "identity": flow heads start at zero (identity warp); "random"
    augment: PairAugmentation = field(default_factory=PairAugmentation)  # shared look change per pair
    init_from: str | None = None  # weights folder or stage-1 run whose auto-encoder starts a new run
    # share of pairs whose source frame comes from another clip of the same person (FramePairs): the
    # expression then differs between source and driving, so the motion latent has to carry it
    cross_clip: float = 0.0

    def __post_init__(self) -> None:
        if self.lr <= 0 or self.d_lr <= 0:
            raise ValueError("lr and d_lr must be > 0")
        if self.component_l1 < 0 or self.laplacian_l1 < 0 or self.adversarial_start < 0:
            raise ValueError("component_l1, laplacian_l1 and adversarial_start must be >= 0")
        if self.component_crop < 8 or self.component_crop % 4:
            raise ValueError("component_crop must be a multiple of 4 and >= 8")
        if not 0.0 <= self.cross_clip <= 1.0:
            raise ValueError(f"cross_clip must be in [0, 1], got {self.cross_clip}")
        if self.flow_init not in ("identity", "random"):
            raise ValueError(f"flow_init must be 'identity' or 'random', got {self.flow_init!r}")


def identity_flow_init_(autoencoder: MotionAutoEncoder) -> None:
    """Zero the weights of the decoder's flow heads (`dec.to_flows.*.conv.weight`), in place.

    With the random StyleGAN initialisation every level starts with a random flow (measured at 128²:
    mean offset 15-20 % of the image side) that scrambles the source features; zeroed, every
    level starts from the identity warp with mask 1/2, so the decoder starts near "copy the source"
    and learns the motion from there (ours, not in the paper; measured at 128² on the synthetic
    world: held-out L1 after 250 steps 0.189 vs 0.220 with the random start, copying 0.205). The
    biases are zero already; gradients still reach the weights through the modulated input.
    """
    with torch.no_grad():
        for head in autoencoder.dec.to_flows:
            head.conv.weight.zero_()


def reconstruction_l1(fake: Tensor, real: Tensor) -> Tensor:
    """Mean absolute error, the paper's L1 term: (N, 3, H, W) x2 -> scalar.

    Stage-1 reconstruction term |D̂ - D|_1 (appendix, Eq. 17-21 range; number to confirm).
    """
    return (fake - real).abs().mean()


class AutoencoderTask(TrainTask):
    """The stage-1 GAN: motion auto-encoder (generator, with EMA) + 2-scale and component discriminators."""

    name = TASK

    def __init__(self, cfg: AutoencoderTrainConfig, preview_batch: dict[str, Tensor] | None = None):
        self.cfg = cfg
        size = cfg.model.size
        self.autoencoder = MotionAutoEncoder(cfg.model)
        if cfg.flow_init == "identity":
            identity_flow_init_(self.autoencoder)  # a resumed run loads its own weights over this
        if cfg.init_from is not None:  # a fine-tuning start (again, a resumed run loads its own weights)
            from ..weights import load_state_strict

            start = load_motion_autoencoder(cfg.init_from)
            if start.config != cfg.model:
                raise InputError(f"init_from={cfg.init_from!r} holds a different model: {start.config}")
            load_state_strict(self.autoencoder, start.state_dict(), str(cfg.init_from))
        # Kept for checkpoint compatibility but never used by FLOAT's decoder (noise is never fed,
        # to_rgb1 is dead): frozen, so that DDP does not wait for gradients that never come.
        for name, p in self.autoencoder.named_parameters():
            if name.startswith("dec.to_rgb1.") or name.endswith(".noise.weight"):
                p.requires_grad_(False)
        self.discriminator = MultiScaleDiscriminator(
            size, num_scales=2, channel_max=cfg.disc_channel_max, channel_base=cfg.disc_channel_base
        )
        self.eye_disc = ComponentDiscriminator(cfg.component_channels, channel_max=cfg.disc_channel_max)
        self.mouth_disc = ComponentDiscriminator(cfg.component_channels, channel_max=cfg.disc_channel_max)
        vgg = load_vgg19(cfg.vgg_weights) if cfg.vgg_weights else None
        self.perceptual = PerceptualLoss(vgg, crop_size=cfg.component_crop)  # warns when vgg is None
        if self.perceptual.enabled and size < self.perceptual.min_image_size():
            raise InputError(
                f"the perceptual loss needs images of at least {self.perceptual.min_image_size()} px; "
                f"model.size is {size}"
            )
        self.preview_batch = preview_batch
        self.d_steps = 0

    # -- TrainTask -------------------------------------------------------------------------------

    def models(self) -> dict[str, nn.Module]:
        return {
            "autoencoder": self.autoencoder,
            "discriminator": self.discriminator,
            "eye_disc": self.eye_disc,
            "mouth_disc": self.mouth_disc,
        }

    def ema_models(self) -> tuple[str, ...]:
        return ("autoencoder",)

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        cfg = self.cfg
        d_params = [
            *self.discriminator.parameters(),
            *self.eye_disc.parameters(),
            *self.mouth_disc.parameters(),
        ]
        self.opt_g = torch.optim.Adam(self.autoencoder.parameters(), lr=cfg.lr, betas=cfg.betas)
        self.opt_d = torch.optim.Adam(d_params, lr=cfg.d_lr, betas=cfg.betas)
        self.perceptual.to(next(self.autoencoder.parameters()).device)
        return {"generator": self.opt_g, "discriminator": self.opt_d}

    def state_dict(self) -> dict[str, Any]:
        return {"d_steps": self.d_steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.d_steps = int(state["d_steps"])

    def _components(self, images: Tensor, boxes: Tensor) -> tuple[Tensor, Tensor]:
        """Eye crops (2N, 3, c, c) (both eyes) and mouth crops (N, 3, c, c) from (N, 3, 4) boxes."""
        c = self.cfg.component_crop
        eyes = torch.cat([roi_crop(images, boxes[:, 0], c), roi_crop(images, boxes[:, 1], c)])
        return eyes, roi_crop(images, boxes[:, 2], c)

    def train_step(self, batch: dict[str, Tensor], step: int) -> dict[str, float | Tensor]:
        ctx, cfg, w = self.ctx, self.cfg, self.cfg.losses
        source, driving, boxes = (batch[k].to(ctx.device) for k in ("source", "driving", "boxes"))
        adversarial = step >= cfg.adversarial_start
        discs = [ctx.module(n) for n in ("discriminator", "eye_disc", "mouth_disc")]

        # ---- generator --------------------------------------------------------------------------
        for d in discs:
            d.requires_grad_(False)
        with ctx.amp.autocast():
            fake = ctx.models["autoencoder"](source, driving)  # (N, 3, S, S)
            terms = {"l1": reconstruction_l1(fake, driving)}
            if self.perceptual.enabled:
                terms["perceptual"] = self.perceptual(fake, driving)
                terms["component_perceptual"] = self.perceptual.components(fake, driving, boxes.unbind(1))
            fake_eyes, fake_mouth = self._components(fake, boxes)
            real_eyes, real_mouth = self._components(driving, boxes)
            extra = fake.new_zeros(())
            if cfg.component_l1 > 0:
                comp_l1 = reconstruction_l1(fake_eyes, real_eyes) + reconstruction_l1(fake_mouth, real_mouth)
                extra = cfg.component_l1 * comp_l1
            if cfg.laplacian_l1 > 0:
                lap = laplacian_l1(fake, driving)
                extra = extra + cfg.laplacian_l1 * lap
            if adversarial:
                disc, eye_disc, mouth_disc = discs
                terms["gan"] = g_nonsaturating_loss(disc(fake))
                eye_logits, eye_feats = eye_disc(fake_eyes, return_features=True)
                mouth_logits, mouth_feats = mouth_disc(fake_mouth, return_features=True)
                terms["component_gan"] = g_nonsaturating_loss([eye_logits, mouth_logits])
                _, real_eye_feats = eye_disc(real_eyes, return_features=True)
                _, real_mouth_feats = mouth_disc(real_mouth, return_features=True)
                terms["component_style"] = gram_style_loss(eye_feats, real_eye_feats) + gram_style_loss(
                    mouth_feats, real_mouth_feats
                )
            # the stage-1 generator objective (appendix, Eq. 17-21 range): weighted sum of the terms above
            g_loss = w.generator_loss(terms) + extra
        self.opt_g.zero_grad(set_to_none=True)
        ctx.amp.backward(g_loss)
        ctx.amp.step(self.opt_g)
        for d in discs:
            d.requires_grad_(True)
        logs: dict[str, float | Tensor] = {k: v.detach() for k, v in terms.items()}
        logs["g_loss"] = g_loss.detach()
        if cfg.component_l1 > 0:
            logs["component_l1"] = comp_l1.detach()
        if cfg.laplacian_l1 > 0:
            logs["laplacian_l1"] = lap.detach()
        if not adversarial:
            return logs

        # ---- discriminators ---------------------------------------------------------------------
        disc, eye_disc, mouth_disc = (ctx.models[n] for n in ("discriminator", "eye_disc", "mouth_disc"))
        fake = fake.detach()
        fake_eyes, fake_mouth = fake_eyes.detach(), fake_mouth.detach()
        apply_r1 = w.r1_gamma > 0 and self.d_steps % w.r1_every == 0
        real = driving.detach().requires_grad_(apply_r1)
        with ctx.amp.autocast():
            real_logits = disc(real)
            d_loss = d_logistic_loss(real_logits, disc(fake))
            d_loss = d_loss + d_logistic_loss(eye_disc(real_eyes), eye_disc(fake_eyes))
            d_loss = d_loss + d_logistic_loss(mouth_disc(real_mouth), mouth_disc(fake_mouth))
            # R1: StyleGAN2's regulariser, not a term we know from the paper (losses/weights.py)
            if apply_r1:
                r1 = lazy_r1_loss(real_logits, real, w.r1_gamma, w.r1_every)
                d_loss = d_loss + r1
                logs["r1"] = r1.detach()
        self.opt_d.zero_grad(set_to_none=True)
        ctx.amp.backward(d_loss)
        ctx.amp.step(self.opt_d)
        self.d_steps += 1
        logs["d_loss"] = d_loss.detach()
        return logs

    @torch.no_grad()
    def preview(self, step: int) -> dict[str, Tensor]:
        if self.preview_batch is None:
            return {}
        model = self.ctx.ema["autoencoder"].module if self.ctx.ema else self.ctx.module("autoencoder")
        src = self.preview_batch["source"].to(self.ctx.device)
        drv = self.preview_batch["driving"].to(self.ctx.device)
        rec = model(src, drv)
        # rows: source, driving, reconstruction
        return {"source | driving | reconstruction": torch.cat([src, drv, rec])}


# --------------------------------------------------------------------------------------------------
# Running, evaluation, loading and export
# --------------------------------------------------------------------------------------------------


def _collate(items: list[dict[str, Tensor]]) -> dict[str, Tensor]:
    return {k: torch.stack([it[k] for it in items]) for k in items[0]}


def train_autoencoder(cfg: AutoencoderTrainConfig):
    """Run (or resume) a stage-1 training; returns the Trainer's TrainResult."""
    from ..data.pairs import FramePairs, scan_clips
    from . import distributed as D
    from .trainer import Trainer, seed_everything

    if not cfg.data:
        raise InputError("no dataset given; set data=DIR (a folder made by `floatalk prepare`)")
    scan = scan_clips(cfg.data, "train", min_frames=2)
    if D.is_main() and scan.skipped:
        print(scan.report())
    dataset = FramePairs(
        cfg.data,
        cfg.model.size,
        scan=scan,
        samples_per_epoch=cfg.samples_per_epoch,
        seed=cfg.train.seed,
        augment=cfg.augment,
        cross_clip=cfg.cross_clip,
    )
    preview = None
    if cfg.preview_pairs > 0:
        try:
            held = FramePairs(cfg.data, cfg.model.size, split="test", seed=cfg.train.seed + 1)
        except InputError:
            held = dataset
        preview = _collate([held[i] for i in range(min(cfg.preview_pairs, len(held)))])
    seed_everything(cfg.train.seed)
    task = AutoencoderTask(cfg, preview)
    return Trainer(cfg.train, task, dataset, _collate, run_config=cfg).fit()


def load_motion_autoencoder(path: str | Path, use_ema: bool = True) -> MotionAutoEncoder:
    """A trained motion auto-encoder from a stage-1 run folder or from a weights folder (eval mode)."""
    from ..weights import load_component, load_state_strict, read_component_config
    from .checkpointing import latest_checkpoint, load_checkpoint

    path = Path(path)
    is_run = (path / "checkpoints").is_dir() or path.name == "checkpoints"
    ckpt_path = latest_checkpoint(path) if is_run else None
    if ckpt_path is not None:
        ckpt = load_checkpoint(ckpt_path)
        if ckpt.get("task") != TASK:
            raise InputError(f"{str(path)!r} is a {ckpt.get('task')!r} run, not a stage-1 auto-encoder run")
        cfg = config_from_dict(AutoencoderTrainConfig, ckpt["config"])
        model = MotionAutoEncoder(cfg.model)
        load_state_strict(model, model_state(ckpt, "autoencoder", ema=use_ema), f"{ckpt_path}")
        return model.eval()
    if (path / "motion_ae").is_dir():
        model = MotionAutoEncoder(read_component_config(path, "motion_ae"))
        return load_component(path, "motion_ae", model).eval()
    raise InputError(
        f"{str(path)!r} is neither a stage-1 run folder (with checkpoints/) "
        "nor a weights folder with motion_ae/"
    )


def autoencoder_fingerprint(path: str | Path) -> str:
    """What identifies the weights `load_motion_autoencoder(path)` returns (for cache names)."""
    from .checkpointing import latest_checkpoint

    path = Path(path).resolve()
    if (path / "checkpoints").is_dir() or path.name == "checkpoints":
        return str(latest_checkpoint(path))
    weights = path / "motion_ae" / "model.safetensors"
    stat = weights.stat() if weights.is_file() else None
    return f"{weights}:{stat.st_size}:{stat.st_mtime_ns}" if stat else str(path)


@torch.no_grad()
def evaluate_reconstruction(
    model: MotionAutoEncoder, data: str | Path, split: str = "test", pairs: int = 64, seed: int = 1234
) -> dict[str, float]:
    """Held-out L1 of the reconstruction vs the copy-the-source baseline, on `pairs` random pairs.

    Returns {"l1": mean |D̂ - D|, "copy_l1": mean |S - D|, "pairs": n} with images in [-1, 1].
    """
    from ..data.pairs import FramePairs

    dataset = FramePairs(data, model.config.size, split=split, samples_per_epoch=pairs, seed=seed)
    device = next(model.parameters()).device
    total, copy = 0.0, 0.0
    for i in range(len(dataset)):
        item = dataset[i]
        src, drv = item["source"][None].to(device), item["driving"][None].to(device)
        total += float(reconstruction_l1(model(src, drv), drv))
        copy += float(reconstruction_l1(src, drv))
    return {"l1": total / len(dataset), "copy_l1": copy / len(dataset), "pairs": len(dataset)}


@register_exporter(TASK)
def export_autoencoder(checkpoint: dict[str, Any], out_dir: Path, options: ExportOptions) -> Path:
    """Stage-1 run -> weights folder: the trained motion_ae, every other component from --base."""
    from ..weights import read_config

    cfg = config_from_dict(AutoencoderTrainConfig, checkpoint["config"])
    if options.base is None:
        raise InputError(
            "a stage-1 run holds only the motion auto-encoder; pass --base DIR for the other components, "
            "or train stage 2 on it (`floatalk train fmt autoencoder=RUN_DIR`) and export that run"
        )
    base_config, _ = read_config(options.base)
    from dataclasses import replace

    float_config = replace(base_config, motion_ae=cfg.model)
    states = {"motion_ae": model_state(checkpoint, "autoencoder", ema=options.use_ema)}
    return write_float_model(out_dir, float_config, states, base=options.base)
