"""The ncspec pytest plugin: adapter selection, Hypothesis profiles, claim results.

Loaded by the repository's root ``conftest.py`` and by ``ncspec check``
(``-p ncspec.conformance.plugin``). It adds

* ``--adapter NAME_OR_module:attr`` (default: ``$NCSPEC_ADAPTER`` or ``reference``);
* ``--ncspec-json PATH`` — write the claim report (see :mod:`ncspec.conformance.run.report`);
* ``--ncspec-report PATH`` — also write it readable: ``.md`` or ``.html`` with a margin
  plot (see :mod:`ncspec.conformance.run.report_doc`);
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

The plugin holds the hooks and fixtures; each job beside them has its own module: the session's adapter, profile,
seed and tier (:mod:`~ncspec.conformance.run.session`), the expected-failures file
(:mod:`~ncspec.conformance.run.xfail`),
pytest-xdist scheduling (:mod:`~ncspec.conformance.run.scheduling`), the ``record`` rows
(:mod:`~ncspec.conformance.run.recorder`), per-test results for the report (:mod:`~ncspec.conformance.run.results`),
failure messages and adapter crashes (:mod:`~ncspec.conformance.run.failures`), and ``--ncspec-progress``
(:mod:`~ncspec.conformance.run.progress`).
"""
from __future__ import annotations

import gc
import os

import pytest
import torch

from .contract import loss_scale, registry
from .contract.loss_scale import claim_scope, scale_aware
from .run import scheduling, xfail
from .run.deep_tier import DATA_ENV, SCALE_ENV, SCALES
from .run.progress import Progress
from .run.recorder import Recorder
from .run.report_doc import check_report_path
from .run.results import Collector
from .run.session import (
    TIER_ENV_VAR,
    TIERS,
    adapter_spec,
    end_run,
    is_worker,
    profile_name,
    run_adapter,
    session_seed,
    tier,
    torch_threads,
)
from .run.xfail import XFAIL_ENV_VAR

# The Hypothesis profiles ``ci`` and ``thorough`` are registered and loaded by :mod:`.session` (imported above).


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
    group.addoption("--ncspec-scale", default=None, choices=tuple(SCALES),
                    help="deep tier: 'cpu' (small conv nets, CPU), 'cpu-long' (the cpu scale plus N3's and N4's "
                         "longer runs, opt-in), 'gpu' (ResNet-18, bf16, compiled) or 'dry'. "
                         f"Default ${SCALE_ENV} or cpu.")
    group.addoption("--ncspec-data", default=None, metavar="PATH",
                    help="deep tier: a folder holding cifar-10-batches-py/, or an .npz of images "
                         f"(x_train, y_train, x_test, y_test). Default ${DATA_ENV}.")
    group.addoption("--ncspec-progress", action="store_true", default=False,
                    help="print claim-by-claim progress with elapsed time on stderr (a progress bar on a "
                         "terminal, one line per test otherwise)")
    group.addoption("--ncspec-xfail", default=None, metavar="PATH",
                    help=f"expected-failures file: 'CLAIM_ID[::TEST_SUBSTRING]  reason' per line "
                         f"(strict xfail). Default ${XFAIL_ENV_VAR}.")


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    return scheduling.make_scheduler(config, log)


@pytest.hookimpl(trylast=True)
def pytest_collection_finish(session):
    """The imported modules (torch, Hypothesis, the claims) are long-lived: moved out of the garbage
    collector's generations, so its full passes during the runs do not walk them again."""
    gc.collect()
    gc.freeze()


def pytest_unconfigure(config):
    """Undo the environment the session set (an in-process session must not leak it into the caller), and forget
    the run's adapter."""
    end_run()
    for env, old in getattr(config, "_ncspec_saved_env", {}).items():
        if old is None:
            os.environ.pop(env, None)
        else:
            os.environ[env] = old


@pytest.hookimpl(tryfirst=True)   # before Hypothesis' own pytest_configure reads --hypothesis-seed
def pytest_configure(config):
    config._ncspec_seed = session_seed(config)
    # The linear simulations are tiny and latency-bound: intra-op threads only add
    # synchronisation (measured 0.9 ms/step on 1 thread vs 13 ms on 2 busy cores).
    torch.set_num_threads(torch_threads())
    config.addinivalue_line("markers", "claim(id): the theoretical claim a spec test checks")
    config.addinivalue_line("markers", "deep: a deep-tier claim test (convolutional networks on images)")
    config.addinivalue_line("markers", "xdist_group(name): tests sharing cached runs, kept in one pytest-xdist worker")
    config._ncspec_saved_env = {}
    for option, env in (("ncspec_scale", SCALE_ENV), ("ncspec_data", DATA_ENV)):
        value = config.getoption(option, default=None)
        if value:   # the deep harness (and run_claim, which has no pytest config) reads the environment
            config._ncspec_saved_env[env] = os.environ.get(env)
            os.environ[env] = os.path.abspath(value) if option == "ncspec_data" else value
    config.pluginmanager.register(TierFilter(tier(config)), "ncspec-tier")
    if config.getoption("ncspec_progress", default=False) and not is_worker(config):
        config.pluginmanager.register(Progress(), "ncspec-progress")
    config._ncspec_xfail = xfail.from_config(config)
    doc = config.getoption("ncspec_report", default=None)
    if doc:
        try:
            check_report_path(doc, "--ncspec-report")
        except ValueError as e:
            raise pytest.UsageError(str(e)) from None
    config._ncspec = Collector(config)
    config.pluginmanager.register(config._ncspec, "ncspec-collector")
    if config.getoption("adapter", default=None) or os.environ.get(registry.ENV_VAR):
        # Load a chosen adapter now, before collection: a bad name fails fast, and a lab's own packages
        # (e.g. its `conformance.myadapter`) are imported before pytest puts any test folder on sys.path.
        try:
            run_adapter(adapter_spec(config))      # the impl fixture reuses it
        except (LookupError, TypeError, ValueError) as e:
            raise pytest.UsageError(f"ncspec: {e}") from e


@pytest.hookimpl(tryfirst=True)  # before -k selects: `-k H1` selects claim H1's tests
def pytest_itemcollected(item):
    marker = item.get_closest_marker("claim")
    if marker is not None:
        item.extra_keyword_matches.add(marker.args[0])


@pytest.hookimpl(tryfirst=True)  # before -k/--deselect, so an entry is checked against every claim test
def pytest_collection_modifyitems(config, items):
    xfail.mark(config, items)


def pytest_report_header(config) -> str:
    """Under plain ``pytest`` too, the header says what the claims run against and how to rerun the draws."""
    seed = getattr(config, "_ncspec_seed", None)
    return (f"ncspec: adapter {adapter_spec(config)}, profile {profile_name(config)}, "
            + (f"seed {seed}" if seed is not None else "derandomized draws (no seed)") + f", tier {tier(config)}")


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


@pytest.fixture(scope="session")
def impl(request):
    """The adapter under test (see conformance/contract/adapter.py); its learners run in the definition's time
    units, a constant loss factor measured and reported (:mod:`ncspec.conformance.contract.loss_scale`)."""
    return scale_aware(run_adapter(adapter_spec(request.config)))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    """A loss-scale misfit with no known cause lets the claim's own assertion speak first (scale.claim_scope)."""
    with claim_scope():
        return (yield)


@pytest.fixture
def record(request):
    rec = Recorder()
    request.node._ncspec_record = rec
    loss_scale.SINK = rec               # the measured loss scale of every learner built joins the rows
    yield rec
    loss_scale.SINK = None

