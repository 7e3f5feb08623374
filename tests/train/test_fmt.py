"""Stage-2 training through the real CLI on tiny synthetic data: losses, resume, cache, export, bad data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from floatalk.cli import main as cli_main
from floatalk.data.synthetic import SyntheticConfig, write_synthetic_dataset
from floatalk.train.fmt import flow_matching_losses

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


def test_losses_are_eq_11_to_13():
    torch.manual_seed(0)
    v, u, prev = torch.randn(2, 5, 3), torch.randn(2, 3, 3), torch.randn(2, 2, 3)
    out = flow_matching_losses(v, u, prev)
    assert torch.allclose(out["ot"], (v[:, 2:] - u).abs().mean())
    assert torch.allclose(out["prev"], (v[:, :2] - prev).abs().mean())
    target = torch.cat([prev, u], 1)
    assert torch.allclose(
        out["velocity"], ((v[:, 1:] - v[:, :-1]) - (target[:, 1:] - target[:, :-1])).abs().mean()
    )
    assert torch.allclose(out["loss"], out["ot"] + out["prev"] + out["velocity"])
    perfect = flow_matching_losses(target.clone(), u, prev)
    assert float(perfect["loss"]) == 0.0


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
    frames = np.concatenate(list(pipe.generate(torch.zeros(1, 3, 32, 32), wave)))
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
