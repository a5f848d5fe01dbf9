"""Simulator throughput: S seeds as one batched ``simulate`` call vs a Python loop over seeds.

Two workloads, each benchmarked both ways:

* population flow — the fixed moment-matched batch of :func:`population_views`
  (the Euler discretisation of the expected-gradient flow);
* minibatch SGD — fresh :func:`gaussian_views` every step (batch 256), sampled
  for all replicas at once (batched) or one replica at a time (loop).

The figure of merit is ``seed_steps_per_s = S · steps / seconds`` (in
``extra_info``). Run with ``pytest benchmarks --benchmark-enable``; in the
default test run (``--benchmark-disable``) each function executes once, as a
smoke test.

Torch runs single-threaded here (``NCSPEC_BENCH_THREADS`` overrides it): the
tensors are tiny, so intra-op threads buy nothing and, on a shared machine,
their spin-waits make timings swing by an order of magnitude. The comparison
is then one of vectorisation over seeds, not of thread counts.
"""
from __future__ import annotations

import pytest
import torch
from ncspec.reference.linear import LinearEncoder, gaussian_views, population_views, simulate, weights_with_spectrum
from ncspec.reference.methods import build

S, N, M, STEPS = 32, 15, 10, 200
SIGMA, BATCH = 0.5, 256
LR = {"population": 0.05, "sgd": 0.02}
RECORD_EVERY = 10


def _initial_weights() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    lam = 0.05 + 0.45 * torch.rand((S, M), generator=g, dtype=torch.float64)
    return weights_with_spectrum(lam, N, generator=g)


W0 = _initial_weights()


def _run(W: torch.Tensor, views, lr: float) -> torch.Tensor:
    encoder = LinearEncoder(W)
    learner = build("simsiam", encoder, M)
    traj = simulate(learner, encoder, views, lr=lr, steps=STEPS, sigma=SIGMA,
                    record_every=RECORD_EVERY)
    return traj.W


def _population_views():
    x1, x2 = population_views(N, SIGMA)
    return lambda k: (x1, x2)


def _sgd_views(replicas: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    return lambda k: gaussian_views(BATCH, N, SIGMA, replicas=replicas, generator=g)


def population_batched() -> torch.Tensor:
    return _run(W0, _population_views(), LR["population"])


def population_loop() -> torch.Tensor:
    views = _population_views()
    return torch.cat([_run(W0[s:s + 1], views, LR["population"]) for s in range(S)])


def sgd_batched() -> torch.Tensor:
    return _run(W0, _sgd_views(S, seed=1), LR["sgd"])


def sgd_loop() -> torch.Tensor:
    return torch.cat([_run(W0[s:s + 1], _sgd_views(1, seed=1 + s), LR["sgd"]) for s in range(S)])


CASES = {
    "population-batched": ("population-flow", population_batched),
    "population-loop": ("population-flow", population_loop),
    "sgd-batched": ("minibatch-sgd", sgd_batched),
    "sgd-loop": ("minibatch-sgd", sgd_loop),
}



@pytest.mark.parametrize("case", list(CASES))
def test_simulator_throughput(benchmark, timed, case):
    group, fn = CASES[case]
    benchmark.group = group
    timed_call, seconds = timed(fn)

    W = benchmark.pedantic(timed_call, rounds=3, iterations=1, warmup_rounds=0)
    assert W.shape == (S, M, N) and torch.isfinite(W).all()

    best = min(seconds)
    benchmark.extra_info.update(
        seeds=S, steps=STEPS, N=N, M=M, batch=BATCH if group == "minibatch-sgd" else 4 * N,
        mode="batched" if case.endswith("batched") else "loop",
        torch_threads=torch.get_num_threads(),
        seed_steps_per_s=S * STEPS / best,
    )


def test_batched_population_flow_matches_the_loop():
    """The batch of seeds trains each seed as if it ran alone (population flow is deterministic)."""
    views = _population_views()
    W0s = W0[:4]
    batched = _run(W0s, views, LR["population"])
    looped = torch.cat([_run(W0s[s:s + 1], views, LR["population"]) for s in range(4)])
    torch.testing.assert_close(batched, looped, rtol=1e-9, atol=1e-12)
