"""Collapse-monitor overhead against a training step (CPU).

* ``observe`` — what the monitor adds to a step it watches: the center vector, the J1 moments, the std of ẑ and
  two Gram matrices, all on the embeddings' device (no host sync);
* ``report`` — the one host sync: the spectra (float64 ``eigvalsh`` of two ``min(2B, M)``-square matrices) and
  the verdict, once per report;
* ``step`` — one SimSiam training step (two views through a tiny VGG11 and its projector, MLP predictor,
  backward, SGD) at the same batch size, the yardstick.

``extra_info`` holds ``ms`` (best round) and ``fraction_of_step`` = monitor time / step time. Run with
``pytest benchmarks/test_bench_monitor.py --benchmark-enable``; in the default run (``--benchmark-disable``) each
test runs once as a smoke test.
"""
from __future__ import annotations

import pytest
import torch
from ncspec.reference.methods.center import neg_cos
from ncspec.reference.monitor import CollapseMonitor
from ncspec.reference.vision.models import make_encoder

B = 64
SIZES = (32, 256)
_step_ms: dict[int, float] = {}


def _training_step(M: int):
    torch.manual_seed(0)
    enc = make_encoder("vgg11", proj_hidden=2 * M, proj_out=M, width="tiny")
    pred = torch.nn.Sequential(torch.nn.Linear(M, M // 2), torch.nn.BatchNorm1d(M // 2), torch.nn.ReLU(),
                               torch.nn.Linear(M // 2, M))
    opt = torch.optim.SGD([*enc.parameters(), *pred.parameters()], lr=0.01, momentum=0.9)
    v1, v2 = torch.randn(B, 3, 32, 32), torch.randn(B, 3, 32, 32)

    def step():
        z1, z2 = enc(v1), enc(v2)
        loss = 0.5 * neg_cos(pred(z1), z2.detach()) + 0.5 * neg_cos(pred(z2), z1.detach())
        opt.zero_grad()
        loss.backward()
        opt.step()
        return z1.detach(), z2.detach()
    return step


def _best_ms(benchmark, seconds) -> float:
    stats = getattr(benchmark, "stats", None)
    if stats is not None and getattr(stats, "stats", None) is not None and stats.stats.min:
        return 1e3 * stats.stats.min
    return 1e3 * min(seconds)


@pytest.mark.parametrize("M", SIZES)
def test_bench_training_step(benchmark, timed, M):
    benchmark.group = f"monitor M={M}"
    fn, seconds = timed(_training_step(M))
    benchmark.pedantic(fn, rounds=10, warmup_rounds=1)
    _step_ms[M] = _best_ms(benchmark, seconds)
    benchmark.extra_info.update(ms=_step_ms[M])


@pytest.mark.parametrize("M", SIZES)
def test_bench_monitor_observe(benchmark, timed, M):
    benchmark.group = f"monitor M={M}"
    z1, z2 = torch.randn(B, M), torch.randn(B, M)
    mon = CollapseMonitor(mode="record", max_pending=10_000)
    fn, seconds = timed(lambda: mon.observe(z1, z2))
    benchmark.pedantic(fn, rounds=50, warmup_rounds=2)
    ms = _best_ms(benchmark, seconds)
    benchmark.extra_info.update(ms=ms, fraction_of_step=ms / _step_ms[M] if M in _step_ms else None)
    assert len(mon._pending) >= 1


@pytest.mark.parametrize("M", SIZES)
def test_bench_monitor_report(benchmark, timed, M):
    """One report of one queued observation (the host sync, the spectra, the verdict)."""
    benchmark.group = f"monitor M={M}"
    z1, z2 = torch.randn(B, M), torch.randn(B, M)
    mon = CollapseMonitor(mode="record")

    def report():
        mon.observe(z1, z2)
        return mon.report()
    fn, seconds = timed(report)
    benchmark.pedantic(fn, rounds=20, warmup_rounds=1)
    ms = _best_ms(benchmark, seconds)
    benchmark.extra_info.update(ms=ms, fraction_of_step=ms / _step_ms[M] if M in _step_ms else None)
    assert mon.verdict.healthy
