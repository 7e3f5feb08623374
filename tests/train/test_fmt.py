"""Stage-2 training: the step is the old recipe bit for bit; the real CLI on tiny synthetic data (losses,
resume, cache, export, bad data)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from floatalk.cli import main as cli_main
from floatalk.config import preset
from floatalk.data.synthetic import SyntheticConfig, write_synthetic_dataset
from floatalk.flow import FlowMatchingObjective, OTPath, WindowConditions, flow_matching_losses
from floatalk.models.audio import AudioEncoder
from floatalk.train.amp import Amp
from floatalk.train.config import TrainingConfig
from floatalk.train.fmt import FMTTask, FMTTrainConfig
from floatalk.train.trainer import TrainContext

CONFIGS = Path(__file__).parents[2] / "src" / "floatalk" / "configs"
pytestmark = pytest.mark.filterwarnings("ignore:no VGG-19 weights", "ignore:The given NumPy array")


@pytest.fixture(scope="module")
def stage1(tmp_path_factory) -> tuple[Path, Path]:
    """A tiny synthetic dataset and a 2-step stage-1 run on it."""
    tmp = tmp_path_factory.mktemp("fmt")
    data = tmp / "data"
    write_synthetic_dataset(data, SyntheticConfig(size=32, num_clips=4, seed=5, clip_seconds=(1.0, 1.5)))
    args = ["train", "autoencoder", "--config", str(CONFIGS / "autoencoder-tiny.yaml"), f"data={data}"]
    assert (
        cli_main([*args, f"train.output_dir={tmp / 'ae'}", "train.max_steps=2", "train.progress=false"]) == 0
    )
    return data, tmp / "ae"


def train(stage1, out: Path, *overrides: str) -> int:
    data, ae = stage1
    args = ["train", "fmt", "--config", str(CONFIGS / "fmt-tiny.yaml"), f"data={data}", f"autoencoder={ae}"]
    return cli_main(
        [*args, f"train.output_dir={out}", "train.progress=false", "train.log_every=1", *overrides]
    )


def metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


class OldRecipeTask(FMTTask):
    """FMTTask with the train_step from before the objective moved to floatalk.flow (bf43b5d), verbatim."""

    path = OTPath()

    def train_step(self, batch, step):
        ctx, cfg = self.ctx, self.cfg
        batch = {k: v.to(ctx.device) for k, v in batch.items()}
        lp = cfg.model.context_frames
        motion = batch["motion"]  # (B, L'+L, d)
        prev, x1 = motion[:, :lp], motion[:, lp:]
        b = motion.shape[0]
        with ctx.amp.autocast():
            audio = self.speech_features(batch, ctx.models["audio_encoder"])  # (B, L'+L, d_a)
            cond = WindowConditions(
                audio=audio[:, lp:],
                source_motion=batch["source_motion"],
                emotion=batch["emotion"],
                prev_motion=prev,
                prev_audio=audio[:, :lp],
            )

            def keep(p: float) -> torch.Tensor:
                return torch.rand(b, device=motion.device) >= p

            prev_keep = keep(cfg.drop_prev)
            cond = cond.drop(
                audio=keep(cfg.drop_audio),
                reference=keep(cfg.drop_reference),
                emotion=keep(cfg.drop_emotion),
                prev_motion=prev_keep,
                prev_audio=keep(cfg.drop_prev),
            )
            x0 = torch.randn_like(x1)
            t = torch.rand(b, device=motion.device)
            sample = self.path.sample(x0, x1, t)
            velocity = ctx.models["fmt"](sample.x_t, sample.t, **cond.as_kwargs())
            losses = flow_matching_losses(velocity, sample.u_t, prev, cfg.ot_weight, cfg.velocity_weight)
        self.opt.zero_grad(set_to_none=True)
        ctx.amp.backward(losses["loss"])
        ctx.amp.step(self.opt)
        return {k: v.detach() for k, v in losses.items()}


def _tiny_cfg(**overrides) -> FMTTrainConfig:
    tiny = preset("tiny-logmel")  # the sizes of configs/fmt-tiny.yaml
    return FMTTrainConfig(model=tiny.fmt, audio=tiny.audio, lr=1e-3, audio_context_frames=4, **overrides)


def _run_steps(task_cls, cfg: FMTTrainConfig, batches, tmp_path):
    """Build the task from seed 0, as train_fmt does, and take one step per batch from seed 1."""
    torch.manual_seed(0)
    task = task_cls(cfg, AudioEncoder(cfg.audio))
    models = task.models()
    optimizers = task.optimizers()
    cpu = torch.device("cpu")
    task.setup(
        TrainContext(
            config=TrainingConfig(),
            dist=None,
            device=cpu,
            amp=Amp("no", cpu, grad_clip=1.0),
            models=models,
            optimizers=optimizers,
            ema={},
            run_dir=tmp_path,
        )
    )
    torch.manual_seed(1)
    losses = [task.train_step(batch, step) for step, batch in enumerate(batches)]
    weights = {
        f"{m}.{k}": v.detach().clone() for m, mod in models.items() for k, v in mod.state_dict().items()
    }
    return losses, weights


@pytest.mark.parametrize(
    "drops",
    [
        {},  # the paper's probabilities
        {"drop_audio": 0.3, "drop_reference": 0.6, "drop_emotion": 0.2, "drop_prev": 0.45},
    ],
)
def test_train_step_is_the_old_recipe_bit_for_bit(tmp_path, drops):
    cfg = _tiny_cfg(ot_weight=0.8, velocity_weight=1.25, **drops)
    n, c, spf = cfg.model.sequence_frames, cfg.audio_context_frames, 640
    g = torch.Generator().manual_seed(7)
    batches = [
        {
            "motion": torch.randn(8, n, 32, generator=g),
            "source_motion": torch.randn(8, 32, generator=g),
            "emotion": torch.softmax(torch.randn(8, 7, generator=g), -1),
            "waveform": 0.1 * torch.randn(8, (n + 2 * c) * spf, generator=g),
        }
        for _ in range(4)
    ]
    new_losses, new_weights = _run_steps(FMTTask, cfg, batches, tmp_path)
    old_losses, old_weights = _run_steps(OldRecipeTask, cfg, batches, tmp_path)
    assert isinstance(FMTTask(cfg, AudioEncoder(cfg.audio)).objective, FlowMatchingObjective)
    assert [set(m) for m in new_losses] == [{"ot", "prev", "velocity", "loss"}] * 4
    for new, old in zip(new_losses, old_losses, strict=True):
        for k in old:
            assert torch.equal(new[k], old[k]), k
    assert new_weights.keys() == old_weights.keys()
    for k in old_weights:
        assert torch.equal(new_weights[k], old_weights[k]), k
    # the steps did train: the weights moved and the losses differ between steps
    assert len({float(m["loss"]) for m in new_losses}) == 4


def test_objective_follows_the_config():
    cfg = _tiny_cfg(ot_weight=0.5, velocity_weight=2.0, drop_audio=0.2, drop_reference=0.3, drop_emotion=0.4)
    objective = FMTTask(cfg, AudioEncoder(cfg.audio)).objective
    assert (objective.ot_weight, objective.velocity_weight) == (0.5, 2.0)
    d = objective.dropout
    assert (d.audio, d.reference, d.emotion, d.prev_motion, d.prev_audio) == (0.2, 0.3, 0.4, 0.5, 0.5)


def test_losses_finite_and_falling(stage1, tmp_path):
    out = tmp_path / "run"
    assert train(stage1, out, "train.max_steps=40", "lr=3e-3") == 0
    loss = [m["loss"] for m in metrics(out)]
    assert len(loss) == 40 and all(np.isfinite(loss))
    assert np.mean(loss[-8:]) < 0.9 * np.mean(loss[:8])
    data = stage1[0]
    caches = list((data / "cache").iterdir())
    assert len(caches) == 1 and len(list(caches[0].glob("*.safetensors"))) == 3  # the 3 train clips


def test_resume_is_exact(stage1, tmp_path):
    common = ["train.ckpt_every=0"]
    assert train(stage1, tmp_path / "full", "train.max_steps=6", *common) == 0
    assert train(stage1, tmp_path / "half", "train.max_steps=3", *common) == 0
    assert train(stage1, tmp_path / "half", "train.max_steps=6", *common) == 0
    full, half = metrics(tmp_path / "full"), metrics(tmp_path / "half")
    assert [m["step"] for m in half] == list(range(1, 7))
    assert [m["loss"] for m in full] == [m["loss"] for m in half]


def test_export_gives_a_working_model(stage1, tmp_path):
    from floatalk.pipeline import FloatPipeline

    out = tmp_path / "run"
    assert train(stage1, out, "train.max_steps=2") == 0
    assert cli_main(["export", str(out), str(tmp_path / "weights")]) == 0
    pipe = FloatPipeline.from_pretrained(tmp_path / "weights")
    assert pipe.model.emotion is None and pipe.config.audio.frontend == "logmel"
    wave = np.random.default_rng(0).normal(0, 0.1, 12000).astype(np.float32)
    frames = np.concatenate(list(pipe.generate(torch.zeros(1, 3, 32, 32), wave, output_size=32)))
    assert frames.shape == (19, 32, 32, 3)


def test_clips_shorter_than_the_window_are_reported(stage1, tmp_path, capsys):
    # the tiny window is 10 frames; ask for a window longer than every clip
    code = train(stage1, tmp_path / "run", "model.clip_frames=60", "model.context_frames=2")
    assert code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no usable train clips" in err and "shorter than 62" in err


def test_missing_autoencoder_is_one_line(stage1, tmp_path, capsys):
    data, _ = stage1
    args = ["train", "fmt", "--config", str(CONFIGS / "fmt-tiny.yaml"), f"data={data}"]
    assert cli_main([*args, f"autoencoder={tmp_path / 'nope'}", f"train.output_dir={tmp_path / 'r'}"]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_init_from_starts_from_an_exported_model(stage1, tmp_path):
    from floatalk.weights import load_component_state

    out = tmp_path / "run"
    assert train(stage1, out, "train.max_steps=2") == 0
    assert cli_main(["export", str(out), str(tmp_path / "weights")]) == 0
    tuned = tmp_path / "tuned"
    assert train(stage1, tuned, "train.max_steps=1", "lr=1e-12", f"init_from={tmp_path / 'weights'}") == 0
    assert cli_main(["export", str(tuned), str(tmp_path / "weights2")]) == 0
    for component in ("fmt", "audio_encoder"):
        a = load_component_state(tmp_path / "weights", component)
        b = load_component_state(tmp_path / "weights2", component)
        assert a.keys() == b.keys()
        assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a), component
