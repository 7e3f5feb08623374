#!/usr/bin/env python
"""Stage 1 on its own, on held-out faces: reconstruction L1 and identity of the reconstructions (issue #11).

For every ``test`` clip of a synthetic dataset (``floatalk prepare --synthetic``; with held-out
portraits those are the only clips that show them), the motion auto-encoder rebuilds every
``--every``-th frame from the clip's first frame (``D(w_{S->r} + w_{r->D}, feats(S))``). Reports, per
portrait: the mean L1 of the reconstructions (pixels in [-1, 1]) beside copying the first frame, and
the median dlib identity distance between the 512 px portrait and the reconstructions, beside the
same for the ground-truth frames (what a perfect stage 1 would score at this size).

Usage::

    .venv/bin/python tools/stage1_heldout.py WEIGHTS_OR_RUN DATA [--every 4] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="weights folder (with motion_ae/) or stage-1 run folder")
    parser.add_argument("data", type=Path)
    parser.add_argument("--every", type=int, default=4)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    import torch

    from floatalk.data.layout import clip_dir, list_clips, read_frame
    from floatalk.data.synthetic import load_portraits
    from floatalk.evaluate import FaceDescriber, identity_distance
    from floatalk.train.autoencoder import load_motion_autoencoder

    model = load_motion_autoencoder(args.model)
    size = model.config.size
    describer = FaceDescriber()
    refs: dict[str, np.ndarray] = {}
    rows: dict[str, dict[str, list[float]]] = {}
    for meta in list_clips(args.data, "test"):
        portrait = meta.extra["portrait"]
        if portrait not in refs:
            refs[portrait] = describer.describe(np.asarray(load_portraits([portrait])[0].image))
        folder = clip_dir(args.data, meta.clip_id)
        picks = range(0, meta.num_frames, args.every)
        frames = np.stack([read_frame(folder, i, meta.frame_format) for i in picks])
        x = torch.from_numpy(frames).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)
        if x.shape[-1] != size:
            x = torch.nn.functional.interpolate(x, size=(size, size), mode="area")
        with torch.no_grad():
            rec = model.decode(model.encode_source(x[:1]), model.encode_motion(x)).clamp(-1, 1)
        row = rows.setdefault(portrait, {"l1": [], "copy_l1": [], "id_rec": [], "id_gt": []})
        row["l1"].append(float((rec - x).abs().mean()))
        row["copy_l1"].append(float((x[:1] - x).abs().mean()))
        rec_u8 = rec.add(1).mul(127.5).round().byte().permute(0, 2, 3, 1).numpy()
        gt_u8 = x.add(1).mul(127.5).round().byte().permute(0, 2, 3, 1).numpy()
        for key, images in (("id_rec", rec_u8), ("id_gt", gt_u8)):
            d = [
                identity_distance(refs[portrait], e) for e in map(describer.describe, images) if e is not None
            ]
            row[key].append(float(np.median(d)) if d else float("nan"))
    summary = {
        p: {
            "clips": len(v["l1"]),
            "l1": float(np.mean(v["l1"])),
            "copy_l1": float(np.mean(v["copy_l1"])),
            "identity_reconstruction": float(np.nanmedian(v["id_rec"])),
            "identity_ground_truth": float(np.nanmedian(v["id_gt"])),
        }
        for p, v in sorted(rows.items())
    }
    print(f"model {args.model} ({size}²), data {args.data}, every {args.every}th frame")
    print("| portrait | clips | L1 | copy L1 | identity: reconstruction | identity: ground-truth frames |")
    print("|---|---|---|---|---|---|")
    for p, s in summary.items():
        print(
            f"| `{p}` | {s['clips']} | {s['l1']:.4f} | {s['copy_l1']:.4f} | "
            f"{s['identity_reconstruction']:.3f} | {s['identity_ground_truth']:.3f} |"
        )
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1) + "\n")


if __name__ == "__main__":
    main()
