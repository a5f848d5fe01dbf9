"""Stepwise learning in linear Barlow Twins (Simon et al. 2023, §4; claims S1–S3).

Setting: ``z = W x``, ``W`` (d, m); the views' cross-covariance ``Γ = E[x1 x2ᵀ] = Σ_k γ_k v_k v_kᵀ``
(symmetric, γ_k in decreasing order, possibly negative); ``C = W Γ Wᵀ`` (d, d) and
``L = ‖C − I_d‖²_F`` (Barlow Twins with off-diagonal weight 1, no batch standardisation). Gradient
flow, time ``t = η × step`` (derived in docs/theory.md, S)::

    Ẇ = −∇_W L = −4 (C − I) W Γ.

From the aligned initialisation ``W(0) = U diag(s_0) V_dᵀ`` every eigenvalue ``c_k = γ_k s_k²`` of C
follows a logistic of rate ``8γ_k``, and one Euler step is exactly the map ``c ← c (1 + 4ηγ(1 − c))²``.
From a small random initialisation the eigendirections are learned one at a time, in decreasing γ,
each at the step time of its effective initial value ``c̃_k = γ_k R_kk²`` (``W(0) V_d = Q R``).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor


def logistic(c0: Tensor, gamma: Tensor, t: Tensor) -> Tensor:
    """``c(t) = 1 / (1 + (1/c0 − 1) e^{−8γt})``: the aligned-init solution of ``ċ = 8γ c (1 − c)``.

    Broadcasts ``c0``, ``gamma`` (..., d) against ``t``; a mode with γ ≤ 0 decays (c0 > 0 requires γ > 0;
    for γ ≤ 0 pass ``c0 = γ s0²`` ≤ 0, which the same formula carries to 0).
    """
    return 1.0 / (1.0 + (1.0 / c0 - 1.0) * torch.exp(-8.0 * gamma * t))


def euler_map(c0: Tensor, gamma: Tensor, eta: float, steps: int) -> Tensor:
    """The exact discrete dynamics of one eigenvalue under ``W ← W − η ∇_W L`` from the aligned init:
    ``s ← s (1 + 4ηγ(1 − c))``, i.e. ``c ← c (1 + 4ηγ(1 − c))²``. Returns (steps + 1, ...) from ``c0``."""
    out = [c0]
    c = c0
    for _ in range(steps):
        c = c * (1.0 + 4.0 * eta * gamma * (1.0 - c)) ** 2
        out.append(c)
    return torch.stack(out)


def step_time(c0: Tensor, gamma: Tensor) -> Tensor:
    """When the logistic crosses ½: ``t = ln(1/c0 − 1) / (8γ)`` (γ > 0, 0 < c0 < ½)."""
    return torch.log(1.0 / c0 - 1.0) / (8.0 * gamma)


def discrete_step_time(c0: Tensor, gamma: Tensor, eta: float, max_steps: int = 100_000) -> Tensor:
    """When the exact discrete map :func:`euler_map` crosses ½, in time ``η × step`` (linear interpolation
    in ``ln(c/(1 − c))`` between the two steps around the crossing: exact for a logistic). Shapes as c0."""
    c = c0.clone()
    t = torch.full_like(c0, math.nan)
    for k in range(max_steps):
        nxt = c * (1.0 + 4.0 * eta * gamma * (1.0 - c)) ** 2
        cross = torch.isnan(t) & (c < 0.5) & (nxt >= 0.5)
        if cross.any():
            lo, hi = torch.log(c / (1 - c)), torch.log(nxt / (1 - nxt))
            t = torch.where(cross, eta * (k + (0 - lo) / (hi - lo)), t)
        if not torch.isnan(t).any():
            break
        c = nxt
    return t


def effective_init(W0: Tensor, V_d: Tensor, gamma_d: Tensor) -> Tensor:
    """``c̃_k = γ_k R_kk²`` with ``W(0) V_d = Q R`` (QR of the d×d block; derived in docs/theory.md, S2).

    ``W0`` (..., d, m), ``V_d`` (m, d) the top-d eigenvectors of Γ in decreasing γ, ``gamma_d`` (d,).
    Returns (..., d): mode k's effective initial eigenvalue, the k-th to be learned.
    """
    R = torch.linalg.qr(W0 @ V_d).R
    return gamma_d * torch.diagonal(R, dim1=-2, dim2=-1) ** 2


def expected_step_time(alpha: float, gamma_d: Tensor) -> Tensor:
    """Leading order of the k-th step time for ``W(0)`` i.i.d. ``α·N(0, 1)`` (``E R_kk² = α²(d − k + 1)``):
    ``t_k ≈ [2 ln(1/α) − ln(γ_k (d − k + 1))] / (8γ_k)``. (d,)"""
    d = gamma_d.numel()
    k = torch.arange(1, d + 1, dtype=gamma_d.dtype)
    return (2.0 * math.log(1.0 / alpha) - torch.log(gamma_d * (d - k + 1))) / (8.0 * gamma_d)


def plateau_loss(d: int, k: int) -> int:
    """The staircase: between the k-th and (k+1)-th step, k eigenvalues of C are 1 and d − k are 0, so
    ``L = ‖C − I‖²_F = d − k``."""
    return d - k
