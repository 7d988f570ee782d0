"""Which torch device to run on: CUDA when present, else the CPU, and a clear word when a
requested GPU is not there."""

from __future__ import annotations

import threading

import torch

from .errors import InputError


def choose_device(gpu: str | None = None, warn=print) -> str:
    """``gpu``: None (CUDA 0 if present, else CPU), ``"cpu"``, or a CUDA index like ``"0"``.

    A requested GPU on a machine without CUDA falls back to the CPU with a warning: the same
    code runs either way, only slower.
    """
    if gpu is None:
        return "cuda:0" if torch.cuda.is_available() else "cpu"
    if gpu == "cpu":
        return "cpu"
    if not gpu.isdigit():
        raise InputError(f"--gpu takes a CUDA device index (0, 1, ...) or 'cpu', not {gpu!r}")
    if not torch.cuda.is_available():
        warn(f"no CUDA device here (torch {torch.__version__}); GPU {gpu} requested, running on "
             "the CPU instead")
        return "cpu"
    if int(gpu) >= torch.cuda.device_count():
        raise InputError(f"GPU {gpu} requested but only {torch.cuda.device_count()} CUDA "
                         f"device(s) are visible: use --gpu 0 to "
                         f"{torch.cuda.device_count() - 1}, or --gpu cpu")
    return f"cuda:{gpu}"


def use_torch_threads(count: int) -> None:
    """Run this thread's torch CPU operations on ``count`` threads, leaving every other
    thread's count as it was.

    With PyTorch's OpenMP backend the count is kept per thread, but ``torch.set_num_threads``
    also sets the count that threads started later begin with; a short-lived thread sets
    that back to this thread's count before the call. A live fit (one thread: its ~500 small
    operations a step run slower on two) and the server's whole-clip fits (two) share a
    process this way."""
    default = torch.get_num_threads()
    torch.set_num_threads(count)
    if count != default:
        restorer = threading.Thread(target=torch.set_num_threads, args=(default,),
                                    name="torch thread default")
        restorer.start()
        restorer.join()
