"""No wall-clock limit in any gate: a Hypothesis deadline is a timed assertion (issue 25: ``ncspec mutants`` exited 1
on a loaded 2-core machine, H1 on ``correlation_not_detached`` raising DeadlineExceeded at 288 ms > 200 ms)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Imports what a gate imports first (the kill matrix, or the plugin of `ncspec check` / pytest), then every spec
# module, and prints the deadline each Hypothesis test will run under.
_PROBE = """
import importlib, pkgutil, sys
importlib.import_module(sys.argv[1])
from ncspec import spec_tests
for m in pkgutil.iter_modules(spec_tests.__path__):
    if not m.name.startswith("test_"):
        continue
    mod = importlib.import_module(f"ncspec.spec_tests.{m.name}")
    for name in dir(mod):
        s = getattr(getattr(mod, name), "_hypothesis_internal_use_settings", None)
        if s is not None:
            print(f"{m.name}::{name} {s.deadline}")
"""


@pytest.mark.parametrize("profile", ["ci", "thorough"])
@pytest.mark.parametrize("entry", ["ncspec.conformance.mutants.killmatrix", "ncspec.conformance.plugin"])
def test_no_hypothesis_test_has_a_deadline(entry, profile):
    out = subprocess.run([sys.executable, "-c", _PROBE, entry], capture_output=True, text=True, check=True,
                         env={**os.environ, "NCSPEC_PROFILE": profile}).stdout.split("\n")
    rows = [r for r in out if r]
    assert len(rows) > 20, out          # the probe saw the Hypothesis tests (H1 among them)
    timed = [r for r in rows if not r.endswith(" None")]
    assert not timed, f"Hypothesis tests with a wall-clock deadline under {profile!r} via {entry}: {timed}"


def test_the_probe_sees_a_deadline():
    """The check above can fail: imported before any gate module, a test runs under Hypothesis' default 200 ms (its
    "default" profile loaded explicitly: under CI=true Hypothesis would pick its own "ci" profile, which has none)."""
    code = _PROBE.replace("importlib.import_module(sys.argv[1])",
                          "from hypothesis import settings; settings.load_profile('default')")
    out = subprocess.run([sys.executable, "-c", code, "x"], capture_output=True, text=True, check=True).stdout
    assert "0:00:00.200000" in out, out
