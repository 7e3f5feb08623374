"""Feature cache for stage-2 training: what the frozen networks say about every frame, computed once.

For each clip of a prepared dataset, ``CACHE/<clip_id>.safetensors`` holds

* ``motion_latents`` (T, d): w_{r->D_t} = λ(D_t) Qᵀ of every frame, from the frozen stage-1 motion
  auto-encoder (FLOAT §4.1; the training targets of the flow-matching transformer);
* ``emotion`` (E,): the speech-emotion classifier's probabilities for the clip when one is given,
  else the one-hot of the clip's label (neutral when it has none);
* ``speech_hidden`` (T, layers·hidden), float16, only for the wav2vec2 front-end: the frozen
  wav2vec2's per-frame hidden states, so that only the projection is trained on top. The log-mel
  front-end trains end to end and reads ``audio.wav`` instead.

The cache folder is ``DATASET/cache/<name>`` where ``name`` identifies the frozen networks, so
caches of different stage-1 models never mix. Files are written atomically; an interrupted run
resumes by skipping clips whose file exists.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..config import EMOTION_LABELS
from ..models.audio import AudioEncoder, normalize_waveform
from ..models.emotion import SpeechEmotionClassifier, emotion_one_hot
from ..models.motion_ae import MotionAutoEncoder
from .layout import ClipMeta, clip_dir, read_audio, read_frames

__all__ = ["build_feature_cache", "cache_name", "load_clip_features"]


def cache_name(*parts: object) -> str:
    """A short stable name from what identifies the frozen networks (paths, steps, configs)."""
    return hashlib.sha1(json.dumps([str(p) for p in parts]).encode()).hexdigest()[:12]


def _frames_tensor(frames: np.ndarray, size: int) -> Tensor:
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)
    if x.shape[-1] != size:
        x = torch.nn.functional.interpolate(x, size=(size, size), mode="area")
    return x


@torch.no_grad()
def _clip_features(
    root: Path,
    meta: ClipMeta,
    autoencoder: MotionAutoEncoder,
    audio_encoder: AudioEncoder | None,
    emotion: SpeechEmotionClassifier | None,
    batch: int,
    device: torch.device,
) -> dict[str, Tensor]:
    folder = clip_dir(root, meta.clip_id)
    size = autoencoder.config.size
    latents = []
    for start in range(0, meta.num_frames, batch):
        idx = range(start, min(start + batch, meta.num_frames))
        frames = _frames_tensor(read_frames(folder, idx, meta.frame_format), size).to(device)
        latents.append(autoencoder.encode_motion(frames).float().cpu())
    out = {"motion_latents": torch.cat(latents)}
    wave = None
    if audio_encoder is not None or emotion is not None:
        samples, _ = read_audio(folder)
        wave = normalize_waveform(torch.from_numpy(samples)[None]).to(device)
    if emotion is not None:
        out["emotion"] = emotion.probabilities(wave)[0].float().cpu()
    else:
        out["emotion"] = emotion_one_hot(meta.emotion or "neutral", num_classes=len(EMOTION_LABELS))[0]
    if audio_encoder is not None and audio_encoder.config.frontend == "wav2vec2":
        padded = audio_encoder.pad_to_frames(wave, meta.num_frames)
        out["speech_hidden"] = audio_encoder.hidden_states(padded, meta.num_frames)[0].half().cpu()
    return out


def build_feature_cache(
    root: str | Path,
    clips: list[ClipMeta],
    cache_dir: str | Path,
    autoencoder: MotionAutoEncoder,
    audio_encoder: AudioEncoder | None = None,
    emotion: SpeechEmotionClassifier | None = None,
    *,
    batch: int = 16,
    device: str | torch.device = "cpu",
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Compute the cache of `clips` into `cache_dir` (skipping clips already cached). Returns it.

    The networks are used frozen, in eval mode, on `device`.
    """
    from safetensors.torch import save_file

    root, cache = Path(root), Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    device = torch.device(device)
    nets = [n for n in (autoencoder, audio_encoder, emotion) if n is not None]
    for net in nets:
        net.eval().requires_grad_(False).to(device)
    for k, meta in enumerate(clips):
        path = cache / f"{meta.clip_id}.safetensors"
        if not path.is_file():
            features = _clip_features(root, meta, autoencoder, audio_encoder, emotion, batch, device)
            tmp = path.with_name(f".{path.name}.tmp")
            save_file({k: v.contiguous() for k, v in features.items()}, str(tmp))
            os.replace(tmp, path)
        if progress is not None:
            progress(k + 1, len(clips))
    return cache


def load_clip_features(cache_dir: str | Path, clip_id: str) -> dict[str, Tensor]:
    """The cached tensors of one clip (see the module docstring)."""
    from safetensors.torch import load_file

    return load_file(str(Path(cache_dir) / f"{clip_id}.safetensors"))
