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


def balance_discretisation_bound(B0: Tensor, dW: Tensor, dW_p: Tensor, alpha_p: float, eta: float,
                                 lr: float) -> Tensor:
    """T1 for K gradient steps of size lr: a bound on ‖B_K − e^{−2ηKlr} B_0‖_F.

    Each step gives ``B' = (1 − 2η lr) B + Q_k``, ``Q_k = ΔW_pᵀΔW_p − α_p ΔWΔWᵀ``, so
    ``B_K = (1 − 2η lr)^K B_0 + Σ_k (1 − 2η lr)^{K−1−k} Q_k`` and the distance from the continuous law is at
    most ``Σ_k (1 − 2η lr)^{K−1−k} (‖ΔW_p‖² + α_p‖ΔW‖²) + |(1 − 2η lr)^K − e^{−2ηKlr}| ‖B_0‖``: both terms are
    Euler's O(lr) (each ΔW is lr × a gradient). ``dW`` (K, …, M, N), ``dW_p`` (K, …, M, M): the steps taken;
    ``B0`` (…, M, M) → the bound (…).
    """
    K = dW.shape[0]
    q = 1.0 - 2.0 * eta * lr
    quad = dW_p.pow(2).sum((-1, -2)) + alpha_p * dW.pow(2).sum((-1, -2))                  # (K, …)
    decay = (q ** torch.arange(K - 1, -1, -1, dtype=dW.dtype)).reshape(-1, *([1] * (quad.dim() - 1)))
    return (decay * quad).sum(0) + abs(q ** K - math.exp(-2.0 * eta * lr * K)) * B0.norm(dim=(-1, -2))


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


def diagonal_energy_fraction(A: Tensor, U: Tensor) -> float:
    """How much of a symmetric matrix's traceless part lies on the diagonal in the orthonormal basis ``U``:
    ``Σ_i (u_iᵀ Ā u_i)² / ‖Ā‖_F²`` with ``Ā = ½(A + Aᵀ) − (tr A / M) I`` (the multiple of I is diagonal in every
    basis, so it is left out). 1: ``U`` diagonalises ``A`` (T2's alignment, ``[F, W_p] = 0`` for ``U`` the
    eigenbasis of F); 0 for ``Ā = 0`` (nothing but a multiple of I). ``A``, ``U``: (M, M)."""
    A = A.detach().double()
    U = U.detach().double()
    M = A.shape[-1]
    Ab = 0.5 * (A + A.transpose(-1, -2)) - torch.diagonal(A).sum() / M * torch.eye(M, dtype=A.dtype)
    total = float(Ab.pow(2).sum())
    if total == 0.0:
        return 0.0
    return float(torch.diagonal(U.transpose(-1, -2) @ Ab @ U).pow(2).sum()) / total


def random_basis_diagonal_fraction(M: int) -> float:
    """E[:func:`diagonal_energy_fraction`] of a fixed traceless symmetric M×M matrix in a Haar-random basis:
    ``2/(M + 2)`` — no alignment. For a unit vector u uniform on the sphere, ``E[(uᵀĀu)²] = (2‖Ā‖_F² + (tr Ā)²)
    / (M(M + 2))``, and tr Ā = 0; summed over the M basis vectors: ``2‖Ā‖_F²/(M + 2)``."""
    return 2.0 / (M + 2)


def sqrt_rule_slope(p: Tensor, s: Tensor) -> float:
    """The least-squares slope of log p on log s over the modes with p, s > 0 — DirectPred's rule p ∝ √s
    (Tian, Chen & Ganguli 2021, §5; T3's p → √(α_p s)) predicts ½. ``p``, ``s``: (k,) paired eigenvalues."""
    p, s = torch.as_tensor(p, dtype=torch.float64), torch.as_tensor(s, dtype=torch.float64)
    ok = (p > 0) & (s > 0)
    x, y = s[ok].log(), p[ok].log()
    if x.numel() < 2 or float((x - x.mean()).pow(2).sum()) == 0.0:
        return float("nan")
    return float(((x - x.mean()) * (y - y.mean())).sum() / (x - x.mean()).pow(2).sum())


def directpred_spectrum(lam: Tensor, alpha: float, eps: float, *, boost: str = "after") -> Tensor:
    """DirectPred's predictor eigenvalues (Tian, Chen & Ganguli, ICML 2021, §5; their code):
    ``ω_m = (λ_m₊ / λ_max)^α + ε`` — negative eigenvalues of the correlation estimate (rounding)
    clamped at 0, normalised by the largest, raised to α (½ in DirectPred), boosted by ε after
    the power; ``W_P = U diag(ω) Uᵀ``. ``lam`` (..., M) → ω (..., M), float64.

    ``boost="before"``: the variant with ε inside the power, ``ω_m = (λ_m₊/λ_max + ε)^α`` (the
    IsoLoss authors' form of the boost; the convention ``directpred_boost = "before"``).

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
    if boost not in ("after", "before"):
        raise ValueError(f"boost must be 'after' (ω = λ̃^α + ε) or 'before' (ω = (λ̃ + ε)^α), got {boost!r}.")
    return (lam / top) ** alpha + eps if boost == "after" else (lam / top + eps) ** alpha


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


def per_mode_horizon(kappa: Tensor, p_plus: Tensor, omega0, *, alpha: float, eta: float, tau: float, lr: float,
                     tol_p: float, tol_d: float, max_steps: int = 20000) -> int:
    """W1: steps the exact per-mode Euler map ``ω ← ω|1 + lr·g_j(ω)|^{2α}``, ``g_j(ω) = ω(τ − κ_jω) − η``,
    needs from every initial eigenvalue in ``omega0`` until each kept mode (``p_plus[j]`` finite) has
    ``|ω/p*+ − 1| ≤ tol_p`` and each discarded column ``‖W e_j‖ = √(ω^{1/α}/κ_j)`` is below
    ``tol_d · min_kept d*_j`` (``d*_j = √((p*+_j)^{1/α}/κ_j)``). Wang et al. 2021 (weight decay as a
    threshold); the map is the per-mode image of one Euler step of the flow (module docstring, W1).

    ``kappa``, ``p_plus``: (N,) per input direction, ``p_plus`` NaN where the direction is discarded.
    Raises ``ValueError`` if the map has not converged within ``max_steps``.
    """
    _checks.positive("lr", lr)
    kappa_l, pp = [float(k) for k in kappa], [float(p) for p in p_plus]
    kept = [math.isfinite(p) for p in pp]
    if not any(kept):
        raise ValueError("per_mode_horizon needs at least one kept direction (a finite p_plus); with none the "
                         "threshold discards every direction and there is no fixed point to converge to.")
    d_min = min(math.sqrt(p ** (1 / alpha) / k) for p, k, keep in zip(pp, kappa_l, kept) if keep)
    modes = [j for _ in omega0 for j in range(len(kappa_l))]
    om = [float(w) for w in omega0 for _ in range(len(kappa_l))]
    for step in range(max_steps):
        if all(abs(w / pp[j] - 1.0) <= tol_p if kept[j] else math.sqrt(w ** (1 / alpha) / kappa_l[j]) <= tol_d * d_min
               for w, j in zip(om, modes)):
            return step
        om = [w * abs(1.0 + lr * (w * (tau - kappa_l[j] * w) - eta)) ** (2 * alpha) for w, j in zip(om, modes)]
    raise ValueError(f"the per-mode Euler map does not converge within {max_steps} steps (lr = {lr}, η = {eta}, "
                     f"τ = {tau}, α = {alpha}); lower lr or raise max_steps.")


def copy_ray(kappa: Tensor, tau: float, eps: float) -> tuple[float, Tensor]:
    """W2, the DirectCopy ray (derived): the effective decay η_eff and the normalised spectrum u* of C.

    DirectCopy (Wang et al. 2021) sets ``W_p = C/‖C‖_F + εI``. With aligned modes ω_j = ε + u_j,
    u = c/‖c‖₂ (c_j = κ_j‖W e_j‖²), and ``d ln‖W e_j‖/dt = g_j(ω_j) = ω_j(τ − κ_jω_j) − η``. W_p is
    invariant under W → sW, so the flow is 1-homogeneous: no fixed scale, only a ray on which every
    surviving mode grows at one rate γ: ``ω_j(τ − κ_jω_j) = η + γ =: η_eff`` (stable root ω_+),
    ``u_j = (ω_+(κ_j; η_eff) − ε)₊`` and ``Σ u_j² = 1`` fixes η_eff — independently of η. Modes off the
    ray (u_j = 0) are stable there because g_j(ε) ≤ γ. Solved by bisection on the decreasing map
    η_eff ↦ Σ u_j². ``kappa``: (N,) ``1 + σ_j²``; returns ``(η_eff, u*)`` with u* (N,).
    """
    _checks.positive("tau", tau)
    _checks.non_negative("eps", eps)
    kappa = torch.as_tensor(kappa, dtype=torch.float64)

    def u_of(eta_eff: float) -> Tensor:
        disc = tau ** 2 - 4.0 * kappa * eta_eff
        w = (tau + disc.clamp_min(0).sqrt()) / (2.0 * kappa)
        return torch.where(disc >= 0, (w - eps).clamp_min(0.0), torch.zeros_like(kappa))

    hi = tau ** 2 / (4.0 * kappa.min().item()) + 1e-12  # above it no mode has a root: Σu² = 0 < 1
    lo = hi - 1.0
    while u_of(lo).pow(2).sum() < 1.0:
        lo -= 2.0 * (hi - lo)
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if u_of(mid).pow(2).sum() > 1.0 else (lo, mid)
    eta_eff = 0.5 * (lo + hi)
    return eta_eff, u_of(eta_eff)


def ridgeless_probe_risk(n: int, dim: int, r: int, noise: float) -> float:
    """W3: expected test MSE of min-norm least squares from ``n`` samples on ``dim`` isotropic Gaussian
    features when the target ``y = βᵀx + noise·ε`` has ‖β‖ = 1 supported on ``r`` of them (W3's chosen
    form of Wang et al. 2021's "reduced sample complexity").

    ``dim = r`` (the learned features carry exactly the signal): ``s²(1 + r/(n − r − 1))``;
    otherwise (raw inputs) ``s² + (1 − n/dim) + s² n/(dim − n − 1)`` for ``n ≤ dim − 2`` and
    ``s²(1 + dim/(n − dim − 1))`` for ``n ≥ dim + 2``; ``inf`` at the interpolation threshold.
    """
    s2 = noise ** 2
    if dim == r:
        return s2 * (1 + r / (n - r - 1)) if n >= r + 2 else math.inf
    if n <= dim - 2:
        return s2 + (1 - n / dim) + s2 * n / (dim - n - 1)
    return s2 * (1 + dim / (n - dim - 1)) if n >= dim + 2 else math.inf
