"""Can a stage-1 decoder render another expression at all? (issue 14)

tools/expression_transfer.py shows the auto-encoder keep the source frame's expression. This tells
apart the two places where that can come from. For the first N test clips (the driving clip) and a
source frame from a clip of the same portrait with another emotion, every 8th driving frame is
rebuilt twice: from the encoded latent w_{S->r} + w_{r->D} (what the model does), and from a latent
optimised for that frame (Adam on the decoder's whole input latent, 300 steps, L1 to the frame; the
decoder and the source's feature maps frozen). If the optimised latent reaches the driving
expression, the decoder can render it and the encoder is what keeps the source's expression.
Prints L1 and the transfer (expression_transfer.transfer_share: 0 = the source's expression, 1 = the
driving frame's) of both.

    .venv/bin/python tools/expression_latent_probe.py data/syn64-chg runs/demo-autoencoder-v10
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from expression_transfer import transfer_share  # noqa: E402

from floatalk.data.layout import clip_dir, list_clips, read_frames  # noqa: E402
from floatalk.evaluate.world_reader import WorldReader  # noqa: E402
from floatalk.train.autoencoder import load_motion_autoencoder  # noqa: E402


def to_uint8(x: torch.Tensor) -> np.ndarray:
    return x.clamp(-1, 1).add(1).mul(127.5).round().byte().permute(0, 2, 3, 1).numpy()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data")
    parser.add_argument("weights", help="weights folder with motion_ae/, or a stage-1 run folder")
    parser.add_argument("--clips", type=int, default=4)
    parser.add_argument("--steps", type=int, default=300)
    args = parser.parse_args(argv)
    began = time.perf_counter()
    torch.manual_seed(0)
    dataset = json.loads((Path(args.data) / "dataset.json").read_text())
    max_open = dataset.get("extra", {}).get("config", {}).get("max_mouth_open", 0.4)
    model = load_motion_autoencoder(args.weights).eval().requires_grad_(False)
    metas = list_clips(args.data, "test")
    print("| driving clip | driving emotion | source emotion | encoded: L1 | transfer | optimised: L1 | transfer |")
    print("|---|---|---|---|---|---|---|")
    rows = []
    for meta in metas[: args.clips]:
        other = next(
            (o for o in metas if o.extra["portrait"] == meta.extra["portrait"] and o.emotion != meta.emotion),
            None,
        )
        if other is None:
            continue
        frames = read_frames(clip_dir(args.data, meta.clip_id), range(0, meta.num_frames, 8), meta.frame_format)
        source = read_frames(clip_dir(args.data, other.clip_id), [0], other.frame_format)[0]
        x = torch.from_numpy(np.concatenate([source[None], frames])).permute(0, 3, 1, 2).float() / 127.5 - 1
        src = model.encode_source(x[:1])
        encoded = src.identity_latent + model.encode_motion(x[1:])
        latent = encoded.clone().requires_grad_(True)
        opt = torch.optim.Adam([latent], lr=0.02)
        for _ in range(args.steps):
            loss = (model.dec(latent, src.feats) - x[1:]).abs().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        reader = WorldReader(meta.extra["portrait"], frames.shape[1], max_open)
        truth = reader.read(frames).expression
        start = reader.read(source[None]).expression[0]
        row = []
        with torch.no_grad():
            for z in (encoded, latent):
                rec = model.dec(z, src.feats)
                got = reader.read(to_uint8(rec)).expression
                row += [float((rec.clamp(-1, 1) - x[1:]).abs().mean()), transfer_share(got, start, truth)]
        rows.append(row)
        cells = " | ".join(f"{v:.3f}" if k % 2 == 0 else f"{v:.2f}" for k, v in enumerate(row))
        print(f"| {meta.clip_id} | {meta.emotion} | {other.emotion} | {cells} |", flush=True)
    mean = np.nanmean(np.array(rows), axis=0)
    print(f"\nmean: encoded L1 {mean[0]:.3f} transfer {mean[1]:.2f}; optimised L1 {mean[2]:.3f} transfer {mean[3]:.2f}")
    print(f"({time.perf_counter() - began:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
