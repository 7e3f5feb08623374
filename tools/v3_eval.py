"""The shipped-default candidate on the 12-clip evaluation of docs/evaluation.md (issue 14): the same
runs as the default model's row of tools/evaluation_tables.py, for a weights folder, free and driven
by each clip's real head pose.

    .venv/bin/python tools/v3_eval.py data/syn64-id runs/demo-v3-weights --name v3
"""

from __future__ import annotations

import argparse
import time

import torch

from floatalk.evaluate.model import RunSettings, evaluate_model

METRICS = ("identity", "efid", "pfid", "lipsync")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data")
    parser.add_argument("weights")
    parser.add_argument("--name", required=True, help="prefix of the run folders in --out")
    parser.add_argument("--out", default="runs/eval-syn64")
    parser.add_argument("--max-clips", type=int, default=12)
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    for pose in ("none", "real"):
        began = time.perf_counter()
        settings = RunSettings(weights=args.weights, max_clips=args.max_clips, pose=pose)
        name = f"{args.name}-pose-{pose}"
        report = evaluate_model(args.data, args.out, settings, name=name, metrics=METRICS, identity_step=4)
        metrics = {k: round(v, 3) for k, v in report.videos.metrics.items()}
        print(name, metrics, f"{time.perf_counter() - began:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
