#!/usr/bin/env python
"""Choose the source detail transfer's settings (floatalk.detail) on *training* portraits.

The held-out portraits are for the final measurement only (tools/heldout_eval.py), so the low-pass
side c and the gate's tau are chosen here, on portraits of the training split speaking one held-out
speech clip: for each portrait the motion is sampled once (``floatalk generate`` defaults, seed 0),
every frame is decoded once, and each (c, tau) variant of the transfer is written as a 256² MP4 and
scored with ``floatalk evaluate identity`` (median dlib distance to the portrait, every 2nd frame).

Usage::

    .venv/bin/python tools/detail_sweep.py --out /tmp/sweep [--portraits astronaut,hopper,...]
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_PORTRAITS = "astronaut,hopper,obama,biden,faceapi_s2f1,faceapi_s5f1"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", default=str(REPO / "src" / "floatalk" / "assets" / "demo_weights"))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--portraits", default=DEFAULT_PORTRAITS)
    parser.add_argument("--speech", default="librivox_0930", help="a held-out speech clip")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--cutoffs", default="8,16,32")
    parser.add_argument("--taus", default="0.1,0.15,0.3,inf", help="inf: no gate")
    args = parser.parse_args()

    import torch
    from PIL import Image

    from floatalk.detail import transfer_detail
    from floatalk.evaluate import FaceDescriber, evaluate_identity
    from floatalk.io.image import image_to_tensor
    from floatalk.io.video import VideoWriter
    from floatalk.pipeline import FloatPipeline, frames_to_uint8

    from heldout_eval import padded_speech

    args.out.mkdir(parents=True, exist_ok=True)
    pipe = FloatPipeline.from_pretrained(args.weights)
    describer = FaceDescriber()
    speech = padded_speech(args.speech, args.out)
    variants = [(int(c), float(t)) for c in args.cutoffs.split(",") for t in args.taus.split(",")]
    scores: dict[str, dict[str, float]] = {}
    for name in args.portraits.split(","):
        portrait = REPO / "src" / "floatalk" / "assets" / "portraits" / f"{name}.jpg"
        photo = np.asarray(Image.open(portrait).convert("RGB"))
        captured: list[torch.Tensor] = []
        run = pipe.generate(
            photo, str(speech), crop=False, seed=0, output_size=pipe.image_size, on_motion=captured.append
        )
        for _ in run:
            pass
        source = pipe.encode_source(image_to_tensor(photo, pipe.image_size))
        full = image_to_tensor(photo, args.size)
        frames: dict[tuple[int, float], list[np.ndarray]] = {v: [] for v in variants}
        with torch.inference_mode():
            for latent in captured[0].split(8):
                image, grid = pipe.model.motion_ae.decode_with_warp(source, latent)
                for c, t in variants:
                    tau = 1e9 if math.isinf(t) else t
                    frames[(c, t)].append(frames_to_uint8(transfer_detail(image, grid, full, c, tau)))
        scores[name] = {}
        for (c, t), parts in frames.items():
            video = args.out / f"{name}_c{c}_t{t}.mp4"
            with VideoWriter(video, args.size, args.size, fps=pipe.fps) as writer:
                writer.write(np.concatenate(parts))
            report = evaluate_identity(portrait, video, every=2, describer=describer)
            scores[name][f"c{c} tau{t}"] = report.median_distance
            print(name, c, t, round(report.median_distance, 3), flush=True)
    keys = list(next(iter(scores.values())))
    summary = {k: float(np.median([scores[p][k] for p in scores])) for k in keys}
    (args.out / "sweep.json").write_text(json.dumps({"portraits": scores, "median": summary}, indent=1))
    for k, v in sorted(summary.items(), key=lambda kv: kv[1]):
        print(f"{k:16s} median identity {v:.3f}")


if __name__ == "__main__":
    main()
