"""``torch.compile`` with an eager fallback, for code made of many small tensor operations.

A live frame's fitting step is some 500 tensor operations on one frame: eager PyTorch spends
most of the step dispatching them (~8 ms on 2 CPU cores), where TorchInductor fuses them into
a few kernels that run the same step in ~2 ms (docs/live.md). Compiling needs a C++ compiler
on the CPU (Triton on CUDA) and takes tens of seconds the first time on a machine; the kernels
are cached under ``PEAR_HOME`` (``TORCHINDUCTOR_CACHE_DIR``, ``paths.route_caches``), so later
processes load them in seconds. Where compiling fails, the function runs eagerly (the same
values, slower) after one warning. ``PEAR_COMPILE=0`` turns compiling off.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from typing import Generic, ParamSpec, TypeVar

import torch
import torch._dynamo

_Args = ParamSpec("_Args")
_Result = TypeVar("_Result")


def compiling_enabled() -> bool:
    """False where the user set ``PEAR_COMPILE=0``."""
    return os.environ.get("PEAR_COMPILE", "1").strip() not in ("0", "false", "no", "off")


class CompiledOrEager(Generic[_Args, _Result]):
    """``function`` compiled (shapes held static: each new shape compiles once more), or
    eager where compiling is off or has failed; ``what`` names it in the warning."""

    def __init__(self, function: Callable[_Args, _Result], what: str):
        self.function = function
        self.what = what
        # Each new input shape, set of tensors needing gradients or torch thread count is a
        # graph of its own (a live fit has 5 per body model and thread count); past dynamo's
        # default of 8 a function would run eagerly from then on, with only a log line.
        torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
        self._compiled = (torch.compile(function, dynamic=False) if compiling_enabled()
                          else None)
        self.failure: str | None = None  # why compiling failed, once it has

    @property
    def compiled(self) -> bool:
        """Calls go through the compiled function (until a compile fails)."""
        return self._compiled is not None

    def __call__(self, *args: _Args.args, **kwargs: _Args.kwargs) -> _Result:
        if self._compiled is not None:
            try:
                return self._compiled(*args, **kwargs)
            except torch._dynamo.exc.TorchDynamoException as error:
                self._compiled = None
                self.failure = str(error).strip().splitlines()[0]
                warnings.warn(
                    f"{self.what}: torch.compile failed ({self.failure}); running without it "
                    "(the same results, several times slower). Install a C++ compiler (e.g. "
                    "`apt install g++`), or set PEAR_COMPILE=0 to skip trying",
                    RuntimeWarning, stacklevel=2)
        return self.function(*args, **kwargs)
