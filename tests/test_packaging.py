"""What installs is what the repository holds: the three top-level folders, every package in them, and
nothing else under the ``ncspec`` name (``tests``, ``benchmarks`` stay out, in a checkout too)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import ncspec

tomllib = pytest.importorskip("tomllib", reason="tomllib is in the standard library from Python 3.11")

ROOT = Path(__file__).resolve().parents[1]


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def _folder_packages() -> set[str]:
    """``ncspec.<folder>[.<sub>…]`` for every folder with an ``__init__.py`` under the three top-level ones."""
    found = {"ncspec"}
    for top in ncspec.SUBPACKAGES:
        for init in (ROOT / top).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT)
            found.add(".".join(["ncspec", *rel.parts]))
    return found


def test_the_packages_list_is_every_package_folder():
    listed = set(_pyproject()["tool"]["setuptools"]["packages"])
    folders = _folder_packages()
    assert listed == folders, (f"pyproject.toml [tool.setuptools] packages differ from the package folders: "
                               f"missing {sorted(folders - listed)}, not a folder {sorted(listed - folders)}")


def test_package_dir_maps_exactly_the_three_folders():
    mapping = _pyproject()["tool"]["setuptools"]["package-dir"]
    assert mapping == {f"ncspec.{name}": name for name in ncspec.SUBPACKAGES}, mapping


def test_a_checkout_imports_only_the_three_folders_under_ncspec():
    code = ("import importlib, ncspec.reference, ncspec.spec_tests, ncspec.conformance\n"
            "for name in ('tests', 'benchmarks', 'ncspec', 'docs'):\n"
            "    try:\n"
            "        importlib.import_module('ncspec.' + name)\n"
            "    except ModuleNotFoundError:\n"
            "        continue\n"
            "    raise SystemExit('ncspec.' + name + ' imported')\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
