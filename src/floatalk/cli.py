"""The `floatalk` command line."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from collections.abc import Sequence
from typing import Any, NoReturn

from . import __version__
from .errors import InputError

__all__ = ["main"]


def _convert_original(args: argparse.Namespace) -> int:
    import torch

    from .config import preset
    from .convert import convert_original

    dtype = {"float32": None, "float16": torch.float16, "bfloat16": torch.bfloat16}[args.dtype]
    out = convert_original(
        args.checkpoint, args.out, args.wav2vec2, args.emotion_model, dtype=dtype, config=preset(args.preset)
    )
    print(f"wrote {out}")
    return 0


def _edit(text: str) -> tuple[int, float]:
    try:
        k, delta = text.split("=", 1)
        return int(k), float(delta)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected K=DELTA (e.g. 3=-1.5), got {text!r}") from None


def _pick_device(name: str):
    import torch

    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise InputError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda requested but no CUDA GPU is available; use --device cpu")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise InputError("--device mps requested but MPS is not available; use --device cpu")
    return device


def _generate(args: argparse.Namespace) -> int:
    import torch

    from .io.latents import load_motion_file, load_noise_file
    from .io.video import check_output_path
    from .pipeline import FloatPipeline
    from .weights import load_model, resolve_weights

    options = options_from_args(args).validate()  # fail on a bad value before loading anything
    device = _pick_device(args.device)
    dtype = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[args.dtype]
    if dtype == torch.float16 and device.type == "cpu":
        raise InputError("--dtype float16 needs a GPU; on CPU use float32 or bfloat16")
    check_output_path(args.output)
    if args.noise and args.motion:
        raise InputError("--noise and --motion exclude each other: saved motion is rendered without sampling")
    signer = None
    if args.c2pa_cert or args.c2pa_key:
        if not (args.c2pa_cert and args.c2pa_key):
            raise InputError("a C2PA manifest needs both --c2pa-cert and --c2pa-key")
        from .provenance.manifest import ManifestSigner

        signer = ManifestSigner(args.c2pa_cert, args.c2pa_key, args.c2pa_alg)
    motion = load_motion_file(args.motion) if args.motion else None
    noise = load_noise_file(args.noise) if args.noise else None
    pipe = FloatPipeline(
        load_model(resolve_weights(args.weights)),
        device=device,
        dtype=dtype,
        compile=args.compile,
        decoding=args.decoding,
    )
    options.validate(pipe.motion_directions)
    bar = Progress(args.quiet, unit="frame", desc="generating")
    try:
        result = pipe.write_video(
            args.image,
            args.audio,
            args.output,
            options,
            motion=motion,
            noise=noise,
            save_motion=args.save_motion,
            progress=bar.update,
            signer=signer,
        )
    finally:
        bar.close()
    print(result.summary())
    return 0


def add_option_arguments(parser: argparse.ArgumentParser, only: Sequence[str] | None = None) -> None:
    """One argument per GenerateOptions field (or per field named in `only`): flag, default and help
    come from the field itself, so the CLI and the Python API cannot disagree."""
    from .options import GenerateOptions

    for f in dataclasses.fields(GenerateOptions):
        if only is not None and f.name not in only:
            continue
        meta = f.metadata
        flag = meta.get("flag") or "--" + f.name.replace("_", "-")
        kwargs: dict = {"dest": f.name, "help": meta["help"]}
        if meta.get("metavar"):
            kwargs["metavar"] = meta["metavar"]
        if f.name == "motion_edits":
            kwargs.update(type=_edit, action="append", default=None)
        elif f.type == "bool":
            kwargs.update(action="store_false" if f.default else "store_true", default=f.default)
        else:
            base = f.type.split(" | ")[0]
            kwargs.update(type={"int": int, "float": float, "str": str}[base], default=f.default)
            if f.default is not None and "(default" not in kwargs["help"]:
                kwargs["help"] += (
                    f" (default {f.default:g})" if base == "float" else f" (default {f.default})"
                )
        parser.add_argument(flag, **kwargs)


def options_from_args(args: argparse.Namespace):
    """The GenerateOptions of parsed `add_option_arguments` flags."""
    from .options import GenerateOptions

    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(GenerateOptions)}
    values["motion_edits"] = tuple(values["motion_edits"] or ())
    return GenerateOptions(**values)


def _driving_kinds(text: str | None) -> list[str]:
    from .data.driving import TRACK_KINDS

    if not text:
        return []
    kinds = [k.strip().replace("-", "_") for k in text.split(",") if k.strip()]
    if unknown := [k for k in kinds if k not in TRACK_KINDS]:
        raise InputError(
            f"--driving-tracks: unknown track {unknown[0]!r}; choose from {', '.join(TRACK_KINDS)}"
        )
    return kinds


def _build_tracks(out_dir: str, kinds: list[str], quiet: bool) -> None:
    """Measure the driving-signal tracks (data/driving.py) of every clip of a prepared dataset."""
    from .data.driving import build_driving_tracks
    from .data.layout import list_clips

    clips = list_clips(out_dir)
    for kind in kinds:
        started = time.perf_counter()
        cache = build_driving_tracks(out_dir, clips, kind)
        if not quiet:
            print(f"{kind} tracks of {len(clips)} clips in {cache} ({time.perf_counter() - started:.0f} s)")


def _prepare(args: argparse.Namespace) -> int:
    kinds = _driving_kinds(args.driving_tracks)  # checked before any work
    if args.synthetic:
        if len(args.paths) != 1:
            raise InputError("with --synthetic give only OUT_DIR: floatalk prepare --synthetic OUT_DIR")
        code = _prepare_synthetic(args, args.paths[0])
        _build_tracks(args.paths[0], kinds, args.quiet)
        return code
    if len(args.paths) != 2:
        raise InputError(
            "give SRC_DIR and OUT_DIR: floatalk prepare SRC_DIR OUT_DIR (or --synthetic OUT_DIR)"
        )
    from .data.prepare import PrepareOptions, prepare_dataset

    options = PrepareOptions(
        size=512 if args.size is None else args.size,
        max_seconds=args.max_seconds,
        min_frames=args.min_frames,
        test_fraction=args.test_fraction or 0.0,
        allow_silent=args.allow_silent,
        detect_every=args.detect_every,
        landmarks_every=args.landmarks_every,
        smooth_seconds=args.smooth_seconds,
        max_missing=args.max_missing,
        max_gap_seconds=args.max_gap_seconds,
        crop_fill=args.crop_fill,
        frame_format=args.frame_format,
        workers=args.workers,
    )
    report = prepare_dataset(args.paths[0], args.paths[1], options, progress=not args.quiet)
    print(report.summary())
    if not report.ok:
        raise InputError(report.error_line())
    _build_tracks(args.paths[1], kinds, args.quiet)
    return 0


def _prepare_synthetic(args: argparse.Namespace, out_dir: str) -> int:
    try:
        from .data.synthetic import SyntheticConfig, write_synthetic_dataset
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith("floatalk"):
            raise InputError("this floatalk version has no synthetic dataset generator") from None
        raise
    fields = {
        "size": args.size,
        "num_clips": args.num_clips,
        "seed": args.seed,
        "test_fraction": args.test_fraction,
        "morphs": args.morphs,
        "still_heads": args.still_heads,
        "emotion_plan": args.emotion_plan,
        "emotion_changes": args.emotion_changes,
    }
    try:
        config = SyntheticConfig(**{k: v for k, v in fields.items() if v is not None})
    except ValueError as exc:  # the config's own checks: a bad --size / --num-clips / --seed
        raise InputError(f"--synthetic: {exc}") from None
    metas = write_synthetic_dataset(out_dir, config)
    frames = sum(m.num_frames for m in metas)
    print(f"wrote {len(metas)} synthetic clips ({frames} frames) to {out_dir}")
    return 0


def _serve(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from .server.app import create_app
    except ImportError as exc:
        raise InputError(
            f"floatalk serve needs FastAPI and uvicorn ({exc.name} is missing): pip install 'floatalk[serve]'"
        ) from None
    from .server import ServerSettings

    key = args.api_key or (os.environ.get(args.api_key_env) if args.api_key_env else None)
    if args.api_key_env and not key:
        raise InputError(f"--api-key-env {args.api_key_env}: that environment variable is not set")
    settings = ServerSettings(
        weights=args.weights,
        work_dir=args.work_dir,
        api_key=key,
        max_upload_bytes=int(args.max_upload_mb * 2**20),
        max_audio_seconds=args.max_audio_seconds,
        max_running_jobs=args.max_jobs,
        max_queued_jobs=args.max_queue,
        max_streams=args.max_streams,
        job_ttl_seconds=args.job_ttl,
        threads=args.threads,
    ).validate()
    if args.host not in ("127.0.0.1", "localhost", "::1") and key is None:
        print(f"floatalk serve: warning: listening on {args.host} without an API key", file=sys.stderr)
    app = create_app(settings)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning" if args.quiet else "info")
    return 0


def _export(args: argparse.Namespace) -> int:
    from .train.export import ExportOptions, export_checkpoint

    options = ExportOptions(use_ema=not args.no_ema, base=args.base)
    out = export_checkpoint(args.run_dir, args.out_dir, options)
    print(f"wrote {out}")
    return 0


# Stage name -> (module, config class, run function) of `floatalk train STAGE`.
TRAIN_STAGES = {
    "autoencoder": ("floatalk.train.autoencoder", "AutoencoderTrainConfig", "train_autoencoder"),
    "fmt": ("floatalk.train.fmt", "FMTTrainConfig", "train_fmt"),
}


def _train(args: argparse.Namespace) -> int:
    import importlib

    from .train.config import load_config
    from .train.distributed import cleanup

    module_name, config_name, run_name = TRAIN_STAGES[args.stage]
    module = importlib.import_module(module_name)
    if args.config is not None and not os.path.isfile(args.config):
        raise InputError(f"config file {args.config!r} does not exist")
    cfg = load_config(getattr(module, config_name), args.config, args.overrides)
    try:
        result = getattr(module, run_name)(cfg)
    finally:
        cleanup()
    if result.interrupted:
        print(f"interrupted at step {result.step}; checkpoint saved, run the same command to resume")
        return 130
    print(f"finished at step {result.step}: {result.checkpoint}")
    return 0


def _add_train_parser(sub: argparse._SubParsersAction) -> None:
    tr = sub.add_parser(
        "train",
        help="train stage 1 (motion auto-encoder) or stage 2 (flow-matching transformer)",
        description="Train a stage on a prepared dataset. Settings come from the config's defaults, "
        "then --config FILE (YAML), then KEY=VALUE overrides (dotted, e.g. train.max_steps=1000). "
        "Runs resume from OUTPUT_DIR/checkpoints/latest. Multi-GPU: torchrun --nproc_per_node N "
        "-m floatalk.cli train ...",
    )
    tr.add_argument("stage", choices=sorted(TRAIN_STAGES), help="which stage to train")
    tr.add_argument("--config", metavar="FILE", help="YAML file of settings (see src/floatalk/configs/)")
    tr.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="settings that override the file")
    tr.set_defaults(func=_train)


def _check_json_out(path: str | None) -> None:
    """One-line errors for a --json OUT that cannot be written, before any work."""
    from pathlib import Path

    if path is not None:
        out = Path(path)
        if out.is_dir():
            raise InputError(f"--json {path!r} is a directory; give a file name such as report.json")
        if not out.resolve().parent.is_dir():
            raise InputError(f"--json {path!r}: its folder does not exist; create it first")


def _write_json(path: str | None, data: dict) -> None:
    import json
    from pathlib import Path

    if path is not None:
        try:
            Path(path).write_text(json.dumps(data, indent=2) + "\n")
        except OSError as e:
            raise InputError(f"--json {path!r} could not be written ({e.strerror})") from None
        print(f"wrote {path}")


class Progress:
    """Progress on stderr, drawn only once work has started (so an early one-line error stands alone).

    On a terminal: a tqdm bar. Elsewhere (a log file, a pipe, CI): a few plain lines, one each time
    another tenth of the total is done (at most 11 lines). `quiet` shows nothing.
    update(done[, total]) sets the count (and the total).
    """

    STEPS = 10

    def __init__(self, quiet: bool, unit: str = "it", desc: str = "", **tqdm_kwargs) -> None:
        self.quiet, self.unit, self.desc = quiet, unit, desc
        self.kwargs = tqdm_kwargs
        self.bar = None
        self.interactive = sys.stderr.isatty()
        self.total: int | None = None
        self.shown = -1  # last tenth printed (plain mode)

    def update(self, done: int, total: int | None = None) -> None:
        if self.quiet:
            return
        if total is not None:
            self.total = total
        if not self.interactive:
            if self.total:
                step = min(self.STEPS, done * self.STEPS // self.total)
                if step > self.shown:
                    self.shown = step
                    percent = 100 * done // self.total
                    print(
                        f"{self.desc}: {done}/{self.total} {self.unit}s ({percent}%)",
                        file=sys.stderr,
                        flush=True,
                    )
            return
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(
                total=self.total,
                dynamic_ncols=True,
                file=sys.stderr,
                unit=self.unit,
                desc=self.desc,
                **self.kwargs,
            )
        if total is not None:
            self.bar.total = total
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _report(args: argparse.Namespace, measure: Any, **bar: Any) -> int:
    """Run ``measure(progress)`` under a progress bar, print its report's summary, write its JSON."""
    bar_ = Progress(args.quiet, **bar)
    try:
        report = measure(bar_.update)
    finally:
        bar_.close()
    print(report.summary())
    _write_json(args.json, report.to_dict())
    return 0


def _evaluate_lipsync(args: argparse.Namespace) -> int:
    from .evaluate.lipsync import evaluate_lipsync

    _check_json_out(args.json)

    def measure(progress: Any) -> Any:
        return evaluate_lipsync(
            args.video,
            args.audio,
            args.reference,
            max_lag=args.max_lag,
            normalise=args.normalise,
            progress=progress,
        )

    return _report(args, measure, unit="frame", desc="measuring", leave=False)


def _evaluate_synthetic(args: argparse.Namespace) -> int:
    from .evaluate.synthetic import evaluate_synthetic_lipsync

    _check_json_out(args.json)
    if args.max_clips is not None and args.max_clips < 1:
        raise InputError(f"--max-clips must be >= 1, got {args.max_clips}")
    device = _pick_device(args.device)

    def measure(progress: Any) -> Any:
        return evaluate_synthetic_lipsync(
            args.weights,
            args.data,
            split=args.split,
            zero_audio=args.zero_audio,
            seed=args.seed,
            nfe=args.nfe,
            audio_scale=args.audio_scale,
            emotion_scale=args.emotion_scale,
            device=device,
            videos_dir=args.videos,
            clips=args.max_clips,
            progress=progress,
        )

    return _report(args, measure, unit="clip", desc="evaluating")


def _evaluate_identity(args: argparse.Namespace) -> int:
    from .evaluate.identity import evaluate_identity

    _check_json_out(args.json)

    def measure(progress: Any) -> Any:
        return evaluate_identity(
            args.image,
            args.video,
            every=args.every,
            max_frames=args.max_frames,
            ceiling_size=args.ceiling_size,
            crop=args.crop,
            progress=progress,
        )

    return _report(args, measure, unit="frame", desc="measuring", leave=False)


def _evaluate_videos(args: argparse.Namespace) -> int:
    from .evaluate.videos import evaluate_videos

    _check_json_out(args.json)
    metrics = (
        None
        if args.metrics is None
        else tuple(m.strip().lower() for m in args.metrics.split(",") if m.strip())
    )

    def measure(progress: Any) -> Any:
        return evaluate_videos(
            args.real,
            args.generated,
            metrics=metrics,
            weights=_backbone_weights(args),
            max_frames=args.max_frames,
            fvd_stride=args.fvd_stride,
            identity_step=args.identity_step,
            progress=progress,
        )

    return _report(args, measure, unit="clip", desc="evaluating")


#: --OPTION of each evaluation weights file, and its entry in evaluate_videos' `weights`.
_BACKBONE_OPTIONS = (
    ("fid", "fid_weights", "--fid-weights", "FID Inception (weights-inception-2015-12-05-6726825d.pth)"),
    ("fvd", "fvd_weights", "--fvd-weights", "FVD I3D (pytorch-i3d rgb_imagenet.pt)"),
    ("csim", "arcface_weights", "--arcface-weights", "CSIM ArcFace iresnet100 (arcface_torch backbone.pth)"),
    ("face3d", "face3d_weights", "--face3d-weights", "3DMM E-FID/P-FID (Deep3DFaceRecon epoch_20.pth)"),
    ("lse", "syncnet_weights", "--syncnet-weights", "LSE-D/C SyncNet (syncnet_v2.model)"),
    ("lpips", "lpips_weights", "--lpips-weights", "LPIPS AlexNet (alexnet-owt-7be5be79.pth)"),
)


def _add_backbone_options(parser: argparse.ArgumentParser) -> None:
    for _, dest, option, what in _BACKBONE_OPTIONS:
        env = "FLOATALK_" + option[2:].upper().replace("-", "_")
        parser.add_argument(option, dest=dest, metavar="FILE", help=f"{what}; else ${env}")
    parser.add_argument(
        "--fvd-stride",
        type=int,
        default=1,
        metavar="N",
        help="step between FVD's 16-frame windows (default 1: every window)",
    )
    parser.add_argument(
        "--identity-step",
        type=int,
        default=1,
        metavar="N",
        help="describe every Nth generated frame for the identity measure (default 1: all; dlib takes "
        "about 0.1 s a frame on a CPU)",
    )


def _backbone_weights(args: argparse.Namespace) -> dict[str, Any]:
    return {key: getattr(args, dest) for key, dest, _, _ in _BACKBONE_OPTIONS if getattr(args, dest)}


def _evaluate_model(args: argparse.Namespace) -> int:
    from .evaluate.model import RunSettings, evaluate_model

    _check_json_out(args.json)
    settings = RunSettings(
        baseline=args.baseline,
        weights=args.weights,
        nfe=args.nfe,
        audio_scale=args.audio_scale,
        emotion_scale=args.emotion_scale,
        emotion=args.emotion,
        zero_audio=args.zero_audio,
        pose=args.pose,
        seed=args.seed,
        split=args.split,
        max_clips=args.max_clips,
    )
    if args.baseline != "model" and (args.weights or args.zero_audio):
        raise InputError(f"--baseline {args.baseline} uses no model: drop --weights / --zero-audio")
    metrics = (
        None
        if args.metrics is None
        else tuple(m.strip().lower() for m in args.metrics.split(",") if m.strip())
    )
    device = _pick_device(args.device) if args.baseline == "model" else "cpu"

    def measure(progress: Any) -> Any:
        return evaluate_model(
            args.data,
            args.out,
            settings,
            name=args.name,
            metrics=metrics,
            backbones=_backbone_weights(args),
            fvd_stride=args.fvd_stride,
            identity_step=args.identity_step,
            device=device,
            progress=progress,
        )

    return _report(args, measure, unit="step", desc="generating, then evaluating")


def _add_evaluate_parser(sub: argparse._SubParsersAction) -> None:
    ev = sub.add_parser(
        "evaluate",
        help="measure talking-face videos (lip sync, identity), or a model on a synthetic dataset",
        description="Measure talking-face videos.",
    )
    metrics = ev.add_subparsers(dest="metric", required=True, metavar="METRIC")
    lip = metrics.add_parser(
        "lipsync",
        help="mouth opening (MediaPipe face mesh) vs the speech envelope and a ground-truth mouth track",
        usage="floatalk evaluate lipsync VIDEO [--audio FILE] [--reference FILE.npy|CLIP_DIR] "
        "[--max-lag N] [--json OUT]",
        description="Measure the mouth opening in every frame of VIDEO (inner-lip gap over the "
        "inter-ocular distance, MediaPipe face mesh) and its Pearson correlation with the speech "
        "envelope (300-3400 Hz loudness per frame) at the best lag within +-N frames and at lag 0, "
        "and with a ground-truth mouth track if given.",
    )
    lip.add_argument("video", metavar="VIDEO", help="the talking-face video")
    lip.add_argument("--audio", metavar="FILE", help="the speech (default: the video's own sound track)")
    lip.add_argument(
        "--reference",
        metavar="FILE.npy|CLIP_DIR",
        help="ground-truth mouth track: a .npy array, or a dataset clip folder (tracks.npz 'mouth_open')",
    )
    lip.add_argument("--max-lag", type=int, default=4, metavar="N", help="lag search range (default 4)")
    lip.add_argument(
        "--normalise",
        choices=("interocular", "face_height"),
        default="interocular",
        help="divide the lip gap by the inter-ocular distance (default) or the face height",
    )
    lip.add_argument("--json", metavar="OUT", help="also write the report as JSON")
    lip.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    lip.set_defaults(func=_evaluate_lipsync)

    ide = metrics.add_parser(
        "identity",
        help="distance of the faces of a video to its source portrait (dlib face descriptor)",
        usage="floatalk evaluate identity --image PORTRAIT VIDEO [--crop] [--every N] [--max-frames N] "
        "[--ceiling-size S] [--json OUT]",
        description="Describe the largest face of PORTRAIT and of every N-th frame of VIDEO with dlib's "
        "128-d face descriptor (ResNet, the floatalk[identity] extra) and report the L2 distances: "
        "median, mean, max, and the fraction of frames with a face and below 0.6 (dlib's same-person "
        "threshold). Frames without a face are counted and left out of the statistics. --ceiling-size S "
        "adds the resize-only ceiling: the portrait against itself downscaled to SxS and back, the best "
        "a model at S^2 pixels can score.",
    )
    ide.add_argument("video", metavar="VIDEO", help="the talking-face video")
    ide.add_argument("--image", required=True, metavar="PORTRAIT", help="the source portrait")
    ide.add_argument(
        "--crop",
        action="store_true",
        help="crop the portrait as `floatalk generate` does first (default: compare with it as given)",
    )
    ide.add_argument("--every", type=int, default=1, metavar="N", help="every N-th frame (default 1)")
    ide.add_argument("--max-frames", type=int, metavar="N", help="describe at most N frames")
    ide.add_argument(
        "--ceiling-size",
        type=int,
        metavar="S",
        help="also report the distance of the portrait to itself through SxS pixels",
    )
    ide.add_argument("--json", metavar="OUT", help="also write the report as JSON")
    ide.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    ide.set_defaults(func=_evaluate_identity)

    vid = metrics.add_parser(
        "videos",
        help="the paper's metrics (FID, FVD, CSIM, E-FID, P-FID, LSE-D/C, LPIPS) and the shipped ones",
        usage="floatalk evaluate videos --real DIR --generated DIR [--metrics LIST] "
        "[--fid-weights FILE] [--fvd-weights FILE] [--arcface-weights FILE] [--face3d-weights FILE] "
        "[--syncnet-weights FILE] [--lpips-weights FILE] [--max-frames N] [--json OUT]",
        description="Pair the videos of two folders by file name, take their frames at 25 fps (each "
        "pair cut to its shorter clip) and compute the paper's metrics with their networks read from "
        "local weights files (FID, FVD, CSIM, 3DMM E-FID/P-FID, LSE-D/C, LPIPS), and the shipped "
        "ones: identity (dlib descriptor), E-FID/P-FID on the MediaPipe face landmarker, lip sync "
        "(mouth opening vs speech envelope at the best offset within +-15 frames). Each number names "
        "its backbone; see docs/evaluation.md.",
    )
    vid.add_argument("--real", required=True, metavar="DIR", help="folder of real clips")
    vid.add_argument(
        "--generated", required=True, metavar="DIR", help="folder of generated clips, same names"
    )
    vid.add_argument(
        "--metrics",
        metavar="LIST",
        help="comma-separated: fid, fvd, csim, identity, efid, pfid, efid3d, pfid3d, lse, lipsync, lpips "
        "(default: the shipped ones and every paper metric whose weights file is given)",
    )
    _add_backbone_options(vid)
    vid.add_argument(
        "--max-frames", type=int, metavar="N", help="use at most the first N frames of each clip"
    )
    vid.add_argument("--json", metavar="OUT", help="also write the report as JSON")
    vid.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    vid.set_defaults(func=_evaluate_videos)

    mod = metrics.add_parser(
        "model",
        help="generate a prepared dataset's test split with a model (or a baseline) and evaluate it",
        usage="floatalk evaluate model DATA --out DIR [--weights DIR | --baseline still|ground-truth] "
        "[--nfe N] [--audio-scale G] [--emotion-scale G] [--emotion label|auto|LABEL] [--zero-audio] "
        "[--seed N] [--metrics LIST] [backbone files] [--json OUT]",
        description="For every clip of the split, animate its first frame with its speech (clip i "
        "uses seed N + i) at the dataset's frame size, write the real clips next to the generated "
        "ones under --out, and evaluate them as `floatalk evaluate videos`. Resumable: clips already "
        "made are reused; real-clip features are computed once. Baselines: still (the source frame "
        "held), ground-truth (the real clip itself); --zero-audio samples without the speech.",
    )
    mod.add_argument("data", metavar="DATA", help="prepared dataset folder (floatalk prepare)")
    mod.add_argument(
        "--out", required=True, metavar="DIR", help="evaluation folder (real/, cache/, one folder per run)"
    )
    mod.add_argument("--name", metavar="RUN", help="the run's folder name (default: from the settings)")
    mod.add_argument("--weights", help="weights folder (default: $FLOATALK_WEIGHTS, else the demo weights)")
    mod.add_argument(
        "--baseline", choices=("model", "still", "ground-truth"), default="model", help="default: model"
    )
    mod.add_argument("--split", choices=("test", "train"), default="test", help="clips to use (default test)")
    mod.add_argument(
        "--emotion",
        default="label",
        help="label (each clip's emotion label, default), auto (predicted from the speech) or one label",
    )
    mod.add_argument("--zero-audio", action="store_true", help="ablation: motion sampled without the speech")
    mod.add_argument(
        "--pose",
        choices=("none", "real"),
        default="none",
        help="real: each clip's own measured head pose drives a pose-conditioned model (default none)",
    )
    mod.add_argument("--seed", type=int, default=0, metavar="N", help="seed of the first clip (default 0)")
    add_option_arguments(mod, only=("nfe", "audio_scale", "emotion_scale"))
    mod.add_argument("--max-clips", type=int, metavar="N", help="only the first N clips")
    mod.add_argument("--metrics", metavar="LIST", help="as `floatalk evaluate videos --metrics`")
    _add_backbone_options(mod)
    mod.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N or mps")
    mod.add_argument("--json", metavar="OUT", help="also write the report as JSON")
    mod.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    mod.set_defaults(func=_evaluate_model)

    syn = metrics.add_parser(
        "synthetic",
        help="lip sync of a weights folder on the held-out clips of a synthetic dataset",
        usage="floatalk evaluate synthetic DATA [--weights DIR] [--split test] [--zero-audio] "
        "[--seed N] [--nfe N] [--audio-scale G] [--videos DIR] [--max-clips N] [--json OUT]",
        description="For every clip of a split of the synthetic dataset DATA (floatalk prepare "
        "--synthetic), animate its first frame with its speech and emotion label (clip i in id order "
        "uses seed N + i) and measure the video as `floatalk evaluate lipsync VIDEO --reference CLIP`: "
        "Pearson r of the mouth opening with the clip's ground-truth mouth track and with the speech "
        "envelope. Clips without a detectable face are counted and left out of the means. "
        "--zero-audio gives the baseline: the same clips and seeds, motion sampled without the speech.",
    )
    syn.add_argument("data", metavar="DATA", help="synthetic dataset folder (clips with tracks.npz)")
    syn.add_argument("--weights", help="weights folder (default: $FLOATALK_WEIGHTS, else the demo weights)")
    syn.add_argument("--split", choices=("test", "train"), default="test", help="clips to use (default test)")
    syn.add_argument(
        "--zero-audio",
        action="store_true",
        help="baseline: sample the motion without the speech condition (the videos keep the sound)",
    )
    syn.add_argument(
        "--seed",
        type=int,
        default=0,
        metavar="N",
        help="seed of the first clip; clip i uses N + i (default 0)",
    )
    add_option_arguments(syn, only=("nfe", "audio_scale", "emotion_scale"))
    syn.add_argument("--videos", metavar="DIR", help="keep the generated videos there as CLIP_ID.mp4")
    syn.add_argument("--max-clips", type=int, metavar="N", help="evaluate only the first N clips")
    syn.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N or mps")
    syn.add_argument("--json", metavar="OUT", help="also write the report as JSON")
    syn.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    syn.set_defaults(func=_evaluate_synthetic)


class _Parser(argparse.ArgumentParser):
    """argparse with one-line usage errors: `floatalk generate: error: ... (see floatalk generate --help)`."""

    def error(self, message: str) -> NoReturn:
        one_line = " ".join(message.split())
        self.exit(2, f"{self.prog}: error: {one_line} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="floatalk",
        description="Audio-driven talking portraits with FLOAT (motion latent flow matching).",
    )
    parser.add_argument("--version", action="version", version=f"floatalk {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    gen = sub.add_parser(
        "generate",
        help="portrait + speech -> talking video (MP4)",
        description="Generate a talking-head video from one portrait and a speech recording.",
    )
    gen.add_argument("--image", required=True, help="portrait photo (any common format)")
    gen.add_argument("--audio", required=True, help="speech: any audio file, or a video with sound")
    gen.add_argument("-o", "--output", default="out.mp4", help="output MP4 (default out.mp4)")
    gen.add_argument("--weights", help="weights folder (default: $FLOATALK_WEIGHTS, else the demo weights)")
    add_option_arguments(gen)
    gen.add_argument(
        "--save-motion", metavar="FILE", help="also write the sampled motion latents (.safetensors)"
    )
    gen.add_argument("--motion", metavar="FILE", help="render saved motion latents instead of sampling")
    gen.add_argument(
        "--noise",
        metavar="FILE",
        help='initial noise of every window (.safetensors with a tensor "noise"; replaces --seed), '
        "to reproduce another implementation's run exactly",
    )
    gen.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N or mps")
    gen.add_argument("--dtype", choices=("float32", "float16", "bfloat16"), default="float32")
    gen.add_argument(
        "--compile",
        action="store_true",
        help="decode with torch.compile: seconds to a minute to start, then faster per frame (for long "
        "videos); decodes without it, with a note, where it cannot compile",
    )
    gen.add_argument(
        "--decoding",
        choices=("fast", "exact"),
        default=None,
        help="fast (default; exact on MPS): the same frames up to float rounding, faster; exact: "
        "bit-identical to the original release's per-frame decoding",
    )
    gen.add_argument(
        "--c2pa-cert",
        metavar="PEM",
        help="sign a C2PA manifest (AI-generated, tool and settings) into the MP4 with this certificate "
        "chain (needs --c2pa-key)",
    )
    gen.add_argument("--c2pa-key", metavar="PEM", help="the private key of --c2pa-cert")
    gen.add_argument("--c2pa-alg", default="es256", help="the key's signature algorithm (default es256)")
    gen.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    gen.set_defaults(func=_generate)

    conv = sub.add_parser(
        "convert-original",
        help="convert the original FLOAT release (float.pth + HF wav2vec2 folders) to a weights folder",
        description="Convert the original release. float.pth may already hold the two wav2vec2 models; "
        "otherwise give their local Hugging Face folders.",
    )
    conv.add_argument("--checkpoint", required=True, help="the original float.pth")
    conv.add_argument("--wav2vec2", help="local facebook/wav2vec2-base-960h folder")
    conv.add_argument("--emotion-model", help="local r-f/wav2vec-english-speech-emotion-recognition folder")
    conv.add_argument("--out", required=True, help="output weights folder")
    conv.add_argument(
        "--dtype",
        choices=("float32", "float16", "bfloat16"),
        default="float32",
        help="storage precision of the converted weights (default float32)",
    )
    conv.add_argument(
        "--preset", default="float-512", help="architecture of the checkpoint (default float-512)"
    )
    conv.set_defaults(func=_convert_original)

    prep = sub.add_parser(
        "prepare",
        help="talking-face videos -> a training dataset (25 fps face crops, 16 kHz audio, tracks)",
        usage="floatalk prepare [options] SRC_DIR OUT_DIR\n"
        "       floatalk prepare --synthetic OUT_DIR [--num-clips N] [--size S] [--seed K] [--morphs P]\n"
        "                [--still-heads P] [--emotion-plan balanced|cycled] [--emotion-changes P]",
        description="Prepare every video under SRC_DIR (recursively) into the dataset folder OUT_DIR: "
        "25 fps face crops with the inference crop geometry on a smoothed face track, 16 kHz mono audio "
        "and facial component boxes. Resumable: clips already in OUT_DIR are kept. "
        "With --synthetic, write the synthetic world's dataset into OUT_DIR instead.",
    )
    prep.add_argument("paths", nargs="+", metavar="PATH", help="SRC_DIR OUT_DIR, or OUT_DIR with --synthetic")
    prep.add_argument("--synthetic", action="store_true", help="write the synthetic dataset into OUT_DIR")
    prep.add_argument("--size", type=int, help="side of the face crops in pixels (default 512)")
    prep.add_argument("--num-clips", type=int, help="--synthetic: number of clips")
    prep.add_argument("--seed", type=int, help="--synthetic: random seed")
    prep.add_argument(
        "--morphs",
        type=float,
        metavar="P",
        help="--synthetic: share of train clips that animate a morph of two train portraits (default 0)",
    )
    prep.add_argument(
        "--still-heads",
        type=float,
        metavar="P",
        help="--synthetic: share of train clips whose head is held at one pose (default 0)",
    )
    prep.add_argument(
        "--emotion-plan",
        choices=("balanced", "cycled"),
        help="--synthetic: how clips get their emotion: balanced (default; each portrait shows several) "
        "or cycled (datasets prepared before 2026-12-04, one emotion per portrait)",
    )
    prep.add_argument(
        "--emotion-changes",
        type=float,
        metavar="P",
        help="--synthetic: share of train clips whose expression changes to another emotion mid-clip "
        "(default 0)",
    )
    prep.add_argument("--workers", type=int, help="parallel processes (default min(4, CPU cores))")
    prep.add_argument(
        "--max-seconds",
        type=float,
        default=60.0,
        help="cut longer videos into clips of this length (0: never)",
    )
    prep.add_argument(
        "--min-frames", type=int, default=25, help="skip videos/clips shorter than this (25 fps frames)"
    )
    prep.add_argument(
        "--test-fraction",
        type=float,
        help="fraction of videos (or synthetic clips) held out as the test split "
        "(default 0; 0.125 with --synthetic)",
    )
    prep.add_argument(
        "--allow-silent", action="store_true", help="use videos without an audio track (writes silence)"
    )
    prep.add_argument("--detect-every", type=int, default=1, help="detect faces every K-th frame (default 1)")
    prep.add_argument(
        "--landmarks-every", type=int, default=1, help="facial landmarks every K-th frame (default 1)"
    )
    prep.add_argument(
        "--smooth-seconds", type=float, default=0.5, help="face track moving-average length (default 0.5)"
    )
    prep.add_argument(
        "--max-missing",
        type=float,
        default=0.2,
        help="skip a clip if the face is missing in more than this fraction of frames (default 0.2)",
    )
    prep.add_argument(
        "--max-gap-seconds",
        type=float,
        default=2.0,
        help="... or missing for longer than this in a row (default 2)",
    )
    prep.add_argument(
        "--crop-fill", default="black", help="crop outside the frame: black (as inference), edge or reflect"
    )
    prep.add_argument("--frame-format", default="jpg", help="jpg (default) or png")
    prep.add_argument(
        "--driving-tracks",
        metavar="KINDS",
        help="also measure these per-frame tracks of every clip, comma-separated: pose (MediaPipe's "
        "face landmarker), world_pose (--synthetic: the ground-truth pose in the landmarker's units), "
        "image_emotion (the facial-expression model); training measures missing ones itself",
    )
    prep.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    prep.set_defaults(func=_prepare)

    exp = sub.add_parser(
        "export",
        help="training run -> weights folder for `generate` (EMA weights when present)",
        description="Export the latest checkpoint of a training run to a weights folder "
        "(one sub-folder per component: config.json + model.safetensors).",
    )
    exp.add_argument("run_dir", metavar="RUN_DIR", help="training output folder (or its checkpoints/)")
    exp.add_argument("out_dir", metavar="OUT_DIR", help="weights folder to write (replaced if it exists)")
    exp.add_argument("--base", metavar="DIR", help="weights folder for the components this run did not train")
    exp.add_argument("--no-ema", action="store_true", help="export the raw weights instead of their EMA")
    exp.set_defaults(func=_export)
    srv = sub.add_parser(
        "serve",
        help="REST jobs, live WebSocket streams and a web page (FastAPI + uvicorn; docs/serving.md)",
        description="Serve the pipeline over HTTP: POST /jobs (multipart portrait + speech + options), "
        "WS /stream (live PCM in, JPEG frames out), a web page at /, OpenAPI docs at /docs.",
    )
    srv.add_argument(
        "--weights", metavar="DIR", help="weights folder (default: $FLOATALK_WEIGHTS, else the demo weights)"
    )
    srv.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    srv.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    srv.add_argument("--api-key", metavar="KEY", help="require this key (X-API-Key header or ?key=)")
    srv.add_argument("--api-key-env", metavar="VAR", help="read the key from this environment variable")
    srv.add_argument(
        "--work-dir", metavar="DIR", help="server-owned folder for jobs (default: a temporary one)"
    )
    srv.add_argument("--max-upload-mb", type=float, default=20.0, help="largest upload in MiB (default 20)")
    srv.add_argument("--max-audio-seconds", type=float, default=120.0, help="longest speech (default 120)")
    srv.add_argument("--max-jobs", type=int, default=1, help="jobs generated at once (default 1)")
    srv.add_argument("--max-queue", type=int, default=8, help="jobs waiting before 429 (default 8)")
    srv.add_argument("--max-streams", type=int, default=2, help="live streams at once (default 2)")
    srv.add_argument(
        "--job-ttl", type=float, default=3600.0, help="seconds a finished job is kept (default 3600)"
    )
    srv.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    srv.add_argument("-q", "--quiet", action="store_true", help="log warnings only")
    srv.set_defaults(func=_serve)
    ver = sub.add_parser(
        "verify",
        help="is a video marked as generated by floatalk? (exit 0: the watermark is found, 1: not)",
        description="Read the invisible watermark that floatalk puts on every generated frame, and "
        "validate the C2PA manifest when the file has one. Exits 0 when the watermark is found (and "
        "any manifest is valid), 1 when not, 2 on an unreadable file.",
    )
    ver.add_argument("video", metavar="VIDEO", help="the video to check")
    ver.add_argument("--max-frames", type=int, default=250, help="frames to read at most (default 250)")
    ver.add_argument("--stride", type=int, default=1, help="read every N-th frame (default 1)")
    ver.add_argument("--json", action="store_true", help="print the findings as JSON")
    ver.add_argument(
        "--c2pa-trust", metavar="PEM", help="trust anchors (CA certificates) for the C2PA manifest's signer"
    )
    ver.set_defaults(func=_verify)
    _add_train_parser(sub)
    _add_evaluate_parser(sub)
    return parser


def _verify(args: argparse.Namespace) -> int:
    from .provenance.verify import verify_video

    report = verify_video(args.video, max_frames=args.max_frames, stride=args.stride, trust=args.c2pa_trust)
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        print("\n".join(report.lines()))
    return 0 if report.ok else 1


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; user errors print one line to stderr and exit with status 2."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # `train` takes KEY=VALUE overrides anywhere after the stage; nothing else takes extras
        if getattr(args, "func", None) is not _train or any("=" not in e for e in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.overrides = [*args.overrides, *extra]
    try:
        return args.func(args)
    except InputError as exc:
        print(f"floatalk: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("floatalk: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
