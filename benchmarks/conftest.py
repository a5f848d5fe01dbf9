"""Shared benchmark set-up: one torch thread, and per-round wall-clock times."""
from __future__ import annotations

import os
import time

import pytest
import torch


@pytest.fixture(autouse=True)
def _threads():
    """Single-threaded torch (``NCSPEC_BENCH_THREADS`` overrides): tiny tensors gain nothing from
    intra-op threads, and on a shared machine their spin-waits make timings swing 10×."""
    before = torch.get_num_threads()
    torch.set_num_threads(int(os.environ.get("NCSPEC_BENCH_THREADS", "1")))
    yield
    torch.set_num_threads(before)


@pytest.fixture
def timed():
    """``wrapped, seconds = timed(fn)``: ``wrapped()`` calls ``fn`` and appends its wall time to ``seconds``."""
    def make(fn):
        seconds: list[float] = []

        def wrapped():
            t0 = time.perf_counter()
            out = fn()
            seconds.append(time.perf_counter() - t0)
            return out
        return wrapped, seconds
    return make
