"""Honest coverage in the reports: builds and steps per claim, not_applicable, errored adapters, adapter lookup."""
from __future__ import annotations

import json

from ncspec.conformance.cli import main
from ncspec.conformance.report import build_report, summary_line

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
