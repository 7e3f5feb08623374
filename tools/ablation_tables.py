"""FLOAT's Tables 2 and 3 on the synthetic world: train every stage-2 variant with the same budget,
evaluate each on the test split, print the tables (Markdown).

Variants (src/floatalk/configs/ablation-fmt.yaml names the overrides): FLOAT, + pose, - S2E + I2E,
cross-attention, eps-diffusion, x0-diffusion. Each trains into runs/ablation/<variant> (resumable:
rerun the same command), is exported to runs/ablation/<variant>/weights and evaluated with
`floatalk evaluate model` (the shipped backbones: lip sync, E-FID / P-FID and their motion variants,
head-pose error against the real clip, pose jitter) into runs/ablation-eval/<variant>. The + pose
model is evaluated twice: sampling its own head motion, and driven by each clip's real head pose.

    .venv/bin/python tools/ablation_tables.py data/syn64-id --max-clips 12 > tables.md
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from floatalk.cli import main as cli_main
from floatalk.evaluate.model import RunSettings, evaluate_model

CONFIG = Path(__file__).parents[1] / "src" / "floatalk" / "configs" / "ablation-fmt.yaml"
VARIANTS = {
    "float": ("FLOAT (adaLN, flow matching, emotion label)", []),
    "pose": ("+ pose", ["model.pose_dim=6"]),
    "i2e": ("- S2E + I2E (frame-wise image emotion)", ["emotion_source=image"]),
    "cross-attention": ("cross-attention predictor", ["model.predictor=cross-attention"]),
    "diffusion-epsilon": ("ε-prediction diffusion (DDIM 50)", ["model.process=diffusion-epsilon"]),
    "diffusion-x0": ("x0-prediction diffusion (DDIM 50)", ["model.process=diffusion-x0"]),
}
METRICS = ("lipsync", "efid", "pfid")
COLUMNS = ("LS-r", "LS-offset", "E-FID", "P-FID", "E-FID motion", "P-FID motion", "pose error", "pose jitter")


def train_and_export(data: str, variant: str, steps: int | None) -> tuple[Path, float]:
    run = Path("runs/ablation") / variant
    extra = VARIANTS[variant][1] + ([f"train.max_steps={steps}"] if steps else [])
    began = time.perf_counter()
    argv = ["train", "fmt", "--config", str(CONFIG), f"data={data}", f"train.output_dir={run}"]
    if cli_main([*argv, "train.progress=false", *extra]) != 0:
        raise SystemExit(f"training {variant} failed")
    seconds = time.perf_counter() - began
    weights = run / "weights"  # exported again after every call: it is the run's latest state
    if cli_main(["export", str(run), str(weights)]) != 0:
        raise SystemExit(f"exporting {variant} failed")
    return weights, seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data")
    parser.add_argument("--max-clips", type=int, default=12)
    parser.add_argument("--steps", type=int, default=None, help="override the config's max_steps")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    args = parser.parse_args(argv)
    began = time.perf_counter()
    rows = []
    for variant in args.variants.split(","):
        weights, train_seconds = train_and_export(args.data, variant, args.steps)
        config = json.loads((weights / "fmt" / "config.json").read_text())["config"]
        nfe = 10 if config["process"] == "flow" else 50
        runs = [("", "none")] + ([(" driven by the real pose", "real")] if variant == "pose" else [])
        for suffix, pose in runs:
            settings = RunSettings(weights=str(weights), nfe=nfe, max_clips=args.max_clips, pose=pose)
            report = evaluate_model(
                args.data, Path("runs/ablation-eval") / variant, settings, metrics=METRICS
            )
            print(f"[{time.perf_counter() - began:7.0f} s] {variant}{suffix}", file=sys.stderr, flush=True)
            rows.append((VARIANTS[variant][0] + suffix, report, nfe, train_seconds))
    print("| variant | " + " | ".join(COLUMNS) + " | NFE | frames/s |")
    print("|---|" + "---|" * (len(COLUMNS) + 2))
    for name, report, nfe, _ in rows:
        m = report.videos.metrics
        speed = report.extra.get("generated frames/s")
        cells = [f"{m[c]:.3f}" if c in m else "–" for c in COLUMNS]
        cells += [str(nfe), f"{speed:.1f}" if speed else "(reused)"]
        print(f"| {name} | " + " | ".join(cells) + " |")
    print(f"\n({time.perf_counter() - began:.0f} s in this invocation)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
