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
