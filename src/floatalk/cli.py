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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="floatalk",
        description="Audio-driven talking portraits with FLOAT (motion latent flow matching).",
    )
    parser.add_argument("--version", action="version", version=f"floatalk {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

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
