"""pytest-xdist scheduling: the tests that share cached runs are kept in one worker, so each run is computed once."""
from __future__ import annotations

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


def make_scheduler(config, log):
    """``--dist loadgroup``'s scheduler with :func:`shared_scope` as its work unit; None under another ``--dist``."""
    if config.getoption("dist", None) != "loadgroup":
        return None
    from xdist.scheduler import LoadGroupScheduling

    class SharedRunScheduling(LoadGroupScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return shared_scope(nodeid, super()._split_scope(nodeid))

    return SharedRunScheduling(config, log)
