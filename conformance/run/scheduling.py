"""pytest-xdist scheduling: the tests that share cached runs are kept in one worker, so each run is computed once."""
from __future__ import annotations

#: spec modules whose tests share cached runs (toy runs, SG limits, ReLU runs, D1's one 2-process run): under
#: pytest-xdist each of them runs in one worker, so each run is computed once
SHARED_RUN_MODULES = ("test_center_vector.py", "test_distributed.py", "test_dual.py", "test_relu_network.py",
                      "test_stepwise.py")
#: deep-tier tests that read one cached training run, by the run: in one worker, so the run is trained once (N6
#: watches N1's BYOL run; N7 and N9 read it too)
SHARED_RUNS = {("test_deep.py", "byol_run"): ("test_intact_method_keeps_the_representation_spread[byol]",
                                             "test_learned_linear_predictor_aligns_with_the_embedding_correlation",
                                             "test_ema_target_lags_by_the_momentum_in_a_real_network",
                                             "test_byol_without_its_predictor_collapses")}


def shared_scope(nodeid: str, scope: str) -> str:
    """The work unit of a test under ``--dist loadgroup``: xdist's group (``scope``, from an ``xdist_group``
    mark) when it found one, else the test's module for :data:`SHARED_RUN_MODULES`, else the test itself.
    (pytest 9.2 keeps node ids in ``Node._id``, so pytest-xdist 3.8's ``@group`` suffix never appears there.)"""
    if scope != nodeid:
        return scope
    module, _, test = nodeid.partition("::")
    for (name, group), tests in SHARED_RUNS.items():
        if test in tests and module.rsplit("/", 1)[-1] == name:
            return f"{module}::{group}"
    return module if module.rsplit("/", 1)[-1] in SHARED_RUN_MODULES else nodeid


def make_scheduler(config, log):
    """``--dist loadgroup``'s scheduler with :func:`shared_scope` as its work unit; None under another ``--dist``."""
    if config.getoption("dist", None) != "loadgroup":
        return None
    from xdist.scheduler import LoadGroupScheduling

    class SharedRunScheduling(LoadGroupScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return shared_scope(nodeid, super()._split_scope(nodeid))

    return SharedRunScheduling(config, log)
