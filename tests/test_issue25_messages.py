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


def test_a_head_in_another_dtype_than_the_encoder_names_the_dtypes_and_encoder_dtype():
    """Issue 25: a head built in float32 for a weightless float64 Identity encoder got the replica-layout message."""
    import pytest
    import torch
    from ncspec.conformance.validate import AdapterError, checked
    from ncspec.reference.encoders import Identity

    class Float32Head:
        name, capabilities = "float32_head", frozenset({"simsiam_mlp"})

        def build(self, method, encoder, embed_dim, **options):
            class Learner:
                def __init__(self):
                    self.encoder, self.head = encoder, torch.nn.Linear(embed_dim, embed_dim)   # float32

                def parameters(self):
                    return self.head.parameters()

                def loss(self, v1, v2):
                    return -(self.head(self.encoder(v1)) * self.encoder(v2).detach()).sum()

                def after_step(self):
                    pass
            return Learner()

    adapter = checked(Float32Head())
    enc = Identity(4, replicas=2)
    learner = adapter.build("simsiam_mlp", enc, 4)
    views = torch.randn(2, 8, 4, dtype=torch.float64)
    with pytest.raises(AdapterError) as e:
        learner.loss(views, views)
    text = str(e.value)
    assert "float64" in text and "float32" in text and "encoder_dtype" in text, text
    assert "replicas first" not in text, text
