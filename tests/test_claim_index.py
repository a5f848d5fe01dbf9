"""Finding a claim: ``ncspec claims ID`` prints it whole with node ids pytest runs as printed, the README's
claim table lists every registered claim, no unregistered claim ID is named in the product, and pytest's
header says what the claims run against."""
from __future__ import annotations

import contextlib
import io
import os
import re
import subprocess
import sys
from pathlib import Path

from ncspec.conformance.claims import MODULES, load_all
from ncspec.conformance.cli import main

ROOT = Path(__file__).resolve().parents[1]


def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("NCSPEC_ADAPTER", "NCSPEC_PROFILE")}
    return {**env, "NCSPEC_THREADS": "1"}


def _claims_output(*argv) -> str:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), contextlib.chdir(ROOT):
        assert main(["claims", *argv]) == 0
    return buf.getvalue()


def test_ncspec_claims_id_prints_the_claim_whole():
    out = _claims_output("H1")
    claim = load_all()["H1"]
    for text in (claim.statement, claim.tolerance, claim.derivation, claim.measures):
        assert text in out
    for node, (path, line) in zip(claim.node_ids(ROOT), claim.locations):
        assert f"{node}    ({path}:{line})" in out


def test_the_printed_node_id_runs_under_pytest():
    node = next(line.split()[0] for line in _claims_output("H4").splitlines() if "::" in line)
    out = subprocess.run([sys.executable, "-m", "pytest", "-n", "0", "-q", node], cwd=ROOT, env=_env(),
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0 and re.search(r"\b[1-9]\d* passed", out.stdout), out.stdout[-2000:] + out.stderr


def test_an_unknown_claim_id_names_the_registered_ones(capsys):
    assert main(["claims", "H99"]) == 2
    err = capsys.readouterr().err
    assert "unknown claim ID 'H99'" in err and "H1, H2" in err


def test_each_location_is_a_test_definition_in_the_claims_module():
    """The line is the test's ``def`` (or, for a test a factory makes, the factory's inner ``def``)."""
    for cid, claim in load_all().items():
        assert len(claim.locations) == len(claim.tests), cid
        for test, (path, line) in zip(claim.tests, claim.locations):
            assert Path(path).name == test.split("::")[0].split(".")[-1] + ".py", (cid, test, path)
            window = Path(path).read_text(encoding="utf-8").splitlines()[line - 1: line + 12]
            assert any(s.lstrip().startswith("def ") for s in window), (cid, test, path, line)


#: a claim-like token: a claim letter and 1–30, not part of a longer word (C64 is a dtype, W0 a matrix)
_CLAIM_TOKEN = re.compile(r"(?<![\w.\-/])([A-Z])([1-9]\d?)(?!\w)")


def _product_files():
    yield ROOT / "README.md"
    yield from (ROOT / "docs").glob("*.md")
    for folder in ("reference", "conformance", "spec_tests", "benchmarks"):
        yield from (ROOT / folder).rglob("*.py")


#: the contributor guide's worked example adds a claim that is, by design, not registered
WORKED_EXAMPLE = ("docs/adding-a-claim.md", "J8")


def test_no_unregistered_claim_id_is_named():
    claims = load_all()
    ghosts = {}
    for path in _product_files():
        rel = path.relative_to(ROOT).as_posix()
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for m in _CLAIM_TOKEN.finditer(line):
                if (rel, m.group(0)) == WORKED_EXAMPLE:
                    continue
                if m.group(1) in MODULES and int(m.group(2)) <= 30 and m.group(0) not in claims:
                    ghosts.setdefault(m.group(0), []).append(f"{path.relative_to(ROOT)}:{n}")
    assert not ghosts, f"claim IDs named but not registered: {ghosts}"


def test_the_ghost_check_sees_an_unregistered_id():
    assert [m.group(0) for m in _CLAIM_TOKEN.finditer("the H9 grid, C64 (dtype), W0, x.H2")] == ["H9", "C64"]


def _readme_claim_table() -> list[list[str]]:
    """The rows of the README's claim table: the lines from its header to the first line not in the table."""
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| ID | claim | source |"))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def test_the_readme_claim_table_renders_whole_with_every_claim():
    """One table (a blank line inside ends a Markdown table), one row per registered claim, in order."""
    ids = [row[0] for row in _readme_claim_table()]
    registered = load_all()
    assert sorted(ids) == sorted(registered), (f"README claim table: missing {sorted(set(registered) - set(ids))}, "
                                               f"not registered {sorted(set(ids) - set(registered))}")


def test_pytest_header_names_adapter_profile_and_seed():
    out = subprocess.run([sys.executable, "-m", "pytest", "-n", "0", "--co", "spec_tests/test_eigenspace.py",
                          "-k", "fixed_point"], cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300)
    assert "ncspec: adapter reference, profile ci, derandomized draws (no seed), tier linear" in out.stdout, out.stdout


def test_the_readme_letter_index_names_each_letters_spec_module():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| letter | spec module |"))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    for letter, module in MODULES.items():
        row = next((r for r in rows if letter in [x.strip() for x in r[0].split(",")]), None)
        assert row is not None, f"README letter index has no row for {letter}"
        assert f"spec_tests/{module}.py" in row[1], (letter, module, row)
