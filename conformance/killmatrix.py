"""The kill matrix: which claims catch which deliberately broken implementation.

Each mutant in :data:`ncspec.conformance.mutants.MUTANTS` names the claims expected to catch
it (``caught_by``). :func:`kill_matrix` runs those claims (or every claim, ``full``)
against each mutant and reports, per pair, ``caught`` (some test of the claim
failed), ``survived`` (its tests passed) or ``skipped`` (the mutant lacks a
capability the claim needs). A mutant no claim catches is a hole in the spec; a
``caught_by`` claim that misses its mutant is a stale promise. Either fails
``ncspec mutants``.

Tests are called directly (no pytest session): a claim's tests take only ``impl`` and
``record`` beyond their Hypothesis arguments, so this is ~10× faster than a pytest
run per pair and keeps one process.
"""
from __future__ import annotations

import importlib
import inspect
import time

# Before any spec module is imported: loading the plugin selects the Hypothesis profile
# (ci by default), which the tests' @settings capture when they are decorated. Imported
# later, they would run Hypothesis's default 100 examples with shrinking (~50× slower).
from .plugin import Recorder, torch_threads

SCHEMA = "ncspec.killmatrix/1"
_RESULT = {"failed": "caught", "passed": "survived", "skipped": "skipped"}


def run_claim(claim_id: str, adapter) -> str:
    """Run every test of a claim against ``adapter``: 'failed', 'passed' or 'skipped'."""
    import pytest

    from .claims import load_all
    outcomes = []
    for test in load_all()[claim_id].tests:
        module, name = test.split("::")
        fn = getattr(importlib.import_module(f"ncspec.{module}"), name)   # names are short: spec_tests.test_x
        # Hypothesis hides its own arguments from the signature; what is left are fixtures.
        wanted = set(inspect.signature(fn).parameters)
        unknown = wanted - {"impl", "record"}
        if unknown:  # a TypeError here would otherwise count as the claim catching the mutant
            raise TypeError(f"{test} takes fixture(s) {sorted(unknown)} that run_claim cannot supply; "
                            f"give run_claim a value for them or take them from Hypothesis instead.")
        kwargs = {}
        if "impl" in wanted:
            kwargs["impl"] = adapter
        if "record" in wanted:
            kwargs["record"] = Recorder()
        try:
            fn(**kwargs)
            outcomes.append("passed")
        except pytest.skip.Exception:
            outcomes.append("skipped")
        except Exception:  # AssertionError, FloatingPointError, …: the claim caught the bug
            outcomes.append("failed")
    if "failed" in outcomes:
        return "failed"
    return "passed" if "passed" in outcomes else "skipped"


def kill_matrix(mutants: list[str] | None = None, claims: list[str] | None = None, full: bool = False,
                progress=None) -> dict:
    """Run the selected claims against the selected mutants.

    ``mutants``/``claims``: names to restrict to (default all). Without ``full`` a mutant
    is run only against the selected claims in its ``caught_by``; with it, against all
    selected claims. Mutants with nothing to run are left out. ``progress(name, row,
    seconds)`` is called after each mutant. Raises LookupError on an unknown name.
    """
    import torch

    from .claims import load_all, sort_key
    from .mutants import MUTANTS
    registry = load_all()
    for kind, names, known in (("mutant", mutants, MUTANTS), ("claim", claims, registry)):
        bad = [n for n in names or [] if n not in known]
        if bad:
            raise LookupError(f"unknown {kind}(s) {', '.join(map(repr, bad))}; known: "
                              f"{', '.join(sorted(known, key=sort_key if kind == 'claim' else None))}.")
    selected = sorted(claims or registry, key=sort_key)
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
            results = {c: _RESULT[run_claim(c, spec.adapter)] for c in to_run}
            missed = [c for c in spec.caught_by if c in results and results[c] != "caught"]
            out[name] = dict(bug=spec.bug, caught_by=list(spec.caught_by), claims=results,
                             caught="caught" in results.values(), missed=missed)
            if progress:
                progress(name, out[name], time.perf_counter() - t0)
    finally:
        torch.set_num_threads(threads)
    return dict(schema=SCHEMA, full=full, claims=[c for c in selected if any(c in m["claims"] for m in out.values())],
                mutants=out)


def failures(matrix: dict) -> list[str]:
    """Why the matrix fails (empty when it passes): uncaught mutants and missed promises."""
    problems = []
    for name, m in matrix["mutants"].items():
        if not m["caught"]:
            problems.append(f"mutant {name!r} ({m['bug']}) is caught by none of the claims run "
                            f"({', '.join(m['claims'])})")
        for c in m["missed"]:
            problems.append(f"claim {c} is listed in caught_by of mutant {name!r} but it {m['claims'][c]}")
    return problems


def print_matrix(matrix: dict, console=None) -> None:
    """Rich table: ✗ caught, · survived (red where caught_by promised a catch), – skipped, blank not run."""
    import sys

    from rich.console import Console
    from rich.table import Table
    if console is None:
        console = Console() if sys.stdout.isatty() else Console(width=240)
    table = Table(title="ncspec mutants — ✗ caught, · survived, – not applicable, blank not run"
                  + (" (all claims)" if matrix["full"] else " (caught_by claims)"))
    table.add_column("mutant", no_wrap=True, min_width=max(len(n) for n in matrix["mutants"]) if matrix["mutants"] else 6)
    for c in matrix["claims"]:
        table.add_column(c, justify="center")
    table.add_column("caught")
    for name, m in matrix["mutants"].items():
        cells = []
        for c in matrix["claims"]:
            r = m["claims"].get(c)
            promised = c in m["caught_by"]
            cells.append("" if r is None else "[green]✗[/]" if r == "caught"
                         else ("[bold red]·[/]" if r == "survived" else "[bold red]–[/]") if promised
                         else ("[dim]·[/]" if r == "survived" else "[dim]–[/]"))
        table.add_row(name, *cells, "[green]yes[/]" if m["caught"] else "[bold red]NO[/]")
    console.print(table)
