"""Readable claim reports: Markdown or self-contained HTML, with a margin plot.

``write_report(report, "out/report.md")`` writes the Markdown file and, next to it,
``report_margins.png`` (linked relatively, so the folder can be uploaded as a CI
artifact as is); ``write_report(report, "out/report.html")`` writes one HTML file
with the PNG inlined as base64, so it can be mailed or attached without its folder.
``report`` is the :mod:`ncspec.conformance.run.report` JSON document. Reports are most useful
when claims fail, so nothing here depends on the outcome.

The margin plot shows, per claim, the worst error/tolerance ratio over its recorded
measurements on a log scale: a bar right of the line at 1 is a claim outside its
tolerance, and the distance to the line is how much slack the others have.
"""
from __future__ import annotations

import base64
import html
import io
import math
import os
from datetime import datetime, timezone

from ...reference.files import atomic_write
from .report import (
    ERR_NOTE,
    STATUSES,
    comparison,
    coverage_cell,
    failures_to_reproduce,
    measured_vs_predicted,
    not_applicable,
    partly_skipped,
    row_text,
    short_source,
    summary_line,
    worst_measurement,
)

COLOURS = dict(passed="#2e7d32", failed="#c62828", errored="#6a1b9a", xfailed="#ad1457", not_applicable="#00838f",
               skipped="#f9a825", not_run="#9e9e9e")
_MARKERS = dict(passed="o", failed="X", errored="P", xfailed="D", not_applicable="^", skipped="s", not_run=".")


#: what a readable report may be: Markdown with its PNGs beside it, or one self-contained HTML page
REPORT_SUFFIXES = (".md", ".html", ".htm")


def check_report_path(path, name: str = "report path") -> str:
    """The suffix of a readable report's ``path``; a ValueError naming ``name`` (the option that gave it) for any
    other suffix."""
    ext = os.path.splitext(os.fspath(path))[1]
    if ext.lower() not in REPORT_SUFFIXES:
        raise ValueError(f"{name} {os.fspath(path)!r} must end with .md (Markdown plus a PNG beside it) "
                         f"or .html (one self-contained file).")
    return ext


def write_report(report: dict, path) -> list[str]:
    """Write ``report`` to ``path`` (``.md`` or ``.html``); return the files written."""
    path = os.fspath(path)
    stem, ext = os.path.splitext(path)
    ext = check_report_path(path).lower()
    png = margin_plot(report)
    trained = training_plot(report)
    if ext == ".md":
        png_path = f"{stem}_margins.png"
        written = [atomic_write(png_path, png)]
        md = _markdown(report, os.path.basename(png_path))
        if trained is not None:
            written.append(atomic_write(f"{stem}_training.png", trained))
            md += _training_md(os.path.basename(f"{stem}_training.png"))
        return written + [atomic_write(path, md)]
    page = _html(report, base64.b64encode(png).decode("ascii"))
    if trained is not None:
        extra = _training_html(base64.b64encode(trained).decode("ascii"))
        page = page.replace("</body></html>", extra + "</body></html>")
    return [atomic_write(path, page)]


def training_plot(report: dict) -> bytes | None:
    """The deep claims' training trajectories as PNG bytes (None when no claim recorded any): per trace,
    ‖s‖ over training steps (left) and the correlation spectrum λ/λ_max at the first and last
    evaluation (right, log scale)."""
    traces = [(c["id"], t) for c in report["claims"] for t in c.get("traces", [])]
    if not traces:
        return None
    from matplotlib.figure import Figure
    fig = Figure(figsize=(11, 4), dpi=110)
    ax_s, ax_e = fig.subplots(1, 2)
    colours = [f"C{i % 10}" for i in range(len(traces))]
    for colour, (cid, t) in zip(colours, traces):
        if "‖s‖" in t["series"]:
            ax_s.plot(t["steps"], t["series"]["‖s‖"], marker=".", color=colour, label=f"{cid} {t['label']}")
        for k, sp in enumerate((t["spectra"][:1] + t["spectra"][-1:]) if t["spectra"] else []):
            ev = sorted((max(x, 0.0) for x in sp["eigenvalues"]), reverse=True)
            top = max(ev[0], 1e-300)
            ax_e.semilogy(range(1, len(ev) + 1), [max(x / top, 1e-12) for x in ev], color=colour,
                          ls=":" if k == 0 else "-", label=f"{cid} {t['label']} (step {sp['step']})")
    ax_s.set(xlabel="training step", ylabel="‖s‖ (norm of the mean l2-normalised embedding)", ylim=(0, 1.02),
             title="‖s‖ over training (1: complete collapse)")
    ax_e.set(xlabel="eigenvalue index", ylabel="λ / λ_max", title="correlation spectrum: first (dotted), last")
    ax_s.legend(fontsize=6)
    ax_e.legend(fontsize=5, ncol=2)
    fig.suptitle(f"ncspec deep claims — adapter {report['adapter']}", fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _training_md(png_name: str) -> str:
    return f"\n## Training trajectories (deep claims)\n\n![‖s‖ and spectra over training]({png_name})\n"


def _training_html(png_b64: str) -> str:
    return (f"<h2>Training trajectories (deep claims)</h2><img alt='‖s‖ and spectra over training' "
            f"src='data:image/png;base64,{png_b64}'>")


def claim_margin(claim: dict) -> float | None:
    """Worst error/tolerance over the claim's numeric rows; None if it has none."""
    ratios = [r["error"] / r["tolerance"] for r in claim["measurements"]
              if r.get("error") is not None and r.get("tolerance")]
    return max(ratios) if ratios else None


def margin_plot(report: dict) -> bytes:
    """The margin plot as PNG bytes. Claims that were not run are left out (a ``-k`` run
    would otherwise be a column of empty rows); claims without numeric rows (orderings,
    qualitative checks) are drawn as a marker at the left edge labelled with their status."""
    from matplotlib.figure import Figure  # object API on Agg: no pyplot state, no backend switch
    from matplotlib.lines import Line2D

    claims = [c for c in report["claims"] if c["status"] != "not_run"]
    margins = [claim_margin(c) for c in claims]
    positive = [m for m in margins if m and m > 0]
    lo = 10.0 ** (math.floor(math.log10(min(positive + [1.0]))) - 1)   # a decade below the smallest
    hi = max(positive + [1.0]) * 30   # room for the value labels
    fig = Figure(figsize=(7.5, 1.2 + 0.26 * max(len(claims), 1)), dpi=110)
    ax = fig.add_subplot()
    ax.set_xscale("log")
    for y, (c, m) in enumerate(zip(claims, margins)):
        colour = COLOURS[c["status"]]
        if m is None:
            ax.plot([lo * 1.3], [y], marker=_MARKERS[c["status"]], color=colour, ms=7, ls="none")
            ax.annotate(c["status"], (lo * 1.3, y), xytext=(8, 0), textcoords="offset points",
                        va="center", fontsize=7, color=colour)
        else:
            ax.barh(y, max(m, lo) - lo, left=lo, color=colour, height=0.6)
            ax.annotate(f"{m:.2g}" if m else "0", (max(m, lo), y), xytext=(3, 0), textcoords="offset points",
                        va="center", fontsize=7)
    ax.axvline(1.0, color="black", lw=1)
    ax.set_xlim(lo, hi)
    ax.set_ylim(len(claims) - 0.5, -0.5)
    ax.set_yticks(range(len(claims)), [c["id"] for c in claims], fontsize=8)
    ax.set_xlabel("worst error / tolerance (≤ 1 is within tolerance)")
    skipped_out = len(report["claims"]) - len(claims)
    ax.set_title(f"ncspec margins — adapter {report['adapter']}"
                 + (f" ({skipped_out} claims not run, not shown)" if skipped_out else ""), fontsize=9)
    if not claims:
        ax.text(0.5, 0.5, "no claim ran", transform=ax.transAxes, ha="center", va="center")
    present = [s for s in STATUSES if any(c["status"] == s for c in claims)]
    ax.legend(handles=[Line2D([], [], color=COLOURS[s], marker="s", ls="none", label=s) for s in present],
              fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _header(report: dict) -> tuple[str, str, str]:
    created = report.get("created") or datetime.now(timezone.utc).isoformat(timespec="seconds")
    title = f"ncspec check — adapter {report['adapter']}"
    meta = (f"profile {report['profile']} · ncspec {report['ncspec_version']} · {created} · "
            f"{report['duration_s']:.1f} s")
    summary = summary_line(report)
    if report.get("hypothesis_seed") is not None:
        meta += f" · seed {report['hypothesis_seed']} (rerun: ncspec check --seed {report['hypothesis_seed']})"
    return title, meta, summary


def _coverage(report: dict) -> list[tuple[str, str]]:
    """(claim, why) for each claim that ran no example, then for each claim run in part."""
    rows = [(c["id"], "no example ran: " + ("; ".join(c["reasons"]) or "all tests skipped"))
            for c in report.get("ran_no_example", [])]
    rows += [(cid, "not applicable: its tests passed without building a learner of the adapter (they check the "
                   "theory or the harness)") for cid in not_applicable(report)]
    for c in report["claims"]:
        sk = partly_skipped(c)
        if sk:
            rows.append((c["id"], f"{len(sk)} of {len(c['tests'])} tests skipped: " + "; ".join(
                f"{t['test'].split('::')[-1]} ({t['reason']})" for t in sk)))
    return rows


def _reproductions(report: dict) -> list[tuple[str, str, str]]:
    """(test, command, example + blob) per failed test."""
    out = []
    for f in failures_to_reproduce(report):
        r = f["reproduce"]
        extra = "\n".join(x for x in (r.get("example") or "", r.get("blob") or "") if x)
        out.append((f["test"], r["command"], extra))
    return out


def _rows(report: dict):
    """(id, status, builds / steps, measured, predicted, error vs tolerance, source) per claim: the measured
    column as in the terminal (a failure's message first)."""
    for c in report["claims"]:
        _, pred = measured_vs_predicted(c, with_error=False)
        yield (c["id"], c["status"], coverage_cell(c), row_text(c).replace("\n", " — "), pred,
               comparison(worst_measurement(c)), short_source(c).replace("\n", "; "))


def _references(report: dict) -> list[tuple[str, str]]:
    """(full reference, link) of every paper the report's claims cite, in order of first citation."""
    from ncspec.reference.papers import PAPERS
    keys = dict.fromkeys(x["key"] for c in report["claims"] for x in c.get("citations", ()) if x["key"] in PAPERS)
    return [(PAPERS[k].reference(), PAPERS[k].link) for k in keys]


def _detailed(report: dict) -> list[dict]:
    return [c for c in report["claims"] if c["status"] in ("failed", "errored", "xfailed")]


def _md(text) -> str:
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _markdown(report: dict, png_name: str) -> str:
    title, meta, summary = _header(report)
    out = [f"# {title}", "", meta, "", f"**Summary:** {summary}", "",
           "## Claims", "", "| ID | status | builds / steps | measured | predicted | error vs tolerance | source |",
           "|---|---|---|---|---|---|---|"]
    for cid, status, used, meas, pred, tol, src in _rows(report):
        status = f"**{status}**" if status in ("failed", "errored") else status
        out.append("| " + " | ".join(_md(x) for x in (cid, status, used, meas, pred, tol, src)) + " |")
    out += ["", _md(ERR_NOTE) + " Builds: learners of the adapter built by the claim's tests; steps: their "
            "optimisation steps (`after_step()` calls)."]
    coverage = _coverage(report)
    if coverage:
        out += ["", f"## Coverage on adapter {_md(report['adapter'])}", "", "| claim | what did not run |", "|---|---|"]
        out += [f"| {cid} | {_md(why)} |" for cid, why in coverage]
    repro = _reproductions(report)
    if repro:
        out += ["", "## Reproduce the failures", ""]
        for test, command, extra in repro:
            out += [f"**{_md(test)}**: `{command}`", ""] + (["```", extra, "```", ""] if extra else [])
    out += ["", "## Margins", "", f"![worst error / tolerance per claim]({png_name})", ""]
    for c in _detailed(report):
        out += [f"## {c['id']} — {_md(c['title'])} ({c['status']})", "", _md(c["statement"]), "",
                f"Source: {_md(c['source'])}", "", "| test | outcome | duration (s) | reason |", "|---|---|---|---|"]
        out += [f"| {_md(t['test'])} | {t['outcome']} | {t['duration']:.2f} | {_md(t['reason'])} |" for t in c["tests"]]
        out.append("")
    if report.get("expected_failures"):
        out += ["## Expected failures", "", "| line | claim | test filter | reason |", "|---|---|---|---|"]
        out += [f"| {e['line']} | {e['claim']} | {_md(e['test_filter'])} | {_md(e['reason'])} |"
                for e in report["expected_failures"]]
        out.append("")
    refs = _references(report)
    if refs:
        out += ["## References", ""] + [f"- {_md(ref)} <{link}>" for ref, link in refs] + [""]
    return "\n".join(out)


_CSS = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:14px}th,td{border:1px solid #ccc;padding:4px 8px;
text-align:left;vertical-align:top}th{background:#f3f3f3}.meta{color:#666}img{max-width:100%}
""" + "".join(f".{s}{{color:{c};font-weight:bold}}" for s, c in COLOURS.items())


def _html(report: dict, png_b64: str) -> str:
    e = html.escape
    title, meta, summary = _header(report)
    out = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{e(title)}</title>",
           f"<style>{_CSS}</style></head><body>", f"<h1>{e(title)}</h1>", f"<p class='meta'>{e(meta)}</p>",
           f"<p><b>Summary:</b> {e(summary)}</p>", "<h2>Claims</h2><table><tr><th>ID</th><th>status</th>"
           "<th>builds / steps</th><th>measured</th><th>predicted</th><th>error vs tolerance</th><th>source</th></tr>"]
    for cid, status, used, meas, pred, tol, src in _rows(report):
        out.append(f"<tr><td>{e(cid)}</td><td class='{status}'>{status}</td><td>{e(used)}</td><td>{e(meas)}</td>"
                   f"<td>{e(pred)}</td><td>{e(tol)}</td><td>{e(src)}</td></tr>")
    out.append("</table>")
    out.append(f"<p class='meta'>{e(ERR_NOTE)} Builds: learners of the adapter built by the claim's tests; steps: "
               f"their optimisation steps (<code>after_step()</code> calls).</p>")
    coverage = _coverage(report)
    if coverage:
        out.append(f"<h2>Coverage on adapter {e(report['adapter'])}</h2><table><tr><th>claim</th>"
                   "<th>what did not run</th></tr>")
        out += [f"<tr><td>{e(cid)}</td><td>{e(why)}</td></tr>" for cid, why in coverage]
        out.append("</table>")
    repro = _reproductions(report)
    if repro:
        out.append("<h2>Reproduce the failures</h2>")
        for test, command, extra in repro:
            out.append(f"<p><b>{e(test)}</b>: <code>{e(command)}</code></p>"
                       + (f"<pre>{e(extra)}</pre>" if extra else ""))
    out += ["<h2>Margins</h2>",
            f"<img alt='worst error / tolerance per claim' src='data:image/png;base64,{png_b64}'>"]
    for c in _detailed(report):
        out += [f"<h2>{e(c['id'])} — {e(c['title'])} (<span class='{c['status']}'>{c['status']}</span>)</h2>",
                f"<p>{e(c['statement'])}</p><p class='meta'>Source: {e(c['source'])}</p>",
                "<table><tr><th>test</th><th>outcome</th><th>duration (s)</th><th>reason</th></tr>"]
        out += [f"<tr><td>{e(t['test'])}</td><td class='{t['outcome']}'>{e(t['outcome'])}</td>"
                f"<td>{t['duration']:.2f}</td><td>{e(t['reason'])}</td></tr>" for t in c["tests"]]
        out.append("</table>")
    if report.get("expected_failures"):
        out.append("<h2>Expected failures</h2><table><tr><th>line</th><th>claim</th><th>test filter</th>"
                   "<th>reason</th></tr>")
        out += [f"<tr><td>{x['line']}</td><td>{e(x['claim'])}</td><td>{e(x['test_filter'])}</td>"
                f"<td>{e(x['reason'])}</td></tr>" for x in report["expected_failures"]]
        out.append("</table>")
    refs = _references(report)
    if refs:
        out.append("<h2>References</h2><ul>" + "".join(f"<li>{e(ref)} <a href='{e(link)}'>{e(link)}</a></li>"
                                                       for ref, link in refs) + "</ul>")
    out.append("</body></html>")
    return "\n".join(out)
