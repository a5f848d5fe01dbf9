"""Halvagal, Laborieux & Zenke 2022, Figure 1: theory drawn over simulation.

Four columns, one per loss (claims H1–H4): a) no stop-grad (eq. 6),
b) stop-grad on the wrong side (eq. 7), c) SimSiam loss (eq. 2), d) IsoLoss
(eq. 8); the predictor is DirectPred's ``W_P = C^α`` built from the online
embeddings' correlation ``C``.

* **Top row**, M = 2, N = 6: the plane of the two eigenvalues ``(λ₁, λ₂)`` of
  ``C = (1+σ²) W Wᵀ``. Grey streamlines: the theory's velocity field
  (:func:`ncspec.reference.theory.eigenspace.eigenvalue_velocity`; the modes decouple,
  so each coordinate moves with its own scalar velocity). Coloured solid
  lines: population (expected-gradient) flow simulated with the reference
  learner, a circle at the start and small dots every Δt = 1; dashed: the
  theory's :func:`~ncspec.reference.theory.eigenspace.ode_solution` from the same
  start. Filled star: stable fixed point; open circle: unstable one.
* **Bottom row**, M = 10, N = 15: the ten eigenvalues of ``C`` against
  ``t = η·step``, simulated (solid) and ``ode_solution`` (dashed, same colour);
  dotted line: the non-trivial fixed point (``(1+σ²)^{−1/α}``, stable, for
  SimSiam and IsoLoss; ``(1+σ²)^{1/α}``, unstable, for the wrong side).

Settings of the paper's toy figures: σ = 0.1, α = 1, η = 10⁻², 1,500 steps.
The wrong-side run is stopped shortly before the theory's first finite-time
blow-up (eq. 7 with ``λ > 1+σ²``); the Euler steps of the simulation lag the
continuous flow near that blow-up, which the figure shows as it is.
"""
from __future__ import annotations

import math
import pathlib

import numpy as np
import torch
from ncspec.reference.linear import LinearEncoder, population_views, simulate, weights_with_spectrum
from ncspec.reference.methods import build
from ncspec.reference.theory import eigenspace as theory

from ._output import render

SIGMA, ALPHA, LR, STEPS = 0.1, 1.0, 1e-2, 1500

#: theory loss name → (reference method, stop_grad), column title.
COLUMNS = (
    ("no_stopgrad", ("simsiam", "none"),
     r"a) no stop-grad" "\n" r"$\frac{1}{2}\Vert W_P z_1 - z_2\Vert^2$"),
    ("wrong_side", ("simsiam", "online"),
     r"b) stop-grad on the wrong side" "\n" r"$\frac{1}{2}\Vert \mathrm{SG}(W_P z_1) - z_2\Vert^2$"),
    ("simsiam", ("simsiam", "target"),
     r"c) SimSiam loss" "\n" r"$\frac{1}{2}\Vert W_P z_1 - \mathrm{SG}(z_2)\Vert^2$"),
    ("isoloss", ("isoloss", "target"),
     r"d) IsoLoss" "\n" r"$\frac{1}{2}\Vert z_1 - \mathrm{SG}(z_2 + z_1 - W_P z_1)\Vert^2$"),
)

#: Initial eigenvalues of C for the top-row trajectories (one replica each).
_STARTS_2D = {
    "no_stopgrad": [(1.9, 1.9), (1.9, 1.1), (1.9, 0.35), (1.1, 1.9), (0.35, 1.9),
                    (1.25, 1.25), (0.7, 1.45), (1.45, 0.7)],
    # Kept close to the unstable point κ in the diverging coordinate so that
    # the run can last long enough to show the collapse of the other one.
    "wrong_side": [(0.35, 1.07), (1.07, 0.35), (0.8, 1.04), (1.04, 0.8), (0.96, 0.99),
                   (0.6, 0.95), (0.95, 0.55), (0.25, 0.6)],
    "simsiam": [(0.05, 1.9), (0.12, 0.12), (0.3, 0.05), (1.9, 1.9), (1.9, 0.15),
                (1.3, 0.45), (0.6, 1.7), (0.25, 0.35)],
}
_STARTS_2D["isoloss"] = _STARTS_2D["simsiam"]
_LIM_2D = 2.0


def _run(loss: str, lamC0: torch.Tensor, N: int, steps: int, generator: torch.Generator):
    """Population flow of ``loss`` from spectra ``lamC0`` (S, M) of C, all replicas in one call."""
    method, stop_grad = dict((c[0], c[1]) for c in COLUMNS)[loss]
    M = lamC0.shape[-1]
    W = weights_with_spectrum(lamC0 / theory.kappa(SIGMA), N, generator=generator)
    encoder = LinearEncoder(W)
    options = {"alpha": ALPHA}
    if method == "simsiam":
        options["stop_grad"] = stop_grad
    learner = build(method, encoder, M, **options)
    x1, x2 = population_views(N, SIGMA)
    return simulate(learner, encoder, lambda step: (x1, x2), lr=LR, steps=steps, sigma=SIGMA)


def _blowup_time(lamC0: torch.Tensor) -> float:
    """First finite-time blow-up of the wrong-side flow (eq. 7), ``inf`` if none.

    ``u(t) = κ/(1 + (κ/u0 − 1) e^{2ακt})`` diverges at ``t* = ln(1/(1 − κ/u0))/(2ακ)``.
    """
    k = theory.kappa(SIGMA)
    u0 = lamC0.to(torch.float64) ** ALPHA
    u0 = u0[u0 > k]
    if u0.numel() == 0:
        return math.inf
    return float((torch.log(1.0 / (1.0 - k / u0)) / (2.0 * ALPHA * k)).min())


def _steps(loss: str, lamC0: torch.Tensor, fraction: float) -> int:
    if loss != "wrong_side":
        return STEPS
    return min(STEPS, int(fraction * _blowup_time(lamC0) / LR))


def _theory_times(T: float, dense: bool) -> torch.Tensor:
    """Time grid for the dashed curves.

    ``ode_solution`` runs 400 RK4 steps per requested time for the no-stop-grad
    loss, so that grid is kept short: log-spaced early (fast start), uniform later.
    """
    if dense:
        return torch.linspace(0.0, T, 601, dtype=torch.float64)
    grid = torch.cat([torch.linspace(0.0, T, 41, dtype=torch.float64),
                      torch.logspace(math.log10(T / 1e3), math.log10(T), 30, dtype=torch.float64)])
    return torch.unique(grid)


def _column(loss: str, lamC0: torch.Tensor, generator: torch.Generator) -> dict:
    """Simulations and theory for one column: top (M = 2) and bottom (M = 10)."""
    starts = torch.tensor(_STARTS_2D[loss], dtype=torch.float64)            # (S, 2), as drawn
    sorted0, order = torch.sort(starts, dim=-1)                              # ascending, like eig_C
    top = _run(loss, sorted0, 6, _steps(loss, starts, 0.97), generator)
    # eig_C is ascending; the flow keeps the order of the modes, so undo the sort
    top_sim = torch.empty_like(top.eig_C)
    top_sim.scatter_(-1, order.expand_as(top.eig_C), top.eig_C)
    bottom = _run(loss, lamC0[None], 15, _steps(loss, lamC0, 0.95), generator)

    T_top, T_bottom = float(top.t[-1]), float(bottom.t[-1])
    dense = loss != "no_stopgrad"
    if T_top == T_bottom:          # the modes decouple: one ode_solution call for both rows
        tt = _theory_times(T_top, dense)
        ode = theory.ode_solution(torch.cat([starts.reshape(-1), lamC0]), tt, loss, ALPHA, SIGMA)
        n = starts.numel()
        top_ode, bottom_ode = ode[:, :n].reshape(-1, *starts.shape), ode[:, n:]
        tt_top = tt_bottom = tt
    else:
        tt_top, tt_bottom = _theory_times(T_top, dense), _theory_times(T_bottom, dense)
        top_ode = theory.ode_solution(starts, tt_top, loss, ALPHA, SIGMA)
        bottom_ode = theory.ode_solution(lamC0, tt_bottom, loss, ALPHA, SIGMA)
    return dict(top_t=top.t, top_sim=top_sim, top_tt=tt_top, top_ode=top_ode,
                bottom_t=bottom.t, bottom_sim=bottom.eig_C[:, 0], bottom_tt=tt_bottom,
                bottom_ode=bottom_ode, lamC0=lamC0)


def _fixed_points(loss: str) -> tuple[list, list]:
    """(stable, unstable) fixed points of the 2-D flow in the (λ₁, λ₂) plane."""
    fp = theory.fixed_point(loss, ALPHA, SIGMA)
    if loss in ("simsiam", "isoloss"):
        # λ = 0 is a (degenerate) fixed point of each mode, repelling for λ > 0.
        return [(fp, fp)], [(0.0, 0.0), (0.0, fp), (fp, 0.0)]
    if loss == "wrong_side":
        return [(0.0, 0.0)], [(fp, fp), (0.0, fp), (fp, 0.0)]
    return [(0.0, 0.0)], []


def _top_panel(ax, loss: str, d: dict, cmap) -> None:
    from matplotlib.colors import LinearSegmentedColormap

    # the theory's field on a grid; shade = log speed, kept light behind the trajectories
    g = np.linspace(1e-3, _LIM_2D, 60)
    v = theory.eigenvalue_velocity(torch.as_tensor(g), loss, ALPHA, SIGMA).numpy()
    V1, V2 = np.meshgrid(v, v)          # x-velocity depends on λ₁ (columns), y on λ₂ (rows)
    speed = np.log10(np.hypot(V1, V2) + 1e-12)
    greys = LinearSegmentedColormap.from_list("field", ["0.86", "0.45"])
    ax.streamplot(g, g, V1, V2, color=speed, cmap=greys, density=1.0, linewidth=0.7,
                  arrowsize=0.9, zorder=1)

    sim, ode, T = d["top_sim"], d["top_ode"], float(d["top_t"][-1])
    starts = sim[0]
    every = max(1, int(round(1.0 / LR)))                                     # a dot every Δt = 1
    for s in range(starts.shape[0]):
        c = cmap(s / max(1, starts.shape[0] - 1))
        x, y = sim[:, s, 0].numpy(), sim[:, s, 1].numpy()
        ax.plot(x, y, "-", color=c, lw=2.4, alpha=0.55, zorder=3)
        ax.plot(x[::every], y[::every], ".", color=c, ms=3.5, zorder=3)
        ax.plot(ode[:, s, 0].numpy(), ode[:, s, 1].numpy(), "--", color=c, lw=1.1, zorder=4)
        ax.plot(x[0], y[0], "o", color=c, mec="k", mew=0.6, ms=6, zorder=5)
    stable, unstable = _fixed_points(loss)
    for p in stable:
        ax.plot(*p, "*", color="crimson", mec="k", mew=0.6, ms=14, zorder=6, clip_on=False)
    for p in unstable:
        ax.plot(*p, "o", mfc="white", mec="crimson", mew=1.5, ms=7, zorder=6, clip_on=False)
    ax.set_xlim(0, _LIM_2D)
    ax.set_ylim(0, _LIM_2D)
    ax.set_aspect("equal")
    ax.set_xlabel(rf"$\lambda_1$ (eigenvalue of $C$);  runs to $t = {T:.3g}$")
    ax.set_ylabel(r"$\lambda_2$")


def _bottom_panel(ax, loss: str, d: dict, cmap) -> None:
    t, sim, tt, ode, lamC0 = (d[k] for k in ("bottom_t", "bottom_sim", "bottom_tt", "bottom_ode", "lamC0"))
    T = float(t[-1])
    M = lamC0.shape[-1]
    for m in range(M):
        c = cmap(0.88 * m / max(1, M - 1))          # stop short of viridis' pale yellow
        ax.plot(t.numpy(), sim[:, m].numpy(), "-", color=c, lw=2.4, alpha=0.55)
        ax.plot(tt.numpy(), ode[:, m].numpy(), "--", color=c, lw=1.1)
    fp = theory.fixed_point(loss, ALPHA, SIGMA)
    if fp > 0:
        kind = "unstable" if loss == "wrong_side" else "stable"
        ax.axhline(fp, color="k", ls=":", lw=1.2, label=rf"{kind} fixed point $\lambda^*={fp:.3f}$")
    else:
        ax.plot([], [], " ", label=r"only fixed point: $\lambda^*=0$ (collapse)")
    if loss == "wrong_side":
        t_star = _blowup_time(lamC0)
        ax.axvline(t_star, color="grey", ls="-.", lw=1.0, label=rf"theory blows up, $t^*={t_star:.3f}$")
        ax.set_xlim(0, 1.04 * t_star)
    else:
        ax.set_xlim(0, T)
    ax.set_yscale("log")
    ax.set_xlabel(r"time $t = \eta \cdot$step")
    ax.set_ylabel(r"eigenvalues $\lambda_m$ of $C$")
    ax.legend(loc="lower right" if loss in ("simsiam", "isoloss") else "upper right",
              fontsize=7, framealpha=0.85)


def eigenspace_figure(out_dir: str | pathlib.Path, *, seed: int = 0,
                      fmt=("png", "pdf")) -> list[pathlib.Path]:
    """Draw Halvagal et al. 2022, Figure 1 (theory over simulation) to ``out_dir/eigenspace.<fmt>``.

    Args:
        out_dir: folder to write into; created if missing. Must not be a file.
        seed: seeds the random eigenvectors of the initial weights (the
            population flow is otherwise deterministic, and the eigenvalue
            dynamics do not depend on the eigenvectors).
        fmt: file formats (matplotlib extensions), e.g. ``("png", "pdf")``.

    Returns:
        The written paths, in the order of ``fmt``.
    """
    return render("eigenspace", out_dir, fmt, seed, lambda out, f: _draw(out, seed, f))


def _draw(out_dir: pathlib.Path, seed: int, fmt: tuple[str, ...]) -> list[pathlib.Path]:
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    generator = torch.Generator().manual_seed(seed)
    # Bottom row: 10 modes log-uniform in [0.05, 1.5] (eigenvalues of C).
    lamC0 = torch.logspace(math.log10(0.05), math.log10(1.5), 10, dtype=torch.float64)

    fig = Figure(figsize=(17, 9.2))
    axes = fig.subplots(2, 4, gridspec_kw=dict(height_ratios=[1.0, 0.85]))
    for j, (loss, _, title) in enumerate(COLUMNS):
        d = _column(loss, lamC0, generator)
        _top_panel(axes[0, j], loss, d, colormaps["tab10"])
        axes[0, j].set_title(title, fontsize=11)
        _bottom_panel(axes[1, j], loss, d, colormaps["viridis"])
    fig.suptitle("Halvagal, Laborieux & Zenke (2022), Fig. 1 — solid: simulation, dashed: theory",
                 fontsize=13, y=0.995)
    fig.text(0.5, 0.955,
             rf"population (expected-gradient) flow, $W_P = C^\alpha$, $\sigma={SIGMA:g}$, "
             rf"$\alpha={ALPHA:g}$, $\eta={LR:g}$.   Top: $N=6$, $M=2$, the plane of the two "
             r"eigenvalues of $C$; grey: theory field, $\bigstar$ stable and $\circ$ unstable fixed "
             r"point, dots every $\Delta t=1$." "\n"
             r"Bottom: $N=15$, $M=10$, the ten eigenvalues of $C$ (dark = smallest at $t=0$), "
             r"log-uniform in $[0.05, 1.5]$ at $t=0$.",
             ha="center", va="top", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.92), h_pad=1.5)

    paths = []
    for ext in fmt:
        path = out_dir / f"eigenspace.{ext}"
        fig.savefig(path, dpi=130)
        paths.append(path)
    return paths
