"""Issue 25's messages, each on the case that showed it: the cause named, the usage error kept for a malformed
adapter or bad arguments."""
from __future__ import annotations

import sys

from ncspec.conformance.registry import load_adapter


def test_a_file_adapter_imports_its_siblings(tmp_path, monkeypatch):
    """``--adapter /path/lab/adapter.py:adapter`` imports the lab's own code beside it (issue 25: No module named
    'lab_byol'), as pytest puts a test file's folder on the path."""
    lab = tmp_path / "lab"
    lab.mkdir()
    (lab / "lab_byol_sibling.py").write_text("NAME = 'lab'\n", encoding="utf-8")
    (lab / "adapter.py").write_text(
        "from lab_byol_sibling import NAME\n"
        "from ncspec.conformance.adapters.reference import ReferenceAdapter\n"
        "class A(ReferenceAdapter):\n    name = NAME\n"
        "adapter = A()\n", encoding="utf-8")
    monkeypatch.setattr(sys, "path", list(sys.path))      # the folder added for this test only
    monkeypatch.delitem(sys.modules, "lab_byol_sibling", raising=False)
    monkeypatch.chdir(tmp_path)                          # not the file's folder
    assert load_adapter(f"{lab / 'adapter.py'}:adapter").name == "lab"


def test_d1_attributes_a_failure_to_the_method_that_raised(tmp_path):
    """Issue 25: D1 computed the single-process gradients outside the per-method guard, so one method raising failed
    D1 for every method with that method's message."""
    from ncspec.conformance.distributed_check import Case, check
    path = tmp_path / "half_broken.py"
    path.write_text(
        "from ncspec.conformance.adapters.reference import ReferenceAdapter\n"
        "class HalfBroken(ReferenceAdapter):\n"
        "    name = 'half_broken'\n"
        "    capabilities = ReferenceAdapter.capabilities | {'distributed'}\n"
        "    def build(self, method, encoder, embed_dim, **options):\n"
        "        if method == 'barlow_twins':\n"
        "            raise RuntimeError('barlow twins is broken here')\n"
        "        return super().build(method, encoder, embed_dim, **options)\n"
        "adapter = HalfBroken()\n", encoding="utf-8")
    spec = f"{path}:adapter"
    result = check(spec, load_adapter(spec), [Case("vicreg"), Case("barlow_twins")])
    err, text = result["vicreg"]
    assert text is None and err <= 1e-9, result
    assert "barlow twins is broken here" in result["barlow_twins"][1], result
