"""Littwin et al. 2024, Figure 2 in the linear model: JEPA learns high-ρ features first, MAE does not.

Two features of equal covariance λ = 1 and regression coefficients ρ = .9 (solid) and .6 (dashed),
deep linear encoders of depth L = 1, 2, 3 from the balanced init ε = 0.02:

a) JEPA (the reference's ``learned_predictor`` around a :class:`DeepLinearEncoder`): ``w̄/w̄*`` against
   time (coloured: simulation; black: L × eq. 7 by its exact discrete map at η/10);
b) MAE (:class:`LinearMAE`), the same against L × eq. 8;
c) the critical-time ratio ``t(ρ = .6)/t(ρ = .9)`` against depth: markers simulation, lines the
   quadrature of eqs. 7–8 (claim M3); the fixed points ``ρ^L`` (JEPA) and ``ρ^{L/(L+1)}`` (MAE) in the inset.
"""
from __future__ import annotations

import math
import pathlib

import torch
from ncspec.reference.linear import DeepLinearEncoder, LinearMAE, shared_signal_views, simulate
from ncspec.reference.methods import build
from ncspec.reference.theory import jepa as th

from ._output import render

RHO, EPS, DEPTHS = (0.9, 0.6), 0.02, (1, 2, 3)
ETA = {"jepa": 1.0, "mae": 0.1}


def _run(method: str, L: int) -> tuple[torch.Tensor, torch.Tensor]:
    lam = torch.ones(2, dtype=torch.float64)
    rho = torch.tensor(RHO, dtype=torch.float64)
    x, y = shared_signal_views(lam, torch.sqrt(lam * (1 / rho - 1)))
    a0 = EPS ** (1 / L)
    enc = DeepLinearEncoder(a0 * torch.eye(2, dtype=torch.float64).expand(1, L, 2, 2).clone())
    V0 = a0 * torch.eye(2, dtype=torch.float64).unsqueeze(0)
    learner = (build("learned_predictor", enc, 2, predictor_init=V0, alpha_p=1.0) if method == "jepa"
               else LinearMAE(enc, 2, decoder_init=V0))
    t_end = 1.3 * max(th.critical_time(method, EPS, 1.0, r, L) for r in RHO)
    steps = int(math.ceil(t_end / ETA[method]))
    traj = simulate(learner, enc, lambda k: (x, y), lr=ETA[method], steps=steps, sigma=0.0, eval_views=x,
                    probe=lambda _l, e: {"w": torch.diagonal(e.product()[0])})
    return traj.t, traj.probes["w"]


def _crossing(t: torch.Tensor, w: torch.Tensor, target: float) -> float:
    k = int((w >= target).int().argmax())
    return (t[k - 1] + (t[k] - t[k - 1]) * (target - w[k - 1]) / (w[k] - w[k - 1])).item()


def _draw(out: pathlib.Path, fmt) -> list:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 3, figsize=(15, 4.2))
    colours = {1: "tab:blue", 2: "tab:orange", 3: "tab:green"}
    ratios = {m: [] for m in th.METHODS}
    for col, method in enumerate(th.METHODS):
        for L in DEPTHS:
            t, w = _run(method, L)
            rho = torch.tensor(RHO, dtype=torch.float64)
            w_star = th.fixed_point(method, rho, L)[1]
            fine = ETA[method] / 10
            theory = th.euler_map(method, torch.full((2,), EPS ** (1 / L), dtype=torch.float64), 1.0, rho, L, fine,
                                  int(t[-1].item() / fine))
            t_th = torch.arange(theory.shape[0], dtype=torch.float64) * fine
            for i, ls in enumerate(("-", "--")):
                ax[col].plot(t.numpy(), (w[:, i] / w_star[i]).numpy(), color=colours[L], ls=ls, lw=2,
                             label=f"L = {L}, ρ = {RHO[i]}")
                ax[col].plot(t_th.numpy(), (theory[:, i] / w_star[i]).numpy(), color="k", ls=ls, lw=0.8)
            times = [_crossing(t, w[:, i], 0.5 * w_star[i].item()) for i in range(2)]
            ratios[method].append(times[1] / times[0])
        ax[col].set_xscale("log")
        ax[col].set(xlabel="t = η · step (layer-wise flow)", ylabel="w̄ / w̄*",
                    title=f"{'a' if col == 0 else 'b'}) {method.upper()}: equal λ, ρ = .9 (solid) vs .6 (dashed)")
        ax[col].legend(fontsize=7)
    for method, mk in (("jepa", "o"), ("mae", "s")):
        pred = [th.critical_time(method, EPS, 1.0, RHO[1], L) / th.critical_time(method, EPS, 1.0, RHO[0], L)
                for L in DEPTHS]
        ax[2].plot(DEPTHS, pred, color="k", lw=1)
        ax[2].plot(DEPTHS, ratios[method], mk, ms=8, label=f"{method.upper()} (simulation; line: eqs. 7–8)")
    ax[2].axhline(1.0, color="grey", lw=0.5)
    ax[2].set(xlabel="depth L", ylabel="t(ρ = .6) / t(ρ = .9)", xticks=DEPTHS,
              title="c) JEPA's preference for high ρ grows with depth")
    ax[2].legend(fontsize=8, loc="upper left")
    inset = ax[2].inset_axes([0.6, 0.12, 0.37, 0.37])
    r = torch.linspace(0.05, 1, 50, dtype=torch.float64)
    for L in DEPTHS:
        inset.plot(r.numpy(), th.fixed_point("jepa", r, L)[1].numpy(), color=colours[L], lw=1.2)
        inset.plot(r.numpy(), th.fixed_point("mae", r, L)[1].numpy(), color=colours[L], lw=1.2, ls=":")
    inset.set_title("w̄*: JEPA ρ^L, MAE (dotted) ρ^{L/(L+1)}", fontsize=7)
    inset.tick_params(labelsize=6)
    fig.suptitle("JEPA vs MAE in deep linear networks (Littwin et al. 2024, Fig. 2; claims M1–M3)")
    fig.tight_layout()
    paths = []
    for f in fmt:
        p = out / f"jepa.{f}"
        fig.savefig(p, dpi=120)
        paths.append(p)
    plt.close(fig)
    return paths


def jepa_figure(out_dir: str | pathlib.Path, *, seed: int = 0, fmt=("png", "pdf")) -> list[pathlib.Path]:
    """Draw the JEPA-vs-MAE figure to ``out_dir/jepa.<fmt>`` (deterministic: ``seed`` is unused).

    Returns the written paths, in the order of ``fmt``.
    """
    return render("jepa", out_dir, fmt, seed, lambda out, f: _draw(out, f))
