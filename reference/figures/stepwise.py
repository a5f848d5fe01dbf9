"""Simon et al. 2023, Figure 1 in the linear model: Barlow Twins learns Γ's eigendirections one at a time.

a) the eigenvalues of ``C = WΓWᵀ`` from a small random initialisation (α = 1e-4; solid: the reference's
   Barlow Twins without batch standardisation, off-diagonal weight 1, on the population batch of the
   shared-signal views, Γ = diag(1, .7, .45, .25, .1, −.3), d = 4); dashed: each mode's logistic from
   its effective initial value ``c̃_k = γ_k R_kk²`` (claim S2), dotted verticals: the predicted step times;
b) the loss ``‖C − I‖²`` (solid) over ``Σ_k (1 − c_k)²`` (dashed) and the plateaus ``d − k`` (claim S3);
c) the aligned initialisation: ``c_k(t)`` against the logistic of rate ``8γ_k`` (claim S1).
"""
from __future__ import annotations

import pathlib

import torch
from ncspec.reference.linear import LinearEncoder, cross_covariance, shared_signal_views, simulate
from ncspec.reference.methods import build
from ncspec.reference.theory import stepwise as th

from ._output import render

GAMMA = (1.0, 0.7, 0.45, 0.25, 0.1, -0.3)
D, ETA, ALPHA = 4, 0.02, 1e-4


def _run(W0: torch.Tensor, steps: int) -> dict:
    x1, x2 = shared_signal_views(GAMMA, 0.5)
    Gam = cross_covariance(x1, x2)
    enc = LinearEncoder(W0)
    learner = build("barlow_twins", enc, D, batchnorm=False, lambda_offdiag=1.0)

    def probe(_l, e):
        C = e.W @ Gam @ e.W.transpose(-1, -2)
        return {"C": C, "ev": torch.linalg.eigvalsh(C).flip(-1)}

    traj = simulate(learner, enc, lambda k: (x1, x2), lr=ETA, steps=steps, sigma=0.0, probe=probe)
    return dict(t=traj.t, **traj.probes)


def _draw(out: pathlib.Path, fmt, seed: int) -> list:
    import matplotlib.pyplot as plt

    gamma = torch.tensor(GAMMA, dtype=torch.float64)
    g = torch.Generator().manual_seed(seed)
    W0 = ALPHA * torch.randn((1, D, len(GAMMA)), generator=g, dtype=torch.float64)
    c_eff = th.effective_init(W0, torch.eye(len(GAMMA), dtype=torch.float64)[:, :D], gamma[:D])
    t_step = th.discrete_step_time(c_eff, gamma[:D], ETA)[0]
    steps = int(1.25 * t_step.max().item() / ETA)
    run = _run(W0, steps)
    c_th = th.euler_map(c_eff, gamma[:D], ETA, steps)[:, 0]                      # (K, d)
    t = run["t"].numpy()
    fig, ax = plt.subplots(1, 3, figsize=(15, 4.2))
    colours = ["tab:blue", "tab:orange", "tab:green", "tab:red"]
    for k in range(D):
        ax[0].plot(t, run["ev"][:, 0, k].numpy(), color=colours[k], lw=2, label=f"eig {k + 1} of C (γ = {GAMMA[k]:g})")
        ax[0].plot(t, c_th[:, k].numpy(), color="k", ls="--", lw=1)
        ax[0].axvline(t_step[k].item(), color=colours[k], ls=":", lw=1)
    ax[0].set(xlabel="t = η · step", ylabel="eigenvalue of C = WΓWᵀ",
              title=f"a) small init (α = {ALPHA:g}): one direction at a time")
    ax[0].legend(fontsize=8, loc="center right")
    loss = (run["C"][:, 0] - torch.eye(D, dtype=torch.float64)).pow(2).sum((-1, -2))
    ax[1].plot(t, loss.numpy(), color="tab:purple", lw=2, label="‖C − I‖² (simulation)")
    ax[1].plot(t, (1 - c_th).pow(2).sum(-1).numpy(), color="k", ls="--", lw=1, label="Σ_k (1 − c_k)² (theory)")
    for k in range(D + 1):
        ax[1].axhline(th.plateau_loss(D, k), color="grey", lw=0.5)
    ax[1].set(xlabel="t = η · step", ylabel="loss", title="b) the staircase: L = d − k between steps")
    ax[1].legend(fontsize=8)
    U = torch.linalg.qr(torch.randn((1, D, D), generator=g, dtype=torch.float64)).Q
    modes = (0, 1, 3, 5)
    s0 = torch.tensor((1e-2, 3e-2, 1e-2, 0.5), dtype=torch.float64)
    V = torch.eye(len(GAMMA), dtype=torch.float64)[:, list(modes)]
    aligned = _run((U * s0) @ V.T, 300)
    c = torch.diagonal(U.transpose(-1, -2) @ aligned["C"] @ U, dim1=-2, dim2=-1)[:, 0]
    gm = gamma[list(modes)]
    logistic = th.logistic(gm * s0 ** 2, gm, aligned["t"].unsqueeze(-1))
    for k in range(D):
        ax[2].plot(aligned["t"].numpy(), c[:, k].numpy(), color=colours[k], lw=2, label=f"γ = {gm[k].item():g}")
        ax[2].plot(aligned["t"].numpy(), logistic[:, k].numpy(), color="k", ls="--", lw=1)
    ax[2].set(xlabel="t = η · step", ylabel="c_k = γ_k s_k²",
              title="c) aligned init: logistic of rate 8γ_k (dashed)")
    ax[2].legend(fontsize=8)
    fig.suptitle("Stepwise learning in linear Barlow Twins (Simon et al. 2023, Fig. 1; claims S1–S3) — "
                 "solid: simulation, dashed: theory")
    fig.tight_layout()
    paths = []
    for f in fmt:
        p = out / f"stepwise.{f}"
        fig.savefig(p, dpi=120)
        paths.append(p)
    plt.close(fig)
    return paths


def stepwise_figure(out_dir: str | pathlib.Path, *, seed: int = 0, fmt=("png", "pdf")) -> list[pathlib.Path]:
    """Draw the stepwise-learning figure to ``out_dir/stepwise.<fmt>``; ``seed`` draws W(0) and U.

    Returns the written paths, in the order of ``fmt``.
    """
    return render("stepwise", out_dir, fmt, seed, lambda out, f: _draw(out, f, seed))
