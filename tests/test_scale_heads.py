"""Meta-tests: the loss scale measured through the implementation's own heads, at the precision of the dtypes
involved, with conventions scoped per method, and misfits that name the known bug (issues 24 and 25).

The adapters are lab-style learners (``tests/lab_heads.py``) and the reference with one change
(``tests/scale_probe.py``), as ``module:attr`` specs.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from ncspec.conformance.contract import conventions
from ncspec.conformance.contract import loss_scale as scale
from ncspec.conformance.contract.registry import load_adapter
from ncspec.reference.encoders import MLPEncoder

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from test_conventions import _first_call, run_claim  # noqa: E402


def _fit(spec: str, method: str, **options) -> scale.ScaleFit:
    """The loss-scale fit of ``spec``'s ``method`` on its first call (an MLP encoder, as the J claims use)."""
    impl = scale.scale_aware(load_adapter(spec))
    enc = MLPEncoder(6, (8,), 4, replicas=1, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    learner = impl.build(method, enc, 4, **options)
    g = torch.Generator().manual_seed(1)
    learner.loss(torch.randn(16, 6, generator=g, dtype=torch.float64),
                 torch.randn(16, 6, generator=g, dtype=torch.float64))
    return scale.scale_of(learner)


def test_a_lab_byol_is_measured_through_its_own_heads():
    """projector, predictor (Linear–BN–ReLU–Linear) and target projector exposed: the factor of Σ(2 − 2cos) over
    both orders against ½[−cos(p1, t2) − cos(p2, t1)] is measured (4), not taken as 1."""
    fit = _fit("lab_heads:byol", "byol")
    assert fit.measured and abs(fit.c - 4.0) <= 1e-9 and fit.residual <= scale.RESIDUAL_TOL, fit


def test_a_float32_target_is_judged_at_its_precision():
    """A float32 EMA target (encoder and projector) under a float64 loss: the bound is 100 ulp of float32
    (1.2e-5), derived from the dtypes involved, and the fit passes (issue 24: 2.3e-8–7.6e-8 > 1e-8 failed)."""
    fit = _fit("lab_heads:byol_float32_target", "byol")
    assert fit.tolerance == 100 * torch.finfo(torch.float32).eps and fit.residual <= fit.tolerance, fit
    assert abs(fit.c - 4.0) <= fit.tolerance and "×4" in fit.describe(), fit.describe()


@pytest.mark.parametrize("spec, cause", [
    ("lab_heads:byol_unnormalised", "the l2-normalisation is missing"),
    ("lab_heads:byol_predictor_both", "the predictor is applied on both branches"),
    ("lab_heads:byol_bn_eval", "BatchNorm runs in eval mode"),
])
def test_a_byol_bug_is_named(spec, cause):
    with pytest.raises(scale.ScaleMismatch, match=cause):
        _fit(spec, "byol")


def test_a_lab_vicreg_with_an_expander_passes_c6():
    """The definition is evaluated on the expander's output (Linear–BN–ReLU ×2 + Linear, Bardes et al. 2022)."""
    (outcome, message, rows), = run_claim("C6", "lab_heads:vicreg")
    assert outcome == "passed", message
    assert _fit("lab_heads:vicreg", "vicreg").c == pytest.approx(1.0, abs=1e-12)


def test_a_vicreg_std_over_the_features_fails_c6_naming_it():
    (outcome, message, _), = run_claim("C6", "lab_heads:vicreg_std_over_features")
    assert outcome == "failed" and "std taken over the feature dimension" in message, message


@pytest.mark.parametrize("spec, method, cause", [
    ("scale_probe:isoloss_target_attached", "isoloss", "the target branch is not detached"),
    ("scale_probe:simsiam_predictor_both", "simsiam", "the predictor is applied on both branches"),
])
def test_a_closed_form_bug_is_named_not_blamed_on_w_p(spec, method, cause):
    """An IsoLoss whose target is left attached is reported as such, not as "W_P is not the definition's"."""
    with pytest.raises(scale.ScaleMismatch, match=cause) as info:
        _first_call(spec, method)
    assert "W_P is not the definition's" not in str(info.value)


def test_a_convention_is_scoped_to_its_method():
    """A DirectPred running estimate declared under "directpred" applies to DirectPred only: SimSiam and IsoLoss
    of the same adapter are measured (×2), and DirectPred's factor through its own W_P (×2), not "not measured"."""
    impl = load_adapter("scale_probe:own_running_estimate")
    assert conventions.for_method(impl, "directpred") == {"predictor_estimate": {"rho": 0.998, "views": "online"}}
    assert conventions.for_method(impl, "simsiam") == {}
    assert conventions.get(impl, "predictor_estimate", "isoloss") is None
    for method in ("directpred", "simsiam", "isoloss"):
        fit = _first_call("scale_probe:own_running_estimate", method)
        assert fit.measured and abs(fit.c - 2.0) <= 1e-9, (method, fit)


def test_a_method_scoped_convention_is_validated():
    from ncspec.conformance.contract.validate import AdapterError, checked
    from scale_probe import Unchanged
    bad = Unchanged()
    bad.conventions = {"directpred": {"predictor_estimate": {"rho": 2}}}
    with pytest.raises(AdapterError, match="rho"):
        checked(bad)
    bad.conventions = {"directpred": "paper_eq6"}
    with pytest.raises(AdapterError, match="a method's name keys a dict"):
        checked(bad)


@pytest.mark.parametrize("claim", ["C3", "H1", "H2", "H3", "H4", "H5", "H6", "H7", "H8"])
def test_a_directpred_with_its_own_estimate_passes(claim):
    """Issue 25's acceptance: W_P from its own running estimate (ρ 0.998, online view), the loss without its ½,
    the estimate declared for DirectPred: C3 and H1–H8 pass with the factor measured."""
    results = run_claim(claim, "scale_probe:own_running_estimate")
    assert results and all(o == "passed" for o, _, _ in results), results
    scale_rows = [r for _, _, rows in results for r in rows if "loss scale" in r["quantity"]]
    assert all("not measured" not in r["quantity"] for r in scale_rows), scale_rows


def test_no_gradient_at_all_is_a_failure_not_a_usage_error(tmp_path):
    """Both branches detached: ``ncspec check`` exits 1 (a failure of the implementation), naming the cause."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")]),
           "NCSPEC_THREADS": os.environ.get("NCSPEC_THREADS", "1")}
    out = subprocess.run([sys.executable, "-m", "ncspec.conformance.cli", "check", "--adapter",
                          "lab_heads:both_detached", "-k", "C7", "--json", "r.json"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 1, (out.stdout + out.stderr)[-3000:]
    claim, = [c for c in json.loads((tmp_path / "r.json").read_text())["claims"] if c["id"] == "C7"]
    assert claim["status"] == "failed", claim
    assert all("stop-gradient sits on both branches" in t["reason"] for t in claim["tests"]), claim["tests"]


def test_byol_pytorch_factor_is_measured():
    """byol-pytorch's 4 (2 − 2cos, both orders summed) measured through its own predictor, as it states."""
    pytest.importorskip("byol_pytorch", reason="the byol extra is not installed (pip install 'ncspec[byol]')")
    for method in ("byol", "simsiam_mlp"):
        fit = _fit("byol_pytorch", method, pred_hidden=8)
        assert fit.measured and abs(fit.c - load_adapter("byol_pytorch").loss_factor[method]) <= 1e-9, fit


def test_the_claims_own_assertion_speaks_first():
    """A misfit with no known cause (an extra term on one view) does not pre-empt C7: its own message (one view
    treated differently) is the failure, the misfit added after it (issue 25, "messages that point at the wrong
    cause")."""
    (outcome, message, _), = run_claim("C7", "lab_heads:vicreg_asymmetric")
    assert outcome == "failed" and message.startswith("AssertionError: vicreg: L(v1,v2) ≠ L(v2,v1)"), message


def test_a_learner_with_batchnorm_heads_still_backpropagates_after_the_fit():
    """The definition runs on copies of the heads' BatchNorm buffers: the implementation's own graph, which saved
    the originals, still backpropagates (an in-place restore bumped their autograd version)."""
    impl = scale.scale_aware(load_adapter("lab_heads:byol"))
    enc = MLPEncoder(6, (8,), 4, replicas=1, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    learner = impl.build("byol", enc, 4)
    g = torch.Generator().manual_seed(1)
    loss = learner.loss(torch.randn(16, 6, generator=g, dtype=torch.float64),
                        torch.randn(16, 6, generator=g, dtype=torch.float64))
    loss.backward()
    assert all(p.grad is not None for p in learner.projector.parameters())


@pytest.mark.parametrize("spec, cause", [
    ("lab_heads:byol_unnormalised", "l2-normalisation is missing"),
    ("lab_heads:byol_bn_eval", "BatchNorm runs in eval mode"),
])
def test_the_bugs_name_reaches_the_report(tmp_path, spec, cause):
    """``ncspec check`` exits 1 and the failing claim's reason (its terminal row) names the bug."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")]),
           "NCSPEC_THREADS": os.environ.get("NCSPEC_THREADS", "1")}
    out = subprocess.run([sys.executable, "-m", "ncspec.conformance.cli", "check", "--adapter", spec, "-k", "C7",
                          "--json", "r.json"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 1, (out.stdout + out.stderr)[-3000:]
    claim, = [c for c in json.loads((tmp_path / "r.json").read_text())["claims"] if c["id"] == "C7"]
    assert claim["status"] == "failed" and any(cause in t["reason"] for t in claim["tests"]), claim["tests"]
