"""Generation options and the end-to-end job: portrait + speech files -> MP4 (or frames).

`GenerateOptions` holds every user control of the CLI and the Python API, validated up front so a
bad value fails before any heavy work. `generate_frames` yields frames as they are decoded;
`generate_video` streams them into an MP4 that appears only once complete.
"""

from __future__ import annotations

import dataclasses
import math
import os
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from .errors import InputError
from .flow.solvers import SOLVERS

if TYPE_CHECKING:
    from .pipeline import FloatPipeline

__all__ = ["GenerateOptions", "GenerationResult", "generate_frames", "generate_video", "resolve_weights"]

WEIGHTS_ENV = "FLOATALK_WEIGHTS"
DEMO_WEIGHTS = Path(__file__).parent / "assets" / "demo_weights"
CROP_FILLS = ("black", "edge", "reflect")


@dataclass(frozen=True)
class GenerateOptions:
    """Every control of `floatalk generate` (and of FloatPipeline.generate / write_video)."""

    emotion: str = "auto"  # "auto" = predicted from speech; a label redirects the emotion
    emotion_scale: float = 1.0  # g_e: emotion guidance (paper suggests up to 5-10 for stronger emotion)
    audio_scale: float = 2.0  # g_a: audio guidance
    nfe: int = 10  # velocity evaluations per 2 s window (the original's --nfe 10 is nfe 9 here)
    solver: str = "euler"  # "euler" or "midpoint" (midpoint needs an even nfe)
    seed: int | None = None  # None = a fresh random seed (reported, so the run can be repeated)
    crop: bool = True  # detect the face and crop the FLOAT portrait around it
    face_index: int | None = None  # which face (largest first); None = the largest
    crop_fill: str = "black"  # padding outside the photo: black (original), edge, reflect
    motion_edits: tuple[tuple[int, float], ...] = ()  # lambda-control: (direction k, delta) pairs
    motion_scale: float = 1.0  # amplitude of generated motion around the source pose
    decode_batch_size: int | None = None  # frames per decoder call (default: 1 on CPU, 8 elsewhere)
    zero_audio: bool = False  # ablation: sample with the null speech condition (the video keeps its sound)
    output_size: int | None = None  # resize the frames to this side (bicubic); None = the model's size

    def validate(self) -> GenerateOptions:
        """Raise InputError (one line) for any out-of-range value; returns self."""
        from .models.emotion import Emotion

        if self.emotion.strip().lower() != "auto":
            try:
                Emotion.parse(self.emotion)
            except ValueError as exc:
                raise InputError(f"{exc} (or auto)") from None
        for name in ("emotion_scale", "audio_scale", "motion_scale"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise InputError(f"{name.replace('_', '-')} must be a finite number >= 0, got {value!r}")
        if not isinstance(self.nfe, int) or self.nfe < 1:
            raise InputError(f"nfe must be an integer >= 1, got {self.nfe!r}")
        if self.solver not in SOLVERS:
            raise InputError(f"unknown solver {self.solver!r}; choose one of {', '.join(SOLVERS)}")
        if self.solver == "midpoint" and self.nfe % 2:
            raise InputError(
                f"the midpoint solver uses 2 evaluations per step: give an even nfe, not {self.nfe}"
            )
        if self.face_index is not None and self.face_index < 0:
            raise InputError(f"face-index must be >= 0, got {self.face_index}")
        if self.crop_fill not in CROP_FILLS:
            raise InputError(f"crop fill must be one of {', '.join(CROP_FILLS)}, got {self.crop_fill!r}")
        if self.decode_batch_size is not None and self.decode_batch_size < 1:
            raise InputError(f"decode batch size must be >= 1, got {self.decode_batch_size}")
        if self.output_size is not None and (
            isinstance(self.output_size, bool)
            or not isinstance(self.output_size, int)
            or not 16 <= self.output_size <= 4096
        ):
            raise InputError(f"size must be an integer from 16 to 4096, got {self.output_size!r}")
        for k, delta in self.motion_edits:
            if k < 0 or not math.isfinite(delta):
                raise InputError(f"edit-motion needs K >= 0 and a finite DELTA, got {k}={delta}")
        return self


@dataclass
class GenerationResult:
    """What a finished job reports."""

    path: Path | None
    num_frames: int
    seconds: float
    seed: int | None
    emotion: str
    stage_seconds: dict[str, float]
    notice: str | None = None  # something the user should know (e.g. an emotion fallback)

    def summary(self) -> str:
        fps = self.num_frames / self.seconds if self.seconds > 0 else float("inf")
        where = f"wrote {self.path}: " if self.path else ""
        stages = ", ".join(f"{k} {v:.1f}s" for k, v in self.stage_seconds.items())
        seed = f", seed {self.seed}" if self.seed is not None else ""
        notice = f"\nnote: {self.notice}" if self.notice else ""
        return (
            f"{where}{self.num_frames} frames ({self.num_frames / 25:.2f} s) in {self.seconds:.1f} s "
            f"({fps:.2f} frames/s), emotion {self.emotion}{seed} [{stages}]{notice}"
        )


def resolve_weights(weights: str | os.PathLike | None) -> Path:
    """--weights, else $FLOATALK_WEIGHTS, else the demo weights shipped with the package."""
    if weights:
        return Path(weights)
    if os.environ.get(WEIGHTS_ENV):
        return Path(os.environ[WEIGHTS_ENV])
    if (DEMO_WEIGHTS / "floatalk.json").is_file():
        return DEMO_WEIGHTS
    raise InputError(
        "no model weights: pass --weights DIR or set FLOATALK_WEIGHTS; get them by converting the original "
        "release (floatalk convert-original --checkpoint float.pth ... --out DIR) or by training"
    )


# --------------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------------


def prepare_image(image, size: int, options: GenerateOptions) -> torch.Tensor:
    """Path or (H, W, 3) uint8 array -> (1, 3, size, size) in [-1, 1], face-cropped unless crop=False.

    A (1, 3, size, size) tensor is taken as already prepared.
    """
    from .io.image import image_to_tensor, load_image

    if isinstance(image, torch.Tensor):
        if tuple(image.shape) != (1, 3, size, size):
            raise InputError(
                f"image tensor must be (1, 3, {size}, {size}) in [-1, 1], got {tuple(image.shape)}"
            )
        return image

    array = load_image(image) if isinstance(image, (str, os.PathLike)) else np.asarray(image)
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3:
        raise InputError(f"image array must be (H, W, 3) uint8 RGB, got {array.dtype} {array.shape}")
    if options.crop:
        from .face import crop_portrait

        array = crop_portrait(array, size=size, face_index=options.face_index, fill=options.crop_fill)
    return image_to_tensor(array, size)


def prepare_audio(audio, sample_rate: int) -> np.ndarray:
    """Path or 1-D float array (already at `sample_rate`) -> mono float32 waveform."""
    from .io.audio import load_audio

    if isinstance(audio, (str, os.PathLike)):
        return load_audio(audio, sample_rate)
    wave = np.asarray(audio, dtype=np.float32).reshape(-1)
    if wave.size == 0:
        raise InputError("audio contains no samples; give a non-empty speech recording")
    if not np.isfinite(wave).all():
        raise InputError("audio contains NaN or infinite samples")
    return wave


# --------------------------------------------------------------------------------------------------
# The job
# --------------------------------------------------------------------------------------------------


def _to_uint8(frames: torch.Tensor) -> np.ndarray:
    """(n, 3, H, W) in [-1, 1] -> (n, H, W, 3) uint8, rounded."""
    x = ((frames.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).cpu().numpy()


def generate_frames(
    pipe: FloatPipeline,
    image,
    audio,
    options: GenerateOptions | None = None,
    *,
    motion: torch.Tensor | None = None,
    noise: torch.Tensor | None = None,
    on_motion: Callable[[torch.Tensor], None] | None = None,
    progress: Callable[[int, int], None] | None = None,
    report: dict | None = None,
) -> Iterator[np.ndarray]:
    """Yield (n, H, W, 3) uint8 frames as they are decoded, window by window (flat memory).

    Args:
        pipe: the pipeline.
        image: portrait path or (H, W, 3) uint8 RGB array.
        audio: speech path or mono float array at the pipeline's sample rate.
        options: GenerateOptions (validated here).
        motion: previously saved motion latents (T, d) to render instead of sampling.
        noise: the initial noise of every window, (W * L, d) or (1, W * L, d) with W = ceil(T / L)
            windows of L frames, instead of noise drawn from the seed (to reproduce another
            implementation's run exactly).
        on_motion: receives the full sampled latents (T, d) once sampling is complete.
        progress: called with (frames done, frames total).
        report: filled with "seed", "emotion", "num_frames" and per-stage seconds.
    """
    options = (options or GenerateOptions()).validate()
    report = report if report is not None else {}
    stages: dict[str, float] = report.setdefault("stage_seconds", {})

    def tick(name: str, start: float) -> float:
        now = time.perf_counter()
        stages[name] = stages.get(name, 0.0) + now - start
        return now

    t = time.perf_counter()
    image_tensor = prepare_image(image, pipe.image_size, options)
    t = tick("crop", t)
    wave = prepare_audio(audio, pipe.sample_rate)
    t = tick("audio load", t)
    source = pipe.encode_source(image_tensor)
    t = tick("source encoding", t)
    edits = dict(options.motion_edits)
    if motion is not None:
        latents_all = torch.as_tensor(motion, dtype=pipe.dtype, device=pipe.device)
        if latents_all.dim() != 2 or latents_all.shape[1] != pipe.config.fmt.latent_dim:
            raise InputError(
                f"motion file must hold (frames, {pipe.config.fmt.latent_dim}) latents, "
                f"got {tuple(latents_all.shape)}"
            )
        report.update(seed=None, emotion="(from motion file)", num_frames=latents_all.shape[0])
        windows = iter([latents_all[None]])
        total = latents_all.shape[0]
    else:
        audio_enc = pipe.encode_audio(wave)
        if options.zero_audio:  # the "no speech" condition the model saw under condition dropout
            audio_enc = dataclasses.replace(audio_enc, features=torch.zeros_like(audio_enc.features))
        t = tick("speech features", t)
        emotion_label = options.emotion.strip().lower()
        if emotion_label == "auto" and pipe.model.emotion is None:
            report["notice"] = "no speech-emotion model in these weights: emotion set to neutral"
        emotion = pipe.emotion_probs(audio_enc, emotion_label)
        if emotion_label == "auto":
            from .config import EMOTION_LABELS

            emotion_label = f"auto ({EMOTION_LABELS[int(emotion.argmax())]})"
        t = tick("emotion", t)
        seed = options.seed if options.seed is not None else random.SystemRandom().randrange(2**31)
        total = audio_enc.num_frames
        if noise is not None:
            noise = _check_noise(noise, total, pipe)
            seed = None
        report.update(seed=seed, emotion=emotion_label, num_frames=total)
        windows = (
            w.latents
            for w in pipe.iter_motion(
                source,
                audio_enc,
                emotion,
                nfe=options.nfe,
                solver=options.solver,
                audio_scale=options.audio_scale,
                emotion_scale=options.emotion_scale,
                seed=seed,
                noise=noise,
            )
        )
    done = 0
    sampled = []
    while True:
        t = time.perf_counter()
        latents = next(windows, None)
        if latents is None:
            break
        t = tick("sampling", t)
        if on_motion is not None:
            sampled.append(latents[0].cpu())
        latents = pipe.edit_motion(latents[0], source, edits, options.motion_scale)
        for frames in pipe.iter_frames(source, latents, options.decode_batch_size):
            out = _to_uint8(frames)
            if options.output_size is not None and options.output_size != out.shape[1]:
                out = _resize_frames(out, options.output_size)
            t = tick("decoding", t)
            done += out.shape[0]
            if progress is not None:
                progress(done, total)
            yield out
            t = time.perf_counter()
    if on_motion is not None:
        on_motion(torch.cat(sampled))


def _resize_frames(frames: np.ndarray, size: int) -> np.ndarray:
    """(n, H, W, 3) uint8 -> (n, size, size, 3) uint8, bicubic."""
    from PIL import Image

    resample = Image.Resampling.BICUBIC
    return np.stack([np.asarray(Image.fromarray(f).resize((size, size), resample)) for f in frames])


def _check_noise(noise, num_frames: int, pipe: FloatPipeline) -> torch.Tensor:
    """(W * L, d) or (1, W * L, d) initial noise -> (1, W * L, d) on the pipeline's device."""
    window, dim = pipe.config.fmt.clip_frames, pipe.config.fmt.latent_dim
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
    return noise.to(pipe.device, pipe.dtype)


def generate_video(
    pipe: FloatPipeline,
    image,
    audio,
    output: str | os.PathLike,
    options: GenerateOptions | None = None,
    *,
    motion: torch.Tensor | None = None,
    noise: torch.Tensor | None = None,
    save_motion: str | os.PathLike | None = None,
    progress: Callable[[int, int], None] | None = None,
    crf: float = 18,
) -> GenerationResult:
    """Write the talking video to `output` (H.264 + AAC MP4), created only once complete."""
    from .io.video import VideoWriter, check_output_path

    options = (options or GenerateOptions()).validate()
    check_output_path(output)
    if save_motion is not None:
        check_motion_path(save_motion)
    start = time.perf_counter()
    # Read and check both inputs before the output file is opened.
    sound = prepare_audio(audio, pipe.sample_rate)
    t_audio = time.perf_counter()
    image = prepare_image(image, pipe.image_size, options)
    report: dict = {"stage_seconds": {"audio load": t_audio - start, "crop": time.perf_counter() - t_audio}}
    size = options.output_size or pipe.image_size
    captured: list[torch.Tensor] = []
    frames = generate_frames(
        pipe,
        image,
        sound,
        options,
        motion=motion,
        noise=noise,
        on_motion=captured.append if save_motion else None,
        progress=progress,
        report=report,
    )
    count = 0
    with VideoWriter(
        output, size, size, fps=pipe.fps, audio=sound, sample_rate=pipe.sample_rate, crf=crf
    ) as writer:
        for batch in frames:
            t = time.perf_counter()
            writer.write(batch)
            count += batch.shape[0]
            report["stage_seconds"]["mp4 encoding"] = report["stage_seconds"].get("mp4 encoding", 0.0) + (
                time.perf_counter() - t
            )
    if save_motion is not None and captured:
        save_motion_file(save_motion, captured[0], fps=pipe.fps, seed=report.get("seed"))
    return GenerationResult(
        Path(output),
        count,
        time.perf_counter() - start,
        report.get("seed"),
        report.get("emotion", ""),
        report["stage_seconds"],
        report.get("notice"),
    )


# --------------------------------------------------------------------------------------------------
# Motion files
# --------------------------------------------------------------------------------------------------


def check_motion_path(path: str | os.PathLike) -> None:
    p = Path(path)
    if p.suffix != ".safetensors":
        raise InputError(f"motion file {str(p)!r} must end in .safetensors")
    if not p.parent.is_dir():
        raise InputError(f"directory of motion file {str(p)!r} does not exist; create it first")


def save_motion_file(path: str | os.PathLike, latents: torch.Tensor, fps: float, seed: int | None) -> None:
    """Write sampled motion latents (T, d) as safetensors, atomically."""
    from safetensors.torch import save_file

    p = Path(path)
    tmp = p.with_name(f".{p.name}.tmp")
    meta = {"format": "floatalk-motion", "fps": str(fps), "seed": "" if seed is None else str(seed)}
    save_file({"motion_latents": latents.float().contiguous()}, str(tmp), metadata=meta)
    os.replace(tmp, p)


def load_motion_file(path: str | os.PathLike) -> torch.Tensor:
    """Motion latents (T, d) from a file written by --save-motion."""
    return _load_tensor_file(path, "motion_latents", "motion file", "write it with --save-motion")


def load_noise_file(path: str | os.PathLike) -> torch.Tensor:
    """Initial noise (W * L, d) or (1, W * L, d) from a .safetensors file with a tensor named "noise"."""
    return _load_tensor_file(path, "noise", "noise file", 'save a tensor named "noise" with safetensors')


def _load_tensor_file(path: str | os.PathLike, key: str, kind: str, hint: str) -> torch.Tensor:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    p = Path(path)
    if not p.is_file():
        raise InputError(f"{kind} {str(p)!r} does not exist")
    try:
        data = load_file(str(p))
    except (SafetensorError, OSError, ValueError) as exc:
        raise InputError(f"{kind} {str(p)!r} is not a valid safetensors file ({exc})") from None
    if key not in data:
        raise InputError(f"{kind} {str(p)!r} has no tensor named {key!r}; {hint}")
    return data[key]
