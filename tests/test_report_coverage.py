"""Honest coverage in the reports: builds and steps per claim, not_applicable, errored adapters, adapter lookup."""
from __future__ import annotations

import json

import pytest
from ncspec.conformance.cli import main
from ncspec.conformance.run.report import build_report, summary_line

FAST = "gradient_is_w_p_times_the_isoloss_gradient"   # H4: builds learners through the adapter


def _entry(claim, test, outcome="passed", builds=0, steps=0):
    return dict(claim=claim, test=f"spec_tests/x.py::{test}", outcome=outcome, duration=0.0, reason="", rows=[],
                builds=builds, steps=steps)


def test_a_claim_that_never_builds_is_not_applicable_and_not_counted_as_passed():
    report = build_report([_entry("H7", "test_ntk"), _entry("H4", "test_a", builds=3, steps=40),
                           _entry("H4", "test_b", builds=2)], "mylab", 1.0, tier="linear")
    claims = {c["id"]: c for c in report["claims"]}
    assert claims["H7"]["status"] == "not_applicable" and claims["H7"]["builds"] == 0
    assert claims["H4"]["status"] == "passed" and (claims["H4"]["builds"], claims["H4"]["steps"]) == (5, 40)
    s = report["summary"]
    assert (s["passed"], s["not_applicable"], s["exercised"], s["builds"], s["steps"]) == (1, 1, 1, 5, 40)
    assert summary_line(report).startswith("1 claim exercised mylab (5 builds, 40 steps): 1 passed, 0 failed; "
                                           "1 not applicable")
    assert claims["N1"]["not_run_reason"].startswith("needs --tier deep")


BROKEN = '''
from ncspec.conformance.adapters.reference import ReferenceAdapter

class VectorLoss(ReferenceAdapter):
    name = "vector-loss"

    def build(self, method, encoder, embed_dim, **options):
        learner = super().build(method, encoder, embed_dim, **options)
        loss = learner.loss
        learner.loss = lambda v1, v2: loss(v1, v2).reshape(1).expand(3)   # a per-sample loss
        return learner

adapter = VectorLoss()
'''


def test_a_broken_adapter_is_errored_and_exits_2_with_its_error_in_the_row(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "my_adapter.py").write_text(BROKEN)
    out = tmp_path / "r.json"
    code = main(["check", "--adapter", "./my_adapter.py:adapter", "-k", FAST, "--json", str(out)])
    printed = capsys.readouterr().out
    assert code == 2, printed
    h4 = next(c for c in json.loads(out.read_text())["claims"] if c["id"] == "H4")
    assert h4["status"] == "errored" and "AdapterError" in h4["tests"][0]["reason"]
    assert "│ H4    │ errored │" in printed and "a per-sample" in printed, printed
    assert "not shown" in printed and "│ H1 " not in printed       # -k: only the selected claims are rows


def test_a_misspelt_adapter_name_suggests_the_closest(capsys):
    assert main(["check", "--adapter", "lightyl", "-k", FAST]) == 2
    assert "did you mean 'lightly'?" in capsys.readouterr().err


def test_a_missing_xfail_file_names_the_flag_typed(tmp_path, capsys):
    assert main(["check", "-k", FAST, "--xfail", str(tmp_path / "none.txt")]) == 2
    err = capsys.readouterr().err
    assert "--xfail" in err and "--ncspec-xfail" not in err


# --- a gate that checked nothing does not pass (--min-exercised) -------------------------------------------------

def test_the_report_lists_per_declared_method_the_claims_that_built_it():
    e = _entry("H4", "test_a", builds=3)
    e["methods"] = {"isoloss": 2, "simsiam": 1}
    report = build_report([e, _entry("H7", "test_ntk")], "mylab", 1.0, tier="linear",
                          declared=["isoloss", "simsiam", "vicreg"])
    assert report["summary"]["methods"] == {"isoloss": ["H4"], "simsiam": ["H4"], "vicreg": []}
    assert next(c for c in report["claims"] if c["id"] == "H4")["methods"] == {"isoloss": 2, "simsiam": 1}


def test_a_check_that_exercised_nothing_exits_2_and_says_why(tmp_path, capsys):
    """J1's invariance identity builds no learner: the run passes nothing about the adapter, so it does not pass."""
    out = tmp_path / "r.json"
    assert main(["check", "-k", "invariance_identity", "--json", str(out), "--no-progress"]) == 2
    printed = capsys.readouterr().out
    assert "NOT PASSED — 0 claims exercised adapter reference at tier linear" in printed, printed
    assert "checks nothing" in printed and "--min-exercised 0" in printed
    assert json.loads(out.read_text())["gate"] == dict(min_exercised=1, exercised=0, passed=False,
                                                      reason=json.loads(out.read_text())["gate"]["reason"])
    assert main(["check", "-k", "invariance_identity", "--min-exercised", "0", "--no-progress"]) == 0


def test_a_floor_above_the_claims_exercised_exits_2_and_the_summary_lists_each_method(tmp_path, capsys):
    out = tmp_path / "r.json"
    assert main(["check", "-k", FAST, "--min-exercised", "2", "--json", str(out), "--no-progress"]) == 2
    printed = capsys.readouterr().out
    assert "1 claim exercised adapter reference at tier linear, fewer than the floor of 2" in printed, printed
    report = json.loads(out.read_text())
    assert report["summary"]["methods"]["isoloss"] == ["H4"] and report["summary"]["methods"]["vicreg"] == []
    assert "Claims that built each method of adapter reference:" in printed and "  isoloss: H4" in printed
    assert "built by no claim of this run:" in printed
    assert main(["check", "-k", FAST, "--min-exercised", "1", "--no-progress"]) == 0
    with pytest.raises(SystemExit) as e:                                   # argparse: a usage error
        main(["check", "-k", FAST, "--min-exercised", "-1"])
    assert e.value.code == 2 and "takes a number of claims ≥ 0" in capsys.readouterr().err


NOTHING_DEEP = '''
from ncspec.conformance.adapters.reference import ReferenceAdapter

class ContrastiveOnly(ReferenceAdapter):
    name = "contrastive-only"
    capabilities = frozenset({"simclr"})

adapter = ContrastiveOnly()
'''


def test_a_deep_tier_run_that_exercises_nothing_exits_2(tmp_path, capsys, monkeypatch):
    """No deep claim builds SimCLR: every N claim skips, the run checked nothing — not 0, and the summary says why."""
    import numpy as np
    monkeypatch.chdir(tmp_path)
    (tmp_path / "contrastive_only.py").write_text(NOTHING_DEEP)
    rng = np.random.default_rng(0)
    data = tmp_path / "tiny.npz"
    np.savez(data, x_train=rng.integers(0, 255, (8, 32, 32, 3), dtype=np.uint8), y_train=np.arange(8) % 2,
             x_test=rng.integers(0, 255, (4, 32, 32, 3), dtype=np.uint8), y_test=np.arange(4) % 2)
    code = main(["check", "--adapter", "./contrastive_only.py:adapter", "--tier", "deep", "--data-root", str(data),
                 "--scale", "dry", "--jobs", "1", "--no-progress"])
    printed = capsys.readouterr().out
    assert code == 2, printed
    assert "NOT PASSED — 0 claims exercised adapter ./contrastive_only.py:adapter at tier deep" in printed, printed
    assert "built by no claim of this run: simclr" in printed
