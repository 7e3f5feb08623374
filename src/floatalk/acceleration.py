"""Optional torch.compile of the pipeline's hot functions, falling back to eager when it cannot run.

torch.compile needs a working backend: on CPU, Inductor compiles C++ with the system's compiler; on
CUDA, Triton. Where either is missing (or compilation fails for any other reason) the function runs
eagerly instead, and the reason is kept so the pipeline can say so in its report. Compiling costs
time once (measured on 2 CPU cores: 8 s for the 64² demo decoder, 68 s for the released 512² one,
which then decode 2.4x and 1.35x faster; docs/benchmarks.md), so it is an opt-in.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

__all__ = ["CompiledWithFallback"]


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
