"""Torch's per-thread CPU thread count, as the server's live fitter sets it."""

from __future__ import annotations

import threading

import torch

from backend.device import use_torch_threads


def test_a_thread_on_one_torch_thread_leaves_the_others_and_later_threads_alone():
    """The server's live fitter runs on one torch thread while its whole-clip fits (another
    thread, and threads started later) keep two."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)  # the default new threads begin with, as on this machine
    counts: dict[str, int] = {}

    def later() -> None:
        counts["later"] = torch.get_num_threads()

    def live_fit() -> None:
        use_torch_threads(1)
        counts["fit"] = torch.get_num_threads()
        started = threading.Thread(target=later)
        started.start()
        started.join()
        counts["fit after"] = torch.get_num_threads()

    try:
        fitter = threading.Thread(target=live_fit)
        fitter.start()
        fitter.join()
        assert counts == {"fit": 1, "later": 2, "fit after": 1}
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
