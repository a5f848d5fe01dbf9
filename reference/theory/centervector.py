"""Closed forms of the center-vector view (Jha et al. 2024, §3; claims J1, J3, J4).

Notation: unit embeddings ``ẑ = z/‖z‖``; ``μ_x = E_ω ẑ(ω(x))``; center
``s = E_x μ_x``; residual ``r_x = μ_x − s``. Everything below uses only
``‖ẑ‖ = 1``, so it holds for *any* distribution of unit vectors — in
particular for the empirical distribution of a finite batch.

**J1.** For two independent views ``ẑ, ẑ′`` of the same ``x``::

    E‖ẑ − ẑ′‖² = 2 − 2 E_x E[ẑᵀẑ′ | x] = 2 − 2 E_x‖μ_x‖² = 2 − 2‖s‖² − 2 E_x‖r_x‖²

(independence given x turns ``E[ẑᵀẑ′|x]`` into ``‖μ_x‖²``; then
``E‖μ_x‖² = ‖s‖² + E‖μ_x − s‖²``, the bias–variance split).

*Finite batches, exactly.* With V views of each of B samples, stack them as
``views`` (..., V, B, M). Two forms are exact on every batch:

* **empirical measure** (plug-in): ``x`` uniform over the B samples, ``ω, ω′``
  independent and uniform over the V views *with replacement* (``ω = ω′``
  allowed). Then ``μ_i = mean_v ẑ_iv``, ``s = mean_i μ_i``, ``R = mean_i‖μ_i − s‖²``
  and ``(1/V²) Σ_{v,v′} mean_i‖ẑ_iv − ẑ_iv′‖² = 2 − 2‖s‖² − 2R``. For V = 2 the
  left side is ``½ mean_i‖ẑ_i1 − ẑ_i2‖²``.
* **unbiased** (U-statistics): distinct views ``v ≠ v′``; then
  ``mean_{v≠v′} mean_i‖ẑ_iv − ẑ_iv′‖² = 2 − 2 m_U`` with
  ``m_U = mean_i Σ_{v≠v′} ẑ_ivᵀẑ_iv′ / (V(V−1))``, the unbiased estimate of
  ``E‖μ_x‖²``; and ``m_U = ‖s‖²_U + R_U`` with
  ``‖s‖²_U = Σ_{i≠j} μ_iᵀμ_j / (B(B−1))`` (unbiased for ‖s‖²) defines ``R_U``.

The naive mix — distinct-view invariance against plug-in ``s`` and ``R`` — is
*not* an identity (it is off by the factor ``V/(V−1)`` on ``1 − E‖μ‖²``).

**J4.** For unit vectors ``‖ẑ − ẑ⁻‖² = 2 − 2ẑᵀẑ⁻``; with a negative ``ẑ⁻``
independent of the anchor, ``E ẑᵀẑ⁻ = ‖s‖²``. So the triplet loss with squared
distances, no margin and an independent negative is::

    E‖ẑ − ẑ⁺‖² − E‖ẑ − ẑ⁻‖² = invariance + 2‖s‖² − 2 = −2 E_x‖r_x‖²

Exact on a batch (i) under the empirical measure — anchor uniform over the BV
embeddings, positive a view of the same sample drawn with replacement,
negative uniform over *all* BV embeddings (own sample included) — with the
plug-in ``s``, ``R``; and (ii) in the unbiased form — positive a *different*
view, negative from a *different* sample — with ``‖s‖²_U`` and ``R_U``. Form
(ii) is what :class:`ncspec.reference.methods.contrastive.Triplet` computes (V = 2).

**L_Simple (J3, chosen form).** ``½ mean_i‖ẑ_i1 − ẑ_i2‖² + λ pen(s)`` with
``s`` the plug-in center of the two views, ``pen = ‖s‖²`` (or ``‖s‖``). By the
empirical-measure J1 (V = 2) its value is ``2 − 2‖s‖² − 2R + λ pen(s)``
exactly. In population terms (B → ∞) ``½E‖ẑ − ẑ′‖² + λ‖s‖² =
1 + (λ − 1)‖s‖² − E‖r_x‖²``: λ = 1 is pure residual maximisation, λ > 1 a net
penalty on the center.

SimSiam without predictor: ``−mean_i cos(ẑ_i1, ẑ_i2) = ½ mean‖ẑ_i1 − ẑ_i2‖² − 1
= 1 − 2‖s‖² − 2R`` (plug-in, V = 2) — an invariance-only loss: its value falls
as ‖s‖ grows, down to −1 at complete collapse (‖s‖ = 1, R = 0).

This module never imports the simulators or the metrics: the moments are
computed here from their definitions.
"""
from __future__ import annotations

import torch
from torch import Tensor

from ..vectors import unit


def _views(views: Tensor) -> Tensor:
    if not isinstance(views, Tensor) or views.dim() < 3:
        raise ValueError(f"views must be a tensor (..., V, B, M) of V views of B samples, got "
                         f"{getattr(views, 'shape', type(views).__name__)}.")
    return unit(views)


def empirical_moments(views: Tensor) -> tuple[Tensor, Tensor]:
    """Plug-in ``(‖s‖², R = mean_i‖μ_i − s‖²)`` of unit views (..., V, B, M); each (...)."""
    u = _views(views)
    mu = u.mean(-3)
    s = mu.mean(-2)
    return s.pow(2).sum(-1), (mu - s.unsqueeze(-2)).pow(2).sum(-1).mean(-1)


def unbiased_moments(views: Tensor) -> tuple[Tensor, Tensor]:
    """``(‖s‖²_U, R_U)`` of unit views (..., V, B, M), V ≥ 2 and B ≥ 2 (module docstring)."""
    u = _views(views)
    V, B = u.shape[-3], u.shape[-2]
    if V < 2 or B < 2:
        raise ValueError(f"the unbiased moments need V >= 2 views and B >= 2 samples, got V = {V}, B = {B}.")
    tot = u.sum(-3)                                                   # (..., B, M) Σ_v ẑ_iv
    m_U = (tot.pow(2).sum(-1) - u.pow(2).sum((-1, -3))).mean(-1) / (V * (V - 1))
    mu = u.mean(-3)
    S = mu.sum(-2)
    s_sq_U = (S.pow(2).sum(-1) - mu.pow(2).sum((-1, -2))) / (B * (B - 1))
    return s_sq_U, m_U - s_sq_U


def invariance(s_sq, r_sq):
    """J1: ``E‖ẑ − ẑ′‖² = 2 − 2‖s‖² − 2E‖r_x‖²``."""
    return 2 - 2 * s_sq - 2 * r_sq


def triplet(s_sq, r_sq):
    """J4: the triplet loss (squared distances, no margin, independent negative) = ``−2E‖r_x‖²``.

    ``s_sq`` is accepted for symmetry with :func:`invariance`; the value does not depend on it.
    """
    return -2 * r_sq + 0 * s_sq


def triplet_via_invariance(inv, s_sq):
    """J4: ``invariance + 2‖s‖² − 2``."""
    return inv + 2 * s_sq - 2


def lsimple(s_sq, r_sq, lam: float, penalty: str = "squared"):
    """Value of the chosen L_Simple on a batch of two views (plug-in moments): ``2 − 2‖s‖² − 2R + λ pen``."""
    if penalty not in ("squared", "norm"):
        raise ValueError(f"penalty must be 'squared' or 'norm', got {penalty!r}.")
    pen = s_sq if penalty == "squared" else torch.as_tensor(s_sq).clamp_min(0).sqrt()
    return invariance(s_sq, r_sq) + lam * pen


def simsiam_no_predictor(s_sq, r_sq):
    """Value of SimSiam without predictor on two views (plug-in): ``1 − 2‖s‖² − 2R``; −1 at collapse."""
    return invariance(s_sq, r_sq) - 1
