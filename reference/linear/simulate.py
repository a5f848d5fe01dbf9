"""One simulator for every claim: gradient steps on a learner, batched over replicas.

``simulate`` runs plain gradient descent ``W ← W − η ∇_W loss`` on a learner
(any object of the adapter protocol) around a :class:`LinearEncoder`, drawing
views from ``views(step)``. With :func:`population_views` this is the Euler
discretisation of the expected-gradient flow; with :func:`gaussian_views` it is
minibatch SGD. It records what the claims measure: the eigenvalues of the
population correlation ``C = (1+σ²) W Wᵀ``, ``‖W‖²_F`` and ``‖∇_W‖²_F``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from .. import _checks
from .model import LinearEncoder


@dataclass
class Trajectory:
    """Recorded quantities; ``steps`` (K,), per-replica arrays (K, S, ...)."""

    steps: Tensor        # (K,) step index of each record
    t: Tensor            # (K,) time η·step of the gradient flow
    eig_C: Tensor        # (K, S, M) ascending eigenvalues of (1+σ²) W Wᵀ
    sq_norm: Tensor      # (K, S)   ‖W‖²_F
    grad_sq: Tensor      # (K, S)   ‖∇_W loss‖²_F of the step taken from that record
    W: Tensor            # (S, M, N) final weights


def simulate(learner, encoder: LinearEncoder, views: Callable[[int], tuple[Tensor, Tensor]],
             *, lr: float, steps: int, sigma: float, record_every: int = 1) -> Trajectory:
    """Run ``steps`` gradient steps; record every ``record_every`` steps (and the last)."""
    _checks.positive("lr", lr)
    _checks.non_negative("sigma", sigma)
    if not (isinstance(steps, int) and steps >= 0 and isinstance(record_every, int) and record_every > 0):
        raise ValueError(f"steps must be an int >= 0 and record_every an int > 0, "
                         f"got steps={steps!r}, record_every={record_every!r}.")
    W = encoder.W
    kappa = 1.0 + sigma ** 2
    rec_steps, eig, sqn, gsq = [], [], [], []

    def record(k: int, g_sq: Tensor) -> None:
        with torch.no_grad():
            rec_steps.append(k)
            eig.append(torch.linalg.eigvalsh(kappa * W @ W.transpose(-1, -2)))
            sqn.append(W.pow(2).sum((-1, -2)))
            gsq.append(g_sq)

    for k in range(steps + 1):
        if k == steps:
            record(k, torch.full(W.shape[:1], float("nan"), dtype=W.dtype))
            break
        x1, x2 = views(k)
        loss = learner.loss(x1, x2)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"loss became non-finite ({loss.item()}) at step {k}: the "
                                     f"dynamics diverged; lower lr or shorten the run.")
        (g,) = torch.autograd.grad(loss, [W])
        if k % record_every == 0:
            record(k, g.pow(2).sum((-1, -2)))
        with torch.no_grad():
            W -= lr * g
        learner.after_step()
    steps_t = torch.tensor(rec_steps)
    return Trajectory(steps=steps_t, t=lr * steps_t.to(W.dtype), eig_C=torch.stack(eig),
                      sq_norm=torch.stack(sqn), grad_sq=torch.stack(gsq), W=W.detach().clone())
