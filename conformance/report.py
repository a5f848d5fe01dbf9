"""Claim reports: the JSON document and the terminal table.

JSON schema (``schema: "ncspec.report/1"``)::

    {
      "schema": "ncspec.report/1", "ncspec_version": str, "adapter": str,
      "profile": str, "hypothesis_seed": int | null, "created": str (ISO 8601, UTC), "duration_s": float,
      "summary": {"passed": int, "failed": int, "xfailed": int, "skipped": int, "not_run": int},
      "ran_no_example": [{"id": str, "reasons": [str]}],
      "expected_failures": [{"claim", "test_filter", "reason", "line"}],
      "claims": [
        {"id": str, "title": str, "source": str, "statement": str,
         "citations": [{"key", "where", "text", "brief", "title", "venue", "year", "url"}],
         "status": "passed" | "failed" | "xfailed" | "skipped" | "not_run",
         "measurements": [{"quantity", "measured", "predicted", "error", "tolerance",
                           "convention": true (only on rows stating a convention in force)}],
         "traces": [{"label", "steps", "series": {quantity: [float]}, "spectra": [{"step", "eigenvalues"}]}]
                   (deep claims only: training trajectories, drawn in the readable report),
         "tests": [{"test", "outcome", "duration", "reason",
                    "reproduce" (failed tests only): {"example", "blob", "seed", "profile", "command"}}]}
      ]
    }

A claim has failed if any of its tests failed (a strict XPASS, i.e. a listed
expected failure that passed, counts as failed); xfailed if none failed and at
least one failed as listed in the expected-failures file (test outcome
``xfailed``, its reason given); passed if at least one passed and none failed
or xfailed; skipped if all were skipped (the reason says why: e.g. the adapter
lacks a capability). ``xfailed``, ``created``, ``expected_failures`` and ``citations`` were
added without a schema bump: readers of the older form just see a new status.

``ran_no_example`` lists the claims of which no test ran on this adapter (all skipped), with
the reasons — a claim the adapter's capabilities leave unchecked, never silently.
``hypothesis_seed`` is the seed of a randomised (``thorough``) session, ``null`` for the
derandomised ``ci``; ``ncspec check --seed N`` reruns it. A failed test's ``reproduce`` holds the
failing example and the ``@reproduce_failure`` blob Hypothesis printed, the seed and the
command that reruns it. These keys were also added without a schema bump.
``source`` is the citations as one line (authors, year, where, arXiv id / DOI);
``citations`` resolves each against :mod:`ncspec.reference.papers`.
"""
from __future__ import annotations

import contextlib
import json
import os
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
                 expected_failures: list[dict] | None = None, seed: int | None = None,
                 profile: str | None = None) -> dict:
    """``profile``: the Hypothesis profile the tests ran under (default: the loaded one)."""
    from hypothesis import settings
    load_all()
    claims = []
    for cid in sorted(CLAIMS, key=sort_key):
        c = CLAIMS[cid]
        mine = [t for t in tests if t["claim"] == cid]
        claims.append(dict(
            id=cid, title=c.title, source=c.source_text, citations=[x.to_dict() for x in c.source],
            statement=c.statement,
            status=claim_status([t["outcome"] for t in mine]),
            measurements=[r for t in mine for r in t["rows"]],
            **({"traces": traces} if (traces := [tr for t in mine for tr in t.get("traces", [])]) else {}),
            tests=[{k: t[k] for k in ("test", "outcome", "duration", "reason", "reproduce") if k in t}
                   for t in mine]))
    summary = {s: sum(c["status"] == s for c in claims) for s in STATUSES}
    return dict(schema=SCHEMA, ncspec_version=_version(), adapter=adapter,
                profile=profile or settings.get_current_profile_name(), hypothesis_seed=seed,
                created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                duration_s=round(duration, 3), summary=summary,
                ran_no_example=ran_no_example(claims),
                expected_failures=list(expected_failures or []), claims=claims)


def ran_no_example(claims: list[dict]) -> list[dict]:
    """The claims of which every collected test was skipped, with the distinct skip reasons."""
    return [dict(id=c["id"], reasons=sorted({t["reason"] for t in c["tests"] if t["reason"]}))
            for c in claims if c["status"] == "skipped"]


def partly_skipped(claim: dict) -> list[dict]:
    """A run claim's skipped tests (e.g. the parts that need an ablation switch the adapter lacks)."""
    if claim["status"] in ("skipped", "not_run"):
        return []
    return [t for t in claim["tests"] if t["outcome"] == "skipped"]


def failures_to_reproduce(report: dict) -> list[dict]:
    """``{claim, test, reproduce}`` of every failed test that carries its reproduction."""
    return [dict(claim=c["id"], test=t["test"], reproduce=t["reproduce"])
            for c in report["claims"] for t in c["tests"] if t.get("reproduce")]


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


def short_source(claim: dict) -> str:
    """The claim's citations, one per line, without identifiers: ``Tian, Chen & Ganguli 2021, §4``
    (the reports' reference list and ``ncspec claims`` give the arXiv ids and links)."""
    cites = claim.get("citations")
    return "\n".join(c.get("brief", c["text"]) for c in cites) if cites else claim.get("source", "")


def conventions_in_force(report: dict) -> list[str]:
    """The conventions in force (rows marked ``convention``: measured loss scales other than ×1, declared and
    default conventions), once each, with the claim IDs that saw them."""
    seen: dict[str, list[str]] = {}
    for c in report["claims"]:
        for r in c["measurements"]:
            if r.get("convention"):
                seen.setdefault(r["quantity"], []).append(c["id"])
    return [f"{q} [{', '.join(dict.fromkeys(ids))}]" for q, ids in seen.items()]


def print_table(report: dict, console=None) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table
    if console is None:
        console = Console() if sys.stdout.isatty() else Console(width=140)
    colour = dict(passed="green", failed="bold red", xfailed="magenta", skipped="yellow", not_run="dim")
    seed = report.get("hypothesis_seed")
    table = Table(title=f"ncspec check — adapter {report['adapter']} (profile {report['profile']}"
                        + (f", seed {seed}" if seed is not None else "") + ")", show_lines=False)
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
        table.add_row(c["id"], status, escape(meas), escape(pred), escape(short_source(c)))
    console.print(table)
    for note in conventions_in_force(report):
        console.print(escape(note))
    print_coverage(report, console)
    print_reproductions(report, console)
    s = report["summary"]
    console.print(f"{s['passed']} passed, {s['failed']} failed"
                  + (f", {s['xfailed']} xfailed" if s.get("xfailed") else "")
                  + f", {s['skipped']} skipped"
                  + (f", {s['not_run']} not run" if s["not_run"] else "")
                  + f" in {report['duration_s']:.1f} s")


def print_coverage(report: dict, console) -> None:
    """Per adapter: the claims that ran no example, and the skipped parts of the others."""
    from rich.markup import escape
    none = report.get("ran_no_example", [])
    if none:
        console.print(f"[yellow]Claims that ran no example on adapter {escape(report['adapter'])} "
                      f"({len(none)}):[/]")
        for c in none:
            console.print(f"  {c['id']}: " + escape("; ".join(c["reasons"]) or "all tests skipped"))
    partly = [(c["id"], partly_skipped(c), len(c["tests"])) for c in report["claims"]]
    partly = [(cid, sk, n) for cid, sk, n in partly if sk]
    if partly:
        console.print("Claims run in part (the skipped tests need capabilities the adapter lacks):")
        for cid, sk, n in partly:
            console.print(f"  {cid}: {len(sk)} of {n} tests skipped — " + escape("; ".join(
                f"{t['test'].split('::')[-1]} ({t['reason']})" for t in sk)))


def print_reproductions(report: dict, console) -> None:
    """How to rerun each failure: the command, the failing example, the blob."""
    from rich.markup import escape
    failed = failures_to_reproduce(report)
    if not failed:
        return
    console.print("[bold red]Reproduce the failures:[/]")
    for f in failed:
        r = f["reproduce"]
        console.print(f"  {f['claim']} {escape(f['test'].split('::')[-1])}: [bold]{escape(r['command'])}[/]")
        for line in (r.get("example") or "").splitlines()[:12]:
            console.print("    " + escape(line))
        if r.get("blob"):
            console.print(f"    or decorate the test with {escape(r['blob'])}")
