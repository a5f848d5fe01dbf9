"""Distributed gradient check: the gradient a rank applies equals the single-process gradient.

Methods whose loss uses batch statistics (Barlow Twins' cross-correlation, VICReg's variance
and covariance, SimCLR's negatives, DirectPred's correlation) are easy to get subtly wrong under
data parallelism: the forward value is right, and the gradient is off by ``1/world_size``, or
uses each rank's local statistics (the bug class of lightly issue #1977). The check:

1. one process builds the learner on the global batch ``(X1, X2)`` (B samples) and takes
   ``g = ∂L/∂θ`` for every parameter of ``learner.parameters()``;
2. ``world_size`` processes (``torch.multiprocessing`` spawn, gloo backend, CPU) build the
   same learner with ``distributed=True`` from the same seed, each computes its loss on its
   shard ``X[r·B/W:(r+1)·B/W]`` and its gradient, and the gradients are averaged over ranks —
   what ``DistributedDataParallel`` applies;
3. the relative error ``‖ḡ − g‖ / ‖g‖`` must be at float64 round-off.

The harness owns the encoder, a float64 linear map without bias (so no BatchNorm statistic of
the harness's own can be at fault); the adapter owns everything after it.
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from ncspec.reference.data_parallel import spawn
from ncspec.reference.linear import LinearEncoder

from ...reference.files import atomic_write
from ..contract.registry import load_adapter
from .session import torch_threads

N_IN, EMBED, BATCH, WORLD = 6, 4, 16, 2


@dataclass(frozen=True)
class Case:
    method: str
    options: dict = field(default_factory=dict)

    @property
    def id(self) -> str:
        return self.method + "".join(f"-{k}={v}" for k, v in sorted(self.options.items()))


def _data(seed: int):
    g = torch.Generator().manual_seed(seed)
    W = torch.randn((1, EMBED, N_IN), generator=g, dtype=torch.float64) / N_IN ** 0.5
    X = torch.randn((BATCH, N_IN), generator=g, dtype=torch.float64)
    # two correlated views with a non-zero mean (so centring matters)
    X1 = X + 0.3 * torch.randn((BATCH, N_IN), generator=g, dtype=torch.float64) + 0.5
    X2 = X + 0.3 * torch.randn((BATCH, N_IN), generator=g, dtype=torch.float64) + 0.5
    return W, X1, X2


def _gradients(adapter, case: Case, seed: int, *, rank: int = 0, world: int = 1) -> list[torch.Tensor]:
    W, X1, X2 = _data(seed)
    torch.manual_seed(seed)                       # adapters' own initialisations (heads) agree
    options = dict(case.options, distributed=True) if world > 1 else dict(case.options)
    learner = adapter.build(case.method, LinearEncoder(W), EMBED, **options)
    params = [p for p in learner.parameters() if p.requires_grad]
    n = BATCH // world
    loss = learner.loss(X1[rank * n:(rank + 1) * n], X2[rank * n:(rank + 1) * n])
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    return [torch.zeros_like(p) if g is None else g.detach().clone() for p, g in zip(params, grads)]


def _rank_main(adapter_spec: str, cases: list[Case], seed: int, out: str) -> None:

    torch.set_num_threads(torch_threads())
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    adapter = load_adapter(adapter_spec)
    results = {}
    for case in cases:
        try:
            grads = _gradients(adapter, case, seed, rank=rank, world=world)
            for g in grads:                       # DDP: average over ranks
                dist.all_reduce(g)
                g.div_(world)
            results[case.id] = grads
        except Exception as e:                    # reported, not raised: other cases still run
            results[case.id] = f"{type(e).__name__}: {e}"
    if rank == 0:
        atomic_write(out, lambda p: torch.save(results, p))
    dist.barrier()                                # nobody tears gloo down while a peer still talks


def distributed_gradients(adapter_spec: str, cases: list[Case], *, seed: int = 0, world: int = WORLD) -> dict:
    """Rank-averaged gradients of ``world`` gloo processes per case id (or the error text)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "grads.pt")
        try:
            spawn(_rank_main, args=(adapter_spec, list(cases), seed, out), nprocs=world)
        except Exception:
            # gloo can abort a process during interpreter teardown (live threads) after all the
            # work is done; the results rank 0 wrote atomically are then complete and valid.
            if not os.path.exists(out):
                raise
        return torch.load(out)


def spec_of(adapter) -> str:
    """The string that loads ``adapter`` again in a fresh process (its registry spec, else its name)."""
    return getattr(adapter, "spec", None) or adapter.name


def relative_error(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    num = sum((x - y).pow(2).sum() for x, y in zip(a, b)).sqrt()
    den = sum(y.pow(2).sum() for y in b).sqrt()
    return (num / den).item()


def check(adapter_spec: str, adapter, cases: list[Case], *, seed: int = 0, world: int = WORLD) -> dict:
    """``{case id: (relative error, error text or None)}`` against the single-process gradient. A case that raises,
    on the ranks or in the single process, is reported for that case alone: the other methods are still judged."""
    got = distributed_gradients(adapter_spec, cases, seed=seed, world=world)
    out = {}
    for case in cases:
        d = got[case.id]
        if isinstance(d, str):
            out[case.id] = (float("nan"), d)
            continue
        try:
            single = _gradients(adapter, case, seed)
        except Exception as e:                    # reported, not raised: other cases still run
            out[case.id] = (float("nan"), f"{type(e).__name__} (single process): {e}"[:2000])
            continue
        out[case.id] = (relative_error(d, single), None)
    return out
