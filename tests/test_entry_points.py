"""Third-party registration: a package that declares an adapter in the ``ncspec.adapters``
entry-point group is found, validated and checked by ``ncspec check --adapter NAME``.

The packages (``tests/adapter_pkg``: a working demo; ``tests/adapter_pkg_broken``: broken
registrations) are installed the way a user would, with pip, into a private folder that
is put on the path only for these tests.
"""
from __future__ import annotations

import contextlib
import importlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from ncspec.conformance.contract.registry import available, load_adapter
from ncspec.conformance.contract.validate import AdapterError, CheckedAdapter, unwrap

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("adapter_pkg", "adapter_pkg_broken")
MODULES = ("ncspec_demo_adapter", "ncspec_broken_adapter")


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """A folder holding the two installed packages (their dist-info carries the entry points)."""
    if importlib.util.find_spec("setuptools") is None:
        pytest.skip("setuptools is missing: pip cannot build tests/adapter_pkg without build isolation "
                    "(the test machine may be offline); install the test extra: pip install '.[test]'")
    tmp = tmp_path_factory.mktemp("entry_points")
    sources = []
    for pkg in PACKAGES:            # build from copies: an in-tree build would leave build/ and *.egg-info here
        shutil.copytree(ROOT / "tests" / pkg, tmp / "src" / pkg)
        sources.append(str(tmp / "src" / pkg))
    out = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation",
                          "--no-cache-dir", "--disable-pip-version-check", "-q", "--target", str(tmp / "site"),
                          *sources], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, f"pip could not install the test adapter packages:\n{out.stdout}\n{out.stderr}"
    return tmp / "site"


@contextlib.contextmanager
def on_path(folder: Path):
    """``folder`` first on sys.path (entry points are read from sys.path at each lookup), then restored."""
    sys.path.insert(0, str(folder))
    importlib.invalidate_caches()
    try:
        yield
    finally:
        sys.path.remove(str(folder))
        for name in [m for m in sys.modules if m.split(".")[0] in MODULES]:
            del sys.modules[name]
        importlib.invalidate_caches()


def test_installed_adapter_is_listed_and_loaded_checked(site):
    before = "broken_attr" in available()
    with on_path(site):
        assert "demo" in available() and "broken_attr" in available()
        impl = load_adapter("demo")
        assert impl.name == "demo" and type(impl) is CheckedAdapter
        assert type(unwrap(impl)).__name__ == "DemoAdapter" and "byol" not in impl.capabilities
    assert ("broken_attr" in available()) == before      # only on the path for the test


def test_ncspec_check_runs_the_entry_point_adapter(site, tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)])}
    k = "test_isoloss or test_no_stopgrad_collapses or test_balancing_invariant_decays"
    out = subprocess.run([sys.executable, "-m", "ncspec.conformance.cli", "check", "--adapter", "demo", "-k", k,
                          "--json", str(tmp_path / "r.json")], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    claims = {c["id"]: c for c in report["claims"]}
    assert report["adapter"] == "demo"
    assert claims["H4"]["status"] == "passed"            # IsoLoss's gradient identity and dynamics
    for cid, missing in (("H2", "ablation:no_stopgrad"), ("T1", "learned_predictor")):
        assert claims[cid]["status"] == "skipped", claims[cid]
        reasons = [t["reason"] for t in claims[cid]["tests"]]
        assert all("adapter 'demo' does not declare" in r and missing in r for r in reasons), reasons


@pytest.mark.parametrize("name,error,match", [
    ("broken_attr", LookupError,
     r"cannot load adapter 'broken_attr': entry point broken_attr = 'ncspec_broken_adapter:no_such_adapter' in "
     r"group 'ncspec.adapters' \(package ncspec-broken-adapter\) failed with AttributeError: .*no_such_adapter.*"
     r"Fix the entry point in that package's \[project.entry-points.\"ncspec.adapters\"\] table"),
    ("broken_module", LookupError,
     r"cannot load adapter 'broken_module': entry point broken_module = 'ncspec_no_such_module:adapter' .* failed "
     r"with ModuleNotFoundError: No module named 'ncspec_no_such_module'\. Fix the entry point"),
    ("broken_caps", AdapterError,
     r"adapter 'broken_caps': capabilities must be a set or frozenset of str tags, got list \['simsiam'\]; write "
     r"capabilities = frozenset"),
])
def test_broken_entry_points_name_the_registration_and_the_fix(site, name, error, match):
    with on_path(site):
        assert name in available()
        with pytest.raises(error, match=match):
            load_adapter(name)


def test_ncspec_check_reports_a_broken_entry_point_as_a_usage_error(site, tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)])}
    out = subprocess.run([sys.executable, "-m", "ncspec.conformance.cli", "check", "--adapter", "broken_attr"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 2, out.stdout + out.stderr
    assert "entry point broken_attr = 'ncspec_broken_adapter:no_such_adapter'" in out.stderr
