"""Closed forms for the linear SG / EMA / GD dynamics of Ponce, Terver, Hebert & Arbel
(2025), claims P1–P6. The model and its fields are in :mod:`ncspec.reference.dual`
(not imported here: the theory never imports the simulators).

Notation: encoder ``A`` (M×N), predictor ``B`` (M×M), ``Σxx = E[xxᵀ]``,
``Σxy = E[xyᵀ] = Σyxᵀ``, ``Σyy``; residual ``r = BAx − A_t y`` against the target
``A_t`` (``A_t = A`` for SG); ``Ē = ½E‖BAx − Ay‖² + λ(‖A‖² + ‖B‖²)/2``.
SG field: ``Ȧ = −Bᵀ E[r xᵀ] − λA``, ``Ḃ = −E[r xᵀ] Aᵀ − λB`` with
``E[r xᵀ] = BAΣxx − A_tΣyx``. GD adds ``E[r yᵀ] = BAΣxy − AΣyy`` to ``Ȧ``.

**P1 (not a gradient).** With target ``T``, ``L(θ, T) = ½E‖BAx − Ty‖² + reg``; the SG
field is ``−∇_θ L(θ, T)|_{T=A}``, whose Jacobian is ``−H_θθ − H_θT Π`` (``Π`` picks A). The
first term is symmetric; the second, ``∂Ȧ/∂A ∋ Bᵀ(·)Σyx`` and ``∂Ḃ/∂A ∋ (·)ΣyxAᵀ``, is not
symmetric in general and vanishes identically iff ``Σyx = 0`` (then the SG field is the
gradient of ``½tr(BAΣxxAᵀBᵀ) + reg``). A smooth field is locally a Euclidean gradient
iff its Jacobian is symmetric. A metric-free certificate: a gradient flow of any smooth
function, in any metric, has no non-constant periodic orbit (the function decreases
strictly along it). *Rotated views* (M = 1, ``Σxx = κI``, ``Σxy = R(θ)ᵀ``, i.e. y is a
rotated copy of x plus noise, N = 2) give ``ȧ = (−κb² − λ)a + b R(θ)ᵀ a`` and
``ḃ = (cos θ − κb)‖a‖² − λb``: ‖a‖ and b follow the scalar model of P6 with ``q = cos θ``
while the direction of ``a`` turns at angular velocity ``−b sin θ``. The circle
``{b = r₊, ‖a‖ = r₊}`` is therefore a periodic orbit of period ``2π/(r₊ sin θ)``
(:func:`rotation_orbit`) — [derived].

**P2 (GD collapses) [derived].** ``⟨∇_A Ē, A⟩ = tr(Aᵀ E[Bᵀr xᵀ − r yᵀ]) + λ‖A‖²
= E[rᵀ(BAx − Ay)] + λ‖A‖² = E‖r‖² + λ‖A‖²``. Hence along GD
``d‖A‖²/dt = −2(E‖r‖² + λ‖A‖²) ≤ −2λ‖A‖²`` so ``‖A(t)‖ ≤ e^{−λt}‖A(0)‖``
(:func:`gd_encoder_bound`), the only stationary point of Ē is ``A = 0, B = 0`` (then
``∇_B Ē = λB``), and everywhere ``‖∇_A Ē‖ ≥ λ‖A‖`` (Cauchy–Schwarz). An Euler step of size
``h`` obeys ``‖A′‖² = (1 − 2λh)‖A‖² − 2hE‖r‖² + ‖ΔA‖² ≤ (1 − 2λh)‖A‖² + ‖ΔA‖²``.

**P3 (balancedness) [derived].** For any target: ``BᵀḂ = −BᵀE[rxᵀ]Aᵀ − λBᵀB`` and
``ȦAᵀ = −BᵀE[rxᵀ]Aᵀ − λAAᵀ``, so ``K = BᵀB − AAᵀ`` obeys ``K̇ = −2λK`` (SG and EMA). GD
adds ``−(E[r(Ay)ᵀ] + E[(Ay)rᵀ])`` (:func:`gd_balance_defect`), which is not ∝ K.
An Euler step: ``K′ = (1 − 2λh)K + ΔBᵀΔB − ΔAΔAᵀ`` exactly.

**P4 (equilibria) [derived; the paper's form at full rank].** ``Ḃ = 0`` gives
``B = D(C + λI)⁻¹`` with ``C = AΣxxAᵀ``, ``D = AΣyxAᵀ`` (:func:`sg_predictor`). Then
``(BC − D) = −λB``, and ``Ȧ = 0`` multiplied by ``Aᵀ`` gives ``λBᵀB = λAAᵀ``: every
equilibrium is balanced. Using it, ``Ȧ = 0`` reads ``A(SΣxx + λI) = BᵀAΣyx`` with
``S = AᵀA``; with the push-through identity ``(C + λI)⁻¹A = A(ΣxxS + λI)⁻¹``,
``AᵀBᵀ = S(ΣxxS + λI)⁻¹Σxy Aᵀ``, so ``Aᵀ·`` that equation becomes
``S R = 0`` with ``R = ΣxySΣyx − (ΣxxS + λI)(SΣxx + λI)``, i.e. ``A R = 0``
(:func:`projected_residual`) at **every** equilibrium, any rank. When A is square and
invertible (M = N, full rank) this is the paper's ``(ΣxxS + λI)(SΣxx + λI) = ΣxySΣyx``
(:func:`equilibrium_residual`). For M < N, S is singular and R ≠ 0 in general (its left
side has full rank N, its right side rank ≤ M): only ``A R = 0`` holds. Conversely,
``A R = 0`` with ``B = D(C+λ)⁻¹`` and balancedness is an equilibrium when A has full row rank.
At a non-zero SG equilibrium ``∇_B Ē = −Ḃ = 0`` but ``∇_A Ē = −(BAΣxy − AΣyy)`` obeys
P2's identity, so ``‖∇_A Ē‖ ≥ λ‖A‖ > 0``: it is not stationary for Ē.

**P5 (orbits) [derived].** ``(A, B) ↦ (QA, QBQᵀ)``, Q ∈ O(M), leaves Ē and all three fields
invariant (``‖Q(BAx − Ay)‖ = ‖BAx − Ay‖``). The orbit's tangent space is
``{(ΩA, ΩB − BΩ) : Ω = −Ωᵀ}``; its dimension is ``dim so(M) − dim{Ω : ΩA = 0, [Ω, B] = 0}``.
``ΩA = 0`` confines Ω to ``so(range(A)^⊥)``; at an equilibrium B vanishes on
``range(A)^⊥`` from both sides (``B = D(C+λ)⁻¹``, ``D`` and ``C`` do), so every such Ω commutes
with B. With ``r = rank A``::

    dim orbit = M(M−1)/2 − (M−r)(M−r−1)/2 = r(2M − r − 1)/2          (:func:`orbit_dimension`)

— ``M(M−1)/2`` at full rank, 0 at collapse. Each orbit direction is a zero eigenvalue of
the Jacobian. Differentiating ``∇K(θ)·F(θ) = −2λK(θ)`` at an equilibrium (F = 0) gives
``∇K·J = −2λ∇K``: the ``M(M+1)/2`` independent entries of ``dK`` are left eigenvectors with
eigenvalue ``−2λ`` whenever ``(dA, dB) ↦ dK`` is onto Sym(M) (A of full row rank), so
``−2λ`` has multiplicity ≥ M(M+1)/2 (:func:`balance_multiplicity`). The stronger bound
"the other eigenvalues have real part ≤ −λ" is **not** implied: P6's exact spectrum has
the eigenvalue ``2λ − q r₊ > −λ`` whenever ``λ > 2q²/(9p)`` (:func:`sphere_spectrum`).

**P6 (two spheres, M = 1) [derived].** With ``Σxx = pI`` and ``Σxy = qI`` (e.g.
``x = u + σ_x ε``, ``y = u + σ_y ε′``, ``u ~ N(0, I)``: ``p = 1 + σ_x²``, ``q = 1``), A = aᵀ, B = b:
``ȧ = −(pb² − qb + λ)a``, ``ḃ = −(pb − q)‖a‖² − λb``. So a keeps its direction, ρ = ‖a‖
and b follow a planar system, and non-zero equilibria need ``pb² − qb + λ = 0`` and then
``‖a‖² = λb/(q − pb) = b²`` (balanced)::

    r± = [q ± √(q² − 4pλ)] / (2p),   b = ‖a‖ = r±   (exist iff λ < q²/(4p))

— two spheres of dimension N−1 (:func:`sphere_radii`). In the (ρ, b) plane at ρ = b = r
the Jacobian is ``[[0, −(2pr − q)r], [−2(pr − q)r, −pr² − λ]]``: trace ``−qr`` (using
``pr² = qr − λ``), determinant ``2λqr − 4λ²``, eigenvalues ``−2λ`` and ``2λ − qr``. With
``q r± = 2λq/(q ∓ √(q² − 4pλ))``: ``2λ − qr₋ > 0`` (the inner sphere is a saddle) and
``2λ − qr₊ < 0`` (the outer sphere is stable). The N−1 directions tangent to a sphere
have eigenvalue 0 (the field vanishes on the whole sphere). Under EMA the equilibria are
the same with ``A_t = A``. Which sphere a run reaches depends on the sampled initial
states: the proportions are [open] and only recorded.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from .. import _checks


def _T(X: Tensor) -> Tensor:
    return X.transpose(-1, -2)


def _eye(n: int, like: Tensor) -> Tensor:
    return torch.eye(n, dtype=like.dtype, device=like.device)


def _mats(A: Tensor, xx: Tensor, xy: Tensor) -> None:
    _checks.tensor("A", A, min_dim=2, layout="(..., M, N)")
    for name, m in (("xx", xx), ("xy", xy)):
        _checks.tensor(name, m, min_dim=2, layout="(..., N, N)")
        if m.shape[-1] != m.shape[-2] or m.shape[-1] != A.shape[-1]:
            raise ValueError(f"{name} must be (..., N, N) with N = {A.shape[-1]} (A has shape {tuple(A.shape)}), "
                             f"got shape {tuple(m.shape)}.")


def sg_predictor(A: Tensor, xx: Tensor, xy: Tensor, lam: float) -> Tensor:
    """P4: the predictor of an SG equilibrium, ``B = AΣyxAᵀ(AΣxxAᵀ + λI)⁻¹`` (…, M, M)."""
    _mats(A, xx, xy)
    _checks.positive("lam", lam, hint="with λ = 0 the formula needs AΣxxAᵀ invertible; use λ > 0.")
    C = A @ xx @ _T(A) + lam * _eye(A.shape[-2], A)
    D = A @ _T(xy) @ _T(A)
    return _T(torch.linalg.solve(_T(C), _T(D)))          # D C⁻¹ (C symmetric)


def equilibrium_residual(A: Tensor, xx: Tensor, xy: Tensor, lam: float) -> Tensor:
    """P4: ``R = ΣxySΣyx − (ΣxxS + λI)(SΣxx + λI)`` with ``S = AᵀA`` (…, N, N).

    Zero at every SG equilibrium with A square and invertible (the paper's form); see
    :func:`projected_residual` for the form valid at any rank.
    """
    _mats(A, xx, xy)
    _checks.non_negative("lam", lam)
    S = _T(A) @ A
    I = _eye(A.shape[-1], A)
    return xy @ S @ _T(xy) - (xx @ S + lam * I) @ (S @ xx + lam * I)


def projected_residual(A: Tensor, xx: Tensor, xy: Tensor, lam: float) -> Tensor:
    """P4: ``A R`` (…, M, N) — zero at every SG equilibrium, whatever the rank of A."""
    return A @ equilibrium_residual(A, xx, xy, lam)


def residual_scale(A: Tensor, xx: Tensor, xy: Tensor, lam: float) -> Tensor:
    """A natural size for R: ``‖ΣxySΣyx‖ + ‖(ΣxxS + λI)(SΣxx + λI)‖`` (…), for relative errors."""
    S = _T(A) @ A
    I = _eye(A.shape[-1], A)
    return (xy @ S @ _T(xy)).norm(dim=(-1, -2)) + ((xx @ S + lam * I) @ (S @ xx + lam * I)).norm(dim=(-1, -2))


def balance_at(K0: Tensor, t, lam: float) -> Tensor:
    """P3: ``K(t) = e^{−2λt} K(0)`` for SG and EMA; ``t`` a number or (T,) → (T, …)."""
    _checks.non_negative("lam", lam)
    t = torch.as_tensor(t, dtype=K0.dtype)
    return torch.exp(-2.0 * lam * t).reshape(*t.shape, *([1] * K0.dim())) * K0


def gd_balance_defect(A: Tensor, B: Tensor, xy: Tensor, yy: Tensor) -> Tensor:
    """P3: ``K̇ + 2λK`` under GD, ``−(E[r(Ay)ᵀ] + E[(Ay)rᵀ])`` with ``E[r(Ay)ᵀ] = BAΣxyAᵀ − AΣyyAᵀ``."""
    X = B @ A @ xy @ _T(A) - A @ yy @ _T(A)
    return -(X + _T(X))


def gd_encoder_bound(A0_sq: Tensor, t, lam: float) -> Tensor:
    """P2: ``‖A(t)‖² ≤ e^{−2λt}‖A(0)‖²`` along gradient flow on Ē."""
    _checks.non_negative("lam", lam)
    t = torch.as_tensor(t, dtype=torch.float64)
    return torch.exp(-2.0 * lam * t).reshape(*t.shape, *([1] * A0_sq.dim())) * A0_sq


def orbit_dimension(M: int, rank: int) -> int:
    """P5: dimension of the O(M)-orbit ``(QA, QBQᵀ)`` through an equilibrium with ``rank A = r``:
    ``r(2M − r − 1)/2``."""
    _checks.positive_int("M", M)
    if not (isinstance(rank, int) and 0 <= rank <= M):
        raise ValueError(f"rank must be an int in [0, M = {M}], got {rank!r}.")
    return rank * (2 * M - rank - 1) // 2


def balance_multiplicity(M: int) -> int:
    """P5: the Jacobian at an equilibrium with A of full row rank has eigenvalue −2λ with
    multiplicity at least ``M(M+1)/2`` (the entries of the balancedness K)."""
    _checks.positive_int("M", M)
    return M * (M + 1) // 2


def critical_weight_decay(p: float, q: float) -> float:
    """P6: the spheres exist iff ``λ < q²/(4p)``."""
    _checks.positive("p", p, hint="p is the online view's second moment, Σxx = pI.")
    if not (isinstance(q, (int, float)) and math.isfinite(q)):
        raise ValueError(f"q must be a finite number (Σxy = qI), got {q!r}.")
    return q * q / (4.0 * p)


def sphere_radii(p: float, q: float, lam: float) -> tuple[float, float]:
    """P6: ``(r₋, r₊) = [q ∓ √(q² − 4pλ)]/(2p)``; the non-zero equilibria are ``b = ‖a‖ = r±``."""
    _checks.positive("lam", lam, hint="λ = 0 puts the inner sphere at the origin.")
    crit = critical_weight_decay(p, q)
    if q <= 0 or lam >= crit:
        raise ValueError(f"no non-zero equilibria: they need q > 0 and λ < q²/(4p) = {crit:.6g}, got q = {q!r}, "
                         f"λ = {lam!r}; lower the weight decay.")
    root = math.sqrt(q * q - 4.0 * p * lam)
    return (q - root) / (2.0 * p), (q + root) / (2.0 * p)


def sphere_spectrum(p: float, q: float, lam: float, N: int) -> dict[str, Tensor]:
    """P6: the Jacobian's eigenvalues on each sphere, ascending (N + 1 values):
    ``N−1`` zeros, ``−2λ`` and ``2λ − q r`` — positive on the inner sphere, negative on the outer."""
    _checks.positive_int("N", N)
    out = {}
    for name, r in zip(("inner", "outer"), sphere_radii(p, q, lam)):
        ev = torch.tensor([0.0] * (N - 1) + [-2.0 * lam, 2.0 * lam - q * r], dtype=torch.float64)
        out[name] = ev.sort().values
    return out


def ema_sphere_spectrum(p: float, q: float, lam: float, beta: float, N: int) -> dict[str, Tensor]:
    """P6 with an EMA target ``ȧ_t = β(a − a_t)``: the eigenvalues of the (a, b, a_t) field's Jacobian on
    each sphere ``b = ‖a‖ = ‖a_t‖ = r`` (a_t = a), ascending (2N + 1 values).

    With ``ȧ = −(pb² + λ)a + qb a_t`` and ``ḃ = −pb‖a‖² + q a·a_t − λb``, and ``pr² + λ = qr`` there:
    the radial block on (‖a‖, b, ‖a_t‖) is ``[[−qr, 2λ − qr, qr], [2λ − qr, −qr, qr], [β, 0, −β]]``; each
    of the N−1 tangent directions (δa, δa_t ⊥ a) gives ``[[−qr, qr], [β, −β]]``, eigenvalues 0 (along the
    sphere) and ``−(qr + β)``. The inner sphere keeps one positive eigenvalue (a saddle, slower than SG's
    ``2λ − qr₋``), the outer none.
    """
    _checks.positive("beta", beta, hint="β is the EMA rate of ȧ_t = β(a − a_t); m = 1 − β·lr per step.")
    _checks.positive_int("N", N)
    out = {}
    for name, r in zip(("inner", "outer"), sphere_radii(p, q, lam)):
        radial = torch.tensor([[-q * r, 2 * lam - q * r, q * r], [2 * lam - q * r, -q * r, q * r],
                               [beta, 0.0, -beta]], dtype=torch.float64)
        ev = torch.linalg.eigvals(radial).real
        tangent = torch.tensor([0.0, -(q * r + beta)], dtype=torch.float64).repeat(N - 1)
        out[name] = torch.cat([ev, tangent]).sort().values
    return out


def euler_rate(mu: float, lr: float) -> float:
    """The per-unit-time rate at which Euler steps of size ``lr`` grow or shrink a linear mode of eigenvalue
    ``mu``: ``|ln|1 + lr·μ||/lr`` (→ |μ| as lr → 0; slower than |μ| for growth, faster for mild decay)."""
    _checks.positive("lr", lr)
    return abs(math.log(abs(1.0 + lr * mu))) / lr


def sg_radial_field(rho: Tensor, b: Tensor, p: float, q: float, lam: float) -> tuple[Tensor, Tensor]:
    """P6: the SG field in the (ρ = ‖a‖, b) half-plane: ``ρ̇ = −(pb² − qb + λ)ρ``,
    ``ḃ = −(pb − q)ρ² − λb``."""
    return -(p * b * b - q * b + lam) * rho, -(p * b - q) * rho * rho - lam * b


def gd_radial_field(rho: Tensor, b: Tensor, p: float, q: float, s: float, lam: float) -> tuple[Tensor, Tensor]:
    """GD on Ē in the (ρ, b) half-plane (``Σyy = sI``): ``ρ̇ = −(pb² − 2qb + s + λ)ρ``,
    ``ḃ = −(pb − q)ρ² − λb``."""
    return -(p * b * b - 2 * q * b + s + lam) * rho, -(p * b - q) * rho * rho - lam * b


def radial_objective(rho: Tensor, b: Tensor, p: float, q: float, s: float, lam: float) -> Tensor:
    """Ē in the (ρ, b) half-plane: ``½ρ²(pb² − 2qb + s) + λ(ρ² + b²)/2``."""
    return 0.5 * rho * rho * (p * b * b - 2 * q * b + s) + 0.5 * lam * (rho * rho + b * b)


def rotation_orbit(kappa: float, theta: float, lam: float) -> dict[str, float]:
    """P1 (rotated views, M = 1, N = 2, ``Σxx = κI``, ``Σxy = R(θ)ᵀ``): the SG periodic orbit
    ``{b = r₊, ‖a‖ = r₊}`` — radius ``r₊`` of the scalar model with ``p = κ``, ``q = cos θ``,
    angular velocity ``ω = −r₊ sin θ`` of ``a`` (counter-clockwise positive) and period
    ``2π/|ω|``."""
    if not (isinstance(theta, (int, float)) and 0.0 < abs(theta) < math.pi / 2):
        raise ValueError(f"theta must lie in (−π/2, π/2) \\ {{0}} (a rotation that keeps cos θ > 0), got {theta!r}.")
    _, r = sphere_radii(kappa, math.cos(theta), lam)
    omega = -r * math.sin(theta)
    return {"radius": r, "omega": omega, "period": 2.0 * math.pi / abs(omega)}


def rotation(theta: float, *, dtype=torch.float64) -> Tensor:
    """The 2×2 rotation ``R(θ)``."""
    c, s = math.cos(theta), math.sin(theta)
    return torch.tensor([[c, -s], [s, c]], dtype=dtype)
