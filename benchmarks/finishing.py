"""Cost of the last stage (paste-back into the photo + the invisible watermark), side by side.

    python benchmarks/finishing.py [--preset float-512] [--weights DIR] [--frames 25] [--rounds 2]

One process, one pipeline: the same generation (a 1024x768 photo with a face, 5 s of speech-like
audio, seed 0, frames streamed into an H.264 MP4 as `floatalk generate` does) run alternately

    A: --crop-only --no-watermark   (the square 512² crop, as before issue 16)
    B: the defaults                 (pasted back into the photo + watermarked)

`--frames N` stops each run after N frames (all stages before decoding run in full). Reports the
end-to-end seconds per run, the ratio B / A, and the finishing stage's own time per frame. Prints
Markdown.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from generate import write_photo, write_speech_like_wav


def one_run(pipe, photo: Path, speech: Path, out: Path, frames: int, **changes) -> tuple[float, dict, tuple]:
    from floatalk.io.video import VideoWriter

    start = time.perf_counter()
    run = pipe.generate(photo, speech, seed=0, **changes)
    stages = run.result.stage_seconds
    count = 0
    with VideoWriter(out, run.width, run.height, fps=pipe.fps, audio=run.speech.path) as w:
        for batch in run:
            t = time.perf_counter()
            w.write(batch)
            stages["mp4 encoding"] = stages.get("mp4 encoding", 0.0) + time.perf_counter() - t
            count += batch.shape[0]
            if count >= frames:
                break
    return time.perf_counter() - start, dict(stages), (run.width, run.height, count)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="float-512")
    parser.add_argument("--weights", help="a weights folder instead of --preset (random weights)")
    parser.add_argument("--frames", type=int, default=25)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()

    import torch

    from floatalk.config import preset
    from floatalk.models.float_model import FloatModel
    from floatalk.pipeline import FloatPipeline

    tmp = Path(tempfile.mkdtemp(prefix="floatalk-finish-"))
    if not write_photo(tmp / "photo.jpg"):
        sys.exit("needs the face extra and scikit-image (a photo with a real face)")
    write_speech_like_wav(tmp / "speech.wav", args.seconds)
    torch.manual_seed(0)
    pipe = (
        FloatPipeline.from_pretrained(args.weights)
        if args.weights
        else FloatPipeline(FloatModel(preset(args.preset)))
    )
    variants = {
        "A: crop only, no mark": {"crop_only": True, "watermark": False},
        "B: paste-back + mark": {},
    }
    one_run(pipe, tmp / "photo.jpg", tmp / "speech.wav", tmp / "warm.mp4", 2, crop_only=True, watermark=False)
    rows: dict[str, list[tuple[float, dict, tuple]]] = {k: [] for k in variants}
    for _ in range(args.rounds):
        for name, changes in variants.items():
            rows[name].append(
                one_run(pipe, tmp / "photo.jpg", tmp / "speech.wav", tmp / "o.mp4", args.frames, **changes)
            )
    print(
        f"torch threads {torch.get_num_threads()}, {args.preset if not args.weights else args.weights}, "
        f"{args.frames} frames per run, {args.rounds} rounds alternated\n"
    )
    print("| variant | output | end to end per round (s) | finishing (ms/frame) | mp4 encoding (ms/frame) |")
    print("|---|---|---|---|---|")
    for name, runs in rows.items():
        w, h, n = runs[0][2]
        secs = " / ".join(f"{r[0]:.1f}" for r in runs)
        finish = sum(r[1].get("paste-back and watermark", 0.0) for r in runs) / (n * len(runs)) * 1000
        enc = sum(r[1].get("mp4 encoding", 0.0) for r in runs) / (n * len(runs)) * 1000
        print(f"| {name} | {w}x{h}, {n} frames | {secs} | {finish:.0f} | {enc:.0f} |")
    a = [r[0] for r in rows["A: crop only, no mark"]]
    b = [r[0] for r in rows["B: paste-back + mark"]]
    ratios = [y / x for x, y in zip(a, b)]
    print(f"\nB / A per round: {', '.join(f'{r:.3f}' for r in ratios)}; total {sum(b) / sum(a):.3f}")


if __name__ == "__main__":
    main()
