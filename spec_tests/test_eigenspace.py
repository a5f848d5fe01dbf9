"""Claims H1–H8: the eigenspace view of Siamese learning (Halvagal, Laborieux & Zenke).

Halvagal, Laborieux & Zenke, "An eigenspace view reveals how predictor networks
and stop-grads provide implicit variance regularization" (NeurIPS 2022 SSL
workshop, eqs. 1–12) and "Implicit variance regularization in
non-contrastive SSL" (NeurIPS 2023, arXiv:2212.04858). Predictions come from
:mod:`ncspec.reference.theory.eigenspace`; simulations run the adapter's learner on
the linear-Gaussian model, as expected-gradient flow (Euler steps on W over the
moment-matched population batch) or minibatch SGD.

Tolerances used throughout:

* ``EXACT = 1e-8`` — the expected-gradient flow maps each eigenvalue by
  ``λ ← λ(1 + η r(ω))²`` exactly (module docstring of the theory); float64
  rounding over ≤ 2,000 steps with ``eigh`` stays below 1e-12 (measured).
* ``EULER_C[loss] · lr`` — the Euler discretisation is first order in the
  step, so the simulated trajectory differs from the ODE solution by ``O(lr)``.
  Since the simulation equals the exact Euler map (checked to 1e-8), the
  constant is a property of the theory alone: the worst ``max rel err / lr``
  of the map against the ODE over the box the tests draw from (λ0 ∈ {0.1, 0.2,
  0.5, 1, 1.5, 2}, σ ∈ {0, .1, .2, .25, .3}, α ∈ {½, 1}, the tests' lr and
  horizon; extremes are at the box's edges) was SimSiam 1.14, IsoLoss 0.55,
  no-SG 5.39, wrong side 3.20 at lr = 0.025; the constants are ≈ 1.5× those.
  SimSiam and IsoLoss now run at lr = 0.05 (half the steps): on 200 log-spaced
  λ0 ∈ [0.1, 2], σ ∈ {0, .05, …, .3}, α ∈ {½, 1} the worst is SimSiam 1.39,
  IsoLoss 0.58 (the constant grows with lr: 2.18 and 0.65 at lr = 0.1).
"""
from __future__ import annotations

import math

import torch
from hypothesis import example, given
from hypothesis import strategies as st
from ncspec.conformance.claims import cite, register
from ncspec.conformance.contract import conventions
from ncspec.reference.linear import gaussian_views
from ncspec.reference.predictors import correlation, eigen_predictor
from ncspec.reference.theory import eigenspace as th

from .harness import LinearSetup, linear_setups, max_rel_err, population_run, require, sgd_run

EXACT = 1e-8
EULER_C = {"simsiam": 2.0, "isoloss": 1.0, "no_stopgrad": 8.0, "wrong_side": 5.0}


def assert_follows_theory(record, traj, loss, setup, lr, **predictor):
    """Simulated per-mode eigenvalues = exact Euler map (to rounding) ≈ ODE solution (O(lr))."""
    lam0 = traj.eig_C[0]
    euler = th.euler_trajectory(lam0, loss, setup.alpha, setup.sigma, lr=lr, steps=int(traj.steps[-1]),
                                **predictor)[traj.steps]
    err = max_rel_err(traj.eig_C, euler)
    record.within("eigenvalues vs exact per-mode map (max rel err)", err, 0.0, error=err, tolerance=EXACT,
                  message="modes do not evolve independently as λ(1+ηr(ω))²")
    if predictor:
        return
    ode = th.ode_solution(lam0, traj.t, loss, setup.alpha, setup.sigma)
    err = max_rel_err(traj.eig_C, ode)
    tol = EULER_C[loss] * lr
    record.within("eigenvalues vs ODE solution (max rel err)", err, 0.0, error=err, tolerance=tol,
                  message=f"trajectory departs from the ODE solution by more than {EULER_C[loss]}·lr")


# ----------------------------------------------------------------------------- H1
H1 = register(
    "H1", title="SimSiam loss drives every eigenvalue to the isotropic fixed point",
    source=[cite("halvagal2022", "eq. 5"), cite("halvagal2023", "abstract: implicit variance regularization")],
    statement="With W_P = C^α and SG on the target, dλ_m/dt = 2ηλ_m^{1+α}(1 − κλ_m^α), κ = 1+σ²: every "
              "mode converges to λ* = κ^{−1/α} (= 1 without augmentation noise).",
    measures="eigenvalues of C = E[z zᵀ] during expected-gradient flow and minibatch SGD",
    prediction="per-mode trajectories of the ODE / exact Euler map; fixed point κ^{−1/α}",
    tolerance="exact map 1e-8 (rounding), ODE 2·lr (first-order Euler, measured ≤ 1.39·lr at lr = 0.05), fixed "
              "point 1e-6 (T chosen so the ODE itself is within 1e-9); SGD: −20 %/+10 % (measured −12.5 %/+3.3 % "
              "over 18 runs)",
    derivation="E[∇_W L] = W_P(κW_P − I)W with E[x1x1ᵀ]=κI, E[x1x2ᵀ]=I; W_P commutes with C; see "
               "reference/theory/eigenspace.py.")


@H1.check
@given(setup=linear_setups())
def test_simsiam_eigenvalues_converge_to_the_fixed_point(impl, record, setup):
    """H1: under expected-gradient flow every eigenvalue of C reaches κ^{−1/α}."""
    require(impl, "simsiam", "loss:euclidean", "predictor:closed_form")
    lr, steps = 0.05, 800  # T = 40: escape (≤ 1/(2α·0.1^α)) plus 1e-9 relaxation at rate 2α/κ
    lam0 = setup.spectrum(0.1, 2.0)
    traj = population_run(impl, "simsiam", setup, lam0, lr=lr, steps=steps, form="euclidean")
    assert_follows_theory(record, traj, "simsiam", setup, lr)
    fp = th.fixed_point("simsiam", setup.alpha, setup.sigma)
    assert abs(th.ode_solution(lam0, traj.t[-1:], "simsiam", setup.alpha, setup.sigma) / fp - 1).max() < 1e-9
    err = (traj.eig_C[-1] / fp - 1).abs().max().item()
    lo, hi = traj.eig_C[-1].min().item(), traj.eig_C[-1].max().item()
    record.within("final eigenvalues vs κ^{-1/α}", traj.eig_C[-1].mean().item(), fp, error=err, tolerance=1e-6,
                  message=f"eigenvalues end at {lo:.6g}…{hi:.6g}, not {fp:.6g}")


@H1.check
@given(setup=linear_setups(M=(2, 10), replicas=3))
def test_simsiam_sgd_settles_near_the_fixed_point(impl, record, setup):
    """H1 under minibatch SGD, W_P from the batch correlation (what deep-net code does)."""
    require(impl, "simsiam", "loss:euclidean", "predictor:closed_form")
    lam0 = setup.spectrum(0.1, 2.0)
    traj = sgd_run(impl, "simsiam", setup, lam0, lr=0.05, steps=600, batch=256, record_every=100,
                   form="euclidean")
    fp = th.fixed_point("simsiam", setup.alpha, setup.sigma)
    rel = traj.eig_C[-1] / fp - 1
    # batch estimates of C make W_P noisy; f_α is concave for α ≤ 1, so SGD settles slightly low
    off = f"SGD eigenvalues/fixed point − 1 in [{rel.min():.3f}, {rel.max():.3f}]"
    record.within("SGD final eigenvalues / κ^{-1/α} − 1 (min)", rel.min().item(), 0.0, error=-rel.min().item(),
                  tolerance=0.2, message=off)
    record.within("SGD final eigenvalues / κ^{-1/α} − 1 (max)", rel.max().item(), 0.0, error=rel.max().item(),
                  tolerance=0.1, message=off)


# ----------------------------------------------------------------------------- H2
H2 = register(
    "H2", title="Without stop-grad every mode decays (collapse)",
    source=[cite("halvagal2022", "eq. 6")],
    statement="L_noSG = ½‖W_P z1 − z2‖²: dλ/dt = −2ηλ(κω² − 2ω + κ) ≤ 0; no mode ever grows, and with "
              "augmentation noise every mode collapses at a rate ≥ 2η(κ − 1/κ).",
    measures="eigenvalues of C under expected-gradient flow",
    prediction="per-mode ODE / exact map; monotone decrease; λ(T) ≤ λ(0)·exp(−2T(κ − 1/κ))",
    tolerance="exact map 1e-8; ODE 8·lr (measured ≤ 5.39·lr); monotonicity to rounding (1e-12 relative)")


@H2.check
@given(setup=linear_setups())
def test_no_stopgrad_collapses(impl, record, setup):
    require(impl, "simsiam", "loss:euclidean", "ablation:no_stopgrad")
    lr, steps = 0.02, 250
    lam0 = setup.spectrum(0.1, 2.0)
    traj = population_run(impl, "simsiam", setup, lam0, lr=lr, steps=steps, form="euclidean", stop_grad="none")
    assert_follows_theory(record, traj, "no_stopgrad", setup, lr)
    growth = (traj.eig_C[1:] / traj.eig_C[:-1]).max().item() - 1
    record.within("largest one-step growth of any mode", growth, 0.0, error=max(growth, 0), tolerance=1e-12,
                  message="a mode grew in one step")
    k = setup.kappa
    bound = traj.eig_C[0] * math.exp(-2 * traj.t[-1].item() * (k - 1 / k))
    ratio = (traj.eig_C[-1] / bound).max().item()
    record.within("λ(T) / collapse bound", ratio, 1.0, error=max(ratio - 1, 0), tolerance=1e-9,
                  message="modes decay more slowly than the no-stop-grad rate bound 2(κ − 1/κ)")


# ----------------------------------------------------------------------------- H3
H3 = register(
    "H3", title="Stop-grad on the wrong side: large modes diverge, small modes collapse",
    source=[cite("halvagal2022", "eq. 7")],
    statement="L_ws = ½‖SG(W_P z1) − z2‖²: dλ/dt = 2ηλ(ω − κ); modes with λ^α > κ diverge (in finite time), "
              "modes with λ^α < κ collapse.",
    measures="eigenvalues of C under expected-gradient flow, up to half the first blow-up time",
    prediction="u(t) = κ/(1 + (κ/u0 − 1)e^{2ακt}), u = λ^α; sign of dλ/dt = sign(λ^α − κ)",
    tolerance="exact map 1e-8; ODE 5·lr (measured ≤ 3.2·lr)")


@H3.check
@given(setup=linear_setups(M=(2, 16)))
def test_wrong_side_stopgrad_splits_modes(impl, record, setup):
    require(impl, "simsiam", "loss:euclidean", "ablation:wrong_side")
    lam = setup.spectrum(0.2, 0.7)
    up = torch.arange(setup.M) >= setup.M // 2                 # half the modes start above the threshold
    # above: ≥ 1.8 κ^{1/α} (the clamp makes it so: a drawn λ < 1/3 put a mode meant to be above the threshold
    # below it, and with M = 2 the first blow-up time became the log of a negative number)
    lam0 = torch.where(up, lam.clamp(min=0.6) * 3.0 * setup.kappa ** (1 / setup.alpha), lam)
    u0 = lam0.max() ** setup.alpha
    t_blowup = math.log(1 / (1 - setup.kappa / u0.item())) / (2 * setup.alpha * setup.kappa)
    lr = 0.5 * t_blowup / 100
    try:
        traj = population_run(impl, "simsiam", setup, lam0, lr=lr, steps=100, form="euclidean", stop_grad="online")
    except FloatingPointError as e:   # the exact map stays finite up to T = half the first blow-up time
        raise AssertionError(f"the run diverged before T = {100 * lr:.3g}, half the theory's first blow-up time "
                             f"(ω = λ^α with α = {setup.alpha}): {e}") from e
    assert_follows_theory(record, traj, "wrong_side", setup, lr)
    # sorted eigenvalues: the modes above the threshold are the largest ones
    above = th.fixed_point("wrong_side", setup.alpha, setup.sigma)
    start, end = traj.eig_C[0], traj.eig_C[-1]
    assert (end[start > above] > start[start > above]).all(), "a mode above κ^{1/α} did not grow"
    assert (end[start < above] < start[start < above]).all(), "a mode below κ^{1/α} did not shrink"


# ----------------------------------------------------------------------------- H4
H4 = register(
    "H4", title="IsoLoss: SimSiam's value, W_P removed from the gradient, equalised rates",
    source=[cite("halvagal2022", "eq. 8"), cite("halvagal2023", "abstract: IsoLoss")],
    statement="L_iso = ½‖z1 − SG(z2 + z1 − W_P z1)‖² equals L_SimSiam in value; ∇_{z1}L_iso = ∇_p L_SimSiam "
              "(so ∇_W L_SimSiam = W_P ∇_W L_iso); per mode dλ/dt = 2ηλ(1 − κλ^α), same fixed point.",
    measures="loss values and weight gradients on random batches (Euclidean and cosine forms); eigenvalues "
             "under expected-gradient flow",
    prediction="identity exact; logistic per-mode solution; fixed point κ^{−1/α}",
    tolerance="identity 1e-10 relative (float64 rounding); exact map 1e-8; ODE 1·lr (measured ≤ 0.58·lr at "
              "lr = 0.05); fixed point 1e-6")


def _grad_W(learner, enc, x1, x2):
    loss = learner.loss(x1, x2)
    (g,) = torch.autograd.grad(loss, [enc.W])
    return loss.detach(), g


@H4.check
@given(setup=linear_setups())
def test_simsiam_gradient_is_w_p_times_the_isoloss_gradient(impl, record, setup):
    """∇_W L_SimSiam = W_P ∇_W L_iso and L_iso = L_SimSiam (exact identity, Halvagal et al. 2022 eq. 8),
    Euclidean form."""
    require(impl, "simsiam", "isoloss", "loss:euclidean", "predictor:closed_form")
    _isoloss_gradient_identity(impl, record, setup, "euclidean")


@H4.check
@given(setup=linear_setups())
def test_cosine_isoloss_value_and_gradient_identity(impl, record, setup):
    """The same identity for the cosine forms."""
    require(impl, "simsiam", "isoloss", "loss:cosine", "predictor:closed_form")
    _isoloss_gradient_identity(impl, record, setup, "cosine")


def _isoloss_gradient_identity(impl, record, setup, form):
    lam0 = setup.spectrum(0.1, 2.0)
    x1, x2 = gaussian_views(64, setup.N, setup.sigma, replicas=setup.replicas, generator=setup.generator(7))
    enc_s, enc_i = setup.encoder(lam0), setup.encoder(lam0)
    v_s, g_s = _grad_W(impl.build("simsiam", enc_s, setup.M, alpha=setup.alpha, form=form), enc_s, x1, x2)
    v_i, g_i = _grad_W(impl.build("isoloss", enc_i, setup.M, alpha=setup.alpha, form=form), enc_i, x1, x2)
    W_P = eigen_predictor(correlation(enc_s(x1)), setup.alpha)
    err_v = (abs(v_s - v_i) / abs(v_s)).item()
    err_g = ((g_s - W_P @ g_i).norm() / g_s.norm()).item()
    if conventions.get(impl, "loss_value", "isoloss") == "surrogate":   # the value is not the method's: gradient only
        record(f"{form}: value identity not applicable — "
               + conventions.label("loss_value", "surrogate", declared=True), err_v, "n/a")
    else:
        record.within(f"{form}: |L_iso − L_SimSiam| / |L_SimSiam|", err_v, 0.0, error=err_v, tolerance=1e-10,
                      message=f"IsoLoss value differs from the SimSiam loss (rel {err_v:.3g}). If the "
                              f"implementation defines IsoLoss only through its gradient, declare conventions = "
                              f"{{'loss_value': 'surrogate'}} on the adapter (the gradient identity is still "
                              f"checked).")
    record.within(f"{form}: ‖∇L_SimSiam − W_P ∇L_iso‖ / ‖∇L_SimSiam‖", err_g, 0.0, error=err_g, tolerance=1e-10,
                  message=f"∇L_SimSiam ≠ W_P ∇L_iso (rel {err_g:.3g}): the W_P factor is not removed")


@H4.check
@given(setup=linear_setups())
def test_isoloss_eigenvalues_follow_logistic(impl, record, setup):
    require(impl, "isoloss", "loss:euclidean", "predictor:closed_form")
    lr, steps = 0.05, 600     # T = 30
    lam0 = setup.spectrum(0.1, 2.0)
    traj = population_run(impl, "isoloss", setup, lam0, lr=lr, steps=steps, form="euclidean")
    assert_follows_theory(record, traj, "isoloss", setup, lr)
    fp = th.fixed_point("isoloss", setup.alpha, setup.sigma)
    err = (traj.eig_C[-1] / fp - 1).abs().max().item()
    record.within("final eigenvalues vs κ^{-1/α}", traj.eig_C[-1].mean().item(), fp, error=err, tolerance=1e-6,
                  message=f"IsoLoss's eigenvalues do not end at κ^(−1/α) = {fp:.6g} (max rel err {err:.3g})")


# ----------------------------------------------------------------------------- H5
H5 = register(
    "H5", title="Eigenvalues act as learning-rate multipliers; IsoLoss equalises escape times",
    source=[cite("halvagal2022", "§3"), cite("halvagal2023", "abstract: eigenvalues act as learning-rate multipliers")],
    statement="A small mode needs t = (G(u1) − G(u0))/(2αη) ≈ λ0^{−α}/(2αη) to escape under SimSiam but "
              "ln((1/u0 − κ)/(1/u1 − κ))/(2αη) ≈ ln(1/λ0)/(2η) under IsoLoss (u = λ^α).",
    measures="time for each mode to reach half the fixed point, SimSiam vs IsoLoss (expected-gradient flow)",
    prediction="exact escape times from the closed-form ODE solutions; their ratio",
    tolerance="relative 0.5·lr on times and on their ratio (first-order Euler with linear interpolation of "
              "the crossing; measured ≤ 0.24·lr and ≤ 0.16·lr over λ0 ∈ [0.02, 0.1], σ ∈ [0, 0.3], α ∈ {½, 1})",
    derivation="The closed-form time is derived here (the papers state the slow-down, not this formula): G(u) = −1/u + "
               "κ ln(u/|1−κu|) is the antiderivative of 1/(u²(1−κu)) (partial fractions); "
               "IsoLoss's u-equation is logistic.")


def _crossing_time(traj, level: float) -> torch.Tensor:
    """First time each mode reaches ``level`` (linear interpolation between steps); inf if never."""
    lam = traj.eig_C                         # (K, S, M), rising modes
    above = lam >= level
    k = torch.where(above.any(0), above.to(torch.int64).argmax(0), torch.full(lam.shape[1:], -1))
    k0 = (k - 1).clamp_min(0)
    l0 = lam.gather(0, k0[None]).squeeze(0)
    l1 = lam.gather(0, k.clamp_min(0)[None]).squeeze(0)
    t0, t1 = traj.t[k0], traj.t[k.clamp_min(0)]
    frac = torch.where(l1 > l0, (level - l0) / (l1 - l0), torch.zeros_like(l0))
    return torch.where(k > 0, t0 + frac * (t1 - t0), torch.full_like(l0, math.inf))


@H5.check
@given(setup=linear_setups(M=(2, 12)))
# one of the ci profile's draws before this test's source last changed (Hypothesis keys the draws on the source):
# with noisy views (σ > 0) and α = ½ the loss-scale check tells a correlation estimate that is not detached
# (mutant correlation_not_detached), which the later draws (σ ≈ 0 or α = 1) do not
@example(setup=LinearSetup(N=15, M=8, alpha=0.5, sigma=1e-05, seed=43547, replicas=4))
def test_escape_times_follow_theory_and_isoloss_escapes_first(impl, record, setup):
    require(impl, "simsiam", "isoloss", "loss:euclidean", "predictor:closed_form")
    lr = 0.02
    lam0 = setup.spectrum(0.02, 0.1)
    level = 0.5 * th.fixed_point("simsiam", setup.alpha, setup.sigma)
    t_pred = {l: th.time_to_reach(lam0, level, l, setup.alpha, setup.sigma) for l in ("simsiam", "isoloss")}
    t_meas = {}
    for loss in ("simsiam", "isoloss"):
        steps = int(math.ceil((t_pred[loss].max().item() * 1.1) / lr))
        traj = population_run(impl, loss, setup, lam0, lr=lr, steps=steps, form="euclidean")
        # eig_C is sorted; lam0 sorted gives the mode correspondence (1-D flows never cross)
        t_meas[loss] = _crossing_time(traj, level)
        t_pred[loss] = th.time_to_reach(traj.eig_C[0], level, loss, setup.alpha, setup.sigma)
        err = max_rel_err(t_meas[loss], t_pred[loss])
        record.within(f"{loss} escape time (rel err)", t_meas[loss].mean().item(), t_pred[loss].mean().item(),
                      error=err, tolerance=0.5 * lr,
                      message=f"{loss}: escape times off by {err:.3g} (rel)")
    ratio_m = t_meas["simsiam"] / t_meas["isoloss"]
    ratio_p = t_pred["simsiam"] / t_pred["isoloss"]
    err = max_rel_err(ratio_m, ratio_p)
    record.within("escape-time ratio SimSiam/IsoLoss", ratio_m.mean().item(), ratio_p.mean().item(),
                  error=err, tolerance=0.5 * lr,
                  message=f"the escape-time ratio SimSiam/IsoLoss is off by {err:.3g} (rel)")
    assert (ratio_m > 1).all(), "IsoLoss should escape faster than SimSiam from λ0 ≤ 0.1"


# ----------------------------------------------------------------------------- H6
H6 = register(
    "H6", title="Cosine loss: ‖z‖ is conserved and the eigenvalues equalise",
    source=[cite("halvagal2023", "abstract: IsoLoss speeds up the initial learning dynamics")],
    statement="−cos(W_P z1, SG(z2)) is scale invariant, so z·∇_z L = 0: in gradient flow ‖W‖ (hence tr C) is "
              "conserved and Euler steps raise ‖W‖² by exactly η²‖∇_W L‖²; the eigenvalues equalise "
              "(ω_m → ω̄ = Σω²λ/Σωλ). Cosine IsoLoss also equalises and grows ‖z‖ while the spectrum is "
              "anisotropic (z·∇_z L = −‖z‖(1 − (p̂·ẑ)²)/‖p‖ ≤ 0 for σ = 0; it vanishes at isotropy).",
    measures="‖W‖²_F step by step; condition number λ_max/λ_min of C after minibatch SGD (its median over "
             "the last 100 of 600 steps: the drift, not a rare kick of the batch noise)",
    prediction="Δ‖W‖² = lr²‖G‖² exactly; condition number → 1",
    tolerance="norm bookkeeping 1e-9 relative to ‖W‖² (float64 rounding); condition number ≤ 1.5 after 600 "
              "steps from ≥ 5 (measured ≤ 1.25 with batch 256: the SGD noise floor). M ≥ 3: the cosine gradient "
              "scales as 1/‖p‖, and for M = 2 E[1/‖p‖²] diverges (a 2-D Gaussian p), so SGD's gradient has infinite "
              "variance; a thorough draw (M = 2, N = 10, lr 0.5) took one kick that raised ‖W‖² from 5.6 to 1,823 and "
              "left the condition number at 700 (the effective step ∝ 1/‖W‖² then stalls recovery).")


WINDOW = 100   # steps of H6's final average (one record per step)


@H6.check
@given(setup=linear_setups(M=(3, 10), replicas=3), loss=st.sampled_from(["simsiam", "isoloss"]))
def test_cosine_loss_conserves_norm_and_equalises(impl, record, setup, loss):
    """H6 for the cosine losses the adapter has: a drawn loss it lacks is replaced by one it has (a skip on
    that draw would skip the whole test, and with it the other loss)."""
    provided = [m for m in ("simsiam", "isoloss") if m in impl.capabilities]
    require(impl, "loss:cosine", "predictor:closed_form", *([] if provided else ["simsiam"]))
    loss = loss if loss in provided else provided[0]
    lam0 = setup.spectrum(0.2, 2.0)
    lam0[..., 0], lam0[..., -1] = 0.2, 2.0            # initial condition number 10
    lr = 0.5
    traj = sgd_run(impl, loss, setup, lam0, lr=lr, steps=600, batch=256, form="cosine")
    inc = traj.sq_norm[1:] - traj.sq_norm[:-1]
    if loss == "simsiam":
        err = ((inc - lr ** 2 * traj.grad_sq[:-1]).abs() / traj.sq_norm[:-1]).max().item()
        record.within("|Δ‖W‖² − lr²‖G‖²| / ‖W‖²", err, 0.0, error=err, tolerance=1e-9,
                      message="the cosine gradient is not orthogonal to W: the loss is not scale invariant")
    elif setup.sigma == 0:
        assert (inc >= 0).all(), "cosine IsoLoss without augmentation noise must grow ‖W‖ at every step"
    else:   # with noise the per-batch sign fluctuates once isotropic; the net change is growth
        assert traj.sq_norm[-1].min() > traj.sq_norm[0].min(), "cosine IsoLoss should grow ‖W‖"
    # The drift equalises the spectrum; batch noise then keeps it near isotropy with rare kicks at small M
    # (a thorough draw, M = 2, σ = 0.27, lr 0.5: 1.0–1.1 over steps 100–1,200 except one kick to 3.8 near step
    # 580 that relaxed within ~60 steps; 4 % of steps above 1.5). The claim is about the drift, so the
    # statistic is the median condition number over the last WINDOW steps (that draw: 1.045).
    cond_t = traj.eig_C[-WINDOW:, :, -1] / traj.eig_C[-WINDOW:, :, 0]          # (WINDOW, replicas)
    cond = cond_t.median(0).values.max().item()
    record.within(f"{loss}: condition number of C, median of the last {WINDOW} steps", cond, 1.0, error=cond - 1,
                  tolerance=0.5, message=f"eigenvalues did not equalise: condition number {cond:.3g}")


# ----------------------------------------------------------------------------- H7
H7 = register(
    "H7", title="The linear network's NTK is (x_iᵀx_j) I_M; every NTK is PSD",
    source=[cite("halvagal2022", "eqs. 3–4; appendix A.1, eqs. 9–12"), cite("jacot2018")],
    statement="For z = Wx, Θ(x_i, x_j) = (x_iᵀx_j) I_M, invariant under orthogonal transforms of the output; "
              "for any network Θ ⪰ 0, so ⟨−∇_Z L, Ż⟩ = η⟨∇_Z L, Θ∇_Z L⟩ ≥ 0.",
    measures="empirical NTK by autograd Jacobians; its eigenvalues for a ReLU MLP; ⟨−∇_Z L, Ż⟩",
    prediction="Θ = (XXᵀ) ⊗ I_M exactly; min eig(Θ) ≥ 0; inner product ≥ 0",
    tolerance="1e-12 relative (float64); PSD to −1e-10·λ_max(Θ)")


def empirical_ntk(model: torch.nn.Module, X: torch.Tensor) -> torch.Tensor:
    """Θ = J Jᵀ with J = ∂ vec(f(X)) / ∂θ, shape (B, M, B, M).

    (Reverse mode, one output at a time: these Jacobians have at most a few dozen rows, and
    ``torch.func.jacrev`` would import ``torch._dynamo``, 1.7 s per process.)"""
    names, params = zip(*((k, v.detach()) for k, v in model.named_parameters()))
    f = lambda *p: torch.func.functional_call(model, dict(zip(names, p)), (X,))
    jac = torch.autograd.functional.jacobian(f, params)            # per parameter: (B, M, *its shape)
    B, M = model(X).shape
    J = torch.cat([j.reshape(B * M, -1) for j in jac], dim=1)
    return (J @ J.T).reshape(B, M, B, M)


def linear_net(N: int, M: int, W: torch.Tensor) -> torch.nn.Module:
    net = torch.nn.Linear(N, M, bias=False).double()
    net.weight.data.copy_(W)
    return net


def check_linear_ntk(record, setup, make_net=linear_net) -> None:
    """Θ of ``make_net(N, M, W)`` equals (x_iᵀx_j) I_M and is invariant under output rotations."""
    g = setup.generator(11)
    W = torch.randn(setup.M, setup.N, generator=g, dtype=torch.float64)
    X = torch.randn(6, setup.N, generator=g, dtype=torch.float64)
    theta = empirical_ntk(make_net(setup.N, setup.M, W), X)
    pred = th.linear_ntk(X, setup.M)
    err = ((theta - pred).norm() / pred.norm()).item()
    record.within("‖Θ − (XXᵀ)⊗I‖ / ‖(XXᵀ)⊗I‖", err, 0.0, error=err, tolerance=1e-12,
                  message="the NTK is not (x_iᵀx_j) I_M")
    U = torch.linalg.qr(torch.randn(setup.M, setup.M, generator=g, dtype=torch.float64))[0]
    err_rot = ((empirical_ntk(make_net(setup.N, setup.M, U.T @ W), X) - theta).norm() / theta.norm()).item()
    assert err_rot <= 1e-12, "the linear NTK changed under an orthogonal transform of the output"


@H7.check
@given(setup=linear_setups(M=(2, 8), replicas=1))
def test_linear_ntk_is_identity_times_gram(record, setup):
    check_linear_ntk(record, setup)


def ntk_update(theta: torch.Tensor, gradZ: torch.Tensor) -> torch.Tensor:
    """Eq. 3 with η = 1: Ż = −Θ ∇_Z L."""
    return -(theta @ gradZ)


def check_ntk_descent(record, seed: int, update=ntk_update) -> None:
    """The empirical NTK of a ReLU MLP is PSD and ``update`` never ascends the loss (eq. 4)."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(5, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3)).double()
    X = torch.randn(8, 5, generator=g, dtype=torch.float64)
    theta = empirical_ntk(net, X).reshape(24, 24)
    ev = torch.linalg.eigvalsh(theta)
    record.within("min eig(Θ) / max eig(Θ)", (ev[0] / ev[-1]).item(), 0.0, error=max(-(ev[0] / ev[-1]).item(), 0),
                  tolerance=1e-10, message="the empirical NTK is not positive semi-definite")
    Z = net(X)
    target = torch.randn(Z.shape, generator=g, dtype=torch.float64)
    gradZ = (Z - target).detach().reshape(-1)            # ∇_Z of ½‖Z − SG(target)‖²
    inner = (-gradZ @ update(theta, gradZ)).item()
    record.within("⟨−∇_Z L, Ż⟩ / ‖∇_Z L‖²", inner / (gradZ @ gradZ).item(), "≥ 0", error=max(-inner, 0.0),
                  tolerance=0.0, message="eq. 4 violated: the representational update ascends the loss")


@H7.check
@given(seed=st.integers(0, 2 ** 31 - 1))
def test_ntk_psd_and_updates_descend(record, seed):
    check_ntk_descent(record, seed)


# ----------------------------------------------------------------------------- H8
H8 = register(
    "H8", title="A λ_max-normalised predictor fixes the top mode; every mode converges to λ_max",
    source=[cite("halvagal2022", "eq. 1"), cite("halvagal2022", "authors' code: ω = ((λ/λ_max)₊ + ε)^α"),
            cite("tian2021", "§5 (DirectPred)")],
    statement="With ω = ((λ/λ_max) + ε)^α the top mode has ω_top = (1+ε)^α and evolves as "
              "λ_top(0)·exp(2η ω_top(1 − κω_top) t) (stationary for σ = ε = 0); all modes converge to λ_top.",
    measures="top eigenvalue and the ratios λ_m/λ_max under expected-gradient flow",
    prediction="closed-form top-mode exponential; ratios → 1",
    tolerance="exact map 1e-8; top mode vs exponential 1.1·lr·r_top²·T + 1e-12 (the Euler gap's leading "
              "order, derived); ratios within 1e-3 of 1",
    derivation="Derived here (the papers use this normalisation without stating its effect): ω_top = (1+ε)^α is "
               "constant, so the top mode's rate r(ω_top) is constant; d ln(λ_m/λ_top)/dt "
               "= 2η(r(ω_m) − r(ω_top)) > 0 for ω_m < ω_top ≤ 1/… (r increases towards ω_top from below).")


@H8.check
@given(setup=linear_setups(), zero_noise=st.booleans())
def test_normalized_predictor_converges_to_lambda_max(impl, record, setup, zero_noise):
    require(impl, "simsiam", "loss:euclidean", "predictor:normalize")
    if zero_noise:
        setup = LinearSetup(setup.N, setup.M, setup.alpha, 0.0, setup.seed, setup.replicas)
    lr, steps = 0.1, 300      # T = 30: min λ_m/λ_max within 1e-12 of 1 (theory, λ0 ∈ [0.2, 2]); 3.6e-8 at T = 20
    lam0 = setup.spectrum(0.2, 2.0)
    traj = population_run(impl, "simsiam", setup, lam0, lr=lr, steps=steps, form="euclidean", normalize=True)
    assert_follows_theory(record, traj, "simsiam", setup, lr, normalize=True)
    top = traj.eig_C[:, :, -1]
    pred_top = th.normalized_top_mode(traj.eig_C[0, :, -1], traj.t, setup.alpha, setup.sigma)
    err = max_rel_err(top, pred_top)
    # discrete λ0(1+ηr)^{2k} vs continuous λ0 e^{2ηrk}: relative gap 1 − e^{−kη²r²} ≤ lr·r²·t (leading order)
    r_top = th.mode_rate("simsiam", torch.tensor(1.0, dtype=torch.float64), setup.sigma).item()
    tol = 1.1 * lr * r_top ** 2 * traj.t[-1].item() + 1e-12
    record.within("top mode vs λ_top(0)·exp(2η r(ω_top) t)", top[-1].mean().item(), pred_top[-1].mean().item(),
                  error=err, tolerance=tol,
                  message=f"top mode departs from its closed form by {err:.3g}")
    ratio = (traj.eig_C[-1] / traj.eig_C[-1, :, -1:]).min().item()
    record.within("min λ_m/λ_max at the end", ratio, 1.0, error=1 - ratio, tolerance=1e-3,
                  message=f"modes did not converge to λ_max (min ratio {ratio:.4g})")
