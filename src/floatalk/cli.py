"""The `floatalk` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

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

    from .checkpoint import load_model
    from .generate import (
        GenerateOptions,
        generate_video,
        load_motion_file,
        load_noise_file,
        resolve_weights,
    )
    from .pipeline import FloatPipeline

    options = GenerateOptions(
        emotion=args.emotion,
        emotion_scale=args.emotion_scale,
        audio_scale=args.audio_scale,
        nfe=args.nfe,
        solver=args.solver,
        seed=args.seed,
        crop=not args.no_crop,
        face_index=args.face_index,
        crop_fill=args.crop_fill,
        motion_edits=tuple(args.edit_motion or ()),
        motion_scale=args.motion_scale,
        decode_batch_size=args.batch_size,
    ).validate()
    device = _pick_device(args.device)
    dtype = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[args.dtype]
    if dtype == torch.float16 and device.type == "cpu":
        raise InputError("--dtype float16 needs a GPU; on CPU use float32 or bfloat16")
    from .io.video import check_output_path

    check_output_path(args.output)
    motion = load_motion_file(args.motion) if args.motion else None
    if args.noise and args.motion:
        raise InputError("--noise and --motion exclude each other: saved motion is rendered without sampling")
    noise = load_noise_file(args.noise) if args.noise else None
    model = load_model(resolve_weights(args.weights))
    m = model.motion_ae.dec.direction.weight.shape[1]
    if bad := [k for k, _ in options.motion_edits if k >= m]:
        raise InputError(f"edit-motion direction {bad[0]} out of range; this model has directions 0..{m - 1}")
    pipe = FloatPipeline(model, device=device, dtype=dtype)
    bar = None
    if not args.quiet:
        from tqdm import tqdm

        bar = tqdm(total=0, unit="frame", desc="generating", dynamic_ncols=True, file=sys.stderr)

    def progress(done: int, total: int) -> None:
        if bar is not None:
            bar.total = total
            bar.update(done - bar.n)

    try:
        result = generate_video(
            pipe,
            args.image,
            args.audio,
            args.output,
            options,
            motion=motion,
            noise=noise,
            save_motion=args.save_motion,
            progress=progress,
        )
    finally:
        if bar is not None:
            bar.close()
    print(result.summary())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
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
    gen.add_argument(
        "--emotion",
        default="auto",
        help="auto (from the speech) or angry, disgust, fear, happy, neutral, sad, surprise",
    )
    gen.add_argument("--emotion-scale", type=float, default=1.0, help="emotion guidance g_e (default 1)")
    gen.add_argument("--audio-scale", type=float, default=2.0, help="audio guidance g_a (default 2)")
    gen.add_argument(
        "--nfe",
        type=int,
        default=10,
        help="velocity evaluations per 2 s window (default 10; the original's --nfe 10 is 9 here)",
    )
    gen.add_argument("--solver", default="euler", help="ODE solver: euler or midpoint (default euler)")
    gen.add_argument("--seed", type=int, help="random seed (default: random, printed at the end)")
    gen.add_argument("--no-crop", action="store_true", help="the image is already a cropped portrait")
    gen.add_argument("--face-index", type=int, help="which face to animate, largest first (default 0)")
    gen.add_argument(
        "--crop-fill",
        default="black",
        help="fill outside the photo when cropping: black (original), edge or reflect",
    )
    gen.add_argument(
        "--edit-motion",
        type=_edit,
        action="append",
        metavar="K=DELTA",
        help="shift motion coefficient K along the learned basis by DELTA (repeatable)",
    )
    gen.add_argument(
        "--motion-scale",
        type=float,
        default=1.0,
        help="scale of the generated motion around the source pose (default 1)",
    )
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
    gen.add_argument("--batch-size", type=int, help="frames per decoder call (default 1 on CPU, 8 on GPU)")
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; user errors print one line to stderr and exit with status 2."""
    args = build_parser().parse_args(argv)
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
