"""Claim reports: the JSON document and the terminal table.

JSON schema (``schema: "ncspec.report/2"``)::

    {
      "schema": "ncspec.report/2", "ncspec_version": str, "adapter": str, "tier": str,
      "profile": str, "hypothesis_seed": int | null, "created": str (ISO 8601, UTC), "duration_s": float,
      "summary": {"passed": int, "failed": int, "errored": int, "xfailed": int, "not_applicable": int,
                  "skipped": int, "not_run": int,
                  "exercised": int (claims that built at least one learner), "builds": int, "steps": int,
                  "methods": {method: [claim id]} (per method the adapter declares, or any it built: the claims
                             whose tests built a learner of it)},
      "ran_no_example": [{"id": str, "reasons": [str]}],
      "expected_failures": [{"claim", "test_filter", "reason", "line"}],
      "claims": [
        {"id": str, "title": str, "source": str, "statement": str,
         "citations": [{"key", "where", "text", "brief", "title", "venue", "year", "url"}],
         "status": "passed" | "failed" | "errored" | "xfailed" | "not_applicable" | "skipped" | "not_run",
         "builds": int, "steps": int (learners of the adapter built, and their optimisation steps, over the tests),
         "methods": {method: int} (the builds per method),
         "not_run_reason": str (not_run claims only: the tier or the -k selection that left them out),
         "measurements": [{"quantity", "measured", "predicted", "error", "tolerance",
                           "convention": true (only on rows stating a convention in force)}],
         "traces": [{"label", "steps", "series": {quantity: [float]}, "spectra": [{"step", "eigenvalues"}]}]
                   (deep claims only: training trajectories, drawn in the readable report),
         "tests": [{"test", "outcome": "passed" | "failed" | "errored" | "xfailed" | "skipped", "duration",
                    "reason", "builds", "steps",
                    "reproduce" (failed and errored tests only): {"example", "blob", "seed", "profile", "command"}}]}
      ]
    }

A claim has failed if any of its tests failed by an assertion of the claim (a strict
XPASS, i.e. a listed expected failure that passed, counts as failed); errored if none
failed but one crashed in the adapter's code (an exception raised in or through it, or an
:class:`~ncspec.conformance.contract.validate.AdapterError`: the reason names the exception and the
adapter's line; ``ncspec check`` exits 2, a broken adapter being a usage error); xfailed if
none failed or errored and at least one failed as listed in the expected-failures file (test
outcome ``xfailed``, its reason given); passed if at least one passed, none of the above,
and its tests built at least one learner through the adapter; **not_applicable** if its tests
passed without building any (an identity of the theory or of the harness: it says nothing about
the adapter, and is not counted as passed); skipped if all were skipped (the reason says why:
e.g. the adapter lacks a capability). Builds are learners returned by the adapter's ``build``,
steps the calls of their ``after_step()`` (one per optimisation step in every training loop);
see :mod:`ncspec.conformance.run.coverage`.

Schema history: ``/2`` added the statuses ``errored`` and ``not_applicable`` (a claim that
``/1`` reported ``passed`` without building a learner is ``not_applicable`` in ``/2``), the
counts ``builds``/``steps`` (claims, tests, summary), ``summary.exercised``, ``tier`` and
``not_run_reason``. Within ``/1``, ``xfailed``, ``created``, ``expected_failures`` and
``citations`` were added without a bump.

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

import json
import sys
from datetime import datetime, timezone
from importlib import metadata

from hypothesis import settings
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ...reference.files import atomic_write
from ..claims import CLAIMS, load_all, sort_key

SCHEMA = "ncspec.report/2"
STATUSES = ("passed", "failed", "errored", "xfailed", "not_applicable", "skipped", "not_run")
#: spec modules of the deep tier's claims (``--tier deep``); the others are the linear tier's
DEEP_MODULES = ("spec_tests.test_deep",)


def _version() -> str:
    try:
        return metadata.version("ncspec")
    except metadata.PackageNotFoundError:
        return "0+checkout"


def claim_status(outcomes: list[str], builds: int | None = None) -> str:
    """The claim's status from its tests' outcomes and the learners they built (``None``: not counted, e.g. a
    report assembled by hand: a passed claim stays passed)."""
    if not outcomes:
        return "not_run"
    for status in ("failed", "errored", "xfailed"):
        if status in outcomes:
            return status
    if "passed" in outcomes:
        return "not_applicable" if builds == 0 else "passed"
    return "skipped"


def claim_tier(claim) -> str:
    """``deep`` for the claims of :data:`DEEP_MODULES`, else ``linear``."""
    return "deep" if claim.tests and all(t.split("::")[0] in DEEP_MODULES for t in claim.tests) else "linear"


def not_run_reason(claim, tier: str | None) -> str:
    """Why a claim with no test in the run was left out: its tier, or the selection (``-k``)."""
    mine = claim_tier(claim)
    if tier and tier != "all" and mine != tier:
        return ("needs --tier deep (convolutional networks trained on images; --data-root DIR)" if mine == "deep"
                else "a linear-tier claim: run without --tier deep (or with --tier all)")
    return "not selected (-k)"


def build_report(tests: list[dict], adapter: str, duration: float,
                 expected_failures: list[dict] | None = None, seed: int | None = None,
                 profile: str | None = None, tier: str | None = None, declared=()) -> dict:
    """``tests``: the plugin's per-test entries (``builds``/``steps``/``methods`` as counted by
    :mod:`ncspec.conformance.run.coverage`); ``profile``: the Hypothesis profile the tests ran under (default: the
    loaded one); ``tier``: the tier run (``linear``, ``deep``, ``all``), which says why a claim did not run;
    ``declared``: the methods the adapter declares (:func:`declared_methods`), listed with the claims that built
    them also when none did."""
    load_all()
    claims = []
    for cid in sorted(CLAIMS, key=sort_key):
        c = CLAIMS[cid]
        mine = [t for t in tests if t["claim"] == cid]
        counted = any("builds" in t for t in mine)
        builds, steps = sum(t.get("builds", 0) for t in mine), sum(t.get("steps", 0) for t in mine)
        methods = {}
        for t in mine:
            for m, n in t.get("methods", {}).items():
                methods[m] = methods.get(m, 0) + n
        status = claim_status([t["outcome"] for t in mine], builds if counted else None)
        claims.append(dict(
            id=cid, title=c.title, source=c.source_text, citations=[x.to_dict() for x in c.source],
            statement=c.statement, status=status, builds=builds, steps=steps, methods=methods,
            **({"not_run_reason": not_run_reason(c, tier)} if status == "not_run" else {}),
            measurements=[r for t in mine for r in t["rows"]],
            **({"traces": traces} if (traces := [tr for t in mine for tr in t.get("traces", [])]) else {}),
            tests=[{k: t[k] for k in ("test", "outcome", "duration", "reason", "builds", "steps", "reproduce")
                    if k in t} for t in mine]))
    summary = {s: sum(c["status"] == s for c in claims) for s in STATUSES}
    summary.update(exercised=sum(c["builds"] > 0 for c in claims), builds=sum(c["builds"] for c in claims),
                   steps=sum(c["steps"] for c in claims), methods=claims_per_method(claims, declared))
    return dict(schema=SCHEMA, ncspec_version=_version(), adapter=adapter, tier=tier or "linear",
                profile=profile or settings.get_current_profile_name(), hypothesis_seed=seed,
                created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                duration_s=round(duration, 3), summary=summary,
                ran_no_example=ran_no_example(claims),
                expected_failures=list(expected_failures or []), claims=claims)


#: capability tags without a colon that name no method
FLAG_TAGS = frozenset({"weight_decay", "distributed", "symmetrized"})


def declared_methods(capabilities) -> list[str]:
    """The methods among an adapter's capabilities: the tags without a ``:`` that are not flags."""
    return sorted(c for c in capabilities if ":" not in c and c not in FLAG_TAGS)


def claims_per_method(claims: list[dict], declared=()) -> dict[str, list[str]]:
    """``{method: [claim id]}``: per method declared (and any other built), the claims whose tests built it."""
    out = {m: [] for m in declared}
    for c in claims:
        for m in c.get("methods", {}):
            out.setdefault(m, []).append(c["id"])
    return dict(sorted(out.items()))


def not_applicable(report: dict) -> list[str]:
    """The claims whose tests passed without building a learner of the adapter."""
    return [c["id"] for c in report["claims"] if c["status"] == "not_applicable"]


def summary_line(report: dict) -> str:
    """``9 claims exercised mylab (212 builds, 9,120 steps): 8 passed, 1 failed; 6 not applicable, 3 skipped``:
    the passed claims are only those that built the adapter's learners."""
    s = report["summary"]
    judged = [f"{s['passed']} passed", f"{s['failed']} failed"]
    judged += [f"{s[k]} {k}" for k in ("errored", "xfailed") if s.get(k)]
    rest = [f"{s.get('not_applicable', 0)} not applicable", f"{s['skipped']} skipped"]
    if s.get("not_run"):
        rest.append(f"{s['not_run']} not run")
    exercised = s.get("exercised", 0)
    return (f"{exercised} claim{'s' if exercised != 1 else ''} exercised {report['adapter']} "
            f"({s.get('builds', 0):,} builds, {s.get('steps', 0):,} steps): " + ", ".join(judged) + "; "
            + ", ".join(rest))


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


def write_json(report: dict, path: str) -> None:
    atomic_write(path, json.dumps(report, indent=2))


def _fmt(v) -> str:
    if v is None:
        return ""
    if isinstance(v, str):
        return v
    return f"{v:.4g}"


FAILING = ("failed", "errored")


def _out_of_tolerance(row: dict) -> bool:
    return row.get("error") is not None and row.get("tolerance") is not None and row["error"] > row["tolerance"]


def worst_measurement(claim: dict) -> dict | None:
    """The claim's row with the largest error/tolerance (None without rows). For a failed or errored claim the rows
    stating a convention in force (a loss scale, a declared convention) are passed over while others exist: the
    failure's message says what failed, and its row must not read "a convention, not a failure"."""
    rows = claim["measurements"]
    if claim.get("status") in FAILING:
        rows = [r for r in rows if not r.get("convention")] or rows
    return max(rows, key=lambda r: (r["error"] or 0) / (r["tolerance"] or 1)) if rows else None


def comparison(row: dict | None) -> str:
    """``0.012 ≤ 0.05`` (within the tolerance) or ``0.31 > 0.05`` (outside it); '' without both numbers."""
    if not row or row.get("error") is None or row.get("tolerance") is None:
        return ""
    return f"{_fmt(row['error'])} {'>' if _out_of_tolerance(row) else '≤'} {_fmt(row['tolerance'])}"


#: printed under every table whose rows compare an error with its tolerance
ERR_NOTE = ("err: the worst example's error against its tolerance, in the same units (the quantity says which, e.g. "
            "a relative error); '≤' within the tolerance, '>' outside it.")


def measured_vs_predicted(claim: dict, with_error: bool = True) -> tuple[str, str]:
    """The headline row of a claim: its worst measurement relative to tolerance."""
    worst = worst_measurement(claim)
    if worst is None:
        return "", ""
    meas = f"{worst['quantity']}: {_fmt(worst['measured'])}"
    pred = _fmt(worst["predicted"])
    if with_error and comparison(worst):
        pred += f" (err {comparison(worst)})"
    return meas, pred


def claim_reasons(claim: dict) -> str:
    """The distinct reasons of a claim's tests; for an xfailed claim only the expected failures' own, for a failed or
    errored one only its failing tests'."""
    keep = {"xfailed": ("xfailed",), "failed": FAILING, "errored": FAILING}.get(claim["status"])
    return "; ".join(sorted({t["reason"] for t in claim["tests"] if t["reason"]
                             and (keep is None or t["outcome"] in keep)}))


def failure_messages(claim: dict) -> list[str]:
    """The failing tests' messages, in full, once each (a test's name first when the claim has several tests)."""
    several = len(claim["tests"]) > 1
    out = []
    for t in claim["tests"]:
        if t["outcome"] in FAILING and t["reason"]:
            text = (f"{t['test'].split('::')[-1]}: " if several else "") + t["reason"]
            if text not in out:
                out.append(text)
    return out


def coverage_cell(claim: dict) -> str:
    """``builds / steps`` of a claim that ran, '' otherwise."""
    if claim["status"] in ("not_run", "skipped") and not claim.get("builds"):
        return ""
    return f"{claim.get('builds', 0):,} / {claim.get('steps', 0):,}"


def short_source(claim: dict) -> str:
    """The claim's citations, one per line, without identifiers: ``Tian, Chen & Ganguli 2021, §4``
    (the reports' reference list and ``ncspec claims`` give the arXiv ids and links)."""
    cites = claim.get("citations")
    return "\n".join(c.get("brief", c["text"]) for c in cites) if cites else claim.get("source", "")


def conventions_in_force(report: dict) -> list[str]:
    """The conventions in force (rows marked ``convention``: measured loss scales other than ×1, declared and
    default conventions), once each, with the claim IDs that saw them. A row outside its tolerance (a loss-scale
    fit that failed) is a failure, not a convention in force, and is not listed."""
    seen: dict[str, list[str]] = {}
    for c in report["claims"]:
        for r in c["measurements"]:
            if r.get("convention") and not _out_of_tolerance(r):
                seen.setdefault(r["quantity"], []).append(c["id"])
    return [f"{q} [{', '.join(dict.fromkeys(ids))}]" for q, ids in seen.items()]


def row_text(claim: dict) -> str:
    """The measured column of a claim's row: a failure's message first (what to fix), then the worst measurement;
    why an expected failure may fail; why a claim was skipped or not run."""
    meas, _ = measured_vs_predicted(claim)
    status = claim["status"]
    if status in FAILING:
        return "\n".join(failure_messages(claim) + ([meas] if meas else [])) or meas
    if status == "xfailed":                 # always say why it is allowed to fail
        return (meas + "\n" if meas else "") + "expected failure: " + claim_reasons(claim)
    if status == "skipped":
        return claim_reasons(claim) or meas
    if status == "not_run":
        return claim.get("not_run_reason", "")
    if status == "not_applicable":
        return (meas + "\n" if meas else "") + "no learner built: the tests check the theory or the harness"
    return meas


def print_table(report: dict, console=None, *, hide_not_run: bool = False) -> None:
    """The claims table, the conventions in force, the coverage, the reproductions and the summary line.
    ``hide_not_run``: leave out the claims that did not run (a ``-k`` selection, another tier), counted instead."""
    if console is None:
        console = Console() if sys.stdout.isatty() else Console(width=140)
    colour = dict(passed="green", failed="bold red", errored="bold red", xfailed="magenta", not_applicable="cyan",
                  skipped="yellow", not_run="dim")
    seed = report.get("hypothesis_seed")
    table = Table(title=f"ncspec check — adapter {report['adapter']} (profile {report['profile']}"
                        + (f", seed {seed}" if seed is not None else "") + ")", show_lines=False)
    for col in ("claim", "status", "builds / steps", "measured", "predicted", "source"):
        table.add_column(col, overflow="fold")
    shown = [c for c in report["claims"] if not (hide_not_run and c["status"] == "not_run")]
    for c in shown:
        _, pred = measured_vs_predicted(c)
        status = f"[{colour[c['status']]}]{c['status'].replace('_', ' ')}[/]"
        table.add_row(c["id"], status, coverage_cell(c), escape(row_text(c)), escape(pred), escape(short_source(c)))
    console.print(table)
    if any(comparison(worst_measurement(c)) for c in shown):
        console.print(escape(ERR_NOTE))
    if len(shown) < len(report["claims"]):
        console.print(f"{len(report['claims']) - len(shown)} claims not run (not selected, or of another tier) are "
                      f"not shown; the JSON report lists every claim.")
    for note in conventions_in_force(report):
        console.print(escape(note))
    print_coverage(report, console)
    print_reproductions(report, console)
    console.print(escape(summary_line(report)) + f" in {report['duration_s']:.1f} s")


def print_coverage(report: dict, console) -> None:
    """Per adapter: the claims that ran no example, the claims not applicable, and the skipped parts of the others."""
    none = report.get("ran_no_example", [])
    if none:
        console.print(f"[yellow]Claims that ran no example on adapter {escape(report['adapter'])} "
                      f"({len(none)}):[/]")
        for c in none:
            console.print(f"  {c['id']}: " + escape("; ".join(c["reasons"]) or "all tests skipped"))
    na = not_applicable(report)
    if na:
        console.print(f"[cyan]Not applicable to adapter {escape(report['adapter'])} ({len(na)}: their tests passed "
                      f"without building a learner, checking the theory or the harness):[/] {', '.join(na)}")
    per_method = report["summary"].get("methods")
    if per_method:
        console.print(f"Claims that built each method of adapter {escape(report['adapter'])}:")
        for m, ids in per_method.items():
            if ids:
                console.print(f"  {escape(m)}: {', '.join(ids)}")
        unbuilt = [m for m, ids in per_method.items() if not ids]
        if unbuilt:
            console.print(f"  [yellow]built by no claim of this run:[/] {escape(', '.join(unbuilt))}")
    partly = [(c["id"], partly_skipped(c), len(c["tests"])) for c in report["claims"]]
    partly = [(cid, sk, n) for cid, sk, n in partly if sk]
    if partly:
        console.print("Claims run in part (the skipped tests need capabilities the adapter lacks):")
        for cid, sk, n in partly:
            console.print(f"  {cid}: {len(sk)} of {n} tests skipped — " + escape("; ".join(
                f"{t['test'].split('::')[-1]} ({t['reason']})" for t in sk)))


def print_reproductions(report: dict, console) -> None:
    """How to rerun each failure: the command, the failing example, the blob."""
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
