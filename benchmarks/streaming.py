"""Streaming benchmark (floatalk.streaming): time to first frame, latency, real-time factor, lip sync
against offline generation, and how many real-time streams one machine holds.

    python benchmarks/streaming.py --data data/syn64-id [--weights DIR] [--clips 8]
        [--settings HOP:LOOKAHEAD[:NFE] ...] [--streams 1 2 3] [--json FILE]

Speech is pushed in 100 ms chunks at wall-clock pace, as a microphone would deliver it (a chunk
is pushed when its last sample "arrives"; if the stream is behind, at once). For each frame, the
latency is the time it came out minus the time its speech ended (frame f's speech ends at
(f + 1) / 25 s). Time to first frame: from the first chunk's arrival to the first frame out.
Real-time factor: compute time spent in push() over the speech's duration.

Lip sync: LS-r (mouth opening against the speech envelope, the shipped measure of
floatalk.evaluate) on the first N test clips of a prepared synthetic dataset, portrait = each clip's
first frame, streamed (with the wall-clock pacing off: the result does not depend on it) and
offline, same seed.

Concurrent streams: N threads, each a paced stream of two held-out speech assets (7.8 s), at the
default settings, 256² output with the portrait's detail (the demo's size); a load holds
when every stream's 95th-percentile latency stays within 1.5 s.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch

ASSETS = Path(__file__).parents[1] / "src" / "floatalk" / "assets"
CHUNK = 1600  # 100 ms at 16 kHz


def paced_run(pipe, image, audio: np.ndarray, settings, options, pace: bool = True) -> dict:
    """One stream fed in real time; per-frame latencies, TTFF, RTF, the frames."""
    stream = pipe.stream(image, options, settings)
    out_times, frames = [], []
    busy = 0.0
    t0 = time.perf_counter()
    for k in range(0, len(audio), CHUNK):
        arrival = t0 + (k + CHUNK) / 16000
        if pace:
            delay = arrival - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        began = time.perf_counter()
        last = k + CHUNK >= len(audio)
        batches = stream.push(audio[k : k + CHUNK], end=last)
        now = time.perf_counter()
        busy += now - began
        for batch in batches:
            frames.append(batch.frames)
            out_times += [now] * len(batch.frames)
    n = len(out_times)
    speech_end = t0 + (np.arange(n) + 1) / 25.0
    speech_end = np.minimum(speech_end, t0 + len(audio) / 16000)
    latency = np.asarray(out_times) - speech_end
    return {
        "frames": np.concatenate(frames),
        "ttff": out_times[0] - (t0 + CHUNK / 16000),
        "latency_mean": float(latency.mean()),
        "latency_p95": float(np.percentile(latency, 95)),
        "latency_max": float(latency.max()),
        "rtf": busy / (len(audio) / 16000),
    }


def lip_r(frames: np.ndarray, audio: np.ndarray) -> float:
    from floatalk.evaluate.lipsync import speech_envelope
    from floatalk.evaluate.measures import av_offset
    from floatalk.evaluate.mouth import MouthTracker

    with MouthTracker() as tracker:
        opening = np.array([tracker.process(f)[0] for f in frames])
    _, r, _ = av_offset(opening, speech_envelope(audio, 16000, 25.0, len(opening)))
    return 0.0 if not np.isfinite(r) else float(r)


def main(argv: list[str] | None = None) -> int:
    from floatalk.data.layout import clip_dir, list_clips, read_audio, read_frames
    from floatalk.io import load_audio
    from floatalk.options import GenerateOptions
    from floatalk.pipeline import FloatPipeline
    from floatalk.streaming import StreamSettings
    from floatalk.weights import resolve_weights

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None, help="prepared synthetic dataset for lip sync (test split)")
    parser.add_argument("--weights", default=None)
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument(
        "--settings", nargs="+", default=["8:4", "8:12", "12:4", "12:12", "12:12:10", "16:12", "25:0"]
    )
    parser.add_argument("--streams", nargs="+", type=int, default=[1, 2, 3])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    pipe = FloatPipeline.from_pretrained(resolve_weights(args.weights))
    options = GenerateOptions(crop=False, seed=0, output_size=pipe.image_size, emotion="neutral")
    speech = np.concatenate(
        [load_audio(ASSETS / "speech" / n, 16000) for n in ("librivox_0920.flac", "librivox_0930.flac")]
    )
    portrait = str(ASSETS / "portraits" / "pexels_piacquadio.jpg")
    clips = []
    if args.data:
        for meta in list_clips(args.data, "test")[: args.clips]:
            folder = clip_dir(args.data, meta.clip_id)
            clips.append(
                (read_frames(folder, range(meta.num_frames), meta.frame_format)[0], read_audio(folder)[0])
            )
    report = {"weights": str(resolve_weights(args.weights)), "threads": args.threads}
    live_options = options.replace(crop=True, output_size=256)

    def parse(text: str) -> tuple[int, int, int]:  # hop:lookahead[:nfe]
        values = [int(v) for v in text.split(":")]
        return values[0], values[1], values[2] if len(values) > 2 else StreamSettings.nfe

    parsed = [parse(text) for text in args.settings]
    # 1. timing, before any MediaPipe tracker runs in this process
    timing = {}
    for hop, look, nfe in parsed:
        settings = StreamSettings(hop_frames=hop, lookahead_frames=look, nfe=nfe)
        run = paced_run(pipe, portrait, speech, settings, live_options)
        timing[hop, look, nfe] = {k: v for k, v in run.items() if k != "frames"}
        print(f"timing {hop}:{look}:{nfe} {timing[hop, look, nfe]}", file=sys.stderr, flush=True)
    concurrent = []
    for n in args.streams:
        results: list[dict] = [None] * n

        def one(i: int, results: list = results) -> None:
            results[i] = paced_run(pipe, portrait, speech, StreamSettings(), live_options)

        threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        p95 = [r["latency_p95"] for r in results]
        concurrent.append({"n": n, "p95": p95, "rtf": [r["rtf"] for r in results], "holds": max(p95) <= 1.5})
        print(f"streams {concurrent[-1]}", file=sys.stderr, flush=True)
    report["streams"] = concurrent
    # 2. lip sync, streamed and offline
    offline_r = None
    if clips:
        offline = [np.concatenate(list(pipe.generate(img, wav, options))) for img, wav in clips]
        offline_r = float(np.mean([lip_r(f, wav) for f, (_, wav) in zip(offline, clips)]))
        report["offline_lsr"] = offline_r
    header = (
        "| hop | look-ahead | TTFF (s) | latency mean / p95 / max (s) | RTF | LS-r stream | LS-r offline |"
    )
    rows = [header, "|---|---|---|---|---|---|---|---|"]
    report["settings"] = []
    for hop, look, nfe in parsed:
        settings = StreamSettings(hop_frames=hop, lookahead_frames=look, nfe=nfe)
        lsr = None
        if clips:
            streamed = [
                paced_run(pipe, img, wav, settings, options, pace=False)["frames"] for img, wav in clips
            ]
            lsr = float(np.mean([lip_r(f, wav) for f, (_, wav) in zip(streamed, clips)]))
        run = timing[hop, look, nfe]
        report["settings"].append(run | {"hop": hop, "lookahead": look, "nfe": nfe, "lsr": lsr})
        cells = [
            str(hop),
            str(look),
            str(nfe),
            f"{run['ttff']:.2f}",
            f"{run['latency_mean']:.2f} / {run['latency_p95']:.2f} / {run['latency_max']:.2f}",
            f"{run['rtf']:.2f}",
            "–" if lsr is None else f"{lsr:.3f}",
            "–" if offline_r is None else f"{offline_r:.3f}",
        ]
        rows.append("| " + " | ".join(cells) + " |")
    print("\n".join(rows))
    print("\n| concurrent streams | p95 latency per stream (s) | RTF per stream | holds |\n|---|---|---|---|")
    for c in concurrent:
        p95, rtf = ", ".join(f"{v:.2f}" for v in c["p95"]), ", ".join(f"{v:.2f}" for v in c["rtf"])
        print(f"| {c['n']} | {p95} | {rtf} | {'yes' if c['holds'] else 'no'} |")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
