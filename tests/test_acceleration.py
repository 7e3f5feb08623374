"""Optional torch.compile of decoding (floatalk.acceleration): same frames, and a clean fallback."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from floatalk.acceleration import CompiledWithFallback
from floatalk.pipeline import FloatPipeline


def _video(pipe, **kw):
    rng = np.random.default_rng(0)
    image = (rng.random((32, 32, 3)) * 255).astype(np.uint8)
    wave = (0.1 * np.sin(np.arange(8000) * 0.05)).astype(np.float32)
    run = pipe.generate(image, wave, crop=False, seed=0, nfe=2, **kw)
    return np.concatenate(list(run)), run.result


def test_fallback_runs_eagerly_once_compiling_fails_and_says_why():
    calls = []

    def broken_compile(fn):
        def compiled(*args):
            calls.append(args)
            raise RuntimeError("no C++ compiler found\nlong backend trace ...")

        return compiled

    fn = CompiledWithFallback(lambda x: x * 2, compile_fn=broken_compile)
    assert fn(3) == 6 and fn(4) == 8
    assert len(calls) == 1  # given up after the first failure
    assert fn.failure == "RuntimeError: no C++ compiler found"


def test_pipeline_with_a_failing_compiler_gives_the_eager_frames_and_a_notice(tiny_model, monkeypatch):
    eager, _ = _video(FloatPipeline(tiny_model), output_size=32)

    def no_backend(fn):
        raise RuntimeError("backend 'inductor' unavailable")

    monkeypatch.setattr(torch, "compile", no_backend)
    pipe = FloatPipeline(tiny_model, compile=True)
    frames, result = _video(pipe, output_size=32)
    assert np.array_equal(frames, eager)
    assert any("torch.compile did not work here" in n and "inductor" in n for n in result.notices)


def test_compiled_decoding_matches_eager(tiny_model):
    pytest.importorskip("torch._inductor")
    eager, _ = _video(FloatPipeline(tiny_model), output_size=64)  # 64: the detail path too
    pipe = FloatPipeline(tiny_model, compile=True)
    frames, result = _video(pipe, output_size=64)
    if pipe.compile_failure() is not None:  # a machine without a compiler: the fallback is tested above
        pytest.skip(f"torch.compile unavailable here: {pipe.compile_failure()}")
    assert not result.notices or "torch.compile" not in " ".join(result.notices)
    assert np.abs(frames.astype(int) - eager).max() <= 2
