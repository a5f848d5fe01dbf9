"""The stepwise claims (S1–S3) on third-party Barlow Twins: run where the setting can be built, told why not where
it cannot.

The S claims need Barlow Twins without batch standardisation (``batchnorm=False``, tag
``ablation:no_batchnorm``) and with off-diagonal weight 1. The Barlow Twins authors' first code release
(``tests.thirdparty.adapters:barlowtwins_release``, their ``BarlowTwins.forward`` with ``self.bn`` replaced by the
identity) can be built so, and passes with its loss scale 1/32 measured and divided out; lightly's
``BarlowTwinsLoss`` always standardises, and the claims skip naming the tag and the option.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _check(adapter: str, claims: str, tmp_path, *extra: str) -> dict:
    out = tmp_path / "report.json"
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-m", "ncspec.conformance.cli", "check", "--adapter", adapter, "-k", claims,
                           "--json", str(out), *extra], capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return {c["id"]: c for c in json.loads(out.read_text())["claims"] if c["status"] != "not_run"}


def test_the_barlow_twins_authors_release_passes_the_stepwise_claims(tmp_path):
    claims = _check("tests.thirdparty.adapters:barlowtwins_release", "S1 or S2 or S3", tmp_path)
    assert {k: c["status"] for k, c in claims.items()} == {"S1": "passed", "S2": "passed", "S3": "passed"}
    assert all(c["builds"] > 0 for c in claims.values())


def test_lightly_is_told_which_option_its_barlow_twins_lacks(tmp_path):
    pytest.importorskip("lightly")
    claims = _check("lightly", "S1", tmp_path, "--min-exercised", "0")    # a run of skips only: no floor
    assert claims["S1"]["status"] == "skipped"
    reason = claims["S1"]["tests"][0]["reason"]
    assert "ablation:no_batchnorm" in reason and "batchnorm=False" in reason, reason
