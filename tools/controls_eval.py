"""Issue 14's control measurements on a prepared dataset's test split: pose following, still head,
emotion timeline. Prints Markdown tables; writes the timeline figure.

For each of the first N test clips (portrait = its first frame, speech = its sound):

* **pose following**: the driving pose is the head-pose track of the *next* test clip, retargeted to
  the portrait's pose (its movements from the portrait's own pose, floatalk.reference.retarget_pose),
  given as a saved track (`pose_from` a .npy file). `--drive world` (default): the clip's ground-truth
  pose in the landmarker's units (data/driving.py world pose, the map fitted on the dataset);
  `--drive landmarker`: the landmarker's reading of the clip's frames (with its frame noise). The
  pose-conditioned model samples with it; the unconditioned runs (the model without a pose, and a
  model trained without the condition) sample freely. Each output's measured pose (the landmarker)
  is compared with the driving target: mean absolute yaw / pitch / roll error in degrees, and the
  same after removing each track's mean over the clip ("movement error": how well the movements
  are followed, whatever the constant offset of the measure on one face).
* **still head**: the pose model with `still_head` against its default output: the std over the
  clip of the measured yaw / pitch / roll (mean over clips), and lip sync. Two reference rows: the
  test clips themselves, and the *measurement floor*: the same world rendered with the head held
  exactly still (all head-motion amplitudes 0, mouth, eyes and expression moving), which is the
  smallest std the landmarker can report on a talking head of this world.
* **lip sync** of every run: LS-r, the shipped measure (mouth opening vs speech envelope, best
  offset within ±15 frames).
* **emotion timeline** (once, on the first neutral test clip's first frame, with a long speech
  asset): the timeline given, the facial-expression model on every output frame, the share of
  frames of each span (outside the crossfades) whose top label is the requested one; a figure of
  frames and curves.

    .venv/bin/python tools/controls_eval.py data/syn64-id --pose-weights W3 --plain-weights W2 \
        --clips 8 --figure docs/figures/emotion-timeline.png
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from floatalk.config import EMOTION_LABELS
from floatalk.data.driving import build_driving_tracks, head_pose_track, load_driving_track
from floatalk.data.layout import clip_dir, list_clips, read_audio, read_frames
from floatalk.emotion_timeline import EmotionTimeline
from floatalk.evaluate.lipsync import speech_envelope
from floatalk.evaluate.measures import av_offset
from floatalk.evaluate.mouth import MouthTracker
from floatalk.options import GenerateOptions
from floatalk.pipeline import FloatPipeline
from floatalk.reference import portrait_pose, retarget_pose

ANGLES = ("yaw", "pitch", "roll")
SPEECHES = Path(__file__).parents[1] / "src" / "floatalk" / "assets" / "speech"
#: Two held-out speech assets one after the other (7.8 s) for the timeline
TIMELINE_SPEECH = ("librivox_0920.flac", "librivox_0930.flac")
#: The world reader's expression amplitudes, in the order of WorldReading.expression
AMPLITUDES = ("smile", "brow raise", "inner brow")


def frames_of(pipe: FloatPipeline, image: np.ndarray, audio, **options) -> np.ndarray:
    opts = GenerateOptions(crop=False, seed=0, output_size=pipe.image_size, nfe=10, **options)
    return np.concatenate(list(pipe.generate(image, audio, opts)))


def lip_r(frames: np.ndarray, audio: np.ndarray) -> float:
    with MouthTracker() as tracker:
        opening = np.array([tracker.process(f)[0] for f in frames])
    _, r, _ = av_offset(opening, speech_envelope(audio, 16000, 25.0, len(opening)))
    return 0.0 if not np.isfinite(r) else r


def still_floor(clips, num_clips: int = 6) -> np.ndarray:
    """Mean std of the landmarker's yaw / pitch / roll on the world rendered with the head held still."""
    import tempfile

    from floatalk.data.synthetic import SyntheticConfig, write_synthetic_dataset

    size = clips[0][1].shape[1]
    still = dict(max_roll_deg=0.0, max_yaw_deg=0.0, max_pitch_deg=0.0, max_shift=0.0, max_scale=0.0)
    with tempfile.TemporaryDirectory() as tmp:
        write_synthetic_dataset(tmp, SyntheticConfig(size=size, num_clips=num_clips, seed=5, **still))
        stds = []
        for meta in list_clips(tmp):
            frames = read_frames(clip_dir(tmp, meta.clip_id), range(meta.num_frames), meta.frame_format)
            stds.append(head_pose_track(frames, what=meta.clip_id)[:, :3].std(0))
    return np.mean(stds, 0)


def timeline_figure(
    frames: np.ndarray, probs: np.ndarray, expression: np.ndarray, timeline: EmotionTimeline, path: Path
) -> None:
    """Frames, the world reader's expression amplitudes and the fer model's probabilities over time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = np.linspace(0, len(frames) - 1, 8).astype(int)
    fig = plt.figure(figsize=(10, 6.4))
    for k, f in enumerate(shown):
        ax = fig.add_axes([0.02 + k * 0.1225, 0.68, 0.115, 0.29])
        ax.imshow(frames[f])
        ax.set_axis_off()
        ax.set_title(f"{f / 25:.1f} s", fontsize=8)
    t = np.arange(len(probs)) / 25
    panels = (
        ([0.07, 0.38, 0.9, 0.24], "world reader", AMPLITUDES, expression, (-1.1, 1.1)),
        ([0.07, 0.07, 0.9, 0.24], "fer p", EMOTION_LABELS, probs, (0.0, 1.1)),
    )
    for box, ylabel, names, values, ylim in panels:
        ax = fig.add_axes(box)
        for i, name in enumerate(names):
            if ylabel != "fer p" or values[:, i].max() > 0.15:
                ax.plot(t, values[:, i], label=name)
        for span in timeline.spans:
            ax.axvspan(span.start, span.end or t[-1], alpha=0.08, color="k")
            ax.text(span.start + 0.05, ylim[1] * 0.9, span.label, fontsize=8)
        ax.set_ylabel(ylabel)
        ax.set_ylim(*ylim)
        ax.legend(fontsize=7, ncol=4, loc="lower right")
    ax.set_xlabel("time (s)")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def world_target(clip_pose: np.ndarray, next_pose: np.ndarray, n: int) -> np.ndarray:
    """The pose asked for, in the world's units: the clip's first-frame pose plus the next clip's
    movements from its first frame, (n, 3) yaw / pitch / roll in degrees."""
    moves = next_pose[:, [1, 2, 0]] - next_pose[:1, [1, 2, 0]]
    moves = np.concatenate([moves, np.repeat(moves[-1:], max(0, n - len(moves)), 0)])[:n]
    return clip_pose[:1, [1, 2, 0]] + moves


def errors(measured: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean absolute error, and the same with each track's clip mean removed (movement error)."""
    moved, wanted = measured - measured.mean(0), target - target.mean(0)
    return np.abs(measured - target).mean(0), np.abs(moved - wanted).mean(0)


def print_table(title: str, runs, rows, extra_rows) -> None:
    print(f"\n{title}\n")
    print(
        "| run | yaw err | pitch err | roll err | yaw move err | pitch move err | roll move err "
        "| yaw std | pitch std | roll std | LS-r |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name in runs:
        err, move = np.mean(rows[name]["err"], 0), np.mean(rows[name]["move"], 0)
        std = np.mean(rows[name]["std"], 0)
        cells = [f"{v:.2f}" for v in (*err, *move, *std)] + [f"{np.mean(rows[name]['lip']):.3f}"]
        print(f"| {name} | " + " | ".join(cells) + " |")
    for name, std in extra_rows:
        print(f"| {name} | | | | | | | " + " | ".join(f"{v:.2f}" for v in std) + " | |")


def world_still_floor(size: int, num_clips: int = 4, motion_ae=None) -> np.ndarray:
    """Mean std of the world reader's yaw / pitch / roll on the world rendered with the head held still.

    With `motion_ae`, on those frames rebuilt by that stage-1 auto-encoder (source = the first frame,
    driving = every frame): the smallest head motion a still head decoded by it can show, whatever
    stage 2 does (the stage-1 floor).
    """
    from floatalk.data.synthetic import SyntheticConfig, plan_clips, render_clip
    from floatalk.evaluate.world_reader import WorldReader

    still = dict(max_roll_deg=0.0, max_yaw_deg=0.0, max_pitch_deg=0.0, max_shift=0.0, max_scale=0.0)
    config = SyntheticConfig(size=size, num_clips=num_clips, seed=5, **still)
    stds = []
    for i, plan in enumerate(plan_clips(config)):
        frames = render_clip(config, i, plan).frames
        if motion_ae is not None:
            from expression_transfer import rebuilt  # tools/, beside this script

            frames = rebuilt(motion_ae, frames[0], frames)
        stds.append(WorldReader(plan.portrait, size, config.max_mouth_open).read(frames).angles.std(0))
    return np.mean(stds, 0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data")
    parser.add_argument("--pose-weights", required=True, help="a model trained with the pose condition")
    parser.add_argument("--plain-weights", required=True, help="a model trained without it")
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--timeline", default="0-2.6:happy,2.6-5.2:surprise,5.2-:neutral")
    parser.add_argument("--figure", type=Path, default=None)
    parser.add_argument("--drive", choices=("world", "landmarker"), default="world")
    parser.add_argument("--no-landmarker", action="store_true", help="only the world reader's tables")
    parser.add_argument("--pose-guidance", type=float, default=1.0, help="g_p of the driven and still runs")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (1 beside a training run)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    from floatalk.evaluate.world_reader import WorldReader, expression_labels

    began = time.perf_counter()
    posed = FloatPipeline.from_pretrained(args.pose_weights)
    plain = FloatPipeline.from_pretrained(args.plain_weights)
    metas = list_clips(args.data, "test")[: args.clips]
    dataset = json.loads((Path(args.data) / "dataset.json").read_text())
    max_open = dataset.get("extra", {}).get("config", {}).get("max_mouth_open", 0.4)
    clips = []
    for meta in metas:
        folder = clip_dir(args.data, meta.clip_id)
        frames = read_frames(folder, range(meta.num_frames), meta.frame_format)
        audio, _ = read_audio(folder)
        world = np.load(folder / "tracks.npz")["pose"].astype(np.float64)
        clips.append((meta.clip_id, frames, audio, world))
    landmarker = not args.no_landmarker
    real_poses = [head_pose_track(c[1], what=c[0]) for c in clips] if landmarker else []
    if args.drive == "world":
        cache = build_driving_tracks(args.data, metas, "world_pose")
        drives = [load_driving_track(cache, m.clip_id) for m in metas]
    else:
        drives = real_poses
    runs = ("pose model, driven", "pose model, free", "pose model, --still-head", "model without pose")
    rows = {name: {"err": [], "move": [], "std": [], "lip": []} for name in runs}
    world_rows = {name: {"err": [], "move": [], "std": [], "lip": []} for name in runs}
    residuals = {name: [] for name in runs}
    for i, (clip_id, frames, audio, world) in enumerate(clips):
        image = frames[0]
        nxt = (i + 1) % len(clips)
        drive = drives[nxt]
        n = len(frames)
        drive = np.concatenate([drive, np.repeat(drive[-1:], max(0, n - len(drive)), 0)])[:n]
        track_file = Path(f"/tmp/controls-drive-{clip_id}.npy")
        np.save(track_file, drive)
        outputs = {
            runs[0]: frames_of(posed, image, audio, pose_from=str(track_file), pose_guidance=args.pose_guidance),
            runs[1]: frames_of(posed, image, audio),
            runs[2]: frames_of(posed, image, audio, still_head=True, pose_guidance=args.pose_guidance),
            runs[3]: frames_of(plain, image, audio),
        }
        reader = WorldReader(metas[i].extra["portrait"], image.shape[0], max_open)
        target_w = world_target(world, clips[nxt][3], n)
        if landmarker:
            target = portrait_pose(image) + retarget_pose(drive)
        for name, out in outputs.items():
            lip = lip_r(out, audio)
            reading = reader.read(out)
            err, move = errors(reading.angles, target_w)
            for key, value in (("err", err), ("move", move), ("std", reading.angles.std(0)), ("lip", lip)):
                world_rows[name][key].append(value)
            residuals[name].append(float(reading.residual.mean()))
            if landmarker:
                measured = head_pose_track(out, what=f"{name} {clip_id}")[:, :3]
                err, move = errors(measured, target[:, :3])
                for key, value in (("err", err), ("move", move), ("std", measured.std(0)), ("lip", lip)):
                    rows[name][key].append(value)
        print(f"[{time.perf_counter() - began:6.0f} s] {clip_id}", file=sys.stderr, flush=True)
    what = "ground-truth pose (landmarker units)" if args.drive == "world" else "measured pose"
    print(f"{len(clips)} test clips of {args.data}; driving pose = the next clip's {what}")
    world_real = np.mean([c[3][:, [1, 2, 0]].std(0) for c in clips], 0)
    print_table(
        "Measured by the world reader (the world's renderer fitted to each frame; degrees of the world)",
        runs,
        world_rows,
        [
            ("the test clips themselves (ground truth)", world_real),
            ("measurement floor (world, head held still)", world_still_floor(clips[0][1].shape[1])),
            (
                "stage-1 floor (that still world rebuilt by the pose model's auto-encoder)",
                world_still_floor(clips[0][1].shape[1], motion_ae=posed.model.motion_ae),
            ),
        ],
    )
    print("\nmean fit residual (0..255): " + ", ".join(f"{k} {np.mean(v):.2f}" for k, v in residuals.items()))
    if landmarker:
        real_std = np.mean([p[:, :3].std(0) for p in real_poses], 0)
        print_table(
            "Measured by MediaPipe's face landmarker (its units)",
            runs,
            rows,
            [
                ("the test clips themselves", real_std),
                ("measurement floor (world, head held still)", still_floor(clips)),
            ],
        )
    # the emotion timeline
    timeline = EmotionTimeline.parse(args.timeline)
    from floatalk.io import load_audio

    speech = np.concatenate([load_audio(SPEECHES / name, 16000) for name in TIMELINE_SPEECH])
    k_neutral = next((k for k, m in enumerate(metas) if m.emotion == "neutral"), 0)
    image = clips[k_neutral][1][0]
    out = frames_of(posed, image, speech, emotion=args.timeline, emotion_scale=2.0)
    from floatalk.face.expression import FacialExpressionClassifier

    probs = FacialExpressionClassifier().probabilities(out)
    top = probs.argmax(1)
    reading = WorldReader(metas[k_neutral].extra["portrait"], image.shape[0], max_open).read(out)
    world_labels = np.array(expression_labels(reading.expression))
    t = np.arange(len(out)) / 25
    speech_names = " + ".join(TIMELINE_SPEECH)
    print(f"\nEmotion timeline `{args.timeline}` (g_e 2, {speech_names}, {len(out)} frames):\n")
    print(
        "| span | requested | frames (outside crossfades) | world reader agreement | fer agreement "
        "| fer mean p |"
    )
    print("|---|---|---|---|---|---|")
    for span in timeline.spans:
        inside = (t >= span.start + 0.15) & (t < (span.end if span.end is not None else np.inf) - 0.15)
        k = EMOTION_LABELS.index(span.label)
        agree = float((top[inside] == k).mean()) if inside.any() else float("nan")
        world_agree = float((world_labels[inside] == span.label).mean()) if inside.any() else float("nan")
        p = float(probs[inside, k].mean()) if inside.any() else float("nan")
        end = "end" if span.end is None else f"{span.end:g}"
        print(
            f"| {span.start:g}-{end} s | {span.label} | {int(inside.sum())} | {world_agree:.2f} "
            f"| {agree:.2f} | {p:.2f} |"
        )
    if args.figure is not None:
        timeline_figure(out, probs, reading.expression, timeline, args.figure)
    print(f"\n({time.perf_counter() - began:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
