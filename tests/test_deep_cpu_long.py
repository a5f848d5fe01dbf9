"""The deep tier's opt-in cpu-long scale (N3's longer runs, N4's Table 1 in miniature): its budget line, and
its claims' code paths at a dry size on a generated .npz (seconds; the outcomes mean nothing at this size, so each
test sets an unreachable boundary and expects the claim's own assertion to fail, which shows it is live)."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from _pytest.outcomes import Skipped


@pytest.fixture
def dry_long(tmp_path, monkeypatch):
    """cpu-long with the dry scale's network and step budgets, Table 1 in miniature at its dry size, 64 images."""
    from ncspec.conformance.run import deep_tier as T
    from ncspec.reference.vision import table1
    rng = np.random.default_rng(0)
    path = tmp_path / "tiny.npz"
    np.savez(path, x_train=rng.integers(0, 256, (64, 32, 32, 3), dtype=np.uint8), y_train=rng.integers(0, 10, 64),
             x_test=rng.integers(0, 256, (32, 32, 32, 3), dtype=np.uint8), y_test=rng.integers(0, 10, 32))
    monkeypatch.setitem(T.SCALES, "cpu-long", replace(T.SCALES["dry"], name="cpu-long", table1_epochs=1))
    monkeypatch.setitem(T.LONG_RUN_STEPS, "N3", 4)
    monkeypatch.setitem(table1.SMALL_SCALES, "cpu", table1.SMALL_SCALES["dry"])
    monkeypatch.setenv("NCSPEC_SCALE", "cpu-long")
    monkeypatch.setenv("NCSPEC_DATA", str(path))
    from ncspec.conformance.contract.registry import load_adapter
    from ncspec.conformance.run.recorder import Recorder
    from ncspec.spec_tests import test_deep
    return test_deep, load_adapter("reference"), Recorder()


def test_budget_line_names_the_longer_runs():
    from ncspec.conformance.contract.registry import load_adapter
    from ncspec.conformance.run.deep_tier import LONG_RUN_STEPS, budget_line
    line = budget_line("cpu-long", load_adapter("reference"))
    assert f"isoloss, projector without output BN ({LONG_RUN_STEPS['N3']} steps)" in line
    assert "Table 1 in miniature: simsiam and isoloss without EMA, 40 epochs" in line
    assert "simsiam without SG," in line and "on an idle 2-core machine" in line
    assert "byol without predictor" not in line                  # N7 skips at cpu-long


def test_n4_runs_table1_in_miniature_to_its_assertion(dry_long, monkeypatch):
    test_deep, impl, record = dry_long
    monkeypatch.setattr(test_deep, "MINI_GAP", 1.0)          # a lead of more than 100 points: cannot hold
    with pytest.raises(AssertionError, match="is not above the SimSiam loss's .* by more than 1.0"):
        test_deep.test_isoloss_beats_the_simsiam_loss_without_ema(impl=impl, record=record)
    assert list(record.rows) == ["readout: IsoLoss − SimSiam loss"]


def test_n3_reads_the_end_of_its_longer_runs(dry_long, monkeypatch):
    test_deep, impl, record = dry_long
    monkeypatch.setattr(test_deep, "N3_LONG_MARGIN", 1e9)
    with pytest.raises(AssertionError, match="after 4 steps"):
        test_deep.test_isoloss_lifts_the_smallest_eigenmodes_faster_than_the_simsiam_loss(impl=impl, record=record)


@pytest.mark.parametrize("test", ["test_closed_form_predictor_makes_the_spectrum_more_isotropic",
                                  "test_byol_without_its_predictor_collapses"])
def test_n2_and_n7_skip_at_cpu_long_with_the_numbers(dry_long, test):
    test_deep, impl, record = dry_long
    with pytest.raises(Skipped, match="cpu-long scale's length \\(400 steps|cpu-long scale \\(400 steps"):
        getattr(test_deep, test)(impl=impl, record=record)
