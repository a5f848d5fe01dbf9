"""A crash is not a catch; every failure says how to rerun it.

* :func:`ncspec.conformance.run.failures.classify` counts only a claim's AssertionError (raised in a
  spec module, also inside Hypothesis' group of several failures) as ``failed``; anything else is
  ``errored``, and ``ncspec mutants`` fails on a ``caught_by`` pair that only errored.
* ``ncspec check`` reports the failing example, the ``@reproduce_failure`` blob, the seed of a
  thorough run and the command that reruns it; ``--seed N`` reruns a thorough draw.
"""
from __future__ import annotations

import json
import os

import pytest
from ncspec.conformance.claims import spec_dir
from ncspec.conformance.cli import main
from ncspec.conformance.mutants.killmatrix import failures
from ncspec.conformance.run.failures import classify

try:
    from builtins import ExceptionGroup
except ImportError:  # Python 3.10: the backport Hypothesis depends on
    from exceptiongroup import ExceptionGroup

MUTANT = "mutant:isoloss_rearrangement_dropped"
FAST = "simsiam_gradient_is_w_p_times_the_isoloss_gradient"


def _raised(code: str, filename: str) -> BaseException:
    try:
        exec(compile(code, filename, "exec"), {})
    except BaseException as e:  # the exception is the subject
        return e
    raise AssertionError("the code did not raise")


def test_an_assertion_in_a_spec_module_is_a_catch():
    assert classify(_raised("assert 1 == 2, 'claim'", os.path.join(spec_dir(), "test_fake.py"))) == "failed"


def test_a_crash_or_an_assertion_elsewhere_is_errored():
    assert classify(_raised("raise ValueError('W_P must be finite')", os.path.join(spec_dir(), "x.py"))) == "errored"
    assert classify(_raised("assert False, 'inside the implementation'", "/somewhere/lib.py")) == "errored"
    assert classify(_raised("import math; math.log(-1)", os.path.join(spec_dir(), "x.py"))) == "errored"


def test_record_within_in_a_spec_module_is_a_catch():
    """``record.within`` raises inside conformance/run/recorder.py for the spec module that calls it: a catch there, a
    crash when an implementation's own code calls it."""
    code = ("from ncspec.conformance.run.recorder import Recorder\n"
            "Recorder().within('q', 2.0, 1.0, error=1.0, tolerance=0.5, message='claim')\n")
    assert classify(_raised(code, os.path.join(spec_dir(), "test_fake.py"))) == "failed"
    assert classify(_raised(code, "/somewhere/lib.py")) == "errored"


def test_hypothesis_groups_count_when_one_leaf_is_a_claim_assertion():
    spec = _raised("assert 0, 'claim'", os.path.join(spec_dir(), "test_fake.py"))
    crash = _raised("raise FloatingPointError('nan')", os.path.join(spec_dir(), "test_fake.py"))
    assert classify(ExceptionGroup("two bugs", [crash, spec])) == "failed"
    assert classify(ExceptionGroup("one crash", [crash])) == "errored"


def test_mutants_fails_on_a_caught_by_pair_that_only_errored():
    matrix = dict(mutants={"m": dict(bug="b", caught_by=["C8", "H3"], claims={"C8": "caught", "H3": "errored"},
                                     errors={"H3": ["test_x: FloatingPointError: loss became non-finite"]},
                                     caught=True, missed=["H3"])})
    (problem,) = failures(matrix)
    assert problem.startswith("claim H3 is listed in caught_by of mutant 'm' but it only errored (a crash, not a "
                              "failed assertion: test_x: FloatingPointError: loss became non-finite)")


def test_seed_needs_the_thorough_profile(capsys):
    assert main(["check", "--seed", "5", "--profile", "ci", "-k", FAST]) == 2
    assert "--seed 5 reruns a draw of the randomised 'thorough' profile" in capsys.readouterr().err


def test_a_failure_carries_its_reproduction(tmp_path, capsys):
    path = tmp_path / "r.json"
    env_before = dict(os.environ)
    assert main(["check", "--adapter", MUTANT, "-k", FAST, "--seed", "7", "--json", str(path)]) == 1
    # the thorough profile stays with that run: a CI run found later checks in the same process (and their
    # subprocesses) drawing thorough seeds because $NCSPEC_PROFILE had leaked
    assert dict(os.environ) == env_before
    report = json.loads(path.read_text())
    assert report["profile"] == "thorough" and report["hypothesis_seed"] == 7
    (test,) = [t for c in report["claims"] for t in c["tests"] if t["outcome"] == "failed"]
    r = test["reproduce"]
    assert r["seed"] == 7 and r["command"] == f"ncspec check --adapter {MUTANT} -k test_{FAST} --seed 7"
    assert "setup=LinearSetup(" in r["example"]                       # the drawn example
    assert r["blob"].startswith("@reproduce_failure(")
    out = capsys.readouterr().out
    assert "seed 7" in out and "Reproduce the failures:" in out and "--seed 7" in out


@pytest.mark.parametrize("profile,seeded", [("ci", False), ("thorough", True)])
def test_a_thorough_run_always_has_a_seed(tmp_path, profile, seeded):
    path = tmp_path / "r.json"
    assert main(["check", "-k", FAST, "--profile", profile, "--json", str(path)]) == 0
    seed = json.loads(path.read_text())["hypothesis_seed"]
    assert (seed is not None) == seeded and (seed is None or isinstance(seed, int))


def test_thorough_stays_randomised_where_hypothesis_detects_ci():
    """With $CI set, Hypothesis loads a derandomised profile of its own; ``thorough`` must not inherit it
    (a CI fresh-clone run found a thorough session with no seed)."""
    import subprocess
    import sys
    code = ("from hypothesis import settings; import ncspec.conformance.plugin; "
            "print(settings.get_profile('thorough').derandomize, settings.get_profile('ci').derandomize)")
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "CI": "true"},
                         capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "True"]
