#!/usr/bin/env python
"""How much identity the synthetic world's own frames keep, at several sizes (issue #11).

Renders the first test clips of a synthetic dataset config (seed 0, 100 clips, test fraction 0.06:
held-out portraits with held-out speech) at each size and reports, per portrait, the median dlib
distance between the 512 px portrait and every 4th ground-truth frame. A model at that size that
reproduced the world's frames perfectly would score this: it is the ceiling of stage 1 there, head
motion and expressions included (the resize-only ceiling of ``floatalk evaluate identity
--ceiling-size`` leaves the motion out).

Usage::

    .venv/bin/python tools/world_identity_ceiling.py [--sizes 64 128 256] [--clips 8]
"""

from __future__ import annotations

import argparse

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256])
    parser.add_argument("--clips", type=int, default=8)
    args = parser.parse_args()

    from floatalk.data import synthetic as syn
    from floatalk.evaluate import FaceDescriber, identity_distance

    describer = FaceDescriber()
    for size in args.sizes:
        cfg = syn.SyntheticConfig(size=size, num_clips=100, seed=0, test_fraction=0.06)
        per: dict[str, list[float]] = {}
        for plan in [p for p in syn.plan_clips(cfg) if p.split == "test"][: args.clips]:
            clip = syn.render_clip(cfg, plan.index, plan)
            ref = describer.describe(np.asarray(syn.load_portraits([plan.portrait])[0].image))
            found = [e for e in map(describer.describe, clip.frames[::4]) if e is not None]
            d = [identity_distance(ref, e) for e in found]
            per.setdefault(plan.portrait, []).append(float(np.median(d)) if d else float("nan"))
        summary = {k: round(float(np.nanmedian(v)), 3) for k, v in sorted(per.items())}
        print(f"{size}²: {summary}", flush=True)


if __name__ == "__main__":
    main()
