"""Speech encoder: wav2vec2 features resampled to the video frame rate, then projected (FLOAT §4.2).

Two front-ends (`AudioEncoderConfig.frontend`):
    "wav2vec2"  the paper's: a pretrained wav2vec2, frozen in training; only `audio_projection` trains.
    "logmel"    a small log-mel convolutional encoder (`logmel.*`, models/logmel.py) trained together
                with the transformer, for when no pretrained speech model is at hand.
`AudioEncoder.trainable_parameters()` gives the parameters that train with the transformer.

wav2vec2's convolutional front-end yields ~49.9 feature vectors per second; they are linearly
interpolated (align_corners=True) to exactly T = ceil(N * fps / sample_rate) frames *before* the
transformer layers, so every transformer output is aligned with a video frame. The outputs of all
transformer layers are concatenated per frame (layer-major) and projected:
    a = SiLU(LayerNorm(Linear(concat_l h_l)))                      (B, T, d_a)

Built on `transformers.Wav2Vec2Model`; only its public submodules are used, and layer outputs are
captured with forward hooks, so the behaviour is the same across transformers 4.x and 5.x.
"""

from __future__ import annotations

import math
from fractions import Fraction

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import AudioEncoderConfig
from .logmel import LogMelEncoder

__all__ = [
    "AudioEncoder",
    "build_wav2vec2",
    "normalize_waveform",
    "num_video_frames",
    "wav2vec2_receptive_field",
]


def build_wav2vec2(config: dict):
    """A randomly initialised `transformers.Wav2Vec2Model` of the given architecture."""
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    return Wav2Vec2Model(Wav2Vec2Config(**config))


def normalize_waveform(waveform: Tensor, eps: float = 1e-7) -> Tensor:
    """Zero mean, unit variance over the whole clip (the wav2vec2 feature extractor's normalisation).

    waveform: (B, N) -> (B, N), computed in float64 and returned in the input dtype.
    """
    w = waveform.double()
    mean = w.mean(dim=-1, keepdim=True)
    var = w.var(dim=-1, unbiased=False, keepdim=True)
    return ((w - mean) / torch.sqrt(var + eps)).to(waveform.dtype)


def num_video_frames(num_samples: int, sample_rate: int, fps: float) -> int:
    """T = ceil(N * fps / sample_rate), computed exactly."""
    return math.ceil(Fraction(num_samples) * Fraction(fps).limit_denominator(1001) / sample_rate)


def wav2vec2_receptive_field(config: dict) -> int:
    """Samples needed for one output frame of wav2vec2's convolutional feature encoder (400 at 16 kHz)."""
    field = 1
    for kernel, stride in zip(reversed(config["conv_kernel"]), reversed(config["conv_stride"])):
        field = (field - 1) * stride + kernel
    return field


class AudioEncoder(nn.Module):
    """waveform (normalised, 16 kHz) -> per-frame speech features a (B, T, d_a).

    Submodule names follow the released checkpoint: `wav2vec2`, `audio_projection.{0,1}` for the
    wav2vec2 front-end; the log-mel front-end has only `logmel.*` (see models/logmel.py).
    """

    wav2vec2: nn.Module | None
    audio_projection: nn.Module | None
    logmel: LogMelEncoder | None

    def __init__(self, config: AudioEncoderConfig):
        super().__init__()
        self.config = config
        if config.frontend == "logmel":
            self.wav2vec2 = self.audio_projection = None
            self.logmel = LogMelEncoder(config.logmel, config.feature_dim, config.fps, config.sample_rate)
            return
        self.logmel = None
        self.wav2vec2 = build_wav2vec2(config.wav2vec2)
        hidden = self.wav2vec2.config.hidden_size
        layers = self.wav2vec2.config.num_hidden_layers
        in_dim = hidden * layers if config.all_layers else hidden
        self.audio_projection = nn.Sequential(
            nn.Linear(in_dim, config.feature_dim), nn.LayerNorm(config.feature_dim), nn.SiLU()
        )

    @property
    def frontend(self) -> str:
        return self.config.frontend

    @property
    def samples_per_frame(self) -> float:
        return self.config.sample_rate / self.config.fps

    @property
    def min_samples(self) -> int:
        """Fewest waveform samples the front-end accepts (shorter input must be padded first)."""
        return 1 if self.logmel is not None else wav2vec2_receptive_field(self.config.wav2vec2)

    def trainable_named_parameters(self) -> list[tuple[str, nn.Parameter]]:
        """(name, parameter) pairs trained with the transformer (stage 2).

        wav2vec2 front-end: only `audio_projection.*`; the pretrained `wav2vec2.*` stays frozen.
        log-mel front-end: every parameter (`logmel.*`), as it has no pretrained part.
        """
        frozen = "wav2vec2."
        return [(n, p) for n, p in self.named_parameters() if not n.startswith(frozen)]

    def trainable_parameters(self) -> list[nn.Parameter]:
        """The parameters of `trainable_named_parameters()`."""
        return [p for _, p in self.trainable_named_parameters()]

    def freeze_pretrained_(self) -> AudioEncoder:
        """requires_grad False on the pretrained part (wav2vec2), True on the rest; returns self."""
        trainable = {id(p) for p in self.trainable_parameters()}
        for p in self.parameters():
            p.requires_grad_(id(p) in trainable)
        return self

    def pad_to_frames(self, waveform: Tensor, num_frames: int) -> Tensor:
        """Right-pad (B, N) by repeating the last sample up to num_frames * samples_per_frame."""
        target = math.ceil(num_frames * self.samples_per_frame)
        if waveform.shape[-1] >= target:
            return waveform
        return F.pad(waveform[:, None], (0, target - waveform.shape[-1]), mode="replicate")[:, 0]

    def hidden_states(self, waveform: Tensor, num_frames: int) -> Tensor:
        """Transformer outputs at the frame rate: (B, N) -> (B, T, layers * hidden), or (B, T, hidden).

        wav2vec2 front-end only.
        """
        w2v = self.wav2vec2
        if w2v is None:
            raise ValueError("hidden_states needs the wav2vec2 front-end; this encoder is log-mel")
        feats = w2v.feature_extractor(waveform)  # (B, C, N')
        feats = F.interpolate(feats, size=num_frames, mode="linear", align_corners=True)  # (B, C, T)
        hidden, _ = w2v.feature_projection(feats.transpose(1, 2))  # (B, T, hidden)
        captured: list[Tensor] = []
        hooks = []
        if self.config.all_layers:
            for layer in w2v.encoder.layers[:-1]:
                hooks.append(
                    layer.register_forward_hook(
                        lambda _m, _i, out: captured.append(out[0] if isinstance(out, tuple) else out)
                    )
                )
        try:
            last = w2v.encoder(hidden)[0]  # (B, T, hidden); includes the final norm when there is one
        finally:
            for h in hooks:
                h.remove()
        return torch.cat([*captured, last], dim=-1)  # layer-major within each frame

    def forward(self, waveform: Tensor, num_frames: int | None = None) -> Tensor:
        """Per-frame speech features.

        Args:
            waveform: (B, N) normalised waveform at `config.sample_rate` (see normalize_waveform).
            num_frames: T; defaults to ceil(N * fps / sample_rate).

        Returns:
            (B, T, feature_dim). wav2vec2: the features of the whole input are resampled to T frames;
            log-mel: frame t covers samples [t S, (t + 1) S) (S = samples_per_frame), so input
            beyond T S is ignored.
        """
        if num_frames is None:
            num_frames = num_video_frames(waveform.shape[-1], self.config.sample_rate, self.config.fps)
        waveform = self.pad_to_frames(waveform, num_frames)
        if self.logmel is not None:
            return self.logmel(waveform, num_frames)
        return self.audio_projection(self.hidden_states(waveform, num_frames))
