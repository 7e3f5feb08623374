"""How well the world reader (floatalk.evaluate.world_reader) reads a prepared synthetic dataset's test
clips, and how much of the world's head pose and expression the stage-1 auto-encoder keeps.

For each of the first N test clips: the reader on the clip's own frames, and on the frames rebuilt by
the motion auto-encoder of WEIGHTS (source = the clip's first frame, driving = every frame), against
the ground-truth tracks. Prints per angle the correlation, the slope of the reading on the truth and
the mean absolute error (degrees), the emotion agreement per frame (nearest expression centre vs the
clip's label) and the mean fit residual.

    .venv/bin/python tools/world_reader_check.py data/syn64-id runs/demo-v2-weights --clips 8
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from floatalk.data.layout import clip_dir, list_clips, read_frames
from floatalk.evaluate.world_reader import WorldReader
from floatalk.train.autoencoder import load_motion_autoencoder

ANGLES = {"yaw": 1, "pitch": 2, "roll": 0}  # columns of the world's pose track


def rebuilt(model, frames: np.ndarray) -> np.ndarray:
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)
    with torch.no_grad():
        rec = model.decode(model.encode_source(x[:1]), model.encode_motion(x)).clamp(-1, 1)
    return rec.add(1).mul(127.5).round().byte().permute(0, 2, 3, 1).numpy()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data")
    parser.add_argument("weights", help="weights folder with motion_ae/ (or a stage-1 run folder)")
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    began = time.perf_counter()
    model = load_motion_autoencoder(args.weights)
    kinds = ("the clips' frames", "stage-1 reconstructions")
    truth, read = [], {k: [] for k in kinds}
    agree, residual = {k: [] for k in kinds}, {k: [] for k in kinds}
    for meta in list_clips(args.data, "test")[: args.clips]:
        folder = clip_dir(args.data, meta.clip_id)
        frames = read_frames(folder, range(meta.num_frames), meta.frame_format)
        truth.append(np.load(folder / "tracks.npz")["pose"].astype(np.float64))
        reader = WorldReader(meta.extra["portrait"], meta.size)
        for kind, images in zip(kinds, (frames, rebuilt(model, frames))):
            reading = reader.read(images)
            read[kind].append(reading.pose)
            agree[kind].append(np.mean([e == meta.emotion for e in reading.emotions()]))
            residual[kind].append(float(reading.residual.mean()))
        print(f"[{time.perf_counter() - began:5.0f} s] {meta.clip_id}", flush=True)
    gt = np.concatenate(truth)
    print(f"\n{len(truth)} test clips of {args.data}, stage 1 of {args.weights}\n")
    print(
        "| frames | "
        + " | ".join(f"{a} r / slope / MAE" for a in ANGLES)
        + " | emotion agreement | residual |"
    )
    print("|---|" + "---|" * (len(ANGLES) + 2))
    for kind in kinds:
        fit = np.concatenate(read[kind])
        cells = []
        for col in ANGLES.values():
            r = np.corrcoef(gt[:, col], fit[:, col])[0, 1]
            slope = np.polyfit(gt[:, col], fit[:, col], 1)[0]
            cells.append(f"{r:.3f} / {slope:.2f} / {np.abs(gt[:, col] - fit[:, col]).mean():.2f}")
        print(
            f"| {kind} | "
            + " | ".join(cells)
            + f" | {np.mean(agree[kind]):.2f} | {np.mean(residual[kind]):.2f} |"
        )
    within = np.mean([t[:, list(ANGLES.values())].std(0) for t in truth], 0)
    print(
        "\nground truth, mean within-clip std (deg): "
        + ", ".join(f"{a} {v:.2f}" for a, v in zip(ANGLES, within))
    )
    print(f"({time.perf_counter() - began:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
