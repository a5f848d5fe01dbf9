"""Issue 25's messages, each on the case that showed it: the cause named, the usage error kept for a malformed
adapter or bad arguments."""
from __future__ import annotations

import sys

from ncspec.conformance.contract.registry import load_adapter


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
    from ncspec.conformance.run.distributed_check import Case, check
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
    from ncspec.conformance.contract.validate import AdapterError, checked
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


class _SimSiamTarget:
    """A SimSiam (MLP predictor) whose target is ``"frozen"`` (a copy of the encoder made at build, never updated) or
    ``"attached"`` (the online network's output, not detached)."""
    capabilities = frozenset({"simsiam_mlp"})

    def __init__(self, target):
        self.name, self.target = f"simsiam_{target}_target", target

    def build(self, method, encoder, embed_dim, **options):
        import copy

        import torch
        kind = self.target

        class Learner:
            def __init__(self):
                self.encoder = encoder
                self.predictor = torch.nn.Linear(embed_dim, embed_dim).to(torch.float64)
                self.frozen = copy.deepcopy(encoder).requires_grad_(False) if kind == "frozen" else None

            def parameters(self):
                yield from self.encoder.parameters()
                yield from self.predictor.parameters()

            def loss(self, v1, v2):
                target = self.frozen if self.frozen is not None else self.encoder
                D = lambda p, z: -torch.nn.functional.cosine_similarity(p, z, dim=-1).mean(-1).sum()
                return 0.5 * (D(self.predictor(self.encoder(v1)), target(v2))
                              + D(self.predictor(self.encoder(v2)), target(v1)))

            def after_step(self):
                pass
        return Learner()


def _c1_message(adapter) -> str:
    import pytest
    from ncspec.conformance.run.recorder import Recorder
    from ncspec.spec_tests.test_conformance import test_stopgrad_cuts_the_target_path
    with pytest.raises(AssertionError) as e:
        test_stopgrad_cuts_the_target_path(impl=adapter, record=Recorder())
    return str(e.value)


def test_c1_names_a_frozen_copy_target():
    """Issue 25: C1 with δ ≈ 0 always said 'not detached'; for a separate frozen copy the target branch is not the
    online network."""
    text = _c1_message(_SimSiamTarget("frozen"))
    assert "the target branch is not the online network: learner.frozen is a separate copy" in text, text
    assert "not detached" not in text, text


def test_c1_names_an_attached_target():
    text = _c1_message(_SimSiamTarget("attached"))
    assert "the target branch is not detached (no stop-grad)" in text and "separate copy" not in text, text


def test_the_deep_tier_says_a_declared_loss_factor_is_read_and_unused_under_lars():
    """Issue 25: the deep tier's BYOL rows said the scale was 'taken as 1 … reads loss_factor' although the adapter
    declared it, and BYOL's LARS makes it unused."""
    import torch
    from ncspec.conformance.adapters.reference import ReferenceAdapter
    from ncspec.conformance.contract.loss_scale import ScaleFit, _declared_factor, _serves_only_its_views
    from ncspec.reference.vision.served import Served

    class Declares(ReferenceAdapter):
        name, loss_factor = "declares_byol_x4", {"byol": 4.0}

    served = Served(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 4)), 4)
    assert _serves_only_its_views(served)
    text = _declared_factor(Declares(), "byol")
    assert "loss_factor = {'byol': 4}" in text and "LARS" in text and "unused" in text, text
    assert _declared_factor(Declares(), "simsiam") == ""
    fit = ScaleFit("byol", 1.0, float("nan"), measured=False, note=text, declared=True)
    row = fit.describe()
    assert "taken as 1" not in row and "loss_factor = {'byol': 4}" in row, row


def test_n6_watches_n1s_byol_run_in_the_same_worker():
    """Issue 25: N1 and N6 trained the same BYOL run twice, in separate pytest-xdist workers; the tests reading that
    run are one work unit, so the cached run is trained once."""
    import ast
    from pathlib import Path

    from ncspec.conformance.run.scheduling import SHARED_RUNS, shared_scope
    deep = Path(__file__).resolve().parents[1] / "spec_tests" / "test_deep.py"
    defined = {n.name for n in ast.parse(deep.read_text(encoding="utf-8")).body if isinstance(n, ast.FunctionDef)}
    tests = SHARED_RUNS[("test_deep.py", "byol_run")]
    assert {t.split("[")[0] for t in tests} <= defined, tests          # the names are the module's tests
    scopes = {shared_scope(f"spec_tests/test_deep.py::{t}", f"spec_tests/test_deep.py::{t}") for t in tests}
    assert scopes == {"spec_tests/test_deep.py::byol_run"}, scopes
    other = "spec_tests/test_deep.py::test_intact_method_keeps_the_representation_spread[simsiam]"
    assert shared_scope(other, other) == other
