"""Anisotropic shared-signal views: the setting of Simon et al. 2023 (§4) and Littwin et al. 2024 (§3).

``x1 = s + n1``, ``x2 = s + n2`` with ``s ~ N(0, diag(λ))`` and ``n_v ~ N(0, diag(σ²))`` independent, so
``E[x1 x1ᵀ] = E[x2 x2ᵀ] = diag(λ + σ²)`` and the cross-covariance ``Γ = E[x1 x2ᵀ] = diag(λ)``.
Independent augmentation noise never enters ``Γ``. A coordinate with ``λ_k < 0`` is the same model with
view 2's coordinate k sign-flipped (``x2_k = −(s_k + n2_k)``, ``Γ_kk = −|λ_k|``): Simon et al.'s
negative eigenvalue of Γ, a direction Barlow Twins must not learn.

:func:`shared_signal_views` is the moment-matched population batch (as
:func:`ncspec.reference.linear.population_views`, which is its λ = 1 case): its empirical moments equal
the population's exactly, so a loss that is an average of per-sample quadratics has the expected
gradient on it.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from .. import _checks
from .data import augmentation_std


def _signal(lam, dtype) -> Tensor:
    lam = torch.as_tensor(lam, dtype=dtype)
    if lam.dim() != 1 or lam.numel() == 0:
        raise ValueError(f"lam must be a 1-D sequence of signal variances λ_k (one per input coordinate), got "
                         f"shape {tuple(lam.shape)}; e.g. lam=[1.0, 0.7, 0.45].")
    _checks.finite("lam", lam, hint="λ_k is the variance of the shared signal on coordinate k (negative: the "
                   "coordinate is sign-flipped in view 2).")
    return lam


def shared_signal_views(lam, sigma=0.0, *, dtype=torch.float64) -> tuple[Tensor, Tensor]:
    """The moment-matched batch (4N, N) of the shared-signal model, ``N = len(lam)``.

    ``lam`` (N,): cross-covariance ``Γ = diag(lam)`` (a negative entry flips view 2's coordinate);
    ``sigma``: the noise std σ_k, a number or (N,). Moments on the batch, exactly:
    ``x1ᵀx1/B = x2ᵀx2/B = diag(|λ| + σ²)``, ``x1ᵀx2/B = diag(λ)``, mean 0.

    Construction (sigma points, per coordinate): the common part ``±√(N(2|λ_k| + σ_k²)) e_k`` and the
    difference part ``±σ_k√N (e_k, −e_k)``.
    """
    lam = _signal(lam, dtype)
    N = lam.numel()
    sig = augmentation_std(sigma, N, dtype=dtype)
    I = torch.eye(N, dtype=dtype)
    c = torch.sqrt(N * (2.0 * lam.abs() + sig ** 2)) * I
    d = sig * math.sqrt(N) * I
    sign = torch.where(lam < 0, -1.0, 1.0).to(dtype)
    x1 = torch.cat([c, -c, d, -d])
    x2 = torch.cat([c, -c, -d, d]) * sign
    return x1, x2


def cross_covariance(x1: Tensor, x2: Tensor) -> Tensor:
    """``Γ = x1ᵀx2 / B`` (..., N, N) of a batch (..., B, N): Simon et al.'s Γ before symmetrisation."""
    _checks.same_shape("x1", x1, "x2", x2)
    return x1.transpose(-1, -2) @ x2 / x1.shape[-2]
