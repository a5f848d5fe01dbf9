"""Claim reports: the JSON document and the terminal table.

JSON schema (``schema: "ncspec.report/1"``)::

    {
      "schema": "ncspec.report/1", "ncspec_version": str, "adapter": str,
      "profile": str, "duration_s": float,
      "summary": {"passed": int, "failed": int, "skipped": int, "not_run": int},
      "claims": [
        {"id": str, "title": str, "source": str, "statement": str,
         "status": "passed" | "failed" | "skipped" | "not_run",
         "measurements": [{"quantity", "measured", "predicted", "error", "tolerance"}],
         "tests": [{"test", "outcome", "duration", "reason"}]}
      ]
    }

A claim has failed if any of its tests failed, passed if at least one passed
and none failed, skipped if all were skipped (the reason says why: e.g. the
adapter lacks a capability).
"""
from __future__ import annotations

import json
import os
import re
import sys
import tempfile
from importlib import metadata

from .claims import CLAIMS, load_all, sort_key

SCHEMA = "ncspec.report/1"


def _version() -> str:
    try:
        return metadata.version("ncspec")
    except metadata.PackageNotFoundError:
        return "0+checkout"


def claim_status(outcomes: list[str]) -> str:
    if not outcomes:
        return "not_run"
    if "failed" in outcomes:
        return "failed"
    if "passed" in outcomes:
        return "passed"
    return "skipped"


def build_report(tests: list[dict], adapter: str, duration: float) -> dict:
    from hypothesis import settings
    load_all()
    claims = []
    for cid in sorted(CLAIMS, key=sort_key):
        c = CLAIMS[cid]
        mine = [t for t in tests if t["claim"] == cid]
        claims.append(dict(
            id=cid, title=c.title, source=c.source, statement=c.statement,
            status=claim_status([t["outcome"] for t in mine]),
            measurements=[r for t in mine for r in t["rows"]],
            tests=[{k: t[k] for k in ("test", "outcome", "duration", "reason")} for t in mine]))
    summary = {s: sum(c["status"] == s for c in claims) for s in ("passed", "failed", "skipped", "not_run")}
    return dict(schema=SCHEMA, ncspec_version=_version(), adapter=adapter,
                profile=settings._current_profile, duration_s=round(duration, 3),
                summary=summary, claims=claims)


def write_json(report: dict, path: str) -> None:
    """Write atomically: a crash never leaves a half-written report."""
    path = os.path.abspath(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(report, f, indent=2)
    os.replace(tmp, path)


def _fmt(v) -> str:
    if v is None:
        return ""
    if isinstance(v, str):
        return v
    return f"{v:.4g}"


def measured_vs_predicted(claim: dict) -> tuple[str, str]:
    """The headline row of a claim: its worst measurement relative to tolerance."""
    rows = claim["measurements"]
    if not rows:
        return "", ""
    worst = max(rows, key=lambda r: (r["error"] or 0) / (r["tolerance"] or 1))
    meas = f"{worst['quantity']}: {_fmt(worst['measured'])}"
    pred = _fmt(worst["predicted"])
    if worst["error"] is not None and worst["tolerance"] is not None:
        pred += f" (err {_fmt(worst['error'])} ≤ {_fmt(worst['tolerance'])})"
    return meas, pred


def short_source(source: str) -> str:
    """``seed 003 (003_….txt) eq. 5; seed 000; THEORY.md H1`` → ``seed 003 eq. 5; seed 000``."""
    parts = [re.sub(r"\s*\([^)]*\.txt\)", "", p).strip() for p in source.split(";")]
    return "; ".join(p for p in parts if not p.startswith("THEORY.md"))


def print_table(report: dict, console=None) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table
    if console is None:
        console = Console() if sys.stdout.isatty() else Console(width=140)
    colour = dict(passed="green", failed="bold red", skipped="yellow", not_run="dim")
    table = Table(title=f"ncspec check — adapter {report['adapter']} (profile {report['profile']})",
                  show_lines=False)
    for col in ("claim", "status", "measured", "predicted", "source"):
        table.add_column(col, overflow="fold")
    for c in report["claims"]:
        meas, pred = measured_vs_predicted(c)
        status = f"[{colour[c['status']]}]{c['status']}[/]"
        if c["status"] in ("failed", "skipped"):
            reasons = {t["reason"] for t in c["tests"] if t["reason"]}
            meas = meas or "; ".join(sorted(reasons))[:160]
        table.add_row(c["id"], status, escape(meas), escape(pred), escape(short_source(c["source"])))
    console.print(table)
    s = report["summary"]
    console.print(f"{s['passed']} passed, {s['failed']} failed, {s['skipped']} skipped"
                  + (f", {s['not_run']} not run" if s["not_run"] else "")
                  + f" in {report['duration_s']:.1f} s")
