"""End-to-end `floatalk generate` benchmark: per-stage time, frames/s and peak memory by audio length.

    python benchmarks/generate.py [--seconds 5 60 600] [--device cpu] [--max-frames N] [--preset float-512]
                                  [--weights DIR] [--size N] [--no-detail] [--compile]

Each length runs in a fresh process (so its peak RSS is its own) through the same code path as the
command: a 1024x768 photo with a face (face detection + crop; random image with --no-crop when the
face extra is missing), a speech-like WAV of the given length, the released architecture with
random weights (the cost does not depend on the values), frames streamed into an H.264 + AAC MP4.

`--max-frames N` stops after N decoded frames: the speech encoders still run over the whole audio,
and sampling and decoding run window by window as always, so the memory of every stage is exercised;
only the (linear, constant-memory) remainder of the decode loop is cut. The result table marks such
rows. Prints a Markdown table; `--json FILE` also writes the raw numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import wave
from pathlib import Path

import numpy as np

STAGES = (
    "crop",
    "audio load",
    "source encoding",
    "speech features",
    "emotion",
    "sampling",
    "decoding",
    "paste-back and watermark",
    "mp4 encoding",
)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _speech_block(
    t: np.ndarray, rate: int, phase0: float, rng: np.random.Generator
) -> tuple[np.ndarray, float]:
    """Speech-like samples at times t (s), starting from buzz phase phase0; also the phase at the end."""
    pitch = 170 + 50 * np.sin(2 * np.pi * 0.3 * t)
    phase = phase0 + 2 * np.pi * np.cumsum(pitch) / rate
    buzz = sum(np.sin(k * phase) / k for k in range(1, 12))
    syllables = np.clip(np.sin(2 * np.pi * 4 * t) * (np.sin(2 * np.pi * 0.25 * t) > -0.6), 0, 1)
    x = 0.2 * buzz * syllables + 0.003 * rng.standard_normal(t.size)
    return np.clip(x, -1, 1), float(phase[-1])


def speech_like(seconds: float, rate: int = 16000) -> np.ndarray:
    """Voiced bursts (a 120-220 Hz buzz with formant-like harmonics) separated by pauses, float32."""
    t = np.arange(max(1, round(seconds * rate))) / rate
    return _speech_block(t, rate, 0.0, np.random.default_rng(0))[0].astype(np.float32)


def write_speech_like_wav(path: Path, seconds: float, rate: int = 16000) -> None:
    """`speech_like` as a 16-bit WAV, written 10 s at a time, so that making the input does not
    itself raise the peak memory that the benchmark reports."""
    rng = np.random.default_rng(0)
    n = max(1, round(seconds * rate))
    block = 10 * rate
    phase0 = 0.0
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(rate)
        for start in range(0, n, block):
            t = np.arange(start, min(n, start + block)) / rate
            x, phase0 = _speech_block(t, rate, phase0, rng)
            f.writeframes((x * 32767).astype("<i2").tobytes())


def write_photo(path: Path) -> bool:
    """A 1024x768 photo with a face; False (and a random image) when no real face is at hand."""
    from PIL import Image

    try:
        from skimage.data import astronaut

        from floatalk.face import is_available
    except ImportError:
        is_available = None
    canvas = Image.new("RGB", (1024, 768), (70, 90, 110))
    if is_available is not None and is_available():
        canvas.paste(Image.fromarray(astronaut()).resize((600, 600)), (300, 100))
        canvas.save(path, quality=92)
        return True
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (768, 1024, 3), dtype=np.uint8)).save(path, quality=92)
    return False


def run_one(args: argparse.Namespace) -> dict:
    import torch

    from floatalk.config import preset
    from floatalk.io.video import VideoWriter
    from floatalk.models.float_model import FloatModel
    from floatalk.options import GenerateOptions
    from floatalk.pipeline import FloatPipeline

    device = torch.device(args.device)
    tmp = Path(tempfile.mkdtemp(prefix="floatalk-bench-"))
    crop = write_photo(tmp / "photo.jpg")
    write_speech_like_wav(tmp / "speech.wav", args.seconds)

    t0 = time.perf_counter()
    torch.manual_seed(0)
    dtype = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[args.dtype]
    if args.weights:  # a trained weights folder (e.g. the shipped demo weights) instead of a preset
        pipe = FloatPipeline.from_pretrained(args.weights, device=device, dtype=dtype, compile=args.compile)
    else:
        pipe = FloatPipeline(
            FloatModel(preset(args.preset)), device=device, dtype=dtype, compile=args.compile
        )
    load_seconds = time.perf_counter() - t0
    rss_model = peak_rss_mb()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()

    options = GenerateOptions(
        seed=0,
        nfe=args.nfe,
        crop=crop,
        decode_batch_size=args.batch_size,
        emotion=args.emotion,
        output_size=args.size,
        detail=not args.no_detail,
        crop_only=args.crop_only,
        watermark=not args.no_watermark,
    )
    count = 0
    start = time.perf_counter()
    # FloatPipeline.write_video, spelled out so that --max-frames can stop decoding early: the same
    # stages, and the sound track streamed from the input file as write_video does.
    run = pipe.generate(tmp / "photo.jpg", tmp / "speech.wav", options)
    stages = run.result.stage_seconds
    with VideoWriter(tmp / "out.mp4", run.width, run.height, fps=pipe.fps, audio=run.speech.path) as w:
        for batch in run:
            t = time.perf_counter()
            w.write(batch)
            stages["mp4 encoding"] = stages.get("mp4 encoding", 0.0) + time.perf_counter() - t
            count += batch.shape[0]
            if args.max_frames and count >= args.max_frames:
                break
    total = time.perf_counter() - start
    num_frames = -(-run.speech.num_samples * 25 // pipe.sample_rate)
    result = {
        "seconds": args.seconds,
        "device": str(device),
        "dtype": args.dtype,
        "threads": torch.get_num_threads(),
        "preset": args.preset,
        "weights": args.weights,
        "crop": crop,
        "output_size": [run.height, run.width],
        "compile": args.compile and pipe.compile_failure() is None,
        "detail": options.detail and pipe.output_size(options) > pipe.image_size,
        "num_frames_total": num_frames,
        "frames_rendered": count,
        "truncated": count < num_frames,
        "model_load_seconds": load_seconds,
        "stage_seconds": stages,
        "total_seconds": total,
        "frames_per_second": count / total,
        "peak_rss_mb": peak_rss_mb(),
        "rss_after_model_load_mb": rss_model,
    }
    if device.type == "cuda":
        result["cuda_peak_allocated_mb"] = torch.cuda.max_memory_allocated() / 2**20
        result["gpu"] = torch.cuda.get_device_name()
    for p in tmp.iterdir():
        p.unlink()
    tmp.rmdir()
    return result


def table(results: list[dict]) -> str:
    cols = [f"{r['seconds']:g} s{' *' if r['truncated'] else ''}" for r in results]
    lines = ["| | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]

    def row(name, fn):
        lines.append(f"| {name} | " + " | ".join(fn(r) for r in results) + " |")

    row(
        "output (side, detail, compile)",
        lambda r: (
            f"{r.get('output_size')}², {'detail' if r.get('detail') else 'no detail'}"
            f"{', compiled' if r.get('compile') else ''}"
        ),
    )
    row("frames (rendered / total)", lambda r: f"{r['frames_rendered']} / {r['num_frames_total']}")
    for stage in STAGES:
        row(f"{stage} (s)", lambda r, s=stage: f"{r['stage_seconds'].get(s, 0.0):.2f}")
    row("total (s)", lambda r: f"{r['total_seconds']:.1f}")
    row("frames/s end to end", lambda r: f"{r['frames_per_second']:.2f}")
    row("peak RSS (MB)", lambda r: f"{r['peak_rss_mb']:.0f}")
    row("RSS after model load (MB)", lambda r: f"{r['rss_after_model_load_mb']:.0f}")
    if any("cuda_peak_allocated_mb" in r for r in results):
        row("CUDA peak allocated (MB)", lambda r: f"{r.get('cuda_peak_allocated_mb', 0):.0f}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, nargs="+", default=[5.0, 60.0, 600.0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--preset", default="float-512")
    parser.add_argument("--weights", help="a weights folder to load instead of --preset (random weights)")
    parser.add_argument("--dtype", choices=("float32", "float16", "bfloat16"), default="float32")
    parser.add_argument("--nfe", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=None, help="frames per decoder call")
    parser.add_argument("--max-frames", type=int, default=None, help="stop after N frames (see above)")
    parser.add_argument("--emotion", default="auto", help="auto (the speech-emotion model runs) or a label")
    parser.add_argument("--size", type=int, default=None, help="output side (floatalk generate --size)")
    parser.add_argument(
        "--no-detail", action="store_true", help="upscale bicubic (floatalk generate --no-detail)"
    )
    parser.add_argument("--compile", action="store_true", help="decode with torch.compile")
    parser.add_argument("--crop-only", action="store_true", help="write the square crop, no paste-back")
    parser.add_argument("--no-watermark", action="store_true", help="leave out the invisible watermark")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        args.seconds = args.seconds[0]
        print(json.dumps(run_one(args)))
        return
    results = []
    for seconds in args.seconds:
        cmd = [sys.executable, __file__, "--child", "--seconds", str(seconds), "--device", args.device]
        cmd += [
            "--preset",
            args.preset,
            "--nfe",
            str(args.nfe),
            "--dtype",
            args.dtype,
            "--emotion",
            args.emotion,
        ]
        if args.weights:
            cmd += ["--weights", args.weights]
        if args.batch_size:
            cmd += ["--batch-size", str(args.batch_size)]
        if args.size:
            cmd += ["--size", str(args.size)]
        if args.no_detail:
            cmd += ["--no-detail"]
        if args.compile:
            cmd += ["--compile"]
        cmd += ["--crop-only"] if args.crop_only else []
        cmd += ["--no-watermark"] if args.no_watermark else []
        if args.max_frames:
            cmd += ["--max-frames", str(args.max_frames)]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=os.environ)
        if proc.returncode:
            sys.exit(f"benchmark of {seconds:g} s failed:\n{proc.stderr}")
        out = proc.stdout
        results.append(json.loads(out.strip().splitlines()[-1]))
        print(f"done: {seconds:g} s of audio", file=sys.stderr, flush=True)
    print(table(results))
    if any(r["truncated"] for r in results):
        print("\n\\* decoding stopped after --max-frames; the speech encoders covered the whole audio.")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
