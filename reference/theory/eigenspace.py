"""Eigenspace dynamics of Siamese losses with a closed-form predictor (claims H1–H8).

Halvagal, Laborieux & Zenke 2022, eqs. 1–8, generalised to isotropic
augmentation noise σ in the linear-Gaussian model (derivation below).

**Derivation.** With ``W_P`` a function of the population correlation
``C = κ W Wᵀ`` (``κ = 1+σ²``), the expected gradients of the four losses are
``∇_W L = G W`` with ``G`` a polynomial in ``W_P`` (``E[x1x1ᵀ] = E[x2x2ᵀ] = κI``,
``E[x1x2ᵀ] = I``)::

    SimSiam (eq. 2)      G = W_P (κ W_P − I)
    no stop-grad (eq. 6) G = κ W_P² − 2 W_P + κ I
    wrong side (eq. 7)   G = κ I − W_P
    IsoLoss (eq. 8)      G = κ W_P − I

``G`` commutes with ``C``, so the eigenvectors are fixed and each eigenvalue
``λ_m`` of ``C`` follows ``dλ_m/dt = 2η λ_m r(ω_m)`` with ``r = −eig(G)``::

    r_simsiam(ω)  = ω (1 − κω)          (σ = 0: eq. 5 → dλ/dt = 2ηλ^{1+α}(1 − λ^α))
    r_nosg(ω)     = −(κω² − 2ω + κ)     (σ = 0: eq. 6, −(1 − ω)²)
    r_wrong(ω)    = ω − κ               (σ = 0: eq. 7)
    r_iso(ω)      = 1 − κω              (eq. 8)

and one Euler step ``W ← W − ηGW`` maps ``λ ↦ λ (1 + η r(ω))²`` *exactly*.
With ``ω = λ^α`` and ``u = λ^α``: ``du/dt = 2αη u r(u)``, solved below.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from .. import _checks

LOSSES = ("simsiam", "no_stopgrad", "wrong_side", "isoloss")


def _lam(name: str, lam, *, positive: bool = True) -> Tensor:
    _checks.tensor(name, lam, min_dim=0)
    _checks.finite(name, lam)
    if positive and (lam <= 0).any():
        raise ValueError(f"{name} must be > 0 (eigenvalues of C), got min {lam.min().item():.3g}; the theory "
                         f"is stated for non-collapsed modes.")
    return lam


def _steps(steps) -> int:
    if not (isinstance(steps, int) and steps >= 0):
        raise ValueError(f"steps must be an int >= 0, got {steps!r}.")
    return steps


def kappa(sigma: float) -> float:
    """``κ = 1 + σ²``: the online input's second moment under augmentation."""
    return 1.0 + _checks.non_negative("sigma", sigma) ** 2


def predictor_eigenvalues(lam: Tensor, alpha: float, *, eps: float = 0.0,
                          normalize: bool = False, boost: str = "before") -> Tensor:
    """``ω_m`` from the eigenvalues ``λ_m`` of C (last dim = modes), as DirectPred sets them."""
    _checks.positive("alpha", alpha)
    _checks.non_negative("eps", eps)
    _checks.choice("boost", boost, {"before", "after"})
    lam = _lam("lam", lam, positive=False).clamp_min(0.0)
    if normalize:
        lam = lam / lam.amax(-1, keepdim=True).clamp_min(torch.finfo(lam.dtype).tiny)
    return (lam + eps) ** alpha if boost == "before" else lam ** alpha + eps


def mode_rate(loss: str, omega: Tensor, sigma: float) -> Tensor:
    """``r(ω)``: ``dλ/dt = 2ηλ r(ω)`` for each eigenmode (module docstring)."""
    _checks.choice("loss", loss, set(LOSSES))
    k = kappa(sigma)
    if loss == "simsiam":
        return omega * (1.0 - k * omega)
    if loss == "no_stopgrad":
        return -(k * omega ** 2 - 2.0 * omega + k)
    if loss == "wrong_side":
        return omega - k
    return 1.0 - k * omega


def eigenvalue_velocity(lam: Tensor, loss: str, alpha: float, sigma: float, eta: float = 1.0,
                        **predictor) -> Tensor:
    """``dλ_m/dt = 2η λ_m r(ω_m)``."""
    _checks.positive("eta", eta)
    return 2.0 * eta * lam * mode_rate(loss, predictor_eigenvalues(lam, alpha, **predictor), sigma)


def euler_trajectory(lam0: Tensor, loss: str, alpha: float, sigma: float, *, lr: float,
                     steps: int, **predictor) -> Tensor:
    """The exact per-mode image of ``steps`` Euler steps on W: (steps+1, ..., M).

    ``λ ← λ (1 + η r(ω))²`` — what a correct population-flow simulation must
    reproduce to rounding error.
    """
    _checks.positive("lr", lr)
    _lam("lam0", lam0, positive=False)
    out = [lam0]
    lam = lam0
    for _ in range(_steps(steps)):
        lam = lam * (1.0 + lr * mode_rate(loss, predictor_eigenvalues(lam, alpha, **predictor), sigma)) ** 2
        out.append(lam)
    return torch.stack(out)


def fixed_point(loss: str, alpha: float, sigma: float) -> float:
    """Non-trivial fixed point of ``λ`` (eig of C): ``κ^{−1/α}`` (H1, H4), unstable ``κ^{1/α}`` (H3)."""
    _checks.choice("loss", loss, set(LOSSES))
    _checks.positive("alpha", alpha)
    k = kappa(sigma)
    if loss in ("simsiam", "isoloss"):
        return k ** (-1.0 / alpha)
    if loss == "wrong_side":
        return k ** (1.0 / alpha)
    return 0.0


def _G_simsiam(u: Tensor, k: float) -> Tensor:
    # antiderivative of 1 / (u² (1 − κu)):  −1/u + κ ln(u / |1 − κu|)
    return -1.0 / u + k * torch.log(u / (1.0 - k * u).abs())


def ode_solution(lam0: Tensor, t: Tensor, loss: str, alpha: float, sigma: float,
                 eta: float = 1.0) -> Tensor:
    """``λ(t)`` of ``dλ/dt = 2ηλ r(λ^α)`` for every mode; ``t`` (K,), ``lam0`` (..., M) → (K, ..., M).

    Closed forms in ``u = λ^α`` with ``a = 2αη``:

    * IsoLoss (logistic): ``u(t) = 1 / (κ + (1/u0 − κ) e^{−at})``;
    * wrong side: ``u(t) = κ / (1 + (κ/u0 − 1) e^{aκt})`` (blows up for ``u0 > κ``);
    * SimSiam (implicit): ``a t = G(u) − G(u0)``, ``G(u) = −1/u + κ ln(u/|1−κu|)``,
      solved by bisection between ``u0`` and ``1/κ`` to float64 precision;
    * no stop-grad: RK4 on ``d ln u/dt = a r(u)`` (no convenient closed form).
    """
    _checks.choice("loss", loss, set(LOSSES))
    _checks.positive("alpha", alpha)
    _checks.positive("eta", eta)
    _lam("lam0", lam0)
    _checks.tensor("t", t)
    k, a = kappa(sigma), 2.0 * alpha * eta
    u0 = lam0.to(torch.float64) ** alpha
    tt = t.to(torch.float64).reshape(-1, *([1] * u0.dim()))
    if loss == "isoloss":
        u = 1.0 / (k + (1.0 / u0 - k) * torch.exp(-a * tt))
    elif loss == "wrong_side":
        u = k / (1.0 + (k / u0 - 1.0) * torch.exp(a * k * tt))
        u = torch.where(u < 0, torch.full_like(u, math.inf), u)
    elif loss == "simsiam":
        u = _solve_simsiam(u0, tt, k, a)
    else:
        u = _rk4_log(u0, t.to(torch.float64), lambda uu: a * mode_rate(loss, uu, sigma))
    return u ** (1.0 / alpha)


def _solve_simsiam(u0: Tensor, tt: Tensor, k: float, a: float) -> Tensor:
    u_star = 1.0 / k
    u0b = u0.expand(tt.shape[0], *u0.shape)
    target = _G_simsiam(u0b, k) + a * tt
    lo = torch.minimum(u0b, torch.full_like(u0b, u_star))
    hi = torch.maximum(u0b, torch.full_like(u0b, u_star))
    # G increases on (0, 1/κ) (modes rising to the fixed point) and decreases on
    # (1/κ, ∞) (modes falling to it): the solution lies above mid when G(mid) is
    # below the target on the rising branch, or above it on the falling one.
    rising = u0b < u_star
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        below = _G_simsiam(mid, k) < target
        go_up = torch.where(rising, below, ~below)
        lo = torch.where(go_up, mid, lo)
        hi = torch.where(go_up, hi, mid)
    u = 0.5 * (lo + hi)
    return torch.where(u0b == u_star, u0b, u)


def _rk4_log(u0: Tensor, t: Tensor, rate, h_max: float = 2e-3) -> Tensor:
    """Classical RK4 on ``v = ln u`` with steps ≤ ``h_max`` (local error O(h⁵) ≈ 1e-13)."""
    out, v, t_prev = [], torch.log(u0), 0.0
    f = lambda vv: rate(torch.exp(vv))
    for tk in t.tolist():
        n = max(1, math.ceil((tk - t_prev) / h_max))
        h = (tk - t_prev) / n
        for _ in range(n):
            k1 = f(v)
            k2 = f(v + 0.5 * h * k1)
            k3 = f(v + 0.5 * h * k2)
            k4 = f(v + h * k3)
            v = v + h / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)
        t_prev = tk
        out.append(torch.exp(v))
    return torch.stack(out)


def time_to_reach(lam0: Tensor, lam1: float, loss: str, alpha: float, sigma: float,
                  eta: float = 1.0) -> Tensor:
    """Exact time for a mode to go from ``λ0`` to ``λ1`` (H5), SimSiam or IsoLoss.

    SimSiam: ``(G(u1) − G(u0))/a``; IsoLoss: ``ln((1/u0 − κ)/(1/u1 − κ))/a``;
    ``u = λ^α``, ``a = 2αη``. ``λ1`` must lie between ``λ0`` and the fixed point.
    """
    _checks.choice("loss", loss, {"simsiam", "isoloss"})
    _checks.positive("alpha", alpha)
    _checks.positive("eta", eta)
    _checks.positive("lam1", lam1)
    _lam("lam0", lam0)
    k, a = kappa(sigma), 2.0 * alpha * eta
    u0 = lam0.to(torch.float64) ** alpha
    u1 = torch.full_like(u0, float(lam1) ** alpha)
    if ((u1 - u0) * (1.0 / k - u1) < 0).any():
        raise ValueError(f"lam1 = {lam1} must lie between every λ0 and the fixed point {k ** (-1 / alpha):.6g}: "
                         f"a mode never reaches a level beyond its fixed point.")
    if loss == "simsiam":
        return (_G_simsiam(u1, k) - _G_simsiam(u0, k)) / a
    return torch.log((1.0 / u0 - k) / (1.0 / u1 - k)) / a


def escape_time_asymptotic(lam0: Tensor, loss: str, alpha: float, eta: float = 1.0) -> Tensor:
    """Leading order as ``λ0 → 0`` (H5): ``λ0^{−α}/(2αη)`` (SimSiam), ``ln(1/λ0)/(2η)`` (IsoLoss)."""
    _checks.choice("loss", loss, {"simsiam", "isoloss"})
    _checks.positive("alpha", alpha)
    _checks.positive("eta", eta)
    _lam("lam0", lam0)
    if loss == "simsiam":
        return lam0 ** (-alpha) / (2.0 * alpha * eta)
    return torch.log(1.0 / lam0) / (2.0 * eta)


def normalized_top_mode(lam_top0: Tensor, t: Tensor, alpha: float, sigma: float, *, eps: float = 0.0,
                        boost: str = "before", eta: float = 1.0) -> Tensor:
    """H8: with ``ω = ((λ/λ_max) + ε)^α`` the top mode has the constant
    ``ω_top = (1+ε)^α`` and evolves as ``λ_top(0) exp(2η r_simsiam(ω_top) t)``;
    stationary when σ = ε = 0. The other modes converge to ``λ_top``.
    """
    _checks.positive("alpha", alpha)
    _checks.non_negative("eps", eps)
    _checks.choice("boost", boost, {"before", "after"})
    _lam("lam_top0", lam_top0)
    w = (1.0 + eps) ** alpha if boost == "before" else 1.0 + eps
    r = mode_rate("simsiam", torch.tensor(w, dtype=torch.float64), sigma)
    return lam_top0 * torch.exp(2.0 * eta * r * t.to(torch.float64).reshape(-1, *([1] * lam_top0.dim())))


def cosine_mean_omega(omega: Tensor, lam: Tensor) -> Tensor:
    """H6: the level the cosine loss drives every ``ω_m`` to, ``ω̄ = Σω²λ / Σωλ``."""
    _checks.same_shape("omega", omega, "lam", lam)
    return (omega ** 2 * lam).sum(-1) / (omega * lam).sum(-1)


def linear_ntk(X: Tensor, M: int) -> Tensor:
    """H7 (Halvagal et al. 2022, eq. 11): ``Θ(x_i, x_j) = (x_iᵀ x_j) I_M`` as a (B, M, B, M) tensor."""
    _checks.tensor("X", X, min_dim=2)
    if X.dim() != 2:
        raise ValueError(f"X must be a (B, N) batch of inputs, got shape {tuple(X.shape)}.")
    if not (isinstance(M, int) and M > 0):
        raise ValueError(f"M must be a positive int (the output dimension), got {M!r}.")
    return torch.einsum("in,jn->ij", X, X)[:, None, :, None] * torch.eye(M, dtype=X.dtype)[None, :, None, :]
