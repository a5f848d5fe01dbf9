"""Layering of the package: which module may import which (predictions only in theory/, no cycles)."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _imports(path: Path, rel: Path | None = None) -> set[str]:
    """Absolute names of every module ``path`` imports (relative imports resolved against its package; ``rel``:
    where the file stands in the repository, by default where it is)."""
    rel = (rel or path.relative_to(ROOT)).with_suffix("")
    package = ["ncspec", *rel.parts[:-1]] if rel.parts[0] != "ncspec" else list(rel.parts[:-1])
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            mod = ".".join([*base, node.module] if node.module else base)
            if node.module:                                   # `from .. import _checks` names only _checks
                names.add(mod)
            names |= {f"{mod}.{a.name}" for a in node.names}
    return names


def test_theory_never_imports_a_simulator():
    """reference/theory/* are closed forms: no linear model, simulator, learner, vision or distributed code."""
    allowed = ("torch", "math", "numpy", "__future__", "dataclasses", "typing", "collections", "functools",
               "ncspec.reference._checks", "ncspec.reference.vectors", "ncspec.reference.theory")
    bad = {}
    for path in sorted((ROOT / "reference" / "theory").glob("*.py")):
        found = sorted(n for n in _imports(path) if not n.startswith(allowed))
        if found:
            bad[path.name] = found
    assert not bad, f"theory modules import beyond closed forms: {bad}"


def test_theory_import_check_can_fail(tmp_path):
    """The check above sees a relative import of the simulator."""
    p = ROOT / "reference" / "theory" / "_probe_tmp.py"
    try:
        p.write_text("from ..linear import simulate\n", encoding="utf-8")
        assert "ncspec.reference.linear.simulate" in _imports(p)
    finally:
        p.unlink()


def _conformance_imports(path: Path, rel: Path | None = None) -> list[str]:
    return sorted(n for n in _imports(path, rel) if n == "ncspec.conformance" or n.startswith("ncspec.conformance."))


def test_reference_never_imports_conformance():
    """reference/ is the layer conformance/ builds on: no module of it imports conformance, at the top or inside a
    function (the collapse monitor, which the reference's training loop and the conformance layer both use, lives
    in reference/monitor/)."""
    bad = {str(p.relative_to(ROOT)): found for p in sorted((ROOT / "reference").rglob("*.py"))
           if (found := _conformance_imports(p))}
    assert not bad, f"reference modules import conformance: {bad}"


def test_reference_import_check_can_fail(tmp_path):
    """The check above sees a relative import inside a function, an absolute import and a package import."""
    probe = tmp_path / "probe.py"
    probe.write_text("import ncspec.conformance.plugin\nfrom ncspec import conformance\n\n\ndef f():\n"
                     "    from ...conformance.monitor import CollapseMonitor\n", encoding="utf-8")
    found = _conformance_imports(probe, Path("reference/vision/probe.py"))
    assert {"ncspec.conformance.plugin", "ncspec.conformance", "ncspec.conformance.monitor"} <= set(found), found


def _spec_tests_imports(path: Path, rel: Path | None = None) -> list[str]:
    return sorted(n for n in _imports(path, rel) if n == "ncspec.spec_tests" or n.startswith("ncspec.spec_tests."))


def test_conformance_and_reference_never_import_spec_tests():
    """One direction only: spec_tests → conformance → reference. No module of conformance/ or reference/ imports
    spec_tests, at the top or inside a function (the deep tier's settings live in conformance/run/deep_tier.py; the
    claims' modules are loaded by name, :func:`ncspec.conformance.claims.load_all`)."""
    paths = [p for d in ("conformance", "reference") for p in sorted((ROOT / d).rglob("*.py"))]
    bad = {str(p.relative_to(ROOT)): found for p in paths if (found := _spec_tests_imports(p))}
    assert not bad, f"conformance/reference modules import spec_tests: {bad}"


def test_spec_tests_import_check_can_fail(tmp_path):
    """The check above sees an import inside a function, relative (``from .. import spec_tests``) or absolute."""
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from .. import spec_tests\n    from ncspec.spec_tests.deep_harness import scale\n",
                     encoding="utf-8")
    found = _spec_tests_imports(probe, Path("conformance/probe.py"))
    assert {"ncspec.spec_tests", "ncspec.spec_tests.deep_harness"} <= set(found), found


def test_reference_global_batch_does_not_import_vision():
    names = _imports(ROOT / "reference" / "global_batch.py") | _imports(ROOT / "reference" / "data_parallel.py")
    assert not any(n.startswith("ncspec.reference.vision") for n in names), sorted(names)


def test_spec_modules_take_predictions_from_theory():
    """Spec modules import reference.theory for predictions and run learners through the one simulator:
    none defines its own optimisation loop over parameters (``.sub_(lr *`` / ``p -= lr``)."""
    for path in sorted((ROOT / "spec_tests").glob("test_*.py")):
        text = path.read_text(encoding="utf-8")
        assert ".sub_(lr" not in text and "-= lr *" not in text, f"{path.name} runs its own training loop"


def test_conformance_imports_spec_tests_only_lazily():
    """Importing the registry, plugin, report or CLI does not import a spec module (no import cycle):
    ``load_all`` imports them on demand."""
    code = ("import sys; import ncspec.conformance.claims, ncspec.conformance.plugin, ncspec.conformance.run.report, "
            "ncspec.conformance.cli, ncspec.conformance.contract.registry, ncspec.conformance.mutants.killmatrix; "
            "print(sorted(m for m in sys.modules if 'spec_tests.test_' in m))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", out.stdout


def test_the_reporting_path_does_not_import_the_mutant_zoo():
    """The run and its report (plugin, results, failures, report, the readable report, the check command) import
    nothing of conformance/mutants/ (the kill matrix classifies outcomes with run/failures.py, not the reverse)."""
    code = ("import sys; import ncspec.conformance.plugin, ncspec.conformance.run.results, "
            "ncspec.conformance.run.failures, ncspec.conformance.run.report, ncspec.conformance.run.report_doc, "
            "ncspec.conformance.cli.check; print(sorted(m for m in sys.modules if 'conformance.mutants' in m))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", out.stdout


def test_no_reads_of_hypothesis_private_attributes():
    hits = []
    for d in ("reference", "conformance", "spec_tests", "ncspec", "tests", "benchmarks"):
        for path in sorted((ROOT / d).rglob("*.py")):
            if path.name == "test_layers.py":
                continue
            for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if "hypothesis.internal" in line or "._hypothesis" in line or "settings._" in line:
                    hits.append(f"{path.relative_to(ROOT)}:{i}: {line.strip()}")
    assert not hits, "\n".join(hits)


def test_one_definition_of_each_shared_formula():
    """l2-normalisation, the eigen-predictor and the cosine-IsoLoss surrogate are written once; the fast
    vision learners call the same unchecked kernels as the checked public functions."""
    import re
    patterns = {"unit": r"^\s*def _?unit\(", "eigen predictor": r"\(lam \+ eps\) \*\* alpha",
                "cosine-IsoLoss surrogate": r"p_norm \*\* 3",
                "l2-normalisation inline": r"/ \w+\.norm\(dim=-1, keepdim=True\)"}
    found = {k: [] for k in patterns}
    for d in ("reference", "conformance", "spec_tests"):
        for path in sorted((ROOT / d).rglob("*.py")):
            for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                for k, pat in patterns.items():
                    # the theory's spectral map ω(λ) is the independent oracle the predictors are checked
                    # against (claims H1–H8), so it is deliberately not shared with the implementation
                    if re.search(pat, line) and not (k == "eigen predictor" and "theory" in path.parts):
                        found[k].append(f"{path.relative_to(ROOT)}:{i}")
    assert len(found["unit"]) == 1 and found["unit"][0].startswith("reference/vectors.py"), found["unit"]
    assert len(found["eigen predictor"]) == 1, found["eigen predictor"]
    assert len(found["cosine-IsoLoss surrogate"]) == 1, found["cosine-IsoLoss surrogate"]
    assert [f for f in found["l2-normalisation inline"] if not f.startswith("reference/vectors.py")] == [], found


def _helper_copies(roots=("reference", "conformance", "spec_tests")) -> dict[str, list[str]]:
    """Where each shared helper is written: atomic file writes, the claim report's suffix check (the collapse
    monitor's report, .md or .html, has its own), the RK4 step, the pytest markers."""
    import re
    patterns = {"atomic write": r"def atomic_write\(|os\.replace\(",
                "report suffix check": r"\"\.md\", \"\.html\", \"\.htm\"",
                "rk4 step": r"\bk4 = ", "markers": r"addinivalue_line\(\"markers\""}
    found = {k: [] for k in patterns}
    for d in roots:
        for path in sorted((ROOT / d).rglob("*.py")):
            for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                for k, pat in patterns.items():
                    # the theory's own RK4 (H5's times, on ln u) is part of the independent oracle the
                    # simulators are checked against, so it is deliberately not shared with them
                    if re.search(pat, line) and not (k == "rk4 step" and "theory" in path.parts):
                        found[k].append(f"{path.relative_to(ROOT)}:{i}")
    return found


def test_one_copy_of_each_helper():
    """Files are replaced atomically in reference/files.py only; the readable report's suffix is checked in
    report_doc.py only (the plugin and ``ncspec check`` call it); one RK4 step; the markers registered by the
    plugin alone (pyproject has no copy that could drift)."""
    found = _helper_copies()
    assert {f.split(":")[0] for f in found["atomic write"]} == {"reference/files.py"}, found["atomic write"]
    assert [f.split(":")[0] for f in found["report suffix check"]] == ["conformance/run/report_doc.py"], found
    assert [f.split(":")[0] for f in found["rk4 step"]] == ["reference/ode.py"], found["rk4 step"]
    assert {f.split(":")[0] for f in found["markers"]} == {"conformance/plugin.py"}, found["markers"]
    import tomllib
    assert "markers" not in tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]


def test_helper_copy_check_can_fail(tmp_path):
    """The scan above sees a second atomic write and a second suffix check."""
    (tmp_path / "reference").mkdir()
    (tmp_path / "reference" / "x.py").write_text(
        'os.replace(tmp, path)\nif ext in (".md", ".html", ".htm"):\n    pass\n', encoding="utf-8")
    global ROOT
    saved, ROOT = ROOT, tmp_path
    try:
        found = _helper_copies(("reference",))
    finally:
        ROOT = saved
    assert found["atomic write"] == ["reference/x.py:1"] and found["report suffix check"] == ["reference/x.py:2"]
