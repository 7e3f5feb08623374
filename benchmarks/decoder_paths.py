"""Decoding paths side by side in one run: exact, fast, and fast + torch.compile (issue #12).

    python benchmarks/decoder_paths.py 512 [--compile] [--rounds 3] [--frames 4] [--json FILE]
    python benchmarks/decoder_paths.py demo [--frames 60]

`512`: the released architecture with random weights (the cost does not depend on the values);
`demo`: the shipped 64² demo weights. One frame per call (the CPU default). Reports, measured in
this same run: the fp32 matrix-multiply rate (2048² sgemm), the decoder's FLOPs per frame (torch's
FLOP counter), seconds per frame and achieved GFLOP/s for each path in alternated rounds, and each
path's frames against the exact path's (max difference in 8-bit levels, PSNR of the [-1, 1] frames
mapped to 0..255).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from floatalk.acceleration import in_decoding_layout, set_decoding
from floatalk.config import preset
from floatalk.models.float_model import FloatModel
from floatalk.weights import DEMO_WEIGHTS, load_model


def sgemm_gflops(n: int = 2048, reps: int = 10) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        a @ b
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n**3 * reps / (time.perf_counter() - t) / 1e9


def frame_error(a: torch.Tensor, b: torch.Tensor) -> tuple[float, float]:
    d = (a.clamp(-1, 1) - b.clamp(-1, 1)) / 2 * 255
    mse = float((d**2).mean())
    return float(d.abs().max()), 10 * math.log10(255**2 / max(mse, 1e-20))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", choices=["512", "demo"])
    parser.add_argument("--compile", action="store_true", help="also time fast + torch.compile")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--frames", type=int, default=None, help="frames per timing")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    model = FloatModel(preset("float-512")) if args.model == "512" else load_model(DEMO_WEIGHTS)
    ae = model.motion_ae.eval().requires_grad_(False)
    frames = args.frames or (4 if args.model == "512" else 60)
    report: dict = {"model": args.model, "threads": args.threads, "torch": torch.__version__}
    with torch.inference_mode():
        size = ae.config.size
        src = ae.encode_source(torch.rand(1, 3, size, size) * 2 - 1)
        lats = [torch.randn(1, ae.config.latent_dim) * 0.3 for _ in range(frames)]
        report["sgemm GFLOP/s"] = round(sgemm_gflops(), 1)
        with FlopCounterMode(display=False) as counter:
            ae.decode(src, lats[0])
        flops = counter.get_total_flops()
        report["GFLOP per frame"] = round(flops / 1e9, 2)
        print(f"sgemm {report['sgemm GFLOP/s']} GFLOP/s; {report['GFLOP per frame']} GFLOP/frame", flush=True)

        set_decoding(ae.dec, "exact")
        sources = {mode: in_decoding_layout(src, mode) for mode in ("exact", "fast")}
        reference = [ae.decode(sources["exact"], lat) for lat in lats[:2]]

        def run_path(name: str):
            mode = "exact" if name == "exact" else "fast"
            set_decoding(ae.dec, mode)
            fn = compiled if name == "fast+compile" else ae.decode
            return [fn(sources[mode], lat) for lat in lats]

        paths = ["exact", "fast"]
        compiled = None
        if args.compile:
            set_decoding(ae.dec, "fast")
            compiled = torch.compile(ae.decode, dynamic=False)
            t = time.perf_counter()
            compiled(sources["fast"], lats[0])
            report["compile s"] = round(time.perf_counter() - t, 1)
            paths.append("fast+compile")
        errors = {}
        for name in paths[1:]:
            out = run_path(name)[:2]
            worst = [frame_error(o, r) for o, r in zip(out, reference)]
            errors[name] = {
                "max |diff| /255": round(max(w[0] for w in worst), 4),
                "PSNR dB": round(min(w[1] for w in worst), 1),
            }
        report["vs exact"] = errors
        times: dict[str, list[float]] = {p: [] for p in paths}
        for _ in range(args.rounds):
            for name in paths:
                t = time.perf_counter()
                run_path(name)
                times[name].append((time.perf_counter() - t) / frames)
            print({k: [round(v, 4) for v in vs] for k, vs in times.items()}, flush=True)
        summary = {}
        for name, vs in times.items():
            med = statistics.median(vs)
            summary[name] = {
                "s/frame": [round(v, 4) for v in vs],
                "median s/frame": round(med, 4),
                "GFLOP/s": round(flops / med / 1e9, 1),
                "of sgemm": round(flops / med / 1e9 / report["sgemm GFLOP/s"], 3),
                "speed-up vs exact": round(statistics.median(times["exact"]) / med, 2),
            }
        report["paths"] = summary
        set_decoding(ae.dec, "exact")
    print(json.dumps(report, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
