"""benchmarks/compare_original.py: the parts that run without the original code checked out."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "compare_original.py"


def test_refuses_a_folder_that_is_not_the_original_code(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--original", str(tmp_path)], capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert "is not a checkout of the original FLOAT code" in proc.stderr.strip().splitlines()[-1]


def test_torchvision_stub_satisfies_timm_style_imports():
    code = textwrap.dedent(
        """
        import importlib.util, sys
        sys.path.insert(0, sys.argv[1])
        spec = importlib.util.spec_from_file_location("compare", sys.argv[2])
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        stubbed = module.stub_torchvision_if_unloadable()
        from torchvision.ops.misc import FrozenBatchNorm2d
        from torchvision.transforms import InterpolationMode
        table = {InterpolationMode.NEAREST: "nearest", InterpolationMode.BILINEAR: "bilinear"}
        assert table[InterpolationMode.NEAREST] == "nearest"
        assert InterpolationMode.NEAREST is InterpolationMode.NEAREST
        FrozenBatchNorm2d(8)
        print("ok", stubbed)
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(SCRIPT.parent), str(SCRIPT)], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("ok")
