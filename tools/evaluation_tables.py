"""The paper-style tables of docs/evaluation.md on a prepared dataset's test split (issue 13).

Runs ``floatalk evaluate model`` (the library function) for the baselines, the model's default
settings, an NFE sweep (Table 5) and an audio x emotion guidance grid (Table 6), all into one
evaluation folder (real clips and their features computed once; every run resumable), then prints
the three tables in Markdown::

    .venv/bin/python tools/evaluation_tables.py data/syn64-id --out runs/eval-syn64 > tables.md

Shipped backbones only (they run out of the box): identity (dlib), E-FID / P-FID (MediaPipe
blendshapes and head pose, as fitted and as motion: relative to each clip's first frame), lip sync
(mouth opening vs speech envelope, and its A/V offset).
"""

from __future__ import annotations

import argparse
import sys
import time

from floatalk.evaluate.model import RunSettings, evaluate_model

MAIN_METRICS = ("identity", "efid", "pfid", "lipsync")
SWEEP_METRICS = ("efid", "pfid", "lipsync")
COLUMNS = (
    "identity (median L2)",
    "E-FID",
    "P-FID",
    "E-FID motion",
    "P-FID motion",
    "LS-r",
    "LS-r0",
    "LS-offset",
)


def _row(name: str, report, with_speed: bool = False) -> str:
    metrics = report.videos.metrics
    cells = [name] + [f"{metrics[c]:.3f}" if c in metrics else "–" for c in COLUMNS]
    if with_speed:
        speed = report.extra.get("generated frames/s")
        cells.append(f"{speed:.1f}" if speed else "(reused)")
    return "| " + " | ".join(cells) + " |"


def _header(first: str, with_speed: bool = False) -> str:
    names = [first, *COLUMNS] + (["frames/s"] if with_speed else [])
    return "| " + " | ".join(names) + " |\n|" + "---|" * len(names)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", help="a prepared dataset folder (floatalk prepare)")
    parser.add_argument("--out", required=True, help="the evaluation folder (shared by all runs)")
    parser.add_argument("--weights", default=None, help="model weights (default: the shipped demo weights)")
    parser.add_argument("--max-clips", type=int, default=None)
    parser.add_argument("--identity-step", type=int, default=4)
    parser.add_argument("--nfe", default="2,5,10,20", help="NFE values of the Table 5 sweep")
    parser.add_argument("--audio-scales", default="1,2,3", help="g_a values of the Table 6 grid")
    parser.add_argument("--emotion-scales", default="0,1,2", help="g_e values of the Table 6 grid")
    args = parser.parse_args(argv)
    base = RunSettings(weights=args.weights, max_clips=args.max_clips)
    began = time.perf_counter()

    def run(settings: RunSettings, metrics: tuple[str, ...]):
        report = evaluate_model(
            args.data, args.out, settings, metrics=metrics, identity_step=args.identity_step
        )
        print(f"[{time.perf_counter() - began:7.0f} s] {report.run}", file=sys.stderr, flush=True)
        return report

    main_rows = [
        ("ground truth", run(RunSettings(baseline="ground-truth", max_clips=args.max_clips), MAIN_METRICS)),
        ("source held still", run(RunSettings(baseline="still", max_clips=args.max_clips), MAIN_METRICS)),
        ("speech zeroed", run(_replace(base, zero_audio=True), MAIN_METRICS)),
        ("model (NFE 10, g_a 2, g_e 1)", run(base, MAIN_METRICS)),
    ]
    model = main_rows[-1][1]

    def sweep(settings: RunSettings):
        # the default settings' run is the main table's (evaluating it again with fewer metrics
        # would overwrite its report.json without the identity column)
        return model if settings == base else run(settings, SWEEP_METRICS)

    nfe_rows = [(f"NFE {n}", sweep(_replace(base, nfe=int(n)))) for n in args.nfe.split(",")]
    grid_rows = [
        (f"g_a {a}, g_e {e}", sweep(_replace(base, audio_scale=float(a), emotion_scale=float(e))))
        for a in args.audio_scales.split(",")
        for e in args.emotion_scales.split(",")
    ]
    clips = main_rows[0][1].videos.pairs
    print(f"Test split of {args.data}: {clips} clips, {main_rows[0][1].videos.frames} frame pairs.\n")
    print("**Baselines and the model** (shipped backbones)\n")
    print(_header("run"))
    print("\n".join(_row(n, r) for n, r in main_rows))
    print("\n**NFE** (Table 5; g_a 2, g_e 1)\n")
    print(_header("NFE", with_speed=True))
    print("\n".join(_row(n, r, with_speed=True) for n, r in nfe_rows))
    print("\n**Guidance** (Table 6; NFE 10)\n")
    print(_header("scales"))
    print("\n".join(_row(n, r) for n, r in grid_rows))
    print(f"\n({time.perf_counter() - began:.0f} s in this invocation)")
    return 0


def _replace(settings: RunSettings, **changes) -> RunSettings:
    from dataclasses import replace

    return replace(settings, **changes)


if __name__ == "__main__":
    raise SystemExit(main())
