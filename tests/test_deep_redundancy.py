"""The deep claims of the redundancy family (N11 VICReg, N12 Barlow Twins) on the CIFAR-10 fragment at the cpu scale.

Each fails *by its assertion* on the mutants it is about (a crash would not count): VICReg's variance term dropped
(the intact run collapses), its std_coeff option ignored (the ablation does not), Barlow Twins' off-diagonal term
dropped (the intact run loses the dimensions the ablation loses). The reference passes both. Skips without the
fragment (``$NCSPEC_SHARED/data`` or ``../shared/data``).
"""
from __future__ import annotations

from pathlib import Path

import pytest
from fragment import require_fragment


@pytest.fixture
def deep(monkeypatch):
    frag = require_fragment()
    monkeypatch.setenv("NCSPEC_DATA", str(frag))
    monkeypatch.setenv("NCSPEC_SCALE", "cpu")
    from ncspec.conformance.contract.registry import load_adapter
    from ncspec.conformance.run.recorder import Recorder
    from ncspec.spec_tests import test_deep

    def run(test: str, adapter: str = "reference") -> Recorder:
        record = Recorder()
        getattr(test_deep, test)(impl=load_adapter(adapter), record=record)
        return record
    return run


N11_INTACT = "test_vicreg_keeps_the_representation_spread"
N11_ABLATED = "test_vicreg_without_its_variance_term_collapses"
N12 = "test_barlow_twins_off_diagonal_term_keeps_the_dimensions"


def test_the_reference_passes_n11_and_n12(deep):
    for test in (N11_INTACT, N11_ABLATED, N12):
        deep(test)


def test_n11_catches_a_vicreg_without_its_variance_term(deep):
    with pytest.raises(AssertionError, match="vicreg collapsed within 20 steps"):
        deep(N11_INTACT, "mutant:vicreg_variance_ignored")


def test_n11_catches_a_std_coeff_option_that_is_ignored(deep):
    with pytest.raises(AssertionError, match="did not collapse within 20 steps"):
        deep(N11_ABLATED, "mutant:vicreg_std_coeff_option_ignored")


N8_VICREG = "test_the_center_vector_grows_without_vicregs_variance_term"


def test_n8_reads_n11s_runs_on_the_reference_and_the_labs_vicreg(deep):
    """N8's VICReg case passes on the reference (its encoder's output) and on the lab's VICReg of tests/lab/ (its
    expander's output, the embedding the loss acts on)."""
    for adapter, where in (("reference", "embeddings"),
                           (f"{Path(__file__).resolve().parent / 'lab' / 'ncspec_adapter.py'}:vicreg",
                            "expander output")):
        rows = list(deep(N8_VICREG, adapter).rows)
        assert any(q.startswith(f"vicreg: ‖s‖ std_coeff = 0 / ‖s‖ intact ({where}") for q in rows), rows


def test_n8_catches_a_std_coeff_option_that_is_ignored(deep):
    """Both runs train the intact loss: the ratio of their ‖s‖ is 1 exactly."""
    with pytest.raises(AssertionError, match="does not separate vicreg without its variance term"):
        deep(N8_VICREG, "mutant:vicreg_std_coeff_option_ignored")


def test_n12_catches_a_barlow_twins_without_its_off_diagonal_term(deep):
    """The intact run trains the ablated loss: the ratio of their RankMe is 1 exactly."""
    with pytest.raises(AssertionError, match="off-diagonal term does not keep the dimensions"):
        deep(N12, "mutant:barlow_twins_offdiag_ignored")


def test_the_deep_tier_on_a_lab_vicreg_with_an_expander_runs_n11(tmp_path, capsys, monkeypatch):
    """A VICReg written as labs do (an expander after the encoder, exposed as ``learner.projector``): ``ncspec check
    --tier deep`` builds it in N11's runs, which pass (N8 reads them again); the summary lists N8, N11 under
    vicreg."""
    import json

    from ncspec.conformance.cli import main
    frag = require_fragment()
    monkeypatch.setenv("NCSPEC_THREADS", "1")
    out = tmp_path / "r.json"
    lab = f"{Path(__file__).resolve().parent / 'lab_vicreg.py'}:adapter"
    code = main(["check", "--adapter", lab, "--tier", "deep", "--data-root", str(frag), "--jobs", "1",
                 "--json", str(out), "--no-progress"])
    printed = capsys.readouterr().out
    assert code == 0, printed
    report = json.loads(out.read_text())
    n11 = next(c for c in report["claims"] if c["id"] == "N11")
    assert n11["status"] == "passed" and n11["builds"] >= 2, n11
    assert report["summary"]["methods"] == {"vicreg": ["N8", "N11"]}     # N8 reads N11's runs again
    assert "  vicreg: N8, N11" in printed
