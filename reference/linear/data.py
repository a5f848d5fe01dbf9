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


def augmentation_std(sigma, N: int, *, dtype=torch.float64) -> Tensor:
    """The per-coordinate augmentation std ``σ_j`` as an (N,) tensor.

    ``sigma`` is a number (isotropic, claims H) or a sequence/tensor of N values
    (anisotropic ``X′ = diag(σ_j²)``, claim W1).
    """
    if isinstance(sigma, (int, float)) and not isinstance(sigma, bool):
        _checks.non_negative("sigma", sigma, hint="sigma is the std of the augmentation noise; "
                             "use sigma >= 0.")
        return torch.full((N,), float(sigma), dtype=dtype)
    s = torch.as_tensor(sigma, dtype=dtype)
    if s.shape != (N,):
        raise ValueError(f"sigma must be a number or have one value per input coordinate, shape ({N},), "
                         f"got shape {tuple(s.shape)}.")
    if not torch.isfinite(s).all() or (s < 0).any():
        raise ValueError(f"sigma must hold finite values >= 0 (augmentation stds), got {s.tolist()}.")
    return s


def second_moment(sigma, N: int, *, dtype=torch.float64) -> Tensor:
    """Diagonal of ``E[x1 x1ᵀ] = I + X′``: ``1 + σ_j²``, shape (N,)."""
    return 1.0 + augmentation_std(sigma, N, dtype=dtype) ** 2


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
    sig = augmentation_std(sigma, N, dtype=dtype)
    shape = (batch, N) if replicas is None else (replicas, batch, N)
    x = torch.randn(shape, generator=generator, dtype=dtype)
    e = torch.randn((2, *shape), generator=generator, dtype=dtype)
    return x + sig * e[0], x + sig * e[1]


def population_views(N: int, sigma: float, *, dtype=torch.float64) -> tuple[Tensor, Tensor]:
    """The moment-matched batch (4N, N) described in the module docstring.

    Construction (sigma points of the joint law of ``(x1, x2)``): along each
    ``e_k`` the common part ``±√(N(2+σ²)) e_k`` (eigenvalue ``2+σ²`` of the joint
    covariance) and the difference part ``±σ√N (e_k, −e_k)`` (eigenvalue ``σ²``).
    """
    if not (isinstance(N, int) and N > 0):
        raise ValueError(f"N must be a positive int, got {N!r}; it is the input dimension, "
                         f"e.g. population_views(15, 0.5).")
    sig = augmentation_std(sigma, N, dtype=dtype)
    I = torch.eye(N, dtype=dtype)
    c, d = torch.sqrt(N * (2.0 + sig ** 2)), sig * math.sqrt(N)   # per coordinate: anisotropic σ_j
    c, d = c * I, d * I
    x1 = torch.cat([c, -c, d, -d])
    x2 = torch.cat([c, -c, -d, d])
    return x1, x2

