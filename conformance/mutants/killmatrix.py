"""The kill matrix: which claims catch which deliberately broken implementation.

Each mutant in :data:`ncspec.conformance.mutants.catalogue.MUTANTS` names the claims expected to catch
it (``caught_by``). :func:`kill_matrix` runs those claims (or every claim, ``full``)
against each mutant and reports, per pair, ``caught`` (an assertion of one of the
claim's tests failed), ``errored`` (a test crashed instead: an exception other than an
AssertionError raised in a spec module — from the mutant, the reference code it calls, or
the test — e.g. a NaN that breaks an eigendecomposition), ``survived`` (its tests passed)
or ``skipped`` (the mutant lacks a capability the claim needs). Only an assertion is a
catch: a crash says the code is broken somewhere, not that the claim saw the bug, and the
same crash would hide a real one. A mutant no claim catches is a hole in the spec; a
``caught_by`` claim that misses its mutant (survived, skipped or only errored) is a stale
promise. Either fails ``ncspec mutants``.

Tests are called directly (no pytest session): a claim's tests take only ``impl`` and
``record`` beyond their Hypothesis arguments, so this is ~10× faster than a pytest
run per pair and keeps one process.
"""
from __future__ import annotations

import importlib
import inspect
import sys
import time

import pytest
import torch
from rich.console import Console
from rich.table import Table

# Before any spec module is imported: importing .session registers and loads the Hypothesis profile
# (ci by default, no deadline), which the tests' @settings capture when they are decorated. Imported
# later, they would run Hypothesis's default 100 examples with shrinking (~50× slower) under its 200 ms
# deadline, a wall-clock limit that failed H1 on a loaded 2-core machine (issue 25).
from ..claims import load_all, sort_key, tier_of
from ..contract.loss_scale import claim_scope, scale_aware
from ..run.failures import asserted_in_spec, classify, leaves
from ..run.recorder import Recorder
from ..run.session import torch_threads
from .catalogue import MUTANTS

SCHEMA = "ncspec.killmatrix/1"
_RESULT = {"failed": "caught", "errored": "errored", "passed": "survived", "skipped": "skipped"}


def _describe(exc: BaseException) -> str:
    found = list(leaves(exc))
    first = next((e for e in found if asserted_in_spec(e)), found[0] if found else exc)
    text = str(first).strip().splitlines()
    return f"{type(first).__name__}: {text[0][:200] if text else ''}".rstrip(": ")


def _parametrizations(fn) -> list[dict]:
    """The argument sets of ``fn``'s ``@pytest.mark.parametrize`` marks (their product); ``[{}]`` without any."""
    sets = [{}]
    for mark in getattr(fn, "pytestmark", []):
        if mark.name != "parametrize":
            continue
        names, values = mark.args[0], mark.args[1]
        names = [n.strip() for n in names.split(",")] if isinstance(names, str) else list(names)
        rows = [dict(zip(names, v if len(names) > 1 else (v,))) for v in values]
        sets = [{**a, **b} for a in sets for b in rows]
    return sets


def run_claim_detail(claim_id: str, adapter, *, scaled=None) -> tuple[str, list[tuple[str, str, str]]]:
    """Run every test of a claim (each of its parametrizations) against ``adapter``. Returns the claim's outcome —
    ``'failed'`` (an assertion failed), ``'errored'`` (no assertion failed but a test crashed), ``'passed'`` or
    ``'skipped'`` — and ``(test, outcome, message)`` per test. ``scaled``: the adapter already wrapped by
    :func:`~ncspec.conformance.contract.loss_scale.scale_aware` (one wrapper per mutant keeps the deep tier's cached
    runs)."""
    adapter = scaled or scale_aware(adapter)   # as the plugin's `impl`: a constant loss factor measured, not a kill
    details = []
    for test in load_all()[claim_id].tests:
        module, name = test.split("::")
        fn = getattr(importlib.import_module(f"ncspec.{module}"), name)   # names are short: spec_tests.test_x
        params = _parametrizations(fn)
        # Hypothesis hides its own arguments from the signature; what is left are fixtures and parameters.
        wanted = set(inspect.signature(fn).parameters) - set(params[0])
        unknown = wanted - {"impl", "record"}
        if unknown:  # a TypeError here would otherwise count as the claim catching the mutant
            raise TypeError(f"{test} takes fixture(s) {sorted(unknown)} that run_claim cannot supply; "
                            f"give run_claim a value for them or take them from Hypothesis instead.")
        for args in params:
            label = test + (f"[{'-'.join(map(str, args.values()))}]" if args else "")
            kwargs = dict(args)
            if "impl" in wanted:
                kwargs["impl"] = adapter
            if "record" in wanted:
                kwargs["record"] = Recorder()
            try:
                with claim_scope():                # a misfit without a known cause: the claim's assertion first
                    fn(**kwargs)
                details.append((label, "passed", ""))
            except pytest.skip.Exception as e:
                details.append((label, "skipped", str(e.msg)))
            except Exception as e:  # BaseExceptionGroup from Hypothesis is an Exception when its leaves are
                details.append((label, classify(e), _describe(e)))
    outcomes = [o for _, o, _ in details]
    for result in ("failed", "errored", "passed"):
        if result in outcomes:
            return result, details
    return "skipped", details


def run_claim(claim_id: str, adapter) -> str:
    """Run every test of a claim against ``adapter``: 'failed', 'errored', 'passed' or 'skipped'."""
    return run_claim_detail(claim_id, adapter)[0]


def kill_matrix(mutants: list[str] | None = None, claims: list[str] | None = None, full: bool = False,
                progress=None, tier: str = "linear") -> dict:
    """Run the selected claims against the selected mutants.

    ``mutants``/``claims``: names to restrict to (default all). Without ``full`` a mutant
    is run only against the selected claims in its ``caught_by``; with it, against all
    selected claims. Mutants with nothing to run are left out. ``progress(name, row,
    seconds)`` is called after each mutant. ``tier``: the claims of the linear tier (default), the deep tier
    (``deep``: convolutional networks on images; the data and scale come from ``$NCSPEC_DATA`` / ``$NCSPEC_SCALE``)
    or ``all``. Raises LookupError on an unknown name.
    """
    registry = load_all()
    for kind, names, known in (("mutant", mutants, MUTANTS), ("claim", claims, registry)):
        bad = [n for n in names or [] if n not in known]
        if bad:
            raise LookupError(f"unknown {kind}(s) {', '.join(map(repr, bad))}; known: "
                              f"{', '.join(sorted(known, key=sort_key if kind == 'claim' else None))}.")
    if tier not in ("linear", "deep", "all"):
        raise LookupError(f"unknown tier {tier!r}; use 'linear', 'deep' or 'all'.")
    selected = sorted(claims or [c for c in registry if tier in ("all", tier_of(c))], key=sort_key)
    out = {}
    threads = torch.get_num_threads()
    torch.set_num_threads(torch_threads())  # as the plugin: tiny, latency-bound runs
    try:
        for name in mutants or list(MUTANTS):
            spec = MUTANTS[name]
            to_run = [c for c in selected if full or c in spec.caught_by]
            if not to_run:
                continue
            t0 = time.perf_counter()
            results, errors = {}, {}
            scaled = scale_aware(spec.adapter)
            for c in to_run:
                outcome, details = run_claim_detail(c, spec.adapter, scaled=scaled)
                results[c] = _RESULT[outcome]
                crashes = [f"{t.split('::')[-1]}: {msg}" for t, o, msg in details if o == "errored"]
                if crashes:
                    errors[c] = crashes
            missed = [c for c in spec.caught_by if c in results and results[c] != "caught"]
            out[name] = dict(bug=spec.bug, caught_by=list(spec.caught_by), claims=results, errors=errors,
                             caught="caught" in results.values(), missed=missed)
            if progress:
                progress(name, out[name], time.perf_counter() - t0)
    finally:
        torch.set_num_threads(threads)
    return dict(schema=SCHEMA, full=full, claims=[c for c in selected if any(c in m["claims"] for m in out.values())],
                mutants=out)


def failures(matrix: dict) -> list[str]:
    """Why the matrix fails (empty when it passes): uncaught mutants and missed promises. A claim
    that only crashed on its mutant (``errored``) is a missed promise: a crash is not a catch."""
    problems = []
    for name, m in matrix["mutants"].items():
        if not m["caught"]:
            problems.append(f"mutant {name!r} ({m['bug']}) is caught by none of the claims run "
                            f"({', '.join(m['claims'])})")
        for c in m["missed"]:
            if m["claims"][c] == "errored":
                crash = "; ".join(m.get("errors", {}).get(c, []))[:300]
                problems.append(f"claim {c} is listed in caught_by of mutant {name!r} but it only errored (a crash, "
                                f"not a failed assertion: {crash}); assert the property the crash stands for "
                                f"(e.g. finiteness) in the claim's test")
            else:
                problems.append(f"claim {c} is listed in caught_by of mutant {name!r} but it {m['claims'][c]}")
    return problems


def print_matrix(matrix: dict, console=None) -> None:
    """Rich table: ✗ caught, E errored (a crash), · survived (red where caught_by promised a catch), – skipped,
    blank not run."""
    if console is None:
        console = Console() if sys.stdout.isatty() else Console(width=240)
    table = Table(title="ncspec mutants — ✗ caught (assertion), E errored (crash), · survived, – not applicable, "
                        "blank not run"
                  + (" (all claims)" if matrix["full"] else " (caught_by claims)"))
    table.add_column("mutant", no_wrap=True,
                     min_width=max(len(n) for n in matrix["mutants"]) if matrix["mutants"] else 6)
    for c in matrix["claims"]:
        table.add_column(c, justify="center")
    table.add_column("caught")
    for name, m in matrix["mutants"].items():
        cells = []
        for c in matrix["claims"]:
            r = m["claims"].get(c)
            promised = c in m["caught_by"]
            mark = {"survived": "·", "skipped": "–", "errored": "E"}.get(r, "")
            cells.append("" if r is None else "[green]✗[/]" if r == "caught"
                         else f"[bold red]{mark}[/]" if promised
                         else (f"[yellow]{mark}[/]" if r == "errored" else f"[dim]{mark}[/]"))
        table.add_row(name, *cells, "[green]yes[/]" if m["caught"] else "[bold red]NO[/]")
    console.print(table)
