"""``ncspec claims``, ``ncspec check`` and ``ncspec mutants``: the claims, run on an adapter."""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import tempfile


def _cmd_check(args) -> int:
    """Runs the check with the environment it sets (profile, deep-tier scale and data) undone afterwards: a
    caller in the same process (a test, a notebook) must not find its next check run under another profile."""
    saved = dict(os.environ)
    try:
        return _run_check(args)
    finally:
        os.environ.clear()
        os.environ.update(saved)
        from ..run.session import end_run
        end_run()


def _run_check(args) -> int:
    import pytest

    from ..contract.registry import ENV_VAR
    from ..run.report import print_table
    from ..run.session import run_adapter
    from ..run.xfail import XFAIL_ENV_VAR, parse_expected_failures
    xfail = args.xfail or os.environ.get(XFAIL_ENV_VAR)
    try:
        # fail fast, before pytest starts; the plugin's configure and impl fixture reuse this one load
        adapter = run_adapter(args.adapter or os.environ.get(ENV_VAR))
        if xfail:
            # syntax only: claim IDs are checked once pytest has the spec modules
            parse_expected_failures(xfail, "--xfail" if args.xfail else f"${XFAIL_ENV_VAR}")
            xfail = os.path.abspath(xfail)
        if args.report:
            from ..run.report_doc import check_report_path
            check_report_path(args.report, "--report")
        if args.seed is not None and args.profile == "ci":
            raise ValueError(f"--seed {args.seed} reruns a draw of the randomised 'thorough' profile; the 'ci' profile "
                             f"is derandomised (its draws are fixed per test): drop --profile ci.")
    except (LookupError, TypeError, ValueError, pytest.UsageError) as e:
        print(f"ncspec check: {e}", file=sys.stderr)
        return 2
    if args.seed is not None and not args.profile:
        args.profile = "thorough"
    if args.profile:
        os.environ["NCSPEC_PROFILE"] = args.profile
    if args.tier in ("deep", "all"):
        code = _prepare_deep(args, adapter)
        if code:
            return code
    with tempfile.TemporaryDirectory() as tmp:
        json_path = args.json or os.path.join(tmp, "report.json")
        # Only the plugins the check needs (ncspec's, Hypothesis', pytest-xdist's): a lab's own pytest plugins
        # (pytest-randomly, pytest-timeout, hydra's, …) neither change nor slow it. The environment is
        # restored when the check returns (_cmd_check); the workers inherit it.
        os.environ["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
        pytest_args = ["--pyargs", "ncspec.spec_tests", "-p", "no:cacheprovider",
                       "-p", "ncspec.conformance.plugin", "-p", "_hypothesis_pytestplugin",
                       "--ncspec-json", json_path, "--rootdir", tmp, "-c", os.devnull,
                       "-q" if not args.verbose else "-v", "--no-header"]
        if args.adapter:
            pytest_args += ["--adapter", args.adapter]
        if args.profile:
            pytest_args += ["--hypothesis-profile", args.profile]
        if args.seed is not None:
            pytest_args += ["--hypothesis-seed", str(args.seed)]
        if args.k:
            pytest_args += ["-k", args.k]
        pytest_args += ["--ncspec-tier", args.tier]
        if args.progress:
            pytest_args += ["--ncspec-progress"]
        if xfail:
            pytest_args += ["--ncspec-xfail", xfail]
        jobs = _jobs(args)
        if jobs > 1:   # tests spread over workers; a module that shares cached runs (xdist_group) stays in one
            pytest_args += ["-p", "xdist.plugin", "-n", str(jobs), "--dist", "loadgroup"]
        if not args.verbose:
            pytest_args += ["--tb=short", "--no-summary"]
        log = io.StringIO()
        with contextlib.redirect_stdout(sys.stdout if args.verbose else log):
            code = pytest.main(pytest_args)
        if code == pytest.ExitCode.USAGE_ERROR:   # pytest has printed "ERROR: …" on stderr; no report
            return 2
        if not os.path.exists(json_path):
            sys.stderr.write(log.getvalue())
            print(f"ncspec check: the test run ended (pytest exit {int(code)}) without a report.", file=sys.stderr)
            return int(code) or 3
        with open(json_path) as f:
            report = json.load(f)
    report["gate"] = gate(report, args.min_exercised)
    if args.json:              # the plugin wrote it; the gate is the command's, added here
        from ..run.report import write_json
        write_json(report, args.json)
    # the table shows the claims of the tier and of the -k selection; the JSON and the documents keep them all
    print_table(report, hide_not_run=bool(args.k) or args.tier == "deep")
    if not report["gate"]["passed"]:
        print(report["gate"]["reason"])
    if args.json:
        print(f"report written to {args.json}")
    if args.report:   # written whatever the outcome: a failing run is when CI needs it most
        from ..run.report_doc import write_report
        print("report written to " + ", ".join(write_report(report, args.report)))
    return exit_code(report)


def exit_code(report: dict) -> int:
    """2 when a test crashed in the adapter's code (status ``errored``: a broken adapter is a usage error), 1 when a
    claim failed, 2 when fewer claims than the floor exercised the adapter (:func:`gate`), else 0 (xfailed and
    not-applicable claims do not fail the run).

    A run that checked nothing is not a failure of the implementation (1 says "a claim found it wrong", and no
    claim did): what has to change is the set-up — the adapter's declared capabilities, the tier, the ``-k``
    selection, or the floor the user asked for — the kind of error 2 stands for."""
    if any(t["outcome"] == "errored" for c in report["claims"] for t in c["tests"]):
        return 2
    if report["summary"]["failed"]:
        return 1
    return 0 if report.get("gate", {}).get("passed", True) else 2


def gate(report: dict, floor: int = 1) -> dict:
    """``{min_exercised, exercised, passed, reason}``: a run passes only if at least ``floor`` claims built a learner
    of the adapter (``--min-exercised``, default 1: a gate that checked nothing does not pass; 0 accepts any run)."""
    s = report["summary"]
    exercised = s.get("exercised", 0)
    out = dict(min_exercised=floor, exercised=exercised, passed=exercised >= floor, reason="")
    if out["passed"]:
        return out
    declared = s.get("methods", {})
    out["reason"] = (
        f"ncspec check: NOT PASSED — {exercised} claim{'s' if exercised != 1 else ''} exercised adapter "
        f"{report['adapter']} at tier {report.get('tier', 'linear')}, fewer than the floor of {floor} "
        f"(--min-exercised): a check that builds {'none' if exercised == 0 else 'so few'} of the adapter's learners "
        f"{'checks nothing' if exercised == 0 else 'checks less than was asked'}, so it does not pass (exit 2). "
        + (f"No claim of this run built any of the {len(declared)} methods it declares. " if declared and
           exercised == 0 else "")
        + "Declare the methods and tags the claims need (the skip reasons above name them), run another tier "
          "(--tier linear / deep / all) or a wider -k selection, or lower the floor (--min-exercised 0 accepts a "
          "run that checks only the theory).")
    return out


def _jobs(args) -> int:
    """Worker processes for the run: ``--jobs N``, or ``auto`` = the CPUs this process may use (at most
    :data:`MAX_AUTO_JOBS`), and 1 when ``-k`` picks out a few tests (a worker's start-up, about 3 s of importing
    torch, would cost more than it saves) or when pytest-xdist is not installed."""
    if args.jobs != "auto":
        return args.jobs
    try:
        import xdist  # noqa: F401
    except ImportError:
        return 1
    if args.k:
        return 1
    from ..run.session import usable_cpus
    return max(1, min(usable_cpus(), MAX_AUTO_JOBS))


MAX_AUTO_JOBS = 8   # beyond that, workers' start-up (torch's import each) outweighs a ~90 CPU-second suite


def _job_count(text: str):
    if text == "auto":
        return text
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"--jobs takes 'auto' or a positive number of worker processes, got "
                                         f"{text!r}")
    return n


def _floor(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = -1
    if n < 0:
        raise argparse.ArgumentTypeError(f"--min-exercised takes a number of claims ≥ 0, got {text!r}")
    return n


def _prepare_deep(args, adapter) -> int:
    """The deep tier: resolve the image data (fail fast, naming what to download), set the scale,
    print the budget of ``adapter`` before anything starts. Returns an exit code, 0 to go on."""
    from ..run.deep_tier import DATA_ENV, SCALE_ENV, budget_line, dataset_spec
    os.environ[SCALE_ENV] = args.scale
    data = args.data_root or os.environ.get(DATA_ENV)
    try:
        dataset = dataset_spec(data)[0]
    except FileNotFoundError as e:
        print(f"ncspec check --tier deep: {e}", file=sys.stderr)
        return 2
    os.environ[DATA_ENV] = os.path.abspath(os.path.expanduser(data))
    if args.scale == "gpu":
        import torch
        if not torch.cuda.is_available():
            print("ncspec check --tier deep --scale gpu: no CUDA device is visible; use --scale cpu on this "
                  "machine.", file=sys.stderr)
            return 2
    print(budget_line(args.scale, adapter, dataset), file=sys.stderr, flush=True)
    return 0


def _cmd_mutants(args) -> int:
    from ...reference.files import atomic_write
    from ..mutants.killmatrix import failures, kill_matrix, print_matrix

    def progress(name, row, seconds):
        caught = sum(r == "caught" for r in row["claims"].values())
        errored = sum(r == "errored" for r in row["claims"].values())
        print(f"  {name}: caught by {caught}/{len(row['claims'])} claims"
              + (f", {errored} errored (crash, not a catch)" if errored else "") + f" ({seconds:.1f} s)",
              file=sys.stderr)

    if args.tier in ("deep", "all"):     # the deep claims train on images: the data and scale, as for check
        from ..run.deep_tier import DATA_ENV, SCALE_ENV, dataset_spec
        data = args.data_root or os.environ.get(DATA_ENV)
        try:
            dataset_spec(data)
        except FileNotFoundError as e:
            print(f"ncspec mutants --tier {args.tier}: {e}", file=sys.stderr)
            return 2
        os.environ[DATA_ENV] = os.path.abspath(os.path.expanduser(data))
        os.environ[SCALE_ENV] = args.scale
    try:
        matrix = kill_matrix(args.mutant, args.claim, full=args.all, progress=progress, tier=args.tier)
    except LookupError as e:
        print(f"ncspec mutants: {e}", file=sys.stderr)
        return 2
    if not matrix["mutants"]:
        print("ncspec mutants: no selected claim is in any selected mutant's caught_by; add --all to run "
              "them anyway.", file=sys.stderr)
        return 2
    print_matrix(matrix)
    if args.json:
        doc = dict(schema=matrix["schema"], full=matrix["full"],
                   mutants={n: dict(bug=m["bug"], caught_by=m["caught_by"], claims=m["claims"],
                                    errors=m.get("errors", {}))
                            for n, m in matrix["mutants"].items()})
        print(f"kill matrix written to {atomic_write(args.json, json.dumps(doc, indent=2, ensure_ascii=False))}")
    problems = failures(matrix)
    for p in problems:
        print(f"FAIL: {p}", file=sys.stderr)
    return 1 if problems else 0


def add_check_commands(sub) -> None:

    k = sub.add_parser("check", help="run the spec suite and print the claims table")
    k.add_argument("--adapter", default=None,
                   help="implementation under test: 'reference' (default), 'mutant:NAME', an entry-point "
                        "name, or 'package.module:attr'; default $NCSPEC_ADAPTER")
    k.add_argument("--json", metavar="PATH", default=None, help="write the JSON report to PATH")
    k.add_argument("--report", metavar="PATH", default=None,
                   help="write a readable report to PATH: .md (with PATH-stem_margins.png beside it) or "
                        ".html (self-contained); written also when claims fail")
    k.add_argument("--xfail", metavar="PATH", default=None,
                   help="expected-failures file, one 'CLAIM_ID[::TEST_SUBSTRING]  reason' per line (# comments): "
                        "those tests must fail (status xfailed, exit 0); one that passes fails the run. "
                        "Default $NCSPEC_XFAIL")
    k.add_argument("--profile", choices=["ci", "thorough"], default=None,
                   help="Hypothesis profile: ci (derandomised, quick; default) or thorough (random, many examples)")
    k.add_argument("--seed", type=int, default=None, metavar="N",
                   help="Hypothesis seed of a 'thorough' run (implies --profile thorough): reruns the draws of the "
                        "run that reported this seed; a thorough run without it draws one and reports it")
    k.add_argument("-k", metavar="EXPR", default=None, help="only run tests matching EXPR (pytest -k)")
    k.add_argument("--tier", choices=["linear", "deep", "all"], default="linear",
                   help="linear (default): every claim on linear and toy models (about a minute on 2 cores); "
                        "deep: the N claims, convolutional networks trained on images (needs --data-root); "
                        "all: both")
    k.add_argument("--scale", choices=["cpu", "cpu-long", "gpu", "dry"], default="cpu",
                   help="deep tier: cpu (a 1/8-width VGG11, 40-step runs; about 2 minutes per adapter on 2 "
                        "cores), cpu-long (opt-in: cpu plus 200-step runs for N3 and Table 1 in miniature for "
                        "N4; about 14 minutes per adapter), gpu (CIFAR ResNet-18, bf16, compiled, "
                        "and Table 1's VGG11 protocol; the "
                        "budget is printed before it starts) or dry (4-step runs: checks the plumbing only, "
                        "the claims' outcomes mean nothing)")
    k.add_argument("--data-root", metavar="PATH", default=None,
                   help="deep tier: a folder holding cifar-10-batches-py/ (the python version of CIFAR-10) or "
                        "an .npz with x_train, y_train, x_test, y_test; default $NCSPEC_DATA")
    k.add_argument("--jobs", "-j", type=_job_count, default="auto", metavar="N",
                   help="worker processes (pytest-xdist): a number, or auto (default: the usable CPUs, at most "
                        "8; 1 with -k)")
    k.add_argument("--min-exercised", type=_floor, default=1, metavar="N",
                   help="the run passes only if at least N claims built a learner of the adapter (default 1: a "
                        "check that exercised nothing exits 2, naming why; 0 accepts any run)")
    k.add_argument("--no-progress", dest="progress", action="store_false",
                   help="do not print claim-by-claim progress on stderr")
    k.add_argument("-v", "--verbose", action="store_true", help="show pytest's own output")
    k.set_defaults(func=_cmd_check)

    m = sub.add_parser("mutants", help="kill matrix: run the claims against the deliberately broken adapters",
                       description="Run each mutant (conformance/mutants/catalogue.py) against the claims expected to "
                                   "catch it (its caught_by) and print mutant × claim: ✗ caught, · survived, "
                                   "– not applicable (skipped), blank not run. Exit 1 if a mutant is caught by "
                                   "none of the claims run or a caught_by claim misses its mutant.")
    m.add_argument("--all", action="store_true",
                   help="run every claim against every mutant, not only caught_by; takes long "
                        "(~ mutants × claims × 1 s, tens of minutes)")
    m.add_argument("--mutant", action="extend", nargs="+", metavar="NAME", default=None,
                   help="only this mutant (repeatable); default all")
    m.add_argument("--claim", action="extend", nargs="+", metavar="ID", default=None,
                   help="only this claim (repeatable); default all")
    m.add_argument("--json", metavar="PATH", default=None,
                   help="write the matrix as JSON (schema ncspec.killmatrix/1) to PATH")
    m.add_argument("--tier", choices=["linear", "deep", "all"], default="linear",
                   help="linear (default): the claims on linear and toy models; deep: the N claims, convolutional "
                        "networks trained on images (needs --data-root; at the cpu scale about 10 s per training "
                        "run, a few minutes in all); all: both")
    m.add_argument("--scale", choices=["cpu", "cpu-long", "gpu", "dry"], default="cpu",
                   help="deep tier: the scale of the training runs (as for ncspec check)")
    m.add_argument("--data-root", metavar="PATH", default=None,
                   help="deep tier: CIFAR-10 (a folder holding cifar-10-batches-py/), STL-10 (stl10_binary/) or an "
                        ".npz; default $NCSPEC_DATA")
    m.set_defaults(func=_cmd_mutants)
