"""The figure of a training run's metrics document (``metrics.png``)."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def plot_metrics(doc: dict, path: Path) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    h = doc["history"]
    fig, ax = plt.subplots(1, 4, figsize=(17, 3.6))
    ep = [r["epoch"] for r in h]
    ax[0].plot(ep, [r["loss"] for r in h])
    ax[0].set(title="training loss", xlabel="epoch")
    for key in ("knn_acc", "readout_acc", "readout_train_acc"):
        pts = [(r["epoch"], r[key]) for r in h if r.get(key) is not None]
        if pts:
            ax[1].plot(*zip(*pts), marker=".", label=key)
    if doc["final"].get("probe_acc") is not None:
        ax[1].axhline(doc["final"]["probe_acc"], ls="--", c="k", label="linear probe")
    ax[1].set(title="accuracy", xlabel="epoch")
    ax[1].legend(fontsize=7)
    for key in ("rankme", "participation_ratio"):
        pts = [(r["epoch"], r[key]) for r in h if r.get(key) is not None]
        if pts:
            ax[2].plot(*zip(*pts), marker=".", label=key)
    ax2 = ax[2].twinx()
    pts = [(r["epoch"], r["normalized_std"]) for r in h if r.get("normalized_std") is not None]
    if pts:
        ax2.plot(*zip(*pts), c="gray", ls=":", label="std of ẑ")
    ax[2].set(title="rank / PR (std of ẑ dotted)", xlabel="epoch")
    ax[2].legend(fontsize=7)
    for s in doc["spectra"]:
        ev = np.asarray(s["eig_cov"])
        ax[3].semilogy(np.arange(1, len(ev) + 1), np.maximum(ev / max(ev[0], 1e-30), 1e-12), label=f"ep {s['epoch']}")
    ax[3].set(title="covariance eigenvalues / λ_max", xlabel="index")
    if doc["spectra"]:
        ax[3].legend(fontsize=6)
    fig.suptitle(f"{doc['config']['method']} {'EMA' if doc['config']['ema'] else 'no EMA'} · "
                 f"{doc['config']['backbone']} · {doc['config']['dataset']}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
