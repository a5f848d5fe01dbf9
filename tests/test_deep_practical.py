"""The deep claims on what labs write (N5, N6, N8, N10), on the CIFAR-10 fragment at the cpu scale.

Each fails *by its assertion* on the mutant it is about (a crash would not count); ``ncspec mutants --tier deep``
prints the deep kill matrix; an official-style SimSiam (MLP predictor with BN, symmetric loss, the no-stop-grad
ablation; ``tests/official_simsiam.py``) is exercised by at least 8 claims across the tiers, and no claim that never
built it reports "passed". Skips without the fragment (``$NCSPEC_SHARED/data`` or ``../shared/data``).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fragment import require_fragment

ROOT = Path(__file__).resolve().parents[1]
OFFICIAL = f"{ROOT / 'tests' / 'official_simsiam.py'}:adapter"


@pytest.fixture
def deep(monkeypatch):
    frag = require_fragment()
    monkeypatch.setenv("NCSPEC_DATA", str(frag))
    monkeypatch.setenv("NCSPEC_SCALE", "cpu")
    from ncspec.conformance.contract.registry import load_adapter
    from ncspec.conformance.run.recorder import Recorder
    from ncspec.spec_tests import test_deep

    def run(test: str, mutant: str, **params):
        getattr(test_deep, test)(impl=load_adapter(f"mutant:{mutant}"), record=Recorder(), **params)
    return run


def test_n5_catches_a_simsiam_whose_target_is_not_detached(deep):
    """The intact run of a SimSiam without stop-grad concentrates its batch spectrum: N5's assertion."""
    with pytest.raises(AssertionError, match="collapsed to a few directions"):
        deep("test_intact_simsiam_keeps_the_batch_spectrum_spread", "simsiam_mlp_target_not_detached",
             method="simsiam_mlp")


def test_n5_n8_n10_catch_a_stop_grad_switch_that_is_ignored(deep):
    """The 'no SG' run trains the intact method: its spectrum stays spread (N5), its ‖s‖ equals the intact run's
    (N8) and so does its loss (N10) — three assertions, on the same two cached runs."""
    with pytest.raises(AssertionError, match="kept .* of its batch RankMe"):
        deep("test_without_stop_gradient_the_batch_spectrum_concentrates", "stop_grad_option_ignored",
             method="simsiam")
    with pytest.raises(AssertionError, match="center vector does not separate"):
        deep("test_the_center_vector_grows_in_the_collapsing_ablations", "stop_grad_option_ignored",
             method="simsiam", ablation="no SG")
    with pytest.raises(AssertionError, match="did not descend below the intact method's loss"):
        deep("test_without_stop_gradient_the_loss_falls_below_the_intact_method", "stop_grad_option_ignored",
             method="simsiam")


@pytest.mark.parametrize("mutant,match", [
    ("ema_momentum_swapped", "does not follow ξ ← m_k ξ"),
    ("ema_target_frozen", "does not follow ξ ← m_k ξ"),
    ("ema_bn_buffers_frozen", "BatchNorm running statistics are frozen"),
])
def test_n6_catches_the_ema_mutants(deep, mutant, match):
    with pytest.raises(AssertionError, match=match):
        deep("test_ema_target_lags_by_the_momentum_in_a_real_network", mutant)


def test_n6_holds_an_adapter_to_its_declared_buffer_policy(monkeypatch):
    """The reference's target keeps its own BatchNorm statistics; declaring them 'averaged' fails N6 by name."""
    monkeypatch.setenv("NCSPEC_DATA", str(require_fragment()))
    monkeypatch.setenv("NCSPEC_SCALE", "cpu")
    from ncspec.conformance.adapters.reference import ReferenceAdapter
    from ncspec.conformance.contract.registry import checked
    from ncspec.conformance.run.recorder import Recorder
    from ncspec.spec_tests.test_deep import test_ema_target_lags_by_the_momentum_in_a_real_network as n6

    class Averaged(ReferenceAdapter):
        name = "declares_averaged_buffers"
        conventions = {"ema_buffers": "averaged"}
    with pytest.raises(AssertionError, match="statistics are 'own', but the adapter declares ema_buffers = 'averaged'"):
        n6(impl=checked(Averaged(), "declares_averaged_buffers"), record=Recorder())


def test_ncspec_mutants_prints_the_deep_kill_matrix(tmp_path):
    frag = require_fragment()
    out = tmp_path / "km.json"
    p = subprocess.run([sys.executable, "-m", "ncspec.conformance.cli", "mutants", "--tier", "deep", "--data-root",
                        str(frag), "--mutant", "ema_bn_buffers_frozen", "--json", str(out)],
                       capture_output=True, text=True, cwd=tmp_path, env={**os.environ, "NCSPEC_THREADS": "1"})
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    doc = json.loads(out.read_text())
    assert doc["mutants"]["ema_bn_buffers_frozen"]["claims"] == {"N6": "caught"}
    assert "N6" in p.stdout
    p = subprocess.run([sys.executable, "-m", "ncspec.conformance.cli", "mutants", "--tier", "deep", "--data-root",
                        str(tmp_path / "nowhere")], capture_output=True, text=True, cwd=tmp_path)
    assert p.returncode == 2 and "nowhere does not exist" in p.stderr


def _check(tmp_path, *args) -> dict:
    out = tmp_path / f"r{len(list(tmp_path.iterdir()))}.json"
    p = subprocess.run([sys.executable, "-m", "ncspec.conformance.cli", "check", "--adapter", OFFICIAL, "--json",
                        str(out), "--no-progress", *args], capture_output=True, text=True, cwd=tmp_path,
                       env={**os.environ, "NCSPEC_THREADS": "1"})
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-2000:]
    return json.loads(out.read_text())


def test_an_official_style_simsiam_is_exercised_by_eight_claims(tmp_path):
    frag = require_fragment()
    exercised, passed_without_building = {}, []
    for report in (_check(tmp_path), _check(tmp_path, "--tier", "deep", "--data-root", str(frag))):
        for c in report["claims"]:
            if c.get("builds"):
                exercised[c["id"]] = (c["status"], c["builds"], c.get("steps"))
            elif c["status"] == "passed":
                passed_without_building.append(c["id"])
    assert not passed_without_building, f"passed without building the learner: {passed_without_building}"
    assert all(status == "passed" for status, _, _ in exercised.values()), exercised
    assert len(exercised) >= 8, f"only {len(exercised)} claims built the official-style SimSiam: {exercised}"
    assert {"N1", "N5", "N8", "N10"} <= set(exercised), exercised
