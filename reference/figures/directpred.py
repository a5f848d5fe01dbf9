"""DirectPred (Tian, Chen & Ganguli 2021) and the weight-decay threshold (Wang et al. 2021):
theory drawn over simulation (claims T3, T4, W1).

Five panels (c–e in :mod:`ncspec.reference.figures._directpred_threshold`):

* **a)** The aligned learned-predictor dynamics (T3) of one eigenmode ``(p_j, s_j)``
  (``p_j`` eigenvalue of ``W_p``, ``s_j`` of ``F = W Wᵀ``) at ``σ² = 0.5``, ``η = 0.05``,
  ``τ = 1``, ``α_p = 1``, drawn in the plane ``(p, √s)`` so that the invariant parabola
  ``s = p²/α_p`` is the pair of lines ``√s = |p|/√α_p`` and the collapsed state
  ``(0, 0)`` is in view; the inset zooms on the saddle. Grey: streamlines of
  :func:`ncspec.reference.theory.directpred.aligned_rates`. Red shade: the collapse basin,
  the initial conditions that end at 0, found by integrating the 2-D ODE from every
  point of a grid (RK4, vectorised); its edge is the stable manifold of the saddle
  ``(p*−, p*−²/α_p)``, drawn in dark red by integrating backwards from the saddle.
  Coloured solid lines: the full matrix model (reference ``LearnedPredictorSiamese``,
  symmetric predictor, ``W_a = τW``, weight decay η on W and W_p, population flow,
  M = N = 4, two replicas of four modes), started aligned (``W_p`` and ``W Wᵀ`` share
  eigenvectors ``U``); ``p_j = u_jᵀ W_p u_j`` and ``s_j = u_jᵀ W Wᵀ u_j`` on the recorded
  ``W_p`` and ``W``. These are the eigenvalues because the model stays aligned: the
  off-diagonal entries of ``UᵀW_pU`` and ``UᵀFU`` stay at round-off (T2: the commutator
  obeys a linear ODE, so 0 is invariant). Dashed, same colour: the T3 ODE from the
  same start.
* **b)** The p-dynamics on the parabola (T4): :func:`~ncspec.reference.theory.directpred.
  parabola_rate` against p for several η at σ² = 0.5. Its roots 0, ``p*−`` (unstable) and
  ``p*+`` (stable) merge in a saddle-node at ``η_c = τ²/(4(1+σ²)) = 1/6``; above it
  every mode collapses. Thick solid: ``(p, ṗ)`` of the matrix model started on the
  parabola (ṗ by finite differences of the recorded p), at η = 0.05 (bistable) and
  η = 0.2 > η_c (every mode collapses, slowly past the ghost of the saddle-node). Right:
  the bifurcation diagram ``p*±(η)``, with the roots of the curves on the left marked.
* **c)–e)** the W1 threshold for closed-form predictors, and DirectCopy: drawn and described in
  :mod:`ncspec.reference.figures._directpred_threshold`.

All simulations are population (expected-gradient) flows: gradient steps on the
moment-matched batch of :func:`ncspec.reference.linear.population_views`, t = lr · step
(the closed-form runs take a few short steps first and longer ones once the fast
transient has passed; :func:`ncspec.reference.linear.simulate` is called once per stage).
"""
from __future__ import annotations

import math
import pathlib

import numpy as np
import torch
from ncspec.reference.linear import LinearEncoder, population_views, simulate, weights_with_spectrum
from ncspec.reference.linear.model import random_orthogonal
from ncspec.reference.methods import build
from ncspec.reference.ode import rk4_step
from ncspec.reference.theory import directpred as theory

from ._directpred_threshold import ETA_W, REPLICAS_W, SIGMA2_W, TAU_W, panel_copy, panel_threshold
from ._output import render

# ---- panels a, b: Tian et al.'s learned predictor (T3, T4)
SIGMA2_T, ETA_T, TAU, ALPHA_P = 0.5, 0.05, 1.0, 1.0
LR_T, T_T = 0.05, 80.0
#: a): initial (p, √s) of the simulated modes, two replicas of four modes each.
STARTS_A = (((0.95, 0.12), (-0.30, 0.45), (0.30, 0.95), (0.30, 0.035)),
            ((-0.32, 0.16), (1.05, 0.014), (0.02, 0.030), (-0.12, 0.30)))
_P_LIM, _R_LIM = (-0.42, 1.12), (0.0, 1.0)
_P_ZOOM, _R_ZOOM = (-0.1, 0.22), (0.0, 0.13)
_BASIN = "#f4a6a6"
#: b): η of the simulated runs and the initial p (on the parabola) of their modes.
ETA_B = {0.05: (-0.10, 0.045, 0.065, 0.80), 0.2: (-0.10, 0.30, 0.50, 0.80)}
#: b): η → colour of the theory curves (η_c = 1/6 in black)
ETAS_B = {0.05: "C0", 0.1: "C2", 0.14: "C1", 1.0 / 6.0: "k", 0.2: "C3"}
_P_B = (-0.12, 0.76)



# ----------------------------------------------------------------------------- theory helpers
def _rates_pr(p: torch.Tensor, r: torch.Tensor, eta: float):
    """T3 in the plane (p, r = √s): ``ṙ = ṡ/(2r)`` (r > 0)."""
    dp, ds = theory.aligned_rates(p, r * r, alpha_p=ALPHA_P, sigma=math.sqrt(SIGMA2_T), tau=TAU, eta=eta)
    return dp, ds / (2.0 * r)


def _rk4(f, x: tuple, dt: float, steps: int, every: int = 0):
    """Classical RK4 (:func:`ncspec.reference.ode.rk4_step`) on a tuple of arrays; returns the end state
    (and every ``every``-th state)."""
    path = [x] if every else None
    velocity = lambda state: tuple(f(*state))
    for k in range(steps):
        x = rk4_step(velocity, x, dt)
        if every and (k + 1) % every == 0:
            path.append(x)
    return (x, path) if every else x


def _aligned_ode(p0: torch.Tensor, s0: torch.Tensor, eta: float, T: float, dt: float = 0.1,
                 every: int = 2):
    """T3 ODE from (p0, s0) (any shape); returns t (K,), p, s (K, ...)."""
    f = lambda p, s: theory.aligned_rates(p, s, alpha_p=ALPHA_P, sigma=math.sqrt(SIGMA2_T), tau=TAU, eta=eta)
    steps = int(round(T / dt))
    _, path = _rk4(f, (p0, s0), dt, steps, every)
    t = torch.arange(len(path), dtype=torch.float64) * dt * every
    return t, torch.stack([q[0] for q in path]), torch.stack([q[1] for q in path])


def _collapse_basin(p_lim=_P_LIM, r_lim=_R_LIM, n_p: int = 211, n_r: int = 151, T: float = 200.0,
                    dt: float = 0.4):
    """Grid (p, r) over the given limits and the mask of initial conditions whose p ends at 0."""
    p = torch.linspace(*p_lim, n_p, dtype=torch.float64)
    r = torch.linspace(*r_lim, n_r, dtype=torch.float64)
    P, R = torch.meshgrid(p, r, indexing="xy")                 # (n_r, n_p)
    f = lambda p, s: theory.aligned_rates(p, s, alpha_p=ALPHA_P, sigma=math.sqrt(SIGMA2_T), tau=TAU, eta=ETA_T)
    pT, _ = _rk4(f, (P.clone(), R * R), dt, int(round(T / dt)))
    p_minus, p_plus = (float(x) for x in theory.fixed_points(SIGMA2_T, ETA_T, TAU))
    # survivors end at p*+, the rest at 0 (p decays at rate ≈ η there); the midpoint separates them
    return P, R, pT < 0.5 * (p_minus + p_plus)


def _separatrix(dt: float = 0.05, T: float = 400.0):
    """Stable manifold of the saddle (p*−, p*−²/α_p): both branches, integrated backwards in time.

    Returns ``[(p, r), (p, r)]`` (numpy, r = √s), each cut where it leaves the drawn region.
    The branch towards large p hugs s = 0 and creeps at rate ≈ η, hence the long T.
    """
    p_minus = float(theory.fixed_points(SIGMA2_T, ETA_T, TAU)[0])
    x0 = torch.tensor([p_minus, p_minus ** 2 / ALPHA_P], dtype=torch.float64)
    kw = dict(alpha_p=ALPHA_P, sigma=math.sqrt(SIGMA2_T), tau=TAU, eta=ETA_T)
    J = torch.autograd.functional.jacobian(lambda x: torch.stack(theory.aligned_rates(x[0], x[1], **kw)), x0)
    lam, vec = torch.linalg.eig(J)
    v = vec[:, int(torch.argmin(lam.real))].real.numpy()        # the stable direction
    # both branches at once, as numpy arrays of 2 (aligned_rates is plain arithmetic)
    start = x0.numpy()[:, None] + np.array([1e-6, -1e-6])[None, :] * v[:, None]
    back = lambda p, s: tuple(-a for a in theory.aligned_rates(p, s, **kw))
    with np.errstate(over="ignore", invalid="ignore"):          # the left branch runs off to infinity
        _, path = _rk4(back, (start[0], start[1]), dt, int(round(T / dt)), every=5)
    P = np.stack([q[0] for q in path])
    R = np.sqrt(np.clip(np.stack([q[1] for q in path]), 0.0, None))
    branches = []
    for b in range(2):
        p, r = P[:, b], R[:, b]
        inside = (p >= _P_LIM[0] - 0.05) & (p <= _P_LIM[1] + 0.05) & (r <= _R_LIM[1] + 0.05) & np.isfinite(p)
        stop = int(np.argmin(inside)) if not inside.all() else len(p)
        branches.append((p[:stop + 1], r[:stop + 1]))
    return branches


# ----------------------------------------------------------------------------- simulations
def _learned_run(p0: torch.Tensor, s0: torch.Tensor, eta: float, generator: torch.Generator):
    """Matrix model (T) from aligned ``W_p = U diag(p0) Uᵀ``, ``W Wᵀ = U diag(s0) Uᵀ``; p0, s0 (S, M).

    Returns t (K,), p, s (K, S, M) in the fixed eigenbasis U, and the largest off-diagonal
    entry of ``UᵀW_pU``, ``UᵀFU`` over the run (0 while aligned).
    """
    S, M = p0.shape
    sigma = math.sqrt(SIGMA2_T)
    U = random_orthogonal(S, M, generator=generator)
    V = random_orthogonal(S, M, generator=generator)
    W = (U * s0.sqrt().unsqueeze(-2)) @ V.transpose(-1, -2)
    W_p = (U * p0.unsqueeze(-2)) @ U.transpose(-1, -2)
    encoder = LinearEncoder(W)
    learner = build("learned_predictor", encoder, M, symmetric=True, tau=TAU, weight_decay=eta,
                    alpha_p=ALPHA_P, predictor_init=W_p)
    x1, x2 = population_views(M, sigma)
    traj = simulate(learner, encoder, lambda k: (x1, x2), lr=LR_T, steps=int(round(T_T / LR_T)),
                    sigma=sigma, record_every=2,
                    probe=lambda l, e: {"W_p": l.W_p.detach(), "W": e.W.detach()})
    Wt = traj.probes["W"]
    Ut = U.transpose(-1, -2)
    P = Ut @ traj.probes["W_p"] @ U
    Fm = Ut @ (Wt @ Wt.transpose(-1, -2)) @ U
    p, s = torch.diagonal(P, dim1=-2, dim2=-1), torch.diagonal(Fm, dim1=-2, dim2=-1)
    off = max(float((P - torch.diag_embed(p)).abs().amax()), float((Fm - torch.diag_embed(s)).abs().amax()))
    return traj.t, p, s, off


# ----------------------------------------------------------------------------- panels
def _phase_layers(ax, p_lim, r_lim, sep, sim, ode, cmap, *, density: float, marker_scale: float = 1.0):
    """Streamlines, collapse basin, separatrix, parabola, trajectories and fixed points in (p, √s)."""
    from matplotlib.colors import LinearSegmentedColormap

    gp = torch.linspace(*p_lim, 80, dtype=torch.float64)
    gr = torch.linspace(r_lim[0] + 0.004 * (r_lim[1] - r_lim[0]), r_lim[1], 70, dtype=torch.float64)
    Pg, Rg = torch.meshgrid(gp, gr, indexing="xy")
    dp, dr = _rates_pr(Pg, Rg, ETA_T)
    speed = np.log10(np.hypot(dp.numpy(), dr.numpy()) + 1e-12)
    greys = LinearSegmentedColormap.from_list("field", ["0.84", "0.5"])
    ax.streamplot(gp.numpy(), gr.numpy(), dp.numpy(), dr.numpy(), color=speed, cmap=greys,
                  density=density, linewidth=0.6, arrowsize=0.8, zorder=1)
    P, R, collapse = _collapse_basin(p_lim, r_lim, n_p=161, n_r=121)
    ax.contourf(P.numpy(), R.numpy(), collapse.numpy().astype(float), levels=[0.5, 1.5],
                colors=[_BASIN], alpha=0.6, zorder=0)
    for bp, br in sep:
        ax.plot(bp, br, "-", color="darkred", lw=1.2, zorder=2)
    pl = np.linspace(*p_lim, 200)
    ax.plot(pl, np.abs(pl) / math.sqrt(ALPHA_P), "k--", lw=1.0, zorder=2)

    p, r = sim
    p_ode, r_ode = ode
    for j in range(p.shape[1]):
        c = cmap(j % 10)
        ax.plot(p[:, j], r[:, j], "-", color=c, lw=2.6, alpha=0.55, zorder=3)
        ax.plot(p_ode[:, j], r_ode[:, j], "--", color=c, lw=1.1, zorder=4)
        ax.plot(p[0, j], r[0, j], "o", color=c, mec="k", mew=0.6, ms=6 * marker_scale, zorder=5)

    p_minus, p_plus = (float(x) for x in theory.fixed_points(SIGMA2_T, ETA_T, TAU))
    inside = lambda p, r: p_lim[0] <= p <= p_lim[1] and r_lim[0] <= r <= r_lim[1]
    star = dict(color="crimson", mec="k", mew=0.6, ms=14 * marker_scale)
    for p_, marker in ((0.0, "*"), (p_plus, "*"), (p_minus, "o")):
        r_ = abs(p_) / math.sqrt(ALPHA_P)
        if not inside(p_, r_):
            continue
        style = star if marker == "*" else dict(mfc="white", mec="crimson", mew=1.5, ms=7 * marker_scale)
        ax.plot([p_], [r_], marker, zorder=6, clip_on=False, ls="none", **style)
    ax.set_xlim(*p_lim)
    ax.set_ylim(*r_lim)


def _panel_phase(ax, generator: torch.Generator, cmap) -> dict:
    starts = torch.tensor(STARTS_A, dtype=torch.float64)               # (S, M, 2) as (p, r)
    p0, s0 = starts[..., 0], starts[..., 1] ** 2
    t, p, s, off = _learned_run(p0, s0, ETA_T, generator)
    _, p_ode, s_ode = _aligned_ode(p0, s0, ETA_T, T_T)
    flat = lambda x: x.reshape(x.shape[0], -1).numpy()
    sim = flat(p), np.sqrt(np.clip(flat(s), 0.0, None))
    ode = flat(p_ode), np.sqrt(np.clip(flat(s_ode), 0.0, None))
    sep = _separatrix()
    _phase_layers(ax, _P_LIM, _R_LIM, sep, sim, ode, cmap, density=1.3)

    # zoom on the saddle and the origin
    ins = ax.inset_axes([0.035, 0.56, 0.34, 0.40])
    _phase_layers(ins, _P_ZOOM, _R_ZOOM, sep, sim, ode, cmap, density=0.9, marker_scale=0.75)
    ins.tick_params(labelsize=7)
    ins.set_title(r"zoom: the saddle $p^*_-$ and the collapse basin", fontsize=7.5, pad=2)
    ax.indicate_inset_zoom(ins, edgecolor="0.3")

    p_minus, p_plus = (float(x) for x in theory.fixed_points(SIGMA2_T, ETA_T, TAU))
    ax.plot([], [], "*", color="crimson", mec="k", mew=0.6, ms=12, ls="none",
            label=rf"stable: 0 and $p^*_+ = {p_plus:.4f}$")
    ax.plot([], [], "o", mfc="white", mec="crimson", mew=1.5, ms=7, ls="none",
            label=rf"saddle $p^*_- = {p_minus:.4f}$")
    ax.plot([], [], "k--", lw=1.0, label=r"invariant parabola $s = p^2/\alpha_p$")
    ax.fill_between([], [], color=_BASIN, alpha=0.6, label="collapse basin (RK4 from a grid)")
    ax.plot([], [], "-", color="darkred", lw=1.2, label=r"its edge: stable manifold of $p^*_-$")
    ax.plot([], [], "-", color="0.35", lw=2.6, alpha=0.55, label="matrix model (simulation)")
    ax.plot([], [], "--", color="0.2", lw=1.1, label="T3 ODE (theory), same start")
    ax.set_xlabel(r"$p_j$ (eigenvalue of the predictor $W_p$)")
    ax.set_ylabel(r"$\sqrt{s_j}$   ($s_j$: eigenvalue of $F = WW^\top$)")
    ax.legend(loc="center right", fontsize=7.5, framealpha=0.92, bbox_to_anchor=(1.0, 0.47))
    ax.set_title(rf"a) aligned dynamics (T3): $\sigma^2={SIGMA2_T:g}$, $\eta={ETA_T:g}$, $\tau={TAU:g}$, "
                 rf"$\alpha_p={ALPHA_P:g}$;  M = N = 4, runs to t = {T_T:g}", fontsize=10.5)
    return dict(off_diagonal=off)


def _panel_parabola(ax, ax_bif, generator: torch.Generator) -> None:
    eta_c = theory.critical_weight_decay(SIGMA2_T, TAU)
    p = torch.linspace(*_P_B, 400, dtype=torch.float64)
    ax.axhline(0.0, color="0.3", lw=0.7, zorder=1)
    for eta, c in ETAS_B.items():
        crit = abs(eta - eta_c) < 1e-12
        v = theory.parabola_rate(p, sigma2=SIGMA2_T, eta=eta, tau=TAU).numpy()
        lab = (r"$\eta_c = \tau^2/(4(1+\sigma^2)) = 1/6$" if crit else rf"$\eta = {eta:g}$")
        ax.plot(p.numpy(), v, "--", color=c, lw=1.6 if crit else 1.2, label=lab, zorder=3)
        pm, pp = (float(x) for x in theory.fixed_points(SIGMA2_T, eta, TAU))
        if crit:                                                     # saddle-node: half stable
            ax.plot([pp], [0.0], "o", color=c, ms=8, mfc="0.65", mec="k", zorder=6)
            ax_bif.plot([eta], [pp], "o", color=c, ms=6, mfc="0.65", mec="k", zorder=6)
        elif math.isfinite(pp):
            for a in (ax, ax_bif):
                y = 0.0 if a is ax else pp
                a.plot([pp if a is ax else eta], [y], "o", color=c, mec="k", mew=0.5, ms=6, zorder=6)
                if pm > 0:
                    y = 0.0 if a is ax else pm
                    a.plot([pm if a is ax else eta], [y], "o", mfc="white", mec=c, mew=1.4, ms=6, zorder=6)
    ax.plot([0.0], [0.0], "o", color="crimson", mec="k", mew=0.5, ms=6, zorder=7)

    # simulated: the matrix model started on the parabola; ṗ by finite differences of p(t)
    for eta, p0s in ETA_B.items():
        p0 = torch.tensor([p0s], dtype=torch.float64)
        t, ps, _, _ = _learned_run(p0, p0 ** 2 / ALPHA_P, eta, generator)
        dt = float(t[1] - t[0])
        for j in range(ps.shape[-1]):
            x = ps[:, 0, j].numpy()
            v = np.gradient(x, dt)
            ax.plot(x, v, "-", color=ETAS_B[eta], lw=4.5, alpha=0.35, zorder=2, solid_capstyle="round")
            ax.plot(x[0], v[0], "o", color=ETAS_B[eta], mec="k", mew=0.5, ms=4.5, zorder=4)
    etas = " and ".join(f"{e:g}" for e in ETA_B)
    ax.plot([], [], "-", color="0.4", lw=4.5, alpha=0.35, label=rf"matrix model on the parabola, $\eta$ = {etas}")
    ax.plot([], [], "o", color="0.6", mec="k", mew=0.5, ms=6, ls="none", label=r"stable $p^*_+$ (and 0)")
    ax.plot([], [], "o", mfc="white", mec="0.3", mew=1.4, ms=6, ls="none", label=r"unstable $p^*_-$")
    ax.set_xlim(*_P_B)
    ax.set_ylim(-0.065, 0.088)
    ax.set_xlabel(r"$p$ (on the parabola $s = p^2/\alpha_p$)")
    ax.set_ylabel(r"$\dot p = p\,(\tau p - (1+\sigma^2)p^2 - \eta)$")
    ax.legend(loc="upper left", fontsize=7.5, framealpha=0.92, ncol=2)
    ax.set_title(rf"b) the p-dynamics on the parabola (T4), $\sigma^2 = {SIGMA2_T:g}$, $\tau = {TAU:g}$",
                 fontsize=10.5)

    eta = np.linspace(0.0, 0.21, 400)
    fp = [theory.fixed_points(SIGMA2_T, e, TAU) for e in eta]
    ax_bif.plot(eta, [float(x[1]) for x in fp], "-", color="0.2", lw=1.3, label=r"$p^*_+$ (stable)")
    ax_bif.plot(eta, [float(x[0]) for x in fp], ":", color="0.2", lw=1.4, label=r"$p^*_-$ (unstable)")
    ax_bif.plot(eta, 0 * eta, "-", color="crimson", lw=1.3, label="0 (stable)")
    ax_bif.axvline(eta_c, color="k", lw=0.8, ls="--")
    ax_bif.text(eta_c, 0.93, r"$\eta_c$ ", ha="right", va="top", fontsize=9)
    ax_bif.set_xlim(0.0, 0.21)
    ax_bif.set_ylim(-0.03, 1.0)
    ax_bif.set_xlabel(r"weight decay $\eta$")
    ax_bif.set_ylabel(r"fixed point $p^*$")
    ax_bif.legend(loc="upper right", fontsize=7.5, framealpha=0.92, bbox_to_anchor=(1.0, 0.86))
    ax_bif.set_title("bifurcation diagram", fontsize=10.5)


# ----------------------------------------------------------------------------- entry point
def directpred_figure(out_dir: str | pathlib.Path, *, seed: int = 0,
                      fmt=("png", "pdf")) -> list[pathlib.Path]:
    """Draw the DirectPred / weight-decay-threshold figure to ``out_dir/directpred.<fmt>``.

    Args:
        out_dir: folder to write into; created if missing. Must not be a file.
        seed: seeds the random eigenvectors (panels a, b) and the random initial
            weights (c–e); the population flows are otherwise deterministic.
        fmt: file formats (matplotlib extensions), e.g. ``("png", "pdf")``.

    Returns:
        The written paths, in the order of ``fmt``.
    """
    return render("directpred", out_dir, fmt, seed, lambda out, f: _draw(out, seed, f))


def _draw(out_dir: pathlib.Path, seed: int, fmt: tuple[str, ...]) -> list[pathlib.Path]:
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    generator = torch.Generator().manual_seed(seed)
    fig = Figure(figsize=(18, 11.5), layout="constrained")
    fig.get_layout_engine().set(rect=(0.0, 0.0, 1.0, 0.95), h_pad=0.08, w_pad=0.06)
    gs = fig.add_gridspec(2, 12, height_ratios=[1.15, 1.0])
    ax_a, ax_b, ax_bif = fig.add_subplot(gs[0, :6]), fig.add_subplot(gs[0, 6:10]), fig.add_subplot(gs[0, 10:])
    ax_c, ax_d, ax_e = (fig.add_subplot(gs[1, 4 * i:4 * i + 4]) for i in range(3))

    _panel_phase(ax_a, generator, colormaps["tab10"])
    _panel_parabola(ax_b, ax_bif, generator)

    N = len(SIGMA2_W)
    lam = 0.3 + 0.4 * torch.rand((REPLICAS_W, N), generator=generator, dtype=torch.float64)
    W0 = weights_with_spectrum(lam, N, generator=generator)      # random, not aligned with the e_j
    panel_threshold(ax_c, 0.5, W0, r"c) W1, $W_p = C^{1/2}$ (DirectPred's square root), "
                     rf"$\eta = {ETA_W:g}$, $\tau = {TAU_W:g}$, M = N = {N}")
    set1 = panel_threshold(ax_d, 1.0, W0, r"d) W1, $W_p = C$ ($\alpha = 1$), "
                            rf"$\eta = {ETA_W:g}$, $\tau = {TAU_W:g}$, M = N = {N}")
    panel_copy(ax_e, W0, set1)

    fig.suptitle("DirectPred (Tian, Chen & Ganguli 2021) and the weight-decay threshold "
                 "(Wang et al. 2021) — solid/markers: simulation, dashed: theory",
                 fontsize=13, y=0.995)
    fig.text(0.5, 0.967,
             r"Population (expected-gradient) flows of the reference learners on the linear model "
             r"$z = Wx$, $x\sim N(0, I)$, views $x + \sigma\epsilon$.  Top: learned predictor "
             r"(claims T3, T4).  Bottom: closed-form predictors on anisotropic augmentation "
             r"$X' = \mathrm{diag}(\sigma_j^2)$ (W1, W2).",
             ha="center", va="top", fontsize=10)

    paths = []
    for ext in fmt:
        path = out_dir / f"directpred.{ext}"
        fig.savefig(path, dpi=110)
        fig.set_layout_engine("none")          # keep the positions found once (saves a layout pass)
        paths.append(path)
    return paths
