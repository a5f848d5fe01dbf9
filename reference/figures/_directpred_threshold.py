"""Panels c–e of the DirectPred figure (:mod:`ncspec.reference.figures.directpred`): the weight-decay threshold W1
(Wang et al. 2021) for closed-form predictors, and DirectCopy.

* **c), d)** The W1 threshold for a closed-form predictor ``W_p = C^α`` (reference
  ``directset``, no normalisation, ε = 0) with α = ½ (DirectPred's square root) and
  α = 1, τ = 1, η = 0.1 on the linear model with anisotropic augmentation
  ``X′ = diag(σ_j²)``, M = N = 12, population flow from random (unaligned) weights.
  Markers: the final ``‖W e_j‖`` (column j of W), mean over four replicas (small
  dots: each replica). The cut ``σ² = τ²/(4η) − 1 = 1.5`` (vertical line) and the
  survivor level (dashed) follow from W1: with ``C = W(I+X′)Wᵀ`` an aligned mode has
  ``s_C = (1+σ_j²)‖W e_j‖²`` and predictor eigenvalue ``p = s_C^α``, and obeys
  ``d/dt ln‖W e_j‖ = τp − (1+σ_j²)p² − η``; survivors sit at ``p = p*+(σ_j²)``, i.e.
  ``‖W e_j‖ = √(p*+^{1/α}/(1+σ_j²))``. Dotted: the same for ``p*−``, the basin edge
  (a direction starting below it collapses although ``σ_j²`` is below the cut).
* **e)** DirectCopy (reference ``directcopy``: ``W_p = C/‖C‖_F + εI``, ε = 0.25) on the
  same model. Its predictor does not change when W is rescaled, so nothing pins the
  scale of W and W1's fixed point is not reached (*derived for this figure*, not in
  the papers): in an aligned state ``p_j = ε + q_j`` with ``q_j = s_Cj/‖C‖_F``,
  ``Σ_j q_j² = 1``, and every column obeys ``d/dt ln‖W e_j‖ = g_j(p_j) =
  τp_j − (1+σ_j²)p_j² − η``. A steady *direction* needs one common rate ``g_j(p_j) = c``
  for every surviving j, i.e. ``p_j`` = the larger root of ``(1+σ_j²)p² − τp + η + c = 0``;
  the normalisation ``Σ q_j² = 1`` then fixes ``c`` (solved by bisection), and
  ``‖W‖ ∝ e^{ct}``. Here ``c < 0``: W shrinks to 0 (the whole representation collapses,
  slowly) while its shape converges. A direction with ``g_j(ε) < c`` drops out of that
  shape: the relative cut. Markers: the final ``‖W e_j‖ / max_k ‖W e_k‖``; dashed: the
  predicted profile ``√(q(σ²)/(1+σ²))``, normalised, ``q(σ²) = max(p_j − ε, 0)``.
  Inset: ``‖W‖_F²`` against t, simulated, against ``e^{2ct}`` (dashed), and DirectSet
  α = 1 for contrast.
"""
from __future__ import annotations

import numpy as np
import torch
from ncspec.reference.linear import LinearEncoder, population_views, simulate
from ncspec.reference.methods import build
from ncspec.reference.theory import directpred as theory

# ---- panels c–e: the W1 threshold (closed-form predictors)
ETA_W, TAU_W = 0.1, 1.0
SIGMA2_W = (0.0, 0.3, 0.6, 0.9, 1.2, 1.4, 1.6, 1.9, 2.4, 3.0, 3.5, 4.0)
REPLICAS_W = 4
#: (lr, steps) stages: small steps through the fast start, then long ones (t = 500 in all).
STAGES_W = ((0.02, 100), (0.1, 180), (0.4, 1200))
COPY_EPS = 0.25


def _copy_rate(sigma2: np.ndarray, eta: float, eps: float, tau: float = 1.0):
    """DirectCopy (Frobenius) steady direction: the common rate c and q_j (see module docstring)."""
    k = 1.0 + np.asarray(sigma2, dtype=np.float64)

    def q_of(c, kk):
        disc = tau ** 2 - 4.0 * kk * (eta + c)
        p = (tau + np.sqrt(np.clip(disc, 0.0, None))) / (2.0 * kk)
        return np.where(disc >= 0, np.clip(p - eps, 0.0, None), 0.0)

    lo, hi = -tau ** 2, tau ** 2 / 4.0 - eta            # Σq² decreases in c
    for _ in range(200):
        c = 0.5 * (lo + hi)
        lo, hi = (c, hi) if (q_of(c, k) ** 2).sum() > 1.0 else (lo, c)
    c = 0.5 * (lo + hi)
    return c, (lambda s2: q_of(c, 1.0 + np.asarray(s2, dtype=np.float64)))


def _closed_form_run(method: str, W0: torch.Tensor, **options):
    """Population flow of a closed-form learner on X′ = diag(σ_j²); returns t, ‖W‖²_F (K, S), final W."""
    s2 = torch.tensor(SIGMA2_W, dtype=torch.float64)
    sigma = s2.sqrt()
    M = W0.shape[-2]
    x1, x2 = population_views(W0.shape[-1], sigma)
    encoder = LinearEncoder(W0)
    learner = build(method, encoder, M, tau=TAU_W, weight_decay=ETA_W, **options)
    ts, sq, t0 = [], [], 0.0
    for lr, steps in STAGES_W:
        traj = simulate(learner, encoder, lambda k: (x1, x2), lr=lr, steps=steps, sigma=sigma,
                        record_every=10)
        ts.append(t0 + traj.t[:-1])
        sq.append(traj.sq_norm[:-1])
        t0 += lr * steps
    ts.append(torch.tensor([t0], dtype=torch.float64))
    sq.append(traj.sq_norm[-1:])
    return torch.cat(ts), torch.cat(sq), encoder.W.detach().clone()


def _survivor_levels(alpha: float, s2: np.ndarray):
    """‖W e_j‖ of an aligned mode at p*+ and p*− (NaN where none): √(p^{1/α}/(1+σ²))."""
    pm, pp = (x.numpy() for x in theory.fixed_points(torch.as_tensor(s2), ETA_W, TAU_W))
    lev = lambda p: np.sqrt(p ** (1.0 / alpha) / (1.0 + s2))
    return lev(pm), lev(pp)


def panel_threshold(ax, alpha: float, W0: torch.Tensor, label: str) -> dict:
    s2 = np.asarray(SIGMA2_W)
    t, sq, W = _closed_form_run("directset", W0, alpha=alpha, eps=0.0, normalize=False)
    cols, cols0 = W.norm(dim=-2).numpy(), W0.norm(dim=-2).numpy()          # (S, N)
    cut = theory.survival_threshold(ETA_W, TAU_W)
    grid = np.linspace(0.0, 4.2, 400)
    lo, hi = _survivor_levels(alpha, grid)
    ax.axvspan(cut, 4.3, color="0.93", zorder=0)
    ax.axvline(cut, color="k", lw=1.0, ls="-.",
               label=rf"cut $\sigma^2 = \tau^2/(4\eta) - 1 = {cut:g}$")
    ax.plot(grid, np.where(np.isnan(hi), 0.0, hi), "--", color="C3", lw=1.3, zorder=3,
            label=r"survivor level $\sqrt{p^{*\,1/\alpha}_+/(1+\sigma^2)}$, 0 past the cut")
    ax.plot(grid, lo, ":", color="C3", lw=1.3, zorder=3,
            label=r"same for $p^*_-$: start below it $\Rightarrow$ collapse")
    for r in range(cols.shape[0]):
        ax.plot(s2, cols0[r], ".", color="0.6", ms=3, zorder=2, label="initial (each replica)" if r == 0 else None)
        ax.plot(s2, cols[r], ".", color="C0", ms=3, zorder=4)
    ax.plot(s2, cols.mean(0), "o", color="C0", mec="k", mew=0.6, ms=7, alpha=0.75, zorder=5,
            label=rf"final $\Vert W e_j\Vert$ at t = {float(t[-1]):.0f} (mean of {cols.shape[0]})")
    ax.set_xlim(-0.1, 4.2)
    ax.set_ylim(-0.03, 1.0)
    ax.set_xlabel(r"augmentation variance $\sigma_j^2$ of input direction $j$")
    ax.set_ylabel(r"$\Vert W e_j\Vert$ (column $j$ of $W$)")
    ax.legend(loc="upper right", fontsize=7.3, framealpha=0.9)
    ax.set_title(label, fontsize=10.5)
    _, pp = _survivor_levels(alpha, s2)
    pred = np.where(np.isnan(pp), 0.0, pp)
    return dict(max_error=float(np.abs(cols.mean(0) - pred).max()), t=t, sq=sq)


def panel_copy(ax, W0: torch.Tensor, set_run: dict) -> dict:
    s2 = np.asarray(SIGMA2_W)
    t, sq, W = _closed_form_run("directcopy", W0, eps=COPY_EPS)            # norm="fro"
    cols = W.norm(dim=-2).numpy()
    rel = cols / cols.max(-1, keepdims=True)
    c, q = _copy_rate(s2, ETA_W, COPY_EPS, TAU_W)
    grid = np.linspace(0.0, 4.2, 400)
    prof = np.sqrt(q(grid) / (1.0 + grid))
    prof = prof / prof[0]
    rel_cut = (TAU_W * COPY_EPS - ETA_W - c) / COPY_EPS ** 2 - 1.0           # g(ε) = c
    cut = theory.survival_threshold(ETA_W, TAU_W)
    ax.axvline(cut, color="k", lw=1.0, ls="-.", label=rf"W1 cut {cut:g} (DirectSet)")
    ax.axvline(rel_cut, color="C2", lw=1.0, ls="-.", label=rf"relative cut $g(\varepsilon) = c$: {rel_cut:.2f}")
    ax.plot(grid, prof, "--", color="C2", lw=1.3, zorder=3, label="predicted profile (common rate c)")
    for r in range(rel.shape[0]):
        ax.plot(s2, rel[r], ".", color="C2", ms=3, zorder=4)
    ax.plot(s2, rel.mean(0), "s", color="C2", mec="k", mew=0.6, ms=6.5, alpha=0.75, zorder=5,
            label=rf"final $\Vert W e_j\Vert / \max_k \Vert W e_k\Vert$, t = {float(t[-1]):.0f}")
    ax.set_xlim(-0.1, 4.2)
    ax.set_ylim(-0.03, 1.12)
    ax.set_xlabel(r"augmentation variance $\sigma_j^2$ of input direction $j$")
    ax.set_ylabel(r"$\Vert W e_j\Vert$ relative to the largest column")
    ax.legend(loc="lower left", fontsize=7.3, framealpha=0.9)
    ax.set_title(rf"e) DirectCopy $W_p = C/\Vert C\Vert_F + {COPY_EPS:g}I$, same model: "
                 "scale-free predictor", fontsize=10.5)

    ins = ax.inset_axes([0.55, 0.50, 0.42, 0.30])
    tt = t.numpy()
    ins.plot(tt, sq.mean(-1).numpy(), "-", color="C2", lw=2.2, alpha=0.6, label="DirectCopy")
    ins.plot(tt, float(sq.mean(-1)[-1]) * np.exp(2 * c * (tt - tt[-1])), "--", color="k", lw=0.9,
             label=rf"$\propto e^{{2ct}}$, c = {c:.4f}")
    ins.plot(set_run["t"].numpy(), set_run["sq"].mean(-1).numpy(), "-", color="C0", lw=2.0, alpha=0.6,
             label=r"DirectSet $\alpha = 1$")
    ins.set_yscale("log")
    ins.set_ylim(1e-32, 1e3)
    ins.set_xlabel("t", fontsize=7, labelpad=1)
    ins.set_ylabel(r"$\Vert W\Vert_F^2$", fontsize=7, labelpad=1)
    ins.tick_params(labelsize=6.5)
    ins.legend(fontsize=6, loc="lower left", framealpha=0.85)
    slope = float(np.polyfit(tt[tt > 100], np.log(sq.mean(-1).numpy()[tt > 100]), 1)[0]) / 2.0
    return dict(c_theory=c, c_measured=slope, rel_cut=rel_cut)
