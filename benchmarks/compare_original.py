"""The original FLOAT code against floatalk, side by side in one run, same weights and inputs (issue #12).

    python benchmarks/compare_original.py --original PATH/TO/float [--seconds 5] [--rounds 2] [--json F]

PATH is a checkout of the original release (github.com/deepbrainai-research/float). Its model code
needs `torchdiffeq`, `timm` and a transformers 4.x: the original's wav2vec2 wrapper reads hidden
states that transformers 5 no longer returns that way. Both sides run in one process on the same
packages, so put them first on the path, e.g.::

    pip install --no-deps --target /tmp/orig torchdiffeq timm "transformers>=4.46,<5" \
        "huggingface_hub<1" "tokenizers==0.22.1" requests urllib3 idna charset-normalizer certifi
    PYTHONPATH=/tmp/orig python benchmarks/compare_original.py --original /path/to/float

Three shims let the original run unchanged on a CPU-only torch 2.13:
- torchvision (imported by timm, never used on this path) is stubbed when it cannot load;
- `Tensor.cuda()`, which the original's decoder calls on a tensor it builds, returns the tensor;
- the old `init_weights()` call in its speech-emotion class gets an empty tied-weights table.

Nothing is downloaded:

* weights: the parity recipe (`tests/parity_weights.py`, the same as `../shared/parity`), written as
  the original's `float.pth` and loaded by both: by the original's own `load_weight` loop, and by
  floatalk after `floatalk convert-original`. The two wav2vec2 models are random-weight Hugging Face
  folders of the released architectures (their values come from `float.pth` on both sides);
* inputs: one 512² image tensor and `--seconds` of speech-like audio, already at 16 kHz and
  normalised, so neither side's face crop or file decoding is timed;
* settings: the original's defaults (a_cfg 2, e_cfg 1, emotion predicted from speech, its
  `--nfe 10`, which is floatalk's `nfe 9`), and floatalk's defaults otherwise.

What is timed is inference: image tensor + waveform to all decoded frames (the original's
`FLOAT.inference`; floatalk's `FloatPipeline.generate` with `output_size=512`, frames converted to
uint8 as it streams them; the original leaves them as a float tensor). Runs alternate, original
first (original, floatalk, original, floatalk, ...), each in this one process after one untimed
warm-up of each. Prints each run, the medians and the ratio.
"""

from __future__ import annotations

import argparse
import importlib.abc
import importlib.machinery
import json
import sys
import tempfile
import time
import types
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def _placeholder_attribute(owner, name: str):
    """A placeholder class for `owner.name`, made once and kept (so it compares equal to itself)."""
    if name.startswith("__"):
        raise AttributeError(name)
    value = _Placeholder(name, (), {"__init__": lambda self, *a, **k: None})
    setattr(owner, name, value)
    return value


class _Placeholder(type):
    """A class whose every attribute is another placeholder class (usable as a dict key, as
    `InterpolationMode.NEAREST` is at timm's import)."""

    __getattr__ = _placeholder_attribute


class _StubModule(types.ModuleType):
    """A module whose every attribute is a placeholder class (enough for imports to succeed)."""

    __getattr__ = _placeholder_attribute


class _StubFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def __init__(self, root: str) -> None:
        self.root = root

    def find_spec(self, fullname, path, target=None):
        if fullname == self.root or fullname.startswith(self.root + "."):
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        module = _StubModule(spec.name)
        module.__path__ = []
        return module

    def exec_module(self, module) -> None:
        pass


def stub_torchvision_if_unloadable() -> bool:
    try:
        import torchvision  # noqa: F401
    except Exception:
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]
        sys.meta_path.insert(0, _StubFinder("torchvision"))
        return True
    return False


def patch_for_current_transformers(cls) -> None:
    """The original's speech-emotion class calls `init_weights()` in its constructor, written for an
    older transformers; current ones need `post_init()` to have set the tied-weights table first
    (wav2vec2 ties no weights, so an empty one is right)."""
    from transformers import PreTrainedModel

    if getattr(cls, "_floatalk_patched", False):
        return

    def init_weights(self):
        if "all_tied_weights_keys" not in self.__dict__:
            self.all_tied_weights_keys = {}
        return PreTrainedModel.init_weights(self)

    cls.init_weights = init_weights
    cls._floatalk_patched = True


def normalised_speech(seconds: float) -> np.ndarray:
    """benchmarks/generate.py's speech-like audio, normalised as wav2vec2's feature extractor does."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from generate import speech_like

    x = speech_like(seconds)
    return ((x - x.mean()) / (x.std() + 1e-7)).astype(np.float32)


def build_weights(tmp: Path) -> tuple[Path, Path, Path, Path]:
    """float.pth (parity recipe), the two HF wav2vec2 folders, and floatalk's converted folder."""
    import torch
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    from floatalk.cli import main as cli_main
    from floatalk.config import preset

    sys.path.insert(0, str(REPO / "tests"))
    from test_parity import original_checkpoint  # the parity recipe, as a full float.pth

    checkpoint = tmp / "float.pth"
    torch.save(original_checkpoint(0), checkpoint)
    config = preset("float-512")
    w2v = tmp / "wav2vec2-base-960h"
    Wav2Vec2Model(Wav2Vec2Config(**config.audio.wav2vec2)).save_pretrained(w2v)
    from models.wav2vec2_ser import Wav2Vec2ForSpeechClassification  # the original's class

    patch_for_current_transformers(Wav2Vec2ForSpeechClassification)
    ser_config = Wav2Vec2Config(
        **config.emotion.wav2vec2, num_labels=7, pooling_mode="mean", final_dropout=0.0
    )
    ser = tmp / "wav2vec-english-speech-emotion-recognition"
    Wav2Vec2ForSpeechClassification(ser_config).save_pretrained(ser)
    ours = tmp / "floatalk-weights"
    if cli_main(["convert-original", "--checkpoint", str(checkpoint), "--out", str(ours)]) != 0:
        sys.exit("floatalk convert-original failed on the parity checkpoint")
    return checkpoint, w2v, ser, ours


def original_model(checkpoint: Path, w2v: Path, ser: Path):
    import torch
    from models.float.FLOAT import FLOAT
    from options.base_options import BaseOptions

    opt = BaseOptions().initialize(argparse.ArgumentParser()).parse_args([])
    opt.wav2vec_model_path, opt.audio2emotion_path = str(w2v), str(ser)
    opt.rank, opt.ngpus = "cpu", 1
    model = FLOAT(opt)
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    with torch.no_grad():  # the original's InferenceAgent.load_weight, in effect
        for name, param in model.named_parameters():
            if name in state:
                param.copy_(state[name])
    # its wav2vec2 wrapper asks for attention maps, which current transformers give only with the
    # eager attention (the one of the original's era)
    for hf in (model.audio_encoder.wav2vec2, model.emotion_encoder.wav2vec2_for_emotion):
        if hasattr(hf, "set_attn_implementation"):
            hf.set_attn_implementation("eager")
        else:
            hf.config._attn_implementation = "eager"
    return model.eval(), opt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--original", type=Path, required=True, help="checkout of the original FLOAT code")
    parser.add_argument("--seconds", type=float, default=5.0, help="speech length")
    parser.add_argument("--rounds", type=int, default=2, help="timed runs of each, alternated")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument(
        "--decoding", choices=("fast", "exact"), default="fast", help="floatalk's decoding path"
    )
    parser.add_argument("--compile", action="store_true", help="floatalk decodes through torch.compile")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if not (args.original / "models" / "float" / "FLOAT.py").is_file():
        parser.error(
            f"{args.original} is not a checkout of the original FLOAT code (no models/float/FLOAT.py)"
        )

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    # transformers first: it decides once whether torchvision is usable, and must see it missing
    import transformers.file_utils  # noqa: F401
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model  # noqa: F401
    from transformers.modeling_outputs import BaseModelOutput  # noqa: F401
    from transformers.models.wav2vec2 import modeling_wav2vec2  # noqa: F401

    stubbed = stub_torchvision_if_unloadable()
    if not torch.cuda.is_available():  # the original's decoder calls .cuda() on a tensor it builds
        torch.Tensor.cuda = lambda self, *a, **k: self
    sys.path.insert(0, str(args.original.resolve()))
    from floatalk.pipeline import FloatPipeline

    with tempfile.TemporaryDirectory(prefix="floatalk-compare-") as name:
        tmp = Path(name)
        checkpoint, w2v, ser, ours_dir = build_weights(tmp)
        original, _ = original_model(checkpoint, w2v, ser)
        ours = FloatPipeline.from_pretrained(ours_dir, decoding=args.decoding, compile=args.compile)
    rng = np.random.default_rng(0)
    image = torch.from_numpy(rng.uniform(-1, 1, (1, 3, 512, 512)).astype(np.float32))
    wave = normalised_speech(args.seconds)
    frames_total = -(-len(wave) * 25 // 16000)

    def run_original() -> int:
        with torch.no_grad():
            out = original.inference({"s": image, "a": torch.from_numpy(wave)[None]}, nfe=10, seed=0)
        return int(out["d_hat"].shape[1] if out["d_hat"].dim() == 5 else out["d_hat"].shape[0])

    def run_ours() -> int:
        run = ours.generate(image, wave, seed=0, nfe=9, output_size=512)
        return sum(batch.shape[0] for batch in run)

    runs: dict[str, list[float]] = {"original": [], "floatalk": []}
    for label, fn in (("original", run_original), ("floatalk", run_ours)):  # warm-up, untimed
        count = fn()
        print(f"warm-up {label}: {count} frames", file=sys.stderr, flush=True)
    for r in range(args.rounds):
        for label, fn in (("original", run_original), ("floatalk", run_ours)):
            t = time.perf_counter()
            fn()
            seconds = time.perf_counter() - t
            runs[label].append(seconds)
            print(
                f"round {r + 1} {label}: {seconds:.1f} s, {frames_total / seconds:.3f} frames/s", flush=True
            )
    med = {k: float(np.median(v)) for k, v in runs.items()}
    ratio = med["original"] / med["floatalk"]
    print(
        f"\n{frames_total} frames at 512², {args.seconds:g} s of speech, {torch.get_num_threads()} threads: "
        f"original {frames_total / med['original']:.3f} frames/s, "
        f"floatalk {frames_total / med['floatalk']:.3f} frames/s (median of {args.rounds}); "
        f"floatalk / original = {ratio:.2f}x"
    )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "seconds_of_speech": args.seconds,
                    "frames": frames_total,
                    "threads": torch.get_num_threads(),
                    "torchvision_stubbed": stubbed,
                    "run_seconds": runs,
                    "median_seconds": med,
                    "speedup": ratio,
                    "date": time.strftime("%Y-%m-%d"),
                },
                indent=1,
            )
        )


if __name__ == "__main__":
    main()
