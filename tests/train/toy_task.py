"""A toy training task for the training-machinery tests, and a script that runs it.

Tiny MLP regression with two optimisers (Adam for the encoder, SGD + StepLR for the head), dropout
and noisy data items, so that every source of randomness and every piece of state the trainer
checkpoints is exercised. Run as a script (single process or under torchrun)::

    python tests/train/toy_task.py OUT_DIR [key=value ...]

It trains with ``train.output_dir=OUT_DIR`` and writes ``OUT_DIR/final_rank<r>.pt`` (the final
weights of each rank) when it returns; exit status 130 after an interrupt.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from floatalk.train import (
    Trainer,
    TrainingConfig,
    TrainTask,
    cleanup,
    load_config,
    rank,
    seed_everything,
)


def _train_defaults() -> TrainingConfig:
    return TrainingConfig(
        batch_size=4,
        num_workers=0,
        log_every=1,
        ckpt_every=0,
        max_steps=8,
        ema_decay=0.9,
        tensorboard=False,
        progress=False,
    )


@dataclass(frozen=True)
class ToyConfig:
    train: TrainingConfig = field(default_factory=_train_defaults)
    dim: int = 4  # input features
    hidden: int = 16  # hidden width
    depth: int = 1  # extra hidden layers (hidden x hidden): makes checkpoints larger
    dropout: float = 0.1  # consumes the torch RNG inside train_step
    noise: float = 0.05  # per-item input noise (consumes the RNG inside dataset[i])
    num_samples: int = 30  # dataset size (not a multiple of the batch: the tail is dropped)
    lr: float = 1e-2


class ToyDataset:
    """Fixed inputs and targets of a random linear map, plus per-item random noise on the inputs."""

    def __init__(self, cfg: ToyConfig) -> None:
        g = torch.Generator().manual_seed(1234)
        self.x = torch.randn(cfg.num_samples, cfg.dim, generator=g)
        self.y = self.x @ torch.randn(cfg.dim, 1, generator=g)
        self.noise = cfg.noise

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"x": self.x[i] + self.noise * torch.randn(self.x.shape[1]), "y": self.y[i], "index": i}


class ToyTask(TrainTask):
    name = "toy"

    def __init__(self, cfg: ToyConfig) -> None:
        layers: list[nn.Module] = [nn.Linear(cfg.dim, cfg.hidden), nn.ReLU(), nn.Dropout(cfg.dropout)]
        for _ in range(cfg.depth - 1):
            layers += [nn.Linear(cfg.hidden, cfg.hidden), nn.ReLU()]
        self.encoder = nn.Sequential(*layers)
        self.head = nn.Linear(cfg.hidden, 1)
        self.lr = cfg.lr
        self.seen: list[int] = []  # dataset indices of every step (checked by the tests)
        self.calls = 0  # task state that goes through state_dict / load_state_dict

    def models(self) -> dict[str, nn.Module]:
        return {"encoder": self.encoder, "head": self.head}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        self.opt_enc = torch.optim.Adam(self.encoder.parameters(), lr=self.lr)
        self.opt_head = torch.optim.SGD(self.head.parameters(), lr=self.lr, momentum=0.9)
        return {"encoder": self.opt_enc, "head": self.opt_head}

    def schedulers(self) -> dict[str, object]:
        self.sched = torch.optim.lr_scheduler.StepLR(self.opt_head, step_size=3, gamma=0.5)
        return {"head": self.sched}

    def ema_models(self) -> tuple[str, ...]:
        return ("encoder", "head")

    def train_step(self, batch, step):
        enc, head, amp = self.ctx.models["encoder"], self.ctx.models["head"], self.ctx.amp
        self.seen.append(batch["index"].tolist())
        with amp.autocast():
            pred = head(enc(batch["x"]))
            loss = torch.nn.functional.mse_loss(pred, batch["y"])
        self.opt_enc.zero_grad(set_to_none=True)
        self.opt_head.zero_grad(set_to_none=True)
        amp.backward(loss)
        amp.step(self.opt_enc)
        amp.step(self.opt_head)
        self.sched.step()
        self.calls += 1
        return {"loss": loss.detach(), "lr_head": self.sched.get_last_lr()[0]}

    def preview(self, step):
        w = self.ctx.ema["encoder"].module[0].weight  # (hidden, dim)
        return {"encoder weights": torch.tanh(w)[None] + 0.01 * torch.randn(1, *w.shape)}

    def state_dict(self):
        return {"calls": self.calls}

    def load_state_dict(self, state):
        self.calls = int(state["calls"])


def build(cfg: ToyConfig) -> tuple[ToyTask, ToyDataset]:
    """The task (weights seeded from the config's seed, identical on every rank) and the dataset."""
    seed_everything(cfg.train.seed)
    return ToyTask(cfg), ToyDataset(cfg)


def main(argv: list[str]) -> int:
    out = argv[0]
    cfg = load_config(ToyConfig, None, [f"train.output_dir={out}", *argv[1:]])
    task, dataset = build(cfg)
    trainer = Trainer(cfg.train, task, dataset, run_config=cfg)
    result = trainer.fit()
    weights = {
        f"{n}.{k}": v.detach().cpu() for n, m in task.models().items() for k, v in m.state_dict().items()
    }
    torch.save(weights, Path(out) / f"final_rank{rank()}.pt")
    cleanup()
    return 130 if result.interrupted else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
