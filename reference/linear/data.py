"""Gaussian inputs and isotropic Gaussian augmentation.

Two sources of views:

* :func:`gaussian_views` samples a minibatch — what real training code sees;
* :func:`population_views` is a fixed, deterministic batch of ``4N`` points whose
  empirical moments equal the population's *exactly*: mean 0,
  ``E[x1 x1ᵀ] = E[x2 x2ᵀ] = (1+σ²) I`` and ``E[x1 x2ᵀ] = I``. Any loss that is an
  average of per-sample quadratics in ``(x1, x2)`` with a detached predictor
  built from ``E[z1 z1ᵀ]`` therefore has, on this batch, exactly the expected
  (population) gradient. This makes the expected-gradient flow a property of
  the loss code under test, not of a hand-derived formula.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from .. import _checks


def gaussian_views(batch: int, N: int, sigma: float, *, replicas: int | None = None,
                   generator: torch.Generator | None = None,
                   dtype=torch.float64) -> tuple[Tensor, Tensor]:
    """Sample ``x ~ N(0, I_N)`` and two views ``x + σ ε``; shape (replicas, B, N) or (B, N)."""
    if not (isinstance(batch, int) and batch > 0 and isinstance(N, int) and N > 0):
        raise ValueError(f"batch and N must be positive ints, got batch={batch!r}, N={N!r}; "
                         f"e.g. gaussian_views(256, 15, 0.5).")
    if replicas is not None:
        _checks.positive_int("replicas", replicas, hint="It is the number of independent seeds S "
                             "(a leading dimension); pass None for a single (B, N) batch.")
    _checks.non_negative("sigma", sigma, hint="sigma is the std of the augmentation noise; "
                         "use sigma >= 0.")
    shape = (batch, N) if replicas is None else (replicas, batch, N)
    x = torch.randn(shape, generator=generator, dtype=dtype)
    e = torch.randn((2, *shape), generator=generator, dtype=dtype)
    return x + sigma * e[0], x + sigma * e[1]


def population_views(N: int, sigma: float, *, dtype=torch.float64) -> tuple[Tensor, Tensor]:
    """The moment-matched batch (4N, N) described in the module docstring.

    Construction (sigma points of the joint law of ``(x1, x2)``): along each
    ``e_k`` the common part ``±√(N(2+σ²)) e_k`` (eigenvalue ``2+σ²`` of the joint
    covariance) and the difference part ``±σ√N (e_k, −e_k)`` (eigenvalue ``σ²``).
    """
    if not (isinstance(N, int) and N > 0):
        raise ValueError(f"N must be a positive int, got {N!r}; it is the input dimension, "
                         f"e.g. population_views(15, 0.5).")
    _checks.non_negative("sigma", sigma, hint="sigma is the std of the augmentation noise; "
                         "use sigma >= 0.")
    I = torch.eye(N, dtype=dtype)
    c, d = math.sqrt(N * (2.0 + sigma ** 2)), sigma * math.sqrt(N)
    x1 = torch.cat([c * I, -c * I, d * I, -d * I])
    x2 = torch.cat([c * I, -c * I, -d * I, d * I])
    return x1, x2
