"""One script for a machine with a CUDA GPU: parity, reduced precision, throughput, memory.

    python benchmarks/gpu_check.py [--device cuda] [--weights DIR | --preset float-512]
                                   [--batch-sizes 1 2 4 8 16 32] [--seconds 5 60] [--out DIR]
                                   [--no-parity] [--no-compile] [--frames N]

Run it whenever a CUDA machine is at hand (issue #12); it is built to finish in under 8 minutes on
one data-centre GPU with the released architecture, and it is tested on CPU with the tiny preset
(tests/test_gpu_check.py) so that it is known to run. Steps, each timed and recorded:

1. **parity**: `tests/test_parity.py` on the device (FLOATALK_TEST_DEVICE), in a subprocess: the
   converted original weights against the original code's outputs, fp32.
2. **precision**: float16 and bfloat16 against float32 with the same inputs: relative error of the
   sampled motion latents (same noise), and of the frames each decodes from the float32 latents
   (max |diff| in 8-bit levels, PSNR).
3. **decode throughput** at the model's size for each decode batch size, eager and, where it
   works, `torch.compile`d (a failure to compile is recorded, never fatal); frames/s after warm-up.
4. **whole job**: `FloatPipeline.write_video` on a portrait-like image and speech-like audio of each
   length: frames/s end to end, time to the first frame, per-stage seconds, peak GPU memory.

Writes `OUT/gpu_check.json` (everything) and `OUT/gpu_check.md` (the tables). Weights: `--weights`
(e.g. the converted release), else random weights of `--preset` (speed and memory do not depend on
the values; the precision numbers of random weights are an upper bound, the decoder amplifies
rounding most when its weights are random).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from generate import speech_like, write_speech_like_wav

REPO = Path(__file__).resolve().parents[1]


def _sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _pipeline(args: argparse.Namespace, dtype: Any):
    import torch

    from floatalk.config import preset
    from floatalk.models.float_model import FloatModel
    from floatalk.pipeline import FloatPipeline

    device = torch.device(args.device)
    if args.weights:
        return FloatPipeline.from_pretrained(args.weights, device=device, dtype=dtype)
    torch.manual_seed(0)
    return FloatPipeline(FloatModel(preset(args.preset)).eval(), device=device, dtype=dtype)


def _portrait_tensor(size: int):
    """`_portrait` as the model's input, (1, 3, size, size) in [-1, 1]."""
    from floatalk.io.image import image_to_tensor

    return image_to_tensor(_portrait(size), size)


def _portrait(size: int) -> np.ndarray:
    """A smooth, face-sized test image (no detector needed: generation runs with crop=False)."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:size, 0:size] / size
    face = np.exp(-(((x - 0.5) / 0.22) ** 2 + ((y - 0.45) / 0.3) ** 2))
    img = np.stack([0.3 + 0.6 * face, 0.25 + 0.5 * face, 0.2 + 0.4 * face], -1)
    img += rng.normal(0, 0.02, img.shape)
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)


def check_parity(args: argparse.Namespace) -> dict[str, Any]:
    env = {**os.environ, "FLOATALK_TEST_DEVICE": args.device}
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        str(REPO / "tests" / "test_parity.py"),
    ]
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=args.parity_timeout)
    lines = [ln for ln in proc.stdout.strip().splitlines() if ln.strip()]
    return {
        "passed": proc.returncode == 0,
        "summary": lines[-1] if lines else proc.stderr.strip()[-300:],
        "seconds": time.perf_counter() - t,
    }


def check_precision(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    out: dict[str, Any] = {}
    reference = _pipeline(args, torch.float32)
    image = _portrait_tensor(reference.image_size)
    wave = speech_like(2.0)

    def run(pipe, decode: Any = None) -> tuple[Any, Any]:
        """The sampled latents, and frames decoded from `decode` (default: those latents)."""
        source = pipe.encode_source(image)
        audio = pipe.encode_audio(wave)
        emotion = pipe.emotion_probs(audio, "neutral")
        latents = torch.cat([w.latents for w in pipe.iter_motion(source, audio, emotion, seed=0)], 1)[0]
        decode = latents[: args.precision_frames] if decode is None else decode
        frames = torch.cat(list(pipe.iter_frames(source, decode)))
        return latents.float().cpu(), frames.float().clamp(-1, 1).cpu()

    ref_latents, ref_frames = run(reference)
    # every dtype decodes the float32 latents, so the frames' error is the decoder's own
    dtypes = ["bfloat16"] if reference.device.type == "cpu" else ["float16", "bfloat16"]
    for name in dtypes:
        pipe = _pipeline(args, getattr(torch, name))
        try:
            latents, frames = run(pipe, ref_latents[: args.precision_frames])
        except Exception as exc:  # an op without a kernel for this dtype on this device
            out[name] = {"error": f"{type(exc).__name__}: {exc}"[:300]}
            continue
        diff = (frames - ref_frames) / 2 * 255
        mse = float((diff**2).mean())
        out[name] = {
            "latents_relative_error": float((latents - ref_latents).norm() / ref_latents.norm()),
            "frames_max_abs_diff_8bit": float(diff.abs().max()),
            "frames_psnr_db": float("inf") if mse == 0 else 10 * math.log10(255**2 / mse),
        }
        del pipe
    return out


def check_decode(args: argparse.Namespace) -> tuple[list[dict[str, Any]], int]:
    """Decode frames/s per (variant, batch size) and the model's image size."""
    import torch

    pipe = _pipeline(args, torch.float32)
    device = pipe.device
    ae = pipe.model.motion_ae
    image = _portrait_tensor(pipe.image_size)
    rows = []
    with torch.inference_mode():
        source = pipe.encode_source(image)
        d = ae.config.latent_dim
        variants: list[tuple[str, Any]] = [("eager", ae.decode)]
        if args.compile:
            try:
                variants.append(("compiled", torch.compile(ae.decode, dynamic=False)))
            except Exception as exc:
                rows.append({"variant": "compiled", "error": f"{type(exc).__name__}: {exc}"[:300]})
        for name, fn in variants:
            for batch in args.batch_sizes:
                motion = torch.randn(batch, d, device=device) * 0.1
                try:
                    fn(source, motion)  # warm-up (and compilation)
                    _sync(device)
                    reps = max(1, math.ceil(args.frames / batch))
                    t = time.perf_counter()
                    for _ in range(reps):
                        fn(source, motion)
                    _sync(device)
                    seconds = time.perf_counter() - t
                    rows.append(
                        {"variant": name, "batch": batch, "frames_per_second": reps * batch / seconds}
                    )
                except Exception as exc:
                    rows.append(
                        {"variant": name, "batch": batch, "error": f"{type(exc).__name__}: {exc}"[:300]}
                    )
                    if device.type == "cuda":
                        torch.cuda.empty_cache()
    return rows, pipe.image_size


def check_job(args: argparse.Namespace, tmp: Path) -> list[dict[str, Any]]:
    import torch

    pipe = _pipeline(args, torch.float32)
    device = pipe.device
    image = _portrait(max(pipe.image_size, 256))
    rows = []
    for seconds in args.seconds:
        speech = tmp / f"speech_{seconds:g}.wav"
        write_speech_like_wav(speech, seconds)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        first: list[float] = []
        start = time.perf_counter()

        def progress(done: int, total: int, _first: list[float] = first, _start: float = start) -> None:
            if not _first:
                _first.append(time.perf_counter() - _start)

        result = pipe.write_video(
            image,
            speech,
            tmp / f"job_{seconds:g}.mp4",
            crop=False,
            seed=0,
            emotion="neutral",
            progress=progress,
        )
        row = {
            "seconds_of_speech": seconds,
            "frames": result.num_frames,
            "total_seconds": result.seconds,
            "frames_per_second": result.num_frames / result.seconds,
            "time_to_first_frame_s": first[0] if first else None,
            "stage_seconds": result.stage_seconds,
        }
        if device.type == "cuda":
            row["peak_gpu_memory_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
        rows.append(row)
    return rows


def markdown(report: dict[str, Any]) -> str:
    env = report["environment"]
    lines = [f"# gpu_check: {env['device_name']} ({env['device']}), torch {env['torch']}, {env['date']}", ""]
    parity = report.get("parity")
    if parity is not None:
        lines += [
            f"**Parity** ({parity['seconds']:.0f} s): {'passed' if parity['passed'] else 'FAILED'}: "
            f"{parity['summary']}",
            "",
        ]
    lines += [
        "| precision vs float32 | latents rel. error | frames max diff (8-bit) | frames PSNR (dB) |",
        "|---|---|---|---|",
    ]
    for name, r in report["precision"].items():
        if "error" in r:
            lines.append(f"| {name} | {r['error']} | | |")
        else:
            lines.append(
                f"| {name} | {r['latents_relative_error']:.2e} | {r['frames_max_abs_diff_8bit']:.2f} | "
                f"{r['frames_psnr_db']:.1f} |"
            )
    lines += ["", f"| decode at {env['image_size']}² | batch | frames/s |", "|---|---|---|"]
    for r in report["decode"]:
        value = f"{r['frames_per_second']:.1f}" if "frames_per_second" in r else r["error"]
        lines.append(f"| {r['variant']} | {r.get('batch', '')} | {value} |")
    lines += [
        "",
        "| whole job | frames | frames/s | first frame (s) | peak GPU memory (MB) |",
        "|---|---|---|---|---|",
    ]
    for r in report["job"]:
        mem = f"{r['peak_gpu_memory_mb']:.0f}" if "peak_gpu_memory_mb" in r else "-"
        ttf = f"{r['time_to_first_frame_s']:.2f}" if r["time_to_first_frame_s"] is not None else "-"
        speech = f"{r['seconds_of_speech']:g} s of speech"
        lines.append(f"| {speech} | {r['frames']} | {r['frames_per_second']:.2f} | {ttf} | {mem} |")
    lines += ["", f"Total: {report['seconds']:.0f} s."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument(
        "--weights", help="a weights folder (e.g. the converted release); default: random --preset"
    )
    parser.add_argument("--preset", default="float-512")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32])
    parser.add_argument("--frames", type=int, default=64, help="frames timed per decode measurement")
    parser.add_argument("--precision-frames", type=int, default=8, help="frames compared per dtype")
    parser.add_argument(
        "--seconds", type=float, nargs="+", default=[5.0, 60.0], help="speech lengths, whole job"
    )
    parser.add_argument("--out", type=Path, default=Path("gpu_check"))
    parser.add_argument("--no-parity", dest="parity", action="store_false")
    parser.add_argument("--parity-timeout", type=float, default=240)
    parser.add_argument("--no-compile", dest="compile", action="store_false")
    args = parser.parse_args(argv)

    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("no CUDA device here; run on a GPU machine, or pass --device cpu to try the script")
    start = time.perf_counter()
    device = torch.device(args.device)
    report: dict[str, Any] = {
        "environment": {
            "device": str(device),
            "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU",
            "torch": torch.__version__,
            "cuda": torch.version.cuda,
            "date": time.strftime("%Y-%m-%d"),
            "weights": args.weights or f"random {args.preset}",
        }
    }
    steps = {}
    if args.parity:
        t = time.perf_counter()
        report["parity"] = check_parity(args)
        steps["parity"] = time.perf_counter() - t
    t = time.perf_counter()
    report["precision"] = check_precision(args)
    steps["precision"] = time.perf_counter() - t
    t = time.perf_counter()
    report["decode"], report["environment"]["image_size"] = check_decode(args)
    steps["decode"] = time.perf_counter() - t
    t = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="floatalk-gpu-check-") as tmp:
        report["job"] = check_job(args, Path(tmp))
    steps["job"] = time.perf_counter() - t
    report["step_seconds"] = steps
    report["seconds"] = time.perf_counter() - start
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu_check.json").write_text(json.dumps(report, indent=1, default=str))
    (args.out / "gpu_check.md").write_text(markdown(report))
    print(markdown(report))
    return report


if __name__ == "__main__":
    main()
