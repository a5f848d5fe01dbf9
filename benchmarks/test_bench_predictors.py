"""Predictor-update cost: DirectPred (an eigendecomposition) vs DirectCopy (none).

One *update* is what a closed-form learner does once per training step (see
``ncspec.reference.methods.closed_form.ClosedFormSiamese.predictor``):

1. the EMA correlation estimate ``F̂ ← ρF̂ + (1 − ρ)·zᵀz/B`` from a batch of
   embeddings ``z`` (B = 256, M; float32), ρ = 0.3 (Tian et al.);
2. the predictor from ``F̂``:

   * DirectPred — :func:`ncspec.reference.predictors.eigen_predictor` with Tian et al.'s
     settings (α = ½, ``normalize``, ε = 0.1 added after the power): a float64
     ``eigh`` of the M×M estimate, O(M³);
   * DirectCopy (Wang et al. 2021) — :func:`ncspec.reference.predictors.copy_predictor`,
     ``F̂/‖F̂‖_F + εI`` with ε = 0.25: O(M²), no eigendecomposition.

Parametrised over M = 128, 512, 2048, grouped by M so that pytest-benchmark's table
sets the two side by side. ``extra_info`` holds ``ms_per_update`` (best round) for
both predictors and ``ratio = DirectPred / DirectCopy`` (each test takes the other
predictor's time from the test that already ran, or times it itself).

Run with ``pytest benchmarks/test_bench_predictors.py --benchmark-enable``. In the
default test run (``--benchmark-disable``) each test runs once as a smoke test and
M = 2048 is skipped: a float64 ``eigh`` of 2048×2048 alone takes seconds on one core.

Torch runs single-threaded (``NCSPEC_BENCH_THREADS`` overrides it), as in
``test_bench_simulator.py``: on a shared machine intra-op threads make timings swing
and the comparison is meant to be one of algorithms, not of thread counts.
"""
from __future__ import annotations

import time

import pytest
import torch
from ncspec.reference.predictors import EMACorrelation, copy_predictor, eigen_predictor

B, RHO = 256, 0.3
SIZES = (128, 512, 2048)
ROUNDS = {128: 50, 512: 15, 2048: 3}
DIRECTPRED = dict(alpha=0.5, normalize=True, eps=0.1, boost="after")   # Tian et al. 2021
DIRECTCOPY = dict(eps=0.25, norm="fro")                                  # IsoLoss authors' runs

_BEST: dict[tuple[str, int], float] = {}      # (predictor, M) → best seconds per update


def _embeddings(M: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(M)
    return torch.randn((B, M), generator=g, dtype=torch.float32)


def _update_fn(predictor: str, M: int):
    """A closure doing one predictor update on a warm EMA estimate (state carried across calls)."""
    z = _embeddings(M)
    corr = EMACorrelation(RHO)
    corr.update(z)                           # warm: later calls take the EMA branch

    if predictor == "directpred":
        def update() -> torch.Tensor:
            return eigen_predictor(corr.update(z), **DIRECTPRED)
    else:
        def update() -> torch.Tensor:
            return copy_predictor(corr.update(z), **DIRECTCOPY)
    return update


def _timed_best(fn, rounds: int) -> float:
    fn()                                     # warm-up: first-touch allocation of the M×M buffers
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best



@pytest.mark.parametrize("predictor", ["directpred", "directcopy"])
@pytest.mark.parametrize("M", SIZES)
def test_predictor_update_cost(benchmark, timed, M, predictor):
    if M >= 2048 and benchmark.disabled:
        pytest.skip("M = 2048 only with --benchmark-enable (a float64 eigh of 2048×2048 takes seconds)")
    benchmark.group = f"predictor-update M={M}"
    update = _update_fn(predictor, M)
    timed_call, seconds = timed(update)

    rounds = ROUNDS[M] if not benchmark.disabled else 1
    # one warm-up call (first-touch allocation), except where a call takes seconds
    warmup = 0 if (M >= 2048 and predictor == "directpred") else 1
    W_P = benchmark.pedantic(timed_call, rounds=rounds, iterations=1, warmup_rounds=warmup)
    assert W_P.shape == (M, M) and W_P.dtype == torch.float32
    assert torch.isfinite(W_P).all()
    torch.testing.assert_close(W_P, W_P.T, rtol=1e-5, atol=1e-6)

    _BEST[(predictor, M)] = min(seconds)
    other = "directcopy" if predictor == "directpred" else "directpred"
    if (other, M) not in _BEST:                # selected alone (-k), or the first of the pair
        _BEST[(other, M)] = _timed_best(_update_fn(other, M), rounds)
    dp, dc = _BEST[("directpred", M)], _BEST[("directcopy", M)]
    benchmark.extra_info.update(
        M=M, batch=B, rho=RHO, predictor=predictor, torch_threads=torch.get_num_threads(),
        ms_per_update=1e3 * min(seconds),
        directpred_ms=1e3 * dp, directcopy_ms=1e3 * dc,
        ratio_directpred_over_directcopy=dp / dc,
    )
