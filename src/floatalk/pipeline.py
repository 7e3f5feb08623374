"""FloatPipeline: portrait + speech -> motion latents -> frames (FLOAT §4, Fig. 2). It owns generation.

Stages (each a method, so they can be timed, tested and reused on their own, e.g. by a streaming
consumer that pushes speech in chunks and samples one window at a time):

1. `prepare_portrait`  photo -> (1, 3, size, size) in [-1, 1], face-cropped                (face crop)
2. `encode_source`     S -> w_{S->r}, lambda(S), w_{r->S}, feature pyramid       (motion auto-encoder)
3. `encode_audio`      speech -> per-frame features a^{1:T}    (wav2vec2 + projection, or log-mel)
4. `emotion_probs`     speech -> w_e (predicted), or one-hot for a forced label (emotion redirection)
5. `sampler` / `iter_motion`  windowed flow-matching sampling of w_{r->D}^{1:T}  (FMT + ODE + Eq. 14)
6. `edit_motion`       lambda-control along the learned orthonormal basis (Eq. 15)
7. `iter_frames`       D(w_{S->r} + w_{r->D}^t) decoded as a stream (Eq. 8, 10); frames larger
                       than the model's carry the portrait's own detail (floatalk.detail)

End to end: `generate` (frames as they are decoded) and `write_video` (an MP4), both validated
once at this boundary (GenerateOptions.validate: InputError) and both returning a
GenerationResult. Data flows in one direction, window by window, so memory does not grow with the
length of the speech: long speech is read from its file block by block (io.audio.SpeechAudio),
features are computed chunk by chunk, and frames go to the encoder as they are decoded.

The pipeline owns device and dtype; the networks stay pure modules.
"""

from __future__ import annotations

import math
import os
import random
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .acceleration import DECODING_MODES, CompiledWithFallback, in_decoding_layout, set_decoding
from .chunking import FrameChunk, frame_chunks
from .detail import detail_cutoff, transfer_detail
from .errors import InputError
from .flow.guidance import IncrementalGuidance
from .flow.sampler import MotionSampler, WindowSample, fmt_velocity
from .io.audio import SpeechAudio
from .models.audio import normalize_waveform, num_video_frames, wav2vec2_receptive_field
from .models.emotion import Emotion, emotion_one_hot
from .models.float_model import FloatModel
from .models.motion_ae import SourceEncoding
from .options import GenerateOptions
from .output_frames import FrameFinisher, PortraitCrop
from .weights import load_model

__all__ = ["AudioEncoding", "FloatPipeline", "Generation", "GenerationResult"]

_DEFAULTS = GenerateOptions()
# smallest default output side: a small model's frames are upscaled to it (with floatalk.detail)
MIN_OUTPUT_SIZE = 256


@dataclass
class AudioEncoding:
    """Speech at the video frame rate.

    Attributes:
        features: a^{1:T}, (1, T, d_a).
        num_frames: T = ceil(N * fps / sample_rate).
        speech: the speech it was computed from (the emotion stage reads it again).
        waveform: the normalised waveform (1, N') when the clip was encoded whole (as the original
            does, for clips up to the chunk length); None when it was encoded chunk by chunk.
    """

    features: Tensor
    num_frames: int
    speech: SpeechAudio
    waveform: Tensor | None = None


@dataclass
class GenerationResult:
    """What a finished (or, while frames are still coming, a running) generation reports.

    Attributes:
        path: the MP4 written, or None for frames returned to the caller.
        num_frames: frames produced.
        seconds: wall time of the whole run.
        seed: the seed of the noise (None when the noise or the motion was given).
        emotion: the emotion used ("auto (happy)", a forced label, or "(from motion file)").
        stage_seconds: wall time per stage, in pipeline order.
        notices: things the user should know (e.g. an emotion fallback), one line each.
        fps: the video frame rate.
    """

    path: Path | None = None
    num_frames: int = 0
    seconds: float = 0.0
    seed: int | None = None
    emotion: str = ""
    stage_seconds: dict[str, float] = field(default_factory=dict)
    notices: list[str] = field(default_factory=list)
    fps: float = 25.0

    def summary(self) -> str:
        rate = self.num_frames / self.seconds if self.seconds > 0 else float("inf")
        where = f"wrote {self.path}: " if self.path else ""
        stages = ", ".join(f"{k} {v:.1f}s" for k, v in self.stage_seconds.items())
        seed = f", seed {self.seed}" if self.seed is not None else ""
        notes = "".join(f"\nnote: {n}" for n in self.notices)
        return (
            f"{where}{self.num_frames} frames ({self.num_frames / self.fps:.2f} s) in {self.seconds:.1f} s "
            f"({rate:.2f} frames/s), emotion {self.emotion}{seed} [{stages}]{notes}"
        )


class Generation:
    """A generation in progress: iterate it for (n, H, W, 3) uint8 frame batches as they are decoded.

    Every input has been read and checked, and the speech encoded, before the object exists; the
    motion is sampled and decoded window by window as the frames are pulled. `result` is complete
    once the iteration ends (its seed, emotion and notices are known from the start).
    """

    def __init__(
        self,
        frames: Iterator[np.ndarray],
        result: GenerationResult,
        frame_size: tuple[int, int],
        speech: SpeechAudio,
        started: float,
    ) -> None:
        self._frames, self.result = frames, result
        self.height, self.width = frame_size  # of the frames, in pixels
        self.speech = speech  # the speech being rendered (the MP4's sound track comes from it)
        self.started = started  # time.perf_counter() when the run began

    def __iter__(self) -> Iterator[np.ndarray]:
        return self._frames

    def __next__(self) -> np.ndarray:
        return next(self._frames)


class FloatPipeline:
    """End-to-end FLOAT inference over a FloatModel.

    Example:
        >>> pipe = FloatPipeline.from_pretrained("weights/float-512", device="cuda")
        >>> pipe.write_video("portrait.jpg", "speech.wav", "talk.mp4", seed=0).summary()
        >>> run = pipe.generate("portrait.jpg", "speech.wav", emotion="happy")
        >>> for frames in run: ...                             # (n, 512, 512, 3) uint8, as decoded
        >>> run.result.seed, run.result.stage_seconds
    """

    def __init__(
        self,
        model: FloatModel,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        speech_chunk_seconds: float = 20.0,
        speech_context_seconds: float = 2.0,
        compile: bool = False,
        decoding: str | None = None,
    ):
        """Args:
        model: the networks (configured in place: eval mode, device, dtype, decoding path).
        device, dtype: where and in what precision everything runs.
        compile: decode with torch.compile (floatalk.acceleration): slower to start, faster per
            frame; falls back to eager decoding, with a notice, where it cannot compile.
        decoding: "fast" (the default, except on MPS) or "exact" (bit-identical to the original's
            per-frame decoding; the parity tests' path). floatalk.acceleration.set_decoding.
        speech_chunk_seconds: longer speech is encoded in chunks of this length (bounded memory;
            see chunking.py); shorter speech is encoded whole, exactly as the original does.
        speech_context_seconds: extra audio each chunk sees on both sides.
        """
        if speech_chunk_seconds <= 0 or speech_context_seconds < 0:
            raise InputError("speech_chunk_seconds must be > 0 and speech_context_seconds >= 0")
        self.model = model.eval().requires_grad_(False)
        self.speech_chunk_seconds = speech_chunk_seconds
        self.speech_context_seconds = speech_context_seconds
        self.device = torch.device(device)
        self.dtype = dtype
        self.model.to(device=self.device, dtype=dtype)
        ae = self.model.motion_ae
        if decoding is None:  # channels-last on MPS is untested here: the exact path there
            decoding = "exact" if self.device.type == "mps" else "fast"
        if decoding not in DECODING_MODES:
            raise InputError(f"decoding must be one of {', '.join(DECODING_MODES)}, got {decoding!r}")
        self.decoding = decoding
        set_decoding(ae.dec, decoding)
        self._decode = CompiledWithFallback(ae.decode) if compile else ae.decode
        self._decode_with_warp = CompiledWithFallback(ae.decode_with_warp) if compile else ae.decode_with_warp

    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        compile: bool = False,
        decoding: str | None = None,
    ) -> FloatPipeline:
        """Load a weights folder (floatalk.weights) onto `device` in `dtype`."""
        return cls(load_model(path), device=device, dtype=dtype, compile=compile, decoding=decoding)

    def compile_failure(self) -> str | None:
        """Why torch.compile was given up (decoding then runs eagerly), or None."""
        for fn in (self._decode, self._decode_with_warp):
            if isinstance(fn, CompiledWithFallback) and fn.failure is not None:
                return fn.failure
        return None

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

    @property
    def motion_directions(self) -> int:
        """M, the number of learned orthonormal motion directions (lambda-control's K < M)."""
        return self.config.motion_ae.motion_dim

    # ---------------------------------------------------------------------------------------------
    # Inputs
    # ---------------------------------------------------------------------------------------------

    def prepare_portrait(self, image: Any, options: GenerateOptions = _DEFAULTS) -> Tensor:
        """Path or (H, W, 3) uint8 array -> (1, 3, size, size) in [-1, 1], face-cropped unless crop=False.

        A (1, 3, size, size) tensor is taken as already prepared.
        """
        return self._prepare_portraits(image, options, None)[0]

    def output_size(self, options: GenerateOptions = _DEFAULTS) -> int:
        """Side of the written frames: --size, else the model's own size but at least MIN_OUTPUT_SIZE."""
        return options.output_size or max(self.image_size, MIN_OUTPUT_SIZE)

    def _detail_size(self, options: GenerateOptions) -> int | None:
        """The output side when source detail transfer applies (detail on, frames larger than the model's)."""
        size = self.output_size(options)
        return size if options.detail and size > self.image_size else None

    def _prepare_portraits(
        self, image: Any, options: GenerateOptions, detail_size: int | None
    ) -> tuple[Tensor, Tensor | None, PortraitCrop | None]:
        """The model's input (1, 3, size, size); when detail_size is given, the same crop at that
        side for floatalk.detail (None for an already prepared tensor: there is nothing sharper); and
        the photo and crop window for paste-back (None unless the face was cropped from it)."""
        from .io.image import image_to_tensor, load_image

        size = self.image_size
        if isinstance(image, torch.Tensor):
            if tuple(image.shape) != (1, 3, size, size):
                raise InputError(
                    f"image tensor must be (1, 3, {size}, {size}) in [-1, 1], got {tuple(image.shape)}"
                )
            return image, None, None
        array = load_image(image) if isinstance(image, (str, os.PathLike)) else np.asarray(image)
        if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3:
            raise InputError(f"image array must be (H, W, 3) uint8 RGB, got {array.dtype} {array.shape}")
        if not options.crop:
            detail = image_to_tensor(array, detail_size) if detail_size else None
            return image_to_tensor(array, size), detail, None
        from .face import crop_face, select_face
        from .face.crop import crop_window

        box = select_face(array, options.face_index)
        crop = PortraitCrop(array, crop_window(box))
        model_input = image_to_tensor(crop_face(array, box, size=size, fill=options.crop_fill), size)
        if not detail_size:
            return model_input, None, crop
        sharp = crop_face(array, box, size=detail_size, fill=options.crop_fill)
        return model_input, image_to_tensor(sharp, detail_size), crop

    def load_speech(self, audio: Any) -> SpeechAudio:
        """Path (any audio, or a video's sound) or mono float waveform at `sample_rate` -> SpeechAudio."""
        if isinstance(audio, SpeechAudio):
            if audio.sample_rate != self.sample_rate:
                raise InputError(
                    f"speech is at {audio.sample_rate} Hz but this model hears {self.sample_rate} Hz"
                )
            return audio
        if isinstance(audio, (str, os.PathLike)):
            return SpeechAudio.from_file(audio, self.sample_rate)
        if isinstance(audio, torch.Tensor):
            audio = audio.detach().cpu().float().numpy()
        return SpeechAudio.from_array(audio, self.sample_rate)

    # ---------------------------------------------------------------------------------------------
    # Stages
    # ---------------------------------------------------------------------------------------------

    @torch.inference_mode()
    def encode_source(self, image: Tensor) -> SourceEncoding:
        """Encode the source portrait: (1, 3, size, size) in [-1, 1] -> SourceEncoding."""
        size = self.image_size
        assert image.dim() == 4 and image.shape[1:] == (3, size, size), tuple(image.shape)
        source = self.model.motion_ae.encode_source(image.to(self.device, self.dtype))
        return in_decoding_layout(source, self.decoding)

    def _min_samples(self) -> int:
        """Fewest samples the speech encoders take (wav2vec2's receptive field; any for log-mel)."""
        need = self.model.audio_encoder.min_samples
        if self.model.emotion is not None:
            need = max(need, wav2vec2_receptive_field(self.model.emotion.config.wav2vec2))
        return need

    def _speech_chunks(self, num_frames: int) -> list[FrameChunk]:
        return frame_chunks(
            num_frames,
            max(1, round(self.speech_chunk_seconds * self.fps)),
            round(self.speech_context_seconds * self.fps),
        )

    @torch.inference_mode()
    def encode_audio(self, audio: SpeechAudio | np.ndarray | Tensor | str | os.PathLike) -> AudioEncoding:
        """Speech features a^{1:T} of a mono speech at `sample_rate` -> AudioEncoding.

        Clips up to `speech_chunk_seconds` are normalised and encoded whole, exactly as the original
        does. Longer ones are normalised with the statistics of the whole clip and encoded chunk by
        chunk (each chunk with `speech_context_seconds` of context either side; chunking.py), reading
        the speech block by block: memory does not grow with the length.
        """
        speech = self.load_speech(audio)
        num_frames = num_video_frames(speech.num_samples, self.sample_rate, self.fps)
        encoder = self.model.audio_encoder
        chunks = self._speech_chunks(num_frames)
        if len(chunks) == 1:  # the whole clip, as the original
            wav = torch.from_numpy(np.ascontiguousarray(speech.read())).reshape(1, -1)
            normalized = normalize_waveform(wav)
            if normalized.shape[-1] < self._min_samples():
                normalized = torch.nn.functional.pad(
                    normalized[:, None], (0, self._min_samples() - normalized.shape[-1]), mode="replicate"
                )[:, 0]
            normalized = normalized.to(self.device, self.dtype)
            return AudioEncoding(encoder(normalized, num_frames), num_frames, speech, normalized)
        parts = []
        for chunk, segment in self._normalized_segments(speech, chunks, context=True):
            parts.append(encoder(segment, chunk.context_stop - chunk.context_start)[:, chunk.keep])
        return AudioEncoding(torch.cat(parts, dim=1), num_frames, speech)

    def _normalized_segments(
        self, speech: SpeechAudio, chunks: list[FrameChunk], context: bool
    ) -> Iterator[tuple[FrameChunk, Tensor]]:
        """Each chunk's samples (with its context, or without), normalised: (1, n) on the device."""
        spf = self.model.audio_encoder.samples_per_frame
        mean, scale = speech.mean, 1.0 / math.sqrt(speech.var + 1e-7)  # normalize_waveform, streamed
        ranges = speech.ranges()
        for chunk in chunks:
            lo, hi = (chunk.context_start, chunk.context_stop) if context else (chunk.start, chunk.stop)
            samples = ranges.read(round(lo * spf), round(hi * spf)).astype(np.float64)
            segment = torch.from_numpy(((samples - mean) * scale).astype(np.float32))[None]
            yield chunk, segment.to(self.device, self.dtype)

    @torch.inference_mode()
    def emotion_probs(self, audio: AudioEncoding, emotion: str | Emotion | None = "auto") -> Tensor:
        """w_e (1, E): the classifier's softmax for "auto"/None, else the one-hot of the label."""
        if emotion is None or (isinstance(emotion, str) and emotion.strip().lower() == "auto"):
            classifier = self.model.emotion
            if classifier is None:
                return emotion_one_hot(Emotion.NEUTRAL).to(self.device, self.dtype)
            if audio.waveform is not None:
                return classifier.probabilities(audio.waveform)  # the whole clip, as the original
            # Long speech: mean-pool the hidden states over all chunks, then classify once.
            total, count = None, 0
            chunks = self._speech_chunks(audio.num_frames)
            for _, segment in self._normalized_segments(audio.speech, chunks, context=False):
                hidden = classifier.wav2vec2(segment)[0]  # (1, N', hidden)
                total = hidden.sum(1) if total is None else total + hidden.sum(1)
                count += hidden.shape[1]
            return torch.softmax(classifier.classifier(total / count), dim=-1)
        return emotion_one_hot(emotion, num_classes=self.config.fmt.num_emotions).to(self.device, self.dtype)

    def sampler(
        self,
        nfe: int = _DEFAULTS.nfe,
        solver: str = _DEFAULTS.solver,
        audio_scale: float = _DEFAULTS.audio_scale,
        emotion_scale: float = _DEFAULTS.emotion_scale,
        pose_guidance: float = _DEFAULTS.pose_guidance,
    ) -> MotionSampler:
        """The windowed sampler for this model's window sizes (L, L') and generative process.

        A model trained as a diffusion (FMTConfig.process, the Table 3 ablations) samples with DDIM,
        `nfe` steps per window; `solver` is then unused.
        """
        cfg = self.config.fmt
        process = None
        if cfg.process != "flow":
            from .flow.diffusion import CosineSchedule, DDIMProcess

            prediction = cfg.process.removeprefix("diffusion-")
            process = DDIMProcess(prediction, CosineSchedule(cfg.diffusion_steps), clip=cfg.diffusion_clip)
            try:
                process.check_steps(nfe)
            except ValueError as exc:
                raise InputError(f"nfe: {exc}") from None
        return MotionSampler(
            window=cfg.clip_frames,
            context=cfg.context_frames,
            nfe=nfe,
            method=solver,
            guidance=IncrementalGuidance(audio_scale, emotion_scale, pose_guidance),
            process=process,
        )

    def velocity(self, sampler: MotionSampler):
        """v(t, x, c) of this model's transformer over the current frames of a window."""
        return fmt_velocity(self.model.fmt, sampler.context)

    @torch.inference_mode()
    def iter_motion(
        self,
        source: SourceEncoding,
        audio: AudioEncoding,
        emotion: Tensor,
        *,
        nfe: int = _DEFAULTS.nfe,
        solver: str = _DEFAULTS.solver,
        audio_scale: float = _DEFAULTS.audio_scale,
        emotion_scale: float = _DEFAULTS.emotion_scale,
        seed: int | None = None,
        generator: torch.Generator | None = None,
        noise: Tensor | None = None,
        callback: Callable[[int, int], None] | None = None,
        pose: Tensor | None = None,
        emotion_weight: Tensor | None = None,
        pose_guidance: float = _DEFAULTS.pose_guidance,
    ) -> Iterator[WindowSample]:
        """Sample motion latents w_{r->D} window by window (see flow/sampler.py).

        `emotion` is (1, E) or frame-wise (1, T, E); `pose` (1, T, 6) drives a pose-conditioned model
        (None: the null pose, the model's own head motion); `emotion_weight` (1, T) scales g_e per
        frame; `pose_guidance` is g_p (flow/guidance.py). `seed` makes the noise reproducible (a CPU
        generator, so results match across devices); `generator` or explicit `noise`
        (1, ceil(T/L)*L, d) take precedence.
        """
        if generator is None and seed is not None:
            generator = torch.Generator().manual_seed(int(seed))
        sampler = self.sampler(nfe, solver, audio_scale, emotion_scale, pose_guidance)
        yield from sampler.iter_windows(
            self.velocity(sampler),
            audio.features,
            source.source_motion,
            emotion.to(self.device, self.dtype),
            noise=noise,
            generator=generator,
            callback=callback,
            pose=None if pose is None else pose.to(self.device, self.dtype),
            emotion_weight=None if emotion_weight is None else emotion_weight.to(self.device, self.dtype),
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
        coefficient k of every frame along the k-th orthonormal direction v_k (0 <= k < M).

        latents: (..., d) -> (..., d).
        """
        out = latents
        if motion_scale != 1.0:
            ref = source.source_motion.reshape(*([1] * (latents.dim() - 1)), -1)
            out = ref + motion_scale * (out - ref)
        if edits:
            basis = self.model.motion_ae.dec.direction.basis()  # V: (d, M), orthonormal columns
            m = basis.shape[1]
            delta = torch.zeros(m, device=basis.device, dtype=basis.dtype)
            for k, value in edits.items():
                assert 0 <= int(k) < m, f"motion direction {k} out of range 0..{m - 1}"
                delta[int(k)] += float(value)
            out = out + delta @ basis.t()  # Eq. 15: + sum_k delta_k v_k
        return out

    @torch.inference_mode()
    def iter_frames(
        self,
        source: SourceEncoding,
        latents: Tensor,
        batch_size: int | None = None,
        detail: Tensor | None = None,
    ) -> Iterator[Tensor]:
        """Decode motion latents (T, d) into frames, yielded in batches (n, 3, size, size), unclamped.

        batch_size defaults to 1 on CPU (fastest there, and bit-identical to the released
        per-frame decoding) and 8 elsewhere. With `detail`, the portrait (1, 3, H, H) at an output
        side H > size, the frames come out at H x H with its detail carried in (floatalk.detail).
        """
        if batch_size is None:
            batch_size = 1 if self.device.type == "cpu" else 8
        assert batch_size >= 1, batch_size
        if detail is not None:
            detail = detail.to(self.device, self.dtype)
            cutoff = detail_cutoff(self.image_size)
        for i in range(0, latents.shape[0], batch_size):
            chunk = latents[i : i + batch_size].to(self.device, self.dtype)
            if detail is None:
                yield self._decode(source, chunk)
            else:
                frames, grid = self._decode_with_warp(source, chunk)
                yield transfer_detail(frames, grid, detail, cutoff)

    def render(
        self,
        source: SourceEncoding,
        latents: Tensor,
        options: GenerateOptions = _DEFAULTS,
        detail: Tensor | None = None,
    ) -> Iterator[np.ndarray]:
        """Sampled latents (T, d) -> edited (Eq. 15, options.motion_edits / motion_scale), decoded,
        (n, S, S, 3) uint8 batches at the output size S of `options`."""
        size = self.output_size(options)
        latents = self.edit_motion(latents, source, dict(options.motion_edits), options.motion_scale)
        for frames in self.iter_frames(source, latents, options.decode_batch_size, detail):
            out = frames_to_uint8(frames)
            yield out if out.shape[1] == size else resize_frames(out, size)

    # ---------------------------------------------------------------------------------------------
    # End to end
    # ---------------------------------------------------------------------------------------------

    def generate(
        self,
        image: Any,
        audio: Any,
        options: GenerateOptions | None = None,
        *,
        motion: Tensor | None = None,
        noise: Tensor | None = None,
        on_motion: Callable[[Tensor], None] | None = None,
        progress: Callable[[int, int], None] | None = None,
        **changes: Any,
    ) -> Generation:
        """Read and check everything, encode the speech, then yield frames as they are decoded.

        Args:
            image: portrait path, (H, W, 3) uint8 RGB array, or a prepared (1, 3, size, size) tensor.
            audio: speech path (any audio, or a video's sound), or a mono float waveform at
                `sample_rate`.
            options: GenerateOptions; or give its fields as keyword arguments (`changes`, applied on
                top of `options`): emotion, emotion_scale, audio_scale, nfe, solver, seed, crop,
                face_index, crop_fill, motion_edits ({k: delta} or pairs), motion_scale,
                decode_batch_size, zero_audio, output_size, detail.
            motion: saved motion latents (T, d) to render instead of sampling (io.latents).
            noise: the initial noise of every window, (W * L, d) or (1, W * L, d) with
                W = ceil(T / L) windows of L frames, instead of noise drawn from the seed.
            on_motion: receives the sampled latents (T, d) once sampling is complete.
            progress: called with (frames done, frames total) after each decoded batch.

        Returns:
            A Generation: iterate it for (n, H, W, 3) uint8 frames; its `result` is the report.

        Raises:
            InputError: any unusable input or option (one line), before any frame is made.
        """
        options = GenerateOptions.build(options, **changes).validate(self.motion_directions)
        self._check_conditions(options)
        start = time.perf_counter()
        result = GenerationResult(fps=self.fps)
        timer = _StageTimer(result.stage_seconds)
        image_tensor, detail, crop = self._prepare_portraits(image, options, self._detail_size(options))
        finisher = FrameFinisher(crop, self.output_size(options), options)
        result.notices.extend(finisher.notices)
        timer.tick("crop")
        speech = self.load_speech(audio)
        timer.tick("audio load")
        return self._run(
            image_tensor,
            detail,
            speech,
            options,
            result,
            timer,
            start,
            motion,
            noise,
            on_motion,
            progress,
            finisher,
        )

    def stream(
        self,
        image: Any,
        options: GenerateOptions | None = None,
        settings: Any = None,
        **changes: Any,
    ):
        """A live generation (floatalk.streaming.TalkingStream): the portrait now, speech pushed in
        chunks later, frames back as soon as they are final.

        Args:
            image: portrait path, (H, W, 3) uint8 RGB array, or a prepared tensor (as `generate`).
            options: GenerateOptions (or its fields as keyword arguments): emotion label or auto,
                scales, nfe, solver, seed, crop, still_head, motion edits, output size.
            settings: floatalk.streaming.StreamSettings (hop, look-ahead); None: the defaults.

        Raises:
            InputError: an unusable portrait or option (one line), before any work on speech.
        """
        from .streaming import StreamSettings, TalkingStream

        options = GenerateOptions.build(options, **changes).validate(self.motion_directions)
        return TalkingStream(self, image, options, settings if settings is not None else StreamSettings())

    def write_video(
        self,
        image: Any,
        audio: Any,
        output: str | os.PathLike,
        options: GenerateOptions | None = None,
        *,
        motion: Tensor | None = None,
        noise: Tensor | None = None,
        save_motion: str | os.PathLike | None = None,
        progress: Callable[[int, int], None] | None = None,
        crf: float = 18,
        signer: Any = None,
        **changes: Any,
    ) -> GenerationResult:
        """Write the talking video to `output` (H.264 + AAC MP4), created only once complete.

        Same arguments as `generate`; `save_motion` also writes the sampled latents (.safetensors);
        `signer` (floatalk.provenance.manifest.ManifestSigner) signs a C2PA manifest into the MP4.
        The sound track is the input's own (its sample rate and channels; see io.video.VideoWriter),
        not the 16 kHz mono the model hears. Nothing is left at `output` on an error or Ctrl-C.
        """
        from .io.latents import check_motion_path, save_motion_file
        from .io.video import VideoWriter, check_output_path

        options = GenerateOptions.build(options, **changes).validate(self.motion_directions)
        check_output_path(output)
        if save_motion is not None:
            check_motion_path(save_motion)
        captured: list[Tensor] = []
        run = self.generate(
            image,
            audio,
            options,
            motion=motion,
            noise=noise,
            on_motion=captured.append if save_motion is not None else None,
            progress=progress,
        )
        sound = run.speech.path if run.speech.path is not None else run.speech.read()
        with VideoWriter(
            output, run.width, run.height, fps=self.fps, audio=sound, sample_rate=self.sample_rate, crf=crf
        ) as writer:
            for batch in run:
                t = time.perf_counter()
                writer.write(batch)
                run.result.stage_seconds["mp4 encoding"] = run.result.stage_seconds.get(
                    "mp4 encoding", 0.0
                ) + (time.perf_counter() - t)
            if save_motion is not None and captured:
                save_motion_file(save_motion, captured[0], fps=self.fps, seed=run.result.seed)
        if signer is not None:
            t = time.perf_counter()
            _sign_in_place(Path(output), signer, options, run.result)
            run.result.stage_seconds["c2pa signing"] = time.perf_counter() - t
        run.result.path = Path(output)
        run.result.seconds = time.perf_counter() - run.started
        return run.result

    def _run(
        self,
        image: Tensor,
        detail: Tensor | None,
        speech: SpeechAudio,
        options: GenerateOptions,
        result: GenerationResult,
        timer: _StageTimer,
        start: float,
        motion: Tensor | None,
        noise: Tensor | None,
        on_motion: Callable[[Tensor], None] | None,
        progress: Callable[[int, int], None] | None,
        finisher: FrameFinisher,
    ) -> Generation:
        """Encode source and speech, settle seed and emotion, and return the frame stream."""
        source = self.encode_source(image)
        timer.tick("source encoding")
        if motion is not None:
            latents = self._check_motion(motion)
            result.emotion = "(from motion file)"
            total = latents.shape[0]
            windows: Iterator[Tensor] = iter([latents])
        else:
            audio = self.encode_audio(speech)
            if options.zero_audio:  # the "no speech" condition the model saw under condition dropout
                audio.features = torch.zeros_like(audio.features)
            timer.tick("speech features")
            total = audio.num_frames
            emotion, emotion_weight = self._emotion_condition(options, audio, total, result)
            timer.tick("emotion")
            pose = self._pose_condition(options, total, result)
            if pose is not None:
                timer.tick("head pose")
            seed = options.seed if options.seed is not None else random.SystemRandom().randrange(2**31)
            if noise is not None:
                noise, seed = self._check_noise(noise, total), None
            result.seed = seed
            windows = (
                w.latents[0]
                for w in self.iter_motion(
                    source,
                    audio,
                    emotion,
                    nfe=options.nfe,
                    solver=options.solver,
                    audio_scale=options.audio_scale,
                    emotion_scale=options.emotion_scale,
                    seed=seed,
                    noise=noise,
                    pose=pose,
                    emotion_weight=emotion_weight,
                    pose_guidance=options.pose_guidance,
                )
            )
        frames = self._frames(
            source, detail, windows, options, result, timer, total, on_motion, progress, start, finisher
        )
        return Generation(frames, result, (finisher.height, finisher.width), speech, start)

    def _check_conditions(self, options: GenerateOptions) -> None:
        """Options that need a condition the model was not trained with: one-line InputError."""
        if (options.pose_from is not None or options.still_head) and not self.config.fmt.pose_dim:
            flag = "--pose-from" if options.pose_from is not None else "--still-head"
            raise InputError(
                f"{flag} needs weights trained with the head-pose condition (fmt.pose_dim = 6); these "
                "have none (train one with model.pose_dim=6, docs/training.md)"
            )

    def _emotion_condition(
        self, options: GenerateOptions, audio: AudioEncoding, total: int, result: GenerationResult
    ) -> tuple[Tensor, Tensor | None]:
        """w_e for the clip: (1, E), or frame-wise (1, T, E) with per-frame g_e factors (1, T) or None."""
        from .emotion_timeline import EmotionTimeline, looks_like_timeline

        if options.emotion_from is not None:
            from .reference import fit_length, reference_emotion

            track = reference_emotion(options.emotion_from, self.image_size, self.fps)
            if len(track) < total:
                result.notices.append(
                    f"the emotion reference is {len(track)} frames long, the speech {total}: its last "
                    "emotion holds to the end"
                )
            result.emotion = f"from {Path(options.emotion_from).name} (frame-wise)"
            track = torch.from_numpy(fit_length(track, total))[None]
            return track.to(self.device, self.dtype), None
        if looks_like_timeline(options.emotion):
            timeline = EmotionTimeline.parse(options.emotion)
            probs, weight = timeline.frames(total, self.fps, labels=tuple(self.config.emotion.labels))
            result.emotion = timeline.describe()
            return (
                torch.from_numpy(probs)[None].to(self.device, self.dtype),
                torch.from_numpy(weight)[None].to(self.device, self.dtype),
            )
        label = options.emotion.strip().lower()
        if label == "auto" and self.model.emotion is None:
            result.notices.append("no speech-emotion model in these weights: emotion set to neutral")
        emotion = self.emotion_probs(audio, label)
        if label == "auto":
            label = f"auto ({self.config.emotion.labels[int(emotion.argmax())]})"
        result.emotion = label
        return emotion, None

    def _pose_condition(
        self, options: GenerateOptions, total: int, result: GenerationResult
    ) -> Tensor | None:
        """The pose condition of every frame (1, T, 6), the head's displacement from the portrait's
        pose, for --still-head (zeros) / --pose-from (the reference's movements); else None (null)."""
        if options.pose_from is None and not options.still_head:
            return None
        from .reference import fit_length, reference_pose, retarget_pose

        if options.still_head:
            track = np.zeros((total, self.config.fmt.pose_dim), np.float32)
        else:
            reference = reference_pose(options.pose_from, self.image_size, self.fps)
            if len(reference) < total:
                result.notices.append(
                    f"the pose reference is {len(reference)} frames long, the speech {total}: its last "
                    "pose holds to the end"
                )
            track = retarget_pose(fit_length(reference, total), options.pose_scale)
        return torch.from_numpy(track)[None].to(self.device, self.dtype)

    def _frames(
        self,
        source: SourceEncoding,
        detail: Tensor | None,
        windows: Iterator[Tensor],
        options: GenerateOptions,
        result: GenerationResult,
        timer: _StageTimer,
        total: int,
        on_motion: Callable[[Tensor], None] | None,
        progress: Callable[[int, int], None] | None,
        start: float,
        finisher: FrameFinisher,
    ) -> Iterator[np.ndarray]:
        """Window by window: sample, edit (Eq. 15), decode, convert, finish (paste back, watermark);
        (n, H, W, 3) uint8 batches."""
        sampled: list[Tensor] = []
        timer.restart()
        for latents in windows:
            timer.tick("sampling")
            if on_motion is not None:
                sampled.append(latents.cpu())
            for out in self.render(source, latents, options, detail):
                timer.tick("decoding")
                if not finisher.identity:
                    out = finisher(out)
                    timer.tick("paste-back and watermark")
                result.num_frames += out.shape[0]
                if progress is not None:
                    progress(result.num_frames, total)
                yield out
                timer.restart()
        result.seconds = time.perf_counter() - start
        if (failure := self.compile_failure()) is not None:
            result.notices.append(f"torch.compile did not work here, decoded without it ({failure})")
        if on_motion is not None:
            on_motion(torch.cat(sampled))

    def _check_motion(self, motion: Tensor) -> Tensor:
        """Saved motion latents (T, d) -> on the pipeline's device; InputError if mis-shaped."""
        latents = torch.as_tensor(motion)
        dim = self.config.fmt.latent_dim
        if latents.dim() != 2 or latents.shape[1] != dim or latents.shape[0] < 1:
            raise InputError(f"motion file must hold (frames, {dim}) latents, got {tuple(latents.shape)}")
        if not torch.isfinite(latents).all():
            raise InputError("motion file contains NaN or infinite values")
        return latents.to(self.device, self.dtype)

    def _check_noise(self, noise: Tensor, num_frames: int) -> Tensor:
        """(W * L, d) or (1, W * L, d) initial noise -> (1, W * L, d) on the pipeline's device."""
        window, dim = self.config.fmt.clip_frames, self.config.fmt.latent_dim
        expected = (1, math.ceil(num_frames / window) * window, dim)
        noise = torch.as_tensor(noise)
        if noise.dim() == 2:
            noise = noise[None]
        if tuple(noise.shape) != expected:
            raise InputError(
                f"noise must hold {expected[1]} x {dim} values for {num_frames} frames "
                f"({expected[1] // window} windows of {window}), got shape {tuple(noise.shape)}"
            )
        if not torch.isfinite(noise).all():
            raise InputError("noise contains NaN or infinite values")
        return noise.to(self.device, self.dtype)


class _StageTimer:
    """Adds the wall time since the last tick to a named stage."""

    def __init__(self, stages: dict[str, float]) -> None:
        self.stages = stages
        self.last = time.perf_counter()

    def restart(self) -> None:
        self.last = time.perf_counter()

    def tick(self, name: str) -> None:
        now = time.perf_counter()
        self.stages[name] = self.stages.get(name, 0.0) + now - self.last
        self.last = now


def frames_to_uint8(frames: Tensor) -> np.ndarray:
    """(n, 3, H, W) in [-1, 1] -> (n, H, W, 3) uint8, rounded."""
    x = ((frames.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).cpu().numpy()


def resize_frames(frames: np.ndarray, size: int) -> np.ndarray:
    """(n, H, W, 3) uint8 -> (n, size, size, 3) uint8, bicubic."""
    from PIL import Image

    resample = Image.Resampling.BICUBIC
    return np.stack([np.asarray(Image.fromarray(f).resize((size, size), resample)) for f in frames])


def _sign_in_place(path: Path, signer: Any, options: GenerateOptions, result: GenerationResult) -> None:
    """Sign a C2PA manifest into the finished MP4 at `path`; on failure the unsigned file is removed."""
    import dataclasses

    parameters = {
        k: (list(map(list, v)) if k == "motion_edits" else v) for k, v in dataclasses.asdict(options).items()
    }
    parameters.update(seed=result.seed, emotion=result.emotion, frames=result.num_frames, fps=result.fps)
    signed = path.with_name(f".{path.name}.c2pa-{os.getpid()}.mp4")
    try:
        signer.sign(path, signed, parameters)
        os.replace(signed, path)
    except BaseException:
        signed.unlink(missing_ok=True)
        path.unlink(missing_ok=True)
        raise
