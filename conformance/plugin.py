"""The ncspec pytest plugin: adapter selection, Hypothesis profiles, claim results.

Loaded by the repository's root ``conftest.py`` and by ``ncspec check``
(``-p ncspec.conformance.plugin``). It adds

* ``--adapter NAME_OR_module:attr`` (default: ``$NCSPEC_ADAPTER`` or ``reference``);
* ``--ncspec-json PATH`` — write the claim report (see :mod:`ncspec.conformance.report`);
* ``--ncspec-report PATH`` — also write it readable: ``.md`` or ``.html`` with a margin
  plot (see :mod:`ncspec.conformance.report_doc`);
* ``--ncspec-xfail PATH`` (default ``$NCSPEC_XFAIL``) — the expected-failures file, below;
* Hypothesis profiles ``ci`` (derandomised, few examples, no shrinking: the
  default) and ``thorough`` (random seeds, many examples, shrinking), chosen by
  ``--hypothesis-profile`` or ``$NCSPEC_PROFILE``;
* fixtures ``impl`` (the adapter under test) and ``record`` (measured vs
  predicted values, reported per claim).

Reproducible failures: a randomised profile (``thorough``) always runs under a definite
Hypothesis seed — the one given with ``--hypothesis-seed`` (``ncspec check --seed N``), or one
drawn here and passed on to Hypothesis' own option — so every draw of the session is rerun by
that seed (Hypothesis seeds each test with it, whatever ``-k`` selects). Each failing test's
report carries its reproduction: the failing example and the ``@reproduce_failure`` blob
(Hypothesis attaches them to the exception as PEP 678 notes), the seed, and the command.

Expected-failures file
----------------------
An implementation that knowingly deviates from a claim lists it, so CI stays green
while the deviation is documented — and turns red the day it is fixed. One entry
per line::

    # CLAIM_ID[::TEST_NAME_SUBSTRING]  reason text...
    D1::barlow_twins  lightly normalises each rank's shard with local batch statistics
    H6  our cosine loss adds eps to the norm

``#`` at the start of a line or after whitespace starts a comment; blank lines are
ignored. The reason is required. Without ``::SUBSTRING`` every test of the claim is
meant, with it only the tests whose node id contains it (parametrised ids count:
``H6::[cosine]`` for a test parametrised by ``cosine``). The matched tests get
``xfail(strict=True)``: a failure is reported as ``xfailed``, a pass fails the run
("expected failure passed (strict): remove '…' from the expected-failures file"), so
stale entries cannot pile up. An unknown claim ID, or a substring that matches none
of the claim's collected tests, is a usage error naming the line.
"""
from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, Phase, settings

from . import registry

_common = dict(deadline=None, database=None, print_blob=True,
               suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                      HealthCheck.data_too_large])
# Both profiles derive from Hypothesis' own defaults, not from whatever profile is loaded now: with
# $CI set Hypothesis loads a derandomised profile of its own, which ``thorough`` must not inherit.
_base = settings.get_profile("default")
settings.register_profile("ci", _base, max_examples=3, derandomize=True,
                          phases=[Phase.explicit, Phase.reuse, Phase.generate], **_common)
settings.register_profile("thorough", _base, max_examples=40, derandomize=False, **_common)
settings.load_profile(os.environ.get("NCSPEC_PROFILE", "ci"))


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask where the OS has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def torch_threads() -> int:
    """Intra-op threads for the claims' runs: ``$NCSPEC_THREADS``, default 1."""
    return int(os.environ.get("NCSPEC_THREADS", "1"))


def pytest_addoption(parser):
    group = parser.getgroup("ncspec")
    group.addoption("--adapter", default=None,
                    help=f"implementation under test: a name ({', '.join(registry.available()[:1])}, "
                         f"mutant:NAME, an entry point) or 'module:attr'. Default ${registry.ENV_VAR} or 'reference'.")
    group.addoption("--ncspec-json", default=None, metavar="PATH",
                    help="write the per-claim JSON report to PATH")
    group.addoption("--ncspec-report", default=None, metavar="PATH",
                    help="write a readable report with a margin plot to PATH (.md or .html)")
    group.addoption("--ncspec-tier", default=None, choices=TIERS,
                    help=f"which claims run: 'linear' (default; every claim on linear and toy models), 'deep' "
                         f"(the N claims: convolutional networks on images) or 'all'. Default ${TIER_ENV_VAR}.")
    group.addoption("--ncspec-scale", default=None, choices=("cpu", "gpu"),
                    help="deep tier: 'cpu' (small conv nets, CPU) or 'gpu' (ResNet-18, bf16, compiled). "
                         "Default $NCSPEC_SCALE or cpu.")
    group.addoption("--ncspec-data", default=None, metavar="PATH",
                    help="deep tier: a folder holding cifar-10-batches-py/, or an .npz of images "
                         "(x_train, y_train, x_test, y_test). Default $NCSPEC_DATA.")
    group.addoption("--ncspec-progress", action="store_true", default=False,
                    help="print claim-by-claim progress with elapsed time on stderr (a progress bar on a "
                         "terminal, one line per test otherwise)")
    group.addoption("--ncspec-xfail", default=None, metavar="PATH",
                    help=f"expected-failures file: 'CLAIM_ID[::TEST_SUBSTRING]  reason' per line "
                         f"(strict xfail). Default ${XFAIL_ENV_VAR}.")


def profile_name(config) -> str:
    """The Hypothesis profile this session runs: ``--hypothesis-profile``, ``$NCSPEC_PROFILE`` or ``ci``."""
    return config.getoption("hypothesis_profile", default=None) or os.environ.get("NCSPEC_PROFILE", "ci")


def _session_seed(config) -> int | None:
    """The Hypothesis seed of a randomised session; None for a derandomised profile (``ci``), whose
    draws are fixed per test. A seed not given is drawn and handed to Hypothesis' option."""
    given = config.getoption("hypothesis_seed", default=None)
    if given is not None:
        try:
            return int(given)
        except ValueError:
            return given
    try:
        derandomized = settings.get_profile(profile_name(config)).derandomize
    except Exception:   # an unknown profile: Hypothesis reports it
        return None
    if derandomized or not hasattr(config.option, "hypothesis_seed"):
        return None
    import secrets
    seed = secrets.randbelow(2 ** 32)
    config.option.hypothesis_seed = seed
    return seed


#: spec modules whose tests share cached runs (toy runs, SG limits, ReLU runs, D1's one 2-process run): under
#: pytest-xdist each of them runs in one worker, so each run is computed once
SHARED_RUN_MODULES = ("test_center_vector.py", "test_distributed.py", "test_dual.py", "test_relu_network.py")


def shared_scope(nodeid: str, scope: str) -> str:
    """The work unit of a test under ``--dist loadgroup``: xdist's group (``scope``, from an ``xdist_group``
    mark) when it found one, else the test's module for :data:`SHARED_RUN_MODULES`, else the test itself.
    (pytest 9.2 keeps node ids in ``Node._id``, so pytest-xdist 3.8's ``@group`` suffix never appears there.)"""
    if scope != nodeid:
        return scope
    module = nodeid.split("::", 1)[0]
    return module if module.rsplit("/", 1)[-1] in SHARED_RUN_MODULES else nodeid


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    if config.getoption("dist", None) != "loadgroup":
        return None
    from xdist.scheduler import LoadGroupScheduling

    class SharedRunScheduling(LoadGroupScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return shared_scope(nodeid, super()._split_scope(nodeid))

    return SharedRunScheduling(config, log)


@pytest.hookimpl(trylast=True)
def pytest_collection_finish(session):
    """The imported modules (torch, Hypothesis, the claims) are long-lived: moved out of the garbage
    collector's generations, so its full passes during the runs do not walk them again."""
    import gc
    gc.collect()
    gc.freeze()


def pytest_unconfigure(config):
    """Undo the environment the session set (an in-process session must not leak it into the caller)."""
    for env, old in getattr(config, "_ncspec_saved_env", {}).items():
        if old is None:
            os.environ.pop(env, None)
        else:
            os.environ[env] = old


@pytest.hookimpl(tryfirst=True)   # before Hypothesis' own pytest_configure reads --hypothesis-seed
def pytest_configure(config):
    config._ncspec_seed = _session_seed(config)
    # The linear simulations are tiny and latency-bound: intra-op threads only add
    # synchronisation (measured 0.9 ms/step on 1 thread vs 13 ms on 2 busy cores).
    import torch
    torch.set_num_threads(torch_threads())
    config.addinivalue_line("markers", "claim(id): the theoretical claim a spec test checks")
    config.addinivalue_line("markers", "deep: a deep-tier claim test (convolutional networks on images)")
    config.addinivalue_line("markers", "xdist_group(name): tests sharing cached runs, kept in one pytest-xdist worker")
    config._ncspec_saved_env = {}
    for option, env in (("ncspec_scale", "NCSPEC_SCALE"), ("ncspec_data", "NCSPEC_DATA")):
        value = config.getoption(option, default=None)
        if value:   # the deep harness (and run_claim, which has no pytest config) reads the environment
            config._ncspec_saved_env[env] = os.environ.get(env)
            os.environ[env] = os.path.abspath(value) if option == "ncspec_data" else value
    config.pluginmanager.register(TierFilter(tier(config)), "ncspec-tier")
    if config.getoption("ncspec_progress", default=False) and not _is_worker(config):
        config.pluginmanager.register(Progress(), "ncspec-progress")
    path = config.getoption("ncspec_xfail", default=None)
    option = "--ncspec-xfail" if path else f"${XFAIL_ENV_VAR}"
    path = path or os.environ.get(XFAIL_ENV_VAR)
    config._ncspec_xfail = parse_expected_failures(path, option) if path else []
    doc = config.getoption("ncspec_report", default=None)
    if doc and os.path.splitext(doc)[1].lower() not in (".md", ".html", ".htm"):
        raise pytest.UsageError(f"--ncspec-report {doc!r} must end with .md (Markdown plus a PNG beside it) "
                                f"or .html (one self-contained file).")
    config._ncspec = Collector(config)
    config.pluginmanager.register(config._ncspec, "ncspec-collector")
    if config.getoption("adapter", default=None) or os.environ.get(registry.ENV_VAR):
        # Load a chosen adapter now, before collection: a bad name fails fast, and a lab's own packages
        # (e.g. its `conformance.myadapter`) are imported before pytest puts any test folder on sys.path.
        try:
            registry.load_adapter(adapter_spec(config))
        except (LookupError, TypeError, ValueError) as e:
            raise pytest.UsageError(f"ncspec: {e}") from e


@pytest.hookimpl(tryfirst=True)  # before -k selects: `-k H1` selects claim H1's tests
def pytest_itemcollected(item):
    marker = item.get_closest_marker("claim")
    if marker is not None:
        item.extra_keyword_matches.add(marker.args[0])


@pytest.hookimpl(tryfirst=True)  # before -k/--deselect, so an entry is checked against every claim test
def pytest_collection_modifyitems(config, items):
    entries = getattr(config, "_ncspec_xfail", [])
    if not entries:
        return
    from .claims import load_all
    check_claim_ids(entries, load_all())
    by_claim: dict[str, list] = {}
    for item in items:
        marker = item.get_closest_marker("claim")
        if marker is not None:
            by_claim.setdefault(marker.args[0], []).append(item)
    for e in entries:
        mine = by_claim.get(e.claim, [])
        matched = [it for it in mine if e.test_filter in it.nodeid]
        if mine and not matched:
            raise pytest.UsageError(
                f"{e.path}, line {e.line}: {e.test_filter!r} matches no test of claim {e.claim} "
                f"({', '.join(it.nodeid.split('::')[-1] for it in mine)}); fix the substring or remove the line.")
        for it in matched:
            if getattr(it, "_ncspec_xfail", None) is None:  # the first matching line wins
                it._ncspec_xfail = e
                it.add_marker(pytest.mark.xfail(strict=True, reason=f"{e.claim}: {e.reason}"))


XFAIL_ENV_VAR = "NCSPEC_XFAIL"
TIER_ENV_VAR = "NCSPEC_TIER"
TIERS = ("linear", "deep", "all")


def pytest_report_header(config) -> str:
    """Under plain ``pytest`` too, the header says what the claims run against and how to rerun the draws."""
    seed = getattr(config, "_ncspec_seed", None)
    return (f"ncspec: adapter {adapter_spec(config)}, profile {profile_name(config)}, "
            + (f"seed {seed}" if seed is not None else "derandomized draws (no seed)") + f", tier {tier(config)}")


def tier(config) -> str:
    value = config.getoption("ncspec_tier", default=None) or os.environ.get(TIER_ENV_VAR) or "linear"
    if value not in TIERS:
        raise pytest.UsageError(f"${TIER_ENV_VAR}={value!r} is not a tier; use one of {', '.join(TIERS)}.")
    return value


class TierFilter:
    """Keep the tests of the selected tier: the deep claims (marker ``deep``) run only with
    ``--ncspec-tier deep`` (or ``all``), the linear ones only without ``deep``."""

    def __init__(self, tier: str):
        self.tier = tier

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, config, items):
        if self.tier == "all":
            return
        keep = [it for it in items if (it.get_closest_marker("deep") is not None) == (self.tier == "deep")]
        if len(keep) < len(items):
            config.hook.pytest_deselected(items=[it for it in items if it not in keep])
            items[:] = keep
_ID = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


@dataclass
class ExpectedFailure:
    """One line of the expected-failures file."""
    claim: str
    test_filter: str   # "" = every test of the claim
    reason: str
    line: int
    text: str          # the line without its comment, quoted back when the entry is stale
    path: str = ""

    def to_dict(self) -> dict:
        return dict(claim=self.claim, test_filter=self.test_filter, reason=self.reason, line=self.line)


def parse_expected_failures(path: str, option: str = "--ncspec-xfail") -> list[ExpectedFailure]:
    """Parse the expected-failures file (format in the module docstring). Claim IDs are
    checked separately (:func:`check_claim_ids`) because that needs the spec modules. ``option``: where the path
    came from, named in the error (``--xfail`` for ``ncspec check``, ``$NCSPEC_XFAIL``)."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise pytest.UsageError(f"cannot read the expected-failures file {path!r} given by {option}: {e.strerror}. "
                                f"Pass an existing file to {option} (one 'CLAIM_ID[::TEST_SUBSTRING]  reason' per "
                                f"line), or drop the option.") from e
    entries = []
    for n, raw in enumerate(lines, 1):
        text = re.sub(r"(^|\s)#.*$", "", raw).strip()
        if not text:
            continue
        head, _, reason = text.replace("\t", " ").partition(" ")
        reason = reason.strip()
        claim, _, test_filter = head.partition("::")
        if not _ID.match(claim) or ("::" in head and not test_filter):
            raise pytest.UsageError(f"{path}, line {n}: {head!r} is not CLAIM_ID or CLAIM_ID::TEST_SUBSTRING "
                                    f"(e.g. 'H4::isoloss_gradient  reason'); fix or comment out the line.")
        if not reason:
            raise pytest.UsageError(f"{path}, line {n}: {head!r} has no reason; write why the failure is "
                                    f"expected after the ID, e.g. '{head}  our loss adds eps to the norm'.")
        entries.append(ExpectedFailure(claim, test_filter, reason, n, text, path))
    return entries


def check_claim_ids(entries: list[ExpectedFailure], claims) -> None:
    """An unknown ID would silently mark nothing: refuse it, naming the line and the known IDs."""
    from .claims import sort_key
    for e in entries:
        if e.claim not in claims:
            raise pytest.UsageError(f"{e.path}, line {e.line}: unknown claim ID {e.claim!r}; known IDs: "
                                    f"{', '.join(sorted(claims, key=sort_key))}. Fix the ID or remove the line.")


def adapter_spec(config) -> str:
    return config.getoption("adapter", default=None) or os.environ.get(registry.ENV_VAR) or "reference"


@pytest.fixture(scope="session")
def impl(request):
    """The adapter under test (see conformance/adapter.py); its learners run in the definition's time
    units, a constant loss factor measured and reported (:mod:`ncspec.conformance.scale`)."""
    from .scale import scale_aware
    return scale_aware(registry.load_adapter(adapter_spec(request.config)))


class Recorder:
    """Measured-vs-predicted rows of one test; the worst example is kept per quantity."""

    def __init__(self):
        self.rows: dict[str, dict] = {}
        self.traces: list[dict] = []

    def trace(self, label: str, steps, series: dict, spectra=None) -> None:
        """A training trajectory for the report's plots (deep claims): ``series`` maps a quantity
        (e.g. ``"‖s‖"``) to its values at ``steps``; ``spectra`` is ``[(step, eigenvalues)]``."""
        self.traces.append(dict(label=label, steps=[int(s) for s in steps],
                                series={k: [float(v) for v in vs] for k, vs in series.items()},
                                spectra=[dict(step=int(st), eigenvalues=[float(x) for x in ev])
                                         for st, ev in (spectra or [])]))

    def __call__(self, quantity: str, measured: float, predicted: float | str, *, error: float | None = None,
                 tolerance: float | None = None, convention: bool = False) -> None:
        """Record one comparison. ``error`` and ``tolerance`` are in the same units
        (e.g. relative error and its bound); the row with the largest error/tolerance
        across Hypothesis examples is the one reported. ``convention``: the row states a convention in
        force (a measured loss scale other than ×1, a declared or default convention), which every
        report lists with the claims that saw it."""
        row = dict(quantity=quantity, measured=float(measured),
                   predicted=predicted if isinstance(predicted, str) else float(predicted),
                   error=None if error is None else float(error),
                   tolerance=None if tolerance is None else float(tolerance))
        if convention:
            row["convention"] = True
        old = self.rows.get(quantity)
        if old is None or _severity(row) >= _severity(old):
            self.rows[quantity] = row

    def within(self, quantity: str, measured: float, predicted: float | str, *, error: float, tolerance: float,
               message: str) -> None:
        """Record one comparison and assert ``error ≤ tolerance`` in one call, so the tolerance the report
        shows is the one the test applies. ``message`` says what failed (the error and tolerance are added);
        a NaN error fails."""
        self(quantity, measured, predicted, error=error, tolerance=tolerance)
        if not float(error) <= float(tolerance):
            raise AssertionError(f"{message} ({quantity}: error {float(error):.4g} > tolerance {float(tolerance):.4g})")


def _severity(row) -> float:
    if row["error"] is None or not row["tolerance"]:
        return 0.0
    return row["error"] / row["tolerance"]


@pytest.fixture
def record(request):
    from . import scale
    rec = Recorder()
    request.node._ncspec_record = rec
    scale.SINK = rec                    # the measured loss scale of every learner built joins the rows
    yield rec
    scale.SINK = None


USER_PROPERTY = "ncspec"


def _is_worker(config) -> bool:
    """True in a pytest-xdist worker process (the controller builds the report)."""
    return hasattr(config, "workerinput")


class Collector:
    """Collects per-test outcomes of claim tests for the report."""

    def __init__(self, config):
        self.config = config
        self.tests: list[dict] = []
        self.started = time.time()

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item):
        from . import coverage
        coverage.reset()        # each test's builds and steps, its fixtures' set-up included

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item, call):
        outcome = yield
        rep = outcome.get_result()
        marker = item.get_closest_marker("claim")
        if marker is None:
            return
        if rep.when == "call" or (rep.when == "setup" and rep.outcome != "passed"):
            rec = getattr(item, "_ncspec_record", None)
            entry = getattr(item, "_ncspec_xfail", None)
            outcome, reason = rep.outcome, ""
            if rep.skipped and hasattr(rep, "wasxfail"):
                outcome = "xfailed"
                got = call.excinfo.exconly().splitlines()[0][:200] if call.excinfo else ""
                reason = (entry.reason if entry else rep.wasxfail) + (f" (failed as expected: {got})" if got else "")
            elif rep.skipped and isinstance(rep.longrepr, tuple):
                # the first line: Hypothesis adds its example to a skip raised inside an @example
                reason = str(rep.longrepr[2]).strip().splitlines()[0] if str(rep.longrepr[2]).strip() else ""
            elif rep.failed and entry is not None and rep.when == "call" and call.excinfo is None:
                # pytest's strict XPASS: outcome "failed", longrepr "[XPASS(strict)] …", no wasxfail
                reason = (f"expected failure passed (strict): remove {entry.text!r} from the expected-failures "
                          f"file ({entry.path}, line {entry.line})")
            elif rep.failed:
                crash = adapter_crash(call.excinfo.value) if call.excinfo is not None else None
                if crash is not None:
                    outcome, reason = "errored", crash
                else:
                    reason = failure_message(call.excinfo.value) if call.excinfo is not None else _first_line(rep)
            from .coverage import TALLY
            entry = dict(claim=marker.args[0], test=item.nodeid, outcome=outcome, duration=rep.duration,
                         reason=reason, rows=list(rec.rows.values()) if rec else [],
                         traces=list(rec.traces) if rec else [], builds=TALLY.builds, steps=TALLY.steps)
            if rep.failed:
                entry["reproduce"] = self.reproduction(item, rep, call)
            # Carried on the report, so that it reaches the controller when pytest-xdist runs the tests
            # in worker processes (``ncspec check --jobs``); collected in pytest_runtest_logreport.
            rep.user_properties.append((USER_PROPERTY, entry))

    def pytest_runtest_logreport(self, report):
        for key, value in report.user_properties:
            if key == USER_PROPERTY and not _is_worker(self.config):
                self.tests.append(value)

    def reproduction(self, item, rep, call) -> dict:
        """What reruns this failure: the failing example and ``@reproduce_failure`` blob (PEP 678 notes
        Hypothesis attaches to the exception), Hypothesis' own report section, the seed, the command."""
        notes = []
        if call.excinfo is not None:
            stack = [call.excinfo.value]
            while stack:
                e = stack.pop()
                notes += [str(n) for n in getattr(e, "__notes__", ()) if str(n) not in notes]
                inner = getattr(e, "exceptions", None)
                if isinstance(inner, tuple):
                    stack += [x for x in inner if isinstance(x, BaseException)]
        notes += [text for name, text in rep.sections if name == "Hypothesis" and text not in notes]
        blob = next((m.group(0) for n in notes for m in [re.search(r"@reproduce_failure\([^)]*\)", n)] if m), None)
        example = "\n".join(n.strip() for n in notes if "@reproduce_failure" not in n).strip()
        seed = getattr(self.config, "_ncspec_seed", None)
        name = item.nodeid.split("::")[-1].split("[")[0]
        command = f"ncspec check --adapter {adapter_spec(self.config)} -k {name}"
        if seed is not None:
            command += f" --seed {seed}"
        elif profile_name(self.config) != "ci":
            command += f" --profile {profile_name(self.config)}"
        return dict(example=example, blob=blob, seed=seed, profile=profile_name(self.config), command=command)

    def pytest_terminal_summary(self, terminalreporter):
        failed = [t for t in self.tests if t.get("reproduce")]
        if not failed:
            return
        terminalreporter.section("ncspec: reproduce the failures")
        for t in failed:
            r = t["reproduce"]
            terminalreporter.write_line(f"{t['test']}: {r['command']}")
            if r["blob"]:
                terminalreporter.write_line(f"    or decorate the test with {r['blob']}")

    def pytest_sessionfinish(self, session, exitstatus):
        if _is_worker(self.config):
            return  # an xdist worker: its rows went to the controller, which writes the report
        if exitstatus == pytest.ExitCode.USAGE_ERROR:
            return  # e.g. a bad expected-failures file: no tests ran, an all-"not_run" report would mislead
        json_path = self.config.getoption("ncspec_json", default=None)
        doc_path = self.config.getoption("ncspec_report", default=None)
        if json_path or doc_path:
            from .report import build_report, write_json
            profile = self.config.getoption("hypothesis_profile", default=None)   # hypothesis' own option
            report = build_report(self.tests, adapter_spec(self.config), time.time() - self.started,
                                  expected_failures=[e.to_dict() for e in self.config._ncspec_xfail],
                                  seed=getattr(self.config, "_ncspec_seed", None), profile=profile,
                                  tier=tier(self.config))
            if json_path:
                write_json(report, json_path)
            if doc_path:
                from .report_doc import write_report
                write_report(report, doc_path)


def _first_line(rep) -> str:
    crash = getattr(rep.longrepr, "reprcrash", None)
    if crash is not None:
        return crash.message.splitlines()[0][:300]
    return str(rep.longrepr).strip().splitlines()[-1][:300]


#: longest failure message kept (the reports show it whole: a loss-scale mismatch explains itself in a paragraph)
MESSAGE_CHARS = 4000


def _message(exc: BaseException, with_type: bool) -> str:
    """An exception's message whole, without pytest's rewritten ``assert …`` introspection that follows it."""
    lines = []
    for line in str(exc).strip().splitlines():
        if line.startswith("assert ") and lines:
            break
        lines.append(line)
    text = "\n".join(lines).strip()
    if len(text) > MESSAGE_CHARS:
        text = text[:MESSAGE_CHARS].rsplit(" ", 1)[0] + " …"
    return f"{type(exc).__name__}: {text}" if with_type or not text else text


def failure_message(exc: BaseException) -> str:
    """What a failed claim test says: the claim's assertion message (its first sentence is what to fix), whole; for
    another exception its type and message."""
    from .killmatrix import _leaves
    leaves = list(_leaves(exc)) or [exc]
    first = next((e for e in leaves if isinstance(e, AssertionError)), leaves[0])
    return _message(first, with_type=not isinstance(first, AssertionError))


def _library_dirs() -> tuple[str, ...]:
    """Where code that is neither the harness nor the adapter lives: the standard library, torch, numpy, the test
    machinery."""
    import importlib
    stdlib = os.path.join(os.path.dirname(os.path.abspath(os.__file__)), "")   # its site-packages excepted, below
    dirs = set()
    for name in ("torch", "numpy", "hypothesis", "_pytest", "pluggy", "pytest", "xdist", "execnet", "rich"):
        try:
            mod = importlib.import_module(name)
        except ImportError:
            continue
        dirs.add(os.path.dirname(os.path.abspath(mod.__file__)))
    return (stdlib, *(os.path.join(d, "") for d in sorted(dirs)))


def _harness_dirs() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(ncspec's own code: spec tests, conformance, reference; its shipped adapters and mutants, which count as
    adapter code)."""
    from ncspec import conformance, reference, spec_tests
    root = os.path.dirname(os.path.abspath(conformance.__file__))
    own = tuple(os.path.join(os.path.dirname(os.path.abspath(m.__file__)), "") for m in (conformance, reference,
                                                                                         spec_tests))
    return own, (os.path.join(root, "adapters", ""), os.path.join(root, "mutants.py"))


def _adapter_frames(exc: BaseException) -> list:
    """The traceback frames of ``exc`` in the adapter's code (innermost last): outside ncspec's harness and the
    libraries, or in ncspec's shipped adapters."""
    own, adapters = _harness_dirs()
    libs = _library_dirs()
    out = []
    tb = exc.__traceback__
    while tb is not None:
        path = os.path.abspath(tb.tb_frame.f_code.co_filename)
        library = path.startswith(libs) and not (path.startswith(libs[0]) and "-packages" + os.sep in path)
        if path.startswith(adapters) or not (path.startswith(own) or library or path.startswith("<")):
            out.append(tb)
        tb = tb.tb_next
    return out


def adapter_crash(exc: BaseException) -> str | None:
    """The reason of a test that crashed in the adapter's code, None for a claim's failure.

    A crash is an :class:`~ncspec.conformance.validate.AdapterError` (a loss that is not a scalar, a ``build`` that
    raises: the message names the adapter, the method and the fix), or an exception other than a claim's assertion
    (:func:`ncspec.conformance.killmatrix.classify`) raised in or through the adapter's code, whose innermost line
    is quoted. A claim's assertion, the loss-scale check, and a crash in the harness alone (e.g. a divergence the
    simulator detects) are failures of the claim."""
    import linecache

    from .killmatrix import _leaves, classify
    from .validate import AdapterError
    if classify(exc) == "failed":
        return None
    for leaf in _leaves(exc):
        if isinstance(leaf, AdapterError):
            return _message(leaf, with_type=True)
    for leaf in _leaves(exc):
        frames = _adapter_frames(leaf)
        if frames:
            tb = frames[-1]
            code = tb.tb_frame.f_code
            line = linecache.getline(code.co_filename, tb.tb_lineno).strip()
            return (f"the adapter crashed: {_message(leaf, with_type=True)} (at {code.co_filename}:{tb.tb_lineno}, in "
                    f"{code.co_name}" + (f": {line}" if line else "") + ")")
    return None


class Progress:
    """Claim-by-claim progress on stderr: a rich progress bar on a terminal, one plain line per test
    when stderr is not a terminal (CI logs). Drawn only between tests, when pytest's output capture
    is suspended (no refresh thread writes into a test's captured output)."""

    def __init__(self, stream=None):
        import sys
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.started = time.time()
        self.total, self.done, self.bar, self.task, self.claims = 0, 0, None, None, {}

    def pytest_collection_finish(self, session):
        self.total = len(session.items)
        self.claims = {it.nodeid: m.args[0] for it in session.items if (m := it.get_closest_marker("claim"))}
        self._start_bar()

    def _start_bar(self):
        if self.tty and self.total and self.bar is None:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
            self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                TimeElapsedColumn(), console=Console(file=self.stream), auto_refresh=False,
                                transient=True)
            self.bar.start()
            self.task = self.bar.add_task("ncspec check", total=self.total)

    @staticmethod
    def _label(item_or_nodeid, claim=None) -> str:
        name = item_or_nodeid.split("::")[-1]
        return f"{claim} {name}" if claim else name

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_node_collection_finished(self, node, ids):
        """Under pytest-xdist the controller collects nothing itself: every worker reports the same ids."""
        if not self.total and ids:
            self.total = len(ids)
            self._start_bar()

    def pytest_runtest_logstart(self, nodeid, location):
        if self.bar is not None:
            self.bar.update(self.task, description=f"running {self._label(nodeid, self.claims.get(nodeid))}")
            self.bar.refresh()

    def pytest_runtest_logreport(self, report):
        if not (report.when == "call" or (report.when == "setup" and report.outcome != "passed")):
            return
        self.done += 1
        claim = self.claims.get(report.nodeid) or next(
            (v["claim"] for k, v in report.user_properties if k == USER_PROPERTY), None)
        elapsed = time.time() - self.started
        outcome = "xfailed" if hasattr(report, "wasxfail") else report.outcome
        line = (f"[{self.done:>{len(str(self.total))}}/{self.total}] {outcome:<7} "
                f"{self._label(report.nodeid, claim)} ({report.duration:.1f} s; {elapsed:.0f} s elapsed)")
        if self.bar is not None:
            self.bar.console.print(line, highlight=False, markup=False)
            self.bar.advance(self.task)
            self.bar.refresh()
        else:
            print(line, file=self.stream, flush=True)

    def pytest_sessionfinish(self, session):
        if self.bar is not None:
            self.bar.stop()
