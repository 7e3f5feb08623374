"""The controls of FLOAT acting on a model: emotion redirection, audio guidance and lambda-control.

Writes one PNG with three panels, all from one portrait, one speech clip and one seed:

A. Emotion redirection (paper §4.3): the same frame generated with each emotion label as the
   condition w_e (emotion guidance g_e = ``--emotion-scale``).
B. Audio guidance g_a (paper Eq. 14): the mouth opening measured with MediaPipe's face mesh on the
   generated frames (`floatalk.evaluate.MouthTracker`) over time, for several g_a, with the speech
   envelope; g_a = 0 with the speech condition zeroed as the speech-free baseline.
C. lambda-control (paper Eq. 15): one generated frame moved along the motion directions v_k whose
   coefficients vary most in the generated motion, by delta = -6s .. +6s (s = the coefficient's
   standard deviation over the clip, sigma_k in the figure).

Usage (the demo weights and the shipped assets by default):

    python tools/demo_figure.py --out docs/figures/demo-controls.png
    python tools/demo_figure.py --weights DIR --image PORTRAIT --audio SPEECH --out FIG.png
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import torch

from floatalk.options import GenerateOptions
from floatalk.pipeline import FloatPipeline, frames_to_uint8
from floatalk.weights import resolve_weights

ASSETS = Path(__file__).resolve().parents[1] / "src" / "floatalk" / "assets"
DEFAULT_IMAGE = ASSETS / "portraits" / "obama.jpg"
DEFAULT_AUDIO = ASSETS / "speech" / "arctic_a0009.flac"
EMOTIONS = ("neutral", "happy", "sad", "angry", "surprise")
AUDIO_SCALES = (0.0, 1.0, 2.0, 4.0)


class Session:
    """One portrait and speech clip, encoded once; motion sampled and decoded on demand."""

    def __init__(self, weights: Path, image: Path, audio: Path, seed: int, nfe: int):
        self.pipe = FloatPipeline.from_pretrained(weights)
        self.seed, self.nfe = seed, nfe
        options = GenerateOptions(crop=True)
        self.source = self.pipe.encode_source(self.pipe.prepare_portrait(str(image), options))
        self.wave = self.pipe.load_speech(str(audio)).read()
        self.audio = self.pipe.encode_audio(self.wave)

    def motion(
        self, emotion: str = "neutral", emotion_scale: float = 1.0, audio_scale: float = 2.0, zero_audio=False
    ) -> torch.Tensor:
        """Sampled latents (T, d)."""
        audio = self.audio
        if zero_audio:
            audio = dataclasses.replace(audio, features=torch.zeros_like(audio.features))
        windows = self.pipe.iter_motion(
            self.source,
            audio,
            self.pipe.emotion_probs(audio, emotion),
            nfe=self.nfe,
            audio_scale=audio_scale,
            emotion_scale=emotion_scale,
            seed=self.seed,
        )
        return torch.cat([w.latents[0] for w in windows])

    def frames(self, latents: torch.Tensor) -> np.ndarray:
        """(T, d) -> (T, H, W, 3) uint8."""
        return np.concatenate([frames_to_uint8(f) for f in self.pipe.iter_frames(self.source, latents)])


def _shown(path: Path) -> str:
    """The path relative to the working directory when inside it (for the saved numbers)."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def mouth_curve(frames: np.ndarray) -> np.ndarray:
    """Mouth opening per frame (inner-lip gap / inter-ocular distance; NaN where no face)."""
    from floatalk.evaluate import MouthTracker

    with MouthTracker() as tracker:
        return np.array([tracker.process(f)[0] for f in frames])


def make_figure(
    weights: Path,
    image: Path,
    audio: Path,
    out: Path,
    *,
    seed: int = 0,
    nfe: int = 10,
    emotion_scale: float = 2.0,
    frame: float = 0.5,
    directions: int = 3,
    zoom: int = 3,
) -> dict:
    """Write the figure to `out`; returns the numbers it shows (also saved next to it as JSON)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from floatalk.evaluate.lipsync import pearson, speech_envelope

    s = Session(weights, image, audio, seed, nfe)
    T = s.audio.num_frames
    t_show = min(T - 1, int(frame * T))
    numbers: dict = {"weights": _shown(weights), "image": _shown(image), "audio": _shown(audio), "seed": seed}

    # A: emotion redirection, the frame at t_show for each label
    emo_frames, emo_latents = [], {}
    for label in EMOTIONS:
        lat = s.motion(label, emotion_scale)
        emo_latents[label] = lat
        emo_frames.append(s.frames(lat[t_show : t_show + 1])[0])
    neutral = emo_latents["neutral"]
    numbers["emotion_latent_distance_to_neutral"] = {
        k: float((v - neutral).norm(dim=-1).mean()) for k, v in emo_latents.items()
    }

    # B: audio guidance, the measured mouth opening over time
    fps = s.pipe.fps
    envelope = speech_envelope(s.wave, s.pipe.sample_rate, fps, T)
    curves = {}
    for g in AUDIO_SCALES:
        curves[f"g_a = {g:g}"] = mouth_curve(s.frames(s.motion(audio_scale=g)))
    curves["speech condition zeroed"] = mouth_curve(s.frames(s.motion(zero_audio=True)))
    numbers["mouth_vs_envelope_r"] = {k: pearson(v, envelope) for k, v in curves.items()}
    numbers["mouth_opening_std"] = {k: float(np.nanstd(v)) for k, v in curves.items()}

    # C: lambda-control along the directions that vary most in the generated motion
    base = s.motion()
    basis = s.pipe.model.motion_ae.dec.direction
    with torch.inference_mode():
        coeffs = basis.coefficients(base.float())  # (T, M)
    std = coeffs.std(dim=0)
    top = [int(k) for k in std.argsort(descending=True)[:directions]]
    deltas = (-6.0, -3.0, 0.0, 3.0, 6.0)
    grid_rows = []
    for k in top:
        row = []
        for d in deltas:
            lat = s.pipe.edit_motion(base[t_show : t_show + 1], s.source, {k: d * float(std[k])})
            row.append(s.frames(lat)[0])
        grid_rows.append(row)
    numbers["lambda_directions"] = {str(k): float(std[k]) for k in top}

    def big(img: np.ndarray) -> np.ndarray:
        return img.repeat(zoom, 0).repeat(zoom, 1)

    fig = plt.figure(figsize=(12, 5.4 + 2.0 * directions), dpi=100)
    sub = fig.subfigures(3, 1, height_ratios=(1.6, 1.3, 0.75 * directions))
    axes = sub[0].subplots(2, len(EMOTIONS))
    for j, (label, img) in enumerate(zip(EMOTIONS, emo_frames)):
        axes[0][j].imshow(big(img))
        axes[0][j].set_title(label, fontsize=10)
        diff = np.abs(img.astype(np.float32) - emo_frames[0].astype(np.float32)).mean(-1)
        axes[1][j].imshow(big(np.clip(diff * 4, 0, 255).astype(np.uint8)), cmap="magma", vmin=0, vmax=255)
        for a in axes[:, j]:
            a.set_xticks([])
            a.set_yticks([])
    axes[1][0].set_ylabel("|x - neutral| x 4", fontsize=9)
    sub[0].suptitle(
        f"A. Emotion redirection: frame {t_show} of the same speech, condition = label, "
        f"g_e = {emotion_scale:g}",
        fontsize=11,
    )
    ax = sub[1].subplots(1, 1)
    time = np.arange(T) / fps
    for name, c in curves.items():
        r = numbers["mouth_vs_envelope_r"][name]
        style = "k:" if "zeroed" in name else "-"
        ax.plot(time, c, style, lw=1.3, label=f"{name} (r = {r:.2f})")
    env = envelope - envelope.min()
    env = env / (env.max() or 1.0) * np.nanmax([np.nanmax(c) for c in curves.values()])
    ax.fill_between(time, 0, env, color="0.85", label="speech envelope (scaled)")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("mouth opening\n(lip gap / eye distance)")
    ax.legend(fontsize=8, ncol=3, loc="upper right")
    sub[1].suptitle(
        "B. Audio guidance g_a: mouth opening measured on the frames (MediaPipe), r vs the speech envelope",
        fontsize=11,
    )
    axes = sub[2].subplots(directions, len(deltas), squeeze=False)
    for i, (k, row) in enumerate(zip(top, grid_rows)):
        for j, (d, img) in enumerate(zip(deltas, row)):
            a = axes[i][j]
            a.imshow(big(img))
            a.set_xticks([])
            a.set_yticks([])
            if i == 0:
                a.set_title(rf"$\delta = {d:+g}\,\sigma_k$", fontsize=10)
            if j == 0:
                a.set_ylabel(f"v_{k}", fontsize=10)
    sub[2].suptitle(
        f"C. lambda-control: frame {t_show} moved along the {directions} directions that vary most",
        fontsize=11,
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    out.with_suffix(".json").write_text(json.dumps(numbers, indent=2) + "\n")
    return numbers


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", help="weights folder (default: as floatalk generate)")
    p.add_argument("--image", default=str(DEFAULT_IMAGE))
    p.add_argument("--audio", default=str(DEFAULT_AUDIO))
    p.add_argument("--out", default="docs/figures/demo-controls.png")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--nfe", type=int, default=10)
    p.add_argument("--emotion-scale", type=float, default=2.0)
    args = p.parse_args(argv)
    weights = resolve_weights(args.weights)
    numbers = make_figure(
        Path(weights),
        Path(args.image),
        Path(args.audio),
        Path(args.out),
        seed=args.seed,
        nfe=args.nfe,
        emotion_scale=args.emotion_scale,
    )
    print(json.dumps(numbers, indent=2))
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
