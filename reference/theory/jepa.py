"""JEPA vs MAE in deep linear networks (Littwin et al. 2024, §3–4, eqs. 7–8; claims M1–M3).

Setting (per feature i of simultaneously diagonal Σ^{xx}, Σ^{yx}): ``λ = Σ^{yx}_ii`` (covariance),
``ρ = Σ^{yx}_ii / Σ^{xx}_ii`` (regression coefficient). Encoder ``W̄ = W_L ⋯ W_1``, linear predictor
(decoder) ``V``; JEPA ``½E‖V W̄ x − SG(W̄ y)‖²``, MAE ``½E‖V W̄ x − y‖²``. From the balanced diagonal
initialisation ``W_l = ε^{1/L} I``, ``V = ε^{1/L} I`` every layer and V stay equal to ``a = w̄^{1/L}``
per feature, and layer-wise gradient flow gives ``w̄`` **L ×** the right-hand side of eq. 7 / eq. 8
(derived in docs/theory.md, M)::

    JEPA (eq. 7)   ẇ̄ = L [λ w̄^{3−1/L} − (λ/ρ) w̄³]
    MAE  (eq. 8)   ẇ̄ = L [λ w̄^{2−1/L} − (λ/ρ) w̄³]

Arrays broadcast: ``lam``, ``rho`` (..., d).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

METHODS = ("jepa", "mae")


def _method(method: str) -> str:
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}.")
    return method


def rhs(method: str, w: Tensor, lam, rho, L: int) -> Tensor:
    """``dw̄/dt`` of layer-wise gradient flow: L × eq. 7 (JEPA) or eq. 8 (MAE)."""
    lead = w ** (3 - 1 / L) if _method(method) == "jepa" else w ** (2 - 1 / L)
    return L * (lam * lead - lam / rho * w ** 3)


def fixed_point(method: str, rho, L: int) -> tuple:
    """``(v*, w̄*)``: JEPA ``(ρ, ρ^L)`` (its encoder weight shrinks geometrically in depth on a noisy feature);
    MAE ``(ρ^{1/(L+1)}, ρ^{L/(L+1)})`` (``v* w̄* = ρ``, the regression of y on x)."""
    if _method(method) == "jepa":
        return rho, rho ** L
    return rho ** (1 / (L + 1)), rho ** (L / (L + 1))


def euler_map(method: str, a0: Tensor, lam, rho, L: int, eta: float, steps: int) -> Tensor:
    """The exact discrete dynamics of one feature under ``θ ← θ − η∇θ`` from the balanced init (every layer and
    ``v`` equal to ``a``): JEPA ``a ← a + η(λ a^{2L} − (λ/ρ) a^{2L+1})``, MAE ``a ← a + η(λ a^L − (λ/ρ) a^{2L+1})``.
    Returns ``w̄ = a^L`` at every step, (steps + 1, ...)."""
    jepa = _method(method) == "jepa"
    a, out = a0, [a0 ** L]
    for _ in range(steps):
        a = a + eta * (lam * a ** (2 * L if jepa else L) - lam / rho * a ** (2 * L + 1))
        out.append(a ** L)
    return torch.stack(out)


def critical_time(method: str, eps: float, lam: float, rho: float, L: int, p: float = 0.5, n: int = 20001) -> float:
    """Time (layer-wise flow) for ``w̄`` to rise from ε to ``p w̄*``: ``∫ dw̄ / ẇ̄`` by Simpson's rule in
    ``u = ln w̄`` (``dt = w̄ du / ẇ̄``; n nodes, odd). Requires ``ε < p w̄*`` (Littwin et al.'s note: a feature
    started above its target is not "learned")."""
    target = p * fixed_point(method, rho, L)[1]
    if not 0 < eps < target:
        raise ValueError(f"eps must lie in (0, p·w̄*) = (0, {target:.4g}) for {method} at ρ = {rho}, L = {L}; "
                         f"got {eps}.")
    u = np.linspace(np.log(eps), np.log(target), n)
    w = np.exp(u)
    lead = w ** (3 - 1 / L) if method == "jepa" else w ** (2 - 1 / L)
    f = w / (L * (lam * lead - lam / rho * w ** 3))
    h = u[1] - u[0]
    return float(h / 3 * (f[0] + f[-1] + 4 * f[1:-1:2].sum() + 2 * f[2:-1:2].sum()))


def jepa_gap(eps: float, lam: float, rho_s: float, rho_r: float, L: int) -> float:
    """Leading ρ-dependent gap of JEPA's critical times between two features of equal λ, in layer-wise time
    (1/L × the paper's): ``(1/ρ_s − 1/ρ_r) / ((2L − 2) λ ε^{(2L−2)/L})`` for L ≥ 2, ``ln(1/ε)(1/ρ_s − 1/ρ_r)/λ``
    for L = 1 — diverging as ε → 0 (derived in docs/theory.md, M3)."""
    if L == 1:
        return float(np.log(1 / eps) * (1 / rho_s - 1 / rho_r) / lam)
    return float((1 / rho_s - 1 / rho_r) / ((2 * L - 2) * lam * eps ** ((2 * L - 2) / L)))
