"""Training-step benchmark of both stages (random data, no dataset needed).

    python benchmarks/train.py [--device cpu] [--steps 5] [--size 128]

Stage 1: one generator + discriminator step of `AutoencoderTask` at the config of
configs/autoencoder-128.yaml (with and without the GAN terms). Stage 2: one step of `FMTTask` with
the default `FMTTrainConfig` (log-mel front-end). Prints seconds per step and samples per second.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

CONFIGS = Path(__file__).parents[1] / "src" / "floatalk" / "configs"


def _context(task, device):
    from floatalk.train.amp import Amp
    from floatalk.train.distributed import DistInfo
    from floatalk.train.trainer import TrainContext

    models = {k: m.to(device) for k, m in task.models().items()}
    optimizers = task.optimizers()
    dist = DistInfo(rank=0, local_rank=0, world_size=1, device=device, backend=None)
    ctx = TrainContext(task.cfg.train, dist, device, Amp("no", device), models, optimizers, {}, Path("."))
    task.setup(ctx)
    return ctx


def time_steps(task, batch, device, steps: int) -> float:
    _context(task, device)
    task.train_step(batch, 10**9)  # warm-up
    start = time.perf_counter()
    for i in range(steps):
        task.train_step(batch, 10**9 + i)
    return (time.perf_counter() - start) / steps


def main() -> None:
    import warnings

    from floatalk.models.audio import AudioEncoder
    from floatalk.train.autoencoder import AutoencoderTask, AutoencoderTrainConfig
    from floatalk.train.config import load_config
    from floatalk.train.fmt import FMTTask, FMTTrainConfig

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
    device = torch.device(args.device)
    warnings.filterwarnings("ignore", message="no VGG-19 weights")
    torch.manual_seed(0)
    rows = []

    for gan, extra in ((False, []), (True, []), (True, ["disc_channel_base=4096"])):
        start = 0 if gan else 10**12
        cfg = load_config(
            AutoencoderTrainConfig, CONFIGS / "autoencoder-128.yaml", [f"adversarial_start={start}", *extra]
        )
        n, s = cfg.train.batch_size, cfg.model.size
        batch = {
            "source": torch.rand(n, 3, s, s) * 2 - 1,
            "driving": torch.rand(n, 3, s, s) * 2 - 1,
            "boxes": torch.tensor([[30.0, 40, 60, 62], [68, 44, 94, 64], [38, 74, 90, 106]]).expand(n, 3, 4),
        }
        sec = time_steps(AutoencoderTask(cfg), batch, device, args.steps)
        name = f"stage 1, {s}², batch {n}, {'with' if gan else 'without'} GAN terms {' '.join(extra)}"
        rows.append((name.strip(), sec, n))

    cfg = FMTTrainConfig()
    n, w, c = cfg.train.batch_size, cfg.model.sequence_frames, cfg.audio_context_frames
    batch = {
        "motion": torch.randn(n, w, cfg.model.latent_dim),
        "source_motion": torch.randn(n, cfg.model.latent_dim),
        "emotion": torch.softmax(torch.randn(n, cfg.model.num_emotions), -1),
        "waveform": torch.randn(n, (w + 2 * c) * 640) * 0.1,
    }
    sec = time_steps(FMTTask(cfg, AudioEncoder(cfg.audio)), batch, device, args.steps)
    rows.append((f"stage 2, default FMTTrainConfig (window {w}), batch {n}", sec, n))

    print(f"| step ({args.device}, {torch.get_num_threads()} threads) | s/step | samples/s |")
    print("|---|---|---|")
    for name, sec, n in rows:
        print(f"| {name} | {sec:.2f} | {n / sec:.1f} |")


if __name__ == "__main__":
    main()
