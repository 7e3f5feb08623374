"""The shared training machinery: configs, EMA, sampler, checkpoints, exact resume, signals, DDP, export.

Everything runs on the CPU with the toy task of ``toy_task.py`` (a tiny MLP regression with two
optimisers), in-process where possible and as subprocesses for SIGKILL and torchrun.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import numpy as np
import pytest
import torch
from torch import nn

from floatalk.config import FMTConfig
from floatalk.errors import CheckpointError, InputError
from floatalk.train import (
    EMA,
    EXPORTERS,
    ResumableSampler,
    Trainer,
    TrainingConfig,
    capture_rng_state,
    config_from_dict,
    config_to_dict,
    export_checkpoint,
    list_checkpoints,
    load_config,
    load_latest,
    model_state,
    register_exporter,
    restore_rng_state,
    save_checkpoint,
)
from floatalk.train import checkpointing as ckpt_mod

sys.path.insert(0, str(Path(__file__).parent))
from toy_task import ToyConfig, build

HELPER = Path(__file__).parent / "toy_task.py"


def _toy(tmp: Path, **train) -> ToyConfig:
    cfg = ToyConfig()
    return replace(cfg, train=replace(cfg.train, output_dir=str(tmp), **train))


def _run(cfg: ToyConfig):
    task, dataset = build(cfg)
    result = Trainer(cfg.train, task, dataset, run_config=cfg).fit()
    return task, result


def _metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _weights(task) -> dict[str, torch.Tensor]:
    return {f"{n}.{k}": v.clone() for n, m in task.models().items() for k, v in m.state_dict().items()}


def _env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    src = str(Path(__file__).resolve().parents[2] / "src")
    env["PYTHONPATH"] = os.pathsep.join([src, env.get("PYTHONPATH", "")])
    return env


# --------------------------------------------------------------------------------------------------
# Configs
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Optim:
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.99)


@dataclass(frozen=True)
class _StageConfig:
    train: TrainingConfig = field(default_factory=TrainingConfig)
    optim: _Optim = field(default_factory=_Optim)
    model: FMTConfig = field(default_factory=FMTConfig)
    extra: _Optim | None = None
    milestones: list[int] = field(default_factory=lambda: [10, 20])
    note: str | None = None
    mode: Literal["a", "b"] = "a"


def test_config_defaults_yaml_and_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  max_steps: 50\n  batch_size: 3\noptim:\n  lr: 1e-4\nmodel:\n  depth: 2\n")
    cfg = load_config(
        _StageConfig,
        path,
        ["train.batch_size=5", "optim.betas=[0.5, 0.6]", "milestones=[1, 2, 3]", "mode=b", "extra.lr=2"],
    )
    assert cfg.train.max_steps == 50 and cfg.train.batch_size == 5  # the override wins over the file
    assert cfg.train.seed == TrainingConfig().seed  # untouched keys keep their defaults
    assert cfg.optim.lr == 1e-4 and isinstance(cfg.optim.lr, float)  # YAML reads 1e-4 as a string
    assert cfg.optim.betas == (0.5, 0.6)
    assert cfg.model.depth == 2 and cfg.model.hidden_dim == FMTConfig().hidden_dim
    assert cfg.milestones == [1, 2, 3] and cfg.mode == "b"
    assert cfg.extra == _Optim(lr=2.0)  # an Optional section starts from its defaults
    assert load_config(_StageConfig, None, ["note=null"]).note is None
    # dict round trip: plain data only, and back to the same dataclass
    data = config_to_dict(cfg)
    assert data["optim"]["betas"] == [0.5, 0.6]
    assert config_from_dict(_StageConfig, data) == cfg
    assert load_config(_StageConfig) == _StageConfig()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["train.max_step=3"], "unknown config key 'train.max_step'"),
        (["optimizer.lr=3"], "valid keys here: train, optim, model"),
        (["train.batch_size=two"], "config train.batch_size must be int, got 'two'"),
        (["train.batch_size=1.5"], "must be int"),
        (["train.resume=1"], "must be bool"),
        (["optim.betas=[1]"], "must have 2 items"),
        (["mode=c"], "must be one of 'a', 'b'"),
        (["train.mixed_precision=fp8"], "must be one of 'no', 'bf16', 'fp16'"),
        (["train.batch_size=0"], "batch_size must be >= 1"),
        (["model.hidden_dim=30"], "must be divisible by num_heads"),
        (["max_steps"], "must look like key=value"),
        (["milestones=[a]"], "milestones[0] must be int"),
    ],
)
def test_config_errors_are_one_line_input_errors(overrides, message):
    with pytest.raises(InputError) as info:
        load_config(_StageConfig, None, overrides)
    text = str(info.value)
    assert message in text and "\n" not in text


def test_config_file_errors(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        load_config(_StageConfig, tmp_path / "missing.yaml", [])
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  epochs: 3\n")
    with pytest.raises(InputError, match=r"unknown config key 'train.epochs' \(in .*bad.yaml\)"):
        load_config(_StageConfig, bad, [])
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(InputError, match="must hold a mapping"):
        load_config(_StageConfig, bad, [])


# --------------------------------------------------------------------------------------------------
# EMA
# --------------------------------------------------------------------------------------------------


def test_ema_math_buffers_and_state(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    ema = EMA(model, decay=0.9)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    assert not any(p.requires_grad for p in ema.module.parameters()) and not ema.module.training
    expected = {k: v.clone() for k, v in model.named_parameters()}
    for i in range(3):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(float(i + 1))
        model.train()(torch.randn(4, 3))  # changes the BatchNorm running statistics (buffers)
        ema.update()
        for k, p in model.named_parameters():
            expected[k] = 0.9 * expected[k] + 0.1 * p.detach()
    for k, p in ema.module.named_parameters():
        torch.testing.assert_close(p, expected[k], rtol=1e-6, atol=1e-6)
        assert not torch.equal(p, start[k])
    for k, b in ema.module.named_buffers():
        assert torch.equal(b, dict(model.named_buffers())[k])  # buffers are copied, not averaged
    torch.save(ema.state_dict(), tmp_path / "ema.pt")
    other = EMA(nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2)), decay=0.9)
    other.load_state_dict(torch.load(tmp_path / "ema.pt", weights_only=True))
    assert other.num_updates == 3
    for a, b in zip(other.module.state_dict().values(), ema.module.state_dict().values()):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="decay"):
        EMA(model, decay=1.0)


# --------------------------------------------------------------------------------------------------
# Sampler
# --------------------------------------------------------------------------------------------------


def test_sampler_is_deterministic_distributed_and_resumable():
    full = list(ResumableSampler(11, seed=3))
    assert sorted(full) == list(range(11)) and full == list(ResumableSampler(11, seed=3))
    assert full != list(ResumableSampler(11, seed=4))
    s = ResumableSampler(11, seed=3)
    s.set_epoch(1)
    assert list(s) != full and sorted(s) == list(range(11))
    # two ranks: disjoint, interleaved in the global order (truncated to a multiple of 2)
    ranks = [ResumableSampler(11, seed=3, rank=r, world_size=2) for r in range(2)]
    parts = [list(r) for r in ranks]
    assert parts[0] == full[:10][0::2] and parts[1] == full[:10][1::2]
    # resume in the middle of the epoch: the remainder, exactly
    for r in ranks:
        r.set_epoch(0, start=4)
    assert [list(r) for r in ranks] == [p[2:] for p in parts]
    assert len(ranks[0]) == 3
    with pytest.raises(ValueError, match="multiple of the world size"):
        ranks[0].set_epoch(0, start=3)
    seeded = list(ResumableSampler(5, seed=3, with_seeds=True))
    assert len({seed for _, seed in seeded}) == 5


# --------------------------------------------------------------------------------------------------
# Checkpoints
# --------------------------------------------------------------------------------------------------


def _state(step: int) -> dict:
    return {"step": step, "models": {"m": {"w": torch.full((64,), float(step))}}, "config": {"a": [1, 2]}}


def test_checkpoint_save_load_prune(tmp_path):
    for step in (1, 2, 3, 4):
        save_checkpoint(tmp_path, _state(step), keep_last=2)
    assert [s for s, _ in list_checkpoints(tmp_path)] == [3, 4]
    assert (tmp_path / "latest").read_text().strip() == "step_00000004.pt"
    assert "a:\n- 1\n- 2" in (tmp_path / "config.yaml").read_text()
    state = load_latest(tmp_path)
    assert state["step"] == 4 and torch.equal(state["models"]["m"]["w"], torch.full((64,), 4.0))
    assert load_latest(tmp_path / "empty") is None
    # only weights_only-loadable data is accepted, with the offending entry named
    with pytest.raises(TypeError, match=r"state\['bad'\]\['x'\] is a numpy.ndarray"):
        save_checkpoint(tmp_path, {"step": 5, "bad": {"x": np.zeros(2)}})
    with pytest.raises(TypeError, match=r"numpy\.float64"):
        save_checkpoint(tmp_path, {"step": 5, "loss": np.float64(1.0)})
    (tmp_path / "latest").write_text("step_00000009.pt\n")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_latest(tmp_path)


def test_checkpoint_crash_mid_write_keeps_latest(tmp_path, monkeypatch):
    save_checkpoint(tmp_path, _state(1))
    real_save = torch.save

    def half_then_crash(obj, f, *args, **kwargs):
        real_save(obj, f, *args, **kwargs)
        f.truncate(f.tell() // 2)  # half a file, as if the process died while writing
        raise OSError("disk full")

    monkeypatch.setattr(ckpt_mod.torch, "save", half_then_crash)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(tmp_path, _state(2))
    monkeypatch.setattr(ckpt_mod.torch, "save", real_save)
    assert load_latest(tmp_path)["step"] == 1
    assert [s for s, _ in list_checkpoints(tmp_path)] == [1]
    assert not list(tmp_path.glob(".*.tmp"))

    # a crash after the checkpoint file is in place but before `latest` moves: still the old one
    real_replace = os.replace

    def crash_on_pointer(src, dst):
        if Path(dst).name == "latest":
            raise KeyboardInterrupt
        real_replace(src, dst)

    monkeypatch.setattr(ckpt_mod.os, "replace", crash_on_pointer)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(tmp_path, _state(2))
    monkeypatch.setattr(ckpt_mod.os, "replace", real_replace)
    assert load_latest(tmp_path)["step"] == 1
    save_checkpoint(tmp_path, _state(3))
    assert load_latest(tmp_path)["step"] == 3


def test_rng_state_round_trip(tmp_path):
    random.gauss(0, 1)  # a cached gaussian in Python's state
    np.random.randn()
    state = capture_rng_state()
    torch.save(state, tmp_path / "rng.pt")
    first = (random.random(), np.random.rand(), torch.rand(3))
    restore_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True))
    second = (random.random(), np.random.rand(), torch.rand(3))
    assert first[:2] == second[:2] and torch.equal(first[2], second[2])


# --------------------------------------------------------------------------------------------------
# The trainer: exact resume, workers, previews, signals
# --------------------------------------------------------------------------------------------------


def test_resume_is_exact(tmp_path):
    full_task, full = _run(_toy(tmp_path / "full", max_steps=12, preview_every=5, ckpt_every=5))
    assert full.step == 12 and not full.interrupted
    first, _ = _run(_toy(tmp_path / "split", max_steps=6, preview_every=5, ckpt_every=5))
    second, result = _run(_toy(tmp_path / "split", max_steps=12, preview_every=5, ckpt_every=5))
    assert result.step == 12
    # the same batches (data order spans two epochs of 7 steps), losses and final weights, bit for bit
    assert first.seen + second.seen == full_task.seen
    assert _metrics(tmp_path / "split") == _metrics(tmp_path / "full")
    assert [m["step"] for m in _metrics(tmp_path / "full")] == list(range(1, 13))
    a, b = _weights(full_task), _weights(second)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    final = load_latest(tmp_path / "split")
    ref = load_latest(tmp_path / "full")
    assert final["task_state"] == {"calls": 12} and second.calls == 12
    for name in ("encoder", "head"):
        for k, v in ref["ema"][name]["module"].items():
            assert torch.equal(v, final["ema"][name]["module"][k])
    assert all(np.isfinite(m["loss"]) for m in _metrics(tmp_path / "full"))
    # previews: PNGs, identical across the two runs (fixed preview RNG, same EMA weights)
    pngs = sorted(p.name for p in (tmp_path / "full" / "previews").iterdir())
    assert pngs == ["encoder_weights_00000005.png", "encoder_weights_00000010.png"]
    for name in pngs:
        assert (tmp_path / "full/previews" / name).read_bytes() == (
            tmp_path / "split/previews" / name
        ).read_bytes()
    # the checkpoint holds the resolved config and the data position; it loads with weights_only
    assert final["config"]["train"]["max_steps"] == 12 and final["data"] == {"epoch": 1, "index": 20}
    assert (tmp_path / "split/checkpoints/config.yaml").is_file()


def test_workers_do_not_change_the_data(tmp_path):
    task0, _ = _run(_toy(tmp_path / "w0", max_steps=3))
    task2, _ = _run(_toy(tmp_path / "w2", max_steps=3, num_workers=2))
    assert task0.seen == task2.seen
    assert _metrics(tmp_path / "w0") == _metrics(tmp_path / "w2")  # per-item noise is seeded per item


def test_tensorboard_events_are_written(tmp_path):
    pytest.importorskip("tensorboard")
    _run(_toy(tmp_path, max_steps=2, tensorboard=True, preview_every=2))
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))


def test_sigint_saves_a_checkpoint_and_returns(tmp_path):
    cfg = _toy(tmp_path, max_steps=50)
    task, dataset = build(cfg)
    original = task.train_step

    def step_then_interrupt(batch, step):
        out = original(batch, step)
        if step == 2:
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C in the middle of the run
        return out

    task.train_step = step_then_interrupt
    before = signal.getsignal(signal.SIGINT)
    result = Trainer(cfg.train, task, dataset).fit()
    assert result.interrupted and result.step == 3
    assert load_latest(tmp_path)["step"] == 3
    assert signal.getsignal(signal.SIGINT) is before  # handlers restored
    # and the run resumes from there
    task2, result2 = _run(replace(cfg, train=replace(cfg.train, max_steps=5)))
    assert result2.step == 5 and not result2.interrupted and len(task2.seen) == 2


def test_resume_refuses_another_task(tmp_path):
    save_checkpoint(tmp_path / "checkpoints", {"step": 1, "task": "other"})
    with pytest.raises(CheckpointError, match="task 'other', not 'toy'"):
        _run(_toy(tmp_path))


def test_sigkill_never_corrupts_latest(tmp_path):
    """Kill a run that checkpoints every step at random moments; `latest` always loads."""
    rng = random.Random(0)
    args = ["train.ckpt_every=1", "train.max_steps=100000", "train.keep_last=2", "hidden=256", "depth=4"]
    steps = []
    for _ in range(3):
        proc = subprocess.Popen(
            [sys.executable, str(HELPER), str(tmp_path), *args],
            env=_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            deadline = time.monotonic() + 60
            while not (tmp_path / "checkpoints" / "latest").exists() or (
                steps and load_latest(tmp_path)["step"] <= steps[-1]
            ):
                assert proc.poll() is None, proc.stderr.read().decode()
                assert time.monotonic() < deadline
                time.sleep(0.05)
            time.sleep(rng.uniform(0.0, 0.3))
        finally:
            proc.kill()
            proc.wait()
        state = torch.load(ckpt_mod.latest_checkpoint(tmp_path), map_location="cpu", weights_only=True)
        assert state["models"]["encoder"]["0.weight"].shape == (256, 4)
        steps.append(state["step"])
    assert steps == sorted(steps) and steps[-1] > steps[0]  # each restart resumed and went on
    assert len(list_checkpoints(tmp_path / "checkpoints")) <= 3


# --------------------------------------------------------------------------------------------------
# DDP
# --------------------------------------------------------------------------------------------------


def test_ddp_two_processes_match_one_process_with_the_global_batch(tmp_path):
    common = ["dropout=0.0", "train.max_steps=6", "train.ema_decay=0.5", "train.preview_every=3"]
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            str(HELPER),
            str(tmp_path / "ddp"),
            "train.batch_size=4",
            *common,
        ],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    w0 = torch.load(tmp_path / "ddp/final_rank0.pt", weights_only=True)
    w1 = torch.load(tmp_path / "ddp/final_rank1.pt", weights_only=True)
    assert all(torch.equal(w0[k], w1[k]) for k in w0)  # DDP keeps the ranks in lockstep
    ddp_losses = [m["loss"] for m in _metrics(tmp_path / "ddp")]
    assert len(ddp_losses) == 6 and all(np.isfinite(ddp_losses))
    state = load_latest(tmp_path / "ddp")
    assert state["world_size"] == 2 and len(state["rng"]) == 2 and state["data"] == {"epoch": 2, "index": 0}
    assert len(list((tmp_path / "ddp/previews").glob("*.png"))) == 2  # rank 0 only, at steps 3 and 6
    # one process with the same global batch (2 x 4) sees the same samples: same training, to rounding
    cfg = load_config(
        ToyConfig, None, [f"train.output_dir={tmp_path / 'single'}", "train.batch_size=8", *common]
    )
    task, _ = _run(cfg)
    single_losses = [m["loss"] for m in _metrics(tmp_path / "single")]
    np.testing.assert_allclose(ddp_losses, single_losses, rtol=1e-5)
    ws = _weights(task)
    for k in w0:
        torch.testing.assert_close(w0[k], ws[k], rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------------------------------
# Export
# --------------------------------------------------------------------------------------------------


def test_export_dispatches_on_the_task_name(tmp_path, monkeypatch, capsys):
    from floatalk.cli import main

    _run(_toy(tmp_path / "run", max_steps=2))
    monkeypatch.setitem(EXPORTERS, "toy", None)
    calls = []

    @register_exporter("toy")
    def export_toy(checkpoint, out_dir, options):
        calls.append(options)
        out_dir.mkdir(parents=True)
        torch.save(model_state(checkpoint, "head", ema=options.use_ema), out_dir / "head.pt")
        return out_dir

    assert main(["export", str(tmp_path / "run"), str(tmp_path / "out")]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {tmp_path / 'out'}"
    state = load_latest(tmp_path / "run")
    head = torch.load(tmp_path / "out/head.pt", weights_only=True)
    assert torch.equal(head["weight"], state["ema"]["head"]["module"]["weight"])  # EMA weights
    assert not torch.equal(head["weight"], state["models"]["head"]["weight"])
    export_checkpoint(tmp_path / "run/checkpoints", tmp_path / "raw", replace(calls[0], use_ema=False))
    raw = torch.load(tmp_path / "raw/head.pt", weights_only=True)
    assert torch.equal(raw["weight"], state["models"]["head"]["weight"])

    monkeypatch.delitem(EXPORTERS, "toy")
    assert main(["export", str(tmp_path / "run"), str(tmp_path / "out2")]) == 2
    assert "no exporter for checkpoints of task 'toy'" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "nothing"), str(tmp_path / "out3")]) == 2
    assert "has no training checkpoint" in capsys.readouterr().err


def test_write_float_model_takes_trained_and_base_components(tmp_path, tiny_config):
    from floatalk.models.float_model import FloatModel
    from floatalk.train.export import write_float_model
    from floatalk.weights import load_model, save_model

    torch.manual_seed(0)
    base = FloatModel(tiny_config, with_emotion=False)
    save_model(base, tmp_path / "base")
    trained = FloatModel(tiny_config, with_emotion=False).motion_ae
    with torch.no_grad():
        for p in trained.parameters():
            p.add_(1.0)
    out = write_float_model(
        tmp_path / "out", tiny_config, {"motion_ae": trained.state_dict()}, base=tmp_path / "base"
    )
    loaded = load_model(out)
    assert loaded.emotion is None
    for k, v in trained.state_dict().items():
        assert torch.equal(loaded.motion_ae.state_dict()[k], v)
    for k, v in base.fmt.state_dict().items():
        assert torch.equal(loaded.fmt.state_dict()[k], v)
    with pytest.raises(CheckpointError, match="neither trained in this run nor in a base"):
        write_float_model(tmp_path / "x", tiny_config, {"motion_ae": trained.state_dict()})
