"""Markdown / HTML report of a :class:`~ncspec.reference.monitor.CollapseMonitor`: verdict, statistics and plots
(covariance spectrum of ẑ, ‖s‖, std of ẑ and effective rank over the observations)."""
from __future__ import annotations

import base64
import html
from pathlib import Path


def plot(mon, path: Path) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    h = mon.history
    x = [r["step"] if r.get("step") is not None else i for i, r in enumerate(h)]
    fig, axes = plt.subplots(2, 2, figsize=(9.5, 7.2))      # 950 px at dpi 100: fits a page
    ax = axes.ravel()
    picks = sorted({0, len(h) // 2, len(h) - 1})
    for i in picks:
        ev = np.asarray(h[i].get("eig_cov") or [np.nan])
        ax[0].semilogy(np.arange(1, len(ev) + 1), np.maximum(ev, 1e-16), marker=".", label=f"obs {i} (step {x[i]})")
    ax[0].set(title="spectrum of the centred Cov(ẑ)", xlabel="index")
    ax[0].legend(fontsize=7, loc="lower left", framealpha=0.8)
    th = mon.thresholds
    ax[1].plot(x, [r["center_norm"] for r in h], marker=".")
    ax[1].axhline((1 - th.complete_total_var) ** 0.5, ls="--", c="r", lw=0.8, label="complete-collapse threshold")
    ax[1].set(title="center-vector norm ‖s‖", xlabel="step", ylim=(0, 1.02))
    ax[1].legend(fontsize=7, loc="best", framealpha=0.8)
    ax[2].plot(x, [r["normalized_std"] for r in h], marker=".")
    M = h[-1]["dim"]
    ax[2].axhline(1 / M ** 0.5, ls=":", c="gray", lw=0.8, label="isotropic 1/√M")
    ax[2].set(title="std of l2-normalised embeddings", xlabel="step")
    ax[2].legend(fontsize=7, loc="best", framealpha=0.8)
    ax[3].plot(x, [r["live_dims"] for r in h], marker=".", label="live directions")
    ax[3].plot(x, [r["effective_rank"] for r in h], marker=".", label="centred effective rank")
    ax[3].plot(x, [r["rankme"] for r in h], marker=".", label="RankMe (raw)")
    ax[3].axhline(th.dimensional_fraction * h[-1]["max_rank"], ls="--", c="r", lw=0.8,
                  label="dimensional-collapse threshold (live)")
    ax[3].set(title="rank", xlabel="step", yscale="log")
    # below the axes: the legend never covers the RankMe curve
    ax[3].legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=2, frameon=False)
    fig.suptitle(f"verdict: {mon.verdict.state} — {first_flag_line(mon)}", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def first_flag_line(mon) -> str:
    """``first flagged at step N (state)`` or ``never flagged``."""
    v = mon.first_flag()
    if v is None:
        return f"never flagged in {len(mon.history)} observation(s)"
    return f"first flagged at step {v.step if v.step is not None else '?'} ({v.state})"


_COLS = ("step", "center_norm", "normalized_std", "live_dims", "effective_rank", "participation_ratio", "rankme",
         "invariance", "invariance_j1", "ema_lag")


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
        md = [f"# Collapse monitor: {v.state}", "", f"**{first_flag_line(mon)}**", "", f"Input: {title}", "",
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
           f"<p>Input: {html.escape(title)}</p>"
           f"<pre>{html.escape(str(v))}</pre><img alt='statistics' src='data:image/png;base64,{img}'>"
           f"<details><summary>all {len(rows) - 1} observations</summary>"
           f"<table border=1><tr>{''.join(f'<th>{html.escape(c)}</th>' for c in rows[0])}</tr>{trs}</table>"
           f"</details>")
    path.write_text(doc)
    return path
