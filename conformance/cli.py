"""The ``ncspec`` command line.

    ncspec claims [--json]                 list every registered claim
    ncspec check [--adapter X] [--json PATH] [--profile ci|thorough] [-k EXPR]
                                           run the spec suite, print the claims table
    ncspec figure eigenspace --out DIR     reproduce seed 003's Figure 1
    ncspec figure directpred --out DIR     DirectPred phase portrait and the W1 threshold (Tian et al.; seed 001)
    ncspec figure centervector --out DIR   ‖s‖ over training per method and ablation (seed 002, Figs. 3–4)
    ncspec figure dual --out DIR           SG vs gradient descent in the scalar case, equilibrium spheres (seed 004)
    ncspec train --dataset D --method M --out DIR [--resume]   one SSL run on images (CIFAR-10, STL-10, npz)
    ncspec reproduce table1 --data-root DIR                    seed 003 Table 1 grid (H9)
    ncspec bench                                               training throughput
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import tempfile


def _cmd_claims(args) -> int:
    from .claims import load_all, sort_key
    claims = load_all()
    if args.json:
        json.dump([claims[c].to_dict() for c in sorted(claims, key=sort_key)], sys.stdout, indent=2, ensure_ascii=False)
        sys.stdout.write("\n")
        return 0
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table
    table = Table(title="ncspec claims")
    for col in ("id", "title", "source", "tests"):
        table.add_column(col, overflow="fold")
    for cid in sorted(claims, key=sort_key):
        c = claims[cid]
        table.add_row(c.id, escape(c.title), escape(c.source), "\n".join(t.split("::")[-1] for t in c.tests))
    Console().print(table)
    return 0


def _cmd_check(args) -> int:
    import pytest
    from .registry import load_adapter
    from .report import print_table
    try:
        load_adapter(args.adapter)  # fail fast, with the specific error, before pytest starts
    except (LookupError, TypeError) as e:
        print(f"ncspec check: {e}", file=sys.stderr)
        return 2
    if args.profile:
        os.environ["NCSPEC_PROFILE"] = args.profile
    with tempfile.TemporaryDirectory() as tmp:
        json_path = args.json or os.path.join(tmp, "report.json")
        pytest_args = ["--pyargs", "spec_tests", "-p", "conformance.plugin", "-p", "no:cacheprovider",
                       "--ncspec-json", json_path, "--rootdir", tmp, "-c", os.devnull,
                       "-q" if not args.verbose else "-v", "--no-header", "-p", "no:benchmark"]
        if args.adapter:
            pytest_args += ["--adapter", args.adapter]
        if args.profile:
            pytest_args += ["--hypothesis-profile", args.profile]
        if args.k:
            pytest_args += ["-k", args.k]
        if not args.verbose:
            pytest_args += ["--tb=short", "--no-summary"]
        log = io.StringIO()
        with contextlib.redirect_stdout(sys.stdout if args.verbose else log):
            code = pytest.main(pytest_args)
        if not os.path.exists(json_path):
            sys.stderr.write(log.getvalue())
            print(f"ncspec check: the test run ended (pytest exit {int(code)}) without a report.", file=sys.stderr)
            return int(code) or 3
        with open(json_path) as f:
            report = json.load(f)
    print_table(report)
    if args.json:
        print(f"report written to {args.json}")
    return 1 if report["summary"]["failed"] else 0


def _cmd_figure(args) -> int:
    if args.name == "eigenspace":
        from .figures.eigenspace import eigenspace_figure
        paths = eigenspace_figure(args.out, seed=args.seed)
    elif args.name == "directpred":
        from .figures.directpred import directpred_figure
        paths = directpred_figure(args.out, seed=args.seed)
    elif args.name == "centervector":
        from .figures.centervector import centervector_figure
        paths = centervector_figure(args.out, seed=args.seed)
    elif args.name == "dual":
        from .figures.dual import dual_figure
        paths = dual_figure(args.out, seed=args.seed)
    for p in paths:
        print(p)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ncspec", description="Executable specification of non-contrastive SSL.")
    sub = p.add_subparsers(dest="command", required=True)

    c = sub.add_parser("claims", help="list the registered claims")
    c.add_argument("--json", action="store_true", help="print the claims as JSON")
    c.set_defaults(func=_cmd_claims)

    k = sub.add_parser("check", help="run the spec suite and print the claims table")
    k.add_argument("--adapter", default=None,
                   help="implementation under test: 'reference' (default), 'mutant:NAME', an entry-point "
                        "name, or 'package.module:attr'; default $NCSPEC_ADAPTER")
    k.add_argument("--json", metavar="PATH", default=None, help="write the JSON report to PATH")
    k.add_argument("--profile", choices=["ci", "thorough"], default=None,
                   help="Hypothesis profile: ci (derandomised, quick; default) or thorough (random, many examples)")
    k.add_argument("-k", metavar="EXPR", default=None, help="only run tests matching EXPR (pytest -k)")
    k.add_argument("-v", "--verbose", action="store_true", help="show pytest's own output")
    k.set_defaults(func=_cmd_check)

    f = sub.add_parser("figure", help="reproduce a paper figure")
    f.add_argument("name", choices=["eigenspace", "directpred", "centervector", "dual"])
    f.add_argument("--out", required=True, help="output directory")
    f.add_argument("--seed", type=int, default=0)
    f.set_defaults(func=_cmd_figure)

    from .vision_cli import add_vision_commands   # train, reproduce table1, bench (no torch import here)
    add_vision_commands(sub)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
