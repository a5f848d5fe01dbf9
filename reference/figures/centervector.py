"""Jha et al. 2024, Figures 3–4 generalised: the center vector ‖s‖ over training, per method.

Rows: the two toy sets of :mod:`ncspec.reference.toy` (Blob, Moons; 2-D signal plus 8
nuisance coordinates that every augmentation redraws). Columns:

a) the 2-D signal of one draw of the data set, coloured by label (the paper's
   "input dataset distribution");
b) Siamese (the paper's Fig. 4 + Fig. 3): SimSiam, SimSiam without predictor, without
   stop-grad, and L_Simple (invariance + center penalty, claim J3's chosen form);
c) contrastive and redundancy reduction: SimCLR (InfoNCE), the triplet loss of
   claim J4, Barlow Twins, Barlow Twins without decorrelation (with and without
   its BN: claim J5), VICReg;
d) clustering: DINO with and without centering, SwAV with and without
   Sinkhorn-Knopp;
e) final kNN accuracy of every run (k = 20, t = 0.1, backbone representation).

Curves: mean of ‖s‖ over three seeds, shaded between the smallest and the
largest seed, in the toy :data:`ncspec.reference.toy.SETTING` (the claims' setting).
Dashed curves are the ablations that remove a method's center-vector mechanism.
"""
from __future__ import annotations

import pathlib

import torch
from ncspec.reference import toy
from ncspec.reference.methods import center, clustering, contrastive, redundancy

from ._output import render

_FAMILIES = (center, contrastive, redundancy, clustering)


def _build(method, encoder, embed_dim, **options):
    for family in _FAMILIES:
        if method in family.METHODS:
            return family.build(method, encoder, embed_dim, **options)
    raise ValueError(f"unknown method {method!r}")


#: column → [(label, method, options, colour, dashed)]
PANELS = {
    "b) Siamese (seed Fig. 3–4)": [
        ("SimSiam", "simsiam_mlp", {}, "tab:blue", False),
        ("SimSiam, no predictor", "simsiam_mlp", dict(predictor=False), "tab:red", True),
        ("SimSiam, no stop-grad", "simsiam_mlp", dict(stop_grad="none"), "tab:pink", True),
        (r"L$_\mathrm{Simple}$ (λ = 2)", "lsimple", {}, "tab:green", False),
    ],
    "c) contrastive / redundancy reduction": [
        ("SimCLR (InfoNCE)", "simclr", {}, "tab:purple", False),
        ("triplet (J4)", "triplet", {}, "tab:olive", False),
        ("Barlow Twins", "barlow_twins", {}, "tab:brown", False),
        ("BT, no decorrelation", "barlow_twins", dict(decorrelation=False), "tab:orange", False),
        ("BT, no decorr., no BN", "barlow_twins", dict(decorrelation=False, batchnorm=False), "tab:orange", True),
        ("VICReg", "vicreg", {}, "tab:cyan", False),
    ],
    "d) clustering": [
        ("DINO", "dino", dict(teacher_momentum=0.9), "tab:blue", False),
        ("DINO, no centering", "dino", dict(teacher_momentum=0.9, centering=False), "tab:blue", True),
        ("SwAV", "swav", {}, "tab:green", False),
        ("SwAV, no Sinkhorn", "swav", dict(sinkhorn=False), "tab:green", True),
    ],
}


def centervector_figure(out_dir: str | pathlib.Path, *, seed: int = 0, seeds: int = 3,
                        fmt=("png", "pdf")) -> list[pathlib.Path]:
    """Draw ‖s‖ over training for every method and ablation to ``out_dir/centervector.<fmt>``.

    Args:
        out_dir: folder to write into; created if missing. Must not be a file.
        seed: seeds the data draws (replica s of each set uses ``seed + s``), the
            initialisation and the batches.
        seeds: replicas per data set (the paper's figures average five runs; three
            keep the figure under ~30 s on one core).
        fmt: file formats (matplotlib extensions), e.g. ``("png", "pdf")``.

    Returns:
        The written paths, in the order of ``fmt``.
    """
    if not (isinstance(seeds, int) and not isinstance(seeds, bool) and seeds >= 1):
        raise ValueError(f"seeds must be an int >= 1 (replicas per data set), got {seeds!r}.")
    return render("centervector", out_dir, fmt, seed, lambda out, f: _draw(out, seed, seeds, f))


#: legend placement per column (row 0), in the space the curves leave free
_LEGEND = {1: dict(loc="center right", bbox_to_anchor=(1.0, 0.3)),
           2: dict(loc="center right", bbox_to_anchor=(1.0, 0.76)),
           3: dict(loc="lower right")}


def _runs(seed: int, seeds: int) -> tuple[toy.ToySet, dict]:
    data = toy.concat(*(toy.make(name, replicas=seeds, seed=seed) for name in toy.DATASETS))
    runs = {}
    for entries in PANELS.values():
        for label, method, options, _, _ in entries:
            runs[label] = toy.run(_build, method, data, seed=seed, **options)
    return data, runs


def _draw(out_dir: pathlib.Path, seed: int, seeds: int, fmt: tuple[str, ...]) -> list[pathlib.Path]:
    from matplotlib.figure import Figure

    data, runs = _runs(seed, seeds)
    names = {"blob": "Blob", "moons": "Moons"}
    fig = Figure(figsize=(22, 9.0))
    axes = fig.subplots(2, 5, gridspec_kw=dict(width_ratios=[0.8, 1, 1, 1, 1.05]))
    for row, name in enumerate(toy.DATASETS):
        mask = torch.tensor([n == name for n in data.names])
        first = int(mask.nonzero()[0])
        ax = axes[row, 0]
        x = torch.cat([data.x_train[first], data.x_test[first]])[:, :2]
        y = torch.cat([data.y_train[first], data.y_test[first]])
        ax.scatter(x[:, 0], x[:, 1], c=y, cmap="tab10", vmin=0, vmax=9, s=6, alpha=0.8)
        ax.set_title(f"a) {names[name]}: 2-D signal (+8 nuisance dims)", fontsize=10)
        ax.set_xlabel("$u_1$ (standardised)")
        ax.set_ylabel(f"{names[name]}\n$u_2$ (standardised)", fontsize=11)
        ax.set_aspect("equal", adjustable="datalim")
        for col, (title, entries) in enumerate(PANELS.items(), start=1):
            ax = axes[row, col]
            for label, _, _, colour, dashed in entries:
                run = runs[label]
                s = run.center_norm[:, mask]
                steps = run.steps.numpy()
                ax.plot(steps, s.mean(1).numpy(), ls="--" if dashed else "-", color=colour, lw=1.8, label=label)
                ax.fill_between(steps, s.min(1).values.numpy(), s.max(1).values.numpy(), color=colour,
                                alpha=0.12 if dashed else 0.2, lw=0)
            ax.set_ylim(0, 1.02)
            ax.set_xlim(0, steps[-1])
            ax.axhline(1.0, color="grey", lw=0.8, ls=":")
            ax.set_xlabel("training step")
            ax.set_ylabel(r"$\Vert s \Vert$ (center of $\hat z$)")
            ax.grid(alpha=0.25)
            if row == 0:
                ax.set_title(title, fontsize=11)
                ax.legend(fontsize=7.5, framealpha=0.9, **_LEGEND[col])
        ax = axes[row, 4]
        labels = [label for entries in PANELS.values() for label, *_ in entries]
        colours = [c for entries in PANELS.values() for _, _, _, c, _ in entries]
        hatches = ["//" if d else "" for entries in PANELS.values() for *_, d in entries]
        knn = [runs[label].knn[-1, mask] for label in labels]
        pos = list(range(len(labels)))[::-1]
        means = [float(k.mean()) for k in knn]
        err = [[m - float(k.min()) for m, k in zip(means, knn)], [float(k.max()) - m for m, k in zip(means, knn)]]
        ax.barh(pos, means, xerr=err, color=colours, hatch=hatches, edgecolor="white", alpha=0.85,
                error_kw=dict(lw=0.8, capsize=2))
        init = float(runs[labels[0]].knn[0, mask].mean())
        ax.axvline(init, color="k", ls=":", lw=1.0)
        ax.set_yticks(pos)
        ax.set_yticklabels(labels, fontsize=7.5)
        lo = min(min(float(k.min()) for k in knn), init, 0.5)
        ax.set_xlim(max(0.0, lo - 0.02), 1.0)
        ax.set_xlabel(f"kNN accuracy (k = 20); dotted: at init ({init:.2f})")
        if row == 0:
            ax.set_title("e) kNN accuracy (mean, min–max over seeds)", fontsize=11)
    fig.suptitle("Jha et al. (2024), Figs. 3–4 on every method: the center vector $\\Vert s\\Vert$ of the "
                 "l2-normalised embeddings over training; dashed = the method's collapse-avoiding term removed",
                 fontsize=13, y=0.995)
    fig.text(0.5, 0.955,
             f"MLP 10→32→32→16 with BN, Adam lr 2e-3, batch 64, augmentation: scaling ±20 %, jitter σ = 0.1, "
             f"nuisance redrawn; {seeds} seeds per set (line: mean, band: min–max); ‖s‖ on two augmented views "
             f"of the test split.", ha="center", va="top", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.94), h_pad=1.5)
    paths = []
    for ext in fmt:
        path = out_dir / f"centervector.{ext}"
        fig.savefig(path, dpi=110)
        paths.append(path)
    return paths
