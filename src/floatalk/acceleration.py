"""Faster decoding: the fast path's layout and kernels, and torch.compile with an eager fallback.

`set_decoding(decoder, "fast" | "exact")` chooses how the flow-warping decoder computes the same
function. "exact" is the released computation, bit-identical to the original's per-frame decoding
(the parity tests run it). "fast" keeps every weight and op but stores feature maps channels-last
(oneDNN's convolutions run up to 2x faster on the large, narrow maps of the fine levels), folds
each activation's bias and gain into the convolution before it, blends warped and generated
features in one pass, and runs a batch as one ordinary convolution (every module with a `fast`
switch: stylegan.ModulatedConv2d, StyledConv, decoder.ToFlow). Its frames differ from the exact
ones by float rounding only (tests/test_fast_decoding.py bounds it).

Optional torch.compile of the pipeline's hot functions, falling back to eager when it cannot run.

torch.compile needs a working backend: on CPU, Inductor compiles C++ with the system's compiler; on
CUDA, Triton. Where either is missing (or compilation fails for any other reason) the function runs
eagerly instead, and the reason is kept so the pipeline can say so in its report. Compiling costs
time (on 2 CPU cores, the released 512² decoder: about a minute the first time on a machine, about
6 s in later processes, which reuse torch's on-disk cache), after which it decodes about 1.5x
faster than the eager fast path (docs/benchmarks.md), so it is an opt-in.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import torch
from torch import nn

from .models.motion_ae.autoencoder import SourceEncoding

__all__ = ["DECODING_MODES", "CompiledWithFallback", "in_decoding_layout", "set_decoding"]

DECODING_MODES: tuple[str, ...] = ("fast", "exact")


def set_decoding(decoder: nn.Module, mode: str) -> nn.Module:
    """Switch `decoder` (in place) to the "fast" or the "exact" computation; returns it.

    The source's feature maps should then be in the matching memory format
    (`in_decoding_layout`); the result is right either way, only slower.
    """
    if mode not in DECODING_MODES:
        raise ValueError(f"decoding must be one of {', '.join(DECODING_MODES)}, got {mode!r}")
    fast = mode == "fast"
    fmt = torch.channels_last if fast else torch.contiguous_format
    for tensor in list(decoder.parameters()) + list(decoder.buffers()):
        if tensor.dim() == 4:  # (Module.to(memory_format=...) refuses the other ranks)
            tensor.data = tensor.data.contiguous(memory_format=fmt)
    for module in decoder.modules():
        if isinstance(getattr(type(module), "fast", None), bool):
            module.fast = fast
    return decoder


def in_decoding_layout(source: SourceEncoding, mode: str) -> SourceEncoding:
    """`source` with its feature maps in the memory format the `mode` decoding path works in."""
    layout = torch.channels_last if mode == "fast" else torch.contiguous_format
    return replace(source, feats=[f.contiguous(memory_format=layout) for f in source.feats])


class CompiledWithFallback:
    """`fn`, compiled with torch.compile on its first call; eager for good after any failure.

    Attributes:
        failure: None while the compiled version works (or before the first call); otherwise a
            one-line reason it was given up.
    """

    def __init__(self, fn: Callable[..., Any], compile_fn: Callable[..., Any] | None = None) -> None:
        self.eager = fn
        self._compile = compile_fn or torch.compile
        self._compiled: Callable[..., Any] | None = None
        self.failure: str | None = None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.failure is None:
            try:
                if self._compiled is None:
                    self._compiled = self._compile(self.eager)
                return self._compiled(*args, **kwargs)
            except Exception as exc:  # no compiler, an unsupported op, a backend error: run eagerly
                first = (str(exc).strip().splitlines() or [""])[0]
                self.failure = f"{type(exc).__name__}: {first}"[:200]
        return self.eager(*args, **kwargs)
