"""Claims W1–W3: weight decay as a threshold on augmentation variance, DirectCopy, downstream samples.

Wang, Chen, Du & Tian 2021 (arXiv:2110.04947; DirectCopy) builds on Tian, Chen & Ganguli 2021
(DirectPred, arXiv:2102.06810). Linear model: ``z = W x``, ``x ~ N(0, I_N)``,
views ``x + σ_j ε`` per coordinate (anisotropic ``X′ = diag(σ_j²)``, ``κ_j = 1 + σ_j²``), target
``τ·SG(z2)`` (``W_a = τW``), weight decay η on W, closed-form predictor rebuilt from the batch
correlation ``C = E[z1 z1ᵀ] = W diag(κ) Wᵀ``. Every run is the expected-gradient flow: Euler steps
on the moment-matched population batch (``population_views`` with the σ vector), so the gradient
is exactly ``∇_W = W_p(W_p W diag(κ) − τW) + ηW``.

**Per-mode reduction (W1, derived; reference/theory/directpred.py).** If the columns ``W e_j`` are
mutually orthogonal, ``W_p = C^α`` has eigenvalue ``ω_j = (κ_j‖W e_j‖²)^α`` on ``W e_j`` and each
column obeys ``d/dt ‖W e_j‖ = ‖W e_j‖·g_j(ω_j)``, ``g_j(ω) = ω(τ − κ_jω) − η``. The Euler step of
size ``lr`` is the exact per-mode map ``d ← d(1 + lr·g_j(ω))`` — the helper
:func:`~ncspec.reference.theory.directpred.per_mode_horizon` iterates it to choose the run length. Its
fixed points are the flow's:
``ω ∈ {p*−, p*+}`` iff ``κ_j ≤ τ²/(4η)``, else only 0.

**Mixing (derived here).** For a generic (non-aligned) W, linearise at the fixed point
``W* = Σ_{i kept} d*_i u_i e_iᵀ``: a discarded column ``w_j = W e_j`` does not enter C to first
order (``W* e_j = 0``), so ``ẇ_j = (τW_p − κ_jW_p² − η) w_j``: its component along a kept mode i
decays at rate ``η − p*+_i(τ − κ_j p*+_i) > 0`` and along the null space at η. The spectral radius of
the whole flow Jacobian at W* is ``ρ = max_{j, i kept} |g_j(p*+_i)|`` (checked against a
finite-difference Jacobian on 60 random settings, ratio 1.000); the step is ``lr = min(½, 1.5/ρ)`` so
the Euler map contracts every mode (``|1 − lr·λ| ≤ ½``).

**Normalised predictors are scale-free (W2, derived here).** ``Ĉ/‖Ĉ‖_F + εI`` (DirectCopy) — and
likewise the published DirectPred preset ``√(λ/λ_max) + ε`` — is invariant under W → sW, so the
flow is 1-homogeneous: W/‖W‖ converges to a ray (:func:`~ncspec.reference.theory.directpred.copy_ray`)
and ‖W‖ ∝ e^{γt}. Weight decay
then only shifts γ; the hard threshold of W1 belongs to the *unnormalised* DirectSet(α)
``W_p = C^α`` (α = 1: Tian et al.'s code's DirectCopy ``F + εI`` with ε = 0). W1 and W3 therefore
use method "directset" with ``normalize=False, eps=0``; W2 tests what DirectCopy does instead.

Runtime (one thread, ``ci`` profile, measured): W1 ≈ 1.4 s, W2 ≈ 1.5 s, W3 ≈ 1.1 s; ``thorough``
(40 examples): W1 ≈ 9 s, W2 ≈ 15–19 s, W3 ≈ 18–22 s.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from hypothesis import given
from hypothesis import strategies as st
from ncspec.conformance.claims import cite, register
from ncspec.reference.linear import LinearEncoder, population_views, simulate, weights_with_spectrum
from ncspec.reference.theory.directpred import (
    copy_ray,
    fixed_points,
    per_mode_horizon,
    ridgeless_probe_risk,
    survival_threshold,
)
from ncspec.reference.vectors import unit

from .harness import require

F64 = torch.float64


# ----------------------------------------------------------------------------- shared helpers
@dataclass
class Setting:
    """One W1 setting: augmentation variances σ_j², weight decay η, target scale τ, exponent α."""

    s2: torch.Tensor
    eta: float
    tau: float
    alpha: float
    kappa: torch.Tensor = field(init=False)
    cut: float = field(init=False)
    kept: torch.Tensor = field(init=False)
    p_minus: torch.Tensor = field(init=False)
    p_plus: torch.Tensor = field(init=False)
    d_star: torch.Tensor = field(init=False)

    def __post_init__(self):
        self.s2 = torch.as_tensor(self.s2, dtype=F64)
        self.kappa = 1.0 + self.s2
        self.cut = survival_threshold(self.eta, self.tau)
        self.kept = self.s2 <= self.cut
        self.p_minus, self.p_plus = fixed_points(self.s2, self.eta, self.tau)
        # ‖W e_j‖ at the fixed point: κ_j d² = (p*+)^{1/α}; 0 for discarded directions
        self.d_star = torch.where(self.kept, (self.p_plus.nan_to_num(0.0) ** (1 / self.alpha) / self.kappa).sqrt(),
                                  torch.zeros_like(self.s2))

    @property
    def N(self) -> int:
        return self.s2.numel()

    @property
    def r(self) -> int:
        return int(self.kept.sum())

    def stiffness(self) -> float:
        """ρ = max_{j, i kept} |g_j(p*+_i)|: the spectral radius of the flow Jacobian at W* (derived)."""
        p = self.p_plus[self.kept]
        return (self.eta - p[None, :] * (self.tau - self.kappa[:, None] * p[None, :])).abs().max().item()

    def lr(self) -> float:
        return min(0.5, 1.5 / self.stiffness())

    def mixing_rate(self) -> float:
        """Slowest decay rate of a discarded column at W* (derived): min_j min(η, min_i η − p_i(τ − κ_j p_i))."""
        if self.r == self.N:
            return math.inf
        p = self.p_plus[self.kept]
        k = self.kappa[~self.kept]
        return min(self.eta, (self.eta - p[None, :] * (self.tau - k[:, None] * p[None, :])).min().item())

    def init_band(self) -> tuple[float, float]:
        """Initial predictor eigenvalues ω0 ∈ [lo, lo + 0.2] with lo = 1.2·2η/τ > p*− = 2η/(τ + √(τ² − 4κη))."""
        lo = 1.2 * 2.0 * self.eta / self.tau
        return lo, lo + 0.2


def generic_encoder(st_: Setting, replicas: int, seed: int) -> LinearEncoder:
    """W0 = B diag(κ)^{−1/2} with B = U diag(b) Vᵀ Haar-random (input directions mixed), so that
    C0 = W0 diag(κ) W0ᵀ = B Bᵀ has predictor eigenvalues (b²)^α drawn uniformly in the init band."""
    g = torch.Generator().manual_seed(seed)
    lo, hi = st_.init_band()
    om0 = lo + (hi - lo) * torch.rand(replicas, st_.N, generator=g, dtype=F64)
    B = weights_with_spectrum(om0 ** (1 / st_.alpha), st_.N, generator=g)
    return LinearEncoder(B / st_.kappa.sqrt())


def population_flow(impl, method: str, enc: LinearEncoder, s2: torch.Tensor, *, lr: float, steps: int,
                    record_every: int | None = None, **options):
    """Expected-gradient flow of ``impl.build(method, ...)`` on the moment-matched batch (σ_j per coordinate)."""
    sig = s2.sqrt()
    learner = impl.build(method, enc, enc.W.shape[-2], **options)
    x1, x2 = population_views(s2.numel(), sig)
    return simulate(learner, enc, lambda k: (x1, x2), lr=lr, steps=steps, sigma=sig,
                    record_every=record_every or steps)


def sin_to_coordinates(W: torch.Tensor, k: int, inside: torch.Tensor) -> torch.Tensor:
    """sin of the largest principal angle between the top-k right singular subspace of W (…, M, N)
    and span{e_j : inside_j}: the spectral norm of the singular vectors' components outside."""
    Vh = torch.linalg.svd(W).Vh[..., :k, :]
    if bool(inside.all()):
        return torch.zeros(W.shape[:-2], dtype=W.dtype)
    return torch.linalg.matrix_norm(Vh[..., :, ~inside], ord=2)


def sin_between(A: torch.Tensor, B: torch.Tensor, k: int) -> torch.Tensor:
    """sin of the largest principal angle between the top-k right singular subspaces of A and B."""
    Va = torch.linalg.svd(A).Vh[..., :k, :].transpose(-1, -2)
    Vb = torch.linalg.svd(B).Vh[..., :k, :].transpose(-1, -2)
    return torch.linalg.matrix_norm(Va - Vb @ (Vb.transpose(-1, -2) @ Va), ord=2)


# ----------------------------------------------------------------------------- W1
TOL_P = 1e-4        # survivors' predictor eigenvalues vs p*+ (relative)
TOL_COL = 1e-4      # survivors' ‖W e_j‖ vs d*_j (relative)
TOL_DISC = 1e-3     # discarded ‖W e_j‖ / min_kept d*
TOL_SIN = 1e-3      # row space vs span{e_j : kept}
HORIZON_SAFETY = 1.5

W1 = register(
    "W1", title="Weight decay keeps the low-augmentation-variance directions and discards the rest",
    source=[cite("wang2021", "abstract: weight decay discards the features with high variance under augmentation"),
            cite("tian2021", "DirectPred / DirectSet")],
    statement="Linear model, X′ = diag(σ_j²), W_p = C^α (α = ½ DirectPred-style, α = 1 the unnormalised "
              "DirectCopy), W_a = τW, weight decay η: direction j survives iff σ_j² ≤ τ²/(4η) − 1, survivors "
              "settle at predictor eigenvalue p*+(σ_j²) = [τ + √(τ² − 4(1+σ_j²)η)]/(2(1+σ_j²)), and the learned "
              "W is a scaled projection onto the low-variance subspace.",
    measures="after expected-gradient flow from a generic W0 (input directions mixed): ‖W e_j‖ per input "
             "direction, eigenvalues λ(C)^α of the predictor, sin of the largest principal angle between the "
             "top-r right singular subspace of W and span{e_j : σ_j² ≤ cut}",
    prediction="kept set = {j : σ_j² ≤ τ²/(4η) − 1} (η = 0.1, τ = 1: cut 1.5 — 1.4 kept, 1.6 discarded; "
               "also η = 0.144, τ = 1.2, same cut, other p*+); ω_j = p*+(σ_j²), ‖W e_j‖ = √(p*+^{1/α}/κ_j); "
               "discarded columns → 0; principal angle → 0",
    tolerance=f"p*+ and ‖W e_j‖: {TOL_P:g} relative; discarded ‖W e_j‖ ≤ {TOL_DISC:g}·min d*; sin angle ≤ "
              f"{TOL_SIN:g}. Run length = {HORIZON_SAFETY}× the steps the exact per-mode Euler map needs to "
              f"reach 10× tighter tolerances from both ends of the initial band, plus one decade (ln 10) of the "
              f"slowest derived mixing rate (alignment of the mixed W0). Worst error/tolerance over 72 worst-"
              f"case runs (σ² = cut ± 0.1 and cut + 2, η ∈ {{0.09, 0.115, 0.14}}, τ ∈ {{0.9, 1.1}}, α ∈ {{½, 1}}, "
              f"3 seeds): 0.074 (discarded residual, angle), 4e-5 (p*+). Without the mixing decade it was 0.74: "
              f"the decade is what the margin rests on. Euler fixed points equal the flow's, so the step size "
              f"adds no bias.",
    derivation="Derived here (per-mode thresholds): Per mode: ḋ_j = d_j g_j(ω_j), g_j(ω) = ω(τ − κ_jω) − η, ω_j = (κ_j "
               "d_j²)^α; g_j = 0 at ω = p*± "
               "which exist iff κ_j ≤ τ²/(4η); p*+ stable, 0 stable, p*− the basin edge (init above it: "
               "ω0 ≥ 2.4η/τ > p*− = 2η/(τ + √(τ² − 4κη))). Discarded columns of a mixed W decay at rate "
               "η − p*+_i(τ − κ_j p*+_i) along kept mode i (linearisation; slow only when a kept and a "
               "discarded σ² straddle the cut closely). reference/theory/directpred.py module docstring. W_p is "
               "built from C = E[z1z1ᵀ] = W(I + X′)Wᵀ (online view, as the reference and Tian et al.'s code do), "
               "not F = WXWᵀ:  the threshold and p*+ are the same for both (ω enters g_j "
               "alone), only ‖W e_j‖ differs, by √κ_j.")


def _w1_run(impl, st_: Setting, *, replicas: int, seed: int):
    lr = st_.lr()
    horizon = per_mode_horizon(st_.kappa, st_.p_plus, st_.init_band(), alpha=st_.alpha, eta=st_.eta, tau=st_.tau,
                               lr=lr, tol_p=TOL_P / 10, tol_d=TOL_DISC / 10)
    # plus one more decade of the slowest mixing mode (a discarded column's component along a kept mode)
    tail = math.ceil(math.log(10.0) / -math.log(1.0 - lr * st_.mixing_rate())) if st_.r < st_.N else 0
    steps = int(math.ceil(HORIZON_SAFETY * horizon)) + tail
    enc = generic_encoder(st_, replicas, seed)
    traj = population_flow(impl, "directset", enc, st_.s2, lr=lr, steps=steps, alpha=st_.alpha,
                           normalize=False, eps=0.0, tau=st_.tau, weight_decay=st_.eta)
    return traj, lr, steps, horizon


def check_w1(record, st_: Setting, W: torch.Tensor, tag: str) -> None:
    """Kept set, survivors at p*+, discarded columns ≈ 0, row space = low-variance subspace."""
    kept, r = st_.kept, st_.r
    col = W.norm(dim=-2)                                           # (S, N): ‖W e_j‖
    # measured kept set: columns above half the smallest predicted survivor norm (discarded ones end ≤ 0.1 % of it)
    meas_kept = col > 0.5 * st_.d_star[kept].min()
    s2 = st_.s2
    lo = max((s2[rep].max().item() for rep in meas_kept if rep.any()), default=math.nan)
    hi = min((s2[~rep].min().item() for rep in meas_kept if (~rep).any()), default=math.nan)
    record(f"{tag}: largest kept σ² (all replicas)", lo, f"≤ cut τ²/(4η) − 1 = {st_.cut:.4g}")
    record(f"{tag}: smallest discarded σ² (all replicas)", hi, f"> cut = {st_.cut:.4g}")
    assert (meas_kept == kept).all(), (
        f"{tag}: kept directions {meas_kept.to(torch.int).tolist()} ≠ theory {kept.to(torch.int).tolist()} "
        f"(σ² = {s2.tolist()}, cut τ²/(4η) − 1 = {st_.cut:.4g}); column norms {col.tolist()}")
    C = (W * st_.kappa) @ W.transpose(-1, -2)
    omega = torch.linalg.eigvalsh(C).clamp_min(0).flip(-1)[..., :r] ** st_.alpha      # top-r predictor eigenvalues
    p_pred = st_.p_plus[kept].sort(descending=True).values
    err_p = (omega / p_pred - 1).abs().max().item()
    record.within(f"{tag}: survivors' predictor eigenvalues vs p*+ (max rel err)", omega.mean().item(),
                  p_pred.mean().item(), error=err_p, tolerance=TOL_P,
                  message=f"{tag}: predictor eigenvalues {omega.tolist()} ≠ p*+ {p_pred.tolist()} (rel {err_p:.3g})")
    err_c = (col[:, kept] / st_.d_star[kept] - 1).abs().max().item()
    record.within(f"{tag}: survivors' ‖W e_j‖ vs √(p*+^(1/α)/κ_j) (max rel err)", col[:, kept].mean().item(),
                  st_.d_star[kept].mean().item(), error=err_c, tolerance=TOL_COL,
                  message=f"{tag}: survivor column norms off by {err_c:.3g} (rel)")
    d_min = st_.d_star[kept].min().item()
    disc = (col[:, ~kept].max().item() / d_min) if r < st_.N else 0.0
    record.within(f"{tag}: discarded max ‖W e_j‖ / min d*", disc, 0.0, error=disc, tolerance=TOL_DISC,
                  message=f"{tag}: discarded directions keep ‖W e_j‖/min d* = {disc:.3g}")
    sin = sin_to_coordinates(W, r, kept).max().item()
    angle = math.degrees(math.asin(min(sin, 1)))
    record.within(f"{tag}: sin of largest principal angle, row space vs low-variance subspace", sin, 0.0,
                  error=sin, tolerance=TOL_SIN,
                  message=f"{tag}: learned row space is {angle:.3g}° from the low-variance subspace")


CANONICAL_S2 = (0.3, 0.8, 1.4, 1.6, 2.5, 4.0)


@W1.check
def test_weight_decay_keeps_only_directions_below_the_threshold_worked_example(impl, record):
    """W1 at the worked example (cut 1.5) for α = ½ and α = 1, and at τ = 1.2, η = 0.144 (same cut)."""
    require(impl, "directset", "predictor:closed_form", "loss:euclidean", "weight_decay")
    for eta, tau in ((0.1, 1.0), (0.144, 1.2)):
        for alpha in (0.5, 1.0):
            st_ = Setting(CANONICAL_S2, eta, tau, alpha)
            assert abs(st_.cut - 1.5) < 1e-12 and st_.kept.tolist() == [True] * 3 + [False] * 3
            traj, lr, steps, horizon = _w1_run(impl, st_, replicas=4, seed=1)
            tag = f"η={eta:g} τ={tau:g} α={alpha:g}"
            record(f"{tag}: steps run / per-mode horizon (lr = {lr:.3g})", steps, HORIZON_SAFETY * horizon)
            record(f"{tag}: slowest derived mixing rate of a discarded column", st_.mixing_rate(), "> 0")
            check_w1(record, st_, traj.W, tag)


@st.composite
def w1_settings(draw):
    """η ∈ [0.09, 0.14], τ ∈ [0.9, 1.1], α ∈ {½, 1}, 3–6 directions, none within ±0.1 of the cut;
    at least one kept and one discarded (σ² ≤ cut + 2)."""
    eta = draw(st.floats(0.09, 0.14))
    tau = draw(st.floats(0.9, 1.1))
    alpha = draw(st.sampled_from([0.5, 1.0]))
    cut = survival_threshold(eta, tau)
    below = st.floats(0.0, cut - 0.1)
    above = st.floats(cut + 0.1, cut + 2.0)
    n = draw(st.integers(3, 6))
    s2 = [draw(below), draw(above)] + [draw(st.one_of(below, above)) for _ in range(n - 2)]
    return Setting(s2, eta, tau, alpha), draw(st.integers(0, 2 ** 31 - 1))


@W1.check
@given(case=w1_settings())
def test_weight_decay_keeps_only_directions_below_the_threshold_drawn(impl, record, case):
    """W1 on drawn (η, τ, α, σ²): the switch sits exactly at τ²/(4η) − 1 wherever the σ² fall."""
    require(impl, "directset", "predictor:closed_form", "loss:euclidean", "weight_decay")
    st_, seed = case
    traj, lr, steps, horizon = _w1_run(impl, st_, replicas=3, seed=seed)
    record("drawn: steps run", steps, HORIZON_SAFETY * horizon)
    check_w1(record, st_, traj.W, "drawn")


# ----------------------------------------------------------------------------- W2
def copy_lr(kappa: torch.Tensor, tau: float, eps: float, eta: float) -> float:
    """|1 + lr·g_j(ω)| ≤ 1 for every ω ∈ [ε, 1 + ε] (ω's range under the Frobenius normalisation)."""
    w = 1.0 + eps
    return min(0.5, 1.0 / (w * (kappa.max().item() * w - tau) + eta))


TOL_RAY = 1e-8       # u per direction (absolute) and per-step growth factor (relative to lr·γ)
TOL_RAY_EPS0 = 1e-5  # ε = 0: the off-ray mode (σ² = 4) leaves the ray only as e^{−2η_eff t}, 2η_eff = 0.116
TOL_COPY_SIN = 1e-8  # DirectCopy aligns exactly: measured ≤ 1e-14 after T = 60

W2 = register(
    "W2", title="DirectCopy (W_p = C/‖C‖_F + εI) learns the low-variance subspace without eigendecomposition",
    source=[cite("wang2021", "abstract: DirectCopy removes the eigen-decomposition step"),
            cite("tian2021", "DirectPred")],
    statement="DirectCopy ranks input directions by augmentation variance exactly as DirectSet/DirectPred do: the "
              "top-r right singular subspace of its W is the W1-kept subspace and that of DirectSet's W (r = W1's "
              "kept count), and it never collapses dimensionally. Because C/‖C‖_F is scale-free, the linear "
              "Euclidean flow is 1-homogeneous: W/‖W‖ converges to a ray whose spectrum u* does not depend on η, "
              "and ‖W‖ ∝ e^{γt}, γ = η_eff − η: weight decay sets only the growth rate, so there is no hard W1 "
              "threshold (with ε > 0 every direction keeps a non-zero, variance-ordered weight).",
    measures="DirectCopy (preset ε = 0.25, copy_norm 'fro') and DirectSet α ∈ {½, 1} from generic W0 in the W1 "
             "setting (η = 0.1, τ = 1, σ² = 0.3…4.0): u_j = κ_j‖W e_j‖²/‖C‖_F per input direction, per-step "
             "factor of ‖W‖, principal angles; DirectCopy with η = 0 (ε = 0.25 and ε = 0)",
    prediction="u* and η_eff from copy_ray (η = 0.1, ε = 0.25: η_eff = −0.2431, all six directions on the ray, "
               "u* = 0.713, 0.489, 0.339, 0.304, 0.193, 0.092; γ = −0.343, so ‖W‖ decays); per-step factor 1 + lr·γ "
               "exactly (Euler keeps the ray); sin(top-3 subspace, e_1..e_3) → 0; u*(η = 0) = u*(η = 0.1); ε = 0: "
               "σ² = 4 leaves the ray (η_eff = 0.0578, effective cut τ²/(4η_eff) − 1 = 3.33), γ = +0.058 at η = 0",
    tolerance=f"u and growth factor {TOL_RAY:g} for ε = 0.25 (measured ≤ 4e-16 at T = 100), {TOL_RAY_EPS0:g} for ε = 0 "
              f"(the off-ray mode decays as e^(−2η_eff t) = e^(−0.116 t): measured ≤ 5e-9 at T = 200); DirectCopy vs "
              f"e_kept "
              f"sin ≤ {TOL_COPY_SIN:g} (measured ≤ 1e-14); vs DirectSet's learned row space ≤ 2·{TOL_SIN:g} "
              f"(triangle inequality with W1's tolerance; measured 1.2e-5)",
    derivation="The ray analysis is derived here. Norm: the paper leaves it open; the reference default is Frobenius "
               "(one O(M²) pass, bounds the "
                "spectral norm so ‖W_p − εI‖₂ ≤ 1; 'spectral' divides by λ_max and needs an eigenvalue solve). "
                "Ray: see copy_ray. Ordering: u*_j = ω_+(κ_j; η_eff) − ε decreases with κ_j, so ‖W e_j‖² = "
                "u_j‖C‖/κ_j decreases with σ_j² and the top-r singular directions are the r smallest σ_j². With "
                "ε > 0 every κ_j ≤ τ²/(4η_eff) sits on the ray, so 'kept' is soft; Tian et al.'s code uses the "
                "unnormalised F + εI, which has W1's fixed points (α = 1) and an extra cut p*+ > ε.")


def _copy_run(impl, s2, *, eta, eps, T, seed, replicas=4):
    st_ = Setting(s2, 0.1, 1.0, 1.0)       # init band of the W1 example (α = 1)
    lr = copy_lr(st_.kappa, 1.0, eps, eta)
    steps = int(math.ceil(T / lr))
    enc = generic_encoder(st_, replicas, seed)
    traj = population_flow(impl, "directcopy", enc, st_.s2, lr=lr, steps=steps, record_every=max(1, steps // 10),
                           eps=eps, copy_norm="fro", tau=1.0, weight_decay=eta)
    return traj, lr


def check_ray(record, traj, lr, kappa, *, eta, eps, tol, tag):
    eta_eff, u_pred = copy_ray(kappa, 1.0, eps)
    gamma = eta_eff - eta
    W = traj.W
    c = kappa * W.pow(2).sum(-2)                                    # κ_j ‖W e_j‖²
    C = (W * kappa) @ W.transpose(-1, -2)
    u = c / torch.linalg.matrix_norm(C).unsqueeze(-1)
    err_u = (u - u_pred).abs().max().item()
    record.within(f"{tag}: u_j = κ_j‖W e_j‖²/‖C‖_F vs ray u* (max abs err)", u.mean().item(), u_pred.mean().item(),
                  error=err_u, tolerance=tol,
                  message=f"{tag}: DirectCopy's normalised spectrum {u[0].tolist()} ≠ ray {u_pred.tolist()} "
                          f"({err_u:.3g})")
    ds = (traj.steps[-1] - traj.steps[-2]).item()
    factor = (traj.sq_norm[-1] / traj.sq_norm[-2]) ** (1.0 / (2 * ds)) - 1.0          # per-step ‖W‖ factor − 1
    err_g = ((factor - lr * gamma).abs() / abs(lr * gamma)).max().item()
    record.within(f"{tag}: per-step ‖W‖ growth factor − 1 vs lr·γ (γ = {gamma:.4g})", factor.mean().item(), lr * gamma,
                  error=err_g, tolerance=tol,
                  message=f"{tag}: ‖W‖ changes by {factor.tolist()} per step, the ray predicts lr·γ = {lr * gamma:.6g}")
    on_ray = u_pred > 0
    n_on = int((u > 0.5 * u_pred[on_ray].min()).sum(-1).min())
    record.within(f"{tag}: directions with u_j > ½ min u* (dimensional non-collapse)", n_on, int(on_ray.sum()),
                  error=abs(n_on - int(on_ray.sum())), tolerance=0,
                  message=f"{tag}: only {n_on} directions keep weight, the ray has {int(on_ray.sum())}")
    record(f"{tag}: η_eff (ray) and γ = η_eff − η", eta_eff, f"γ = {gamma:.4g}")
    return eta_eff, u_pred


@W2.check
def test_directcopy_learns_the_directset_subspace(impl, record):
    """W2 in the W1 setting: DirectCopy's ray, and its top-r subspace = W1's = DirectSet's."""
    require(impl, "directcopy", "directset", "predictor:closed_form", "loss:euclidean", "weight_decay")
    s2, eta, eps = CANONICAL_S2, 0.1, 0.25
    traj, lr = _copy_run(impl, s2, eta=eta, eps=eps, T=100.0, seed=1)
    st_ = Setting(s2, eta, 1.0, 1.0)
    eta_eff, u_pred = check_ray(record, traj, lr, st_.kappa, eta=eta, eps=eps, tol=TOL_RAY, tag="η=0.1 ε=0.25")
    assert bool((u_pred > 0).all()), "with ε > 0 the derived ray keeps every direction (soft threshold)"
    sin = sin_to_coordinates(traj.W, st_.r, st_.kept).max().item()
    record.within("DirectCopy: sin(top-r right singular subspace, span{e_j: σ_j² ≤ cut})", sin, 0.0, error=sin,
                  tolerance=TOL_COPY_SIN,
                  message=f"DirectCopy's top-{st_.r} subspace is not the low-variance one (sin {sin:.3g})")
    for alpha in (0.5, 1.0):
        ref = Setting(s2, eta, 1.0, alpha)
        ref_traj, *_ = _w1_run(impl, ref, replicas=4, seed=1)
        sin_ab = sin_between(traj.W, ref_traj.W, ref.r).max().item()
        record.within(f"sin(top-r subspace DirectCopy, DirectSet α={alpha:g})", sin_ab, 0.0, error=sin_ab,
                      tolerance=2 * TOL_SIN,
                      message=f"DirectCopy and DirectSet(α={alpha}) learn different subspaces "
                              f"(sin {sin_ab:.3g})")


@W2.check
@given(seed=st.integers(0, 2 ** 31 - 1))
def test_directcopy_ray_does_not_depend_on_weight_decay(impl, record, seed):
    """W2 with η = 0: the ray (hence the learned direction) is unchanged, only γ shifts by +η;
    ε = 0.25 keeps every direction (‖W‖ still decays, γ = −0.243); ε = 0 drops σ² = 4 and grows."""
    require(impl, "directcopy", "predictor:closed_form", "loss:euclidean")
    kappa = 1.0 + torch.tensor(CANONICAL_S2, dtype=F64)
    for eps, T, tol in ((0.25, 100.0, TOL_RAY), (0.0, 200.0, TOL_RAY_EPS0)):
        traj, lr = _copy_run(impl, CANONICAL_S2, eta=0.0, eps=eps, T=T, seed=seed)
        eta_eff, u_pred = check_ray(record, traj, lr, kappa, eta=0.0, eps=eps, tol=tol, tag=f"η=0 ε={eps:g}")
        kept_w1 = Setting(CANONICAL_S2, 0.1, 1.0, 1.0)
        sin = sin_to_coordinates(traj.W, kept_w1.r, kept_w1.kept).max().item()
        record.within(f"η=0 ε={eps:g}: sin(top-3 subspace, e_1..e_3)", sin, 0.0, error=sin, tolerance=TOL_COPY_SIN,
                      message=f"η=0 ε={eps:g}: top-3 subspace is not the low-variance one (sin {sin:.3g})")
        on_ray = int((u_pred > 0).sum())     # theory sanity: ε > 0 keeps all six, ε = 0 drops σ² = 4
        assert on_ray == (6 if eps > 0 else 5) and on_ray >= kept_w1.r


# ----------------------------------------------------------------------------- W3
W3_N, W3_R = 20, 4
W3_S2 = tuple(torch.linspace(0.0, 0.5, W3_R).tolist() + torch.linspace(2.5, 4.0, W3_N - W3_R).tolist())
W3_NOISE = 0.1           # label noise std s
W3_RIDGE = 1e-3          # ridge λ relative to the mean diagonal of the feature Gram matrix (≈ least squares)
W3_DRAWS = 256           # labelled training sets per n and per learned W
W3_NS = (W3_R, 2 * W3_R, W3_N // 2, W3_N, 2 * W3_N)
W3_CHECKED = (2 * W3_R, W3_N // 2)       # r + 2 ≤ n ≤ N − 2: both closed forms finite
W3_TOL_THEORY = 0.25     # relative, measured mean vs closed form (40 seeds: std 2.7 %, max 6.3 %; see claim)
W3_MARGIN = 0.1          # learned ≤ 0.1 × raw where the theory ratio is ≤ 0.04

W3 = register(
    "W3", title="Learned features need far fewer labels when labels live in the low-variance subspace",
    source=[cite("wang2021", "abstract: reduced sample complexity on downstream tasks")],
    statement="Labels y = βᵀx + ξ with β in the r-dimensional low-augmentation-variance subspace (r = 4 ≪ N = 20): "
              "a closed-form linear probe on the features W x learned by DirectPred-style training (DirectSet, "
              "α = ½, η = 0.1, τ = 1, the W1 setting) reaches a given test error with ≈ r/N as many labelled "
              "samples as the same probe on the raw inputs x.",
    measures="exact test MSE E(ŷ − y)² = ‖Wᵀŵ − β‖² + s² (x ~ N(0, I_N) clean) of ridge regression (λ = 1e-3 × "
             "mean Gram diagonal, ≈ least squares) vs n ∈ {r, 2r, N/2, N, 2N}, averaged over 256 labelled sets × "
             "4 learned W; raw probe W = I",
    prediction="ridgeless Gaussian-design forms: learned s²(1 + r/(n − r − 1)) for n ≥ r + 2 (the probe only sees "
               "the r relevant coordinates); raw s² + ‖β‖²(1 − n/N) + s²n/(N − n − 1) for n ≤ N − 2, "
               "s²(1 + N/(n − N − 1)) for n ≥ N + 2; at n = 2r, N/2: learned ≈ 0.023, 0.018 vs raw ≈ 0.62, 0.52",
    tolerance=f"measured means within {W3_TOL_THEORY:.0%} of the closed forms at n ∈ {{2r, N/2}}: over 40 seeds "
              f"the relative error of the mean of 4×256 draws had std 2.7 % (learned, n = 2r; heavier tail: "
              f"inverse Wishart with n − r − 1 = 3) and ≤ 0.8 % (raw), max 6.3 %, so the bound is ≈ 9 σ; ridge "
              f"λ changes raw by < 1 % there. Ordering learned ≤ {W3_MARGIN} × raw at those n (theory ratio "
              f"0.038 / 0.035, measured max 0.040 over 40 seeds). Not asserted at n = r (the ridgeless learned "
              f"risk is infinite at its interpolation threshold) nor at n = N (raw's); recorded.",
    derivation="An open form, chosen here: linear regression labels, clean downstream inputs, a closed-form probe. "
               "With "
               "W ≈ Σ_i d_i u_i e_iᵀ (W1), Wx carries exactly x_S (r coordinates), so least squares on it is an "
               "r-dimensional problem: excess s² tr E[(X_SᵀX_S)^{-1}] = s² r/(n − r − 1). Raw: min-norm least "
               "squares on isotropic x — bias ‖β‖²(1 − n/N) + variance s² n/(N − n − 1) (n < N), "
               "s² N/(n − N − 1) (n > N). Samples to reach excess s²: 2r + 1 vs 2N + 1.")


def probe_test_mse(F: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
    """Exact test MSE of the ridge probe on features F x (F: (S, M, N)) from n labelled samples; (S, draws)."""
    S, M, N = F.shape
    X = torch.randn(S, W3_DRAWS, n, N, generator=generator, dtype=F64)
    b = torch.randn(S, W3_DRAWS, W3_R, generator=generator, dtype=F64)
    beta = torch.cat([unit(b), torch.zeros(S, W3_DRAWS, N - W3_R, dtype=F64)], -1)
    y = (X @ beta.unsqueeze(-1)).squeeze(-1) + W3_NOISE * torch.randn(S, W3_DRAWS, n, generator=generator, dtype=F64)
    Z = X @ F.transpose(-1, -2).unsqueeze(1)                                # (S, D, n, M)
    G = Z.transpose(-1, -2) @ Z
    lam = W3_RIDGE * G.diagonal(dim1=-2, dim2=-1).mean(-1)
    w = torch.linalg.solve(G + lam[..., None, None] * torch.eye(M, dtype=F64), Z.transpose(-1, -2) @ y.unsqueeze(-1))
    effective = (F.transpose(-1, -2).unsqueeze(1) @ w).squeeze(-1)          # the probe as a map of x
    return (effective - beta).pow(2).sum(-1) + W3_NOISE ** 2


@W3.check
@given(seed=st.integers(0, 2 ** 31 - 1))
def test_learned_features_reduce_sample_complexity(impl, record, seed):
    require(impl, "directset", "predictor:closed_form", "loss:euclidean", "weight_decay")
    st_ = Setting(W3_S2, 0.1, 1.0, 0.5)
    assert st_.r == W3_R and bool(st_.kept[:W3_R].all())
    traj, *_ = _w1_run(impl, st_, replicas=4, seed=seed)
    W = traj.W
    g = torch.Generator().manual_seed(seed + 1)
    raw = torch.eye(W3_N, dtype=F64).expand_as(W)
    for n in W3_NS:
        learned, direct = probe_test_mse(W, n, g), probe_test_mse(raw, n, g)
        th_l, th_r = ridgeless_probe_risk(n, W3_R, W3_R, W3_NOISE), ridgeless_probe_risk(n, W3_N, W3_R, W3_NOISE)
        lm, rm = learned.mean().item(), direct.mean().item()
        arms = (("learned-feature", lm, learned.median(), th_l), ("raw-input", rm, direct.median(), th_r))
        for name, m, med, th in arms:
            record(f"n={n:2d}: {name} probe test MSE (mean; median {med:.4g})", m,
                   th if math.isfinite(th) else "∞ (ridgeless interpolation threshold)")
        if n in W3_CHECKED:
            for name, m, th in (("learned", lm, th_l), ("raw", rm, th_r)):
                err = abs(m / th - 1)
                record.within(f"n={n:2d}: {name} probe vs closed form (rel err)", m, th,
                              error=err, tolerance=W3_TOL_THEORY,
                              message=f"n={n}: {name} probe test MSE {m:.4g} vs closed form {th:.4g}")
            ratio = lm / rm
            record.within(f"n={n:2d}: learned / raw test MSE", ratio, th_l / th_r, error=ratio, tolerance=W3_MARGIN,
                          message=f"n={n}: learned features do not beat raw inputs by the predicted margin "
                                  f"({lm:.4g} vs {rm:.4g}, ratio {ratio:.3g} > {W3_MARGIN})")
