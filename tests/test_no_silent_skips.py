"""Meta-tests for "no silent skips": a claim whose tests all skip says so, with the reason.

A ``require(impl, ...)`` inside a Hypothesis test whose tags depend on a drawn argument skips the
*whole* test on the first draw that needs a capability the adapter lacks — so the claim's core
never runs for that adapter (J5's BatchNorm check on a third-party Barlow Twins was such a case).
The parts that need an ablation switch are separate tests; these checks keep it so, and the
report lists, per adapter, the claims that ran no example.
"""
from __future__ import annotations

import ast
import pathlib

from ncspec.conformance.adapters.reference import ReferenceAdapter
from ncspec.conformance.mutants.killmatrix import run_claim_detail
from ncspec.conformance.run.report import build_report

SPEC = pathlib.Path(__file__).resolve().parents[1] / "spec_tests"
FIXTURES = {"impl", "record"}


def _is_given(decorator) -> bool:
    f = decorator.func if isinstance(decorator, ast.Call) else decorator
    return (isinstance(f, ast.Name) and f.id == "given") or (isinstance(f, ast.Attribute) and f.attr == "given")


def _parametrized(fn) -> set[str]:
    """Arguments given by ``@pytest.mark.parametrize("a, b", ...)``: one test each, not a draw."""
    names = set()
    for d in fn.decorator_list:
        f = d.func if isinstance(d, ast.Call) else None
        if isinstance(f, ast.Attribute) and f.attr == "parametrize" and d.args and isinstance(d.args[0], ast.Constant):
            names |= {n.strip() for n in str(d.args[0].value).split(",")}
    return names


def _draw_dependent_skips(path: pathlib.Path) -> list[str]:
    problems = []
    for fn in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(fn, ast.FunctionDef) or not any(_is_given(d) for d in fn.decorator_list):
            continue
        drawn = {a.arg for a in fn.args.args} - FIXTURES - _parametrized(fn)
        for node in ast.walk(fn):
            if not isinstance(node, ast.Call):
                continue
            f = node.func
            name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""
            if name == "skip":
                problems.append(f"{path.name}::{fn.name} line {node.lineno}: a skip inside a Hypothesis test")
            elif name == "require":
                used = {n.id for a in node.args for n in ast.walk(a) if isinstance(n, ast.Name)} & drawn
                if used:
                    problems.append(f"{path.name}::{fn.name} line {node.lineno}: require(...) depends on the drawn "
                                    f"{sorted(used)}; split the test (core / ablation)")
    return problems


def test_no_spec_test_skips_on_a_draw():
    problems = [p for path in sorted(SPEC.glob("test_*.py")) for p in _draw_dependent_skips(path)]
    assert not problems, "\n".join(problems)


def test_the_audit_sees_a_draw_dependent_require(tmp_path):
    bad = tmp_path / "test_bad.py"
    bad.write_text("@given(flag=st.booleans())\ndef test_x(impl, record, flag):\n"
                   "    require(impl, 'a', *(() if flag else ('ablation:b',)))\n")
    assert _draw_dependent_skips(bad) == ["test_bad.py::test_x line 3: require(...) depends on the drawn ['flag']; "
                                          "split the test (core / ablation)"]


class WithoutAblations(ReferenceAdapter):
    """The reference as a third-party library would declare it: methods, no ablation switches."""
    name = "reference-without-ablations"
    capabilities = frozenset(t for t in ReferenceAdapter.capabilities if not t.startswith("ablation:"))


def test_j5_core_runs_without_the_ablation_switch():
    outcome, details = run_claim_detail("J5", WithoutAblations())
    by_test = {t.split("::")[-1]: (o, msg) for t, o, msg in details}
    assert outcome == "passed", details
    assert by_test["test_barlow_twins_bn_removes_the_center"][0] == "passed"
    skipped = by_test["test_barlow_twins_without_decorrelation_bn_removes_the_center"]
    assert skipped[0] == "skipped" and "ablation:no_decorrelation" in skipped[1]


def test_report_lists_the_claims_that_ran_no_example():
    tests = [dict(claim="J5", test="spec_tests/test_center_vector.py::test_a", outcome="skipped", duration=0.0,
                  reason="adapter 'x' does not declare barlow_twins", rows=[]),
             dict(claim="J1", test="spec_tests/test_center_vector.py::test_b", outcome="passed", duration=0.0,
                  reason="", rows=[]),
             dict(claim="J1", test="spec_tests/test_center_vector.py::test_c", outcome="skipped", duration=0.0,
                  reason="adapter 'x' does not declare lsimple", rows=[])]
    report = build_report(tests, "x", 1.0)
    assert report["ran_no_example"] == [dict(id="J5", reasons=["adapter 'x' does not declare barlow_twins"])]
    from ncspec.conformance.run.report import partly_skipped
    j1 = next(c for c in report["claims"] if c["id"] == "J1")
    assert [t["test"] for t in partly_skipped(j1)] == ["spec_tests/test_center_vector.py::test_c"]
    from ncspec.conformance.run.report_doc import _markdown
    md = _markdown(report, "m.png")
    assert "## Coverage on adapter x" in md
    assert "| J5 | no example ran: adapter 'x' does not declare barlow_twins |" in md
    assert "1 of 2 tests skipped: test_c (adapter 'x' does not declare lsimple)" in md


def test_t1_runs_for_an_adapter_with_only_one_target():
    """T1 draws the target; an adapter without BYOL runs the online target on every draw instead of skipping."""
    class NoBYOL(ReferenceAdapter):
        name = "reference-without-byol"
        capabilities = ReferenceAdapter.capabilities - {"byol", "target:ema"}
    outcome, details = run_claim_detail("T1", NoBYOL())
    assert outcome == "passed" and all(o == "passed" for _, o, _ in details), details
