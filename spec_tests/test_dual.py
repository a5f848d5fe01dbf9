"""Claims P1–P6: dual perspectives on SG and EMA (Ponce, Terver, Hebert & Arbel 2025, arXiv:2507.01028).

Model: encoder A (M×N), predictor B (M×M), views x, y with second moments
Σxx, Σxy, Σyy, and ``Ē(A, B) = ½E‖BAx − Ay‖² + λ(‖A‖² + ‖B‖²)/2``. It is exactly the
learned-predictor model of Tian et al. with α_p = 1, τ = 1 and weight decay λ on both
matrices, so the method under test is the adapter's ``"learned_predictor"`` (SG, and with
``stop_grad="none"`` plain gradient descent on Ē) or ``"byol"`` (EMA target).

The harness feeds the learner :meth:`ncspec.reference.dual.Moments.views`, a deterministic batch
of 2N pairs whose empirical second moments are the population's exactly, so the learner's
gradient *is* the expected-gradient field, for any joint covariance of (x, y) (general and
non-symmetric Σxy included). :class:`LearnerField` turns the learner into a vector field on
(A, B[, A_t]); the shared simulator runs its Euler dynamics. Closed forms come from
:mod:`ncspec.reference.theory.dual` (derivations in its docstring); :mod:`ncspec.reference.dual` supplies
moments, initial states, the Richardson finite-difference Jacobian (exact up to rounding for
these cubic fields: measured ≤ 3e-12 relative against ``torch.func``) and the balancedness.

Tolerances: "rounding" checks use 1e-9 relative (float64 over a few hundred operations:
measured ≤ 1e-12); Jacobian-based ones 1e-9–1e-6 as stated beside each assertion.
"""
from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from ncspec.conformance.claims import cite, register
from ncspec.conformance.run import coverage
from ncspec.reference import dual
from ncspec.reference.linear import LinearEncoder, simulate
from ncspec.reference.linear.model import random_orthogonal
from ncspec.reference.theory import dual as th
from ncspec.reference.vectors import unit

from .harness import require

# The SG limits (sg_limits) are cached and shared by several claims: under `ncspec check --jobs` (pytest-xdist,
# --dist loadgroup) this module's tests run in one worker (scheduling.SHARED_RUN_MODULES), so each run is
# computed once.
pytestmark = pytest.mark.xdist_group("dual")

LEARNED = ("learned_predictor", "predictor:learned", "weight_decay")
EMA = ("byol", "target:ema")
ROUND = 1e-9
SEEDS = st.integers(0, 2 ** 31 - 1)


# ----------------------------------------------------------------------------- the learner as a field
class LearnerField:
    """The adapter's learner as the vector field ``state ↦ −∇ loss`` on (A, B) or (A, B, A_t).

    ``kind``: ``"sg"`` (``learned_predictor``), ``"gd"`` (``learned_predictor`` with
    ``stop_grad="none"``) or ``"ema"`` (``byol``; the target field ``β(A − A_t)`` is the
    model's definition, what the learner's ``after_step`` discretises with ``m = 1 − β·lr``).
    A fresh learner is built at every call around an encoder the harness owns: for EMA the
    encoder starts at ``A_t`` (the target is copied at build, ``target_init=1``) and is then
    moved to ``A``. The predictor's velocity is the change of ``W_p`` under a unit gradient
    step of the learner's own predictor parameters (exact for a linear parametrisation).
    """

    def __init__(self, impl, kind: str, mom: dual.Moments, lam: float, *, beta: float = 1.0):
        self.impl, self.kind, self.lam, self.beta = impl, kind, lam, beta
        self.views = mom.views()

    def options(self) -> dict:
        opts = dict(weight_decay=self.lam, alpha_p=1.0)
        if self.kind == "ema":
            return dict(opts, target_init=1.0, momentum=0.5)
        return dict(opts, tau=1.0, stop_grad="none" if self.kind == "gd" else "target")

    def learner(self, A, B, A_t=None):
        enc = LinearEncoder((A if A_t is None else A_t).detach().clone())
        method = "byol" if self.kind == "ema" else "learned_predictor"
        learner = self.impl.build(method, enc, A.shape[-2], predictor_init=B.detach().clone(), **self.options())
        if A_t is not None:
            with torch.no_grad():
                enc.W.copy_(A)
        return enc, learner

    def __call__(self, state):
        """Velocities of states (..., S, ·, ·): leading batch dimensions (fd_jacobian's perturbed copies)
        become more replicas of one learner, each fed its own replica's views."""
        lead = state[0].shape[:-3]
        A, B, *rest = (s.reshape(-1, *s.shape[-2:]) for s in state)
        A_t = rest[0] if self.kind == "ema" else None
        enc, learner = self.learner(A, B, A_t)
        views = (v.expand(*lead, *v.shape[-3:]).reshape(-1, *v.shape[-2:]) if v.dim() >= 3 and lead else v
                 for v in self.views)
        velocity = self._velocity(enc, learner, A, A_t, *views)
        return tuple(u.reshape(*lead, -1, *u.shape[-2:]) for u in velocity)

    def _velocity(self, enc, learner, A, A_t, *views):
        loss = learner.loss(*views)
        params = [enc.W] + [p for p in learner.parameters() if p is not enc.W]
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        with torch.no_grad():
            P0 = learner.W_p.detach().clone()
            for p, g in zip(params[1:], grads[1:]):
                if g is not None:
                    p.sub_(g)
            dB = learner.W_p.detach() - P0
        dA = -grads[0]
        if self.kind == "ema":
            return dA, dB, self.beta * (A - A_t)
        return dA, dB


def moments_for(source: str, N: int, S: int, g: torch.Generator) -> dual.Moments:
    """``"wishart"``: a random joint covariance of (x, y) (non-symmetric Σxy); ``"views"``:
    x = Pu + σε, y = Qu + σε′ with random distortions P, Q (mix 0.5) of a Wishart signal."""
    if source == "wishart":
        return dual.random_moments(N, S=S, generator=g)
    return dual.gaussian_moments(N, S=S, sigma_x=0.5, mix=0.5, generator=g)


def per_replica(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(x.shape[0], -1)


# ----------------------------------------------------------------------------- P1
P1 = register(
    "P1", title="The SG and EMA fields are not gradient fields (of Ē or of any smooth function)",
    source=[cite("ponce2025", "abstract: SG and EMA optimise no smooth function")],
    statement="With E[xyᵀ] ≠ 0 the Jacobian of the SG field (and of the EMA field on (A, B, A_t)) is not symmetric, "
              "so it is locally the Euclidean gradient of no function; the Jacobian of −∇Ē (minus the Hessian) is "
              "symmetric; with E[xyᵀ] = 0 the SG field is a gradient. Metric-free: with a rotated second view the "
              "SG flow has a periodic orbit, which no gradient flow (any smooth function, any metric) can have.",
    measures="relative asymmetry ‖J − Jᵀ‖_F/‖J‖_F of the learner's field Jacobian (Richardson central differences) at "
             "random states, for SG, GD on Ē, SG with Σxy = 0, EMA; the learner's SG field on the circle "
             "{b = r₊, ‖a‖ = r₊} with Σxx = κI, Σxy = R(θ)ᵀ (M = 1, N = 2)",
    prediction="SG, EMA: asymmetry ≈ 0.3–0.5 (median over replicas ≥ 0.05, every replica ≥ 1e-6); GD and SG with "
               "Σxy = 0: 0 (≤ 1e-9); on the circle the field equals (ω J a, 0) with ω = −r₊ sin θ ≠ 0",
    tolerance="symmetric: 1e-9 (finite-difference rounding ≤ 3e-12 measured); asymmetric: every replica ≥ 1e-6 "
              "(the measured 1 % quantile over 2,100 random draws with N ≥ 2 is ≥ 0.04), median of 3–4 replicas ≥ "
              "0.05; periodic orbit: field residual 1e-10 relative (rounding)",
    derivation="The rotated-views periodic orbit is derived here. J_SG = −H_θθ − H_θT·Π (target T = A): the first term "
               "is symmetric, the second carries Σyx and "
               "vanishes iff Σyx = 0. Rotated views: ‖a‖ and b follow P6's planar system with q = cos θ while a turns "
               "at angular velocity −b sin θ, so the outer circle of radius r₊ = [cos θ + √(cos²θ − 4κλ)]/(2κ) is a "
               "periodic orbit of period 2π/(r₊ sin θ) (reference/theory/dual.py).")


@P1.check
@given(M=st.integers(1, 3), extra=st.integers(1, 2), lam=st.floats(0.01, 0.3),
       source=st.sampled_from(["wishart", "views"]), seed=SEEDS)
def test_sg_field_jacobian_is_not_symmetric(impl, record, M, extra, lam, source, seed):
    require(impl, *LEARNED)
    g = torch.Generator().manual_seed(seed)
    N, S = M + extra, 4
    mom = moments_for(source, N, S, g)
    state = dual.random_state(M, N, S=S, generator=g)
    asym = dual.asymmetry(dual.fd_jacobian(LearnerField(impl, "sg", mom, lam), state))
    record.within("SG: min relative asymmetry ‖J − Jᵀ‖/‖J‖", asym.min().item(), "≥ 1e-6",
                  error=max(1e-6 - asym.min().item(), 0.0), tolerance=0.0,
                  message=f"the SG Jacobian is symmetric (asymmetry {asym.min().item():.3g}): is the target "
                          f"branch differentiated (stop-grad missing)?")
    record.within("SG: median relative asymmetry ‖J − Jᵀ‖/‖J‖", asym.median().item(), "≈ 0.3 (≥ 0.05)",
                  error=0.05 / max(asym.median().item(), 1e-300), tolerance=1.0,
                  message=f"the SG Jacobian is nearly symmetric (median asymmetry {asym.median().item():.3g})")
    # the "whenever E[xyᵀ] ≠ 0": uncorrelated views make the SG field a gradient
    uncorrelated = dual.Moments(mom.xx, torch.zeros_like(mom.xy), mom.yy)
    sym = dual.asymmetry(dual.fd_jacobian(LearnerField(impl, "sg", uncorrelated, lam), state)).max().item()
    record.within("SG with Σxy = 0: max relative asymmetry", sym, 0.0, error=sym, tolerance=ROUND,
                  message=f"with uncorrelated views the SG field should be a gradient (asymmetry {sym:.3g})")


@P1.check
@given(M=st.integers(1, 3), extra=st.integers(1, 2), lam=st.floats(0.01, 0.3),
       source=st.sampled_from(["wishart", "views"]), seed=SEEDS)
def test_gradient_field_jacobian_is_symmetric(impl, record, M, extra, lam, source, seed):
    """The control: without SG the learner follows −∇Ē, whose Jacobian is −(Hessian)."""
    require(impl, *LEARNED, "ablation:no_stopgrad")
    g = torch.Generator().manual_seed(seed)
    N, S = M + extra, 4
    mom = moments_for(source, N, S, g)
    state = dual.random_state(M, N, S=S, generator=g)
    sym = dual.asymmetry(dual.fd_jacobian(LearnerField(impl, "gd", mom, lam), state)).max().item()
    record.within("GD on Ē: max relative asymmetry (Hessian)", sym, 0.0, error=sym, tolerance=ROUND,
                  message=f"the no-stop-grad field's Jacobian is not symmetric ({sym:.3g}): it is not −∇Ē " \
                          f"(is the stop-grad option ignored?)")


@P1.check
@given(M=st.integers(1, 3), extra=st.integers(1, 2), lam=st.floats(0.01, 0.3), beta=st.floats(0.2, 2.0),
       source=st.sampled_from(["wishart", "views"]), seed=SEEDS)
def test_ema_field_jacobian_is_not_symmetric(impl, record, M, extra, lam, beta, source, seed):
    require(impl, *LEARNED, *EMA)
    g = torch.Generator().manual_seed(seed)
    N, S = M + extra, 3
    mom = moments_for(source, N, S, g)
    A, B, A_t = dual.random_state(M, N, S=S, ema=True, generator=g)
    A_t = A_t + 0.3 * torch.randn(A_t.shape, generator=g, dtype=A_t.dtype) / math.sqrt(N)   # target lags
    asym = dual.asymmetry(dual.fd_jacobian(LearnerField(impl, "ema", mom, lam, beta=beta), (A, B, A_t)))
    symmetric = f"the EMA Jacobian is (nearly) symmetric: asymmetry {asym.tolist()}"
    record.within("EMA: min relative asymmetry", asym.min().item(), "≥ 1e-6",
                  error=max(1e-6 - asym.min().item(), 0.0), tolerance=0.0, message=symmetric)
    record.within("EMA: median relative asymmetry", asym.median().item(), "≈ 0.5 (≥ 0.05)",
                  error=0.05 / max(asym.median().item(), 1e-300), tolerance=1.0, message=symmetric)


@P1.check
@given(theta=st.floats(0.2, 1.2), frac=st.floats(0.2, 0.8), sigma=st.floats(0.0, 0.5), seed=SEEDS)
def test_rotated_views_give_a_periodic_orbit(impl, record, theta, frac, sigma, seed):
    """A closed orbit rules out every gradient flow, whatever the metric (P1, metric-free form)."""
    require(impl, *LEARNED)
    kappa = 1.0 + sigma ** 2
    lam = frac * th.critical_weight_decay(kappa, math.cos(theta))
    orbit = th.rotation_orbit(kappa, theta, lam)
    r, omega = orbit["radius"], orbit["omega"]
    eye = torch.eye(2, dtype=torch.float64)
    mom = dual.moments(kappa * eye, th.rotation(theta).T, kappa * eye)      # y = R(θ)u + σε′, x = u + σε
    g = torch.Generator().manual_seed(seed)
    phi = 2 * math.pi * torch.rand(6, generator=g, dtype=torch.float64)
    a = r * torch.stack([phi.cos(), phi.sin()], -1)                          # (6, 2) on the circle
    A, B = a.unsqueeze(-2), torch.full((6, 1, 1), r, dtype=torch.float64)
    dA, dB = LearnerField(impl, "sg", mom, lam)((A, B))
    J = torch.tensor([[0.0, -1.0], [1.0, 0.0]], dtype=torch.float64)
    pred_dA = omega * (a @ J.T).unsqueeze(-2)
    speed = pred_dA.norm(dim=(-1, -2))
    err = (((dA - pred_dA).norm(dim=(-1, -2)) + dB.norm(dim=(-1, -2))) / speed).max().item()
    record("angular velocity ω = −r₊ sin θ", omega, omega, error=0.0, tolerance=1.0)
    record.within("field on the circle vs (ωJa, 0), rel", err, 0.0, error=err, tolerance=1e-10,
                  message=f"the SG field on the circle ‖a‖ = b = r₊ is not the rotation (ωJa, 0) (rel err {err:.3g})")
    assert speed.min() > 0


# ----------------------------------------------------------------------------- P2
P2 = register(
    "P2", title="Gradient descent on Ē (no SG, no EMA) always collapses in the linear model",
    source=[cite("ponce2025", "abstract: minimising the original objective always leads to collapse")],
    statement="⟨∇_A Ē, A⟩ = E‖BAx − Ay‖² + λ‖A‖², so under gradient flow ‖A(t)‖ ≤ e^{−λt}‖A(0)‖, the only "
              "stationary point of Ē is (0, 0), and (A, B) → 0 from every start, including starts from which SG "
              "keeps a full-rank representation.",
    measures="‖A‖² per Euler step of the learner without stop-grad, final ‖A‖ and ‖B‖; the same start with SG",
    prediction="‖A_{k+1}‖² ≤ (1 − 2λh)‖A_k‖² + ‖ΔA_k‖² every step; ‖A_T‖, ‖B_T‖ ≤ 1e-2 of their initial norms "
               "with T = ln(1e3)/λ; SG from the same start keeps ‖A_T‖ ≥ 0.3‖A_0‖",
    tolerance="per-step inequality to 1e-12 relative (rounding); collapse thresholds from e^{−λT} = 1e-3 with a "
              "10× margin (B follows A: its forcing AΣyxAᵀ decays at 2λ)",
    derivation="The rate bound is derived here: tr(Aᵀ(Bᵀ E[r xᵀ] − E[r yᵀ])) = E[rᵀ(BAx − Ay)] = E‖r‖² (r = BAx − Ay); "
               "an Euler step gives "
               "‖A′‖² = (1 − 2λh)‖A‖² − 2hE‖r‖² + ‖ΔA‖² (reference/theory/dual.py).")


def well_posed_moments(N: int, S: int, g: torch.Generator, *, sigma: float, mix: float,
                       lo: float = 0.7, hi: float = 1.5, M: int | None = None,
                       lam: float | None = None) -> dual.Moments:
    """Views of a signal with eigenvalues in [lo, hi] (every mode above SG's survival threshold
    for the λ drawn below), one joint covariance per replica: x = Pu + σε, y = Qu + σε′ with
    ``P = Q = I`` (mix 0) or random distortions (:func:`ncspec.reference.dual.gaussian_moments`).

    With ``M < N`` (pass the weight decay ``lam``) only M eigenvalues are in [lo, hi] (the strong
    subspace, where the distortions act) and the other N − M are undistorted directions ``w`` with
    eigenvalue s in [0.05, 0.1], below SG's survival threshold whatever B does: Σxx, Σxy are
    block-diagonal in the signal's eigenbasis, so the encoder's column ``a = Aw`` obeys
    ``ȧ = (sBᵀ − (s + σ²)BᵀB − λ)a`` and ``d‖a‖²/dt = 2(s aᵀBa − (s + σ²)‖Ba‖² − λ‖a‖²)
    ≤ 2(s²/(4(s + σ²)) − λ)‖a‖² < 0`` (maximise st − (s + σ²)t² over t = ‖Ba‖/‖a‖). Every run
    therefore ends in the strong subspace, on the M = N problem there. A distortion that mixes
    a weaker direction into the strong ones has no such bound, and there the SG flow need not
    settle at all: at an equilibrium Σxx⁻¹Σxy·Aᵀ = Aᵀ·AAᵀB⁻¹ + O(λ), so the row space of A is
    nearly an invariant subspace of Σxx⁻¹Σxy; when its top M eigenvalues split a complex pair
    none is near the strong subspace and the row space keeps turning (P1's rotated views are the
    M = 1, N = 2 case). Measured for M = 2–4, N = M + 1, mix 0.3 with distortions over all N
    directions and weak eigenvalues 0.1–0.3: 15–25 % of runs still moving after 6,000 steps, on
    periodic orbits (none settled in 20,000 steps from 16 other starts), 46 of the 72 runs with a
    split pair against 2 of 120 without; with this construction 3 of 576 runs (12 corners of M, λ,
    σ × 48), which the claim's 2 of 4 absorbs."""
    s = torch.empty(S, N, dtype=torch.float64).uniform_(lo, hi, generator=g)
    U = random_orthogonal(S, N, generator=g)
    if M is None or M == N:
        return dual.gaussian_moments(N, signal=(U * s.unsqueeze(-2)) @ U.transpose(-1, -2), sigma_x=sigma,
                                     mix=mix, generator=g)
    if lam is None:
        raise TypeError("well_posed_moments with M < N needs the weight decay lam (the weak directions are drawn "
                        "below SG's survival threshold for it)")
    s[:, M:] = torch.empty(S, N - M, dtype=torch.float64).uniform_(0.05, 0.1, generator=g)
    weak = s[:, M:]
    top = weak.max().item()             # q²/(4p) grows with s: the largest weak direction is the binding one
    assert th.critical_weight_decay(top + sigma ** 2, top) < lam, \
        f"test design: a weak direction (s = {top:.3g}) is above SG's survival threshold for λ = {lam}"
    parts = (dual.gaussian_moments(M, signal=torch.diag_embed(s[:, :M]), sigma_x=sigma, mix=mix, generator=g),
             dual.gaussian_moments(N - M, signal=torch.diag_embed(weak), sigma_x=sigma))    # undistorted
    blocks = []
    for name in ("xx", "xy", "yy"):
        m = torch.zeros(S, N, N, dtype=torch.float64)
        m[:, :M, :M], m[:, M:, M:] = getattr(parts[0], name), getattr(parts[1], name)
        blocks.append(U @ m @ U.transpose(-1, -2))
    return dual.moments(*blocks)


def balanced_start(M: int, N: int, S: int, g: torch.Generator, lo: float = 0.6, hi: float = 1.4):
    """Full-rank ``A`` (singular values in [lo, hi]) and ``B = (AAᵀ)^{1/2}`` (balanced, positive definite)."""
    sv = torch.empty(S, M, dtype=torch.float64).uniform_(lo, hi, generator=g)
    A = (random_orthogonal(S, M, generator=g) * sv.unsqueeze(-2)) @ random_orthogonal(S, N, generator=g)[..., :M, :]
    lam, U = torch.linalg.eigh(A @ A.transpose(-1, -2))
    return A, (U * lam.clamp_min(0).sqrt().unsqueeze(-2)) @ U.transpose(-1, -2)


def run_learner(impl, kind, mom, A, B, *, lam, lr, steps, record_every=None, beta=1.0):
    """The shared simulator on the learner (Euler steps; EMA after_step with m = 1 − β·lr)."""
    field = LearnerField(impl, kind, mom, lam, beta=beta)
    enc = LinearEncoder(A.clone())
    opts = field.options()
    if kind == "ema":
        opts["momentum"] = 1.0 - beta * lr
    learner = impl.build("byol" if kind == "ema" else "learned_predictor", enc, A.shape[-2],
                         predictor_init=B.clone(), **opts)
    x, y = field.views
    return simulate(learner, enc, lambda k: (x, y), lr=lr, steps=steps, sigma=0.0,
                    record_every=record_every or steps,
                    probe=lambda l, e: {"A": e.W.detach(), "B": l.W_p.detach()})


@P2.check
@given(M=st.integers(1, 3), extra=st.integers(0, 2), lam=st.floats(0.08, 0.15), mix=st.sampled_from([0.0, 0.3]),
       seed=SEEDS)
def test_gradient_descent_on_E_collapses(impl, record, M, extra, lam, mix, seed):
    require(impl, *LEARNED, "ablation:no_stopgrad")
    g = torch.Generator().manual_seed(seed)
    N, S = M + extra, 4
    mix = mix if N >= 2 else 0.0                  # a 1×1 distortion can flip the sign of Σxy
    mom = well_posed_moments(N, S, g, sigma=0.3, mix=mix, lo=1.0, hi=2.0)
    A0, B0 = balanced_start(M, N, S, g)
    lr = 0.1
    T = math.log(1e3) / lam
    steps = int(math.ceil(T / lr))
    traj = run_learner(impl, "gd", mom, A0, B0, lam=lam, lr=lr, steps=steps, record_every=1)
    A, B = traj.probes["A"], traj.probes["B"]
    sq = A.pow(2).sum((-1, -2))                                            # (K, S)
    dA = (A[1:] - A[:-1]).pow(2).sum((-1, -2))
    live = sq[:-1] > 1e-200                                                # ‖A‖² may underflow to 0
    excess = ((sq[1:] - (1 - 2 * lam * lr) * sq[:-1] - dA) / sq[:-1].clamp_min(1e-300))[live].max().item()
    record.within("max (‖A′‖² − (1−2λh)‖A‖² − ‖ΔA‖²)/‖A‖²", excess, "≤ 0", error=max(excess, 0.0), tolerance=1e-12,
                  message=f"‖A‖² grew faster than the gradient-descent bound allows ({excess:.3g}): the update is "
                          f"not gradient descent on Ē")
    shrink_A = (sq[-1].sqrt() / sq[0].sqrt()).max().item()
    shrink_B = (B[-1].norm(dim=(-1, -2)) / B[0].norm(dim=(-1, -2))).max().item()
    kept_on = f"gradient descent on Ē did not collapse: ‖A_T‖/‖A_0‖ = {shrink_A:.3g}, ‖B_T‖/‖B_0‖ = {shrink_B:.3g}"
    record.within("‖A_T‖/‖A_0‖ (e^{−λT} = 1e-3)", shrink_A, 0.0, error=shrink_A, tolerance=1e-2, message=kept_on)
    record.within("‖B_T‖/‖B_0‖", shrink_B, 0.0, error=shrink_B, tolerance=1e-2, message=kept_on)
    # the start is not trivially collapsing: SG keeps the representation
    sg = run_learner(impl, "sg", mom, A0, B0, lam=lam, lr=lr, steps=steps // 2)
    kept = (sg.W.norm(dim=(-1, -2)) / A0.norm(dim=(-1, -2))).max().item()
    record.within("SG from the same starts: max ‖A_T‖/‖A_0‖", kept, "≥ 0.3", error=0.3 / max(kept, 1e-300),
                  tolerance=1.0, message=f"test design: SG also collapsed from every start ({kept:.3g})")


# ----------------------------------------------------------------------------- P3
P3 = register(
    "P3", title="Balancedness BᵀB − AAᵀ decays as e^{−2λt} under SG and EMA, not under gradient descent",
    source=[cite("ponce2025"), cite("tian2021", "balancing invariant with α_p = 1, cf. T1")],
    statement="K = BᵀB − AAᵀ obeys K̇ = −2λK for the SG field and for the EMA field (any target A_t); under "
              "gradient descent on Ē, K̇ + 2λK = −(E[r(Ay)ᵀ] + E[(Ay)rᵀ]) ≠ 0.",
    measures="K̇ = ḂᵀB + BᵀḂ − ȦAᵀ − AȦᵀ from the learner's field at random states (general moments); K along the "
             "simulator's Euler run; the GD defect",
    prediction="decay rate −⟨K̇, K⟩/(2‖K‖²) = λ and K̇ = −2λK exactly; K(T) = e^{−2λT}K(0) within Euler's exact "
               "second-order terms; GD: K̇ + 2λK equal to the derived defect, which is not small",
    tolerance="instantaneous identities 1e-9 relative (rounding); along the run, |K(T) − e^{−2λT}K(0)| ≤ "
              "Σ‖ΔBᵀΔB − ΔAΔAᵀ‖ + |(1−2λh)^n − e^{−2λT}|‖K(0)‖ (+1e-12), a bound from the exact Euler identity "
              "K′ = (1−2λh)K + ΔBᵀΔB − ΔAΔAᵀ; GD: defect identity 1e-9, defect ≥ 1e-4·‖2λK‖ (measured ≥ 0.018)",
    derivation="Derived here: BᵀḂ = −BᵀE[rxᵀ]Aᵀ − λBᵀB and ȦAᵀ = −BᵀE[rxᵀ]Aᵀ − λAAᵀ for any target, so the E-terms "
               "cancel in "
               "K̇; GD's extra Ȧ term E[r yᵀ] contributes −E[r(Ay)ᵀ] − E[(Ay)rᵀ] (reference/theory/dual.py).")


def _rate_check(record, label, state, vel, lam):
    K = dual.balancedness(state[0], state[1])
    Kdot = dual.balancedness_rate(state, vel)
    err = ((Kdot + 2 * lam * K).norm(dim=(-1, -2)) / (2 * lam * K.norm(dim=(-1, -2)))).max().item()
    rate = (-(Kdot * K).sum((-1, -2)) / (2 * K.pow(2).sum((-1, -2)))) / lam
    worst = (rate - 1).abs().max().item()
    record(f"{label}: decay rate / λ (instantaneous)", rate[(rate - 1).abs().argmax()].item(), 1.0, error=worst,
           tolerance=ROUND)
    record.within(f"{label}: ‖K̇ + 2λK‖/‖2λK‖", err, 0.0, error=err, tolerance=ROUND,
                  message=f"{label}: d/dt(BᵀB − AAᵀ) ≠ −2λ(BᵀB − AAᵀ) (rel err {err:.3g}, rate/λ {rate.tolist()})")


def _euler_law(record, label, traj, lam, lr):
    A, B = traj.probes["A"], traj.probes["B"]
    K = dual.balancedness(A, B)
    n = int(traj.steps[-1])
    second = (dual.balancedness(A[1:] - A[:-1], B[1:] - B[:-1])).norm(dim=(-1, -2)).sum(0)
    law = math.exp(-2 * lam * n * lr) * K[0]
    bound = second + abs((1 - 2 * lam * lr) ** n - math.exp(-2 * lam * n * lr)) * K[0].norm(dim=(-1, -2))
    dev = (K[-1] - law).norm(dim=(-1, -2))
    excess = (dev - bound * (1 + 1e-9) - 1e-12).max().item()
    fitted = (-torch.log(K[-1].norm(dim=(-1, -2)) / K[0].norm(dim=(-1, -2))) / (2 * n * lr) / lam)
    record(f"{label}: fitted decay rate of ‖K‖ / λ over the run", fitted.mean().item(), 1.0,
           error=(fitted - 1).abs().max().item(), tolerance=None)
    record.within(f"{label}: ‖K(T) − e^{{−2λT}}K(0)‖ beyond Euler's bound", excess, "≤ 0", error=max(excess, 0.0),
                  tolerance=0.0,
                  message=f"{label}: K(T) departs from e^(−2λT)K(0) by more than Euler's second-order terms")


@P3.check
@given(M=st.integers(1, 3), extra=st.integers(0, 2), lam=st.floats(0.02, 0.3), beta=st.floats(0.5, 2.0),
       source=st.sampled_from(["wishart", "views"]), seed=SEEDS)
def test_balancedness_decays_at_rate_two_lambda(impl, record, M, extra, lam, beta, source, seed):
    require(impl, *LEARNED, *EMA)
    g = torch.Generator().manual_seed(seed)
    N, S = M + extra, 4
    mom = moments_for(source, N, S, g)
    A, B, A_t = dual.random_state(M, N, S=S, ema=True, generator=g)
    A_t = A_t + 0.3 * torch.randn(A_t.shape, generator=g, dtype=A_t.dtype) / math.sqrt(N)
    _rate_check(record, "SG", (A, B), LearnerField(impl, "sg", mom, lam)((A, B)), lam)
    _rate_check(record, "EMA", (A, B, A_t), LearnerField(impl, "ema", mom, lam, beta=beta)((A, B, A_t)), lam)
    lr, steps = 0.01, 200
    for kind in ("sg", "ema"):
        traj = run_learner(impl, kind, mom, A, B, lam=lam, lr=lr, steps=steps, record_every=1, beta=beta)
        _euler_law(record, kind.upper(), traj, lam, lr)


@P3.check
@given(M=st.integers(1, 3), extra=st.integers(0, 2), lam=st.floats(0.02, 0.3),
       source=st.sampled_from(["wishart", "views"]), seed=SEEDS)
def test_gradient_descent_breaks_balancedness(impl, record, M, extra, lam, source, seed):
    require(impl, *LEARNED, "ablation:no_stopgrad")
    g = torch.Generator().manual_seed(seed)
    N, S = M + extra, 4
    mom = moments_for(source, N, S, g)
    A, B = dual.random_state(M, N, S=S, generator=g)
    K = dual.balancedness(A, B)
    Kdot = dual.balancedness_rate((A, B), LearnerField(impl, "gd", mom, lam)((A, B)))
    defect = th.gd_balance_defect(A, B, mom.xy, mom.yy)
    err = ((Kdot + 2 * lam * K - defect).norm(dim=(-1, -2)) / defect.norm(dim=(-1, -2))).max().item()
    size = (defect.norm(dim=(-1, -2)) / (2 * lam * K.norm(dim=(-1, -2)))).min().item()
    record.within("GD: ‖defect‖/‖2λK‖ (min over replicas)", size, "> 0", error=1e-4 / max(size, 1e-300),
                  tolerance=1.0, message=f"test design: the GD defect is negligible here ({size:.3g})")
    record.within("GD: ‖K̇ + 2λK − defect‖/‖defect‖", err, 0.0, error=err, tolerance=ROUND,
                  message=f"the no-stop-grad field's K̇ is not −2λK − (E[r(Ay)ᵀ] + E[(Ay)rᵀ]) (rel err {err:.3g}): "
                          f"is it gradient descent on Ē?")


# ----------------------------------------------------------------------------- P4, P5: SG equilibria
P4 = register(
    "P4", title="Full-rank SG equilibria lie on the variety (ΣxxS + λI)(SΣxx + λI) = ΣxySΣyx and are not "
                "stationary points of Ē",
    source=[cite("ponce2025", "abstract: equilibria form algebraic varieties; Fig. 1")],
    statement="At an SG equilibrium B = AΣyxAᵀ(AΣxxAᵀ + λI)⁻¹, BᵀB = AAᵀ and A·R(S) = 0 with S = AᵀA and "
              "R = ΣxySΣyx − (ΣxxS + λI)(SΣxx + λI); for A square and invertible this is the paper's R = 0 (for M < N "
              "S is singular and only A·R = 0 holds). At a non-zero SG limit ∇_B Ē = 0 but ‖∇_A Ē‖ ≥ λ‖A‖.",
    measures="limits of the learner's SG run (shared simulator, lr 0.1, 500 steps or more, see tolerance; then "
             "Gauss–Newton on the learner's own field from ‖F‖ ≤ 1e-4 to ‖F‖ ≤ 1e-12) from balanced full-rank starts, "
             "per-replica views x = Pu + σε, y = Qu + σε′ (signal eigenvalues 0.7–1.5; σ 0.2–0.4; P = Q = I or random "
             "distortions, mix 0.3; for M < N the distortions act on the M strong directions and the other N − M, "
             "eigenvalues 0.05–0.1, are undistorted and below SG's survival threshold); ∇Ē in closed form "
             "(ncspec.reference.dual.grad_objective) there",
    prediction="‖R‖ (M = N) and ‖A R‖/‖A‖ relative to ‖ΣxySΣyx‖ + ‖(ΣxxS+λ)(SΣxx+λ)‖: 0; B as predicted; "
               "‖∇_B Ē‖ = 0, ‖∇_A Ē‖/(λ‖A‖) ≥ 1",
    tolerance="1e-8 relative at the polished limits (measured ≤ 5e-15 over 40 random draws; the residual is "
              "O(‖F‖/|μ_min|), |μ_min| ≥ 0.02); at least 2 of 4 runs per draw must settle on a full-rank limit "
              "(measured: 2 or more in 230 of 230 random draws, 4 of 4 in 197); the run length is derived: after "
              "500 steps of 0.1, while fewer than 2 runs have settled, the moving ones whose Gauss–Newton polish is a "
              "stable equilibrium are continued for ln(10‖F‖/1e-4)/|ln|1 + 0.1μ|| steps, μ the slowest stable "
              "eigenvalue of the model's Jacobian there, the others for as many steps as they have run; at most "
              "15,000 in all",
    derivation="The algebraic form of the equilibria is derived here: Ḃ = 0 ⇒ B = D(C+λ)⁻¹ (C = AΣxxAᵀ, D = AΣyxAᵀ) ⇒ "
               "BC − D = −λB; Aᵀ·(Ȧ = 0) ⇒ BᵀB = AAᵀ; then "
               "A(SΣxx + λ) = BᵀAΣyx and (C+λ)⁻¹A = A(ΣxxS+λ)⁻¹ give S·R = 0 ⇔ A·R = 0; A invertible ⇒ R = 0. "
               "∇_A Ē = −(SG Ȧ) − E[r yᵀ] and ⟨∇_A Ē, A⟩ = E‖r‖² + λ‖A‖² (reference/theory/dual.py).")

P5 = register(
    "P5", title="At SG equilibria the Jacobian has one zero eigenvalue per dimension of the O(M) orbit; the others "
                "are stable",
    source=[cite("ponce2025", "abstract: equilibria generally asymptotically stable")],
    statement="(A, B) ↦ (QA, QBQᵀ) (Q ∈ O(M)) preserves Ē and the fields; its orbit through an equilibrium with rank A "
              "= r has dimension r(2M − r − 1)/2 (M(M−1)/2 at full rank), and the SG Jacobian there has exactly that "
              "many zero eigenvalues; −2λ has multiplicity ≥ M(M+1)/2 (the balancedness); all other eigenvalues have "
              "negative real part at the limits of SG runs. The stronger 'real part ≤ −λ' is not implied (P6's "
              "exact spectrum violates it for λ > 2q²/(9p)); it is recorded, not asserted.",
    measures="eigenvalues of the learner's SG Jacobian (Richardson central differences) at P4's full-rank limits",
    prediction="#{|μ| ≤ 1e-6} = M(M−1)/2; #{|μ + 2λ| ≤ 1e-6} ≥ M(M+1)/2; max Re μ over the rest < 0",
    tolerance="eigenvalue zero-threshold 1e-6 (limits polished to ‖F‖ ≤ 1e-12, finite differences ≤ 1e-11; the "
              "smallest non-zero |μ| measured ≥ 0.03); stability: max Re ≤ −1e-4",
    derivation="The orbit dimension, the −2λ block and the scalar counter-example to '≤ −λ' are derived here: tangent "
               "space of the orbit {(ΩA, ΩB − BΩ)}: dim so(M) − dim{Ω : ΩA = 0, [Ω, B] = 0} and at an "
               "equilibrium B vanishes on range(A)^⊥, so the stabiliser is so(M − r); ∇K·J = −2λ∇K at F = 0 "
               "(reference/theory/dual.py).")


# The run length (P4's tolerance): FIRST steps settle 2 of 4 runs in most draws (measured over 60 random draws: 2
# full-rank runs settled by 250 steps in 34, by 500 in 43, by 1,250 in all); the rest are continued by
# _settling_steps. BUDGET bounds the total: the slowest draw of 230 needed 2,463 steps, and a run in the linear regime
# with μ = −0.01 (half the slowest rate measured at the limits, −0.022) goes from ‖F‖ = 0.1 to SETTLED/10 in
# ln(1e4)/|ln(1 − 0.001)| ≈ 9,200 steps.
# Euler at LR can be unstable where the flow is not: a thorough draw (M = N = 2, λ = 0.031, σ = 0.22, mix 0.3,
# Σxx eigenvalues 0.25 and 3.2) had a run settle near ‖A‖ = 3.1, where LR·|μ| > 2, oscillate from step 100 and
# overflow at step 305. The flow's equilibria do not depend on the step, so a run that overflows is run again
# from its start with the step halved (FIRST and BUDGET scaled to the same time), at most HALVINGS times.
LR, SETTLED, FIRST, BUDGET, HALVINGS = 0.1, 1e-4, 500, 15000, 2


@coverage.cache(maxsize=16)     # a hit credits the reading test with the run's builds and steps
def sg_limits(impl, M, extra, lam, sigma, mix, seed):
    """P4/P5: SG limits of the learner from balanced full-rank starts.

    The shared simulator runs the learner's SG dynamics (Euler steps of ``LR``) for ``FIRST`` steps,
    then, while fewer than 2 runs have settled on a full-rank limit, for as many more steps as
    :func:`_settling_steps` estimates, at most ``BUDGET`` in all. Runs that have settled
    (‖F‖ ≤ ``SETTLED``) are polished by Gauss–Newton on the learner's own field
    (:func:`ncspec.reference.dual.refine_equilibrium`, minimal-norm steps) to ‖F‖ ≤ 1e-13, i.e. to the
    equilibrium the run converges to (quadratic convergence; the run's remaining distance is
    ‖F‖/|μ| ≲ 1e-2 along the slowest stable direction). Returns the moments, the limits, the runs'
    speed before polishing, a mask of full-rank polished equilibria and the number of steps run.
    """
    g = torch.Generator().manual_seed(seed)
    N, S = M + extra, 4
    mom = well_posed_moments(N, S, g, sigma=sigma, mix=mix, M=M, lam=lam)
    A0, B0 = balanced_start(M, N, S, g)
    field = LearnerField(impl, "sg", mom, lam)
    for halving in range(HALVINGS + 1):
        lr = LR / 2 ** halving
        try:
            A, B, speed, steps = _settle(impl, field, mom, lam, A0, B0, lr)
            break
        except FloatingPointError:          # Euler overflowed (see HALVINGS); the last try re-raises
            if halving == HALVINGS:
                raise
    (A, B), polished = dual.refine_equilibrium(field, (A, B))
    full = _full_rank(A) & (speed <= SETTLED) & (polished <= 1e-12)
    return mom, A, B, speed, full, steps, lr


def in_steps_of(lr: float, n: int) -> int:
    """``n`` Euler steps of ``LR`` (FIRST, BUDGET) as steps of ``lr``: the same time."""
    return round(n * LR / lr)


def _settle(impl, field, mom, lam, A, B, lr):
    """Euler steps of ``lr`` from (A, B) until 2 runs settle (sg_limits)."""
    steps, more, budget = 0, in_steps_of(lr, FIRST), in_steps_of(lr, BUDGET)
    while more:
        traj = run_learner(impl, "sg", mom, A, B, lam=lam, lr=lr, steps=more)
        A, B, steps = traj.probes["A"][-1], traj.probes["B"][-1], steps + more
        speed = per_replica(dual.flatten(field((A, B)), 1)).norm(dim=-1)
        more = min(_settling_steps(mom, lam, A, B, speed, steps, lr), budget - steps)
    return A, B, speed, steps


def unsettled(full, speed, steps: int, lr: float) -> str:
    """The failure message when fewer than 2 of the 4 runs settled on a full-rank limit."""
    moving = int((speed > SETTLED).sum())
    low = len(speed) - moving - int(full.sum())
    budget = in_steps_of(lr, BUDGET)
    why = f"the budget of {budget} steps is spent" if steps >= budget else \
        "the model's linearisation at their states puts them on limits of lower rank"
    return (f"SG reached {int(full.sum())} full-rank equilibria of 4 runs (2 needed) in {steps} Euler steps of {lr:g}: "
            f"{low} settled on limits of lower rank (or that do not polish to ‖F‖ ≤ 1e-12), {moving} still moving"
            + (f" ({why})" if moving else "") + f"; speeds ‖F‖ {[f'{v:.2g}' for v in speed.tolist()]}, settled "
            f"means ≤ {SETTLED}")


def _full_rank(A: torch.Tensor) -> torch.Tensor:
    sv = torch.linalg.svdvals(A)
    return sv[..., -1] > 1e-3 * sv[..., 0]


def _settling_steps(mom, lam, A, B, speed, steps: int, lr: float = LR) -> int:
    """More Euler steps for the runs still moving (speed > ``SETTLED``) after ``steps``; 0 once 2 runs have
    settled on a full-rank limit (the claim needs 2; waiting for more only costs time).

    A run is in the linear regime of its limit when the Gauss–Newton polish of its state under the model's SG
    field (:func:`ncspec.reference.dual.field`, closed form: cheaper than the learner's, and the same for a
    conforming learner; the loop measures the learner's own speed after the steps) is an equilibrium with no
    unstable direction (eigenvalues of the Jacobian there, the O(M) orbit's zero eigenvalues excluded): its speed then
    shrinks by |1 + lr·μ| per step along the slowest stable eigenvalue μ, so it needs
    ln(10·speed/``SETTLED``)/|ln|1 + lr·μ|| steps to reach a tenth of ``SETTLED`` — or it is of no use,
    when that limit is not of full rank. A run whose polish is a saddle or not an equilibrium is still
    in its transient: it runs as long again (``steps`` more) and is looked at again. Returns the steps
    that bring the settled full-rank runs to 2 (at least 100), 0 when no run can.
    """
    moving = speed > SETTLED
    missing = 2 - int((~moving & _full_rank(A)).sum())
    if missing <= 0:
        return 0
    model = dual.field("sg", mom, lam)
    limit, F = dual.refine_equilibrium(model, (A, B))
    ev = torch.linalg.eigvals(dual.fd_jacobian(model, limit))
    near = (F <= 1e-12) & (ev.real <= 1e-6).all(-1)                    # a stable limit, reached along J's modes
    step = (1 + lr * ev).abs().log().abs()                              # per-step log-contraction of each mode
    step = torch.where(ev.real < -1e-6, step, torch.full_like(step, math.inf)).amin(-1)
    linear = torch.where(_full_rank(limit[0]), torch.log(10 * speed / SETTLED) / step, torch.full_like(speed, math.inf))
    need = torch.where(near, linear, torch.full_like(speed, float(steps)))[moving].sort().values
    if need.numel() < missing or not math.isfinite(need[missing - 1].item()):
        return 0
    return max(int(math.ceil(need[missing - 1].item())), 100)


EQUILIBRIA = dict(M=st.integers(2, 4), extra=st.sampled_from([0, 0, 1]), lam=st.floats(0.03, 0.06),
                  sigma=st.floats(0.2, 0.4), mix=st.sampled_from([0.0, 0.3]), seed=SEEDS)


@P4.check
@given(**EQUILIBRIA)
def test_sg_equilibria_lie_on_the_variety(impl, record, M, extra, lam, sigma, mix, seed):
    require(impl, *LEARNED)
    mom, A, B, speed, full, steps, lr = sg_limits(impl, M, extra, lam, sigma, mix, seed)
    record("SG limits reaching a full-rank equilibrium", full.float().mean().item(), "≥ 0.5",
           error=0.5 / max(full.float().mean().item(), 1e-300), tolerance=1.0)
    record("Euler steps run (budget)", steps, f"≤ {in_steps_of(lr, BUDGET)} steps of {lr:g}", error=None,
           tolerance=None)
    settled = int(full.sum())
    record.within("SG limits reaching a full-rank equilibrium (count)", settled, "≥ 2", error=max(2 - settled, 0),
                  tolerance=0, message=unsettled(full, speed, steps, lr) + ": the learner's SG dynamics do not settle")
    A, B = A[full], B[full]
    xx, xy, yy = mom.xx[full], mom.xy[full], mom.yy[full]
    scale = th.residual_scale(A, xx, xy, lam)
    proj = (th.projected_residual(A, xx, xy, lam).norm(dim=(-1, -2)) / (A.norm(dim=(-1, -2)) * scale)).max().item()
    record.within("‖A R‖ / (‖A‖ scale) at SG limits", proj, 0.0, error=proj, tolerance=1e-8,
                  message=f"the SG limit is not on the variety A·R(AᵀA) = 0 (rel {proj:.3g}): wrong λ term?")
    R = (th.equilibrium_residual(A, xx, xy, lam).norm(dim=(-1, -2)) / scale).max().item()
    if extra == 0:
        record.within("‖(ΣxxS+λI)(SΣxx+λI) − ΣxySΣyx‖ / scale (M = N)", R, 0.0, error=R, tolerance=1e-8,
                      message=f"full-rank SG limit violates (ΣxxS+λI)(SΣxx+λI) = ΣxySΣyx (rel {R:.3g})")
    else:
        record("M < N: R at the limit (not zero: S singular)", R, "≠ 0", error=None, tolerance=None)
    Bp = th.sg_predictor(A, xx, xy, lam)
    errB = ((B - Bp).norm(dim=(-1, -2)) / B.norm(dim=(-1, -2))).max().item()
    record.within("‖B − AΣyxAᵀ(AΣxxAᵀ+λI)⁻¹‖/‖B‖", errB, 0.0, error=errB, tolerance=1e-8,
                  message=f"the SG limit's predictor is not AΣyxAᵀ(AΣxxAᵀ+λI)⁻¹ (rel {errB:.3g})")
    bal = (dual.balancedness(A, B).norm(dim=(-1, -2)) / (A @ A.transpose(-1, -2)).norm(dim=(-1, -2))).max().item()
    record.within("‖BᵀB − AAᵀ‖/‖AAᵀ‖ at the limit", bal, 0.0, error=bal, tolerance=1e-8,
                  message=f"SG limit not balanced (rel {bal:.3g})")
    # the limit is stationary in B but not for Ē
    mom_f = dual.Moments(xx, xy, yy)
    gA, gB = dual.grad_objective(A, B, mom_f, lam)
    gB_rel = (gB.norm(dim=(-1, -2)) / (lam * B.norm(dim=(-1, -2)))).max().item()
    ratio = (gA.norm(dim=(-1, -2)) / (lam * A.norm(dim=(-1, -2)))).min().item()
    record.within("‖∇_B Ē‖/(λ‖B‖) at the SG limit", gB_rel, 0.0, error=gB_rel, tolerance=1e-8,
                  message=f"the SG limit is not stationary in B (‖∇_B Ē‖/λ‖B‖ = {gB_rel:.3g})")
    record.within("‖∇_A Ē‖/(λ‖A‖) at the SG limit (min): shortfall below 1 − 1e-9", ratio, "≥ 1",
                  error=max((1 - 1e-9) - ratio, 0.0), tolerance=0.0,
                  message=f"‖∇_A Ē‖ < λ‖A‖ at the SG limit ({ratio:.3g}): contradicts ⟨∇_A Ē, A⟩ ≥ λ‖A‖²")


@P5.check
@given(**EQUILIBRIA)
def test_equilibrium_spectrum_matches_the_orbit(impl, record, M, extra, lam, sigma, mix, seed):
    require(impl, *LEARNED)
    mom, A, B, speed, full, steps, lr = sg_limits(impl, M, extra, lam, sigma, mix, seed)
    assert full.sum() >= 2, unsettled(full, speed, steps, lr)
    A, B = A[full], B[full]
    mom_f = dual.Moments(mom.xx[full], mom.xy[full], mom.yy[full])
    ev = torch.linalg.eigvals(dual.fd_jacobian(LearnerField(impl, "sg", mom_f, lam), (A, B)))
    zeros = (ev.abs() <= 1e-6).sum(-1)
    twos = ((ev + 2 * lam).abs() <= 1e-6).sum(-1)
    rest = torch.where(ev.abs() <= 1e-6, torch.full_like(ev.real, -math.inf), ev.real).amax(-1)
    orbit, bal = th.orbit_dimension(M, M), th.balance_multiplicity(M)
    nonzero = torch.where(ev.abs() <= 1e-6, torch.full_like(ev.real, math.inf), ev.abs()).amin(-1)
    record("smallest non-zero |μ|", nonzero.min().item(), "≫ 1e-6", error=None, tolerance=None)
    # integer counts: an error ≤ 0.5 is equality (zeros) and ≥ M(M+1)/2 (twos)
    record.within("zero eigenvalues (min, max over limits)", zeros.min().item(), orbit,
                  error=(zeros - orbit).abs().max().item(), tolerance=0.5,
                  message=f"{zeros.tolist()} zero eigenvalues, the O({M}) orbit has dimension {orbit}")
    record.within("eigenvalue −2λ multiplicity (min)", twos.min().item(), f"≥ {bal}",
                  error=max(bal - twos.min().item(), 0), tolerance=0.5,
                  message=f"eigenvalue −2λ has multiplicity {twos.tolist()} < M(M+1)/2 = {bal}")
    record("max Re μ / λ over the non-orbit eigenvalues (the stronger statement: ≤ −1)", (rest / lam).max().item(),
           "< 0")
    record.within("max Re μ over the non-orbit eigenvalues", rest.max().item(), "≤ −1e-4",
                  error=max(rest.max().item() + 1e-4, 0.0), tolerance=0.0,
                  message=f"an eigenvalue off the orbit is not stable: max Re = {rest.max().item():.3g}")


# ----------------------------------------------------------------------------- P6
P6 = register(
    "P6", title="Scalar output: non-zero equilibria on two spheres, the inner a saddle, the outer stable; runs never "
                "end on the inner one",
    source=[cite("ponce2025")],
    statement="M = 1, Σxx = pI, Σxy = qI: non-zero SG (and EMA) equilibria are b = ‖a‖ = r± = [q ± √(q² − 4pλ)]/(2p) "
              "(λ < q²/(4p)); the Jacobian there has N−1 zeros (tangent), −2λ and 2λ − qr± (> 0 inner, < 0 outer). "
              "From sampled starts, SG and EMA runs end at 0 or on the outer sphere, never on the inner one. The paper "
              "quotes 92.8 % vs 82.0 % reaching the outer sphere (EMA vs SG) for a sampling the paper leaves "
              "unspecified; the "
              "proportions here are recorded only.",
    measures="the learner's SG field and Jacobian on the spheres; 128 SG and 128 EMA (β = 1) Euler runs (lr 0.2) "
             "from a ~ ρ₀·uniform direction, ρ₀ ~ U(0, 2r₊), b₀ ~ U(−r₊, 2r₊), x = u + σε, y = u + σε′",
    prediction="field = 0 and spectrum {0^(N−1), −2λ, 2λ − qr} on both spheres; no run within 10 % of the inner "
               "sphere at T; ended runs at ‖a‖ = b = r₊ (or at 0)",
    tolerance="field 1e-12·r, spectrum 1e-8 absolute (finite differences); radius 1e-4 relative after "
              "T = ln(1e6)/(slowest Euler rate |ln|1 + lr·μ||/lr over the modes a run crosses, SG and EMA: λ and β at "
              "0, the saddle's positive eigenvalue, the outer sphere's non-zero ones); a run not within 1e-4 of "
              "r₊ nor at 0 is undecided, ≤ 3 % may be (late escapes: starts near the saddle's stable manifold)",
    derivation="The paper leaves the constants open: the radii and spectra are derived here, the proportions are a "
               "chosen form. ȧ = −(pb² − qb + λ)a, ḃ = −(pb − q)‖a‖² − λb; equilibria need pb² − qb + λ = 0 and then "
               "‖a‖² = "
               "λb/(q − pb) = b²; planar Jacobian trace −qr, determinant 2λqr − 4λ² ⇒ eigenvalues −2λ, 2λ − qr "
               "(reference/theory/dual.py).")


@P6.check
@given(N=st.integers(2, 4), frac=st.floats(0.1, 0.97), sigma=st.floats(0.0, 0.5), seed=SEEDS)
def test_scalar_equilibria_are_two_spheres(impl, record, N, frac, sigma, seed):
    require(impl, *LEARNED)
    p, q = 1.0 + sigma ** 2, 1.0
    lam = frac * th.critical_weight_decay(p, q)
    mom = dual.gaussian_moments(N, signal=torch.eye(N, dtype=torch.float64), sigma_x=sigma)
    g = torch.Generator().manual_seed(seed)
    spectrum = th.sphere_spectrum(p, q, lam, N)
    for name, r in zip(("inner", "outer"), th.sphere_radii(p, q, lam)):
        u = torch.randn(3, 1, N, generator=g, dtype=torch.float64)
        A, B = r * unit(u), torch.full((3, 1, 1), r, dtype=torch.float64)
        f = LearnerField(impl, "sg", mom, lam)
        speed = per_replica(dual.flatten(f((A, B)), 1)).norm(dim=-1).max().item()
        record.within(f"{name} sphere: ‖F‖/r", speed / r, 0.0, error=speed / r, tolerance=1e-12,
                      message=f"the {name} sphere ‖a‖ = b = {r:.5g} is not a set of equilibria (‖F‖ = {speed:.3g})")
        ev = torch.linalg.eigvals(dual.fd_jacobian(f, (A, B)))
        imag = ev.imag.abs().max().item()
        err = (ev.real.sort(-1).values - spectrum[name]).abs().max().item() + imag
        got = ev.real.sort(-1).values[0].tolist()
        record.within(f"{name} sphere: spectrum vs {{0^(N−1), −2λ, 2λ − qr}}", err, 0.0, error=err, tolerance=1e-8,
                      message=f"{name} sphere: eigenvalues {got} ≠ {spectrum[name].tolist()}")
    r_in, r_out = th.sphere_radii(p, q, lam)
    unstable, stable = 2 * lam - q * r_in, 2 * lam - q * r_out
    record.within("inner sphere: unstable eigenvalue (2λ − qr₋)/λ", unstable / lam, "> 0", error=-unstable,
                  tolerance=0.0, strict=True, message="the inner sphere's eigenvalue 2λ − qr₋ is not > 0")
    record.within("outer sphere: (2λ − qr₊)/λ (the stronger statement says ≤ −1; > −1 iff λ > 2q²/(9p))", stable / lam,
                  "< 0", error=stable, tolerance=0.0, strict=True,
                  message="the outer sphere's eigenvalue 2λ − qr₊ is not < 0")


def _slowest_euler_rate(p, q, lam, beta, N, lr) -> float:
    """The slowest rate (per unit time, of Euler steps of size lr) among the modes a P6 run must cross, SG or
    EMA: the decay onto 0 (λ; β for the target), the escape from the inner sphere (its positive eigenvalue)
    and the decay onto the outer sphere (its non-zero eigenvalues); T = ln(1e6)/rate shrinks each by 1e6."""
    modes = [-lam, -beta]
    for spectrum in (th.sphere_spectrum(p, q, lam, N), th.ema_sphere_spectrum(p, q, lam, beta, N)):
        modes += [mu for mu in spectrum["inner"].tolist() if mu > 0]
        modes += [mu for mu in spectrum["outer"].tolist() if abs(mu) > 1e-12]
    return min(th.euler_rate(mu, lr) for mu in modes)


@P6.check
@given(N=st.integers(2, 5), frac=st.floats(0.35, 0.7), sigma=st.floats(0.0, 0.5), seed=SEEDS)
def test_runs_never_end_on_the_inner_sphere(impl, record, N, frac, sigma, seed):
    require(impl, *LEARNED, *EMA)
    p, q = 1.0 + sigma ** 2, 1.0
    lam = frac * th.critical_weight_decay(p, q)
    r_in, r_out = th.sphere_radii(p, q, lam)
    lr, beta = 0.2, 1.0
    steps = int(math.ceil(math.log(1e6) / _slowest_euler_rate(p, q, lam, beta, N, lr) / lr))
    mom = dual.gaussian_moments(N, signal=torch.eye(N, dtype=torch.float64), sigma_x=sigma)
    g = torch.Generator().manual_seed(seed)
    S = 128
    u = torch.randn(S, 1, N, generator=g, dtype=torch.float64)
    rho0 = 2 * r_out * torch.rand(S, 1, 1, generator=g, dtype=torch.float64)
    A0 = rho0 * unit(u)
    B0 = r_out * (3 * torch.rand(S, 1, 1, generator=g, dtype=torch.float64) - 1)
    for kind in ("sg", "ema"):
        traj = run_learner(impl, kind, mom, A0, B0, lam=lam, lr=lr, steps=steps, beta=beta)
        rho, b = traj.probes["A"][-1].norm(dim=(-1, -2)), traj.probes["B"][-1][:, 0, 0]
        on_inner = ((rho - r_in).abs() <= 0.1 * r_in) & ((b - r_in).abs() <= 0.1 * r_in)
        collapsed = (rho <= 1e-3 * r_out) & (b.abs() <= 1e-3 * r_out)
        # "ended on the outer sphere" at the radius tolerance T was derived for; a run still on its way
        # (a late escape from the saddle) is undecided, not a radius error
        outer = ((rho - r_out).abs() <= 1e-4 * r_out) & ((b - r_out).abs() <= 1e-4 * r_out)
        undecided = (~collapsed & ~outer).float().mean().item()
        record(f"{kind.upper()}: proportion reaching the outer sphere", outer.float().mean().item(),
               "recorded (paper: SG 82.0 %, EMA 92.8 %, sampling unspecified)", error=None, tolerance=None)
        # a count: an error ≤ 0.5 is none
        record.within(f"{kind.upper()}: runs on the inner sphere", on_inner.sum().item(), 0,
                      error=on_inner.sum().item(), tolerance=0.5,
                      message=f"{kind}: {on_inner.sum().item()} runs ended on the inner (saddle) sphere")
        rest = ~collapsed & ~outer
        record.within(f"{kind.upper()}: undecided runs at T", undecided, "≤ 0.03", error=undecided, tolerance=0.03,
                      message=f"{kind}: {undecided:.1%} of runs ended neither at 0 nor on the outer sphere "
                              f"r₊ = {r_out:.6g} within 1e-4 (median ‖a‖ {rho[rest].median().item():.6g}, "
                              f"b {b[rest].median().item():.6g}; radii {rho[rest][:5].tolist()})")
        if outer.any():
            err = torch.maximum((rho[outer] - r_out).abs(), (b[outer] - r_out).abs()).max().item() / r_out
            record(f"{kind.upper()}: outer radius |‖a‖ − r₊|/r₊", err, 0.0, error=err, tolerance=1e-4)
