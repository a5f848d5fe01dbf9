"""Ponce, Terver, Hebert & Arbel (2025): SG against gradient descent on Ē in the
scalar-output linear model, with the two spheres of equilibria (claims P2, P4, P6).

Model: M = 1 (encoder ``a ∈ R^N``, scalar predictor ``b``), N = 2, isotropic views
``x = u + σε``, ``y = u + σε′`` (``Σxx = Σyy = pI``, ``Σxy = qI``, ``p = 1 + σ²``, q = 1),
σ = 0.3, λ = 0.6·q²/(4p). Both fields keep the direction of ``a``
(``ȧ ∥ a``), so every trajectory lives in a half-plane ``(ρ = ‖a‖, b)`` and panels a, b
are exact pictures of the full dynamics. The non-zero SG equilibria are the circles
(spheres for N > 2) ``‖a‖ = b = r±``, ``r± = [q ± √(q² − 4pλ)]/(2p)``
(:func:`ncspec.reference.theory.dual.sphere_radii`).

* **a) SG** in the (ρ, b) half-plane. Grey: streamlines of
  :func:`ncspec.reference.theory.dual.sg_radial_field`. Red shade: the SG collapse basin (starts
  that end at 0, from integrating the planar ODE on a grid, RK4); its edge is the stable
  manifold of the saddle (r₋, r₋) (dark red, integrated backwards from the saddle).
  ★ stable (the outer sphere and the origin), ○ saddle (the inner sphere). Dotted: the
  balanced line b = ρ, which attracts at rate 2λ (P3). Coloured solid: the full model
  (:func:`ncspec.reference.dual.sg_field`, N = 2, RK4) from eight starts, drawn as (‖a‖, b);
  dashed, same colour: the planar ODE from the same start (they coincide: the reduction
  is exact).
* **b) Gradient descent on Ē** from the same starts: background, log-spaced contours of
  Ē (:func:`ncspec.reference.theory.dual.radial_objective`); every run collapses (P2). The
  arrow at the SG limit (r₊, r₊) is −∇Ē there: the SG limit is not stationary for Ē (P4).
* **c)** The same runs in (a₁, a₂, b): the two circles of equilibria, SG runs (colour)
  ending on the outer circle or at the origin, GD runs (grey) all ending at the origin.
* **d)** Ē along the runs (log scale): GD decreases it to 0; SG settles at a positive
  value (the outer sphere's Ē, dotted) and need not decrease it. Inset: where 1,000
  sampled starts end under SG and under EMA (β = 1); none on the inner sphere (P6).
"""
from __future__ import annotations

import math
import pathlib

import numpy as np
import torch
from ncspec.reference import dual
from ncspec.reference.ode import rk4_step
from ncspec.reference.theory import dual as th
from ncspec.reference.vectors import unit

from ._output import render

SIGMA, FRAC = 0.3, 0.6
P, Q = 1.0 + SIGMA ** 2, 1.0
S_YY = P
LAM = FRAC * Q * Q / (4 * P)
R_IN, R_OUT = th.sphere_radii(P, Q, LAM)
LIM_RHO, LIM_B = (0.0, 1.25), (-0.45, 1.25)
T_END, DT = 60.0, 0.02
#: starts (ρ0, b0, angle of a0 in degrees)
STARTS = [(0.15, 1.1, 20), (0.5, 1.15, 70), (1.15, 1.05, 120), (1.2, 0.45, 160), (1.0, -0.3, 210),
          (0.45, -0.35, 250), (0.25, 0.35, 300), (0.3, 0.12, 340)]


def _planar(field, rho0, b0, T, dt):
    """RK4 (:func:`ncspec.reference.ode.rk4_step`) on a planar field, vectorised over starts; returns (K, n) arrays
    of ρ and b."""
    rho, b = torch.as_tensor(rho0, dtype=torch.float64), torch.as_tensor(b0, dtype=torch.float64)
    out_r, out_b = [rho], [b]
    velocity = lambda state: tuple(field(*state))
    for _ in range(int(round(T / dt))):
        rho, b = rk4_step(velocity, (rho, b), dt)
        out_r.append(rho)
        out_b.append(b)
    return torch.stack(out_r).numpy(), torch.stack(out_b).numpy()


def _sg(rho, b):
    return th.sg_radial_field(rho, b, P, Q, LAM)


def _gd(rho, b):
    return th.gd_radial_field(rho, b, P, Q, S_YY, LAM)


def _full_runs(kind: str):
    """The full (N = 2) model from STARTS; returns (K, n, 2) a and (K, n) b, and t."""
    mom = dual.gaussian_moments(2, signal=torch.eye(2, dtype=torch.float64), sigma_x=SIGMA)
    st = torch.tensor(STARTS, dtype=torch.float64)
    ang = torch.deg2rad(st[:, 2])
    A = (st[:, 0:1] * torch.stack([ang.cos(), ang.sin()], -1)).unsqueeze(-2)
    B = st[:, 1].reshape(-1, 1, 1)
    path = dual.integrate(dual.field(kind, mom, LAM), (A, B), dt=DT, steps=int(T_END / DT), record_every=5)
    objective = dual.objective(path.states[0], path.states[1], mom, LAM)
    return path.t.numpy(), path.states[0][:, :, 0].numpy(), path.states[1][:, :, 0, 0].numpy(), objective.numpy()


def _basin(n=161):
    """SG collapse basin on a grid of the (ρ, b) half-plane: True where the planar ODE ends at 0."""
    g_r = torch.linspace(1e-3, LIM_RHO[1], n, dtype=torch.float64)
    g_b = torch.linspace(LIM_B[0], LIM_B[1], n, dtype=torch.float64)
    Rg, Bg = torch.meshgrid(g_r, g_b, indexing="xy")
    rho, b = _planar(_sg, Rg.reshape(-1), Bg.reshape(-1), 120.0, 0.1)
    end = np.hypot(rho[-1], b[-1]).reshape(Rg.shape)
    return g_r.numpy(), g_b.numpy(), end < 0.5 * R_IN


def _separatrix():
    """The stable manifold of the saddle (r₋, r₋), by integrating −F from either side."""
    J = torch.tensor([[0.0, -(2 * P * R_IN - Q) * R_IN], [-2 * (P * R_IN - Q) * R_IN, -P * R_IN ** 2 - LAM]],
                     dtype=torch.float64)
    ev, V = torch.linalg.eig(J)
    v = V[:, ev.real.argmin()].real                              # the stable eigenvector
    back = lambda r, b: tuple(-x for x in _sg(r, b))
    branches = []
    for sgn in (1.0, -1.0):
        rho, b = _planar(back, torch.tensor([R_IN + sgn * 1e-4 * v[0]]), torch.tensor([R_IN + sgn * 1e-4 * v[1]]),
                         40.0, 0.005)
        keep = (rho[:, 0] >= 0) & (rho[:, 0] <= LIM_RHO[1] * 1.2) & (b[:, 0] >= LIM_B[0] * 1.2) & \
            (b[:, 0] <= LIM_B[1] * 1.2)
        stop = np.argmin(keep) if not keep.all() else len(keep)
        branches.append((rho[:stop, 0], b[:stop, 0]))
    return branches


def _streams(ax, field, color="0.6"):
    g_r = np.linspace(1e-3, LIM_RHO[1], 60)
    g_b = np.linspace(LIM_B[0], LIM_B[1], 60)
    Rg, Bg = np.meshgrid(g_r, g_b)
    U, V = field(torch.as_tensor(Rg), torch.as_tensor(Bg))
    ax.streamplot(g_r, g_b, U.numpy(), V.numpy(), color=color, density=1.1, linewidth=0.6, arrowsize=0.8, zorder=1)


def _plane_axes(ax, title):
    ax.plot([0, LIM_B[1]], [0, LIM_B[1]], ":", color="0.35", lw=1.0, zorder=2, label="balanced: b = ‖a‖")
    ax.axhline(0, color="0.8", lw=0.6, zorder=0)
    ax.set_xlim(*LIM_RHO)
    ax.set_ylim(*LIM_B)
    ax.set_aspect("equal")
    ax.set_xlabel(r"$\rho = \Vert a\Vert$ (encoder norm)")
    ax.set_ylabel(r"$b$ (predictor)")
    ax.set_title(title, fontsize=11)


def _equilibria(ax, *, sg=True):
    ax.plot(0, 0, "*", color="crimson", mec="k", mew=0.6, ms=14, zorder=7, clip_on=False)
    if sg:
        ax.plot(R_OUT, R_OUT, "*", color="crimson", mec="k", mew=0.6, ms=15, zorder=7)
        ax.plot(R_IN, R_IN, "o", mfc="white", mec="crimson", mew=1.6, ms=8, zorder=7)


def _panel_sg(ax, sg_full, cmap):
    g_r, g_b, basin = _basin()
    ax.contourf(g_r, g_b, basin.astype(float), levels=[0.5, 1.5], colors=["#f6c9c4"], zorder=0)
    _streams(ax, _sg)
    for rho, b in _separatrix():
        ax.plot(rho, b, "-", color="darkred", lw=1.6, zorder=4)
    t, a, b, _ = sg_full
    st = np.array(STARTS)
    rho_p, b_p = _planar(_sg, st[:, 0], st[:, 1], T_END, DT)
    for i in range(len(STARTS)):
        c = cmap(i / (len(STARTS) - 1))
        ax.plot(np.linalg.norm(a[:, i], axis=-1), b[:, i], "-", color=c, lw=2.6, alpha=0.55, zorder=5)
        ax.plot(rho_p[:, i], b_p[:, i], "--", color=c, lw=1.0, zorder=6)
        ax.plot(st[i, 0], st[i, 1], "o", color=c, mec="k", mew=0.6, ms=6, zorder=7)
    _equilibria(ax)
    _plane_axes(ax, "a) stop-gradient (SG)")
    box = dict(fc="white", ec="0.6", lw=0.5, alpha=0.9, boxstyle="round,pad=0.25")
    ax.annotate(rf"outer sphere $r_+={R_OUT:.3f}$" "\n(stable)", (R_OUT, R_OUT), (R_OUT + 0.12, R_OUT - 0.2),
                fontsize=8, bbox=box, zorder=9, arrowprops=dict(arrowstyle="->", lw=0.8))
    ax.annotate(rf"inner sphere $r_-={R_IN:.3f}$" "\n(saddle)", (R_IN, R_IN), (R_IN + 0.2, R_IN - 0.17),
                fontsize=8, bbox=box, zorder=9, arrowprops=dict(arrowstyle="->", lw=0.8))
    ax.annotate("collapse (stable)", (0, 0), (0.04, -0.12), fontsize=8, bbox=box, zorder=9)
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch
    ax.legend(handles=[Patch(color="#f6c9c4", label="SG collapse basin"),
                       Line2D([], [], color="darkred", lw=1.6, label="stable manifold of the saddle"),
                       Line2D([], [], color="0.35", ls=":", label="balanced: b = ‖a‖")],
              loc="upper center", bbox_to_anchor=(0.5, -0.09), ncol=3, fontsize=7.5, frameon=False)


def _panel_gd(ax, gd_full, cmap):
    g_r = np.linspace(1e-3, LIM_RHO[1], 200)
    g_b = np.linspace(LIM_B[0], LIM_B[1], 200)
    Rg, Bg = np.meshgrid(g_r, g_b)
    E = th.radial_objective(torch.as_tensor(Rg), torch.as_tensor(Bg), P, Q, S_YY, LAM).numpy()
    levels = np.geomspace(max(E.min(), 1e-4), E.max(), 14)
    ax.contourf(g_r, g_b, E, levels=levels, cmap="Blues_r", norm=_lognorm(levels), alpha=0.45, zorder=0)
    ax.contour(g_r, g_b, E, levels=levels, colors="0.55", linewidths=0.4, zorder=0)
    _streams(ax, _gd, color="0.45")
    t, a, b, _ = gd_full
    for i in range(len(STARTS)):
        c = cmap(i / (len(STARTS) - 1))
        ax.plot(np.linalg.norm(a[:, i], axis=-1), b[:, i], "-", color=c, lw=2.6, alpha=0.55, zorder=5)
        ax.plot(STARTS[i][0], STARTS[i][1], "o", color=c, mec="k", mew=0.6, ms=6, zorder=7)
    _equilibria(ax, sg=False)
    g = _gd(torch.tensor(R_OUT, dtype=torch.float64), torch.tensor(R_OUT, dtype=torch.float64))
    scale = 0.45 / math.hypot(float(g[0]), float(g[1]))
    ax.plot(R_OUT, R_OUT, "X", color="k", ms=8, zorder=8)
    ax.annotate("", (R_OUT + scale * float(g[0]), R_OUT + scale * float(g[1])), (R_OUT, R_OUT),
                arrowprops=dict(arrowstyle="-|>", color="k", lw=1.4), zorder=8)
    ax.text(R_OUT + 0.02, R_OUT + 0.06, r"SG limit $(r_+, r_+)$: $-\nabla\bar E \neq 0$", fontsize=8, zorder=8,
            bbox=dict(fc="white", ec="0.6", lw=0.5, alpha=0.9, boxstyle="round,pad=0.25"))
    _plane_axes(ax, r"b) gradient descent on $\bar E$ (no SG)")
    ax.text(0.97, 0.03, r"contours: $\bar E$ (log-spaced); every run $\to 0$", transform=ax.transAxes,
            ha="right", va="bottom", fontsize=8, bbox=dict(fc="white", ec="none", alpha=0.8))


def _lognorm(levels):
    from matplotlib.colors import LogNorm
    return LogNorm(vmin=levels[0], vmax=levels[-1])


def _panel_3d(ax, sg_full, gd_full, cmap):
    phi = np.linspace(0, 2 * np.pi, 200)
    for r, ls, lab in ((R_OUT, "-", "outer sphere (stable)"), (R_IN, "--", "inner sphere (saddle)")):
        ax.plot(r * np.cos(phi), r * np.sin(phi), r + 0 * phi, ls, color="crimson", lw=2.0, label=lab)
    _, a, b, _ = gd_full
    for i in range(len(STARTS)):
        ax.plot(a[:, i, 0], a[:, i, 1], b[:, i], "-", color="0.55", lw=1.0)
    _, a, b, _ = sg_full
    for i in range(len(STARTS)):
        c = cmap(i / (len(STARTS) - 1))
        ax.plot(a[:, i, 0], a[:, i, 1], b[:, i], "-", color=c, lw=2.0)
        ax.scatter([a[0, i, 0]], [a[0, i, 1]], [b[0, i]], color=c, edgecolor="k", s=22, depthshade=False)
    ax.scatter([0], [0], [0], marker="*", color="crimson", edgecolor="k", s=120, depthshade=False)
    ax.plot([], [], "-", color="0.55", label="gradient descent on Ē")
    ax.plot([], [], "-", color=cmap(0.3), lw=2, label="SG")
    ax.set_xlabel(r"$a_1$")
    ax.set_ylabel(r"$a_2$")
    ax.set_zlabel(r"$b$")
    ax.view_init(elev=20, azim=-58)
    ax.set_box_aspect(None, zoom=1.12)
    ax.tick_params(labelsize=7, pad=0)
    ax.set_title(r"c) the same runs in $(a_1, a_2, b)$: circles $\Vert a\Vert = b = r_\pm$", fontsize=11)
    ax.legend(loc="upper left", bbox_to_anchor=(-0.02, 0.98), fontsize=7.5, framealpha=0.9)


def _outcomes(n=1000, seed=0):
    """Where sampled starts end (P6's sampling), SG and EMA (β = 1), full N = 2 model, Euler."""
    g = torch.Generator().manual_seed(seed)
    mom = dual.gaussian_moments(2, signal=torch.eye(2, dtype=torch.float64), sigma_x=SIGMA)
    u = torch.randn(n, 1, 2, generator=g, dtype=torch.float64)
    A0 = 2 * R_OUT * torch.rand(n, 1, 1, generator=g, dtype=torch.float64) * unit(u)
    B0 = R_OUT * (3 * torch.rand(n, 1, 1, generator=g, dtype=torch.float64) - 1)
    rate = min(LAM, 2 * LAM - Q * R_IN, Q * R_OUT - 2 * LAM)
    steps = int(math.log(1e6) / rate / 0.2)
    out = {}
    for kind, state in (("SG", (A0, B0)), ("EMA", (A0, B0, A0.clone()))):
        path = dual.integrate(dual.field(kind.lower(), mom, LAM, beta=1.0), state, dt=0.2, steps=steps,
                              method="euler")
        rho, b = path.final[0].norm(dim=(-1, -2)), path.final[1][:, 0, 0]
        outer = ((rho - R_OUT).abs() < 1e-2 * R_OUT) & ((b - R_OUT).abs() < 1e-2 * R_OUT)
        zero = (rho < 1e-3 * R_OUT) & (b.abs() < 1e-3 * R_OUT)
        inner = ((rho - R_IN).abs() < 0.1 * R_IN) & ((b - R_IN).abs() < 0.1 * R_IN)
        out[kind] = [outer.double().mean().item(), zero.double().mean().item(), inner.double().mean().item()]
    return out


def _panel_objective(ax, sg_full, gd_full, cmap, seed):
    for full, ls in ((sg_full, "-"), (gd_full, "--")):
        t, _, _, E = full
        for i in range(len(STARTS)):
            ax.plot(t, E[:, i], ls, color=cmap(i / (len(STARTS) - 1)), lw=1.6 if ls == "-" else 1.1)
    E_out = float(th.radial_objective(torch.tensor(R_OUT), torch.tensor(R_OUT), P, Q, S_YY, LAM))
    ax.axhline(E_out, color="k", ls=":", lw=1.0)
    ax.text(T_END * 0.98, E_out * 1.15, rf"$\bar E$ on the outer sphere = {E_out:.3f}", ha="right", fontsize=8)
    ax.set_yscale("log")
    ax.set_ylim(1e-6, 3.0)
    ax.set_xlim(0, T_END)
    ax.set_xlabel("time t")
    ax.set_ylabel(r"$\bar E(a(t), b(t))$")
    ax.set_title(r"d) $\bar E$ along the runs: solid SG, dashed gradient descent", fontsize=11)
    out = _outcomes(seed=seed)
    ins = ax.inset_axes([0.5, 0.41, 0.24, 0.27])
    kinds = list(out)
    bottom = np.zeros(len(kinds))
    for j, (lab, col) in enumerate((("outer sphere", "tab:green"), ("collapse (0)", "tab:red"),
                                    ("inner sphere", "tab:orange"))):
        vals = np.array([out[k][j] for k in kinds])
        ins.bar(np.arange(len(kinds)), vals, bottom=bottom, color=col, label=lab, width=0.6)
        for x, (v, b0) in enumerate(zip(vals, bottom)):
            if v > 0.05:
                ins.text(x, b0 + v / 2, f"{100 * v:.1f} %", ha="center", va="center", fontsize=7, color="white")
        bottom += vals
    ins.set_ylim(0, 1)
    ins.set_xticks(np.arange(len(kinds)), kinds)
    ins.set_yticks([0, 0.5, 1])
    ins.tick_params(labelsize=7)
    ins.set_title("where 1,000 sampled starts end (N = 2)", fontsize=8)
    ins.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.03, 1.0), frameon=False)


def dual_figure(out_dir: str | pathlib.Path, *, seed: int = 0, fmt=("png", "pdf")) -> list[pathlib.Path]:
    """Draw SG vs gradient descent with the spheres of equilibria to ``out_dir/dual.<fmt>``.

    Args:
        out_dir: folder to write into; created if missing. Must not be a file.
        seed: seeds the 1,000 sampled starts of panel d's inset (everything else is deterministic).
        fmt: file formats (matplotlib extensions), e.g. ``("png", "pdf")``.

    Returns:
        The written paths, in the order of ``fmt``.
    """
    return render("dual", out_dir, fmt, seed, lambda out, f: _draw(out, f, seed))


def _draw(out_dir: pathlib.Path, fmt: tuple[str, ...], seed: int) -> list[pathlib.Path]:
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    cmap = colormaps["viridis"]
    cm = lambda x: cmap(0.05 + 0.85 * x)
    sg_full, gd_full = _full_runs("sg"), _full_runs("gd")
    fig = Figure(figsize=(14, 12.5))
    ax_a = fig.add_subplot(2, 2, 1)
    ax_b = fig.add_subplot(2, 2, 2)
    ax_c = fig.add_subplot(2, 2, 3, projection="3d")
    ax_d = fig.add_subplot(2, 2, 4)
    _panel_sg(ax_a, sg_full, cm)
    _panel_gd(ax_b, gd_full, cm)
    _panel_3d(ax_c, sg_full, gd_full, cm)
    _panel_objective(ax_d, sg_full, gd_full, cm, seed)
    fig.suptitle("Ponce, Terver, Hebert & Arbel (2025): stop-gradient vs gradient descent on "
                 r"$\bar E = \frac{1}{2}E(b\,a^\top x - a^\top y)^2 + \frac{\lambda}{2}(\Vert a\Vert^2 + b^2)$",
                 fontsize=13, y=0.995)
    fig.text(0.5, 0.966,
             rf"scalar output ($M = 1$), $N=2$, $x = u+\sigma\varepsilon$, $y = u+\sigma\varepsilon'$, "
             rf"$\sigma={SIGMA:g}$, $\lambda = {FRAC:g}\cdot q^2/4p = {LAM:.4f}$.   Non-zero SG equilibria: "
             rf"$\Vert a\Vert = b = r_\pm = [q \pm \sqrt{{q^2-4p\lambda}}]/2p$ with $p = 1+\sigma^2$, $q = 1$."
             "\n"
             r"Both fields keep the direction of $a$, so a) and b) show the full dynamics in the $(\Vert a\Vert, b)$ "
             r"half-plane.  Solid: the full model (RK4); dashed in a): the planar reduction; $\bigstar$ stable, "
             r"$\circ$ saddle.",
             ha="center", va="top", fontsize=9.5)
    fig.tight_layout(rect=(0, 0, 1, 0.945), h_pad=2.0, w_pad=2.0)
    paths = []
    for ext in fmt:
        path = out_dir / f"dual.{ext}"
        fig.savefig(path, dpi=120)
        paths.append(path)
    return paths
