"""Learned-predictor dynamics (Tian, Chen & Ganguli 2021) and the weight-decay threshold
(Wang et al. 2021, seed 001). THEORY.md T1–T6, W1–W3.

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


def directpred_spectrum(lam: Tensor, alpha: float, eps: float) -> Tensor:
    """DirectPred's predictor eigenvalues (Tian, Chen & Ganguli, ICML 2021, §5; their code):
    ``ω_m = (λ_m₊ / λ_max)^α + ε`` — negative eigenvalues of the correlation estimate (rounding)
    clamped at 0, normalised by the largest, raised to α (½ in DirectPred), boosted by ε after
    the power; ``W_P = U diag(ω) Uᵀ``. ``lam`` (..., M) → ω (..., M), float64.

    The normalisation makes ω independent of the estimate's scale: a running estimate started
    from 0 (``F̂ = (1 − ρ)Ĉ`` after one step) gives the same ω as ``Ĉ``.
    """
    _checks.positive("alpha", alpha)
    _checks.non_negative("eps", eps)
    lam = torch.as_tensor(lam, dtype=torch.float64).clamp_min(0.0)
    top = lam.amax(-1, keepdim=True)
    if (top <= 0).any():
        raise ValueError("the correlation estimate has no positive eigenvalue (collapsed embeddings): "
                         "DirectPred's λ_max normalisation is undefined; draw a non-zero encoder.")
    return (lam / top) ** alpha + eps


def directpred_spectrum_tolerance(M: int, alpha: float, unit_roundoff: float) -> float:
    """Absolute tolerance on ω of :func:`directpred_spectrum` when the implementation's λ come from
    another, equally valid float computation of the same M×M estimate (unit roundoff ``u``).

    Weyl's inequality bounds the eigenvalue difference of two backward-stable symmetric
    eigensolvers (and two summation orders of Ĉ) by ``δ·λ_max`` with ``δ = 10·M·u``, so
    ``λ̃ = λ₊/λ_max`` moves by at most ``2δ``; ``x ↦ x^α`` on [0, 1] is α-Hölder with constant 1
    for α ≤ 1 and α-Lipschitz for α ≥ 1. Hence ``|Δω| ≤ (2δ)^α`` (α ≤ 1) or ``2αδ`` (α ≥ 1),
    plus ``δ`` of rounding in ω itself. For α = ½ in float64 and M = 8 this is ≈ 2e-7: the
    square root amplifies the rounding of eigenvalues at 0 (a rank-deficient estimate).
    """
    _checks.positive("alpha", alpha)
    delta = 10.0 * M * unit_roundoff
    return ((2 * delta) ** alpha if alpha <= 1 else 2 * alpha * delta) + delta


def parabola_time(p0, p1, *, sigma2: float, eta: float, tau: float = 1.0) -> Tensor:
    """T4: the exact time for ``ṗ = p(τp − κp² − η) = −κ p (p − p*−)(p − p*+)`` to carry ``p0`` to ``p1``
    (elementwise; both in the same interval between fixed points, ``p1`` on the flow's side of ``p0``).

    Partial fractions: ``1/(p(p−a)(p−b)) = A/p + B/(p−a) + C/(p−b)`` with ``A = 1/(ab)``,
    ``B = 1/(a(a−b))``, ``C = 1/(b(b−a))`` (a = p*−, b = p*+), so
    ``t = −[A ln|p1/p0| + B ln|(p1−a)/(p0−a)| + C ln|(p1−b)/(p0−b)|]/κ``.
    """
    a, b = (x.item() for x in fixed_points(sigma2, eta, tau))
    if not (math.isfinite(a) and a > 0):
        crit = critical_weight_decay(sigma2, tau)
        raise ValueError(f"no non-trivial fixed points for η = {eta!r} ≥ τ²/(4κ) = {crit:.6g} (σ² = {sigma2!r}); "
                         f"parabola_time needs η below the critical weight decay.")
    p0 = torch.as_tensor(p0, dtype=torch.float64)
    p1 = torch.as_tensor(p1, dtype=torch.float64)
    k = 1.0 + sigma2
    A, B, C = 1.0 / (a * b), 1.0 / (a * (a - b)), 1.0 / (b * (b - a))
    return -(A * torch.log((p1 / p0).abs()) + B * torch.log(((p1 - a) / (p0 - a)).abs())
             + C * torch.log(((p1 - b) / (p0 - b)).abs())) / k
