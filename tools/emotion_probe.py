"""Does the emotion label steer the expression, or does the output copy the portrait's? (issue 14)

For each of the first N test clips of a synthetic-world dataset (portrait = the clip's first frame,
speech = its sound) and each of the world's five emotions, generates the clip with that label
(``emotion=<label>``, ``emotion_scale`` g_e) and reads every output frame back with the world reader
(:class:`floatalk.evaluate.world_reader.WorldReader`, the renderer fitted to the frame). Prints, per
requested label, the share of frames read as the requested emotion ("agreement") and the share read
as the portrait's own emotion ("source"): a model that ignores the label has agreement ~ 0 and
source ~ 1 for every label but the source's own.

    .venv/bin/python tools/emotion_probe.py data/syn64-bal --weights runs/demo-v8-weights --clips 4
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from floatalk.data.layout import clip_dir, list_clips, read_audio, read_frames
from floatalk.evaluate.world_reader import EXPRESSION_CENTRES, WorldReader
from floatalk.options import GenerateOptions
from floatalk.pipeline import FloatPipeline


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data")
    parser.add_argument("--weights", action="append", required=True, help="NAME=DIR or DIR (repeatable)")
    parser.add_argument("--clips", type=int, default=4)
    parser.add_argument("--scale", type=float, default=2.0, help="emotion guidance g_e")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    began = time.perf_counter()
    dataset = json.loads((Path(args.data) / "dataset.json").read_text())
    max_open = dataset.get("extra", {}).get("config", {}).get("max_mouth_open", 0.4)
    metas = list_clips(args.data, "test")[: args.clips]
    labels = list(EXPRESSION_CENTRES)
    print(f"{len(metas)} test clips of {args.data}, g_e {args.scale:g}; world reader per frame\n")
    for spec in args.weights:
        name, _, folder = spec.rpartition("=")
        name = name or folder
        pipe = FloatPipeline.from_pretrained(folder)
        agree = {k: [] for k in labels}
        source = {k: [] for k in labels}
        for meta in metas:
            folder_c = clip_dir(args.data, meta.clip_id)
            image = read_frames(folder_c, [0], meta.frame_format)[0]
            audio, _ = read_audio(folder_c)
            reader = WorldReader(meta.extra["portrait"], image.shape[0], max_open)
            for label in labels:
                opts = GenerateOptions(
                    crop=False,
                    seed=0,
                    output_size=pipe.image_size,
                    nfe=10,
                    emotion=label,
                    emotion_scale=args.scale,
                )
                frames = np.concatenate(list(pipe.generate(image, audio, opts)))
                read = np.array(reader.read(frames).emotions())
                agree[label].append(float((read == label).mean()))
                source[label].append(float((read == meta.emotion).mean()))
        print(f"**{name}** ({folder})\n")
        print("| requested | agreement | read as the portrait's own emotion |")
        print("|---|---|---|")
        for label in labels:
            print(f"| {label} | {np.mean(agree[label]):.2f} | {np.mean(source[label]):.2f} |")
        mean = np.mean([np.mean(agree[k]) for k in labels])
        print(f"| mean | {mean:.2f} | |\n")
    print(f"sources: {', '.join(f'{m.clip_id} {m.emotion}' for m in metas)}")
    print(f"({time.perf_counter() - began:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
