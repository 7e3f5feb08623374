"""Can a stage-1 auto-encoder move a face to another expression? (issue 14)

For each of the first N test clips of a synthetic-world dataset (the driving clip), a test clip of the
same portrait with another emotion gives the source frame (its first frame); every other frame of
the driving clip is rebuilt by the auto-encoder from that source, and the world reader
(floatalk.evaluate.world_reader) reads each frame's emotion. Prints per pair the share of rebuilt
frames read as the driving clip's emotion (what a motion latent that carries the expression gives)
and as the source's (what an auto-encoder that keeps the source's expression gives), and the same
for the driving clip's own frames (the reader's accuracy), and the **transfer**: the share of the way
from the source's expression to the driving frame's that the rebuilt frame's expression went (the
world reader's (smile, brow raise, inner brow), projected on the line between the two; 0 = the
source's expression kept, 1 = the driving frame's), which also shows a partial move.

    .venv/bin/python tools/expression_transfer.py data/syn64-bal runs/demo-v2-weights --clips 8
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from floatalk.data.layout import clip_dir, list_clips, read_frames
from floatalk.evaluate.world_reader import WorldReader
from floatalk.train.autoencoder import load_motion_autoencoder


def rebuilt(model, source: np.ndarray, frames: np.ndarray) -> np.ndarray:
    """(T, S, S, 3) uint8 frames rebuilt from one (S, S, 3) source frame."""
    x = torch.from_numpy(np.concatenate([source[None], frames])).permute(0, 3, 1, 2).float() / 127.5 - 1
    with torch.no_grad():
        rec = model.decode(model.encode_source(x[:1]), model.encode_motion(x[1:])).clamp(-1, 1)
    return rec.add(1).mul(127.5).round().byte().permute(0, 2, 3, 1).numpy()


def transfer_share(rebuilt: np.ndarray, source: np.ndarray, driving: np.ndarray) -> float:
    """Mean over frames of how far (T, 3) `rebuilt` expressions went from the (3,) `source` expression
    towards the (T, 3) `driving` ones: the projection on source -> driving over its length (0 = kept
    the source's, 1 = reached the driving frame's). Frames whose two expressions nearly agree (a gap
    under 0.2) are left out; NaN if none is left."""
    gap = driving - source
    length = (gap**2).sum(1)
    keep = length > 0.04
    if not keep.any():
        return float("nan")
    return float(np.mean(((rebuilt - source) * gap).sum(1)[keep] / length[keep]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data")
    parser.add_argument("weights", nargs="+", help="weights folders with motion_ae/, or stage-1 run folders")
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--every", type=int, default=2, help="read every N-th frame")
    parser.add_argument("--split", default="test", help="test (held-out faces) or train")
    args = parser.parse_args(argv)
    began = time.perf_counter()
    dataset = json.loads((Path(args.data) / "dataset.json").read_text())
    max_open = dataset.get("extra", {}).get("config", {}).get("max_mouth_open", 0.4)
    metas = list_clips(args.data, args.split)
    pairs = []
    for meta in metas[: args.clips]:
        other = next(
            (o for o in metas if o.extra["portrait"] == meta.extra["portrait"] and o.emotion != meta.emotion),
            None,
        )
        if other is not None:
            pairs.append((meta, other))
    models = {w: load_motion_autoencoder(w) for w in args.weights}
    header = "| driving clip | driving emotion | source emotion | real frames read right |"
    header += "".join(f" {w}: = driving | {w}: = source | {w}: transfer |" for w in args.weights)
    print(header)
    print("|---" * (4 + 3 * len(args.weights)) + "|")
    totals = {w: [] for w in args.weights}
    transfers = {w: [] for w in args.weights}
    for meta, other in pairs:
        frames = read_frames(
            clip_dir(args.data, meta.clip_id), range(0, meta.num_frames, args.every), meta.frame_format
        )
        source = read_frames(clip_dir(args.data, other.clip_id), [0], other.frame_format)[0]
        reader = WorldReader(meta.extra["portrait"], frames.shape[1], max_open)
        reading = reader.read(frames)
        truth = np.array(reading.emotions())
        source_expression = reader.read(source[None]).expression[0]
        row = f"| {meta.clip_id} | {meta.emotion} | {other.emotion} | {np.mean(truth == meta.emotion):.2f} |"
        for w, model in models.items():
            got = reader.read(rebuilt(model, source, frames))
            labels = np.array(got.emotions())
            share = transfer_share(got.expression, source_expression, reading.expression)
            totals[w].append(float(np.mean(labels == meta.emotion)))
            transfers[w].append(share)
            row += f" {np.mean(labels == meta.emotion):.2f} | {np.mean(labels == other.emotion):.2f} |"
            row += f" {share:.2f} |"
        print(row, flush=True)
    print(
        "\nmean share read as the driving emotion: "
        + ", ".join(f"{w} {np.mean(v):.2f}" for w, v in totals.items())
    )
    print("mean transfer: " + ", ".join(f"{w} {np.nanmean(v):.2f}" for w, v in transfers.items()))
    print(f"({time.perf_counter() - began:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
