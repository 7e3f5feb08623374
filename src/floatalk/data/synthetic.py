"""A deterministic synthetic talking-portrait world: real portraits animated procedurally by real speech.

Each clip takes one public-domain portrait (``floatalk/assets/portraits``) and one short speech clip
(``floatalk/assets/speech``) and renders a video in which

* the **jaw drops and the mouth opens** with the speech: the opening follows a smoothed, band-passed
  (250-3000 Hz) energy envelope of the clip's audio at 25 fps, normalised per clip, with a fast attack
  and a slower release; silence gives a closed mouth. The opening is drawn as a dark mouth interior
  with upper teeth between the lips (:func:`mouth_from_audio`);
* the **head moves** smoothly: in-plane roll, pseudo-3D yaw and pitch (a smooth horizontal/vertical
  displacement of the face region, largest at its centre and the nose), translation and scale, each a
  sum of slow sinusoids, plus small nods that follow the speech energy;
* the **eyes blink** every 2-6 s, each blink lasting 150-250 ms: the upper lid's skin slides down over
  the eyeball;
* a per-clip **emotion** label shapes the face: ``happy`` smiles (corners up and out, cheeks up, a
  slight squint), ``sad`` frowns with raised inner brows, ``angry`` frowns with lowered, knitted brows,
  ``surprise`` raises the brows and opens the mouth wider, ``neutral`` does none of these.

Rendering is one smooth backward warp of the portrait per frame (bilinear, edge-replicated border):
output pixel -> inverse head pose -> inverse yaw/pitch -> inverse local warps (brows, mouth corners,
cheeks, eyelids) -> inverse jaw warp, then the mouth interior is composited where the jaw warp opened
a gap. It is vectorised over frames with ``torch.nn.functional.grid_sample`` on precomputed
unit-amplitude displacement maps (a few hundred 128 x 128 frames per second on one CPU core). Facial
points were measured once on the portraits with MediaPipe Face Mesh when the assets were built
(``tools/build_synthetic_assets.py``); nothing here needs MediaPipe.

Clips are written in the dataset layout of :mod:`floatalk.data.layout` with ground-truth ``tracks.npz``
(float32, one row per frame):

================  =========  ==========================================================================
name              shape      meaning
================  =========  ==========================================================================
``mouth_open``    (T,)       lip opening in [0, 1] (1 = ``max_mouth_open`` x mouth width; ``surprise``
                             clips reach 1, the others at most 0.75)
``pose``          (T, 6)     :data:`POSE_COLUMNS`: roll (deg, positive turns the face counter-clockwise
                             on screen), yaw (deg, positive turns the face towards the image's right),
                             pitch (deg, positive tilts the face down), tx and ty (face translation as
                             a fraction of the frame side, positive right / down), scale (1 = as in the
                             portrait)
``blink``         (T,)       eyelid closure of blinks in [0, 1] (both eyes)
``smile``         (T,)       mouth-corner expression in [-1, 1] (positive smile, negative frown)
``brow_raise``    (T,)       whole-brow raise in [-1, 1] (positive up)
``brow_inner``    (T,)       inner-brow raise in [-1, 1] (positive up: sad; negative down: angry)
``left_eye_box``  (T, 4)     x0, y0, x1, y1 in output pixels (pixel i spans [i, i + 1)) of the eye on the
``right_eye_box``            image's left / right (the subject's right / left eye)
``mouth_box``     (T, 4)     the same for the mouth, large enough for its widest opening in the clip
``emotion_mix``   (T, 5)     only with ``emotion_changes`` > 0: each frame's weight of each of
                             :data:`EMOTIONS` (one-hot, blended during a change)
================  =========  ==========================================================================

Everything is deterministic: a clip depends only on the config and its index, through numpy
generators seeded with ``(seed, index)`` (no global random state), so the same config gives
byte-identical frames, audio and tracks.

Example:
    >>> from floatalk.data.synthetic import SyntheticConfig, write_synthetic_dataset
    >>> config = SyntheticConfig(size=128, num_clips=16)
    >>> metas = write_synthetic_dataset("data/synthetic", config)  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import zipfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from floatalk.data.layout import (
    FRAME_FORMATS,
    ClipMeta,
    DatasetInfo,
    clip_dir,
    commit_clip,
    read_dataset_info,
    read_meta,
    staging_dir,
    write_audio,
    write_dataset_info,
    write_frame,
)
from floatalk.errors import InputError

__all__ = [
    "CONTROL_TRACKS",
    "EMOTIONS",
    "FPS",
    "POSE_COLUMNS",
    "SAMPLE_RATE",
    "TRACK_NAMES",
    "ClipPlan",
    "Portrait",
    "SpeechClip",
    "SyntheticClip",
    "SyntheticConfig",
    "component_boxes",
    "load_portraits",
    "load_speech_clips",
    "morph_name",
    "mouth_from_audio",
    "plan_clips",
    "render_clip",
    "render_frames",
    "write_synthetic_dataset",
]

FPS = 25
SAMPLE_RATE = 16000
#: Emotion labels used by the synthetic world (a subset of :data:`floatalk.config.EMOTION_LABELS`).
EMOTIONS: tuple[str, ...] = ("neutral", "happy", "sad", "angry", "surprise")
#: How clips are given their emotion (SyntheticConfig.emotion_plan).
EMOTION_PLANS: tuple[str, ...] = ("balanced", "cycled")
#: Columns of the ``pose`` track.
POSE_COLUMNS: tuple[str, ...] = ("roll_deg", "yaw_deg", "pitch_deg", "tx", "ty", "scale")
#: Names of the arrays in ``tracks.npz``.
TRACK_NAMES: tuple[str, ...] = (
    "mouth_open",
    "pose",
    "blink",
    "smile",
    "brow_raise",
    "brow_inner",
    "left_eye_box",
    "right_eye_box",
    "mouth_box",
)
#: Tracks that drive the renderer (the boxes are derived from them).
CONTROL_TRACKS: tuple[str, ...] = ("mouth_open", "pose", "blink", "smile", "brow_raise", "brow_inner")

# mouth_open of non-surprise clips is the envelope times this (surprise uses the full range).
_CALM_MOUTH = 0.75
# Frames rendered per vectorised chunk (bounds the memory of the warp fields).
_CHUNK_PIXELS = 1 << 20
#: Torch threads used while rendering (0: leave torch's setting). One thread is the fastest choice on a
#: busy machine: the per-frame work is small and multi-threaded elementwise kernels stall when other
#: processes hold the cores.
RENDER_THREADS = 1


# ----------------------------------------------------------------------------------------------------
# Configuration
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SyntheticConfig:
    """What :func:`write_synthetic_dataset` makes. All fields have defaults."""

    size: int = 128  # frame side in pixels
    num_clips: int = 16  # number of clips (train + test)
    seed: int = 0  # everything is a function of (seed, clip index)
    clip_seconds: tuple[float, float] = (2.0, 6.0)  # clip duration range; speech is cut to fit if needed
    silence_seconds: tuple[float, float] = (0.2, 0.8)  # leading and trailing silence range, each
    test_fraction: float = 0.125  # share of clips held out ("test"); they use the reserved speech clips
    emotions: bool = True  # per-clip emotion labels and expressions; False: all "neutral"
    portraits: tuple[str, ...] = ()  # portrait names to use (see load_portraits); empty = all
    morphs: float = 0.0  # share of train clips that animate a morph of two train portraits
    morph_alpha: tuple[float, float] = (0.25, 0.6)  # range of the second portrait's weight in a morph
    frame_format: str = "jpg"  # "jpg" (quality 95) or "png"
    gain_db: tuple[float, float] = (-12.0, 0.0)  # random speech gain range
    max_mouth_open: float = 0.4  # lower-lip drop at mouth_open = 1, as a fraction of the mouth width
    mouth_lag_frames: int = 0  # delay of the mouth behind the audio envelope, in frames
    teeth: bool = True  # draw upper teeth in the opened mouth
    blinks: bool = True  # blink every 2-6 s
    max_roll_deg: float = 8.0  # head motion amplitudes (each motion uses 40-100 % of its maximum)
    max_yaw_deg: float = 12.0
    max_pitch_deg: float = 8.0
    max_shift: float = 0.05  # translation, fraction of the frame side
    max_scale: float = 0.04  # relative zoom
    still_heads: float = 0.0  # share of train clips whose head is held at one pose (mouth, eyes move)
    # How clips get their emotion: "balanced" (each emotion on an equal share of the clips, shuffled
    # apart from the portraits, so a portrait shows several emotions) or "cycled" (datasets prepared
    # before 2026-12-04: the emotions cycled with the clip index beside the portraits, so with 15 train
    # portraits, a multiple of the 5 emotions, each portrait always had the same emotion).
    emotion_plan: str = "balanced"
    # Share of train clips whose expression changes once inside the clip: from the clip's emotion to
    # another one, over a smooth transition (EMOTION_TRANSITION_SECONDS) at a random time in the middle
    # of the clip. Such clips add the ``emotion_mix`` track (every clip of the dataset then has it). A
    # clip of one emotion never shows its expression move, so an auto-encoder trained on pairs of one
    # clip keeps the source frame's expression; these clips show it move, like real talking videos.
    emotion_changes: float = 0.0

    def __post_init__(self) -> None:
        if isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 16:
            raise ValueError(f"size must be an integer >= 16, got {self.size!r}")
        if isinstance(self.num_clips, bool) or not isinstance(self.num_clips, int) or self.num_clips < 0:
            raise ValueError(f"num_clips must be a non-negative integer, got {self.num_clips!r}")
        lo, hi = self.clip_seconds
        if not 0.2 <= lo <= hi:
            raise ValueError(f"clip_seconds must be (lo, hi) with 0.2 <= lo <= hi, got {self.clip_seconds!r}")
        s_lo, s_hi = self.silence_seconds
        if not 0 <= s_lo <= s_hi:
            raise ValueError(
                f"silence_seconds must be (lo, hi) with 0 <= lo <= hi, got {self.silence_seconds!r}"
            )
        if not 0.0 <= self.test_fraction < 1.0:
            raise ValueError(f"test_fraction must be in [0, 1), got {self.test_fraction!r}")
        if self.frame_format not in FRAME_FORMATS:
            raise ValueError(f"frame_format must be one of {FRAME_FORMATS}, got {self.frame_format!r}")
        if not 0.0 <= self.morphs <= 1.0:
            raise ValueError(f"morphs must be in [0, 1], got {self.morphs!r}")
        if not 0.0 <= self.morph_alpha[0] <= self.morph_alpha[1] <= 1.0:
            raise ValueError(
                f"morph_alpha must be (lo, hi) with 0 <= lo <= hi <= 1, got {self.morph_alpha!r}"
            )
        if self.gain_db[0] > self.gain_db[1]:
            raise ValueError(f"gain_db must be (lo, hi) with lo <= hi, got {self.gain_db!r}")
        if not 0.0 <= self.still_heads <= 1.0:
            raise ValueError(f"still_heads must be in [0, 1], got {self.still_heads!r}")
        if self.emotion_plan not in EMOTION_PLANS:
            raise ValueError(f"emotion_plan must be one of {EMOTION_PLANS}, got {self.emotion_plan!r}")
        if not 0.0 <= self.emotion_changes <= 1.0:
            raise ValueError(f"emotion_changes must be in [0, 1], got {self.emotion_changes!r}")
        if not 0.0 <= self.max_mouth_open <= 1.0:
            raise ValueError(f"max_mouth_open must be in [0, 1], got {self.max_mouth_open!r}")
        if self.mouth_lag_frames < 0:
            raise ValueError(f"mouth_lag_frames must be >= 0, got {self.mouth_lag_frames!r}")
        # JSON round trips give lists: store tuples so equal configs compare equal.
        for name in ("clip_seconds", "silence_seconds", "gain_db", "portraits", "morph_alpha"):
            object.__setattr__(self, name, tuple(getattr(self, name)))

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


# ----------------------------------------------------------------------------------------------------
# Assets
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Portrait:
    """A portrait asset (or a morph of two): a face-centred square crop and its facial points."""

    name: str
    image: np.ndarray = field(repr=False)  # (N, N, 3) uint8 RGB
    points: Mapping[str, tuple[float, float]] = field(repr=False)  # [x, y] as fractions of the side
    split: str = "train"  # "test": held out, never animated in train clips

    def resized(self, size: int) -> np.ndarray:
        """The portrait at ``size`` x ``size`` (Lanczos), cached."""
        return _resized_portrait(self.name, size)


@dataclass(frozen=True, eq=False)
class SpeechClip:
    """A speech asset: 16 kHz mono float32 audio and its split (``test`` = reserved for held-out clips)."""

    name: str
    split: str
    audio: np.ndarray = field(repr=False)
    text: str = ""


def _assets() -> Path:
    return Path(str(resources.files("floatalk") / "assets"))


@functools.lru_cache(maxsize=1)
def _portrait_table() -> dict[str, Portrait]:
    from PIL import Image

    root = _assets() / "portraits"
    doc = json.loads((root / "landmarks.json").read_text())
    table = {}
    for name, entry in doc["portraits"].items():
        with Image.open(root / entry["file"]) as im:
            image = np.asarray(im.convert("RGB")).copy()
        image.flags.writeable = False
        points = {k: (float(v[0]), float(v[1])) for k, v in entry["points"].items()}
        table[name] = Portrait(name, image, points, entry.get("split", "train"))
    return table


#: Side at which morphs are made (then resized like any portrait).
_MORPH_SIZE = 256


def morph_name(host: str, other: str, alpha: float) -> str:
    """The name of the morph of ``other``'s face into ``host`` with weight ``alpha`` (2 decimals)."""
    return f"{host}~{other}@{alpha:.2f}"


@functools.lru_cache(maxsize=64)
def _morph(name: str) -> Portrait:
    from PIL import Image

    from floatalk.data.morph import morph_portraits

    host, rest = name.split("~", 1)
    other, alpha = rest.rsplit("@", 1)
    a, b = (_portrait_table()[n] for n in (host, other))

    def small(p: Portrait) -> np.ndarray:
        return np.asarray(
            Image.fromarray(p.image).resize((_MORPH_SIZE, _MORPH_SIZE), Image.Resampling.LANCZOS)
        )

    image, points = morph_portraits(small(a), a.points, small(b), b.points, float(alpha))
    image.flags.writeable = False
    return Portrait(name, image, points, "train" if a.split == b.split == "train" else "test")


def _portrait(name: str) -> Portrait:
    """A portrait asset by name, or a morph named by :func:`morph_name`."""
    return _morph(name) if "~" in name else _portrait_table()[name]


@functools.lru_cache(maxsize=32)
def _resized_portrait(name: str, size: int) -> np.ndarray:
    from PIL import Image

    image = _portrait(name).image
    if image.shape[0] != size:
        image = np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.LANCZOS))
    image = np.array(image, dtype=np.uint8, copy=True)
    image.flags.writeable = False
    return image


def load_portraits(names: tuple[str, ...] | list[str] = (), split: str | None = None) -> list[Portrait]:
    """The portrait assets (all, sorted by name, or those named, in that order; morph names too).

    ``split`` keeps only the ``"train"`` or the held-out ``"test"`` portraits.
    """
    table = _portrait_table()
    if not names:
        return [table[k] for k in sorted(table) if split is None or table[k].split == split]
    unknown = [n for n in names if not (_is_morph_name(n) if "~" in n else n in table)]
    if unknown:
        raise InputError(f"unknown synthetic portrait(s) {unknown}; available: {', '.join(sorted(table))}")
    return [p for p in map(_portrait, names) if split is None or p.split == split]


def _is_morph_name(name: str) -> bool:
    host, _, rest = name.partition("~")
    other, _, alpha = rest.rpartition("@")
    try:
        return other in _portrait_table() and host in _portrait_table() and 0.0 <= float(alpha) <= 1.0
    except ValueError:
        return False


@functools.lru_cache(maxsize=1)
def _speech_table() -> dict[str, SpeechClip]:
    from floatalk.io import load_audio

    root = _assets() / "speech"
    doc = json.loads((root / "manifest.json").read_text())
    table = {}
    for entry in doc["clips"]:
        audio = load_audio(root / entry["file"], SAMPLE_RATE)
        audio.flags.writeable = False
        table[entry["name"]] = SpeechClip(entry["name"], entry["split"], audio, entry.get("text", ""))
    return table


def load_speech_clips(split: str | None = None) -> list[SpeechClip]:
    """The speech assets sorted by name, optionally only one split (``"train"`` or ``"test"``)."""
    table = _speech_table()
    return [table[k] for k in sorted(table) if split is None or table[k].split == split]


# ----------------------------------------------------------------------------------------------------
# Speech -> mouth
# ----------------------------------------------------------------------------------------------------


def mouth_from_audio(
    audio: np.ndarray,
    num_frames: int,
    sample_rate: int = SAMPLE_RATE,
    fps: int = FPS,
    lag_frames: int = 0,
) -> np.ndarray:
    """Mouth opening in [0, 1] per video frame from a speech signal.

    The signal is band-passed to 250-3000 Hz (zero phase, 4th-order Butterworth slopes), its energy is taken
    in a 64 ms Hann window centred on each frame (frame ``k`` covers samples ``[k, k + 1) * rate / fps``),
    converted to dB relative to the clip's 95th percentile frame, and mapped linearly from -30 dB
    (closed) to -3 dB (open), then raised to the power 1.3. An attack/release follower (fast opening,
    slower closing that reaches 0 within about 5 frames) smooths it and ``lag_frames`` delays it. Gain
    does not matter (per-clip normalisation); silence gives exactly 0.

    Args:
        audio: 1-D float signal.
        num_frames: Number of frames to return.
        sample_rate: Audio rate in Hz.
        fps: Video frame rate.
        lag_frames: Delay in frames.

    Returns:
        ``(num_frames,)`` float32 in [0, 1].
    """
    x = np.asarray(audio, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"audio must be 1-D, got shape {x.shape}")
    hop = sample_rate / fps
    win = round(0.064 * sample_rate)
    if len(x):
        # zero-phase band-pass in the frequency domain with the magnitude response of a 4th-order
        # Butterworth band-pass applied forwards and backwards
        f = np.fft.rfftfreq(len(x), 1.0 / sample_rate)
        with np.errstate(divide="ignore"):
            gain = 1.0 / ((1.0 + (f / 3000.0) ** 8) * (1.0 + (250.0 / f) ** 8))
        x = np.fft.irfft(np.fft.rfft(x) * gain, n=len(x))
    half = win // 2
    padded = np.concatenate([np.zeros(half), x, np.zeros(half + int(hop) + win)])
    starts = np.round((np.arange(num_frames) + 0.5) * hop).astype(np.int64)  # window centre (+half offset)
    window = np.hanning(win)
    window /= window.sum()
    idx = starts[:, None] + np.arange(win)[None, :]
    energy = (padded[idx] ** 2 * window).sum(axis=1) if num_frames else np.zeros(0)
    db = 10.0 * np.log10(energy + 1e-12)
    if num_frames == 0:
        return np.zeros(0, np.float32)
    ref = float(np.percentile(db, 95))
    if ref < -90.0:  # digital silence
        return np.zeros(num_frames, np.float32)
    level = np.clip((db - (ref - 30.0)) / 27.0, 0.0, 1.0) ** 1.3
    out = np.zeros(num_frames)
    y = 0.0
    for k in range(num_frames):
        if level[k] > y:  # attack: most of the way in one frame
            y += 0.7 * (level[k] - y)
        else:  # release: exponential plus linear, so it closes completely within ~5 frames
            y = max(level[k], y + 0.45 * (level[k] - y) - 0.03)
        out[k] = y
    if lag_frames > 0:
        out = np.concatenate([np.zeros(lag_frames), out[:-lag_frames] if lag_frames < num_frames else []])
        out = out[:num_frames]
    return out.astype(np.float32)


# ----------------------------------------------------------------------------------------------------
# Face geometry
# ----------------------------------------------------------------------------------------------------


def _unit(v: np.ndarray) -> np.ndarray:
    return v / max(float(np.hypot(v[0], v[1])), 1e-9)


def _smoothstep(e0: float | np.ndarray, e1: float | np.ndarray, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


class _Geometry:
    """Facial measurements of a portrait at a given output size, in pixels (pixel i spans [i, i + 1))."""

    def __init__(self, points: Mapping[str, tuple[float, float]], size: int) -> None:
        p = {k: np.array(v, dtype=np.float64) * size for k, v in points.items()}
        self.size = size
        # mouth frame: u along the corners (image left -> right), v perpendicular, pointing down
        L, R = p["mouth_left"], p["mouth_right"]
        self.mouth_left, self.mouth_right = L, R
        self.mc = (L + R) / 2
        self.mw = float(np.hypot(*(R - L)))
        self.eu = _unit(R - L)
        self.ev = np.array([-self.eu[1], self.eu[0]])
        seam = (p["upper_lip_inner"] + p["lower_lip_inner"]) / 2
        self.seam0 = float((seam - self.mc) @ self.ev)
        self.h_up = max(float((p["upper_lip_inner"] - p["upper_lip_outer"]) @ self.ev), 0.04 * self.mw)
        self.h_low = max(float((p["lower_lip_outer"] - p["lower_lip_inner"]) @ self.ev), 0.04 * self.mw)
        self.upper_lip_v = float((p["upper_lip_outer"] - self.mc) @ self.ev)
        self.lower_lip_v = float((p["lower_lip_outer"] - self.mc) @ self.ev)
        self.chin_v = max(float((p["chin"] - self.mc) @ self.ev), 0.5 * self.mw)
        self.jaw_half = max(float(np.hypot(*(p["jaw_right"] - p["jaw_left"]))) / 2, 0.6 * self.mw)
        # eyes (image left / right)
        self.eyes = []
        for side in ("left", "right"):
            outer, inner = p[f"{side}_eye_outer"], p[f"{side}_eye_inner"]
            top, bottom = p[f"{side}_eye_top"], p[f"{side}_eye_bottom"]
            axis = _unit(inner - outer) if side == "left" else _unit(outer - inner)
            perp = np.array([-axis[1], axis[0]])
            centre = (outer + inner) / 2
            width = float(np.hypot(*(inner - outer)))
            top_v = float((top - centre) @ perp)
            low_v = float((bottom - centre) @ perp)
            if low_v - top_v < 0.12 * width:  # nearly closed in the portrait: assume a typical opening
                mid = (low_v + top_v) / 2
                top_v, low_v = mid - 0.15 * width, mid + 0.15 * width
            brow_in, brow_mid, brow_out = (
                p[f"{side}_brow_inner"],
                p[f"{side}_brow_mid"],
                p[f"{side}_brow_outer"],
            )
            brow_gap = max(float(np.hypot(*(brow_mid - top))), 0.3 * width)
            self.eyes.append(
                {
                    "centre": centre,
                    "axis": axis,
                    "perp": perp,
                    "width": width,
                    "top": top_v,
                    "low": low_v,
                    "brow_inner": brow_in,
                    "brow_mid": brow_mid,
                    "brow_len": max(float(np.hypot(*(brow_out - brow_in))), 0.5 * width),
                    "brow_gap": brow_gap,
                    "outer": outer,
                    "inner": inner,
                    "bottom": bottom,
                }
            )
        # face oval and pose pivot
        fl, fr, fh, ch = p["face_left"], p["face_right"], p["forehead"], p["chin"]
        self.oc = np.array([(fl[0] + fr[0]) / 2, (fh[1] + ch[1]) / 2])
        self.rx = max(abs(fr[0] - fl[0]) / 2, 0.1 * size)
        self.ry = max(abs(ch[1] - fh[1]) / 2, 0.1 * size)
        self.nose = p["nose_tip"]
        self.pivot = ch + np.array([0.0, 0.25 * self.ry])  # the head turns about the top of the neck

    def eye_box(self, i: int) -> np.ndarray:
        """Canonical (unwarped) eye box corners, (4, 2)."""
        e = self.eyes[i]
        hw, hh = 0.85 * e["width"], 0.6 * e["width"]
        c = e["centre"] + e["perp"] * (0.1 * e["width"])
        return np.array([c + sx * hw * e["axis"] + sy * hh * e["perp"] for sx in (-1, 1) for sy in (-1, 1)])

    def mouth_box(self, max_open_px: float) -> np.ndarray:
        """Canonical mouth box corners, (4, 2), tall enough for an opening of ``max_open_px``."""
        top = self.upper_lip_v - 0.2 * self.mw
        bottom = self.lower_lip_v + max_open_px + 0.15 * self.mw
        hw = 0.5 * self.mw + 0.25 * self.mw
        return np.array([self.mc + sx * hw * self.eu + v * self.ev for sx in (-1, 1) for v in (top, bottom)])


# ----------------------------------------------------------------------------------------------------
# Warps
#
# Every warp is a backward map (output position -> where to sample) and every local deformation is
# linear in its per-frame amplitude, so the renderer precomputes unit-amplitude displacement maps once
# per portrait and size (:func:`_basis`) and, per frame, samples them at the current position and scales
# them: output -> inverse roll/translation/scale (analytic) -> inverse yaw/pitch -> inverse brows,
# mouth corners and cheeks (maps) and eyelids (analytic, only in frames with closed lids) -> inverse
# jaw drop -> portrait, and the mouth interior is painted where the jaw drop opened a gap.
# ----------------------------------------------------------------------------------------------------

#: Local deformation components, each a unit-amplitude (dx, dy) map; amplitudes per frame in _amplitudes.
LOCAL_COMPONENTS = ("brow_raise", "brow_inner", "brow_knit", "smile", "frown")


def _gauss(X: np.ndarray, Y: np.ndarray, c: np.ndarray, sx: float, sy: float | None = None) -> np.ndarray:
    sy = sx if sy is None else sy
    return np.exp(-0.5 * (((X - c[0]) / sx) ** 2 + ((Y - c[1]) / sy) ** 2))


def _yaw_pitch_maps(g: _Geometry, X: np.ndarray, Y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Content displacement per unit sin(yaw) / sin(pitch): largest at the face centre and nose, 0 off it."""
    nx = (X - g.oc[0]) / (1.25 * g.rx)
    ny = (Y - g.oc[1]) / (1.2 * g.ry)
    w = np.clip(1.0 - nx * nx - ny * ny, 0.0, 1.0) ** 1.5
    nose = _gauss(X, Y, g.nose, 0.22 * g.rx)
    return 0.8 * g.rx * w + 0.15 * g.rx * nose, 0.6 * g.ry * w + 0.12 * g.ry * nose


def _local_maps(g: _Geometry, X: np.ndarray, Y: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Unit-amplitude backward displacements of :data:`LOCAL_COMPONENTS` (content moves by the opposite)."""
    maps = {name: (np.zeros_like(X), np.zeros_like(Y)) for name in LOCAL_COMPONENTS}
    for i, e in enumerate(g.eyes):
        gap, blen = e["brow_gap"], e["brow_len"]
        maps["brow_raise"][1][...] -= 0.32 * gap * _gauss(X, Y, e["brow_mid"], 0.65 * blen, 0.6 * gap)
        gi = _gauss(X, Y, e["brow_inner"], 0.35 * blen, 0.5 * gap)
        maps["brow_inner"][1][...] -= 0.25 * gap * gi
        maps["brow_knit"][0][...] += (0.1 if i == 0 else -0.1) * gap * gi  # inner ends move towards the nose
    for corner, out_dir, eye in ((g.mouth_left, -g.eu, g.eyes[0]), (g.mouth_right, g.eu, g.eyes[1])):
        gc = _gauss(X, Y, corner, 0.32 * g.mw)
        up = (0.45 * out_dir - g.ev) * 0.13 * g.mw  # smile: corners up and out
        down = (0.1 * out_dir + g.ev) * 0.10 * g.mw  # frown: corners down
        cheek = _gauss(X, Y, 0.5 * (corner + eye["bottom"]) + 0.1 * g.mw * out_dir, 0.42 * g.mw)
        lift = (0.03 * out_dir - np.array([0.0, 0.07])) * g.mw
        for c in (0, 1):
            maps["smile"][c][...] += up[c] * gc + lift[c] * cheek
            maps["frown"][c][...] += down[c] * gc
    return maps


# Eyelid closure of a full smile (happy faces squint a little).
_SQUINT = 0.22


def _eyelid_shift(e: Mapping[str, Any], x: Any, y: Any, closure: Any) -> tuple[Any, Any]:
    """Backward displacement (torch) that closes one eye by ``closure`` (F, 1, 1) in [0, 1].

    In the eye's frame (``ue`` along the eye, -1 / 1 at the corners; ``ve`` down), the lids are arcs
    ``top * (1 - ue^2)`` and ``low * (1 - ue^2)``. Closing moves the upper lid margin down by
    ``0.95 * closure`` of the opening: the band of lid skin above the margin (0.6 of the opening tall)
    stretches down over the eyeball, which stays put and is hidden above the new margin. Brows and
    the skin above the band do not move.
    """
    ax, pp = e["axis"], e["perp"]
    dx, dy = x - float(e["centre"][0]), y - float(e["centre"][1])
    ue = (dx * float(ax[0]) + dy * float(ax[1])) * (2.0 / e["width"])
    ve = dx * float(pp[0]) + dy * float(pp[1])
    arc = (1.0 - ue * ue).clamp_min(0.0)
    top = e["top"] * arc
    op = (e["low"] - e["top"]) * arc
    band = 0.6 * (e["low"] - e["top"]) * arc.sqrt()
    drop = 0.95 * closure * op
    start = top - band
    inside = (ve >= start) & (ve <= top + drop) & (drop > 1e-3)
    # [start, top + drop] (output) <- [start, top] (source): shift = ve - source
    shift = (ve - start) * drop / (band + drop).clamp_min(1e-3) * inside
    return shift * float(pp[0]), shift * float(pp[1])


def _amplitudes(ctl: Mapping[str, np.ndarray]) -> np.ndarray:
    """Per-frame amplitudes of :data:`LOCAL_COMPONENTS`, (T, K)."""
    smile = ctl["smile"]
    inner = ctl["brow_inner"]
    return np.stack(
        [
            ctl["brow_raise"],
            inner,
            np.clip(-inner, 0.0, None),
            np.clip(smile, 0.0, None),
            np.clip(-smile, 0.0, None),
        ],
        axis=1,
    )


def _mouth_frame(g: _Geometry, X: Any, Y: Any) -> tuple[Any, Any, Any]:
    """Mouth coordinates: ``u`` (-1 / 1 at the corners), ``v`` (pixels, down) and the lip seam ``vs(u)``.

    Works on numpy arrays and torch tensors alike.
    """
    dx, dy = X - float(g.mc[0]), Y - float(g.mc[1])
    u = (dx * float(g.eu[0]) + dy * float(g.eu[1])) * (2.0 / g.mw)
    v = dx * float(g.ev[0]) + dy * float(g.ev[1])
    us = u.clip(-1.0, 1.0)
    return u, v, g.seam0 * (1.0 - us * us)


def _jaw_maps(g: _Geometry, X: np.ndarray, Y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Jaw drop per unit opening (pixels of lower-lip drop at the mouth centre): ``shift`` and ``spread``.

    Below the lip seam the lower lip, chin and jaw move down (the lower lip tapering to the corners, the
    jaw by 90 %, fading out below the chin); above it the upper lip rises slightly. With opening ``A``,
    the backward displacement along the mouth's down axis is ``A * shift``, and an output point lies
    ``A * spread - |v - vs(u)|`` pixels inside the opened mouth (inside where positive).
    """
    u, v, vs = _mouth_frame(g, X, Y)
    lip = np.clip(1.0 - u * u, 0.0, None) ** 0.8
    jaw = np.exp(-1.5 * (u * (g.mw / 2) / g.jaw_half) ** 4)
    h_short, h_long = 1.5 * g.h_low, 0.8 * g.chin_v
    s = _smoothstep(0.0, h_short + (h_long - h_short) * _smoothstep(0.3, 1.1, np.abs(u)), v - vs)
    fade = 1.0 - _smoothstep(g.chin_v, 1.9 * g.chin_v, v)
    low = ((1.0 - s) * lip + s * 0.9 * jaw) * fade
    up = _UPPER_LIP_RISE * lip * np.exp(-(((vs - v) / (2.0 * g.h_up)) ** 2))
    lower = v >= vs
    return np.where(lower, low, -up), np.where(lower, low, up)


# The upper lip rises by this fraction of the lower-lip drop.
_UPPER_LIP_RISE = 0.12
# Local map channels: (component, axis) pairs; the other axes are zero.
_LOCAL_CHANNELS = (
    ("brow_raise", 1),
    ("brow_inner", 1),
    ("brow_knit", 0),
    ("smile", 0),
    ("smile", 1),
    ("frown", 0),
    ("frown", 1),
)


@dataclass(frozen=True)
class _Basis:
    geometry: _Geometry
    image: Any  # torch (1, 3, S, S) float32
    yaw_pitch: Any  # torch (1, 2, S, S)
    local: Any  # torch (1, len(_LOCAL_CHANNELS), S, S)
    jaw: Any  # torch (1, 2, S, S): shift, spread
    colours: tuple[np.ndarray, np.ndarray, np.ndarray]  # mouth interior, tongue, teeth (RGB 0..255)


@functools.lru_cache(maxsize=16)
def _basis(name: str, size: int) -> _Basis:
    import torch

    portrait = _portrait(name)
    g = _Geometry(portrait.points, size)
    c = np.arange(size, dtype=np.float64) + 0.5  # pixel centres
    X, Y = np.meshgrid(c, c)

    def t(maps: list[np.ndarray]) -> Any:
        return torch.from_numpy(np.stack(maps).astype(np.float32))[None].contiguous()

    local = _local_maps(g, X, Y)
    image = np.array(portrait.resized(size), dtype=np.float32)
    return _Basis(
        geometry=g,
        image=torch.from_numpy(image).permute(2, 0, 1)[None].contiguous(),
        yaw_pitch=t(list(_yaw_pitch_maps(g, X, Y))),
        local=t([local[name][axis] for name, axis in _LOCAL_CHANNELS]),
        jaw=t(list(_jaw_maps(g, X, Y))),
        colours=_mouth_colours(portrait.resized(size), g),
    )


def _mouth_colours(portrait: np.ndarray, g: _Geometry) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Interior, tongue and teeth colours derived from the lip colour of the portrait."""
    s = portrait.shape[0]
    r = max(1, round(0.04 * g.mw))
    c = g.mc + g.ev * (g.seam0 + 0.5 * g.h_low + 0.02 * g.mw)
    x, y = int(np.clip(round(c[0]), r, s - r - 1)), int(np.clip(round(c[1]), r, s - r - 1))
    lip = portrait[y - r : y + r + 1, x - r : x + r + 1].reshape(-1, 3).astype(np.float32).mean(axis=0)
    interior = 0.2 * lip + np.array([10.0, 2.0, 3.0], np.float32)
    tongue = 0.55 * lip + np.array([25.0, 0.0, 0.0], np.float32)
    lum = float(lip.mean())
    teeth = np.array([232.0, 226.0, 210.0], np.float32) * float(np.clip(0.55 + lum / 300.0, 0.6, 1.0))
    return interior, tongue, teeth


def _sample(maps: Any, x: Any, y: Any, size: int) -> Any:
    """Bilinear samples of (1, C, S, S) maps at pixel positions x, y (F, S, S): (F, C, S, S), edge clamped."""
    import torch
    import torch.nn.functional as F

    scale = 2.0 / size
    grid = torch.stack([x * scale - 1.0, y * scale - 1.0], dim=-1)
    return F.grid_sample(
        maps.expand(x.shape[0], -1, -1, -1), grid, mode="bilinear", padding_mode="border", align_corners=False
    )


def head_positions(
    basis: _Basis, cos: Any, sin: Any, inv_scale: Any, shift: Any, sin_yaw: Any, sin_pitch: Any
) -> tuple[Any, Any]:
    """Where each output pixel samples the face after undoing the head pose (torch, differentiable).

    Args:
        basis: The portrait's warp basis (:func:`warp_basis`).
        cos, sin: cos / sin of the roll, (F, 1, 1).
        inv_scale: 1 / scale, (F, 1, 1).
        shift: translation in pixels, a pair of (F, 1, 1) tensors (x, y).
        sin_yaw, sin_pitch: sin of the yaw / pitch, (F, 1, 1).

    Returns:
        Positions ``x``, ``y`` in pixels, each (F, S, S).
    """
    import torch

    g = basis.geometry
    size = g.size
    c = torch.arange(size, dtype=torch.float32) + 0.5
    X0, Y0 = c.view(1, 1, size), c.view(1, size, 1)
    # 1. inverse roll / translation / scale about the pivot; on screen the face turns counter-clockwise
    #    by roll (y down): x' = cos x + sin y, y' = -sin x + cos y
    px, py = (float(v) for v in g.pivot)
    dx = (X0 - px - shift[0]) * inv_scale
    dy = (Y0 - py - shift[1]) * inv_scale
    x = px + cos * dx - sin * dy
    y = py + sin * dx + cos * dy
    # 2. inverse yaw / pitch
    yp = _sample(basis.yaw_pitch, x, y, size)
    return x - sin_yaw * yp[:, 0], y - sin_pitch * yp[:, 1]


def local_positions(basis: _Basis, x: Any, y: Any, amplitudes: Any) -> tuple[Any, Any]:
    """Positions after undoing the brows, mouth corners and cheeks (torch, differentiable).

    ``amplitudes`` is (F, K) for :data:`LOCAL_COMPONENTS` (see :func:`_amplitudes`); ``x``, ``y`` (F, S, S).
    """
    local = _sample(basis.local, x, y, basis.geometry.size)
    for k, (name, axis) in enumerate(_LOCAL_CHANNELS):
        a_k = amplitudes[:, LOCAL_COMPONENTS.index(name)].view(-1, 1, 1)
        if axis == 0:
            x = x - a_k * local[:, k]
        else:
            y = y - a_k * local[:, k]
    return x, y


def jaw_positions(basis: _Basis, x: Any, y: Any, opening_px: Any) -> tuple[Any, Any, Any, Any, Any]:
    """Positions after undoing the jaw drop of ``opening_px`` (F, 1, 1) pixels (torch, differentiable).

    Returns:
        ``x``, ``y``, the opened-mouth coverage ``gap`` in [0, 1] and the mouth coordinates ``u`` and
        ``v - vs`` (see :func:`_mouth_frame`), each (F, S, S).
    """
    g = basis.geometry
    jaw = _sample(basis.jaw, x, y, g.size)
    u, v, vs = _mouth_frame(g, x, y)
    gap = (opening_px * jaw[:, 1] - (v - vs).abs()).clamp(0.0, 1.0)
    shift = opening_px * jaw[:, 0]
    return x - shift * float(g.ev[0]), y - shift * float(g.ev[1]), gap, u, v - vs


def _render_chunk(
    basis: _Basis, ctl: Mapping[str, np.ndarray], max_open_px: float, teeth: bool
) -> np.ndarray:
    import torch

    g = basis.geometry
    size = g.size
    n = len(ctl["mouth_open"])

    def col(a: np.ndarray) -> Any:
        return torch.from_numpy(np.asarray(a, dtype=np.float32)).view(-1, 1, 1)

    pose = np.asarray(ctl["pose"], dtype=np.float64)
    roll = np.deg2rad(pose[:, 0])
    x, y = head_positions(
        basis,
        col(np.cos(roll)),
        col(np.sin(roll)),
        col(1.0 / pose[:, 5]),
        (col(pose[:, 3] * size), col(pose[:, 4] * size)),
        col(np.sin(np.deg2rad(pose[:, 1]))),
        col(np.sin(np.deg2rad(pose[:, 2]))),
    )
    # 3. inverse brows, mouth corners, cheeks, and eyelids
    x0, y0 = x, y
    x, y = local_positions(basis, x, y, torch.from_numpy(_amplitudes(ctl).astype(np.float32)))
    closure = np.clip(ctl["blink"] + _SQUINT * np.clip(ctl["smile"], 0.0, None), 0.0, 1.0)
    blinking = torch.from_numpy(np.flatnonzero(closure > 0))
    if len(blinking):  # only frames with closed eyelids (blinks are short)
        xb, yb = x0[blinking], y0[blinking]
        for e in g.eyes:
            dx, dy = _eyelid_shift(e, xb, yb, col(closure[blinking.numpy()]))
            x, y = x.index_add(0, blinking, -dx), y.index_add(0, blinking, -dy)
    # 4. inverse jaw drop, and where the mouth is open
    A = col(np.asarray(ctl["mouth_open"]) * max_open_px)
    x, y, gap, u, v_seam = jaw_positions(basis, x, y, A)
    img = _sample(basis.image, x, y, size).permute(0, 2, 3, 1)  # (n, S, S, 3)
    inside = gap > 0
    if bool(inside.any()):
        img = img.clone()
        a = gap[inside][:, None]
        A_px = A.expand(n, size, size)[inside]
        u, v_rel = u[inside], v_seam[inside]
        lip = (1.0 - u * u).clamp_min(0.0) ** 0.8
        interior, tongue, teeth_rgb = (torch.from_numpy(np.asarray(c, np.float32)) for c in basis.colours)
        gap_h = ((1.0 + _UPPER_LIP_RISE) * A_px * lip).clamp_min(1e-3)
        below_lip = v_rel + _UPPER_LIP_RISE * A_px * lip  # pixels below the (raised) upper lip
        depth = (below_lip / gap_h).clamp(0.0, 1.0)
        au = u.abs()
        colour = interior * (0.75 + 0.5 * (depth - 0.5).abs())[:, None]
        t = (_smoothstep_t(0.55, 0.95, depth) * 0.7 * _smoothstep_t(0.9, 0.4, au))[:, None]
        colour = colour * (1.0 - t) + tongue * t
        if teeth:
            band = torch.minimum(torch.tensor(0.11 * g.mw), 0.42 * gap_h)
            ta = ((band - below_lip).clamp(0.0, 1.0) * _smoothstep_t(0.85, 0.55, au))[:, None]
            colour = colour * (1.0 - ta) + teeth_rgb * ta
        img[inside] = img[inside] * (1.0 - a) + colour * a
    return img.round_().clamp_(0, 255).to(torch.uint8).numpy()


def _smoothstep_t(e0: float, e1: float, x: Any) -> Any:
    t = ((x - e0) / (e1 - e0)).clamp(0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


@contextlib.contextmanager
def _torch_threads(n: int) -> Iterator[None]:
    """Runs torch with ``n`` intra-op threads, restoring the previous count afterwards."""
    import torch

    previous = torch.get_num_threads()
    if n > 0 and n != previous:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if n > 0 and n != previous:
            torch.set_num_threads(previous)


def render_frames(
    portrait: Portrait,
    size: int,
    tracks: Mapping[str, np.ndarray],
    max_mouth_open: float = 0.4,
    teeth: bool = True,
) -> np.ndarray:
    """Renders frames of a portrait driven by control tracks.

    Args:
        portrait: The portrait asset.
        size: Output side in pixels.
        tracks: ``mouth_open``, ``pose``, ``blink``, ``smile``, ``brow_raise``, ``brow_inner`` (see the
            module docstring); missing ones are neutral.
        max_mouth_open: Lower-lip drop at ``mouth_open = 1`` as a fraction of the mouth width.
        teeth: Draw upper teeth in the opened mouth.

    Returns:
        ``(T, size, size, 3)`` uint8 RGB frames.
    """
    import torch

    ctl = _controls(tracks)
    n = len(ctl["mouth_open"])
    basis = _basis(portrait.name, size)
    max_open_px = max_mouth_open * basis.geometry.mw
    frames = np.empty((n, size, size, 3), np.uint8)
    step = max(1, _CHUNK_PIXELS // (size * size))
    with torch.no_grad(), _torch_threads(RENDER_THREADS):
        for start in range(0, n, step):
            part = {k: v[start : start + step] for k, v in ctl.items()}
            frames[start : start + step] = _render_chunk(basis, part, max_open_px, teeth)
    return frames


def _controls(tracks: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    n = len(np.asarray(tracks["mouth_open"]))
    ctl = {}
    for name in CONTROL_TRACKS:
        if name in tracks:
            ctl[name] = np.asarray(tracks[name], dtype=np.float64)
        elif name == "pose":
            ctl[name] = np.tile(np.array([0, 0, 0, 0, 0, 1.0]), (n, 1))
        else:
            ctl[name] = np.zeros(n)
        if len(ctl[name]) != n:
            raise ValueError(f"track {name!r} has {len(ctl[name])} frames, mouth_open has {n}")
    if ctl["pose"].shape != (n, len(POSE_COLUMNS)):
        raise ValueError(f"pose must have shape (T, {len(POSE_COLUMNS)}), got {ctl['pose'].shape}")
    return ctl


def _pose_forward(g: _Geometry, pose: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Face points (P, 2) -> output positions (T, P, 2) (yaw/pitch displacement to first order)."""
    wx, wy = _yaw_pitch_maps(g, pts[:, 0], pts[:, 1])
    x1 = pts[None, :, 0] + np.sin(np.deg2rad(pose[:, 1]))[:, None] * wx[None]
    y1 = pts[None, :, 1] + np.sin(np.deg2rad(pose[:, 2]))[:, None] * wy[None]
    roll = np.deg2rad(pose[:, 0])[:, None]
    cos, sin = np.cos(roll), np.sin(roll)
    px, py = g.pivot
    sc = pose[:, 5][:, None]
    xo = px + pose[:, 3][:, None] * g.size + sc * (cos * (x1 - px) + sin * (y1 - py))
    yo = py + pose[:, 4][:, None] * g.size + sc * (-sin * (x1 - px) + cos * (y1 - py))
    return np.stack([xo, yo], axis=-1)


def component_boxes(
    portrait: Portrait, size: int, tracks: Mapping[str, np.ndarray], max_mouth_open: float = 0.4
) -> dict[str, np.ndarray]:
    """Eye and mouth boxes per frame: ``(T, 4)`` float32 x0, y0, x1, y1 in output pixels, within the frame.

    The boxes follow the head pose; the mouth box is tall enough for the widest opening of the clip.
    """
    ctl = _controls(tracks)
    g = _Geometry(portrait.points, size)
    widest = float(np.max(ctl["mouth_open"], initial=0.0)) * max_mouth_open * g.mw
    out = {}
    for name, pts in (
        ("left_eye_box", g.eye_box(0)),
        ("right_eye_box", g.eye_box(1)),
        ("mouth_box", g.mouth_box(widest)),
    ):
        p = _pose_forward(g, ctl["pose"], pts)
        box = np.concatenate([p.min(axis=1), p.max(axis=1)], axis=1)
        out[name] = np.clip(box, 0.0, float(size)).astype(np.float32)
    return out


# ----------------------------------------------------------------------------------------------------
# Clips
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClipPlan:
    """What clip ``index`` is made of (decided for the whole dataset at once)."""

    index: int
    clip_id: str
    split: str
    portrait: str
    speech: str
    emotion: str


@dataclass(frozen=True, eq=False)
class SyntheticClip:
    """One rendered clip, in memory."""

    plan: ClipPlan
    frames: np.ndarray = field(repr=False)  # (T, S, S, 3) uint8
    audio: np.ndarray = field(repr=False)  # (N,) float32, 16 kHz
    tracks: dict[str, np.ndarray] = field(repr=False)  # see the module docstring
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])


def _num_test(config: SyntheticConfig) -> int:
    if config.test_fraction <= 0 or config.num_clips < 2:
        return 0
    return int(min(max(1, round(config.num_clips * config.test_fraction)), config.num_clips - 1))


def plan_clips(config: SyntheticConfig) -> list[ClipPlan]:
    """Assigns portrait, speech clip, emotion and split to every clip index.

    The last ``round(num_clips * test_fraction)`` clips (at least one when ``test_fraction > 0`` and
    there are two clips or more) are ``test`` clips and use only the reserved (``test``) speech clips;
    train clips use only the others. Likewise portraits: held-out (``test``) portraits appear only in
    test clips (when the selection has none, test clips reuse the train portraits, with unseen speech).
    A share ``config.morphs`` of train clips animates a morph of two train portraits
    (:mod:`floatalk.data.morph`). Portraits and speech clips are cycled in seed-dependent orders so
    that each is used about equally often. Emotions ("balanced" plan) are an equal share of the clips
    in a shuffled order of their own, so a portrait shows several; the "cycled" plan of older datasets
    cycled them with the clip index, which pairs every portrait with one emotion when the number of
    portraits is a multiple of the number of emotions.
    """
    rng = np.random.default_rng(np.random.SeedSequence([config.seed, 0x5E7]))
    chosen = load_portraits(config.portraits)
    portraits = [p.name for p in chosen if p.split == "train"]
    held_out = [p.name for p in chosen if p.split == "test"]
    if not portraits:
        raise InputError("no training portraits selected: every chosen portrait is held out (split 'test')")
    speech = {s: [c.name for c in load_speech_clips(s)] for s in ("train", "test")}
    p_order = [portraits[i] for i in rng.permutation(len(portraits))]
    s_order = {s: [names[i] for i in rng.permutation(len(names))] for s, names in speech.items()}
    e_order = [EMOTIONS[i] for i in rng.permutation(len(EMOTIONS))]
    # a second stream, so that datasets without held-out portraits or morphs keep their old plans
    extra = np.random.default_rng(np.random.SeedSequence([config.seed, 0x5E8]))
    t_order = [held_out[i] for i in extra.permutation(len(held_out))]
    n_test = _num_test(config)
    # a third stream, so that the portraits, speech and morphs of a plan do not depend on emotion_plan
    e_stream = np.random.default_rng(np.random.SeedSequence([config.seed, 0xE307]))
    balanced = e_stream.permutation(np.arange(config.num_clips) % len(EMOTIONS))
    plans = []
    counts = {"train": 0, "test": 0}
    for i in range(config.num_clips):
        split = "test" if i >= config.num_clips - n_test else "train"
        k = counts[split]
        counts[split] += 1
        held = split == "test" and t_order
        portrait = t_order[k % len(t_order)] if held else p_order[i % len(p_order)]
        if split == "train" and config.morphs > 0 and len(portraits) > 1:
            morph, other, alpha = (
                extra.random(),
                extra.integers(len(portraits) - 1),
                extra.uniform(*config.morph_alpha),
            )
            if morph < config.morphs:
                others = [n for n in portraits if n != portrait]
                portrait = morph_name(portrait, others[int(other)], float(alpha))
        plans.append(
            ClipPlan(
                index=i,
                clip_id=f"syn{i:05d}",
                split=split,
                portrait=portrait,
                speech=s_order[split][k % len(s_order[split])],
                emotion=_plan_emotion(config, i, e_order, balanced),
            )
        )
    return plans


def _plan_emotion(config: SyntheticConfig, i: int, cycled: list[str], balanced: np.ndarray) -> str:
    """Clip i's emotion under config.emotion_plan (see plan_clips)."""
    if not config.emotions:
        return "neutral"
    if config.emotion_plan == "cycled":
        return cycled[i % len(cycled)]
    return EMOTIONS[int(balanced[i])]


def _smooth_curve(
    rng: np.random.Generator, t: np.ndarray, freqs: tuple[float, float] = (0.08, 0.5)
) -> np.ndarray:
    """A smooth curve in [-1, 1]: a sum of three slow sinusoids with random frequencies and phases."""
    f = rng.uniform(*freqs, size=3)
    phase = rng.uniform(0.0, 2 * np.pi, size=3)
    amp = rng.uniform(0.3, 1.0, size=3)
    amp /= amp.sum()
    return (amp[:, None] * np.sin(2 * np.pi * f[:, None] * t[None, :] + phase[:, None])).sum(axis=0)


def _blinks(rng: np.random.Generator, t: np.ndarray, duration: float) -> tuple[np.ndarray, list[float]]:
    out = np.zeros_like(t)
    starts = []
    s = rng.uniform(0.3, 2.5)
    while s < duration:
        d = rng.uniform(0.15, 0.25)
        tau = (t - s) / d
        close = _smoothstep(0.0, 0.3, tau)
        reopen = 1.0 - _smoothstep(0.55, 1.0, tau)
        out = np.maximum(out, np.minimum(close, reopen))
        starts.append(round(float(s), 4))
        s += d + rng.uniform(2.0, 6.0)
    return out, starts


def _emotion_curves(rng: np.random.Generator, emotion: str, t: np.ndarray) -> dict[str, np.ndarray]:
    wobble = 1.0 + 0.15 * _smooth_curve(rng, t, (0.05, 0.3))
    levels = {
        "neutral": (0.0, 0.0, 0.0),
        "happy": (rng.uniform(0.6, 1.0), rng.uniform(0.0, 0.2), 0.0),
        "sad": (-rng.uniform(0.5, 0.9), 0.0, rng.uniform(0.6, 1.0)),
        "angry": (-rng.uniform(0.3, 0.6), -rng.uniform(0.3, 0.6), -rng.uniform(0.6, 1.0)),
        "surprise": (0.0, rng.uniform(0.6, 1.0), 0.0),
    }[emotion]
    smile, raise_, inner = (np.clip(level * wobble, -1.0, 1.0) for level in levels)
    return {"smile": smile, "brow_raise": raise_, "brow_inner": inner}


def _clip_audio(
    config: SyntheticConfig, rng: np.random.Generator, speech: np.ndarray
) -> tuple[np.ndarray, dict[str, float]]:
    """Speech with random leading/trailing silence and gain; cut to the duration range if too long."""
    lo, hi = config.clip_seconds
    s_lo, s_hi = config.silence_seconds
    lead = rng.uniform(s_lo, s_hi)
    trail = rng.uniform(s_lo, s_hi)
    natural = lead + len(speech) / SAMPLE_RATE + trail
    duration = float(np.clip(natural, lo, hi))
    lead = min(lead, 0.25 * duration)
    trail = min(trail, 0.15 * duration)
    n = round(duration * SAMPLE_RATE)
    n_lead = round(lead * SAMPLE_RATE)
    room = max(0, n - n_lead - round(trail * SAMPLE_RATE))
    offset = 0
    if len(speech) > room:
        offset = int(rng.integers(0, len(speech) - room + 1))
        piece = np.array(speech[offset : offset + room], dtype=np.float64)
        fade = min(160, len(piece) // 2)
        if fade:
            ramp = np.linspace(0.0, 1.0, fade)
            piece[:fade] *= ramp
            piece[-fade:] *= ramp[::-1]
    else:
        piece = np.asarray(speech, dtype=np.float64)
    gain_db = rng.uniform(*config.gain_db)
    audio = rng.normal(0.0, 10 ** (-72 / 20), size=n)  # a faint noise floor instead of digital silence
    audio[n_lead : n_lead + len(piece)] += piece * 10 ** (gain_db / 20)
    audio = np.clip(audio, -1.0, 1.0)
    info = {
        "lead_seconds": round(n_lead / SAMPLE_RATE, 5),
        "speech_seconds": round(len(piece) / SAMPLE_RATE, 5),
        "speech_offset_seconds": round(offset / SAMPLE_RATE, 5),
        "gain_db": round(float(gain_db), 3),
    }
    return audio.astype(np.float32), info


def render_clip(config: SyntheticConfig, index: int, plan: ClipPlan | None = None) -> SyntheticClip:
    """Renders clip ``index`` of the dataset described by ``config`` in memory (a pure function).

    Args:
        config: The dataset config.
        index: Clip index in ``[0, config.num_clips)``.
        plan: The clip's plan if already computed (``plan_clips(config)[index]``).

    Returns:
        The clip: frames, audio (float32, 16 kHz) and ground-truth tracks.
    """
    from floatalk.io import audio_duration_frames

    if plan is None:
        if not 0 <= index < config.num_clips:
            raise IndexError(f"clip index {index} out of range for {config.num_clips} clips")
        plan = plan_clips(config)[index]
    rng = np.random.default_rng(np.random.SeedSequence([config.seed, 0xC11, index]))
    portrait = load_portraits([plan.portrait])[0]
    speech = next(c for c in load_speech_clips(plan.split) if c.name == plan.speech)
    audio, info = _clip_audio(config, rng, speech.audio)
    T = audio_duration_frames(len(audio), SAMPLE_RATE, FPS)
    t = (np.arange(T) + 0.5) / FPS
    envelope = mouth_from_audio(audio, T, lag_frames=config.mouth_lag_frames)
    mouth = envelope * (1.0 if plan.emotion == "surprise" else _CALM_MOUTH)
    # head motion: slow sinusoids, plus small nods following the speech energy
    intensity = rng.uniform(0.4, 1.0, size=len(POSE_COLUMNS))
    curves = np.stack([_smooth_curve(rng, t) for _ in POSE_COLUMNS], axis=1) * intensity
    kernel = np.exp(-0.5 * (np.arange(-12, 13) / 4.0) ** 2)
    nod = np.convolve(
        np.pad(envelope.astype(np.float64), 12, mode="edge"), kernel / kernel.sum(), mode="valid"
    )
    nod = nod - nod.mean() if T else nod
    pose = np.empty((T, len(POSE_COLUMNS)))
    pose[:, 0] = config.max_roll_deg * curves[:, 0]
    pose[:, 1] = config.max_yaw_deg * curves[:, 1]
    pose[:, 2] = config.max_pitch_deg * np.clip(0.75 * curves[:, 2] + 0.5 * nod, -1.0, 1.0)
    pose[:, 3] = config.max_shift * curves[:, 3]
    pose[:, 4] = config.max_shift * curves[:, 4]
    pose[:, 5] = 1.0 + config.max_scale * curves[:, 5]
    if plan.split == "train" and config.still_heads > 0 and T:
        # a still head: the pose of one frame held (its own stream, so other clips keep their plans)
        still = np.random.default_rng(np.random.SeedSequence([config.seed, 0x5711, index]))
        if still.random() < config.still_heads:
            pose[:] = pose[int(still.integers(T))]
    blink, blink_starts = _blinks(rng, t, T / FPS) if config.blinks else (np.zeros(T), [])
    tracks: dict[str, np.ndarray] = {"mouth_open": mouth, "pose": pose, "blink": blink}
    tracks.update(_emotion_curves(rng, plan.emotion, t))
    change = _emotion_change(config, plan, index, t)
    if change is not None:
        later, _, weight, after = change
        for name, curve in after.items():
            tracks[name] = (1.0 - weight) * tracks[name] + weight * curve
        calm = np.array([1.0 if e == "surprise" else _CALM_MOUTH for e in (plan.emotion, later)])
        tracks["mouth_open"] = envelope * ((1.0 - weight) * calm[0] + weight * calm[1])
    if config.emotion_changes > 0:
        mix = np.zeros((T, len(EMOTIONS)))
        mix[:, EMOTIONS.index(plan.emotion)] = 1.0
        if change is not None:
            mix[:, EMOTIONS.index(plan.emotion)] -= change[2]
            mix[:, EMOTIONS.index(change[0])] += change[2]
        tracks["emotion_mix"] = mix
    tracks = {k: np.asarray(v, dtype=np.float32) for k, v in tracks.items()}
    frames = render_frames(portrait, config.size, tracks, config.max_mouth_open, config.teeth)
    tracks.update(component_boxes(portrait, config.size, tracks, config.max_mouth_open))
    extra = {
        "portrait": plan.portrait,
        "speech": plan.speech,
        "speech_text": speech.text,
        "blink_starts": blink_starts,
        "pose_columns": list(POSE_COLUMNS),
        **info,
    }
    if change is not None:
        extra["emotion_after"] = change[0]
        extra["emotion_change_seconds"] = round(float(change[1]), 4)
    names = TRACK_NAMES + (("emotion_mix",) if "emotion_mix" in tracks else ())
    return SyntheticClip(plan, frames, audio, {k: tracks[k] for k in names}, extra)


#: Length of an emotion change (SyntheticConfig.emotion_changes), seconds: a smoothstep from one
#: emotion's expression to the other's.
EMOTION_TRANSITION_SECONDS = 0.4


def _emotion_change(
    config: SyntheticConfig, plan: ClipPlan, index: int, t: np.ndarray
) -> tuple[str, float, np.ndarray, dict[str, np.ndarray]] | None:
    """Clip `index`'s emotion change: (later emotion, change time in s, (T,) weight of the later
    emotion, the later emotion's expression curves), or None for a clip of one emotion."""
    if plan.split != "train" or config.emotion_changes <= 0 or not config.emotions or len(t) == 0:
        return None
    # its own stream, so that the other clips and this clip's other tracks keep their plans
    rng = np.random.default_rng(np.random.SeedSequence([config.seed, 0xE40C, index]))
    if rng.random() >= config.emotion_changes:
        return None
    others = [e for e in EMOTIONS if e != plan.emotion]
    later = others[int(rng.integers(len(others)))]
    duration = len(t) / FPS
    switch_at = float(rng.uniform(0.3, 0.7)) * duration
    u = np.clip((t - switch_at) / EMOTION_TRANSITION_SECONDS + 0.5, 0.0, 1.0)
    return later, switch_at, u * u * (3.0 - 2.0 * u), _emotion_curves(rng, later, t)


# ----------------------------------------------------------------------------------------------------
# Writing a dataset
# ----------------------------------------------------------------------------------------------------


def _write_npz(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    """Like ``np.savez`` but byte-reproducible (fixed zip timestamps)."""
    import io

    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        for name, array in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(array), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            zf.writestr(info, buf.getvalue())


def _check_existing(root: Path, config: SyntheticConfig) -> None:
    if not (root / "dataset.json").is_file():
        return
    info = read_dataset_info(root)
    previous = info.extra.get("config")
    if isinstance(previous, dict):  # fields added since that dataset was written take their defaults
        previous = {**SyntheticConfig().to_dict(), **previous}
    if info.source != "synthetic" or previous != config.to_dict():
        raise InputError(
            f"{str(root)!r} already holds a different dataset ({info.source}, config {previous}); "
            "write the synthetic dataset to a new folder"
        )


def write_synthetic_dataset(
    out_dir: str | os.PathLike[str],
    config: SyntheticConfig | None = None,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> list[ClipMeta]:
    """Writes the synthetic dataset (``dataset.json`` + clips) in the layout of :mod:`floatalk.data.layout`.

    Resumable: clips whose ``meta.json`` exists are skipped (a folder written with another config is
    refused). Each clip is filled in a staging folder and renamed into place when complete.

    Args:
        out_dir: Dataset folder (created if needed).
        config: What to make; defaults to ``SyntheticConfig()``.
        progress: Called as ``progress(done, total)`` after each clip.

    Returns:
        The clips' metadata, in index order.
    """
    config = SyntheticConfig() if config is None else config
    root = Path(out_dir)
    _check_existing(root, config)
    write_dataset_info(
        root,
        DatasetInfo(
            size=config.size,
            fps=FPS,
            sample_rate=SAMPLE_RATE,
            source="synthetic",
            extra={
                "config": config.to_dict(),
                "tracks": list(TRACK_NAMES) + (["emotion_mix"] if config.emotion_changes > 0 else []),
                "pose_columns": list(POSE_COLUMNS),
                "emotions": list(EMOTIONS) if config.emotions else ["neutral"],
            },
        ),
    )
    metas = []
    plans = plan_clips(config)
    for done, plan in enumerate(plans, start=1):
        final = clip_dir(root, plan.clip_id)
        if (final / "meta.json").is_file():
            metas.append(read_meta(final))
        else:
            clip = render_clip(config, plan.index, plan)
            stage = staging_dir(root, plan.clip_id)
            for i, frame in enumerate(clip.frames):
                write_frame(stage, i, frame, config.frame_format)
            write_audio(stage, clip.audio, SAMPLE_RATE)
            _write_npz(stage / "tracks.npz", clip.tracks)
            meta = ClipMeta(
                clip_id=plan.clip_id,
                num_frames=clip.num_frames,
                num_samples=len(clip.audio),
                size=config.size,
                frame_format=config.frame_format,
                split=plan.split,
                emotion=plan.emotion,
                source=f"synthetic:{config.seed}",
                extra={"index": plan.index, **clip.extra},
            )
            commit_clip(root, stage, meta)
            metas.append(meta)
        if progress is not None:
            progress(done, len(plans))
    return metas


def _main() -> None:  # pragma: no cover - manual use: python -m floatalk.data.synthetic OUT [N] [SIZE]
    import sys

    out = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 16
    size = int(sys.argv[3]) if len(sys.argv) > 3 else 128
    metas = write_synthetic_dataset(out, SyntheticConfig(size=size, num_clips=n))
    print(f"{len(metas)} clips in {out}: {sum(m.num_frames for m in metas)} frames")


if __name__ == "__main__":  # pragma: no cover
    _main()


def warp_basis(portrait_name: str, size: int) -> _Basis:
    """The portrait's precomputed warp maps at ``size`` (cached), as used by the renderer.

    For readers of this world that invert the renderer (:mod:`floatalk.evaluate.world_reader`), with
    :func:`head_positions`, :func:`local_positions` and :func:`jaw_positions`.
    """
    return _basis(portrait_name, size)


def sample_portrait(basis: _Basis, x: Any, y: Any) -> Any:
    """The portrait's colours (0..255) at pixel positions ``x``, ``y`` (F, S, S): (F, 3, S, S), torch."""
    return _sample(basis.image, x, y, basis.geometry.size)
