"""benchmarks/gpu_check.py runs end to end (on CPU, tiny preset), so it is known to work when a GPU
machine is at hand."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"


def load_script():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gpu_check_runs_on_cpu_and_writes_its_report(tmp_path):
    gpu_check = load_script()
    argv = ["--device", "cpu", "--preset", "tiny", "--no-parity", "--no-compile", "--batch-sizes", "1", "2"]
    report = gpu_check.main([*argv, "--frames", "2", "--seconds", "0.5", "--out", str(tmp_path)])
    saved = json.loads((tmp_path / "gpu_check.json").read_text())
    assert saved["environment"]["image_size"] == 32 and saved["environment"]["device"] == "cpu"
    bf16 = report["precision"]["bfloat16"]  # float16 is left out on CPU
    assert set(report["precision"]) == {"bfloat16"}
    assert 0 < bf16["latents_relative_error"] < 0.5 and 20 < bf16["frames_psnr_db"] < math.inf
    assert [(r["variant"], r["batch"]) for r in report["decode"]] == [("eager", 1), ("eager", 2)]
    assert all(r["frames_per_second"] > 0 for r in report["decode"])
    (job,) = report["job"]
    assert job["frames"] == 13 and job["frames_per_second"] > 0 and job["time_to_first_frame_s"] > 0
    table = (tmp_path / "gpu_check.md").read_text()
    assert "| bfloat16 |" in table and "| eager | 2 |" in table and "0.5 s of speech" in table


def test_gpu_check_refuses_cuda_without_a_gpu(capsys):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(SystemExit) as exc:
        load_script().main(["--device", "cuda"])
    assert exc.value.code == 2 and "no CUDA device here" in capsys.readouterr().err
