"""``record.within`` records the row the report shows and applies the same tolerance in one call."""
from __future__ import annotations

import math

import pytest
from ncspec.conformance.run.recorder import Recorder


def test_within_records_and_passes_inside_the_tolerance():
    rec = Recorder()
    rec.within("rel err", 0.5, 0.0, error=0.5, tolerance=1.0, message="too far")
    assert rec.rows["rel err"] == dict(quantity="rel err", measured=0.5, predicted=0.0, error=0.5, tolerance=1.0)


@pytest.mark.parametrize("error", [1.5, math.nan])
def test_within_fails_by_assertion_beyond_the_tolerance_or_on_nan(error):
    rec = Recorder()
    with pytest.raises(AssertionError, match=r"too far \(rel err: error .* > tolerance 1\)"):
        rec.within("rel err", error, 0.0, error=error, tolerance=1.0, message="too far")
    assert "rel err" in rec.rows    # the failing row still reaches the report


def test_within_strict_fails_at_the_tolerance():
    """``strict``: the assertion is ``error < tolerance`` (an ``assert x < bound``), so equality fails."""
    rec = Recorder()
    rec.within("gap", 0.5, "< 1", error=0.5, tolerance=1.0, message="no gap", strict=True)
    with pytest.raises(AssertionError, match=r"no gap \(gap: error 1 ≥ tolerance 1\)"):
        rec.within("gap", 1.0, "< 1", error=1.0, tolerance=1.0, message="no gap", strict=True)
