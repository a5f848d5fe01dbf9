"""The ncspec pytest plugin: adapter selection, Hypothesis profiles, claim results.

Loaded by the repository's root ``conftest.py`` and by ``ncspec check``
(``-p conformance.plugin``). It adds

* ``--adapter NAME_OR_module:attr`` (default: ``$NCSPEC_ADAPTER`` or ``reference``);
* ``--ncspec-json PATH`` — write the claim report (see :mod:`conformance.report`);
* Hypothesis profiles ``ci`` (derandomised, few examples, no shrinking: the
  default) and ``thorough`` (random seeds, many examples, shrinking), chosen by
  ``--hypothesis-profile`` or ``$NCSPEC_PROFILE``;
* fixtures ``impl`` (the adapter under test) and ``record`` (measured vs
  predicted values, reported per claim).
"""
from __future__ import annotations

import os
import time

import pytest
from hypothesis import HealthCheck, Phase, settings

from . import registry

_common = dict(deadline=None, database=None, print_blob=True,
               suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                      HealthCheck.data_too_large])
settings.register_profile("ci", max_examples=3, derandomize=True,
                          phases=[Phase.explicit, Phase.reuse, Phase.generate], **_common)
settings.register_profile("thorough", max_examples=40, **_common)
settings.load_profile(os.environ.get("NCSPEC_PROFILE", "ci"))


def pytest_addoption(parser):
    group = parser.getgroup("ncspec")
    group.addoption("--adapter", default=None,
                    help=f"implementation under test: a name ({', '.join(registry.available()[:1])}, "
                         f"mutant:NAME, an entry point) or 'module:attr'. Default ${registry.ENV_VAR} or 'reference'.")
    group.addoption("--ncspec-json", default=None, metavar="PATH",
                    help="write the per-claim JSON report to PATH")


def pytest_configure(config):
    # The linear simulations are tiny and latency-bound: intra-op threads only add
    # synchronisation (measured 0.9 ms/step on 1 thread vs 13 ms on 2 busy cores).
    import torch
    torch.set_num_threads(int(os.environ.get("NCSPEC_THREADS", "1")))
    config.addinivalue_line("markers", "claim(id): the theoretical claim a spec test checks")
    config._ncspec = Collector(config)
    config.pluginmanager.register(config._ncspec, "ncspec-collector")


def adapter_spec(config) -> str:
    return config.getoption("adapter", default=None) or os.environ.get(registry.ENV_VAR) or "reference"


@pytest.fixture(scope="session")
def impl(request):
    """The adapter under test (see conformance/adapter.py)."""
    return registry.load_adapter(adapter_spec(request.config))


class Recorder:
    """Measured-vs-predicted rows of one test; the worst example is kept per quantity."""

    def __init__(self):
        self.rows: dict[str, dict] = {}

    def __call__(self, quantity: str, measured: float, predicted: float | str, *, error: float | None = None,
                 tolerance: float | None = None) -> None:
        """Record one comparison. ``error`` and ``tolerance`` are in the same units
        (e.g. relative error and its bound); the row with the largest error/tolerance
        across Hypothesis examples is the one reported."""
        row = dict(quantity=quantity, measured=float(measured),
                   predicted=predicted if isinstance(predicted, str) else float(predicted),
                   error=None if error is None else float(error),
                   tolerance=None if tolerance is None else float(tolerance))
        old = self.rows.get(quantity)
        if old is None or _severity(row) >= _severity(old):
            self.rows[quantity] = row


def _severity(row) -> float:
    if row["error"] is None or not row["tolerance"]:
        return 0.0
    return row["error"] / row["tolerance"]


@pytest.fixture
def record(request):
    rec = Recorder()
    request.node._ncspec_record = rec
    return rec


class Collector:
    """Collects per-test outcomes of claim tests for the report."""

    def __init__(self, config):
        self.config = config
        self.tests: list[dict] = []
        self.started = time.time()

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item, call):
        outcome = yield
        rep = outcome.get_result()
        marker = item.get_closest_marker("claim")
        if marker is None:
            return
        if rep.when == "call" or (rep.when == "setup" and rep.outcome != "passed"):
            rec = getattr(item, "_ncspec_record", None)
            reason = ""
            if rep.skipped and isinstance(rep.longrepr, tuple):
                reason = rep.longrepr[2]
            elif rep.failed:
                reason = _first_line(rep)
            self.tests.append(dict(claim=marker.args[0], test=item.nodeid, outcome=rep.outcome,
                                   duration=rep.duration, reason=reason,
                                   rows=list(rec.rows.values()) if rec else []))

    def pytest_sessionfinish(self, session):
        path = self.config.getoption("ncspec_json", default=None)
        if path:
            from .report import build_report, write_json
            write_json(build_report(self.tests, adapter_spec(self.config), time.time() - self.started), path)


def _first_line(rep) -> str:
    crash = getattr(rep.longrepr, "reprcrash", None)
    if crash is not None:
        return crash.message.splitlines()[0][:300]
    return str(rep.longrepr).strip().splitlines()[-1][:300]
