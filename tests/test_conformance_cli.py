"""Expected failures, readable reports and the kill matrix, through ``ncspec.conformance.cli.main``.

Runs in-process (a subprocess would pay torch's import for every case) on H4's gradient
identity, the fastest claim test, which the IsoLoss-rearrangement mutant really fails.
"""
from __future__ import annotations

import json

import pytest
from ncspec.conformance.cli import main
from ncspec.conformance.run.xfail import check_claim_ids, parse_expected_failures

MUTANT = "mutant:isoloss_rearrangement_dropped"
FAST = "gradient_is_w_p_times_the_isoloss_gradient"


def write(tmp_path, text, name="xfail.txt"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_parse_expected_failures_skips_comments_and_blank_lines(tmp_path):
    path = write(tmp_path, "# header\n\nH4::isoloss_gradient  keeps W_P  # why: issue 12\n"
                           "  H6\tcosine adds eps to the norm\nJ5 uses issue#7 numbering\n")
    entries = parse_expected_failures(path)
    assert [(e.claim, e.test_filter, e.reason, e.line) for e in entries] == [
        ("H4", "isoloss_gradient", "keeps W_P", 3), ("H6", "", "cosine adds eps to the norm", 4),
        ("J5", "", "uses issue#7 numbering", 5)]
    assert entries[0].text == "H4::isoloss_gradient  keeps W_P"
    assert entries[0].to_dict() == dict(claim="H4", test_filter="isoloss_gradient", reason="keeps W_P", line=3)


@pytest.mark.parametrize("text,match", [("# c\nH4\n", r"line 2: 'H4' has no reason"),
                                        ("H4::  reason\n", r"line 1: 'H4::' is not CLAIM_ID"),
                                        ("\n\n4H oops\n", r"line 3: '4H' is not CLAIM_ID")])
def test_parse_expected_failures_errors_name_the_line(tmp_path, text, match):
    with pytest.raises(pytest.UsageError, match=match):
        parse_expected_failures(write(tmp_path, text))


def test_unknown_claim_id_names_line_and_known_ids(tmp_path):
    entries = parse_expected_failures(write(tmp_path, "H4 fine\n# comment\nZ9 no such claim\n"))
    with pytest.raises(pytest.UsageError, match=r"line 3: unknown claim ID 'Z9'; known IDs: H1, H2"):
        check_claim_ids(entries, {"H1": None, "H2": None, "H4": None})


def test_check_rejects_unknown_claim_id_and_unmatched_filter(tmp_path, capsys):
    assert main(["check", "-k", FAST, "--xfail", write(tmp_path, "\nH99 reason\n")]) == 2
    err = capsys.readouterr().err
    assert "line 2: unknown claim ID 'H99'" in err and "H1, H2" in err
    assert main(["check", "-k", FAST, "--xfail", write(tmp_path, "H4::no_such_test reason\n")]) == 2
    assert "line 1: 'no_such_test' matches no test of claim H4" in capsys.readouterr().err


def test_expected_failure_is_xfailed_and_exits_zero(tmp_path, capsys):
    xfail = write(tmp_path, f"# known deviation\nH4::{FAST}  our IsoLoss keeps W_P\n")
    md = tmp_path / "out" / "report.md"
    code = main(["check", "--adapter", MUTANT, "-k", FAST, "--xfail", xfail,
                 "--json", str(tmp_path / "r.json"), "--report", str(md)])
    assert code == 0, capsys.readouterr().out
    report = json.loads((tmp_path / "r.json").read_text())
    h4 = next(c for c in report["claims"] if c["id"] == "H4")
    assert h4["status"] == "xfailed" and report["summary"]["xfailed"] == 1 and report["summary"]["failed"] == 0
    assert h4["tests"][0]["outcome"] == "xfailed" and "our IsoLoss keeps W_P" in h4["tests"][0]["reason"]
    assert report["expected_failures"] == [dict(claim="H4", test_filter=FAST, reason="our IsoLoss keeps W_P", line=2)]
    assert "xfailed" in capsys.readouterr().out
    # Markdown report: table row, a section for the xfailed claim, the margin plot beside it.
    text = md.read_text()
    assert "| H4 | xfailed |" in text and "expected failure: our IsoLoss keeps W_P" in text
    assert "## H4 —" in text and "![worst error / tolerance per claim](report_margins.png)" in text
    assert (tmp_path / "out" / "report_margins.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_strict_xpass_fails_the_run(tmp_path, capsys):
    xfail = write(tmp_path, f"H4::{FAST}  stale entry  # fixed upstream\n")
    html = tmp_path / "report.html"
    code = main(["check", "-k", FAST, "--xfail", xfail, "--json", str(tmp_path / "r.json"), "--report", str(html)])
    assert code == 1
    h4 = next(c for c in json.loads((tmp_path / "r.json").read_text())["claims"] if c["id"] == "H4")
    assert h4["status"] == "failed"
    assert h4["tests"][0]["reason"].startswith(
        f"expected failure passed (strict): remove 'H4::{FAST}  stale entry' from the expected-failures file")
    assert "expected failure passed" in capsys.readouterr().out
    # HTML report: self-contained, status coloured, the PNG inline, written although the run failed.
    page = html.read_text()
    assert "<td>H4</td><td class='failed'>failed</td>" in page and "data:image/png;base64,iVBORw0KGgo" in page
    assert "<style>" in page and not list(tmp_path.glob("*.png"))


def test_report_suffix_is_checked_before_running(tmp_path, capsys):
    assert main(["check", "-k", FAST, "--report", str(tmp_path / "r.pdf")]) == 2
    assert "must end with .md" in capsys.readouterr().err


def test_mutants_kill_matrix_json(tmp_path, capsys):
    path = tmp_path / "km.json"
    assert main(["mutants", "--mutant", "isoloss_rearrangement_dropped", "--json", str(path)]) == 0
    doc = json.loads(path.read_text())
    assert doc["schema"] == "ncspec.killmatrix/1"
    row = doc["mutants"]["isoloss_rearrangement_dropped"]
    assert row["claims"] == {"H4": "caught", "H5": "caught", "R4": "caught"} and "W_P" in row["bug"]
    out = capsys.readouterr().out
    assert "isoloss_rearrangement_dropped" in out and "✗" in out and "yes" in out


def test_mutants_fails_when_no_claim_run_catches(capsys):
    # H7 (the linear NTK) does not use the adapter's loss: with --all it runs and misses.
    assert main(["mutants", "--all", "--mutant", "isoloss_rearrangement_dropped", "--claim", "H7"]) == 1
    captured = capsys.readouterr()
    assert "NO" in captured.out and "caught by none of the claims run (H7)" in captured.err


def test_mutants_unknown_name_is_a_usage_error(capsys):
    assert main(["mutants", "--mutant", "no_such_mutant"]) == 2
    assert "unknown mutant(s) 'no_such_mutant'; known:" in capsys.readouterr().err


def test_kill_matrix_names_a_caught_by_claim_that_missed():
    from ncspec.conformance.mutants.killmatrix import failures
    matrix = dict(mutants={"m": dict(bug="b", caught_by=["H4", "H5"], claims={"H4": "caught", "H5": "survived"},
                                     caught=True, missed=["H5"])})
    assert failures(matrix) == ["claim H5 is listed in caught_by of mutant 'm' but it survived"]


def _claims(path):
    report = json.loads(path.read_text())
    return {c["id"]: (c["status"], sorted((t["test"], t["outcome"], t["builds"], t["steps"]) for t in c["tests"]),
                      sorted(m["quantity"] for m in c["measurements"]), c["builds"], c["steps"])
            for c in report["claims"] if c["status"] != "not_run"}, report["summary"]


def test_worker_processes_give_the_same_report(tmp_path, capsys):
    """``--jobs 2`` (pytest-xdist, one spec module per worker) reports the same claims, tests and rows as
    one process, failures included, with claim IDs in the progress lines."""
    k = f"{FAST} or directpred_predictor_spectrum or invariance_identity"
    one, two = tmp_path / "one.json", tmp_path / "two.json"
    assert main(["check", "--adapter", MUTANT, "-k", k, "--jobs", "1", "--json", str(one)]) == 1
    assert main(["check", "--adapter", MUTANT, "-k", k, "--jobs", "2", "--json", str(two)]) == 1
    assert _claims(two) == _claims(one)
    claims, summary = _claims(two)
    assert summary["failed"] == 1 and summary["passed"] >= 1 and len(claims) >= 3
    # the builds counted in the workers reach the controller: C8 and H4 build learners, J1's identity on unit
    # vectors builds none (not applicable, not passed)
    assert claims["C8"][0] == "passed" and claims["C8"][3] > 0 and claims["H4"][3] > 0, claims
    assert claims["J1"][0] == "not_applicable" and claims["J1"][3] == 0, claims
    assert summary["exercised"] == 2 and summary["not_applicable"] == 1
    assert summary["builds"] == claims["C8"][3] + claims["H4"][3] > 0
    err = capsys.readouterr().err
    assert "failed  H4 test_" in err and "passed  J1 test_" in err


def test_jobs_must_be_a_positive_count(capsys):
    with pytest.raises(SystemExit) as e:
        main(["check", "--jobs", "0"])
    assert e.value.code == 2
    assert "--jobs takes 'auto' or a positive number of worker processes, got '0'" in capsys.readouterr().err


def test_modules_sharing_cached_runs_are_one_work_unit_under_xdist():
    """The spec modules that cache runs shared by several claims declare an ``xdist_group`` and are listed in
    SHARED_RUN_MODULES; the scheduler keeps each in one worker even where pytest-xdist's own group suffix is lost
    (pytest 9.2 with pytest-xdist 3.8: D1's 2-process run and J2's toy runs were computed twice)."""
    import ast
    from pathlib import Path

    from ncspec.conformance.run.scheduling import SHARED_RUN_MODULES, shared_scope
    spec = Path(__file__).resolve().parents[1] / "spec_tests"
    marked = {p.name for p in spec.glob("test_*.py")
              if any(isinstance(n, ast.Assign) and any(getattr(t, "id", "") == "pytestmark" for t in n.targets)
                     and "xdist_group" in ast.unparse(n.value) for n in ast.parse(p.read_text()).body)}
    assert marked == set(SHARED_RUN_MODULES)
    one = "../../tmp/x/test_distributed.py::test_distributed_gradient_equals_global_batch_gradient_vicreg"
    assert shared_scope(one, one) == "../../tmp/x/test_distributed.py"
    other = "spec_tests/test_eigenspace.py::test_h1"
    assert shared_scope(other, other) == other and shared_scope(other + "@g", "g") == "g"


def test_check_loads_only_its_own_plugins(tmp_path, monkeypatch):
    """A lab's own pytest plugins (autoloaded entry points such as pytest-randomly or hydra's) stay out of
    ``ncspec check``, in the main process and in its workers, and the caller's environment is unchanged."""
    import os

    seen = {}
    real_main = pytest.main

    def spy(args, plugins=None):
        seen["autoload_off"] = os.environ.get("PYTEST_DISABLE_PLUGIN_AUTOLOAD")
        seen["args"] = list(args)
        return real_main(args, plugins)

    monkeypatch.delenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    monkeypatch.setattr(pytest, "main", spy)
    out = tmp_path / "r.json"
    assert main(["check", "-k", "invariance_identity", "--jobs", "2", "--json", str(out), "--min-exercised", "0"]) == 0
    assert seen["autoload_off"] == "1"
    args = seen["args"]
    loaded = {args[i + 1] for i, a in enumerate(args) if a == "-p"}
    assert {"ncspec.conformance.plugin", "_hypothesis_pytestplugin", "xdist.plugin"} <= loaded
    assert json.loads(out.read_text())["summary"]["not_applicable"] == 1   # J1's identity ran (it builds nothing)
    assert "PYTEST_DISABLE_PLUGIN_AUTOLOAD" not in os.environ
