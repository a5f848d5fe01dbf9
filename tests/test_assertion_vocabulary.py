"""One assertion vocabulary in the spec modules: a measurement that is asserted is recorded and asserted by one
``record.within`` call, so the tolerance the report shows is the one the test applies. A plain ``record(...)``
only records (a value beside a prediction, a convention); no ``assert`` after it in the same function tests the
variables it measured."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _names(node: ast.AST) -> set[str]:
    """Variables read in ``node`` (ALL_CAPS module constants are thresholds, not measurements)."""
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and not n.id.isupper()}


def _measured(call: ast.Call) -> set[str]:
    """The variables a ``record(quantity, measured, predicted, error=…)`` call measures: its measured value and
    its error (the quantity's label and the prediction are text and theory)."""
    parts = call.args[1:2] + [k.value for k in call.keywords if k.arg == "error"]
    return set().union(*(_names(p) for p in parts)) if parts else set()


def record_then_assert(source: str, filename: str = "<spec>") -> list[str]:
    """``file:line`` of every plain ``record(...)`` followed, later in the same function, by an ``assert`` on a
    variable it measured."""
    hits = []
    for fn in ast.walk(ast.parse(source)):
        if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        asserts = [a for a in ast.walk(fn) if isinstance(a, ast.Assert)]
        for call in ast.walk(fn):
            if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "record"):
                continue
            measured = _measured(call)
            for a in asserts:
                if a.lineno > call.end_lineno and _names(a.test) & measured:
                    hits.append(f"{filename}:{call.lineno} (assert at line {a.lineno})")
                    break
    return hits


def test_no_record_is_followed_by_a_separate_assert_on_its_measurement():
    hits = []
    for path in sorted((ROOT / "spec_tests").glob("*.py")):
        hits += record_then_assert(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)))
    assert not hits, ("record(...) followed by a separate assert on the same measurement; use "
                      "record.within(..., error=, tolerance=, message=) instead:\n" + "\n".join(hits))


def test_the_check_sees_a_record_then_assert_pair():
    """The check above can fail: a record and an assert on its error, nested in a loop, are found; a
    ``record.within`` and a record of a value that is not asserted are not."""
    pair = ("def test_x(record):\n    for k in range(3):\n        err = k / 10\n"
            "        record('rel err', err, 0.0, error=err, tolerance=TOL)\n        assert err <= TOL, 'far'\n")
    assert record_then_assert(pair) == ["<spec>:4 (assert at line 5)"]
    fine = ("def test_y(record, steps, ok):\n    err = 0.1\n"
            "    record.within('rel err', err, 0.0, error=err, tolerance=TOL, message='far')\n"
            "    record('steps', steps, '—')\n    assert ok\n")
    assert record_then_assert(fine) == []
