"""Stage-1 training through the real CLI on tiny synthetic data: losses, resume, DDP, export, bad data."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from floatalk.cli import main as cli_main
from floatalk.data.layout import clip_dir, frame_path, list_clips
from floatalk.data.synthetic import SyntheticConfig, write_synthetic_dataset

CONFIG = str(Path(__file__).parents[2] / "src" / "floatalk" / "configs" / "autoencoder-tiny.yaml")
pytestmark = pytest.mark.filterwarnings("ignore:no VGG-19 weights", "ignore:The given NumPy array")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("syn") / "data"
    write_synthetic_dataset(root, SyntheticConfig(size=32, num_clips=4, seed=3, clip_seconds=(1.0, 1.5)))
    return root


def train(data: Path, out: Path, *overrides: str) -> int:
    args = ["train", "autoencoder", "--config", CONFIG, f"data={data}", f"train.output_dir={out}"]
    return cli_main([*args, "train.progress=false", "train.log_every=1", *overrides])


def metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_losses_finite_and_falling_and_checkpoint_loads_weights_only(data, tmp_path):
    out = tmp_path / "run"
    assert train(data, out, "train.max_steps=30", "lr=2e-3", "adversarial_start=1000") == 0
    l1 = [m["l1"] for m in metrics(out)]
    assert len(l1) == 30 and all(np.isfinite(l1))
    assert np.mean(l1[-5:]) < 0.8 * np.mean(l1[:5])
    ckpt = torch.load(
        out / "checkpoints" / (out / "checkpoints" / "latest").read_text().strip(), weights_only=True
    )
    assert ckpt["task"] == "autoencoder" and ckpt["step"] == 30
    assert (out / "checkpoints" / "config.yaml").is_file()


def test_gan_run_resumes_exactly(data, tmp_path):
    common = ["train.ckpt_every=0", "adversarial_start=2", "losses.r1_every=2"]
    assert train(data, tmp_path / "full", "train.max_steps=6", *common) == 0
    assert train(data, tmp_path / "half", "train.max_steps=3", *common) == 0
    assert train(data, tmp_path / "half", "train.max_steps=6", *common) == 0
    full, half = metrics(tmp_path / "full"), metrics(tmp_path / "half")
    assert [m["step"] for m in half] == list(range(1, 7))
    for a, b in zip(full, half):
        assert a.keys() == b.keys() and all(a[k] == b[k] for k in a), (a, b)
    assert "d_loss" in full[-1] and any("r1" in m for m in full)  # the GAN and lazy R1 took part
    w_full = torch.load(next((tmp_path / "full" / "checkpoints").glob("step_*6.pt")), weights_only=True)
    w_half = torch.load(next((tmp_path / "half" / "checkpoints").glob("step_*6.pt")), weights_only=True)
    for name in ("autoencoder", "discriminator"):
        for k, v in w_full["models"][name].items():
            assert torch.equal(v, w_half["models"][name][k]), k


def test_two_process_ddp_on_cpu(data, tmp_path):
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533"]
    cmd += ["-m", "floatalk.cli", "train", "autoencoder", "--config", CONFIG, f"data={data}"]
    cmd += [f"train.output_dir={out}", "train.max_steps=3", "train.progress=false", "train.batch_size=2"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    ckpt = torch.load(
        out / "checkpoints" / (out / "checkpoints" / "latest").read_text().strip(), weights_only=True
    )
    assert ckpt["step"] == 3 and ckpt["world_size"] == 2
    assert all(
        torch.isfinite(v).all() for v in ckpt["models"]["autoencoder"].values() if v.is_floating_point()
    )


def test_export_and_generate_with_trained_autoencoder(data, tmp_path):
    from floatalk.config import preset
    from floatalk.models.float_model import FloatModel
    from floatalk.pipeline import FloatPipeline
    from floatalk.train.autoencoder import evaluate_reconstruction, load_motion_autoencoder
    from floatalk.weights import save_model

    out = tmp_path / "run"
    assert train(data, out, "train.max_steps=2") == 0
    save_model(FloatModel(preset("tiny")), tmp_path / "base")
    assert cli_main(["export", str(out), str(tmp_path / "weights"), "--base", str(tmp_path / "base")]) == 0
    pipe = FloatPipeline.from_pretrained(tmp_path / "weights")
    trained = load_motion_autoencoder(out)
    for k, v in trained.state_dict().items():
        assert torch.equal(v, pipe.model.motion_ae.state_dict()[k]), k
    frames = np.concatenate(
        list(pipe.generate(torch.zeros(1, 3, 32, 32), np.zeros(8000, np.float32), output_size=32))
    )
    assert frames.shape == (13, 32, 32, 3)
    scores = evaluate_reconstruction(trained, data, pairs=4)
    assert np.isfinite(scores["l1"]) and scores["copy_l1"] > 0


def test_export_without_base_says_what_to_do(data, tmp_path, capsys):
    out = tmp_path / "run"
    assert train(data, out, "train.max_steps=1") == 0
    capsys.readouterr()
    assert cli_main(["export", str(out), str(tmp_path / "weights")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--base" in err


def test_bad_data_is_reported_not_crashed(data, tmp_path, capsys):
    import shutil

    assert train(tmp_path / "missing", tmp_path / "r0") == 2
    assert "does not exist" in capsys.readouterr().err

    bad = tmp_path / "bad"
    shutil.copytree(data, bad)
    clips = list_clips(bad, "train")
    # a clip shorter than a pair, and a clip whose frames were deleted: skipped with a reason
    short = clip_dir(bad, clips[0].clip_id)
    meta = json.loads((short / "meta.json").read_text())
    meta["num_frames"] = 1
    (short / "meta.json").write_text(json.dumps(meta))
    frame_path(clip_dir(bad, clips[1].clip_id), 3, clips[1].frame_format).unlink()
    # a frame corrupted after the scan: replaced by another sample with a warning
    frame_path(clip_dir(bad, clips[2].clip_id), 0, clips[2].frame_format).write_bytes(b"not a jpeg")
    assert train(bad, tmp_path / "r1", "train.max_steps=3") == 0
    report = capsys.readouterr().out
    assert "skipped" in report and "shorter than 2" in report and "frame files missing" in report

    for c in list_clips(bad, "train"):
        shutil.rmtree(clip_dir(bad, c.clip_id))
    assert train(bad, tmp_path / "r2") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no usable train clips" in err


def test_unknown_setting_is_one_line(data, tmp_path, capsys):
    assert train(data, tmp_path / "r", "model.sise=64") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "sise" in err


def test_identity_flow_init_starts_every_level_at_the_identity_warp():
    from floatalk.config import MotionAEConfig
    from floatalk.models.motion_ae import MotionAutoEncoder
    from floatalk.models.motion_ae.decoder import identity_grid
    from floatalk.train.autoencoder import AutoencoderTask, AutoencoderTrainConfig, identity_flow_init_

    torch.manual_seed(0)
    model = MotionAutoEncoder(
        MotionAEConfig(size=32, latent_dim=32, motion_dim=4, channel_base=256, channel_max=16)
    )
    grids = []
    hooks = [h.register_forward_hook(lambda m, i, o: grids.append(o[3])) for h in model.dec.to_flows]
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        model(x, x.flip(0))
    # the random start warps every level (this is what the init removes)
    assert all((g - identity_grid(g.shape[1], 2, g)).abs().mean() > 0.05 for g in grids)
    identity_flow_init_(model)
    grids.clear()
    with torch.no_grad():
        model(x, x.flip(0))
    assert len(grids) == len(model.dec.to_flows)
    for g in grids:
        torch.testing.assert_close(g, identity_grid(g.shape[1], 2, g), rtol=0, atol=0)
    for h in hooks:
        h.remove()
    # the training task applies it unless asked not to, and the flow heads still get gradients
    task = AutoencoderTask(AutoencoderTrainConfig(model=model.config))
    assert all(h.conv.weight.detach().abs().max().item() == 0 for h in task.autoencoder.dec.to_flows)
    (task.autoencoder(x, x.flip(0)) - x).abs().mean().backward()
    assert all(float(h.conv.weight.grad.abs().max()) > 0 for h in task.autoencoder.dec.to_flows)
    task = AutoencoderTask(AutoencoderTrainConfig(model=model.config, flow_init="random"))
    assert all(h.conv.weight.detach().abs().max().item() > 0 for h in task.autoencoder.dec.to_flows)
    with pytest.raises(ValueError, match="flow_init"):
        AutoencoderTrainConfig(flow_init="zeros")


def test_init_from_starts_from_those_weights_and_refuses_another_model(data, tmp_path, capsys):
    from floatalk.train.autoencoder import load_motion_autoencoder

    first = tmp_path / "first"
    assert train(data, first, "train.max_steps=3", "train.ema_decay=0") == 0
    start = load_motion_autoencoder(first)
    # zero steps after the start: the new run's weights are the first run's
    second = tmp_path / "second"
    assert (
        train(data, second, "train.max_steps=1", "lr=1e-12", "train.ema_decay=0", f"init_from={first}") == 0
    )
    tuned = load_motion_autoencoder(second)
    for (name, a), b in zip(start.state_dict().items(), tuned.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6), name
    fresh = tmp_path / "fresh"
    assert train(data, fresh, "train.max_steps=1", "lr=1e-12", "train.ema_decay=0") == 0
    assert not torch.allclose(
        load_motion_autoencoder(fresh).state_dict()["enc.fc.0.weight"], start.state_dict()["enc.fc.0.weight"]
    )
    capsys.readouterr()
    assert (
        train(data, tmp_path / "other", "train.max_steps=1", f"init_from={first}", "model.motion_dim=6") == 2
    )
    err = capsys.readouterr().err.strip()
    assert "init_from" in err and len(err.splitlines()) == 1


def test_augmented_pairs_train(data, tmp_path):
    out = tmp_path / "aug"
    assert train(data, out, "train.max_steps=4", "augment.enabled=true") == 0
    assert all(np.isfinite(m["l1"]) for m in metrics(out))


def test_cross_clip_pairs_train_and_a_bad_share_is_one_line(data, tmp_path, capsys):
    out = tmp_path / "cross"
    assert train(data, out, "train.max_steps=2", "cross_clip=0.5") == 0
    assert all(np.isfinite(m["l1"]) for m in metrics(out))
    assert train(data, tmp_path / "bad", "train.max_steps=2", "cross_clip=2") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cross_clip" in err
