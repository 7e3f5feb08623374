"""Stage 2: training the flow-matching transformer (`floatalk train fmt`), FLOAT §4.2–4.3, Eq. 11–13.

A training window is L'+L consecutive frames of one clip. Their motion latents w_{r->D} (from the
frozen stage-1 auto-encoder, cached: data/features.py) give the previous frames x_prev (L') and the
target x1 (L); the source motion w_{r->S} is the latent of a random frame of the same clip. The
objective itself (OT path, Eq. 11-13, condition dropout) is `floatalk.flow.FlowMatchingObjective`,
built here from the config's weights (λ_OT, λ_vel) and drop probabilities.

The speech front-end trains with the transformer: only the projection on top of the frozen wav2vec2
(whose hidden states are cached), or the whole log-mel encoder (which reads the waveform).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from ..config import EMOTION_LABELS, AudioEncoderConfig, EmotionConfig, FloatConfig, FMTConfig, LogMelConfig
from ..errors import InputError
from ..flow.conditions import WindowConditions
from ..flow.dropout import ConditionDropout
from ..flow.objective import FlowMatchingObjective, TrainingObjective
from ..flow.path import OTPath
from ..models.audio import AudioEncoder, normalize_waveform
from ..models.fmt import FlowMatchingTransformer
from .config import TrainingConfig, config_from_dict
from .export import ExportOptions, model_state, register_exporter, write_float_model
from .trainer import TrainTask

__all__ = [
    "FMTTask",
    "FMTTrainConfig",
    "MotionWindows",
    "flow_matching_objective",
    "train_fmt",
    "with_new_conditions",
]

TASK = "fmt"
#: FMTTrainConfig.emotion_source values.
EMOTION_SOURCES = ("clip", "image", "mixed")
#: FMTTrainConfig.emotion_track values: where the frame-wise emotion comes from.
EMOTION_TRACKS = ("image_emotion", "world_emotion")
#: Where the head-pose condition of training comes from (FMTTrainConfig.pose_source).
POSE_SOURCES = ("landmarker", "world")


def _train_defaults() -> TrainingConfig:
    # Paper: Adam, lr 1e-5, batch 8, gradient clipping at 1, EMA.
    return TrainingConfig(output_dir="runs/fmt", batch_size=8, grad_clip=1.0, ema_decay=0.999, log_every=50)


def _fmt_defaults() -> FMTConfig:
    return FMTConfig(latent_dim=256, audio_dim=128, hidden_dim=256, depth=4, num_heads=4, timestep_dim=128)


def _audio_defaults() -> AudioEncoderConfig:
    return AudioEncoderConfig(
        frontend="logmel", feature_dim=128, logmel=LogMelConfig(n_mels=80, channels=128, num_layers=3)
    )


@dataclass(frozen=True)
class FMTTrainConfig:
    """Everything of a stage-2 run (YAML sections mirror the fields; see configs/fmt-*.yaml)."""

    data: str = ""  # prepared dataset folder
    autoencoder: str = ""  # stage-1 run folder or weights folder with motion_ae/ (frozen)
    audio_weights: str | None = None  # weights folder whose audio_encoder (wav2vec2) to start from
    emotion_weights: str | None = None  # weights folder with an emotion classifier; None = labels
    init_from: str | None = None  # weights folder whose fmt and audio_encoder start a new run
    train: TrainingConfig = field(default_factory=_train_defaults)
    model: FMTConfig = field(default_factory=_fmt_defaults)
    audio: AudioEncoderConfig = field(default_factory=_audio_defaults)
    lr: float = 1e-5  # Adam (paper)
    betas: tuple[float, float] = (0.9, 0.999)
    ot_weight: float = 1.0  # λ_OT (paper)
    velocity_weight: float = 1.0  # λ_vel (paper)
    drop_audio: float = 0.1  # condition dropout (paper / original code)
    drop_reference: float = 0.1
    drop_emotion: float = 0.1
    drop_prev: float = 0.5
    drop_pose: float = 0.1  # the head pose's dropout, for a pose-conditioned model (model.pose_dim > 0)
    samples_per_epoch: int | None = None  # virtual dataset length (default 200 per clip)
    audio_context_frames: int = 8  # extra speech each side of a window for the log-mel encoder
    # Where w_e comes from: "clip" (the speech-emotion classifier of emotion_weights, else the clip's
    # label: one per clip, FLOAT) or "image" (the facial-expression model on every frame: frame-wise
    # "- S2E + I2E", Table 2; data/driving.py) or "mixed" (each window one of the two, with even odds:
    # the clip's w_e on every frame, or the frame-wise image emotion; so that a model answers both
    # labels / timelines and `--emotion-from VIDEO`).
    emotion_source: str = "clip"
    # Where the head pose of a pose-conditioned model comes from: "landmarker" (MediaPipe's face
    # landmarker on every frame) or "world" (a synthetic-world clip's ground-truth pose mapped into
    # the landmarker's units: the same scale without its frame noise; data/driving.py).
    pose_source: str = "landmarker"
    # Share of windows whose source frame comes from another clip of the same person (MotionWindows):
    # the source then differs from the window in emotion and pose, which the conditions must carry.
    cross_source: float = 0.0
    # With emotion_source "mixed": the share of windows that get the frame-wise image emotion (the
    # others get the clip's w_e on every frame).
    image_emotion_share: float = 0.5
    # The frame-wise emotion of emotion_source "image" / "mixed": "image_emotion" (the facial-expression
    # model) or "world_emotion" (a synthetic-world clip's ground-truth emotion per frame; data/driving.py).
    emotion_track: str = "image_emotion"

    def __post_init__(self) -> None:
        if self.lr <= 0:
            raise ValueError("lr must be > 0")
        if self.emotion_source not in EMOTION_SOURCES:
            raise ValueError(f"emotion_source must be one of {EMOTION_SOURCES}, got {self.emotion_source!r}")
        if self.emotion_track not in EMOTION_TRACKS:
            raise ValueError(f"emotion_track must be one of {EMOTION_TRACKS}, got {self.emotion_track!r}")
        if self.pose_source not in POSE_SOURCES:
            raise ValueError(f"pose_source must be one of {POSE_SOURCES}, got {self.pose_source!r}")
        shares = ("drop_audio", "drop_reference", "drop_emotion", "drop_prev", "drop_pose", "cross_source")
        shares += ("image_emotion_share",)
        for name in shares:
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1]")
        if self.model.audio_dim != self.audio.feature_dim:
            raise ValueError(
                f"model.audio_dim ({self.model.audio_dim}) must equal "
                f"audio.feature_dim ({self.audio.feature_dim})"
            )
        if self.model.num_emotions != len(EMOTION_LABELS):
            raise ValueError(f"model.num_emotions must be {len(EMOTION_LABELS)}")


def flow_matching_objective(cfg: FMTTrainConfig) -> TrainingObjective:
    """The stage-2 objective of a config: its model's process (flow matching: OT path and λ_OT / λ_vel,
    Eq. 11-13; or a Table 3 diffusion with ε- or x0-prediction) and the condition dropout."""
    dropout = ConditionDropout(
        audio=cfg.drop_audio,
        reference=cfg.drop_reference,
        emotion=cfg.drop_emotion,
        prev_motion=cfg.drop_prev,
        prev_audio=cfg.drop_prev,
        pose=cfg.drop_pose,
    )
    if cfg.model.process != "flow":
        from ..flow.diffusion import CosineSchedule, DiffusionObjective

        return DiffusionObjective(
            prediction=cfg.model.process.removeprefix("diffusion-"),
            schedule=CosineSchedule(cfg.model.diffusion_steps),
            velocity_weight=cfg.velocity_weight,
            dropout=dropout,
        )
    return FlowMatchingObjective(
        path=OTPath(), ot_weight=cfg.ot_weight, velocity_weight=cfg.velocity_weight, dropout=dropout
    )


# --------------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------------


class MotionWindows(Dataset):
    """Windows of L'+L frames from cached clip features.

    Item ``i`` is ``{"motion": (L'+L, d), "source_motion": (d,), "emotion": (E,)}`` plus the
    speech: ``"speech_hidden": (L'+L, H)`` (wav2vec2 front-end) or ``"waveform": (N,)`` with the
    window's audio and `context` frames either side, and ``"audio_offset"`` / ``"audio_frames"``
    saying where the window starts in it and how many frames it spans (log-mel front-end). Clip
    ``i % num_clips``; start and source frame from ``numpy.random.default_rng((seed, i))``.

    With `pose_cache` (data/driving.py) items also hold ``"pose": (L'+L, 6)``, the window's head pose
    minus the source frame's; with `emotion_cache` their ``"emotion"`` is the frame-wise image
    emotion of the window, (L'+L, E).

    With `cross_source` p > 0, a share p of the windows take their source frame from another clip of
    the same person (:func:`~floatalk.data.layout.person_of`), when there is one: the source then
    shows another emotion and another pose than the window, so the emotion label and the pose are
    what tells the model where the face goes (emotion redirection, a timeline), not the source frame.
    """

    def __init__(
        self,
        root: str | Path,
        cache_dir: str | Path,
        clips: list,
        window: int,
        frontend: str,
        samples_per_epoch: int | None = None,
        seed: int = 0,
        context: int = 8,
        samples_per_frame: int = 640,
        pose_cache: str | Path | None = None,
        emotion_cache: str | Path | None = None,
        mixed_emotion: bool = False,
        cross_source: float = 0.0,
        image_emotion_share: float = 0.5,
    ) -> None:
        from ..data.driving import load_driving_track
        from ..data.features import load_clip_features
        from ..data.layout import clip_dir, read_audio, same_person_clips

        self.window, self.frontend, self.seed, self.context = window, frontend, int(seed), context
        self.spf = samples_per_frame
        self.mixed_emotion = bool(mixed_emotion) and emotion_cache is not None
        self.image_emotion_share = float(image_emotion_share)
        self.items = []
        for meta in clips:
            feats = load_clip_features(cache_dir, meta.clip_id)
            item = {"motion": feats["motion_latents"].float(), "emotion": feats["emotion"].float()}
            item["clip_emotion"] = item["emotion"]
            for key, cache in (("pose", pose_cache), ("emotion", emotion_cache)):
                if cache is not None:
                    track = torch.from_numpy(load_driving_track(cache, meta.clip_id)).float()
                    if track.shape[0] != item["motion"].shape[0]:
                        raise InputError(
                            f"clip {meta.clip_id}: its {key} track has {track.shape[0]} frames, the clip "
                            f"{item['motion'].shape[0]}; remove {cache} to measure it again"
                        )
                    item[key] = track
            if frontend == "wav2vec2":
                item["speech_hidden"] = feats["speech_hidden"]
            else:
                samples, _ = read_audio(clip_dir(root, meta.clip_id))
                total = meta.num_frames * samples_per_frame
                wave = np.zeros(total, np.float32)
                wave[: min(total, samples.size)] = samples[:total]
                item["waveform"] = normalize_waveform(torch.from_numpy(wave)[None])[0]
            self.items.append(item)
        self.samples_per_epoch = int(samples_per_epoch or 200 * len(self.items))
        self.cross_source = float(cross_source)
        self.others = same_person_clips(clips)

    def __len__(self) -> int:
        return self.samples_per_epoch

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        k = index % len(self.items)
        item = self.items[k]
        rng = np.random.default_rng((self.seed, index))
        total = item["motion"].shape[0]
        start = int(rng.integers(0, total - self.window + 1))
        frames = slice(start, start + self.window)
        source = int(rng.integers(0, total))
        donor = item  # the clip the source frame comes from
        if self.cross_source > 0 and self.others[k] and rng.random() < self.cross_source:
            donor = self.items[self.others[k][int(rng.integers(0, len(self.others[k])))]]
            source = int(rng.integers(0, donor["motion"].shape[0]))
        emotion = item["emotion"]
        if self.mixed_emotion and rng.random() < 1.0 - self.image_emotion_share:
            # this window gets the clip's w_e on every frame
            emotion = item["clip_emotion"][None].expand(total, -1)
        out = {
            "motion": item["motion"][frames],
            "source_motion": donor["motion"][source],
            "emotion": emotion if emotion.dim() == 1 else emotion[frames],
        }
        if "pose" in item:  # the head's displacement from the source frame's pose
            out["pose"] = item["pose"][frames] - donor["pose"][source]
        if "speech_hidden" in item:
            out["speech_hidden"] = item["speech_hidden"][start : start + self.window].float()
        else:
            # the window's speech with `context` frames either side, zero-padded at the clip's ends
            first, last = start - self.context, start + self.window + self.context
            wave = item["waveform"]
            lo, hi = max(first, 0) * self.spf, min(last, total) * self.spf
            seg = torch.zeros((last - first) * self.spf)
            seg[lo - first * self.spf : hi - first * self.spf] = wave[lo:hi]
            out["waveform"] = seg
        return out


def _collate(items: list[dict[str, Tensor]]) -> dict[str, Tensor]:
    return {k: torch.stack([it[k] for it in items]) for k in items[0]}


# --------------------------------------------------------------------------------------------------
# Task
# --------------------------------------------------------------------------------------------------


def with_new_conditions(fmt: FlowMatchingTransformer, state: dict[str, Tensor]) -> dict[str, Tensor]:
    """A fine-tuning start for a transformer that adds the pose condition to a model trained without it.

    The pose (P channels and its presence flag, PoseEmbed) enters the condition map c_embedder as its
    last input columns; they start at zero and the pose embedder at its initialisation, so the new
    model begins exactly as the old one (which the old model's weights then continue from). Any other
    difference is left for the strict load to report.
    """
    own = fmt.state_dict()
    key = "c_embedder.weight"
    if key in state and key in own and state[key].shape[1] < own[key].shape[1] and fmt.config.pose_dim:
        old = state[key]
        extra = own[key].shape[1] - old.shape[1]
        if extra == fmt.config.pose_dim + 1 and old.shape[0] == own[key].shape[0]:
            state = dict(state)
            state[key] = torch.cat([old, old.new_zeros(old.shape[0], extra)], dim=1)
            for name, value in own.items():
                if name.startswith("pose_embedder.") and name not in state:
                    state[name] = value.clone()
    return state


class FMTTask(TrainTask):
    """The flow-matching transformer and the trainable part of the speech front-end (both with EMA)."""

    name = TASK

    def __init__(self, cfg: FMTTrainConfig, audio_encoder: AudioEncoder):
        self.cfg = cfg
        self.fmt = FlowMatchingTransformer(cfg.model)
        if cfg.init_from is not None:  # a fine-tuning start; a resumed run loads its own weights over it
            from ..weights import load_component_state, load_state_strict

            state = with_new_conditions(self.fmt, load_component_state(cfg.init_from, "fmt"))
            load_state_strict(self.fmt, state, str(cfg.init_from))
            state = load_component_state(cfg.init_from, "audio_encoder")
            load_state_strict(audio_encoder, state, str(cfg.init_from))
        self.audio_encoder = audio_encoder.freeze_pretrained_()
        self.objective: TrainingObjective = flow_matching_objective(cfg)

    def models(self) -> dict[str, nn.Module]:
        return {"fmt": self.fmt, "audio_encoder": self.audio_encoder}

    def ema_models(self) -> tuple[str, ...]:
        return ("fmt", "audio_encoder")

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        params = [*self.fmt.parameters(), *self.audio_encoder.trainable_parameters()]
        self.opt = torch.optim.Adam(params, lr=self.cfg.lr, betas=self.cfg.betas)
        return {"fmt": self.opt}

    def speech_features(self, batch: dict[str, Tensor], encoder: nn.Module) -> Tensor:
        """(B, L'+L, d_a) speech features of the batch's windows."""
        if "speech_hidden" in batch:
            return encoder.audio_projection(batch["speech_hidden"])  # type: ignore[union-attr]
        c, n = self.cfg.audio_context_frames, self.cfg.model.sequence_frames
        feats = encoder(batch["waveform"], n + 2 * c)
        return feats[:, c : c + n]

    def train_step(self, batch: dict[str, Tensor], step: int) -> dict[str, float | Tensor]:
        ctx, cfg = self.ctx, self.cfg
        batch = {k: v.to(ctx.device) for k, v in batch.items()}
        lp = cfg.model.context_frames
        motion = batch["motion"]  # (B, L'+L, d)
        prev, x1 = motion[:, :lp], motion[:, lp:]
        with ctx.amp.autocast():
            audio = self.speech_features(batch, ctx.models["audio_encoder"])  # (B, L'+L, d_a)
            cond = WindowConditions(
                audio=audio[:, lp:],
                source_motion=batch["source_motion"],
                emotion=batch["emotion"],
                prev_motion=prev,
                prev_audio=audio[:, :lp],
                pose=batch.get("pose"),
            )
            losses = self.objective.losses(ctx.models["fmt"], x1, prev, cond)
        self.opt.zero_grad(set_to_none=True)
        ctx.amp.backward(losses["loss"])
        ctx.amp.step(self.opt)
        return {k: v.detach() for k, v in losses.items()}


# --------------------------------------------------------------------------------------------------
# Running and export
# --------------------------------------------------------------------------------------------------


def _initial_audio_encoder(cfg: FMTTrainConfig) -> AudioEncoder:
    encoder = AudioEncoder(cfg.audio)
    if cfg.audio.frontend == "wav2vec2":
        if cfg.audio_weights is None:
            raise InputError(
                "the wav2vec2 front-end needs pretrained weights: set audio_weights=DIR (a weights folder, "
                "e.g. a converted release), or use audio.frontend=logmel"
            )
        from ..weights import load_component_state, load_state_strict

        state = load_component_state(cfg.audio_weights, "audio_encoder")
        own = encoder.state_dict()
        # the pretrained wav2vec2, and the projection when it fits (a fine-tuning start)
        picked = {k: v.float() for k, v in state.items() if k in own and own[k].shape == v.shape}
        missing = [k for k in own if k.startswith("wav2vec2.") and k not in picked]
        if missing:
            raise InputError(f"{cfg.audio_weights} has no matching wav2vec2 weights (e.g. {missing[0]})")
        own.update(picked)
        load_state_strict(encoder, own, str(cfg.audio_weights))
    return encoder


def train_fmt(cfg: FMTTrainConfig):
    """Build the feature cache if needed, then run (or resume) a stage-2 training."""
    from ..data.features import build_feature_cache, cache_name
    from ..data.pairs import scan_clips
    from . import distributed as D
    from .autoencoder import autoencoder_fingerprint, load_motion_autoencoder
    from .trainer import Trainer, seed_everything

    if not cfg.data or not cfg.autoencoder:
        raise InputError("set data=DIR (a prepared dataset) and autoencoder=RUN_OR_WEIGHTS (stage 1)")
    window = cfg.model.sequence_frames
    scan = scan_clips(cfg.data, "train", min_frames=window, need_audio=True)
    if D.is_main() and scan.skipped:
        print(scan.report())
    autoencoder = load_motion_autoencoder(cfg.autoencoder)
    if autoencoder.config.latent_dim != cfg.model.latent_dim:
        raise InputError(
            f"model.latent_dim ({cfg.model.latent_dim}) must equal the auto-encoder's latent_dim "
            f"({autoencoder.config.latent_dim})"
        )
    seed_everything(cfg.train.seed)  # the speech encoder's initial weights depend on the seed only
    audio_encoder = _initial_audio_encoder(cfg)
    emotion = None
    if cfg.emotion_weights is not None:
        from ..weights import load_model

        emotion = load_model(cfg.emotion_weights, with_emotion=True).emotion
    frozen = (autoencoder_fingerprint(cfg.autoencoder), cfg.audio, cfg.audio_weights, cfg.emotion_weights)
    name = cache_name(*frozen)
    cache = Path(cfg.data) / "cache" / name
    if D.is_main():
        build_feature_cache(
            cfg.data,
            scan.clips,
            cache,
            autoencoder,
            audio_encoder if cfg.audio.frontend == "wav2vec2" else None,
            emotion,
            device=D.resolve_device(cfg.train.device),
        )
    D.barrier()
    pose_cache = emotion_cache = None
    if cfg.model.pose_dim or cfg.emotion_source != "clip":
        from ..data.driving import build_driving_tracks, load_driving_track, track_cache_dir

        if cfg.model.pose_dim:
            if cfg.model.pose_dim != 6:
                raise InputError(
                    f"model.pose_dim must be 6 (yaw, pitch, roll, x, y, z) or 0, got {cfg.model.pose_dim}"
                )
            kind = "world_pose" if cfg.pose_source == "world" else "pose"
            pose_cache = track_cache_dir(cfg.data, kind)
            if D.is_main():
                build_driving_tracks(cfg.data, scan.clips, kind)
            D.barrier()
            if not cfg.model.pose_mean:  # the training data's per-channel statistics, saved with the model
                # displacements between two frames of one clip: mean 0, std sqrt(2) x the within-clip std
                within = np.concatenate(
                    [(p := load_driving_track(pose_cache, m.clip_id)) - p.mean(0) for m in scan.clips]
                )
                model = dataclasses.replace(
                    cfg.model,
                    pose_mean=(0.0,) * cfg.model.pose_dim,
                    pose_std=tuple(round(max(float(v) * 2**0.5, 1e-3), 4) for v in within.std(0)),
                )
                cfg = dataclasses.replace(cfg, model=model)
        if cfg.emotion_source != "clip":
            emotion_cache = track_cache_dir(cfg.data, cfg.emotion_track)
            if D.is_main():
                build_driving_tracks(cfg.data, scan.clips, cfg.emotion_track)
            D.barrier()
    dataset = MotionWindows(
        cfg.data,
        cache,
        scan.clips,
        window,
        cfg.audio.frontend,
        samples_per_epoch=cfg.samples_per_epoch,
        seed=cfg.train.seed,
        context=cfg.audio_context_frames,
        samples_per_frame=round(cfg.audio.sample_rate / cfg.audio.fps),
        pose_cache=pose_cache,
        emotion_cache=emotion_cache,
        mixed_emotion=cfg.emotion_source == "mixed",
        cross_source=cfg.cross_source,
        image_emotion_share=cfg.image_emotion_share,
    )
    if cfg.model.process != "flow" and cfg.model.diffusion_clip is None:
        # DDIM's x̂0 bound (flow/diffusion.py): the training latents' largest magnitude, saved with the model
        largest = max(float(item["motion"].abs().max()) for item in dataset.items)
        cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, diffusion_clip=round(largest, 4)))
    seed_everything(cfg.train.seed)
    task = FMTTask(cfg, audio_encoder.cpu())
    return Trainer(cfg.train, task, dataset, _collate, run_config=cfg).fit()


@register_exporter(TASK)
def export_fmt(checkpoint: dict[str, Any], out_dir: Path, options: ExportOptions) -> Path:
    """Stage-2 run -> a complete weights folder: its transformer and speech encoder, the stage-1 auto-encoder.

    The emotion classifier comes from --base when given (else `--emotion auto` falls back to neutral).
    """
    from .autoencoder import load_motion_autoencoder

    cfg = config_from_dict(FMTTrainConfig, checkpoint["config"])
    autoencoder = load_motion_autoencoder(cfg.autoencoder)
    float_config = FloatConfig(
        motion_ae=autoencoder.config, fmt=cfg.model, audio=cfg.audio, emotion=EmotionConfig()
    )
    if options.base is not None:
        from ..weights import read_config

        base_config, _ = read_config(options.base)
        float_config = dataclasses.replace(float_config, emotion=base_config.emotion)
    states = {
        "motion_ae": autoencoder.state_dict(),
        "fmt": model_state(checkpoint, "fmt", ema=options.use_ema),
        "audio_encoder": model_state(checkpoint, "audio_encoder", ema=options.use_ema),
    }
    return write_float_model(out_dir, float_config, states, base=options.base)
