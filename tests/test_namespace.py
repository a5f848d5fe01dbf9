"""The ncspec namespace: a lab repository with its own ``reference`` and ``conformance`` packages runs the
suite from its root, and the installed package adds no top-level ``reference``/``conformance``/``spec_tests``."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

CLAIM = "H4"   # cheap: exact gradient identities and a short expected-gradient flow


def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "NCSPEC_ADAPTER")}
    return {**env, "NCSPEC_THREADS": "1", **extra}


def _ncspec() -> list[str]:
    """The installed console script's entry point, in this interpreter."""
    return [sys.executable, "-c", "import sys; from ncspec.conformance.cli import main; sys.exit(main())"]


@pytest.fixture
def lab(tmp_path) -> Path:
    """A lab project: its own ``reference`` and ``conformance`` packages, the adapter inside the latter."""
    (tmp_path / "reference").mkdir()
    (tmp_path / "reference" / "__init__.py").write_text('"""The lab\'s own reference code."""\nLAB = True\n')
    (tmp_path / "conformance").mkdir()
    (tmp_path / "conformance" / "__init__.py").write_text('"""The lab\'s own conformance code."""\nLAB = True\n')
    (tmp_path / "conformance" / "myadapter.py").write_text(textwrap.dedent('''
        import conformance
        import reference
        from ncspec.conformance.adapters.reference import ReferenceAdapter

        assert conformance.LAB and reference.LAB     # the lab's packages, not ncspec's


        class MyAdapter(ReferenceAdapter):
            name = "mylab"


        adapter = MyAdapter()
    '''))
    return tmp_path


def test_ncspec_check_from_a_lab_root_with_its_own_packages(lab):
    out = subprocess.run([*_ncspec(), "check", "-k", CLAIM, "--adapter", "conformance.myadapter:adapter",
                          "--json", "r.json"], cwd=lab, env=_env(), capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    report = json.loads((lab / "r.json").read_text())
    status = {c["id"]: c["status"] for c in report["claims"]}
    assert status[CLAIM] == "passed", status
    assert {s for cid, s in status.items() if cid != CLAIM} == {"not_run"}


def test_pytest_pyargs_from_a_lab_root_with_its_own_packages(lab):
    out = subprocess.run([sys.executable, "-m", "pytest", "--pyargs", "ncspec.spec_tests", "--adapter",
                          "conformance.myadapter:adapter", "-k", CLAIM, "-p", "no:cacheprovider", "-q"],
                         cwd=lab, env=_env(), capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert " passed" in out.stdout and "deselected" in out.stdout, out.stdout[-2000:]


def test_only_the_ncspec_namespace_is_importable(tmp_path):
    """Outside the checkout the three folders exist only as ncspec.reference / .conformance / .spec_tests."""
    code = textwrap.dedent('''
        import importlib
        for name in ("reference", "conformance", "spec_tests"):
            try:
                importlib.import_module(name)
            except ModuleNotFoundError:
                pass
            else:
                raise SystemExit(f"top-level {name!r} is importable: the wheel must install only ncspec.*")
        import ncspec.conformance.claims, ncspec.reference.theory.eigenspace, ncspec.spec_tests  # noqa: E401
        print("ok")
    ''')
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=_env(), capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stdout + out.stderr


def test_a_missing_lab_module_still_fails_with_the_fix(tmp_path):
    """The current-directory fallback does not hide a typo."""
    out = subprocess.run([*_ncspec(), "check", "-k", CLAIM, "--adapter", "conformance.nosuch:adapter"],
                         cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=300)
    assert out.returncode == 2, out.stdout + out.stderr
    assert "cannot load adapter 'conformance.nosuch:adapter'" in out.stderr and "package.module:attr" in out.stderr
