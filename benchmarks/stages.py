"""Per-stage timing of the released architecture (random weights) on this machine.

    python benchmarks/stages.py [--seconds 2] [--device cpu] [--threads N]

Stages: source encoding, speech features, speech emotion, motion sampling (nfe=10, guidance on:
batch 3 per evaluation), decoding (per frame). Prints a Markdown table row per stage.
Weights are random, which does not change the cost.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from floatalk.config import preset
from floatalk.models.float_model import FloatModel
from floatalk.pipeline import FloatPipeline


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="audio length")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--nfe", type=int, default=10)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    pipe = FloatPipeline(FloatModel(preset("float-512")), device=args.device)
    image = torch.rand(1, 3, 512, 512) * 2 - 1
    rng = np.random.default_rng(0)
    wave = (0.1 * rng.standard_normal(int(16000 * args.seconds))).astype(np.float32)

    pipe.encode_source(image)  # warm-up
    source, t_src = timed(lambda: pipe.encode_source(image))
    audio, t_audio = timed(lambda: pipe.encode_audio(wave))
    emotion, t_emo = timed(lambda: pipe.emotion_probs(audio, "auto"))
    latents, t_sample = timed(
        lambda: torch.cat(
            [w.latents for w in pipe.iter_motion(source, audio, emotion, nfe=args.nfe, seed=0)], 1
        )
    )
    frames = latents[0]
    _, t_decode = timed(lambda: [f for f in pipe.iter_frames(source, frames)])
    n = frames.shape[0]
    print(
        f"| stage | seconds ({args.seconds:g} s audio, {n} frames, {args.device}, "
        f"{torch.get_num_threads()} threads) |"
    )
    print("|---|---|")
    for name, t in [
        ("source encoding", t_src),
        ("speech features", t_audio),
        ("speech emotion", t_emo),
        (f"motion sampling (nfe {args.nfe})", t_sample),
        ("decoding", t_decode),
    ]:
        print(f"| {name} | {t:.2f} |")
    total = t_src + t_audio + t_emo + t_sample + t_decode
    print(f"| decoding per frame | {t_decode / n:.3f} |")
    print(f"| total / frames per second | {total:.2f} / {n / total:.2f} fps |")


if __name__ == "__main__":
    main()
