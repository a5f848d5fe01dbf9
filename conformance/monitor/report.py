"""Markdown / HTML report of a :class:`~ncspec.reference.monitor.CollapseMonitor`: verdict, statistics and plots
(covariance spectrum of ẑ, ‖s‖, std of ẑ and effective rank over the observations)."""
from __future__ import annotations

import base64
import html
from pathlib import Path


def _band(ax, threshold: float, band: float, label: str, above: bool = False) -> None:
    """The rule's threshold (red dashed) and its near-threshold band (×``band`` on the healthy side, shaded)."""
    lo, hi = (threshold / band, threshold) if above else (threshold, threshold * band)
    ax.axhline(threshold, ls="--", c="r", lw=0.8, label=label)
    ax.axhspan(lo, hi, color="orange", alpha=0.15, lw=0, label=f"near threshold (×{band:g})")


def _family_panel(ax, mon, x) -> None:
    """The quantity the method's own rule reads: VICReg's features' std, Barlow Twins' redundancy; else the growth of
    ‖z‖ and the loss over consecutive increases (the explosive-growth rule)."""
    from ...reference.monitor.verdicts import _family
    h, th, fam = mon.history, mon.thresholds, _family(mon.method)
    if fam == "vicreg":
        ax.plot(x, [r.get("feature_std") for r in h], marker=".")
        _band(ax, th.vicreg_std, th.near_band, "VICReg variance rule (complete collapse below)")
        ax.axhline(1.0, ls=":", c="gray", lw=0.8, label="γ = 1")
        ax.set(title="mean std of the raw features (VICReg)", xlabel="step", yscale="log")
    elif fam == "barlow_twins":
        ax.plot(x, [r.get("redundancy") for r in h], marker=".")
        t = th.barlow_redundancy
        ax.axhline(t, ls="--", c="r", lw=0.8, label="Barlow Twins redundancy rule (dimensional above)")
        ax.axhspan(1 - (1 - t) * th.near_band, t, color="orange", alpha=0.15, lw=0,
                   label=f"near threshold (1 − redundancy ×{th.near_band:g})")
        ax.set(title="mean squared off-diagonal correlation (Barlow Twins)", xlabel="step", ylim=(0, 1.02))
    else:
        ax.plot(x, [r.get("growth_z", 1.0) for r in h], marker=".", label="‖z‖")
        if any("growth_loss" in r for r in h):
            ax.plot(x, [r.get("growth_loss", 1.0) for r in h], marker=".", label="|loss|")
        _band(ax, th.explode_growth, th.near_band, "explosive growth (diverging above)", above=True)
        ax.set(title="growth over consecutive increases", xlabel="step", yscale="log")
    ax.legend(fontsize=7, loc="best", framealpha=0.8)


def plot(mon, path: Path) -> Path:
    """Six panels, each threshold drawn on the quantity its rule reads, with its near-threshold band."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    h, th = mon.history, mon.thresholds
    x = [r["step"] if r.get("step") is not None else i for i, r in enumerate(h)]
    fig, axes = plt.subplots(3, 2, figsize=(9.5, 10.5))     # 950 px at dpi 100: fits a page
    ax = axes.ravel()
    for i in sorted({0, len(h) // 2, len(h) - 1}):
        ev = np.asarray(h[i].get("eig_cov") or [np.nan])
        ax[0].semilogy(np.arange(1, len(ev) + 1), np.maximum(ev, 1e-16), marker=".", label=f"obs {i} (step {x[i]})")
    ax[0].set(title="spectrum of the centred Cov(ẑ)", xlabel="index")
    ax[0].legend(fontsize=7, loc="lower left", framealpha=0.8)
    ax[1].plot(x, [r["total_var"] for r in h], marker=".", label="1 − ‖s‖²")
    _band(ax[1], th.complete_total_var, th.near_band, "complete collapse (point) below")
    if any(r.get("standardized_dev", 1) < 0.05 for r in h):
        ax[1].plot(x, [r["line_var"] for r in h], marker=".", label="1 − λ_max(E ẑẑᵀ) (line rule)")
    ax[1].set(title="total variance of ẑ, 1 − ‖s‖²", xlabel="step", yscale="log")
    ax[1].legend(fontsize=7, loc="best", framealpha=0.8)
    ax[2].plot(x, [r["normalized_std"] for r in h], marker=".")
    ax[2].axhline(1 / h[-1]["dim"] ** 0.5, ls=":", c="gray", lw=0.8, label="isotropic 1/√M (no rule)")
    ax[2].set(title="std of l2-normalised embeddings", xlabel="step")
    ax[2].legend(fontsize=7, loc="best", framealpha=0.8)
    ax[3].plot(x, [r["live_dims"] for r in h], marker=".", label="live directions")
    ax[3].set_ylim(0, h[-1]["max_rank"] * 1.05)
    _band(ax[3], th.dimensional_fraction * h[-1]["max_rank"], th.near_band, "dimensional collapse at or below")
    ax[3].set(title="live directions of the centred Cov(ẑ)", xlabel="step")
    ax[3].legend(fontsize=7, loc="best", framealpha=0.8)
    ax[4].plot(x, [r["effective_rank"] for r in h], marker=".", label="centred effective rank")
    ax[4].plot(x, [r["rankme"] for r in h], marker=".", label="RankMe (raw)")
    start = mon._rank_start()
    if start and any(r.get("standardized_dev", 1) < 0.05 for r in h):
        _band(ax[4], th.rank_concentration * start, th.near_band,
              "concentration rule (batch-standardised outputs)")
    ax[4].set(title="smooth ranks (judged only for batch-standardised outputs)", xlabel="step", yscale="log")
    ax[4].legend(fontsize=7, loc="best", framealpha=0.8)
    _family_panel(ax[5], mon, x)
    fig.suptitle(f"verdict: {mon.verdict.state} — {first_flag_line(mon)}", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def near_line(mon) -> str:
    """How many observations read a non-healthy state at the thresholds relaxed by ``near_band`` (the window rule's
    reading), and where the first was, or that none did."""
    near = [(r.get("step"), r["near"]) for r in mon.history if r.get("near", "healthy") != "healthy"]
    band = mon.thresholds.near_band
    if not near:
        return f"no observation within ×{band:g} of a collapse threshold"
    kinds = ", ".join(sorted({k for _, k in near}))
    return (f"near threshold: {len(near)} of {len(mon.history)} observation(s) read {kinds} within ×{band:g} of its "
            f"threshold (first at step {near[0][0]}); {mon.thresholds.window_hits} of any {mon.thresholds.window} "
            f"make a verdict")


def first_flag_line(mon) -> str:
    """``first flagged at step N (state)`` or ``never flagged``."""
    v = mon.first_flag()
    if v is None:
        return f"never flagged in {len(mon.history)} observation(s)"
    return f"first flagged at step {v.step if v.step is not None else '?'} ({v.state})"


_COLS = ("step", "center_norm", "total_var", "normalized_std", "live_dims", "effective_rank", "participation_ratio",
         "rankme", "feature_std", "redundancy", "invariance", "invariance_j1", "ema_lag", "near")


def _table(mon) -> list[list[str]]:
    cols = [c for c in _COLS if any(c in r for r in mon.history)]
    rows = [[*cols, "verdict"]]
    for r, v in zip(mon.history, mon.verdicts):
        cells = ["" if r.get(c) is None else f"{r[c]:.4g}" if isinstance(r[c], float) else str(r[c]) for c in cols]
        rows.append([*cells, v.state])
    return rows


def write_report(mon, path, *, title: str = "") -> Path:
    """Write ``path`` (.md: Markdown plus a PNG beside it; .html: one file with the plot inlined)."""
    path = Path(path)
    if path.suffix.lower() not in (".md", ".html"):
        raise ValueError(f"--report must end in .md or .html, got {path.name!r}.")
    png = plot(mon, path.with_suffix(".png"))
    v = mon.verdict
    rows = _table(mon)
    if path.suffix.lower() == ".md":
        md = [f"# Collapse monitor: {v.state}", "", f"**{first_flag_line(mon)}**", "", near_line(mon), "",
              f"Input: {title}", "",
              "```", str(v), "```", "", f"![statistics]({png.name})", "",
              f"<details><summary>all {len(rows) - 1} observations</summary>", "",
              "| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
        md += ["| " + " | ".join(r) + " |" for r in rows[1:]] + ["", "</details>"]
        path.write_text("\n".join(md) + "\n")
        return path
    img = base64.b64encode(png.read_bytes()).decode()
    png.unlink()
    trs = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows[1:])
    doc = (f"<!doctype html><meta charset='utf-8'><title>ncspec diagnose</title>"
           f"<style>body{{max-width:60em;margin:auto;font-family:sans-serif}} img{{max-width:100%;height:auto}}"
           f" pre{{white-space:pre-wrap;overflow-wrap:anywhere}} table{{border-collapse:collapse;font-size:small}}"
           f"</style>"
           f"<h1>Collapse monitor: {html.escape(v.state)}</h1>"
           f"<p class='first-flag'><strong>{html.escape(first_flag_line(mon))}</strong></p>"
           f"<p class='near'>{html.escape(near_line(mon))}</p>"
           f"<p>Input: {html.escape(title)}</p>"
           f"<pre>{html.escape(str(v))}</pre><img alt='statistics' src='data:image/png;base64,{img}'>"
           f"<details><summary>all {len(rows) - 1} observations</summary>"
           f"<table border=1><tr>{''.join(f'<th>{html.escape(c)}</th>' for c in rows[0])}</tr>{trs}</table>"
           f"</details>")
    path.write_text(doc)
    return path
