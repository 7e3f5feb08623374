"""LSE-D / LSE-C: lip-sync error distance and confidence of SyncNet, under Wav2Lip's protocol.

FLOAT (§5.3) reports the lip-sync measures of Wav2Lip (Prajwal et al. 2020), which score a video with
the pretrained SyncNet of Chung & Zisserman (2016) as released in ``joonson/syncnet_python``
(``data/syncnet_v2.model``). SyncNet embeds 0.2 s of sound and the five video frames shown during it
into one 1024-d space where matching pairs lie close. For every video position the distance to the
sound at each shift within ±15 frames is taken; averaged over the clip this gives one mean distance
per shift. LSE-D is the smallest mean distance (lower is better), LSE-C the median of the mean
distances minus that smallest one (higher is better); the shift of the minimum is the
audio-visual offset. The reported numbers are the means over clips (:func:`lse`).

Network (:class:`SyncNet`, written here from its description with the names of the published file,
so it loads strictly). Batch norms use their running statistics (eps 1e-5); every convolution has a
bias; "c k/s/p" below is kernel / stride / padding.

* sound, ``netcnnaud`` (2-D, input (n, 1, 13, 20): 13 MFCCs x 20 steps): conv 64 3/1/1, max pool
  1x1 (a no-op kept for the indices), conv 192 3/1/1, max pool 3 with strides (1, 2), convs 384,
  256, 256 3/1/1, max pool 3/2, conv 512 with kernel (5, 4) and no padding -> 512 x 1 x 1; each
  conv is followed by BN and ReLU. ``netfcaud``: linear 512-512, BN, ReLU, linear 512-1024.
* picture, ``netcnnlip`` (3-D, input (n, 3, 5, 224, 224): 5 frames of 3 channels): conv 96 with
  kernel (5, 7, 7), strides (1, 2, 2), no padding (this one folds the 5 frames into one), max pool
  (1, 3, 3)/(1, 2, 2), conv 256 (1, 5, 5)/(1, 2, 2)/(0, 1, 1), max pool (1, 3, 3)/(1, 2, 2)/(0, 1, 1),
  convs 256, 256, 256 (1, 3, 3)/1/(0, 1, 1), max pool (1, 3, 3)/(1, 2, 2), conv 512 (1, 6, 6) ->
  512 x 1 x 1 x 1 (224 -> 109 -> 54 -> 26 -> 13 -> 13 -> 6 -> 1); each conv followed by BN and ReLU.
  ``netfclip``: as ``netfcaud``.

The outputs are not normalised; the distance is PyTorch's ``pairwise_distance`` (Euclidean, with
1e-6 added to every component of the difference).

Preprocessing, as the original's ``evaluate``:

* sound: mono 16 kHz 16-bit PCM (the original has ffmpeg write ``pcm_s16le``); float sound in
  [-1, 1] is scaled by 32768 and rounded to those integer values (the scale matters: the MFCCs'
  first coefficient is the log frame energy). MFCCs from ``python_speech_features.mfcc`` with its
  defaults: 25 ms windows every 10 ms (100 steps a second; 4 steps per video frame at 25 fps), 26 mel
  filters, 512-point FFT, pre-emphasis 0.97, cepstral lifter 22, 13 coefficients, the first replaced
  by the log frame energy. No normalisation.
* picture: 25 fps. Every frame resized to 224x224 (bilinear without anti-aliasing, rounded to
  integers: OpenCV's ``INTER_LINEAR`` on uint8 to within one grey level), channels in OpenCV's BGR order,
  values 0-255 as floats, nothing subtracted. The clip is cut to ``L = min(frames, samples // 640)``
  frames and windows start at frames ``0 .. L - 6`` (the original leaves out the last possible
  window): window ``i`` holds frames ``i .. i + 4`` and MFCC steps ``4 i .. 4 i + 19``. A clip needs at
  least 6 frames and 0.24 s of sound.
* the shift search (:func:`offset_search`): the sound embeddings are padded with 15 zero vectors at
  both ends and, for each window ``i`` and shift ``k`` in -15..15, the picture of window ``i`` is
  compared with the sound of window ``i - k`` (a zero vector where that is outside the clip, so a
  short clip's shifts far from 0 carry a penalty). Offset ``k > 0``: the mouth moves ``k`` frames
  after the sound (the picture lags), the convention of :mod:`floatalk.evaluate.lipsync`. Ties (only
  for degenerate features) go to the largest shift, as the original's search order gives.

Where this differs from the published pipeline. ``syncnet_python`` on a raw video first finds and
tracks the face with S3FD and crops it (a square of 2.8 half-box sides, shifted down to take in the
chin) to 224x224; Wav2Lip's LRS protocol (``calculate_scores_LRS.py``) skips that and resizes every
frame of the generated video, already a face crop, to 224x224. FLOAT's output is the aligned face,
so here the whole frame is resized, as in Wav2Lip's LRS protocol. Both originals read the frames
back from JPEG files written by ffmpeg and the sound through ffmpeg; here frames and sound come
decoded, so values differ by the JPEG loss (small). Numbers from the published file and this code
are comparable with each other and close to, not identical with, published LSE values.

The weights come from a local file (:data:`SYNCNET`; never downloaded): ``syncnet_v2.model``, the
network's plain state dict (the original loads it as a table of names to tensors and copies each into
its network); it is read with ``torch.load(weights_only=True)``. Floating tensors are cast to
float32; the batch norms' ``num_batches_tracked`` counters (absent from files saved before PyTorch
0.4.1) are optional. No hash is published for the file.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError
from .backbones import BackboneFile, load_checked, load_state_dict

__all__ = [
    "AUDIO_RATE",
    "EMBEDDING_DIM",
    "FRAME_SIZE",
    "MAX_OFFSET",
    "MFCC_PER_FRAME",
    "N_MFCC",
    "SYNCNET",
    "VIDEO_FPS",
    "WINDOW_FRAMES",
    "WINDOW_STEPS",
    "SyncNet",
    "SyncNetScorer",
    "SyncResult",
    "lse",
    "mfcc_features",
    "offset_search",
    "syncnet_layout",
]

SYNCNET = BackboneFile(
    name="LSE SyncNet",
    option="--syncnet-weights",
    env="FLOATALK_SYNCNET_WEIGHTS",
    filename="syncnet_v2.model",
    origin="github.com/joonson/syncnet_python (data/syncnet_v2.model)",
    sha256=None,
)

#: Sample rate of the sound SyncNet hears.
AUDIO_RATE = 16_000
#: Frame rate of the video SyncNet sees.
VIDEO_FPS = 25
#: Sound samples per video frame.
SAMPLES_PER_FRAME = AUDIO_RATE // VIDEO_FPS
#: MFCC steps per video frame (10 ms steps, 40 ms frames).
MFCC_PER_FRAME = 4
#: Video frames in one window.
WINDOW_FRAMES = 5
#: MFCC steps in one window (0.2 s, the same span as the frames).
WINDOW_STEPS = WINDOW_FRAMES * MFCC_PER_FRAME
#: MFCC coefficients per step.
N_MFCC = 13
#: Side of the frames the picture stream takes.
FRAME_SIZE = 224
#: Length of both embeddings.
EMBEDDING_DIM = 1024
#: Shifts searched, in frames (Wav2Lip's and syncnet_python's ``vshift``).
MAX_OFFSET = 15
#: Added to each component of a difference before its norm (as torch's pairwise_distance).
_DISTANCE_EPS = 1e-6


def _conv_block(conv: nn.Module, norm: nn.Module, pool: nn.Module | None = None) -> list[nn.Module]:
    """conv, BN, ReLU (and a pool): four or three consecutive Sequential entries, as in the file."""
    modules: list[nn.Module] = [conv, norm, nn.ReLU()]
    if pool is not None:
        modules.append(pool)
    return modules


def _head() -> nn.Sequential:
    """linear 512-512, BN, ReLU, linear 512-1024 (entries 0-3)."""
    return nn.Sequential(nn.Linear(512, 512), nn.BatchNorm1d(512), nn.ReLU(), nn.Linear(512, EMBEDDING_DIM))


class SyncNet(nn.Module):
    """syncnet_python's two-stream SyncNet (``syncnet_v2``): sound and picture into one 1024-d space.

    The four Sequentials keep the original's entry indices (ReLUs and pools included), so the
    state-dict names are those of ``syncnet_v2.model``: ``netcnnaud.{0,4,8,11,14,18}`` convs and
    ``.{1,5,9,12,15,19}`` norms, the same indices in ``netcnnlip``, ``netfcaud``/``netfclip``
    ``.0``/``.3`` linears and ``.1`` norms.
    """

    def __init__(self) -> None:
        super().__init__()

        def conv2(i: int, o: int, k, padding=1) -> nn.Conv2d:
            return nn.Conv2d(i, o, kernel_size=k, stride=1, padding=padding)

        self.netcnnaud = nn.Sequential(
            *_conv_block(conv2(1, 64, 3), nn.BatchNorm2d(64), nn.MaxPool2d(kernel_size=1, stride=1)),
            *_conv_block(conv2(64, 192, 3), nn.BatchNorm2d(192), nn.MaxPool2d(kernel_size=3, stride=(1, 2))),
            *_conv_block(conv2(192, 384, 3), nn.BatchNorm2d(384)),
            *_conv_block(conv2(384, 256, 3), nn.BatchNorm2d(256)),
            *_conv_block(conv2(256, 256, 3), nn.BatchNorm2d(256), nn.MaxPool2d(kernel_size=3, stride=2)),
            *_conv_block(conv2(256, 512, (5, 4), padding=0), nn.BatchNorm2d(512)),
        )
        self.netfcaud = _head()

        def conv3(i: int, o: int, k, stride=1, padding=(0, 1, 1)) -> nn.Conv3d:
            return nn.Conv3d(i, o, kernel_size=k, stride=stride, padding=padding)

        def pool3(padding=0) -> nn.MaxPool3d:
            return nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2), padding=padding)

        self.netcnnlip = nn.Sequential(
            *_conv_block(conv3(3, 96, (5, 7, 7), (1, 2, 2), 0), nn.BatchNorm3d(96), pool3()),
            *_conv_block(conv3(96, 256, (1, 5, 5), (1, 2, 2)), nn.BatchNorm3d(256), pool3((0, 1, 1))),
            *_conv_block(conv3(256, 256, (1, 3, 3)), nn.BatchNorm3d(256)),
            *_conv_block(conv3(256, 256, (1, 3, 3)), nn.BatchNorm3d(256)),
            *_conv_block(conv3(256, 256, (1, 3, 3)), nn.BatchNorm3d(256), pool3()),
            *_conv_block(conv3(256, 512, (1, 6, 6), 1, 0), nn.BatchNorm3d(512)),
        )
        self.netfclip = _head()

    def audio(self, mfcc: torch.Tensor) -> torch.Tensor:
        """MFCC windows (n, 1, 13, 20) -> sound embeddings (n, 1024)."""
        return self.netfcaud(torch.flatten(self.netcnnaud(mfcc), 1))

    def lips(self, frames: torch.Tensor) -> torch.Tensor:
        """Frame windows (n, 3, 5, 224, 224) (BGR, 0-255) -> picture embeddings (n, 1024)."""
        return self.netfclip(torch.flatten(self.netcnnlip(frames), 1))

    def forward(self, mfcc: torch.Tensor, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(sound embeddings, picture embeddings) of paired windows."""
        return self.audio(mfcc), self.lips(frames)


def syncnet_layout() -> dict[str, torch.Tensor]:
    """SyncNet's state dict with its initial (random) values: the names and shapes a weights file must
    have (also how the tests make a random-weight file of the right format)."""
    return {k: v.clone() for k, v in SyncNet().state_dict().items()}


def mfcc_features(audio16k: np.ndarray) -> np.ndarray:
    """MFCCs of mono 16 kHz sound as syncnet_python computes them: (steps, 13) float64, 100 steps a second.

    Args:
        audio16k: (samples,) mono sound at 16 kHz: float in [-1, 1] (scaled by 32768 and rounded to
            16-bit values, as ffmpeg's ``pcm_s16le`` gives the original) or int16.

    Returns:
        ``python_speech_features.mfcc`` with its defaults; ``1 + ceil((samples - 400) / 160)`` steps
        (one for sound shorter than a 25 ms window).
    """
    try:
        import python_speech_features
    except ImportError:
        raise InputError(
            "LSE-D/C need python_speech_features for SyncNet's MFCCs: pip install python_speech_features"
        ) from None
    sound = np.asarray(audio16k)
    if sound.ndim != 1 or sound.size == 0:
        raise InputError(f"SyncNet wants mono 16 kHz sound as a 1-D array, got shape {sound.shape}")
    if np.issubdtype(sound.dtype, np.integer):
        if sound.dtype != np.int16:
            raise InputError(f"SyncNet wants float sound in [-1, 1] or int16 samples, got {sound.dtype}")
        pcm = sound.astype(np.float64)
    else:
        values = sound.astype(np.float64)
        if not np.isfinite(values).all():
            raise InputError("SyncNet: the sound has NaN or infinite samples")
        pcm = np.clip(np.round(values * 32768.0), -32768, 32767)
    return np.asarray(python_speech_features.mfcc(pcm, AUDIO_RATE), dtype=np.float64)


@dataclass
class SyncResult:
    """One clip's SyncNet scores.

    Attributes:
        distance: the smallest mean distance over the shifts (the clip's LSE-D).
        confidence: median minus smallest of the mean distances (the clip's LSE-C).
        offset: the shift of the smallest, in frames; > 0: the mouth moves after the sound.
        mean_distances: (2 * max_offset + 1,) mean distance per shift, ``[k + max_offset]`` for shift k.
    """

    distance: float
    confidence: float
    offset: int
    mean_distances: np.ndarray


def offset_search(
    video_feats: np.ndarray, audio_feats: np.ndarray, max_offset: int = MAX_OFFSET
) -> SyncResult:
    """The audio-visual offset of paired window embeddings, as syncnet_python's ``calc_pdist`` + evaluate.

    For each shift ``k`` in ``-max_offset .. max_offset`` the mean over the video windows ``i`` of the
    distance between ``video_feats[i]`` and ``audio_feats[i - k]``, where a sound window outside
    ``0 .. M - 1`` counts as a zero vector (the original's zero padding). The distance is
    ``||v - a + 1e-6||`` (torch's ``pairwise_distance``).

    Args:
        video_feats: (N, d) picture embeddings of windows 0 .. N - 1.
        audio_feats: (M, d) sound embeddings of windows 0 .. M - 1 (M = N in the original).
        max_offset: largest shift searched, in frames.

    Returns:
        distance = min of the mean distances, confidence = median - min, offset = the shift of the
        min (k > 0: the picture lags the sound by k frames; ties go to the largest shift, as in the
        original's order).
    """
    v = np.asarray(video_feats, dtype=np.float64)
    a = np.asarray(audio_feats, dtype=np.float64)
    if v.ndim != 2 or a.ndim != 2 or v.shape[1] != a.shape[1] or len(v) == 0:
        raise InputError(
            f"SyncNet offset search wants features (N, d) and (M, d), got {v.shape} and {a.shape}"
        )
    if max_offset < 0:
        raise InputError(f"SyncNet offset search wants max_offset >= 0, got {max_offset}")
    n, m = len(v), int(max_offset)
    padded = np.zeros((max(n, len(a)) + 2 * m, a.shape[1]))  # sound window j at row j + m
    padded[m : m + len(a)] = a
    rows = np.arange(n)
    means = np.empty(2 * m + 1)
    for k in range(-m, m + 1):
        partner = padded[rows - k + m]  # sound window i - k, zero outside the clip
        means[k + m] = np.linalg.norm(v - partner + _DISTANCE_EPS, axis=1).mean()
    best = 2 * m - int(np.argmin(means[::-1]))  # first minimum from the largest shift down
    smallest = float(means[best])
    return SyncResult(
        distance=smallest,
        confidence=float(np.median(means)) - smallest,
        offset=best - m,
        mean_distances=means,
    )


def lse(results: Sequence[SyncResult]) -> dict[str, float]:
    """LSE-D (mean of the clips' distances) and LSE-C (mean of their confidences)."""
    if len(results) == 0:
        raise InputError("LSE-D/C: no clip was scored")
    return {
        "LSE-D": float(np.mean([r.distance for r in results])),
        "LSE-C": float(np.mean([r.confidence for r in results])),
    }


class SyncNetScorer:
    """LSE scores of clips (face-crop frames + their sound) with a checked local ``syncnet_v2.model``.

    Args:
        path: the weights file (else $FLOATALK_SYNCNET_WEIGHTS).
        device: where the network runs.
        batch_size: windows per forward pass (the original's default, 20).

    Attributes:
        backbone: the checked file (``backbone.describe()`` for reports).
        net: the :class:`SyncNet`, in evaluation mode.
    """

    def __init__(self, path: str | os.PathLike | None = None, device: str = "cpu", batch_size: int = 20):
        if batch_size < 1:
            raise InputError(f"SyncNet batch size must be at least 1, got {batch_size}")
        resolved = SYNCNET.resolve(path)
        state = load_state_dict(SYNCNET, resolved)
        with torch.device("meta"):
            net = SyncNet()
        net, self.backbone = load_checked(SYNCNET, resolved, net, state)
        self.net = net.to(device)
        self.device = torch.device(device)
        self.batch_size = batch_size

    def _frames(self, frames: np.ndarray) -> torch.Tensor:
        """uint8 RGB (L, H, W, 3) -> (3, L, 224, 224) float BGR 0-255 (bilinear, rounded), on the device."""
        out = torch.empty((3, len(frames), FRAME_SIZE, FRAME_SIZE), device=self.device)
        step = 32
        for start in range(0, len(frames), step):
            chunk = torch.from_numpy(np.ascontiguousarray(frames[start : start + step])).to(self.device)
            x = chunk.permute(0, 3, 1, 2).float()
            if x.shape[-2:] != (FRAME_SIZE, FRAME_SIZE):
                x = F.interpolate(x, size=(FRAME_SIZE, FRAME_SIZE), mode="bilinear", align_corners=False)
                x = x.round().clamp(0, 255)
            out[:, start : start + len(chunk)] = x.flip(1).permute(1, 0, 2, 3)  # RGB -> BGR
        return out

    @torch.inference_mode()
    def features(self, frames: np.ndarray, audio16k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Paired window embeddings of a clip: (picture (N, 1024), sound (N, 1024)), float64.

        Args:
            frames: uint8 RGB (T, H, W, 3) face-crop frames at 25 fps.
            audio16k: (samples,) mono sound at 16 kHz (float in [-1, 1] or int16).

        N = min(T, samples // 640) - 5 windows; InputError when that is below 1.
        """
        arr = np.asarray(frames)
        if arr.ndim != 4 or arr.shape[-1] != 3 or arr.dtype != np.uint8:
            raise InputError(f"SyncNet wants uint8 RGB frames (T, H, W, 3), got {arr.dtype} {arr.shape}")
        sound = np.asarray(audio16k)
        if sound.ndim != 1:
            raise InputError(f"SyncNet wants mono 16 kHz sound as a 1-D array, got shape {sound.shape}")
        length = min(len(arr), len(sound) // SAMPLES_PER_FRAME)
        count = length - WINDOW_FRAMES
        if count < 1:
            raise InputError(
                f"SyncNet needs at least {WINDOW_FRAMES + 1} frames and "
                f"{(WINDOW_FRAMES + 1) / VIDEO_FPS:.2f} s of sound at {AUDIO_RATE} Hz; "
                f"got {len(arr)} frames and {len(sound) / AUDIO_RATE:.3f} s"
            )
        mfcc = mfcc_features(sound)
        needed = MFCC_PER_FRAME * (count - 1) + WINDOW_STEPS
        if len(mfcc) < needed:  # cannot happen with python_speech_features' framing; kept as a guard
            raise InputError(f"SyncNet: {len(mfcc)} MFCC steps for {count} windows (needs {needed})")
        steps = torch.from_numpy(np.ascontiguousarray(mfcc.T)).float().to(self.device)  # (13, steps)
        video = np.zeros((count, EMBEDDING_DIM))
        audio = np.zeros((count, EMBEDDING_DIM))
        for start in range(0, count, self.batch_size):
            stop = min(count, start + self.batch_size)
            clip = self._frames(arr[start : stop + WINDOW_FRAMES - 1])  # (3, span, 224, 224)
            lips = torch.stack([clip[:, i : i + WINDOW_FRAMES] for i in range(stop - start)])
            video[start:stop] = self.net.lips(lips).double().cpu().numpy()
            firsts = range(MFCC_PER_FRAME * start, MFCC_PER_FRAME * stop, MFCC_PER_FRAME)
            windows = [steps[:, first : first + WINDOW_STEPS] for first in firsts]
            audio[start:stop] = self.net.audio(torch.stack(windows)[:, None]).double().cpu().numpy()
        return video, audio

    def score(self, frames: np.ndarray, audio16k: np.ndarray, max_offset: int = MAX_OFFSET) -> SyncResult:
        """One clip's LSE distance, confidence and offset (see :func:`offset_search`).

        Args:
            frames: uint8 RGB (T, H, W, 3) face-crop frames at 25 fps (each resized whole to 224²).
            audio16k: (samples,) mono sound at 16 kHz, aligned with the frames.
            max_offset: largest shift searched, in frames (15 in the protocol).
        """
        video, audio = self.features(frames, audio16k)
        result = offset_search(video, audio, max_offset)
        if not math.isfinite(result.distance):
            raise InputError("SyncNet produced non-finite embeddings (a corrupt weights file?)")
        return result
