"""Decoder time per frame, eager against torch.compile, alternated in one run (issue #12).

    python benchmarks/compile_decoder.py demo|512

`demo`: the shipped 64² demo weights (60 frames per timing); `512`: the released architecture with
random weights (4 frames per timing; the cost does not depend on the values). Prints the compile
time, the largest difference between compiled and eager frames (8-bit levels) and their PSNR, and
seconds per frame for three alternated rounds with the eager/compiled ratio.
"""

import math
import sys
import time

import torch

from floatalk.config import preset
from floatalk.models.float_model import FloatModel
from floatalk.weights import DEMO_WEIGHTS, load_model

torch.manual_seed(0)
which = sys.argv[1]
ae = (
    FloatModel(preset("float-512")).motion_ae if which == "512" else load_model(DEMO_WEIGHTS).motion_ae
).eval()
size = ae.config.size
img = torch.rand(1, 3, size, size) * 2 - 1
reps = 4 if which == "512" else 60
with torch.inference_mode():
    src = ae.encode_source(img)
    lats = [torch.randn(1, ae.config.latent_dim) * 0.3 for _ in range(reps)]
    comp = torch.compile(ae.decode, dynamic=False)
    t = time.perf_counter()
    c0 = comp(src, lats[0])
    print("compile s", round(time.perf_counter() - t, 1), flush=True)
    e0 = ae.decode(src, lats[0])
    d = (c0.clamp(-1, 1) - e0.clamp(-1, 1)) / 2 * 255
    print(
        "max diff /255",
        float(d.abs().max()),
        "PSNR",
        10 * math.log10(255**2 / max(float((d**2).mean()), 1e-20)),
    )
    times = {"eager": [], "compiled": []}
    for _ in range(3):
        for name, fn in (("eager", ae.decode), ("compiled", comp)):
            t = time.perf_counter()
            for lat in lats:
                fn(src, lat)
            times[name].append((time.perf_counter() - t) / reps)
    print(
        {k: [round(x, 4) for x in v] for k, v in times.items()},
        "ratio",
        round(sum(times["eager"]) / sum(times["compiled"]), 2),
    )
