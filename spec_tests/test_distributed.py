"""Distributed claim D1: data-parallel training computes the global-batch gradient.

Applies to any adapter declaring the ``distributed`` tag: two gloo processes on half batches must
give the gradient one process gets on the whole batch (the bug class of a gather without autograd
or per-rank batch statistics).
"""
from __future__ import annotations

import pytest
from ncspec.conformance.claims import cite, register
from ncspec.conformance.contract.loss_scale import unscaled
from ncspec.conformance.run import coverage

from .harness import require

# --- D1: distributed gradients -----------------------------------------------------------------

D1 = register(
    "D1", title="data-parallel gradient = single-process gradient on the global batch (2 gloo processes)",
    source=[cite("lightly1977"), cite("zbontar2021", "global-batch statistics"),
            cite("bardes2022", "global-batch statistics"), cite("halvagal2022", "eq. 1 (DirectPred's correlation)")],
    statement="For methods with batch statistics (Barlow Twins, VICReg, SimCLR negatives, DirectPred's "
              "correlation, BatchNorm in SimSiam's predictor), the rank-averaged gradient of 2 processes on half "
              "batches equals the gradient "
              "of one process on the whole batch.",
    measures="‖ḡ − g‖/‖g‖ per method (float64, B = 16 split 8 + 8, linear encoder 6 → 4)",
    prediction="0",
    tolerance="1e-9: only the summation order differs (measured ≤ 4e-16 for the reference); an all-gather "
              "without autograd is off by a factor 1/world_size (error 0.5).")

DISTRIBUTED = ("barlow_twins", "vicreg", "simclr", "directpred", "simsiam_mlp")
#: extra tags a method's distributed case needs: SimSiam's predictor has BatchNorm, whose statistics
#: must be global too (SyncBatchNorm on GPUs; adapters that synchronise it declare the tag)
_DIST_TAGS = {"simsiam_mlp": ("distributed:batchnorm",)}


def _dist_methods(impl) -> list[str]:
    caps = impl.capabilities
    return [m for m in DISTRIBUTED if m in caps and all(t in caps for t in _DIST_TAGS.get(m, ()))]
_dist_cache: dict = {}
# one 2-process run per adapter serves every D1 test, so pytest-xdist keeps them in one worker
# (scheduling.SHARED_RUN_MODULES)
pytestmark = pytest.mark.xdist_group("distributed")


def _distributed(method: str):
    def test(impl, record):
        require(impl, "distributed", method, *_DIST_TAGS.get(method, ()))
        from ncspec.conformance.run.distributed_check import Case, check, spec_of
        spec = spec_of(impl)
        if spec not in _dist_cache:       # one 2-process run per adapter covers every method
            cases = [Case(m) for m in _dist_methods(impl)]
            with coverage.counted() as used:
                try:
                    result = check(spec, unscaled(impl), cases)   # itself vs itself: no scale to measure
                except Exception as e:    # e.g. the adapter cannot be loaded in a fresh process
                    result = {c.id: (float("nan"), f"{type(e).__name__}: {e}"[:2000]) for c in cases}
            _dist_cache[spec] = result, used
        else:                             # the tests reading the run exercised the adapter as its first did
            coverage.credit(_dist_cache[spec][1])
        err, text = _dist_cache[spec][0][Case(method).id]
        assert text is None, f"{method}: the distributed run raised {text}"
        record.within(f"{method}: ‖ḡ − g‖/‖g‖", err, 0.0, error=err, tolerance=1e-9,
                      message=f"{method}: the data-parallel gradient differs from the global-batch gradient "
                              f"by {err:.3g} (relative); 0.5 = off by 1/world_size (a gather or all-reduce "
                              f"without autograd), O(1) otherwise = per-rank batch statistics")
    test.__name__ = test.__qualname__ = f"test_distributed_gradient_equals_global_batch_gradient_{method}"
    test.__doc__ = f"D1 for {method}: 2 gloo processes on half batches vs 1 process on the whole batch."
    return D1.check(test)


for _m in DISTRIBUTED:
    globals()[f"test_distributed_gradient_equals_global_batch_gradient_{_m}"] = _distributed(_m)
