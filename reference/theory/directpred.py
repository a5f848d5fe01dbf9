"""Learned-predictor dynamics (Tian, Chen & Ganguli 2021) and the weight-decay threshold
(Wang et al. 2021). Claims T1–T6, W1–W3.

Model: ``J = ½E‖W_p W x1 − SG(W_a x2)‖²``, ``X = E[x̄x̄ᵀ]``, ``X′`` the augmentation
covariance, so ``E[x1x1ᵀ] = X + X′`` and ``E[x1x2ᵀ] = X``;
``Ẇ = −∇_W J − ηW``, ``Ẇ_p = −α_p ∇_{W_p}J − ηW_p``, ``F = W X Wᵀ``.

**T1 (balancing).** ``W Ẇᵀ`` contains ``W_pᵀ(−∇_{W_p}J)`` exactly, so
``d/dt (W_pᵀW_p − α_p W Wᵀ) = −2η (W_pᵀW_p − α_p W Wᵀ)`` for any X, X′ and target.

**T2 (alignment), derivation of c.** With ``X = I``, ``X′ = σ²I``, ``W_a = τW`` and the
symmetrised predictor flow ``Ẇ_p = α_p(τF − (κ/2)(W_pF + FW_p)) − ηW_p`` (κ = 1+σ²):
``Ḟ = −(AF + FA) − 2ηF`` with ``A = κW_p² − τW_p``. For ``L = [F, W_p] = FW_p − W_pF``,
``ḞW_p − W_pḞ = −(AL + LA) − 2ηL`` (A commutes with W_p) and
``FẆ_p − Ẇ_pF = −(α_pκ/2)(FL + LF) − ηL`` (using ``F²W_p − W_pF² = FL + LF``). Hence::

    L̇ = −(K L + L K),   K = κW_p² − τW_p + (α_pκ/2) F + (3/2) η I,

i.e. **c = 3/2** when the weight decay η acts on both W and W_p (it is ``η_W + η_p/2``
in general: ½ if only W_p decays, 1 if only W does — the likely source of the ½ in
a third-party script). ``L`` is antisymmetric, so ``d‖L‖²/dt = −4 tr(LᵀKL) ≤
−4 λ_min(K)‖L‖²``: the commutator decays at least at rate ``2 λ_min(K)``.

**T3.** In a common eigenbasis (``W_p = diag p``, ``F = diag s``)::

    ṗ = α_p s (τ − κp) − η p,   ṡ = 2 p s (τ − κp) − 2η s,
    d/dt (s − p²/α_p) = −2η (s − p²/α_p)   ⇒   p → √(α_p s).

**T4.** On the parabola ``s = p²/α_p``: ``ṗ = p(τp − κp² − η)``; fixed points 0 and
``p*± = [τ ± √(τ² − 4κη)]/(2κ)``; ``p*−`` unstable, ``p*+`` and 0 stable; non-trivial
solutions need ``η < τ²/(4κ)``.

**W1.** With ``X = I``, ``X′ = diag(σ_j²)`` and a closed-form ``W_p = F^α`` (any α > 0),
a mode aligned with input direction j has ``ω_j`` obeying ``ω(τ − κ_jω) = η`` at its
fixed points: it survives iff ``κ_j = 1+σ_j² ≤ τ²/(4η)``, and then settles at ``p*+(σ_j²)``.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from .. import _checks


def balance(W: Tensor, W_p: Tensor, alpha_p: float) -> Tensor:
    """T1: ``W_pᵀW_p − α_p W Wᵀ`` (…, M, M)."""
    _checks.positive("alpha_p", alpha_p)
    return W_p.transpose(-1, -2) @ W_p - alpha_p * W @ W.transpose(-1, -2)


def balance_at(B0: Tensor, t: Tensor, eta: float) -> Tensor:
    """T1: ``B(t) = e^{−2ηt} B(0)``; ``t`` (K,) → (K, …)."""
    _checks.non_negative("eta", eta)
    return torch.exp(-2.0 * eta * t.to(B0.dtype)).reshape(-1, *([1] * B0.dim())) * B0


def commutator(F: Tensor, W_p: Tensor) -> Tensor:
    """``[F, W_p] = F W_p − W_p F``."""
    return F @ W_p - W_p @ F


def alignment_matrix(W_p: Tensor, F: Tensor, *, alpha_p: float, sigma: float, tau: float, eta: float,
                     c: float = 1.5) -> Tensor:
    """T2: ``K = κW_p² − τW_p + (α_pκ/2)F + cηI`` with the derived ``c = 3/2``."""
    k = 1.0 + _checks.non_negative("sigma", sigma) ** 2
    eye = torch.eye(F.shape[-1], dtype=F.dtype)
    return k * W_p @ W_p - tau * W_p + 0.5 * alpha_p * k * F + c * eta * eye


def aligned_rates(p: Tensor, s: Tensor, *, alpha_p: float, sigma: float, tau: float, eta: float):
    """T3: ``(ṗ, ṡ)`` per eigenmode after alignment."""
    k = 1.0 + sigma ** 2
    gap = tau - k * p
    return alpha_p * s * gap - eta * p, 2.0 * p * s * gap - 2.0 * eta * s


def fixed_points(sigma2, eta: float, tau: float = 1.0):
    """T4/W1: ``(p*−, p*+) = [τ ∓ √(τ² − 4κη)]/(2κ)``, κ = 1+σ²; NaN where none exist."""
    _checks.non_negative("eta", eta)
    _checks.positive("tau", tau)
    k = 1.0 + torch.as_tensor(sigma2, dtype=torch.float64)
    disc = tau ** 2 - 4.0 * k * eta
    root = torch.where(disc >= 0, disc.clamp_min(0).sqrt(), torch.full_like(disc, math.nan))
    return (tau - root) / (2.0 * k), (tau + root) / (2.0 * k)


def critical_weight_decay(sigma2: float, tau: float = 1.0) -> float:
    """T4: non-trivial fixed points exist iff ``η < τ²/(4(1+σ²))``."""
    return tau ** 2 / (4.0 * (1.0 + sigma2))


def survival_threshold(eta: float, tau: float = 1.0) -> float:
    """W1: direction j survives iff ``σ_j² ≤ τ²/(4η) − 1``."""
    _checks.positive("eta", eta)
    return tau ** 2 / (4.0 * eta) - 1.0


def parabola_rate(p: Tensor, *, sigma2: float, eta: float, tau: float = 1.0) -> Tensor:
    """T4: ``ṗ = p(τp − κp² − η)`` on the invariant parabola ``s = p²/α_p``."""
    return p * (tau * p - (1.0 + sigma2) * p ** 2 - eta)


def aligned_euler_step(p: Tensor, s: Tensor, *, lr: float, alpha_p: float, sigma: float, tau: float,
                       eta: float):
    """The exact per-mode image of one Euler step on (W, W_p) from an aligned state (T3).

    ``W ← (I + lr D) W`` with ``D = W_p(τ − κW_p) − η`` diagonal in the common basis, so
    ``s ← s (1 + lr d)²``, ``d = p(τ − κp) − η``; ``p ← p + lr ṗ``. A correct simulation
    reproduces it to rounding.
    """
    k = 1.0 + sigma ** 2
    d = p * (tau - k * p) - eta
    p_dot = alpha_p * s * (tau - k * p) - eta * p
    return p + lr * p_dot, s * (1.0 + lr * d) ** 2
