"""Streaming generation: a portrait once, speech in chunks of any size, frames out as soon as final.

`FloatPipeline.stream(image, options, settings)` returns a :class:`TalkingStream`. Push 16 kHz mono
float samples with :meth:`TalkingStream.push` as they arrive; each call returns the frames that
became final, in order, each batch with the index (and timestamp) of its first frame;
:meth:`TalkingStream.end` (or ``push(samples, end=True)``) flushes the rest.

How the windows are cut (FLOAT samples fixed windows of L current frames after L' previous ones):

* Every step samples one whole window of L frames starting at the first frame not yet committed,
  with the previous L' committed latents and their speech features as its context (the offline
  sampler's WindowContext), through the same `MotionSampler.sample_window` as offline generation.
* While speech keeps coming, a step runs once the speech reaches `hop_frames + lookahead_frames`
  frames past the committed ones (`first_hop_frames` instead of `hop_frames` for the first step).
  Speech beyond what has arrived is the last frame's features repeated (what the offline sampler
  does past the clip's end). Only the first `hop_frames` frames
  are committed (decoded, returned); the rest of the window is sampled again at the next step
  with more speech. When the speech is further ahead (at least L + lookahead frames), the whole
  window is committed at once, so a stream that is fed faster than real time catches up in big steps.
* After the end of speech, the remaining frames are committed window by window, L at a time.

So the delay from a sound to its frame is about hop + lookahead (plus the compute of one step),
and memory is flat: the stream keeps the speech of the last few seconds (the encoder's left context
and the window), never the whole.

Speech features: the samples are normalised with the running mean and variance of all the speech
heard so far (offline generation uses those of the whole clip; they agree once the speech is
complete), and the window's features are computed from `context_seconds` of earlier speech (more
than the encoder's receptive field) to the newest sample.

Given the whole speech at once (``push(all_samples, end=True)``), a stream computes exactly what
offline generation computes for clips up to the pipeline's speech chunk length (20 s), with the
same `decode_batch_size` (e.g. L for both) and the same nfe (`StreamSettings(nfe=None)`): the
same features, the same windows, the same noise (one draw of L x d per window from the seed's
generator, in order; a stream that re-samples a window draws again for each step).

Decoding: a step's committed frames go through the decoder in one batch unless the options set
`decode_batch_size` (offline CPU decoding defaults to one frame per call, bit-identical to the
release; batches agree with it up to float rounding).

Emotion: a label, or "auto": the speech-emotion classifier on the speech heard so far, re-estimated
every `emotion_every_seconds` (neutral for weights without a classifier). Emotion timelines and
`--emotion-from` / `--pose-from` need the whole clip and are refused; `still_head` works.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from .errors import InputError
from .flow.sampler import WindowContext
from .options import GenerateOptions

__all__ = ["StreamFrames", "StreamSettings", "TalkingStream"]


@dataclass(frozen=True)
class StreamSettings:
    """How a stream cuts its windows (module docstring).

    Attributes:
        hop_frames: frames committed per step while speech keeps coming (25 fps: 12 = 480 ms).
        lookahead_frames: speech frames past the committed ones needed before committing them. The
            default 12 (480 ms) covers the log-mel encoder's right receptive field (7 frames) and
            most of the transformer's (4 layers of ±2 frames); with 4, lip sync on held-out clips
            fell from 0.78 to 0.61 (docs/benchmarks.md, "Streaming").
        first_hop_frames: the first step commits this many frames (at most hop_frames), so that the
            first frame comes after first_hop + lookahead frames of speech (0.64 s) instead of
            hop + lookahead (0.96 s).
        nfe: velocity evaluations per window in a stream, which samples a window every hop rather
            than every L frames; 5 by default (on the demo model NFE 5 and 10 give the same lip sync
            and E-/P-FID, docs/evaluation.md; on this CPU it is what keeps a stream real-time).
            None: the generation options' nfe.
        context_seconds: earlier speech given to the speech encoder at each step.
        emotion_every_seconds: how often "auto" emotion is re-estimated from the speech so far.
    """

    hop_frames: int = 12
    lookahead_frames: int = 12
    first_hop_frames: int = 4
    nfe: int | None = 5
    context_seconds: float = 2.0
    emotion_every_seconds: float = 2.0

    def validate(self) -> StreamSettings:
        """InputError (one line) unless hop >= 1 (more than the window L commits L), lookahead >= 0."""
        if isinstance(self.hop_frames, bool) or not isinstance(self.hop_frames, int):
            raise InputError(f"hop_frames must be an integer, got {self.hop_frames!r}")
        if self.hop_frames < 1:
            raise InputError(f"hop_frames must be >= 1, got {self.hop_frames}")
        if isinstance(self.lookahead_frames, bool) or not isinstance(self.lookahead_frames, int):
            raise InputError(f"lookahead_frames must be an integer, got {self.lookahead_frames!r}")
        if isinstance(self.first_hop_frames, bool) or not isinstance(self.first_hop_frames, int):
            raise InputError(f"first_hop_frames must be an integer, got {self.first_hop_frames!r}")
        if self.first_hop_frames < 1:
            raise InputError(f"first_hop_frames must be >= 1, got {self.first_hop_frames}")
        if self.lookahead_frames < 0:
            raise InputError(f"lookahead_frames must be >= 0, got {self.lookahead_frames}")
        if self.nfe is not None and (
            isinstance(self.nfe, bool) or not isinstance(self.nfe, int) or self.nfe < 1
        ):
            raise InputError(f"nfe must be a positive integer or None, got {self.nfe!r}")
        if not (math.isfinite(self.context_seconds) and self.context_seconds >= 0):
            raise InputError(f"context_seconds must be >= 0, got {self.context_seconds}")
        if not (math.isfinite(self.emotion_every_seconds) and self.emotion_every_seconds > 0):
            raise InputError(f"emotion_every_seconds must be > 0, got {self.emotion_every_seconds}")
        return self


@dataclass
class StreamFrames:
    """Frames that became final: (n, H, W, 3) uint8, the first being frame `start` of the stream."""

    frames: np.ndarray
    start: int
    fps: float

    @property
    def timestamps(self) -> np.ndarray:
        """(n,) seconds from the start of the speech to each frame's start."""
        return (self.start + np.arange(len(self.frames))) / self.fps


class _RunningMoments:
    """Mean and (biased) variance of all samples pushed, exact in float64 (Chan et al. merging)."""

    def __init__(self) -> None:
        self.count, self.mean, self.m2 = 0, 0.0, 0.0

    def add(self, x: np.ndarray) -> None:
        if x.size == 0:
            return
        x = x.astype(np.float64)
        n, mean = x.size, float(x.mean())
        m2 = float(((x - mean) ** 2).sum())
        total = self.count + n
        delta = mean - self.mean
        self.mean += delta * n / total
        self.m2 += m2 + delta * delta * self.count * n / total
        self.count = total

    @property
    def var(self) -> float:
        return self.m2 / self.count if self.count else 0.0


class TalkingStream:
    """One live generation (module docstring). Made by `FloatPipeline.stream`; not thread-safe."""

    def __init__(self, pipe, image, options: GenerateOptions, settings: StreamSettings) -> None:
        cfg = pipe.config.fmt
        self.pipe, self.options = pipe, options
        self.settings = settings.validate()
        if options.emotion_from is not None or options.pose_from is not None:
            raise InputError(
                "a stream cannot use --emotion-from / --pose-from (they need the whole clip); "
                "use floatalk generate, or an emotion label and --still-head"
            )
        from .emotion_timeline import looks_like_timeline

        if looks_like_timeline(options.emotion):
            raise InputError(
                "a stream takes one emotion label or auto, not a timeline; "
                "use floatalk generate for timelines"
            )
        if options.paste_back:
            raise InputError("a stream sends the square face crop; --paste-back is for floatalk generate")
        pipe._check_conditions(options)
        self.window, self.lp = cfg.clip_frames, cfg.context_frames
        self.fps, self.sample_rate = pipe.fps, pipe.sample_rate
        encoder = pipe.model.audio_encoder
        self.spf = round(encoder.samples_per_frame)  # 640 at 16 kHz and 25 fps
        self.context_frames = max(round(settings.context_seconds * self.fps), self.lp)
        image_tensor, self.detail, _ = pipe._prepare_portraits(image, options, pipe._detail_size(options))
        self.source = pipe.encode_source(image_tensor)
        self.size = pipe.output_size(options)
        nfe = options.nfe if settings.nfe is None else settings.nfe
        if options.solver == "midpoint" and nfe % 2:
            raise InputError(
                f"the midpoint solver needs an even nfe; the stream's is {nfe} (StreamSettings.nfe)"
            )
        self.nfe = nfe
        self.sampler = pipe.sampler(
            nfe, options.solver, options.audio_scale, options.emotion_scale, options.pose_guidance
        )
        self.velocity = pipe.velocity(self.sampler)
        seed = options.seed if options.seed is not None else random.SystemRandom().randrange(2**31)
        self.seed = seed
        self.generator = torch.Generator().manual_seed(int(seed))
        self.moments = _RunningMoments()
        self.buffer = np.zeros(0, np.float32)  # samples from self.buffer_start on
        self.buffer_start = 0
        self.received = 0  # samples pushed in all
        self.committed = 0  # frames final
        self.ended = False
        self.context: WindowContext | None = None
        self.label = options.emotion.strip().lower()
        self._emotion: Tensor | None = None
        self._emotion_at = -math.inf  # samples heard when "auto" was last estimated
        self.notices: list[str] = []
        if self.label == "auto" and pipe.model.emotion is None:
            self.notices.append("no speech-emotion model in these weights: emotion set to neutral")
        self._features: tuple[int, int, Tensor] | None = None  # after the end: (first, stop, features)

    # ------------------------------------------------------------------------------------------ input

    def push(self, samples, end: bool = False) -> list[StreamFrames]:
        """Add speech (mono float samples at the model's rate, any length, may be empty); the frames
        that became final. `end=True` also ends the speech and flushes every remaining frame."""
        if self.ended:
            raise InputError("this stream has ended; start a new one for more speech")
        x = (
            np.asarray(samples, dtype=np.float32).reshape(-1)
            if samples is not None
            else np.zeros(0, np.float32)
        )
        if x.size and not np.isfinite(x).all():
            raise InputError("speech samples contain NaN or infinite values")
        if x.size:
            self.moments.add(x)
            self.buffer = np.concatenate([self.buffer, x])
            self.received += x.size
        if end:
            if self.received == 0:
                raise InputError("the stream ended without any speech; push some samples first")
            self.ended = True
        out = []
        while (n := self._ready()) > 0:
            out.append(self._step(n))
        return out

    def end(self) -> list[StreamFrames]:
        """End of speech: every remaining frame."""
        return self.push(None, end=True)

    @property
    def total_frames(self) -> int | None:
        """Frames of the whole stream once ended (ceil of the speech length), else None."""
        if not self.ended:
            return None
        return math.ceil(self.received * self.fps / self.sample_rate)

    @property
    def frames_done(self) -> int:
        return self.committed

    # ---------------------------------------------------------------------------------------- stepping

    def _ready(self) -> int:
        """How many frames the next step commits (0: wait for more speech)."""
        heard = self.received // self.spf  # whole frames of speech
        if self.ended:
            return min(self.window, self.total_frames - self.committed)
        s, hop = self.settings, min(self.settings.hop_frames, self.window)
        if self.committed == 0:
            hop = min(hop, s.first_hop_frames)
        if heard - self.committed >= self.window + s.lookahead_frames:
            return self.window
        if heard - self.committed >= hop + s.lookahead_frames:
            return hop
        return 0

    def _normalised(self, first_sample: int, stop_sample: int) -> Tensor:
        lo, hi = first_sample - self.buffer_start, stop_sample - self.buffer_start
        assert lo >= 0, (first_sample, self.buffer_start)
        x = self.buffer[lo:hi].astype(np.float64)
        scale = 1.0 / math.sqrt(self.moments.var + 1e-7)  # models.audio.normalize_waveform, running
        return torch.from_numpy(((x - self.moments.mean) * scale).astype(np.float32))[None]

    def _encode(self, first: int, stop: int) -> Tensor:
        """Features of frames first .. stop - 1 from the speech heard, (1, stop - first, d_a)."""
        pipe = self.pipe
        end_sample = min(self.received, stop * self.spf)
        segment = _fit(self._normalised(first * self.spf, end_sample), pipe._min_samples())
        with torch.inference_mode():
            return pipe.model.audio_encoder(segment.to(pipe.device, pipe.dtype), stop - first)

    def _window_features(self, start: int) -> Tensor:
        """Speech features from frame `start` on, at least one frame, (1, n, d_a); the window takes
        its first L (the last repeated past the end of what was heard)."""
        first = max(0, start - self.context_frames)
        if not self.ended:
            heard = self.received // self.spf
            return self._encode(first, min(heard, start + self.window + self.context_frames))[
                :, start - first :
            ]
        total = self.total_frames
        need = start + min(self.window, total - start)  # the window's last real frame, exclusive
        if self._features is None or not (self._features[0] <= start and need <= self._features[1]):
            chunk = max(self.window, round(self.pipe.speech_chunk_seconds * self.fps))
            # the rest at once (from frame 0: exactly as offline encodes it); long speech a window
            # and its context at a time (flat memory)
            short = total - first <= chunk
            stop = total if short else min(total, start + self.window + self.context_frames)
            self._features = (first, stop, self._encode(first, stop))
        first, _, feats = self._features
        return feats[:, start - first :]

    def _emotion_now(self) -> Tensor:
        pipe = self.pipe
        if self.label != "auto" or pipe.model.emotion is None:
            if self._emotion is None:
                label = "neutral" if self.label == "auto" else self.label
                self._emotion = pipe.emotion_probs(None, label)  # type: ignore[arg-type]
            return self._emotion
        every = self.settings.emotion_every_seconds * self.sample_rate
        stale = self.received - self._emotion_at >= every or (self.ended and self._emotion_at < self.received)
        if self._emotion is None or stale:
            # the classifier on the speech heard so far (the buffer keeps the last seconds of it)
            heard = self._normalised(self.buffer_start, self.received)
            with torch.inference_mode():
                self._emotion = pipe.model.emotion.probabilities(
                    _fit(heard, pipe._min_samples()).to(pipe.device)
                )
            self._emotion_at = self.received
        return self._emotion

    def _step(self, commit: int) -> StreamFrames:
        pipe, start, length, lp = self.pipe, self.committed, self.window, self.lp
        feats = self._window_features(start)  # (1, >= 1, d_a)
        audio, _ = self.sampler.window_audio(feats, 0)
        if self.context is None:
            self.context = WindowContext.empty(audio, pipe.config.fmt.latent_dim, lp)
        x0 = torch.randn(1, length, pipe.config.fmt.latent_dim, generator=self.generator)
        x0 = x0.to(pipe.device, pipe.dtype)
        pose = None
        if pipe.config.fmt.pose_dim and self.options.still_head:
            pose = audio.new_zeros(1, lp + length, pipe.config.fmt.pose_dim)
        with torch.inference_mode():
            x1, _ = self.sampler.sample_window(
                self.velocity,
                audio,
                self.source.source_motion,
                self._emotion_now(),
                self.context,
                x0,
                pose=pose,
            )
        kept = x1[:, :commit]
        if lp:  # the next window's previous frames: the last L' committed latents and their features
            motion = torch.cat([self.context.prev_motion, kept], dim=1)[:, -lp:]
            speech = torch.cat([self.context.prev_audio, audio[:, :commit]], dim=1)[:, -lp:]
            self.context = WindowContext(motion, speech)
        self.committed += commit
        self._forget()
        options = self.options
        if options.decode_batch_size is None:  # a step's frames in one decoder call (3x faster on CPU)
            options = options.replace(decode_batch_size=commit)
        batches = list(pipe.render(self.source, kept[0], options, self.detail))
        return StreamFrames(np.concatenate(batches), start, self.fps)

    def _forget(self) -> None:
        """Drop speech older than the encoder's left context of the next window (flat memory)."""
        keep_from = max(0, self.committed - self.context_frames) * self.spf
        if self.label == "auto" and self.pipe.model.emotion is not None:  # "auto" hears the last 10 s
            keep_from = min(keep_from, max(0, self.received - 10 * self.sample_rate))
        if keep_from > self.buffer_start:
            self.buffer = self.buffer[keep_from - self.buffer_start :].copy()
            self.buffer_start = keep_from


def _fit(segment: Tensor, min_samples: int) -> Tensor:
    """Pad a (1, n) segment to the encoders' fewest samples by repeating its last sample."""
    if segment.shape[-1] >= min_samples:
        return segment
    if segment.shape[-1] == 0:
        return segment.new_zeros(1, min_samples)
    return torch.nn.functional.pad(segment[:, None], (0, min_samples - segment.shape[-1]), mode="replicate")[
        :, 0
    ]
