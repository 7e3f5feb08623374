#!/usr/bin/env python
"""Identity and lip sync of weights folders on the held-out portraits with held-out speech (issue #11).

Every portrait of the synthetic world marked ``test`` in ``assets/portraits/landmarks.json`` (never
animated in a training clip) speaks every held-out speech clip (``test`` in
``assets/speech/manifest.json``, never heard in training), padded with 0.6 s of silence at each end,
through ``FloatPipeline.write_video`` with the defaults of ``floatalk generate`` (seed 0, the given
output size), except the crop: the portrait files are already 512 px crops framed exactly as
``floatalk generate`` frames a photo (``tools/build_synthetic_assets.py``), so they are given as
such (``--no-crop``); ``--crop`` crops them again, which frames the face smaller. Each video is measured with

* ``floatalk evaluate identity``: the median dlib distance between the portrait and the frames, and
  the resize-only ceiling at the model's own resolution;
* ``floatalk evaluate lipsync``: Pearson r of the mouth opening with the speech envelope (best lag
  within +-4 frames) and the fraction of silent frames whose mouth is closed.

Writes ``OUT/results.json`` (every clip, per-portrait and overall summaries, per weights folder),
``OUT/results.md`` and, with ``--figure``, a PNG: per portrait the source, then frames of each
weights folder's video of the first held-out speech clip.

Usage::

    .venv/bin/python tools/heldout_eval.py --weights new=src/floatalk/assets/demo_weights \\
        --weights old=runs/demo-v1/src/floatalk/assets/demo_weights --out /tmp/heldout \\
        --figure docs/figures/demo-heldout-identity.png
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
PAD_SECONDS = 0.6


def padded_speech(name: str, out: Path) -> Path:
    import wave

    from floatalk.data.synthetic import SAMPLE_RATE, load_speech_clips

    clip = next(c for c in load_speech_clips("test") if c.name == name)
    pad = np.zeros(round(PAD_SECONDS * SAMPLE_RATE), np.float32)
    pcm = np.clip(np.round(np.concatenate([pad, clip.audio, pad]) * 32767), -32768, 32767).astype("<i2")
    path = out / f"speech_{name}.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        w.writeframes(pcm.tobytes())
    return path


def silence_openings(video: Path, speech: Path, portrait: Path) -> dict[str, float]:
    """Median mouth opening in the silent and in the speaking frames, and the portrait's own.

    A portrait whose lips are parted (a smile showing teeth) has that opening as its "closed" mouth:
    the world animates its lips from there. So "closed in silence" reads best against the portrait's
    own opening. Silent frames: the speech envelope more than ``SILENCE_DB`` below its loudest frame,
    as in ``floatalk evaluate lipsync``.
    """
    from PIL import Image

    from floatalk.evaluate import mouth_opening, speech_envelope, track_mouth
    from floatalk.evaluate.lipsync import SILENCE_DB
    from floatalk.io import load_audio

    track = track_mouth(video).opening
    env = speech_envelope(load_audio(speech, 16000), 16000, 25.0, len(track))
    level = 20 * np.log10(np.maximum(env, 1e-12))
    silent = level < level.max() - SILENCE_DB
    with Image.open(portrait) as im:
        own = float(mouth_opening([np.asarray(im.convert("RGB"))])[0])
    return {
        "opening_silent": float(np.nanmedian(track[silent])) if silent.any() else float("nan"),
        "opening_speaking": float(np.nanmedian(track[~silent])),
        "opening_portrait": own,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--weights",
        action="append",
        required=True,
        metavar="LABEL=DIR[,no-detail]",
        help="a weights folder to evaluate (repeatable); ',no-detail' generates with --no-detail",
    )
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--size", type=int, default=256, help="output side (floatalk generate --size)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--nfe", type=int, default=None, help="default: floatalk generate's")
    parser.add_argument("--figure", type=Path, default=None)
    parser.add_argument("--frames", type=int, default=5, help="frames per video in the figure")
    parser.add_argument("--every", type=int, default=2, help="identity: describe every N-th frame")
    parser.add_argument("--crop", action="store_true", help="crop the (already cropped) portraits again")
    args = parser.parse_args()

    import torch

    from floatalk.data.synthetic import load_portraits, load_speech_clips
    from floatalk.evaluate import FaceDescriber, evaluate_identity, evaluate_lipsync
    from floatalk.options import GenerateOptions
    from floatalk.pipeline import FloatPipeline

    torch.manual_seed(0)
    args.out.mkdir(parents=True, exist_ok=True)
    portraits = [p.name for p in load_portraits(split="test")]
    speech = [c.name for c in load_speech_clips("test")]
    audio = {name: padded_speech(name, args.out) for name in speech}
    describer = FaceDescriber()
    results: dict[str, dict] = {}
    for spec in args.weights:
        label, _, folder = spec.partition("=")
        folder, _, flag = folder.partition(",")
        if flag not in ("", "no-detail"):
            parser.error(f"unknown weights flag {flag!r} in {spec!r}; the only one is no-detail")
        pipe = FloatPipeline.from_pretrained(folder)
        options = GenerateOptions(
            seed=args.seed, output_size=args.size, crop=args.crop, detail=flag != "no-detail"
        )
        if args.nfe is not None:
            options = options.replace(nfe=args.nfe)
        clips = []
        for portrait in portraits:
            image = REPO / "src" / "floatalk" / "assets" / "portraits" / f"{portrait}.jpg"
            for name in speech:
                video = args.out / f"{label}_{portrait}_{name}.mp4"
                t0 = time.perf_counter()
                if not video.exists():
                    pipe.write_video(image, audio[name], video, options)
                gen_s = time.perf_counter() - t0
                ident = evaluate_identity(
                    image,
                    video,
                    every=args.every,
                    ceiling_size=pipe.image_size,
                    crop=args.crop,
                    describer=describer,
                )
                lip = evaluate_lipsync(video)
                rest = silence_openings(video, audio[name], image)
                clips.append(
                    {
                        "portrait": portrait,
                        "speech": name,
                        "identity_median": ident.median_distance,
                        "identity_ceiling": ident.ceiling_distance,
                        "face_found_fraction": ident.face_found_fraction,
                        "r_envelope": lip.r_envelope,
                        "best_lag": lip.best_lag,
                        "closed_during_silence": lip.closed_during_silence,
                        **rest,
                        "generate_seconds": round(gen_s, 2),
                    }
                )
                print(json.dumps({"weights": label, **clips[-1]}), flush=True)
        per_portrait = {}
        for portrait in portraits:
            mine = [c for c in clips if c["portrait"] == portrait]
            per_portrait[portrait] = {
                "identity_median": float(np.nanmedian([c["identity_median"] for c in mine])),
                "identity_ceiling": mine[0]["identity_ceiling"],
                "r_envelope_mean": float(np.nanmean([c["r_envelope"] for c in mine])),
                "closed_during_silence_mean": float(
                    np.nanmean(
                        [
                            np.nan if c["closed_during_silence"] is None else c["closed_during_silence"]
                            for c in mine
                        ]
                    )
                ),
                "opening_silent": float(np.nanmedian([c["opening_silent"] for c in mine])),
                "opening_speaking": float(np.nanmedian([c["opening_speaking"] for c in mine])),
                "opening_portrait": mine[0]["opening_portrait"],
            }
        results[label] = {
            "weights": folder,
            "detail": options.detail,
            "clips": clips,
            "portraits": per_portrait,
            "identity_median_of_portraits": float(
                np.median([v["identity_median"] for v in per_portrait.values()])
            ),
            "r_envelope_mean": float(np.nanmean([c["r_envelope"] for c in clips])),
            "closed_during_silence_mean": float(
                np.nanmean(
                    [
                        np.nan if c["closed_during_silence"] is None else c["closed_during_silence"]
                        for c in clips
                    ]
                )
            ),
        }
    (args.out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    lines = []
    for label, res in results.items():
        lines.append(f"### {label} ({res['weights']})\n")
        lines.append(
            "| held-out portrait | identity distance (median) | resize-only ceiling "
            "| r vs envelope (mean) | opening: silent / speaking / portrait | closed in silence (< 0.05) |"
        )
        lines.append("|---|---|---|---|---|---|")
        for portrait, v in res["portraits"].items():
            lines.append(
                f"| `{portrait}` | {v['identity_median']:.3f} | {v['identity_ceiling']:.3f} | "
                f"{v['r_envelope_mean']:.3f} | {v['opening_silent']:.3f} / {v['opening_speaking']:.3f} / "
                f"{v['opening_portrait']:.3f} | {v['closed_during_silence_mean']:.2f} |"
            )
        lines.append(
            f"| **all** | **{res['identity_median_of_portraits']:.3f}** (median of portraits) | | "
            f"**{res['r_envelope_mean']:.3f}** | | {res['closed_during_silence_mean']:.2f} |\n"
        )
    (args.out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    if args.figure is not None:
        write_figure(args, results, portraits, speech[0])


def write_figure(args: argparse.Namespace, results: dict, portraits: list[str], speech: str) -> None:
    from PIL import Image, ImageDraw

    from floatalk.io.video_reader import read_video_frames

    side = 128
    rows = []
    for portrait in portraits:
        src = Image.open(REPO / "src" / "floatalk" / "assets" / "portraits" / f"{portrait}.jpg").convert(
            "RGB"
        )
        tiles = [np.asarray(src.resize((side, side), Image.Resampling.LANCZOS))]
        for label in results:
            frames = read_video_frames(args.out / f"{label}_{portrait}_{speech}.mp4")
            picks = np.linspace(len(frames) * 0.15, len(frames) * 0.85, args.frames).round().astype(int)
            for i in picks:
                tiles.append(
                    np.asarray(Image.fromarray(frames[i]).resize((side, side), Image.Resampling.LANCZOS))
                )
        rows.append(np.concatenate(tiles, 1))
    grid = np.concatenate(rows, 0)
    head = Image.new("RGB", (grid.shape[1], 20), (255, 255, 255))
    draw = ImageDraw.Draw(head)
    draw.text((4, 4), "source", fill=(0, 0, 0))
    for k, label in enumerate(results):
        draw.text((side * (1 + k * args.frames) + 4, 4), f"{label}: frames of '{speech}'", fill=(0, 0, 0))
    out = np.concatenate([np.asarray(head), grid], 0)
    args.figure.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(out).save(args.figure, optimize=True)
    print(f"figure: {args.figure}")


if __name__ == "__main__":
    main()
