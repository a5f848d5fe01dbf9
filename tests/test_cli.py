"""The ncspec command line, run as a user would (a subprocess, from another directory)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


FAST = "w_p_times_the_isoloss_gradient"   # H4's exact gradient identity: the cheapest claim test

def ncspec(*args, cwd) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "ncspec.conformance.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def test_claims_json_lists_h1_to_h8_with_paper_citations(tmp_path):
    out = ncspec("claims", "--json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    claims = {c["id"]: c for c in json.loads(out.stdout)}
    for i in range(1, 9):
        c = claims[f"H{i}"]
        assert c["tests"] and c["statement"] and c["tolerance"]
        assert "Halvagal, Laborieux & Zenke" in c["source"], c["source"]
        assert all(x["url"].startswith("https://") and x["title"] for x in c["citations"]), c["citations"]


def test_check_writes_report_and_passes_on_reference(tmp_path):
    out = ncspec("check", "-k", f"{FAST} or linear_ntk", "--json", "r.json", cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["schema"] == "ncspec.report/2" and report["adapter"] == "reference"
    status = {c["id"]: c["status"] for c in report["claims"]}
    # H7's NTK identity is checked on the harness's linear model without building a learner: not applicable
    assert status["H4"] == "passed" and status["H7"] == "not_applicable"
    assert status["H1"] == "not_run"          # deselected by -k
    h4 = next(c for c in report["claims"] if c["id"] == "H4")
    assert all(r["error"] <= r["tolerance"] for r in h4["measurements"])
    assert "H4" in out.stdout and "passed" in out.stdout


def test_check_exits_nonzero_on_a_mutant(tmp_path):
    out = ncspec("check", "--adapter", "mutant:isoloss_rearrangement_dropped", "-k", FAST,
                 "--json", "r.json", cwd=tmp_path)
    assert out.returncode == 1, out.stdout + out.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert {c["id"]: c["status"] for c in report["claims"]}["H4"] == "failed"


def test_check_unknown_adapter_is_a_clear_error(tmp_path):
    out = ncspec("check", "--adapter", "no_such_adapter", cwd=tmp_path)
    assert out.returncode == 2
    assert "unknown adapter 'no_such_adapter'" in out.stderr and "module:attr" in out.stderr


@pytest.mark.parametrize("spec,match", [("nosuchmodule_xyz:adapter", "cannot load adapter"),
                                        ("mutant:nope", "unknown mutant")])
def test_load_adapter_errors(spec, match):
    from ncspec.conformance.contract.registry import load_adapter
    with pytest.raises(LookupError, match=match):
        load_adapter(spec)


def test_adapter_chosen_by_environment_variable_and_the_option_wins(tmp_path):
    """array-api-tests style: NCSPEC_ADAPTER picks the implementation; --adapter overrides it."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NCSPEC_ADAPTER": "mutant:isoloss_rearrangement_dropped"}
    run = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(ROOT),
           str(ROOT / "spec_tests" / "test_eigenspace.py"), "-k", FAST]
    broken = subprocess.run(run, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert broken.returncode == 1, broken.stdout[-2000:]
    fixed = subprocess.run(run + ["--adapter", "reference"], cwd=ROOT, env=env, capture_output=True, text=True,
                           timeout=600)
    assert fixed.returncode == 0, fixed.stdout[-2000:]
    out = subprocess.run([sys.executable, "-m", "ncspec.conformance.cli", "check", "-k", FAST],
                         cwd=tmp_path, env={**env, "NCSPEC_ADAPTER": "no_such_adapter"}, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 2 and "unknown adapter 'no_such_adapter'" in out.stderr
