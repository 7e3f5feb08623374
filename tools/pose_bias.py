"""Where a run's pooled P-FID comes from: the mean and covariance terms, and the per-channel bias.

Tracks the head pose (MediaPipe Face Landmarker, the shipped P-FID backbone) of every clip of the
real folder and of each run folder of a `floatalk evaluate model` output, then prints, per run, the
pooled P-FID, its mean term |mu_r - mu_g|^2, the per-channel mean difference (generated - real),
and how far the first generated frame is from the source (the real first frame)::

    .venv/bin/python tools/pose_bias.py runs/eval-syn64 still model-nfe10-ga2-ge1-label-seed0
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from floatalk.evaluate.face_params import FaceParameterTracker
from floatalk.evaluate.frechet import frechet_distance
from floatalk.io.video_reader import read_video_frames

CHANNELS = ("yaw", "pitch", "roll", "x", "y", "z")


def track(path: Path) -> np.ndarray:
    with FaceParameterTracker() as tracker:
        return tracker.track(read_video_frames(path)).pose


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", help="a `floatalk evaluate model` output folder (with real/)")
    parser.add_argument("runs", nargs="+", help="run folder names inside it")
    args = parser.parse_args(argv)
    root = Path(args.folder)
    names = sorted(set.intersection(*[{p.name for p in (root / run).glob("*.mp4")} for run in args.runs]))
    real = {n: track(root / "real" / n) for n in names}
    pooled_real = np.concatenate([real[n] for n in names])
    pooled_real = pooled_real[np.isfinite(pooled_real).all(1)]
    np.set_printoptions(precision=2, suppress=True)
    for run in args.runs:
        generated = {n: track(root / run / n) for n in names}
        pooled = np.concatenate([generated[n] for n in names])
        pooled = pooled[np.isfinite(pooled).all(1)]
        bias = pooled.mean(0) - pooled_real.mean(0)
        start = np.stack([generated[n][0] - real[n][0] for n in names])
        print(f"{run}: P-FID {frechet_distance(pooled_real, pooled):.3f}, mean term {(bias**2).sum():.3f}")
        print("  mean difference", dict(zip(CHANNELS, np.round(bias, 2).tolist(), strict=True)))
        print(
            "  |first frame - source|",
            dict(zip(CHANNELS, np.round(np.nanmean(np.abs(start), 0), 2).tolist(), strict=True)),
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
