"""FloatPipeline: portrait + speech -> motion latents -> frames (FLOAT §4, Fig. 2).

Stages (each a method, so they can be timed, tested and reused on their own):

1. `encode_source`   S -> w_{S->r}, lambda(S), w_{r->S}, feature pyramid       (motion auto-encoder)
2. `encode_audio`    waveform -> per-frame speech features a^{1:T}   (wav2vec2 + projection, or log-mel)
3. `emotion_probs`   waveform -> w_e (predicted), or one-hot for a forced label (emotion redirection)
4. `iter_motion`     chunked flow-matching sampling of w_{r->D}^{1:T}         (FMT + ODE + guidance)
5. `edit_motion`     lambda-control along the learned orthonormal basis (paper §5.4)
6. `iter_frames`     D(w_{S->r} + w_{r->D}^t) decoded as a stream

The pipeline owns device and dtype; the networks stay pure modules.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from .chunking import FrameChunk, frame_chunks
from .flow.guidance import IncrementalGuidance
from .flow.sampler import MotionSampler, WindowSample, fmt_velocity
from .generate import GenerateOptions, GenerationResult, generate_frames, generate_video
from .models.audio import normalize_waveform, num_video_frames
from .models.emotion import Emotion, emotion_one_hot
from .models.float_model import FloatModel
from .models.motion_ae import SourceEncoding
from .weights import load_model

__all__ = ["AudioEncoding", "FloatPipeline"]


@dataclass
class AudioEncoding:
    """Speech at the video frame rate.

    Attributes:
        features: a^{1:T}, (1, T, d_a).
        waveform: the normalised waveform (1, N) fed to the speech encoder and the emotion classifier.
        num_frames: T = ceil(N * fps / sample_rate).
    """

    features: Tensor
    waveform: Tensor
    num_frames: int


class FloatPipeline:
    """End-to-end FLOAT inference over a FloatModel.

    Example:
        >>> pipe = FloatPipeline.from_pretrained("weights/float-512", device="cuda")
        >>> src = pipe.encode_source(image)                  # (1, 3, 512, 512) in [-1, 1]
        >>> audio = pipe.encode_audio(waveform_16k)          # (N,) float32
        >>> emotion = pipe.emotion_probs(audio, "auto")
        >>> latents = torch.cat([w.latents for w in pipe.iter_motion(src, audio, emotion, seed=0)], 1)
        >>> frames = list(pipe.iter_frames(src, latents[0]))  # each (n, 3, 512, 512)
    """

    def __init__(
        self,
        model: FloatModel,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        speech_chunk_seconds: float = 20.0,
        speech_context_seconds: float = 2.0,
    ):
        """Args:
        model: the networks.
        device, dtype: where and in what precision everything runs.
        speech_chunk_seconds: longer speech is encoded in chunks of this length (bounded memory;
            see chunking.py); shorter speech is encoded whole, exactly as the original does.
        speech_context_seconds: extra audio each chunk sees on both sides.
        """
        if speech_chunk_seconds <= 0 or speech_context_seconds < 0:
            raise ValueError("speech_chunk_seconds must be > 0 and speech_context_seconds >= 0")
        self.model = model.eval().requires_grad_(False)
        self.speech_chunk_seconds = speech_chunk_seconds
        self.speech_context_seconds = speech_context_seconds
        self.device = torch.device(device)
        self.dtype = dtype
        self.model.to(device=self.device, dtype=dtype)

    @classmethod
    def from_pretrained(
        cls, path: str | os.PathLike, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
    ) -> FloatPipeline:
        """Load a weights folder (see checkpoint.py) onto `device` in `dtype`."""
        return cls(load_model(path), device=device, dtype=dtype)

    @property
    def config(self):
        return self.model.config

    @property
    def sample_rate(self) -> int:
        return self.config.audio.sample_rate

    @property
    def fps(self) -> float:
        return self.config.audio.fps

    @property
    def image_size(self) -> int:
        return self.config.motion_ae.size

    # ---------------------------------------------------------------------------------------------
    # Stages
    # ---------------------------------------------------------------------------------------------

    @torch.inference_mode()
    def encode_source(self, image: Tensor) -> SourceEncoding:
        """Encode the source portrait: (1, 3, size, size) in [-1, 1] -> SourceEncoding."""
        size = self.image_size
        if image.dim() != 4 or image.shape[1:] != (3, size, size):
            raise ValueError(f"image must have shape (B, 3, {size}, {size}), got {tuple(image.shape)}")
        return self.model.motion_ae.encode_source(image.to(self.device, self.dtype))

    @torch.inference_mode()
    def encode_audio(self, waveform: np.ndarray | Tensor) -> AudioEncoding:
        """Speech features of a mono waveform at `sample_rate`: (N,) or (1, N) -> AudioEncoding."""
        wav = torch.as_tensor(np.asarray(waveform, dtype=np.float32)).reshape(1, -1)
        if wav.shape[-1] == 0:
            raise ValueError("audio contains no samples")
        num_frames = num_video_frames(wav.shape[-1], self.sample_rate, self.fps)
        # wav2vec2 (the speech features' and the emotion classifier's) needs enough samples for its
        # receptive field (400 samples at 16 kHz); the log-mel front-end takes any length.
        min_samples = self.model.audio_encoder.min_samples
        if self.model.emotion is not None:
            min_samples = max(min_samples, _receptive_field(self.model.emotion.wav2vec2.config))
        normalized = normalize_waveform(wav)
        if normalized.shape[-1] < min_samples:
            normalized = torch.nn.functional.pad(
                normalized[:, None], (0, min_samples - normalized.shape[-1]), mode="replicate"
            )[:, 0]
        normalized = normalized.to(self.device, self.dtype)
        encoder = self.model.audio_encoder
        parts = []
        for chunk in self._speech_chunks(num_frames):
            if chunk.context_start == 0 and chunk.context_stop == num_frames:
                parts.append(encoder(normalized, num_frames))  # the whole clip, as the original
                continue
            first = round(chunk.context_start * encoder.samples_per_frame)
            last = round(chunk.context_stop * encoder.samples_per_frame)
            segment = normalized[:, first:last]
            parts.append(encoder(segment, chunk.context_stop - chunk.context_start)[:, chunk.keep])
        features = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
        return AudioEncoding(features, normalized, num_frames)

    def _speech_chunks(self, num_frames: int) -> list[FrameChunk]:
        return frame_chunks(
            num_frames,
            max(1, round(self.speech_chunk_seconds * self.fps)),
            round(self.speech_context_seconds * self.fps),
        )

    @torch.inference_mode()
    def emotion_probs(self, audio: AudioEncoding, emotion: str | Emotion | None = "auto") -> Tensor:
        """w_e (1, E): the classifier's softmax for "auto"/None, else the one-hot of the label."""
        if emotion is None or (isinstance(emotion, str) and emotion.strip().lower() == "auto"):
            classifier = self.model.emotion
            if classifier is None:
                return emotion_one_hot(Emotion.NEUTRAL).to(self.device, self.dtype)
            chunks = self._speech_chunks(audio.num_frames)
            if len(chunks) == 1:
                return classifier.probabilities(audio.waveform)  # the whole clip, as the original
            # Long speech: mean-pool the hidden states over all chunks, then classify once.
            spf = self.model.audio_encoder.samples_per_frame
            total, count = None, 0
            for chunk in chunks:
                segment = audio.waveform[:, round(chunk.start * spf) : round(chunk.stop * spf)]
                hidden = classifier.wav2vec2(segment)[0]  # (1, N', hidden)
                total = hidden.sum(1) if total is None else total + hidden.sum(1)
                count += hidden.shape[1]
            return torch.softmax(classifier.classifier(total / count), dim=-1)
        return emotion_one_hot(emotion, num_classes=self.config.fmt.num_emotions).to(self.device, self.dtype)

    def sampler(
        self, nfe: int = 10, solver: str = "euler", audio_scale: float = 2.0, emotion_scale: float = 1.0
    ) -> MotionSampler:
        """The chunked sampler for this model's window sizes."""
        cfg = self.config.fmt
        return MotionSampler(
            window=cfg.clip_frames,
            context=cfg.context_frames,
            nfe=nfe,
            method=solver,
            guidance=IncrementalGuidance(audio_scale, emotion_scale),
        )

    @torch.inference_mode()
    def iter_motion(
        self,
        source: SourceEncoding,
        audio: AudioEncoding,
        emotion: Tensor,
        *,
        nfe: int = 10,
        solver: str = "euler",
        audio_scale: float = 2.0,
        emotion_scale: float = 1.0,
        seed: int | None = None,
        generator: torch.Generator | None = None,
        noise: Tensor | None = None,
        callback: Callable[[int, int], None] | None = None,
    ) -> Iterator[WindowSample]:
        """Sample motion latents w_{r->D} window by window (see flow/sampler.py).

        `seed` makes the noise reproducible (a CPU generator, so results match across devices);
        `generator` or explicit `noise` (1, ceil(T/L)*L, d) take precedence.
        """
        if generator is None and seed is not None:
            generator = torch.Generator().manual_seed(int(seed))
        sampler = self.sampler(nfe, solver, audio_scale, emotion_scale)
        yield from sampler.iter_windows(
            fmt_velocity(self.model.fmt, sampler.context),
            audio.features,
            source.source_motion,
            emotion.to(self.device, self.dtype),
            noise=noise,
            generator=generator,
            callback=callback,
        )

    @torch.inference_mode()
    def edit_motion(
        self,
        latents: Tensor,
        source: SourceEncoding,
        edits: Mapping[int, float] | None = None,
        motion_scale: float = 1.0,
    ) -> Tensor:
        """lambda-control of generated motion (paper §5.4, Eq. 15).

        w' = w_{r->S} + motion_scale * (w - w_{r->S}) + sum_k delta_k v_k

        `motion_scale` scales how far each frame moves away from the source's own motion (0 = the
        source pose held still, 1 = unchanged, > 1 = exaggerated); `edits` {k: delta_k} shifts
        coefficient k of every frame along the k-th orthonormal direction v_k.

        latents: (..., d) -> (..., d).
        """
        out = latents
        if motion_scale != 1.0:
            ref = source.source_motion.reshape(*([1] * (latents.dim() - 1)), -1)
            out = ref + motion_scale * (out - ref)
        if edits:
            basis = self.model.motion_ae.dec.direction.basis()  # (d, M)
            m = basis.shape[1]
            delta = torch.zeros(m, device=basis.device, dtype=basis.dtype)
            for k, value in edits.items():
                if not 0 <= int(k) < m:
                    raise ValueError(
                        f"motion direction {k} out of range; the model has directions 0..{m - 1}"
                    )
                delta[int(k)] += float(value)
            out = out + delta @ basis.t()
        return out

    @torch.inference_mode()
    def iter_frames(
        self, source: SourceEncoding, latents: Tensor, batch_size: int | None = None
    ) -> Iterator[Tensor]:
        """Decode motion latents (T, d) into frames, yielded in batches (n, 3, size, size), unclamped.

        batch_size defaults to 1 on CPU (fastest there, and bit-identical to the released
        per-frame decoding) and 8 elsewhere.
        """
        if batch_size is None:
            batch_size = 1 if self.device.type == "cpu" else 8
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        for i in range(0, latents.shape[0], batch_size):
            chunk = latents[i : i + batch_size].to(self.device, self.dtype)
            yield self.model.motion_ae.decode(source, chunk)

    # ---------------------------------------------------------------------------------------------
    # End to end
    # ---------------------------------------------------------------------------------------------

    def generate(
        self, image, audio, options: GenerateOptions | None = None, **kwargs
    ) -> Iterator[np.ndarray]:
        """Yield (n, H, W, 3) uint8 frames as they are decoded.

        Args:
            image: portrait path or (H, W, 3) uint8 RGB array.
            audio: speech path, or a mono float waveform at `sample_rate`.
            options: GenerateOptions; or give its fields as keyword arguments
                (emotion, emotion_scale, audio_scale, nfe, solver, seed, crop, face_index, crop_fill,
                motion_edits, motion_scale, decode_batch_size).
        """
        return generate_frames(self, image, audio, _options(options, kwargs))

    def write_video(
        self, image, audio, output: str | os.PathLike, options: GenerateOptions | None = None, **kwargs
    ) -> GenerationResult:
        """Write the talking video to `output` (MP4, H.264 + AAC); same options as `generate`."""
        return generate_video(self, image, audio, output, _options(options, kwargs))


def _options(options: GenerateOptions | None, kwargs: dict) -> GenerateOptions:
    if options is not None and kwargs:
        raise TypeError("give either options= or keyword options, not both")
    if options is None:
        if "motion_edits" in kwargs and isinstance(kwargs["motion_edits"], Mapping):
            kwargs["motion_edits"] = tuple(kwargs["motion_edits"].items())
        options = GenerateOptions(**kwargs)
    return options


def _receptive_field(w2v_config) -> int:
    """Samples needed for one output frame of wav2vec2's convolutional feature encoder."""
    field = 1
    for kernel, stride in zip(reversed(w2v_config.conv_kernel), reversed(w2v_config.conv_stride)):
        field = (field - 1) * stride + kernel
    return field
