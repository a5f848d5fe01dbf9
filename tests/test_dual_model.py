"""The linear A/B model of Ponce et al. 2025 (reference/dual.py) and its closed forms (reference/theory/dual.py).

Semantics first (fields against autograd, Jacobians against finite differences, the
moment-matched batch, integrators, the derived identities), then input validation: each
bad input raises a specific error naming the argument.
"""
from __future__ import annotations

import math

import pytest
import torch
from ncspec.reference import dual
from ncspec.reference.theory import dual as th

DT = torch.float64


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _setup(M=2, N=3, S=3, seed=0, source="wishart"):
    g = _gen(seed)
    mom = dual.random_moments(N, S=S, generator=g) if source == "wishart" else \
        dual.gaussian_moments(N, S=S, sigma_x=0.4, mix=0.5, generator=g)
    return mom, dual.random_state(M, N, S=S, generator=g)


def _sample_loss(A, B, x, y, lam, *, target=None):
    """½ mean‖BAx − A_t y‖² + λ(‖A‖² + ‖B‖²)/2 on a batch, per replica."""
    T = A if target is None else target
    r = x @ (B @ A).transpose(-1, -2) - y @ T.transpose(-1, -2)
    return 0.5 * r.pow(2).sum(-1).mean(-1) + 0.5 * lam * (A.pow(2).sum((-1, -2)) + B.pow(2).sum((-1, -2)))


# ----------------------------------------------------------------------------- moments
@pytest.mark.parametrize("source", ["wishart", "views"])
def test_views_reproduce_the_moments_exactly(source):
    mom, _ = _setup(N=4, source=source)
    x, y = mom.views()
    assert x.shape == y.shape == (3, 8, 4)
    n = x.shape[-2]
    for got, want in ((x.mT @ x / n, mom.xx), (x.mT @ y / n, mom.xy), (y.mT @ y / n, mom.yy)):
        assert (got - want).abs().max() < 1e-13
    assert torch.equal(mom.yx, mom.xy.mT)


def test_moment_constructors():
    g = _gen(1)
    mom = dual.random_moments(3, S=5, generator=g)
    assert torch.linalg.eigvalsh(mom.joint()).min() > 0
    assert (mom.xy - mom.xy.mT).abs().max() > 1e-3                      # general: Σxy not symmetric
    assert dual.random_moments(3, generator=g, correlation=0.0).xy.abs().max() == 0
    iso = dual.gaussian_moments(3, signal=torch.eye(3, dtype=DT), sigma_x=0.5, sigma_y=0.2)
    assert torch.allclose(iso.xx, 1.25 * torch.eye(3, dtype=DT)) and torch.allclose(iso.xy, torch.eye(3, dtype=DT))
    assert torch.allclose(iso.yy, 1.04 * torch.eye(3, dtype=DT))
    mixed = dual.gaussian_moments(3, S=2, mix=0.5, generator=g)
    assert mixed.batch_shape == (2,) and (mixed.xy - mixed.xy.mT).abs().max() > 1e-3
    assert torch.linalg.eigvalsh(mixed.joint()).min() > -1e-12
    assert dual.moments(mom.xx, mom.xy, mom.yy).N == 3


# ----------------------------------------------------------------------------- objective and fields
def test_objective_is_the_expected_loss():
    mom, (A, B) = _setup(source="views")
    x, y = mom.views()
    assert torch.allclose(dual.objective(A, B, mom, 0.2), _sample_loss(A, B, x, y, 0.2), atol=1e-12)


def test_fields_are_the_autograd_gradients():
    mom, (A, B) = _setup(M=3, N=4)
    x, y = mom.views()
    lam = 0.15
    A_, B_ = A.clone().requires_grad_(), B.clone().requires_grad_()
    gA, gB = torch.autograd.grad(_sample_loss(A_, B_, x, y, lam).sum(), (A_, B_))
    eA, eB = dual.grad_objective(A, B, mom, lam)
    assert torch.allclose(eA, gA, atol=1e-12) and torch.allclose(eB, gB, atol=1e-12)
    assert all(torch.allclose(a, -b) for a, b in zip(dual.gd_field(A, B, mom, lam), (gA, gB)))
    A_, B_ = A.clone().requires_grad_(), B.clone().requires_grad_()
    sA, sB = torch.autograd.grad(_sample_loss(A_, B_, x, y, lam, target=A_.detach()).sum(), (A_, B_))
    fA, fB = dual.sg_field(A, B, mom, lam)
    assert torch.allclose(fA, -sA, atol=1e-12) and torch.allclose(fB, -sB, atol=1e-12)
    A_t = A + 0.1
    A_, B_ = A.clone().requires_grad_(), B.clone().requires_grad_()
    tA, tB = torch.autograd.grad(_sample_loss(A_, B_, x, y, lam, target=A_t).sum(), (A_, B_))
    vA, vB, vT = dual.ema_field(A, B, A_t, mom, lam, 0.7)
    assert torch.allclose(vA, -tA, atol=1e-12) and torch.allclose(vB, -tB, atol=1e-12)
    assert torch.allclose(vT, 0.7 * (A - A_t))
    # EMA with the target on the online weights is SG, with a still target
    eA2, eB2, eT2 = dual.ema_field(A, B, A.clone(), mom, lam, 1.0)
    assert torch.allclose(eA2, fA) and torch.allclose(eB2, fB) and eT2.abs().max() == 0


def test_per_replica_weight_decay_and_field_factory():
    mom, (A, B) = _setup()
    lam = torch.tensor([0.0, 0.1, 0.3], dtype=DT)
    vA, _ = dual.sg_field(A, B, mom, lam)
    for i in range(3):
        assert torch.allclose(vA[i], dual.sg_field(A[i], B[i], mom.index(i), float(lam[i]))[0])
    assert all(torch.equal(a, b) for a, b in zip(dual.field("gd", mom, 0.1)((A, B)), dual.gd_field(A, B, mom, 0.1)))


@pytest.mark.parametrize("kind", ["sg", "gd", "ema"])
def test_torch_func_jacobian_matches_finite_differences(kind):
    mom, (A, B) = _setup(M=2, N=3)
    state = (A, B, A + 0.2) if kind == "ema" else (A, B)
    J = dual.jacobian(kind, state, mom, 0.1, beta=0.8)
    D = 2 * 3 + 2 * 2 + (6 if kind == "ema" else 0)
    assert J.shape == (3, D, D)
    Jfd = dual.fd_jacobian(dual.field(kind, mom, 0.1, beta=0.8), state)
    assert ((J - Jfd).norm(dim=(-1, -2)) / J.norm(dim=(-1, -2))).max() < 1e-10
    asym = dual.asymmetry(J)
    if kind == "gd":
        assert asym.max() < 1e-14                       # a Hessian
    else:
        assert asym.min() > 1e-3                        # P1


def test_sg_is_a_gradient_when_the_views_are_uncorrelated():
    mom, (A, B) = _setup(M=2, N=3)
    mom0 = dual.Moments(mom.xx, torch.zeros_like(mom.xy), mom.yy)
    assert dual.asymmetry(dual.jacobian("sg", (A, B), mom0, 0.1)).max() < 1e-14


def test_flatten_roundtrip_and_balancedness_rate():
    mom, (A, B) = _setup(M=2, N=4)
    v = dual.flatten((A, B), batch_dims=1)
    assert v.shape == (3, 12)
    A2, B2 = dual.unflatten(v, [(2, 4), (2, 2)])
    assert torch.equal(A2, A) and torch.equal(B2, B)
    # the rate formula is the derivative of BᵀB − AAᵀ along the flow
    f = dual.field("gd", mom, 0.1)
    vel = f((A, B))
    h = 1e-6
    fd = (dual.balancedness(A + h * vel[0], B + h * vel[1]) - dual.balancedness(A - h * vel[0], B - h * vel[1])) / (
        2 * h
    )
    assert torch.allclose(dual.balancedness_rate((A, B), vel), fd, atol=1e-8)


# ----------------------------------------------------------------------------- integrators
def test_integrators_on_a_linear_field():
    x0 = (torch.ones(2, 1, 1, dtype=DT),)
    f = lambda s: (-s[0],)
    p = dual.integrate(f, x0, dt=0.01, steps=100, method="rk4", record_every=50)
    assert p.t.tolist() == pytest.approx([0.0, 0.5, 1.0])
    assert p.states[0].shape == (3, 2, 1, 1)
    assert abs(p.final[0][0, 0, 0].item() - math.exp(-1)) < 1e-10
    e = dual.integrate(f, x0, dt=0.01, steps=100, method="euler")
    assert abs(e.final[0][0, 0, 0].item() - 0.99 ** 100) < 1e-14
    assert dual.integrate(f, x0, dt=0.1, steps=0).states[0].shape == (1, 2, 1, 1)


def test_integrate_reports_divergence():
    with pytest.raises(FloatingPointError, match="non-finite"):
        dual.integrate(lambda s: (s[0] ** 3,), (torch.full((1, 1, 1), 10.0, dtype=DT),), dt=1.0, steps=50)


def test_balancedness_decays_along_sg_and_ema_paths():
    mom, (A, B) = _setup(M=2, N=3)
    lam = 0.2
    K0 = dual.balancedness(A, B)
    for kind, state in (("sg", (A, B)), ("ema", (A, B, A + 0.3))):
        p = dual.integrate(dual.field(kind, mom, lam, beta=1.0), state, dt=0.01, steps=200)
        K = dual.balancedness(*p.final[:2])
        assert torch.allclose(K, th.balance_at(K0, 2.0, lam), atol=1e-9)
    p = dual.integrate(dual.field("gd", mom, lam), (A, B), dt=0.01, steps=200)
    assert not torch.allclose(dual.balancedness(*p.final), th.balance_at(K0, 2.0, lam), atol=1e-3)


def test_gd_collapses_within_the_derived_bound():
    mom, (A, B) = _setup(M=2, N=3)
    lam = 0.1
    p = dual.integrate(dual.field("gd", mom, lam), (A, B), dt=0.04, steps=1000, record_every=50)
    sq = p.states[0].pow(2).sum((-1, -2))
    bound = th.gd_encoder_bound(sq[0], p.t, lam)
    assert (sq <= bound * (1 + 1e-8)).all()
    assert (sq[-1] < 1e-3 * sq[0]).all()


# ----------------------------------------------------------------------------- equilibria (theory)
def _sg_equilibrium(M, N, seed=0, lam=0.05):
    """A full-rank SG equilibrium of well-conditioned views (RK4 then Gauss–Newton)."""
    g = _gen(seed)
    mom = dual.gaussian_moments(N, S=2, sigma_x=0.3, mix=0.2, generator=g,
                                signal=torch.diag(torch.linspace(1.5, 0.8, N, dtype=DT)))
    A = torch.eye(M, N, dtype=DT).expand(2, M, N) + 0.1 * torch.randn(2, M, N, generator=g, dtype=DT)
    B = torch.eye(M, dtype=DT).expand(2, M, M).clone()
    f = dual.field("sg", mom, lam)
    p = dual.integrate(f, (A, B), dt=0.1, steps=1500)
    state, speed = dual.refine_equilibrium(f, p.final)
    assert speed.max() < 1e-12
    return mom, state, lam


@pytest.mark.parametrize("M,N", [(2, 2), (3, 3), (2, 4)])
def test_equilibrium_equations(M, N):
    mom, (A, B), lam = _sg_equilibrium(M, N)
    assert torch.allclose(B, th.sg_predictor(A, mom.xx, mom.xy, lam), atol=1e-10)
    assert dual.balancedness(A, B).abs().max() < 1e-10
    scale = th.residual_scale(A, mom.xx, mom.xy, lam)
    proj = th.projected_residual(A, mom.xx, mom.xy, lam).norm(dim=(-1, -2)) / scale
    R = th.equilibrium_residual(A, mom.xx, mom.xy, lam).norm(dim=(-1, -2)) / scale
    assert proj.max() < 1e-10
    if M == N:
        assert R.max() < 1e-10                          # the paper's form: A invertible
    else:
        assert R.min() > 1e-6                           # S singular: only A·R = 0 holds
    gA, gB = dual.grad_objective(A, B, mom, lam)
    assert gB.abs().max() < 1e-10
    assert (gA.norm(dim=(-1, -2)) >= lam * A.norm(dim=(-1, -2))).all()
    # ⟨∇_A Ē, A⟩ = E‖r‖² + λ‖A‖² (P2's identity) holds everywhere
    Er2 = 2 * (dual.objective(A, B, mom, lam) - 0.5 * lam * (A.pow(2).sum((-1, -2)) + B.pow(2).sum((-1, -2))))
    assert torch.allclose((gA * A).sum((-1, -2)), Er2 + lam * A.pow(2).sum((-1, -2)), atol=1e-10)


@pytest.mark.parametrize("M,N", [(2, 2), (3, 3), (3, 4)])
def test_equilibrium_spectrum(M, N):
    mom, state, lam = _sg_equilibrium(M, N, seed=1)
    ev = torch.linalg.eigvals(dual.jacobian("sg", state, mom, lam))
    assert ((ev.abs() < 1e-8).sum(-1) == th.orbit_dimension(M, M)).all()
    assert (((ev + 2 * lam).abs() < 1e-8).sum(-1) >= th.balance_multiplicity(M)).all()
    rest = ev.real[ev.abs() >= 1e-8]
    assert rest.max() < 0


def test_rank_deficient_equilibrium_has_the_smaller_orbit():
    """A rank-1 equilibrium of the M = 3 model (rows 2–3 of A and B's last rows/columns stay exactly 0 under SG):
    2 zero eigenvalues (orbit dimension r(2M − r − 1)/2 = 2, not M(M−1)/2 = 3); A·R = 0 but R ≠ 0 (the paper's
    form needs A invertible)."""
    M, N, lam = 3, 3, 0.05
    mom = dual.gaussian_moments(N, S=2, sigma_x=0.3, mix=0.2, generator=_gen(0),
                                signal=torch.diag(torch.tensor([1.5, 0.8, 0.5], dtype=DT)))
    A = torch.zeros(2, M, N, dtype=DT)
    A[:, 0] = torch.tensor([0.8, 0.3, 0.2], dtype=DT)
    B = torch.zeros(2, M, M, dtype=DT)
    B[:, 0, 0] = 0.8
    f = dual.field("sg", mom, lam)
    (A, B), speed = dual.refine_equilibrium(f, dual.integrate(f, (A, B), dt=0.1, steps=1500).final)
    assert speed.max() < 1e-12 and (torch.linalg.matrix_rank(A) == 1).all()
    ev = torch.linalg.eigvals(dual.jacobian("sg", (A, B), mom, lam))
    assert ((ev.abs() < 1e-8).sum(-1) == th.orbit_dimension(M, 1)).all()
    assert th.projected_residual(A, mom.xx, mom.xy, lam).abs().max() < 1e-12
    assert th.equilibrium_residual(A, mom.xx, mom.xy, lam).abs().max() > 1e-4


def test_orbit_dimension_and_the_symmetry():
    assert [th.orbit_dimension(3, r) for r in range(4)] == [0, 2, 3, 3]
    assert th.orbit_dimension(4, 4) == 6 and th.orbit_dimension(4, 2) == 5 and th.balance_multiplicity(3) == 6
    mom, (A, B) = _setup(M=3, N=4)
    Q = torch.linalg.qr(torch.randn(3, 3, generator=_gen(3), dtype=DT))[0]
    assert torch.allclose(dual.objective(Q @ A, Q @ B @ Q.T, mom, 0.1), dual.objective(A, B, mom, 0.1))
    vA, vB = dual.sg_field(A, B, mom, 0.1)
    wA, wB = dual.sg_field(Q @ A, Q @ B @ Q.T, mom, 0.1)
    assert torch.allclose(wA, Q @ vA, atol=1e-12) and torch.allclose(wB, Q @ vB @ Q.T, atol=1e-12)


def test_scalar_spheres_and_their_spectrum():
    p, q, lam, N = 1.09, 1.0, 0.12, 3
    r_in, r_out = th.sphere_radii(p, q, lam)
    for r in (r_in, r_out):
        assert abs(p * r * r - q * r + lam) < 1e-15
    mom = dual.gaussian_moments(N, signal=torch.eye(N, dtype=DT), sigma_x=0.3)
    spec = th.sphere_spectrum(p, q, lam, N)
    for name, r in (("inner", r_in), ("outer", r_out)):
        u = torch.tensor([[[0.6, 0.0, 0.8]]], dtype=DT)
        state = (r * u, torch.full((1, 1, 1), r, dtype=DT))
        assert max(v.abs().max().item() for v in dual.sg_field(*state, mom, lam)) < 1e-15
        ev = torch.linalg.eigvals(dual.jacobian("sg", state, mom, lam))[0]
        assert torch.allclose(ev.real.sort().values, spec[name], atol=1e-12) and ev.imag.abs().max() < 1e-12
    assert spec["inner"][-1] > 0 and (spec["outer"] <= 0).all()
    assert th.critical_weight_decay(p, q) == pytest.approx(1 / 4.36)
    # the stronger "≤ −λ" fails near the critical weight decay: 2λ − qr₊ > −λ iff λ > 2q²/(9p)
    lam2 = 0.95 * th.critical_weight_decay(p, q)
    assert 2 * lam2 - q * th.sphere_radii(p, q, lam2)[1] > -lam2


def test_radial_reduction_matches_the_full_fields():
    p, q, s, lam = 1.25, 1.0, 1.16, 0.1
    mom = dual.gaussian_moments(3, signal=torch.eye(3, dtype=DT), sigma_x=0.5, sigma_y=0.4)
    u = torch.tensor([0.48, 0.6, 0.64], dtype=DT)
    rho, b = torch.tensor(0.7, dtype=DT), torch.tensor(-0.3, dtype=DT)
    A, B = (rho * u).reshape(1, 3), b.reshape(1, 1)
    for full, radial in ((dual.sg_field(A, B, mom, lam), th.sg_radial_field(rho, b, p, q, lam)),
                         (dual.gd_field(A, B, mom, lam), th.gd_radial_field(rho, b, p, q, s, lam))):
        assert torch.allclose(full[0], radial[0] * u.reshape(1, 3), atol=1e-14)
        assert torch.allclose(full[1], radial[1].reshape(1, 1), atol=1e-14)
    assert torch.allclose(dual.objective(A, B, mom, lam), th.radial_objective(rho, b, p, q, s, lam))


def test_rotated_views_periodic_orbit():
    kappa, theta, lam = 1.1, 0.6, 0.08
    orbit = th.rotation_orbit(kappa, theta, lam)
    eye = torch.eye(2, dtype=DT)
    mom = dual.moments(kappa * eye, th.rotation(theta).T, kappa * eye)
    r = orbit["radius"]
    start = (torch.tensor([[[r, 0.0]]], dtype=DT), torch.full((1, 1, 1), r, dtype=DT))
    steps = 2000
    p = dual.integrate(dual.field("sg", mom, lam), start, dt=orbit["period"] / steps, steps=steps)
    assert (p.final[0] - start[0]).abs().max() < 1e-9 and (p.final[1] - start[1]).abs().max() < 1e-9
    half = dual.integrate(dual.field("sg", mom, lam), start, dt=orbit["period"] / steps, steps=steps // 2)
    assert torch.allclose(half.final[0], -start[0], atol=1e-9)           # half a turn: a → −a


def test_refine_equilibrium_polishes_a_perturbed_point():
    mom, (A, B), lam = _sg_equilibrium(2, 3, seed=2)
    f = dual.field("sg", mom, lam)
    (A2, B2), speed = dual.refine_equilibrium(f, (A + 1e-4, B - 1e-4))
    assert speed.max() < 1e-12
    assert (A2 - A).abs().max() < 1e-3


# ----------------------------------------------------------------------------- validation
def test_moments_validation():
    xx = torch.eye(3, dtype=DT)
    with pytest.raises(ValueError, match="xy must be square"):
        dual.moments(xx, torch.zeros(3, 2, dtype=DT), xx)
    with pytest.raises(ValueError, match="one N"):
        dual.moments(xx, torch.zeros(2, 2, dtype=DT), xx)
    with pytest.raises(ValueError, match="share a dtype"):
        dual.moments(xx, torch.zeros(3, 3), xx)
    with pytest.raises(TypeError, match="floating-point"):
        dual.moments(xx, torch.zeros(3, 3, dtype=torch.int64), xx)
    with pytest.raises(ValueError, match="must be symmetric"):
        dual.moments(xx + torch.triu(xx, 1) + torch.tensor([[0, 1, 0], [0, 0, 0], [0, 0, 0]], dtype=DT), 0 * xx, xx)
    with pytest.raises(ValueError, match="positive semi-definite"):
        dual.moments(xx, 2 * xx, xx)                       # |corr| > 1
    with pytest.raises(ValueError, match="finite"):
        dual.moments(xx * math.nan, 0 * xx, xx)
    with pytest.raises(TypeError, match="torch.Tensor"):
        dual.moments([[1.0]], 0 * xx, xx)
    with pytest.raises(ValueError, match="do not broadcast"):
        dual.moments(xx.expand(2, 3, 3), xx.expand(3, 3, 3) * 0, xx)
    with pytest.raises(ValueError, match="correlation"):
        dual.random_moments(3, correlation=1.5)
    with pytest.raises(ValueError, match="N must be a positive int"):
        dual.gaussian_moments(0)
    with pytest.raises(ValueError, match="signal must be"):
        dual.gaussian_moments(3, signal=torch.eye(2, dtype=DT))
    with pytest.raises(ValueError, match="sigma_x"):
        dual.gaussian_moments(3, sigma_x=-1.0)


def test_field_validation():
    mom, (A, B) = _setup(M=2, N=3)
    with pytest.raises(ValueError, match="A must be"):
        dual.sg_field(A[..., :2], B, mom, 0.1)
    with pytest.raises(ValueError, match="B must be"):
        dual.sg_field(A, torch.zeros(3, 3, 3, dtype=DT), mom, 0.1)
    with pytest.raises(ValueError, match="B must be square"):
        dual.sg_field(A, torch.zeros(3, 2, 3, dtype=DT), mom, 0.1)
    with pytest.raises(ValueError, match="lam must be"):
        dual.sg_field(A, B, mom, -0.1)
    with pytest.raises(ValueError, match="share a dtype"):
        dual.sg_field(A.float(), B, mom, 0.1)
    with pytest.raises(TypeError, match="Moments"):
        dual.sg_field(A, B, (mom.xx, mom.xy, mom.yy), 0.1)
    with pytest.raises(ValueError, match="A_t must have"):
        dual.ema_field(A, B, A[..., :1, :], mom, 0.1, 1.0)
    with pytest.raises(ValueError, match="beta must be"):
        dual.ema_field(A, B, A, mom, 0.1, 0.0)
    with pytest.raises(ValueError, match="needs beta"):
        dual.field("ema", mom, 0.1)
    with pytest.raises(ValueError, match="kind must be one of"):
        dual.field("byol", mom, 0.1)
    with pytest.raises(ValueError, match="tuple of 2 tensors"):
        dual.field("sg", mom, 0.1)((A, B, A))
    with pytest.raises(ValueError, match="do not broadcast"):
        dual.sg_field(A[:2], B, mom, 0.1)
    with pytest.raises(ValueError, match="kind must be one of"):
        dual.jacobian("adam", (A, B), mom, 0.1)
    with pytest.raises(ValueError, match="B must be"):
        dual.balancedness(A, torch.zeros(3, 3, 3, dtype=DT))


def test_integrator_and_jacobian_validation():
    f = lambda s: s
    x = (torch.zeros(1, 1, 1, dtype=DT),)
    with pytest.raises(ValueError, match="method must be one of"):
        dual.integrate(f, x, dt=0.1, steps=1, method="leapfrog")
    with pytest.raises(ValueError, match="dt must be"):
        dual.integrate(f, x, dt=0.0, steps=1)
    with pytest.raises(ValueError, match="steps must be"):
        dual.integrate(f, x, dt=0.1, steps=-1)
    with pytest.raises(ValueError, match="record_every must be"):
        dual.integrate(f, x, dt=0.1, steps=2, record_every=0)
    with pytest.raises(TypeError, match="tuple of tensors"):
        dual.integrate(f, torch.zeros(1), dt=0.1, steps=1)
    with pytest.raises(ValueError, match="h must be"):
        dual.fd_jacobian(f, x, h=0.0)
    with pytest.raises(TypeError, match="batched tensors"):
        dual.fd_jacobian(f, [1.0])
    with pytest.raises(ValueError, match="entries per replica"):
        dual.unflatten(torch.zeros(1, 5), [(2, 2)])
    with pytest.raises(ValueError, match="iters must be"):
        dual.refine_equilibrium(f, x, iters=0)
    with pytest.raises(ValueError, match="M must be"):
        dual.random_state(0, 3)
    with pytest.raises(ValueError, match="S must be"):
        dual.random_state(2, 3, S=0)


def test_theory_validation():
    with pytest.raises(ValueError, match="no non-zero equilibria"):
        th.sphere_radii(1.0, 1.0, 0.3)
    with pytest.raises(ValueError, match="no non-zero equilibria"):
        th.sphere_radii(1.0, -1.0, 0.1)
    with pytest.raises(ValueError, match="lam must be"):
        th.sphere_radii(1.0, 1.0, 0.0)
    with pytest.raises(ValueError, match="p must be"):
        th.critical_weight_decay(0.0, 1.0)
    with pytest.raises(ValueError, match="rank must be"):
        th.orbit_dimension(3, 4)
    with pytest.raises(ValueError, match="theta must lie"):
        th.rotation_orbit(1.0, 2.0, 0.1)
    with pytest.raises(ValueError, match="xx must be"):
        th.equilibrium_residual(torch.zeros(2, 3, dtype=DT), torch.eye(2, dtype=DT), torch.eye(3, dtype=DT), 0.1)
    with pytest.raises(ValueError, match="lam must be"):
        th.sg_predictor(torch.zeros(2, 3, dtype=DT), torch.eye(3, dtype=DT), torch.eye(3, dtype=DT), 0.0)


def test_dual_figure_rejects_bad_arguments(tmp_path):
    from ncspec.reference.figures.dual import dual_figure
    f = tmp_path / "not_a_dir"
    f.write_text("x")
    with pytest.raises(ValueError, match="not a directory"):
        dual_figure(f)
    with pytest.raises(ValueError, match="fmt must be"):
        dual_figure(tmp_path / "out", fmt=("",))
    with pytest.raises(ValueError, match="seed must be an int"):
        dual_figure(tmp_path / "out", seed=1.5)


def test_p4_reruns_a_draw_whose_euler_steps_overflow_with_half_the_step():
    """A thorough P4 draw (M = N = 2, λ = 0.03125, σ = 0.21875, mix 0.3) overflows at Euler step 305 of 0.1:
    one run settles near ‖A‖ = 3.1, where 0.1·|μ| > 2. sg_limits reruns it at 0.05, where all 4 runs settle."""
    from ncspec.conformance.contract.loss_scale import scale_aware
    from ncspec.conformance.contract.registry import load_adapter
    from ncspec.spec_tests import test_dual as td

    impl = scale_aware(load_adapter("reference"))
    draw = (2, 0, 0.03125, 0.21875, 0.3, 1000001)
    g = torch.Generator().manual_seed(draw[-1])
    mom = td.well_posed_moments(2, 4, g, sigma=draw[3], mix=draw[4], M=2, lam=draw[2])
    A, B = td.balanced_start(2, 2, 4, g)
    with pytest.raises(FloatingPointError, match="non-finite"):
        td.run_learner(impl, "sg", mom, A, B, lam=draw[2], lr=td.LR, steps=td.FIRST)
    mom, A, B, speed, full, steps, lr = td.sg_limits(impl, *draw)
    assert lr == td.LR / 2 and int(full.sum()) >= 2, (lr, full)
