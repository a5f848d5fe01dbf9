"""One run loads the adapter once per process: ``ncspec check``'s early check (and the deep tier's budget line), the
plugin's configure and the ``impl`` fixture share the object :func:`ncspec.conformance.run.session.run_adapter`
loaded."""
from __future__ import annotations

from ncspec.conformance.cli import main
from ncspec.conformance.contract import registry
from ncspec.conformance.run import session


def test_a_check_loads_its_adapter_once(monkeypatch, tmp_path):
    calls = []
    real = registry.load_adapter
    monkeypatch.setattr(registry, "load_adapter", lambda spec: calls.append(spec) or real(spec))
    code = main(["check", "-k", "C1", "--adapter", "reference", "--no-progress", "--json", str(tmp_path / "r.json")])
    assert code == 0
    assert calls == ["reference"], calls
    assert session._LOADED == {}          # forgotten when the run ends: the next run loads its own


def test_run_adapter_reuses_the_object_until_the_run_ends():
    first = session.run_adapter(None)
    assert session.run_adapter("reference") is first
    session.end_run()
    assert session.run_adapter("reference") is not first
    session.end_run()
