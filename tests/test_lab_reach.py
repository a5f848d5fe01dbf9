"""The reach of the linear tier on a lab's own BYOL, VICReg and Barlow Twins (tests/lab/: the lab's code and an adapter
written from docs/conformance.md alone): ``ncspec check`` builds each family in these claims, and every one passes.

With the deep tier (``--tier deep``: BYOL N1, N6; VICReg N8, N11; Barlow Twins N12 — measured on the CIFAR-10
fragment; VICReg's in tests/test_deep_redundancy.py, BYOL's and Barlow Twins' below) each family is exercised by at
least 8 distinct claims: BYOL 6 + 2, VICReg 6 + 2, Barlow Twins 9 + 1. The deep runs skip without the fragment."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

LAB = Path(__file__).resolve().parent / "lab" / "ncspec_adapter.py"

LINEAR = {
    "byol": ["C1", "C2", "C7", "C9", "C10", "C11"],
    "vicreg": ["C6", "C7", "C12", "C13", "C14", "D1"],
    "barlow_twins": ["C4", "C5", "C7", "C13", "D1", "J5", "S1", "S2", "S3"],
}
DEEP = {"byol": ["N1", "N6"], "barlow_twins": ["N12"]}


def _check(family: str, claims: list[str], tmp_path, capsys, *more: str) -> None:
    """``ncspec check`` on the lab's ``family`` restricted to ``claims``: each builds it and passes."""
    from ncspec.conformance.cli import main
    out = tmp_path / "r.json"
    code = main(["check", "--adapter", f"{LAB}:{family}", "-k", " or ".join(claims), "--jobs", "1",
                 "--json", str(out), "--no-progress", *more])
    printed = capsys.readouterr().out
    assert code == 0, printed
    report = json.loads(out.read_text())
    built = report["summary"]["methods"].get(family, [])
    missing = sorted(set(claims) - set(built), key=claims.index)
    assert not missing, f"the lab's {family} was not built by {missing} (built by {built}):\n{printed}"
    failed = [c["id"] for c in report["claims"] if c["id"] in claims and c["status"] != "passed"]
    assert not failed, f"the lab's {family}: {failed} did not pass:\n{printed}"


@pytest.mark.parametrize("family", sorted(LINEAR))
def test_the_linear_tier_builds_the_labs_family_in_its_claims_and_all_pass(family, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("NCSPEC_THREADS", "1")
    _check(family, LINEAR[family], tmp_path, capsys)


@pytest.mark.parametrize("family", sorted(DEEP))
def test_the_deep_tier_builds_the_labs_family_in_its_claims_and_all_pass(family, tmp_path, capsys, monkeypatch):
    from fragment import require_fragment
    frag = require_fragment()
    monkeypatch.setenv("NCSPEC_THREADS", "1")
    _check(family, DEEP[family], tmp_path, capsys, "--tier", "deep", "--data-root", str(frag))
