"""Claim reports: the JSON document and the terminal table.

JSON schema (``schema: "ncspec.report/1"``)::

    {
      "schema": "ncspec.report/1", "ncspec_version": str, "adapter": str,
      "profile": str, "created": str (ISO 8601, UTC), "duration_s": float,
      "summary": {"passed": int, "failed": int, "xfailed": int, "skipped": int, "not_run": int},
      "expected_failures": [{"claim", "test_filter", "reason", "line"}],
      "claims": [
        {"id": str, "title": str, "source": str, "statement": str,
         "status": "passed" | "failed" | "xfailed" | "skipped" | "not_run",
         "measurements": [{"quantity", "measured", "predicted", "error", "tolerance"}],
         "traces": [{"label", "steps", "series": {quantity: [float]}, "spectra": [{"step", "eigenvalues"}]}]
                   (deep claims only: training trajectories, drawn in the readable report),
         "tests": [{"test", "outcome", "duration", "reason"}]}
      ]
    }

A claim has failed if any of its tests failed (a strict XPASS, i.e. a listed
expected failure that passed, counts as failed); xfailed if none failed and at
least one failed as listed in the expected-failures file (test outcome
``xfailed``, its reason given); passed if at least one passed and none failed
or xfailed; skipped if all were skipped (the reason says why: e.g. the adapter
lacks a capability). ``xfailed``, ``created`` and ``expected_failures`` were
added without a schema bump: readers of the older form just see a new status.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import sys
import tempfile
from datetime import datetime, timezone
from importlib import metadata

from .claims import CLAIMS, load_all, sort_key

SCHEMA = "ncspec.report/1"
STATUSES = ("passed", "failed", "xfailed", "skipped", "not_run")


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
    if "xfailed" in outcomes:
        return "xfailed"
    if "passed" in outcomes:
        return "passed"
    return "skipped"


def build_report(tests: list[dict], adapter: str, duration: float,
                 expected_failures: list[dict] | None = None) -> dict:
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
            **({"traces": traces} if (traces := [tr for t in mine for tr in t.get("traces", [])]) else {}),
            tests=[{k: t[k] for k in ("test", "outcome", "duration", "reason")} for t in mine]))
    summary = {s: sum(c["status"] == s for c in claims) for s in STATUSES}
    return dict(schema=SCHEMA, ncspec_version=_version(), adapter=adapter,
                profile=settings._current_profile,
                created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                duration_s=round(duration, 3), summary=summary,
                expected_failures=list(expected_failures or []), claims=claims)


def atomic_write(path: str, data: str | bytes) -> str:
    """Write via a temporary file and ``os.replace``: a crash never leaves a half-written
    report (CI may read it while a run is still going). Returns the absolute path."""
    path = os.path.abspath(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 would hide the report from a CI artifact server
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


def write_json(report: dict, path: str) -> None:
    atomic_write(path, json.dumps(report, indent=2))


def _fmt(v) -> str:
    if v is None:
        return ""
    if isinstance(v, str):
        return v
    return f"{v:.4g}"


def worst_measurement(claim: dict) -> dict | None:
    """The claim's row with the largest error/tolerance (None without rows)."""
    rows = claim["measurements"]
    return max(rows, key=lambda r: (r["error"] or 0) / (r["tolerance"] or 1)) if rows else None


def measured_vs_predicted(claim: dict, with_error: bool = True) -> tuple[str, str]:
    """The headline row of a claim: its worst measurement relative to tolerance."""
    worst = worst_measurement(claim)
    if worst is None:
        return "", ""
    meas = f"{worst['quantity']}: {_fmt(worst['measured'])}"
    pred = _fmt(worst["predicted"])
    if with_error and worst["error"] is not None and worst["tolerance"] is not None:
        pred += f" (err {_fmt(worst['error'])} ≤ {_fmt(worst['tolerance'])})"
    return meas, pred


def claim_reasons(claim: dict) -> str:
    """The distinct reasons of a claim's tests; for an xfailed claim only the expected failures' own."""
    return "; ".join(sorted({t["reason"] for t in claim["tests"] if t["reason"]
                             and (claim["status"] != "xfailed" or t["outcome"] == "xfailed")}))


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
    colour = dict(passed="green", failed="bold red", xfailed="magenta", skipped="yellow", not_run="dim")
    table = Table(title=f"ncspec check — adapter {report['adapter']} (profile {report['profile']})",
                  show_lines=False)
    for col in ("claim", "status", "measured", "predicted", "source"):
        table.add_column(col, overflow="fold")
    for c in report["claims"]:
        meas, pred = measured_vs_predicted(c)
        status = f"[{colour[c['status']]}]{c['status']}[/]"
        reasons = claim_reasons(c)
        if c["status"] in ("failed", "skipped"):
            meas = meas or reasons[:160]
            stale = [t["reason"] for t in c["tests"] if t["reason"].startswith("expected failure passed")]
            if meas != reasons[:160] and stale:  # a strict XPASS has no failing measurement to point at
                meas += "\n" + stale[0]
        elif c["status"] == "xfailed":  # always say why it is allowed to fail
            meas = (meas + "\n" if meas else "") + "expected failure: " + reasons[:200]
        table.add_row(c["id"], status, escape(meas), escape(pred), escape(short_source(c["source"])))
    console.print(table)
    s = report["summary"]
    console.print(f"{s['passed']} passed, {s['failed']} failed"
                  + (f", {s['xfailed']} xfailed" if s.get("xfailed") else "")
                  + f", {s['skipped']} skipped"
                  + (f", {s['not_run']} not run" if s["not_run"] else "")
                  + f" in {report['duration_s']:.1f} s")
