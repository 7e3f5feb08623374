"""Typed configuration of every component, with the released architecture as the default.

Each component (motion auto-encoder, flow-matching transformer, audio encoder, speech emotion
classifier) has its own frozen dataclass. The dataclass is the schema and the documentation: one
comment per field. Presets are named factories (`float-512` is the released FLOAT model, `tiny` is
for tests, `tiny-logmel` is `tiny` with the log-mel speech front-end). Dictionaries (JSON, YAML)
become configs through :func:`config_from_dict` (the project's one strict converter,
floatalk.schema, re-exported here), which rejects unknown keys, wrong types and wrong nesting
instead of silently ignoring typos; keys missing from a dictionary keep their defaults, so configs
saved before a field existed still load.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from .schema import config_from_dict, config_to_dict

__all__ = [
    "PRESETS",
    "AudioEncoderConfig",
    "EmotionConfig",
    "FMTConfig",
    "FloatConfig",
    "LogMelConfig",
    "MotionAEConfig",
    "config_from_dict",
    "config_to_dict",
    "preset",
    "wav2vec2_base_960h_config",
    "wav2vec2_large_xlsr_emotion_config",
]

EMOTION_LABELS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")
#: The vector-field predictors of FMTConfig.predictor and the generative processes of FMTConfig.process.
PREDICTORS: tuple[str, ...] = ("adaln", "cross-attention")
PROCESSES: tuple[str, ...] = ("flow", "diffusion-epsilon", "diffusion-x0")


# --------------------------------------------------------------------------------------------------
# Component configs
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MotionAEConfig:
    """Motion latent auto-encoder (LIA-style encoder, orthonormal basis, flow-warping decoder)."""

    size: int = 512  # image side in pixels (power of two, >= 8)
    latent_dim: int = 512  # d: identity code w_{S->r} and motion latent w_{r->D} size
    motion_dim: int = 20  # M: number of learned orthonormal motion directions
    channel_base: int = 16384  # feature channels at resolution r: min(channel_max, channel_base // r)
    channel_max: int = 512  # upper bound on feature channels
    blur_kernel: tuple[int, ...] = (1, 3, 3, 1)  # anti-aliasing FIR taps for up/down-sampling

    def __post_init__(self) -> None:
        log2 = self.size.bit_length() - 1
        if self.size < 8 or (1 << log2) != self.size:
            raise ValueError(f"motion_ae.size must be a power of two >= 8, got {self.size}")
        if self.motion_dim > self.latent_dim:
            raise ValueError(
                f"motion_ae.motion_dim ({self.motion_dim}) cannot exceed latent_dim ({self.latent_dim})"
            )

    def channels(self, resolution: int) -> int:
        """Feature channels at a given spatial resolution (shared by encoder and decoder)."""
        return max(1, min(self.channel_max, self.channel_base // resolution))


@dataclass(frozen=True)
class FMTConfig:
    """Flow-matching transformer (paper §4.2, Fig. 2)."""

    latent_dim: int = 512  # d: motion latent size, input and output of the transformer
    audio_dim: int = 512  # projected speech feature size per frame
    num_emotions: int = 7  # emotion classes: angry, disgust, fear, happy, neutral, sad, surprise
    hidden_dim: int = 1024  # h: transformer width
    depth: int = 8  # number of transformer blocks
    num_heads: int = 8  # attention heads (head dim = hidden_dim / num_heads)
    mlp_ratio: float = 4.0  # MLP hidden width / hidden_dim
    timestep_dim: int = 256  # sinusoidal frequency features of the flow time t
    clip_frames: int = 50  # L: frames generated per window (2 s at 25 fps)
    context_frames: int = 10  # L': previous frames carried into the next window
    attention_window: int = 2  # T: frame i attends to frames j with |i - j| <= T
    # The extensions of §5.4-5.5 (the released model has none: pose_dim 0, "adaln", "flow"):
    # P: size of the per-frame head-pose condition, the pose minus the source frame's (6 for
    # "A + 3DPose", Table 2: yaw, pitch, roll in degrees, x, y, z of MediaPipe's face landmarker); 0 = none
    pose_dim: int = 0
    pose_mean: tuple[float, ...] = ()  # per-channel standardisation of the pose (training data's); ()
    pose_std: tuple[float, ...] = ()  # ... means 0 and 1
    predictor: str = "adaln"  # "adaln" (frame-wise adaLN, the paper) | "cross-attention" (Table 3)
    process: str = "flow"  # "flow" (matching, the paper) | "diffusion-epsilon" | "diffusion-x0" (Table 3)
    diffusion_steps: int = 500  # N of the cosine schedule when process is a diffusion
    # DDIM clips each step's x̂0 to ±this (the training latents' largest |value|, set when a diffusion
    # run starts); None: no clipping
    diffusion_clip: float | None = None

    def __post_init__(self) -> None:
        if self.predictor not in PREDICTORS:
            raise ValueError(f"fmt.predictor must be one of {PREDICTORS}, got {self.predictor!r}")
        if self.process not in PROCESSES:
            raise ValueError(f"fmt.process must be one of {PROCESSES}, got {self.process!r}")
        if self.diffusion_clip is not None and not self.diffusion_clip > 0:
            raise ValueError(f"fmt.diffusion_clip must be > 0 or null, got {self.diffusion_clip}")
        if self.pose_dim < 0 or self.diffusion_steps < 1:
            raise ValueError("fmt.pose_dim must be >= 0 and fmt.diffusion_steps >= 1")
        for name in ("pose_mean", "pose_std"):
            if len(getattr(self, name)) not in (0, self.pose_dim):
                raise ValueError(f"fmt.{name} must have pose_dim ({self.pose_dim}) values or none")
        if any(v <= 0 for v in self.pose_std):
            raise ValueError("fmt.pose_std values must be > 0")
        if self.hidden_dim % self.num_heads:
            raise ValueError(
                f"fmt.hidden_dim ({self.hidden_dim}) must be divisible by num_heads ({self.num_heads})"
            )
        if self.clip_frames < 1 or self.context_frames < 0:
            raise ValueError("fmt.clip_frames must be >= 1 and fmt.context_frames >= 0")
        if self.context_frames > self.clip_frames:
            raise ValueError("fmt.context_frames cannot exceed fmt.clip_frames")

    @property
    def sequence_frames(self) -> int:
        """L' + L: the length the transformer attends over."""
        return self.context_frames + self.clip_frames


def wav2vec2_base_960h_config() -> dict[str, Any]:
    """Architecture of `facebook/wav2vec2-base-960h` (the FLOAT speech encoder), as a HF config dict."""
    return {
        "hidden_size": 768,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "intermediate_size": 3072,
        "hidden_act": "gelu",
        "layer_norm_eps": 1e-5,
        "feat_extract_norm": "group",
        "feat_extract_activation": "gelu",
        "conv_dim": [512] * 7,
        "conv_kernel": [10, 3, 3, 3, 3, 2, 2],
        "conv_stride": [5, 2, 2, 2, 2, 2, 2],
        "conv_bias": False,
        "num_conv_pos_embeddings": 128,
        "num_conv_pos_embedding_groups": 16,
        "do_stable_layer_norm": False,
        "mask_time_prob": 0.05,
        "vocab_size": 32,
    }


def wav2vec2_large_xlsr_emotion_config() -> dict[str, Any]:
    """Architecture of `r-f/wav2vec-english-speech-emotion-recognition` (XLSR-53 large backbone)."""
    return {
        "hidden_size": 1024,
        "num_hidden_layers": 24,
        "num_attention_heads": 16,
        "intermediate_size": 4096,
        "hidden_act": "gelu",
        "layer_norm_eps": 1e-5,
        "feat_extract_norm": "layer",
        "feat_extract_activation": "gelu",
        "conv_dim": [512] * 7,
        "conv_kernel": [10, 3, 3, 3, 3, 2, 2],
        "conv_stride": [5, 2, 2, 2, 2, 2, 2],
        "conv_bias": True,
        "num_conv_pos_embeddings": 128,
        "num_conv_pos_embedding_groups": 16,
        "do_stable_layer_norm": True,
        "mask_time_prob": 0.05,
        "vocab_size": 33,
    }


def _tiny_wav2vec2_config(stable_layer_norm: bool) -> dict[str, Any]:
    return {
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 64,
        "hidden_act": "gelu",
        "layer_norm_eps": 1e-5,
        "feat_extract_norm": "layer" if stable_layer_norm else "group",
        "feat_extract_activation": "gelu",
        "conv_dim": [16] * 7,
        "conv_kernel": [10, 3, 3, 3, 3, 2, 2],
        "conv_stride": [5, 2, 2, 2, 2, 2, 2],
        "conv_bias": stable_layer_norm,
        "num_conv_pos_embeddings": 16,
        "num_conv_pos_embedding_groups": 4,
        "do_stable_layer_norm": stable_layer_norm,
        "mask_time_prob": 0.05,
        "vocab_size": 32,
    }


AUDIO_FRONTENDS: tuple[str, ...] = ("wav2vec2", "logmel")
MEL_SCALES: tuple[str, ...] = ("slaney", "htk")


@dataclass(frozen=True)
class LogMelConfig:
    """Small log-mel speech encoder trained with the transformer (`AudioEncoderConfig.frontend="logmel"`).

    Log-mel frame j is centred on sample hop_length * (j + 1/2), so with the defaults (hop 10 ms at
    16 kHz, 25 fps) video frame t owns exactly mel frames 4t..4t+3. A strided convolution brings the
    100 Hz mel frames to the video rate, then residual convolution blocks mix a few frames each side.
    Every layer is local: the receptive field is a few hundred milliseconds (see models/logmel.py).
    """

    n_mels: int = 80  # mel bands
    n_fft: int = 400  # FFT size in samples (25 ms at 16 kHz)
    win_length: int = 400  # Hann window length in samples (<= n_fft)
    hop_length: int = 160  # samples between mel frames (10 ms at 16 kHz: 4 per video frame at 25 fps)
    f_min: float = 0.0  # lowest filter edge in Hz
    f_max: float = 8000.0  # highest filter edge in Hz (<= sample_rate / 2)
    mel_scale: str = "slaney"  # "slaney" (linear below 1 kHz, log above; area-normalised filters) or "htk"
    log_eps: float = 1e-6  # log(mel power + log_eps)
    norm_mean: float = -4.0  # fixed standardisation of the log-mel values: (x - norm_mean) / norm_std
    norm_std: float = 4.0
    channels: int = 256  # width of the convolution stack
    num_layers: int = 4  # residual convolution blocks at the video frame rate
    kernel_size: int = 3  # temporal kernel of those blocks (odd), in video frames

    def __post_init__(self) -> None:
        if self.mel_scale not in MEL_SCALES:
            raise ValueError(f"logmel.mel_scale must be one of {MEL_SCALES}, got {self.mel_scale!r}")
        if not 0 < self.win_length <= self.n_fft or self.hop_length < 1 or self.n_mels < 1:
            raise ValueError("logmel needs 0 < win_length <= n_fft, hop_length >= 1 and n_mels >= 1")
        if not 0 <= self.f_min < self.f_max:
            raise ValueError(f"logmel needs 0 <= f_min < f_max, got {self.f_min}, {self.f_max}")
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise ValueError(f"logmel.kernel_size must be odd and >= 1, got {self.kernel_size}")
        if self.channels < 1 or self.num_layers < 0 or self.log_eps <= 0 or self.norm_std <= 0:
            raise ValueError("logmel needs channels >= 1, num_layers >= 0, log_eps > 0 and norm_std > 0")


@dataclass(frozen=True)
class AudioEncoderConfig:
    """Speech features per video frame.

    frontend "wav2vec2" (the paper): wav2vec2 resampled to the frame rate, then projected; the
    wav2vec2 part is pretrained and frozen. frontend "logmel": a small log-mel convolutional encoder
    (`logmel`), trained with the transformer, for when no pretrained speech model is at hand. The
    field of the other front-end is kept but unused.
    """

    wav2vec2: dict[str, Any] = field(default_factory=wav2vec2_base_960h_config)  # HF Wav2Vec2Config
    feature_dim: int = 512  # output size per frame (FMTConfig.audio_dim)
    all_layers: bool = True  # concatenate every transformer layer's output; False: last layer only
    fps: float = 25.0  # video frame rate the features are interpolated to
    sample_rate: int = 16000  # expected waveform rate
    frontend: str = "wav2vec2"  # "wav2vec2" | "logmel"
    logmel: LogMelConfig = field(default_factory=LogMelConfig)  # used when frontend == "logmel"

    def __post_init__(self) -> None:
        if self.frontend not in AUDIO_FRONTENDS:
            raise ValueError(f"audio.frontend must be one of {AUDIO_FRONTENDS}, got {self.frontend!r}")
        if self.frontend == "logmel":
            if self.logmel.f_max > self.sample_rate / 2:
                raise ValueError(
                    f"audio.logmel.f_max ({self.logmel.f_max}) exceeds the Nyquist frequency "
                    f"({self.sample_rate / 2})"
                )
            samples_per_frame = Fraction(self.sample_rate) / Fraction(self.fps)
            if (samples_per_frame / self.logmel.hop_length).denominator != 1:
                raise ValueError(
                    f"audio.logmel.hop_length ({self.logmel.hop_length}) must divide the samples per "
                    f"video frame (sample_rate / fps = {float(samples_per_frame)})"
                )


@dataclass(frozen=True)
class EmotionConfig:
    """Speech emotion classifier: wav2vec2, mean pooling over time, dense-tanh-linear head."""

    wav2vec2: dict[str, Any] = field(default_factory=wav2vec2_large_xlsr_emotion_config)
    labels: tuple[str, ...] = EMOTION_LABELS  # class order of the output logits


@dataclass(frozen=True)
class FloatConfig:
    """The whole FLOAT model: four components that are saved and loaded separately."""

    motion_ae: MotionAEConfig = field(default_factory=MotionAEConfig)
    fmt: FMTConfig = field(default_factory=FMTConfig)
    audio: AudioEncoderConfig = field(default_factory=AudioEncoderConfig)
    emotion: EmotionConfig = field(default_factory=EmotionConfig)

    def __post_init__(self) -> None:
        if self.fmt.latent_dim != self.motion_ae.latent_dim:
            raise ValueError(
                f"fmt.latent_dim ({self.fmt.latent_dim}) must equal motion_ae.latent_dim "
                f"({self.motion_ae.latent_dim})"
            )
        if self.fmt.audio_dim != self.audio.feature_dim:
            raise ValueError(
                f"fmt.audio_dim ({self.fmt.audio_dim}) must equal audio.feature_dim "
                f"({self.audio.feature_dim})"
            )
        if self.fmt.num_emotions != len(self.emotion.labels):
            raise ValueError(
                f"fmt.num_emotions ({self.fmt.num_emotions}) must equal the number of emotion labels "
                f"({len(self.emotion.labels)})"
            )


# --------------------------------------------------------------------------------------------------
# Presets
# --------------------------------------------------------------------------------------------------


def _float_512() -> FloatConfig:
    return FloatConfig()


def _tiny() -> FloatConfig:
    return FloatConfig(
        motion_ae=MotionAEConfig(size=32, latent_dim=32, motion_dim=4, channel_base=256, channel_max=16),
        fmt=FMTConfig(
            latent_dim=32,
            audio_dim=16,
            hidden_dim=32,
            depth=2,
            num_heads=2,
            timestep_dim=16,
            clip_frames=8,
            context_frames=2,
            attention_window=1,
        ),
        audio=AudioEncoderConfig(wav2vec2=_tiny_wav2vec2_config(False), feature_dim=16),
        emotion=EmotionConfig(wav2vec2=_tiny_wav2vec2_config(True)),
    )


def _tiny_logmel() -> FloatConfig:
    tiny = _tiny()
    audio = dataclasses.replace(
        tiny.audio,
        frontend="logmel",
        logmel=LogMelConfig(n_mels=40, channels=32, num_layers=2),
    )
    return dataclasses.replace(tiny, audio=audio)


PRESETS: dict[str, typing.Callable[[], FloatConfig]] = {
    "float-512": _float_512,
    "tiny": _tiny,
    "tiny-logmel": _tiny_logmel,
}


def preset(name: str) -> FloatConfig:
    """Return a named preset.

    `float-512`: the released model; `tiny`: for tests; `tiny-logmel`: `tiny` with the log-mel
    speech front-end instead of wav2vec2.
    """
    try:
        return PRESETS[name]()
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}") from None
