"""A small log-mel speech encoder, trained with the transformer (the `logmel` audio front-end).

For when no pretrained speech model is at hand: instead of frozen wav2vec2 features, the speech
features a^{1:T} come from a log-mel spectrogram and a few convolutions, all trained together with
the flow-matching transformer.

Time alignment. Log-mel frame j is centred on sample hop * (j + 1/2): the waveform is padded by
(n_fft - hop) / 2 samples on each side (reflection) and framed without further centring, so N
samples (a multiple of hop) give exactly N / hop frames. With the defaults (hop 160 at 16 kHz,
25 fps) video frame t, which covers samples [640 t, 640 (t + 1)), owns mel frames 4t .. 4t + 3,
whose centres are symmetric about the video frame's centre.

Mel filterbank. Two conventions (`LogMelConfig.mel_scale`):
    "slaney": the Auditory Toolbox scale (linear, 200/3 Hz per mel, below 1 kHz; logarithmic above)
              with area-normalised triangles (each filter is scaled by 2 / its bandwidth in Hz);
              the default of librosa and of Whisper's front-end.
    "htk":    mel = 2595 log10(1 + f / 700), triangles with peak 1.
Triangles are built in Hz between n_mels + 2 points equally spaced on the mel scale.

Encoder (all layers local, no attention, no statistics over the clip):
    waveform (B, N) -> pad / trim to T * samples_per_frame
    -> log(mel power + eps)                         (B, n_mels, r T), r = mel frames per video frame
    -> (x - norm_mean) / norm_std                    fixed standardisation
    -> Conv1d(k 3) + GELU                            at the mel frame rate
    -> Conv1d(k 2r, stride r) + GELU                 down to the video frame rate    (B, C, T)
    -> num_layers x [x + Conv1x1(GELU(Conv_k(LayerNorm(x))))]
    -> SiLU(LayerNorm(Linear(.)))                     (B, T, feature_dim)

The per-utterance normalisation is that of the waveform (zero mean, unit variance over the whole
clip, `normalize_waveform`; the pipeline computes it on the whole clip before any chunking), so
every layer here stays local and chunked encoding of long audio is exact once each chunk's context
covers `LogMelEncoder.receptive_field` (a few hundred milliseconds).
"""

from __future__ import annotations

import math
from fractions import Fraction
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import LogMelConfig

__all__ = ["LogMelEncoder", "hz_to_mel", "log_mel_spectrogram", "mel_filterbank", "mel_to_hz"]

_SLANEY_F_SP = 200.0 / 3.0  # Hz per mel in the linear part of the Slaney scale
_SLANEY_MIN_LOG_HZ = 1000.0  # where the Slaney scale becomes logarithmic
_SLANEY_LOGSTEP = math.log(6.4) / 27.0


def hz_to_mel(freq: np.ndarray | float, mel_scale: str = "slaney") -> np.ndarray:
    """Frequency in Hz -> mel, on the "slaney" or "htk" scale."""
    f = np.asarray(freq, dtype=np.float64)
    if mel_scale == "htk":
        return 2595.0 * np.log10(1.0 + f / 700.0)
    if mel_scale != "slaney":
        raise ValueError(f"unknown mel scale {mel_scale!r}; choose 'slaney' or 'htk'")
    min_log_mel = _SLANEY_MIN_LOG_HZ / _SLANEY_F_SP
    log_part = min_log_mel + np.log(np.maximum(f, _SLANEY_MIN_LOG_HZ) / _SLANEY_MIN_LOG_HZ) / _SLANEY_LOGSTEP
    return np.where(f >= _SLANEY_MIN_LOG_HZ, log_part, f / _SLANEY_F_SP)


def mel_to_hz(mel: np.ndarray | float, mel_scale: str = "slaney") -> np.ndarray:
    """Inverse of hz_to_mel."""
    m = np.asarray(mel, dtype=np.float64)
    if mel_scale == "htk":
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)
    if mel_scale != "slaney":
        raise ValueError(f"unknown mel scale {mel_scale!r}; choose 'slaney' or 'htk'")
    min_log_mel = _SLANEY_MIN_LOG_HZ / _SLANEY_F_SP
    log_part = _SLANEY_MIN_LOG_HZ * np.exp(_SLANEY_LOGSTEP * (np.maximum(m, min_log_mel) - min_log_mel))
    return np.where(m >= min_log_mel, log_part, m * _SLANEY_F_SP)


@lru_cache(maxsize=16)
def _filterbank(
    n_mels: int, n_fft: int, sample_rate: int, f_min: float, f_max: float, mel_scale: str
) -> np.ndarray:
    fft_freqs = np.linspace(0.0, sample_rate / 2.0, n_fft // 2 + 1)
    edges = mel_to_hz(
        np.linspace(hz_to_mel(f_min, mel_scale), hz_to_mel(f_max, mel_scale), n_mels + 2), mel_scale
    )
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (fft_freqs[None] - lower) / (centre - lower)
    falling = (upper - fft_freqs[None]) / (upper - centre)
    weights = np.maximum(0.0, np.minimum(rising, falling))  # (n_mels, n_freqs)
    if mel_scale == "slaney":
        weights *= 2.0 / (upper - lower)  # equal area per filter
    weights.setflags(write=False)
    return weights


def mel_filterbank(config: LogMelConfig, sample_rate: int = 16000) -> np.ndarray:
    """Triangular mel filters (n_mels, n_fft // 2 + 1), float64, read-only (cached)."""
    return _filterbank(
        config.n_mels, config.n_fft, sample_rate, float(config.f_min), float(config.f_max), config.mel_scale
    )


def _frame_padding(config: LogMelConfig) -> tuple[int, int]:
    left = (config.n_fft - config.hop_length) // 2
    return left, config.n_fft - config.hop_length - left


def log_mel_spectrogram(waveform: Tensor, config: LogMelConfig, sample_rate: int = 16000) -> Tensor:
    """log(mel power + log_eps) of a waveform: (B, N) -> (B, n_mels, N // hop_length).

    Frame j is centred on sample hop_length * (j + 1/2) (see the module docstring); N must be at
    least hop_length. Power spectrum |STFT|^2 with a periodic Hann window of win_length samples.
    Computed in float32 (float64 for float64 input) whatever the input dtype.
    """
    if waveform.dim() != 2:
        raise ValueError(f"waveform must be (B, N), got shape {tuple(waveform.shape)}")
    if waveform.shape[-1] < config.hop_length:
        raise ValueError(
            f"waveform has {waveform.shape[-1]} samples; need at least hop_length = {config.hop_length}"
        )
    dtype = torch.float64 if waveform.dtype == torch.float64 else torch.float32
    x = waveform.to(dtype)
    left, right = _frame_padding(config)
    mode = "reflect" if x.shape[-1] > max(left, right) else "replicate"
    x = F.pad(x[:, None], (left, right), mode=mode)[:, 0]
    window = torch.hann_window(config.win_length, periodic=True, dtype=dtype, device=x.device)
    spec = torch.stft(
        x,
        n_fft=config.n_fft,
        hop_length=config.hop_length,
        win_length=config.win_length,
        window=window,
        center=False,
        return_complex=True,
    )  # (B, n_fft // 2 + 1, frames)
    power = spec.real.square() + spec.imag.square()
    fb = torch.tensor(mel_filterbank(config, sample_rate), dtype=dtype, device=x.device)
    mel = torch.matmul(fb, power)  # (B, n_mels, frames)
    return torch.log(mel + config.log_eps)


class _ConvBlock(nn.Module):
    """x + Conv1x1(GELU(Conv_k(LayerNorm(x)))) over (B, T, C), local in time."""

    def __init__(self, channels: int, kernel_size: int):
        super().__init__()
        self.norm = nn.LayerNorm(channels)
        self.conv = nn.Conv1d(channels, channels, kernel_size, padding=kernel_size // 2)
        self.mix = nn.Conv1d(channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        y = self.norm(x).transpose(1, 2)
        y = self.mix(F.gelu(self.conv(y)))
        return x + y.transpose(1, 2)


class LogMelEncoder(nn.Module):
    """Normalised waveform (B, N) -> per-video-frame speech features (B, T, feature_dim).

    Args:
        config: the log-mel and convolution settings.
        feature_dim: output size per frame (FMTConfig.audio_dim).
        fps: video frame rate; sample_rate / fps must be a multiple of config.hop_length.
        sample_rate: waveform rate.

    Parameter names: `input_conv`, `downsample`, `blocks.{i}.{norm,conv,mix}`, `projection.{0,1}`.
    """

    def __init__(self, config: LogMelConfig, feature_dim: int, fps: float = 25.0, sample_rate: int = 16000):
        super().__init__()
        ratio = Fraction(sample_rate) / Fraction(fps) / config.hop_length
        if ratio.denominator != 1 or ratio < 1:
            raise ValueError(
                f"sample_rate / fps ({sample_rate} / {fps}) must be a multiple of hop_length "
                f"({config.hop_length})"
            )
        self.config = config
        self.sample_rate = sample_rate
        self.fps = fps
        self.mel_per_frame = r = int(ratio)  # mel frames per video frame
        self.samples_per_frame = r * config.hop_length
        c = config.channels
        self.input_conv = nn.Conv1d(config.n_mels, c, 3, padding=1)
        # Output t sees mel frames r t - r//2 .. r t + r - 1 + r//2: centred on video frame t.
        self.downsample = nn.Conv1d(c, c, r + 2 * (r // 2), stride=r, padding=r // 2)
        self.blocks = nn.ModuleList(_ConvBlock(c, config.kernel_size) for _ in range(config.num_layers))
        self.projection = nn.Sequential(nn.Linear(c, feature_dim), nn.LayerNorm(feature_dim), nn.SiLU())

    @property
    def receptive_field(self) -> tuple[int, int]:
        """(left, right): output frame t depends only on samples [t S - left, (t + 1) S + right).

        S = samples_per_frame, samples counted in the waveform after padding to T * S.
        """
        cfg, r, hop = self.config, self.mel_per_frame, self.config.hop_length
        pad_left, _ = _frame_padding(cfg)
        p = r // 2
        spread = r * len(self.blocks) * (cfg.kernel_size // 2)  # mel frames the blocks add per side
        # mel frame j covers samples [hop j - pad_left, hop j - pad_left + n_fft); the input conv
        # adds one mel frame per side, the downsampling conv p.
        left = hop * (spread + p + 1) + pad_left
        right = hop * (spread + p + 1) - pad_left + cfg.n_fft - hop
        return left, right

    def fit_to_frames(self, waveform: Tensor, num_frames: int) -> Tensor:
        """(B, N) -> (B, num_frames * samples_per_frame): right-pad by repeating the last sample, or trim."""
        target = num_frames * self.samples_per_frame
        n = waveform.shape[-1]
        if n < target:
            return F.pad(waveform[:, None], (0, target - n), mode="replicate")[:, 0]
        return waveform[:, :target]

    def forward(self, waveform: Tensor, num_frames: int | None = None) -> Tensor:
        """Per-frame speech features.

        Args:
            waveform: (B, N) normalised waveform (see audio.normalize_waveform), N >= 1.
            num_frames: T; defaults to ceil(N / samples_per_frame) = ceil(N * fps / sample_rate).
                Frame t always covers samples [t S, (t + 1) S): longer input is trimmed, shorter
                input padded by repeating its last sample.

        Returns:
            (B, T, feature_dim) in the dtype of the parameters.
        """
        if waveform.dim() != 2 or waveform.shape[-1] < 1:
            raise ValueError(f"waveform must be (B, N) with N >= 1, got shape {tuple(waveform.shape)}")
        if num_frames is None:
            num_frames = math.ceil(waveform.shape[-1] / self.samples_per_frame)
        if num_frames < 1:
            raise ValueError(f"num_frames must be >= 1, got {num_frames}")
        wave = self.fit_to_frames(waveform, num_frames)
        mel = log_mel_spectrogram(wave, self.config, self.sample_rate)  # (B, n_mels, r T)
        dtype = self.input_conv.weight.dtype
        x = ((mel - self.config.norm_mean) / self.config.norm_std).to(dtype)
        x = F.gelu(self.input_conv(x))
        x = F.gelu(self.downsample(x)).transpose(1, 2)  # (B, T, C)
        for block in self.blocks:
            x = block(x)
        return self.projection(x)
