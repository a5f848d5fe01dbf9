"""The deep tier: selection, data errors, the N1 meta-test against mutants, the acceptance dry run.

Tests that train on real images use the CIFAR-10 fragment (``$NCSPEC_SHARED/data/cifar10_fragment.npz`` or
``../shared/data``) and skip without it.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fragment import require_fragment

ROOT = Path(__file__).resolve().parents[1]


def _collect(*args) -> list[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("NCSPEC_TIER", "NCSPEC_DATA")}
    p = subprocess.run([sys.executable, "-m", "pytest", "--co", "-q", "-p", "no:randomly", *args,
                        str(ROOT / "spec_tests" / "test_deep.py"), str(ROOT / "spec_tests" / "test_dual.py")],
                       capture_output=True, text=True, cwd=ROOT, env=env)
    return [line for line in p.stdout.splitlines() if "::" in line]


def test_deep_claims_run_only_in_the_deep_tier():
    default, deep, both = _collect(), _collect("--ncspec-tier", "deep"), _collect("--ncspec-tier", "all")
    assert default and not any("test_deep.py" in t for t in default)
    assert deep and all("test_deep.py" in t for t in deep)
    assert len(both) == len(default) + len(deep)


def test_deep_tier_without_data_names_what_to_download(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "NCSPEC_DATA"}
    p = subprocess.run([sys.executable, "-m", "ncspec.conformance.cli", "check", "--tier", "deep"],
                       capture_output=True, text=True, env=env, cwd=tmp_path)
    assert p.returncode == 2
    assert "cifar-10-python.tar.gz" in p.stderr and "--data-root" in p.stderr and "NCSPEC_DATA" in p.stderr
    p = subprocess.run([sys.executable, "-m", "ncspec.conformance.cli", "check", "--tier", "deep", "--data-root",
                        str(tmp_path / "nowhere")], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert p.returncode == 2 and "nowhere does not exist" in p.stderr


def test_data_spec_accepts_an_npz_or_a_cifar_root(tmp_path):
    from ncspec.conformance.run.deep_tier import dataset_spec
    from ncspec.reference.vision.data import write_fake_cifar10
    root = write_fake_cifar10(tmp_path / "c", n_train=10, n_test=5)
    assert dataset_spec(str(root)) == ("cifar10", str(root))
    (tmp_path / "x.npz").write_bytes(b"")
    assert dataset_spec(str(tmp_path / "x.npz")) == (f"npz:{tmp_path / 'x.npz'}", None)
    with pytest.raises(FileNotFoundError, match="holds neither cifar-10-batches-py"):
        dataset_spec(str(tmp_path))


@pytest.mark.parametrize("mutant", ["no_stopgrad", "predictor_bypassed"])
def test_n1_catches_the_collapse_mutants(mutant, monkeypatch):
    """N1's intact-method test fails, by its assertion, on the mutants that drop the stop-gradient or bypass
    the closed-form predictor (W_P = I), at the cpu scale on the CIFAR-10 fragment."""
    frag = require_fragment()
    monkeypatch.setenv("NCSPEC_DATA", str(frag))
    monkeypatch.setenv("NCSPEC_SCALE", "cpu")
    from ncspec.conformance.contract.registry import load_adapter
    from ncspec.conformance.run.recorder import Recorder
    from ncspec.spec_tests.test_deep import test_intact_method_keeps_the_representation_spread as n1
    with pytest.raises(AssertionError, match="collapsed within"):
        n1(impl=load_adapter(f"mutant:{mutant}"), record=Recorder(), method="simsiam")


def _deep_n1(monkeypatch, name: str):
    frag = require_fragment()
    monkeypatch.setenv("NCSPEC_DATA", str(frag))
    monkeypatch.setenv("NCSPEC_SCALE", "cpu")
    from ncspec.conformance.run.recorder import Recorder
    from ncspec.spec_tests import test_deep
    return getattr(test_deep, name), Recorder()


@pytest.mark.parametrize("mutant", ["simsiam_mlp_target_not_detached", "simsiam_mlp_predictor_bypassed"])
def test_n1_catches_the_learned_predictor_collapse_mutants(mutant, monkeypatch):
    """N1's intact-method test fails, by its assertion, on SimSiam with an MLP predictor whose target is not
    detached or whose predictor is never applied (cpu scale, CIFAR-10 fragment; the runs are those of the
    ablations measured in ``test_deep``)."""
    from ncspec.conformance.contract.registry import load_adapter
    n1, record = _deep_n1(monkeypatch, "test_intact_method_keeps_the_representation_spread")
    with pytest.raises(AssertionError, match="collapsed within"):
        n1(impl=load_adapter(f"mutant:{mutant}"), record=record, method="simsiam_mlp")


@pytest.mark.parametrize("mutant,test,kwargs", [
    ("stop_grad_option_ignored", "test_removing_the_stop_gradient_collapses_the_representation",
     dict(method="simsiam_mlp")),
    ("no_predictor_option_ignored", "test_removing_the_predictor_collapses_the_representation", {}),
])
def test_n1_catches_an_ablation_switch_that_is_ignored(mutant, test, kwargs, monkeypatch):
    """An adapter that accepts the no-SG / no-predictor switch but trains the intact method: N1's ablation test
    fails by its assertion (the run stays spread)."""
    from ncspec.conformance.contract.registry import load_adapter
    fn, record = _deep_n1(monkeypatch, test)
    with pytest.raises(AssertionError, match="did not collapse within"):
        fn(impl=load_adapter(f"mutant:{mutant}"), record=record, **kwargs)


def test_acceptance_dry_run_writes_every_part(tmp_path):
    """``ncspec bench --acceptance --dry-run``: every part end to end on the CPU at a tiny size."""
    p = subprocess.run([sys.executable, "-m", "ncspec.conformance.cli", "bench", "--acceptance", "--dry-run",
                        "--out", str(tmp_path)], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr[-3000:]
    doc = json.loads((tmp_path / "acceptance.json").read_text())
    assert doc["schema"] == "ncspec.acceptance/1" and doc["dry_run"]
    for name in ("resnet18_simsiam", "vgg11_simsiam", "directpred_resnet18", "deep_tier_gpu_scale", "ddp_smoke",
                 "compiled_bf16_channels_last_step"):
        assert "error" not in doc["parts"][name], (name, doc["parts"][name])
    assert doc["parts"]["resnet18_simsiam"]["lightly_style"]["s_per_50k_epoch"] > 0
    assert doc["parts"]["ddp_smoke"]["ok"] and doc["parts"]["ddp_smoke"]["backend"] == "gloo"
    assert set(doc["parts"]["deep_tier_gpu_scale"]["summary"]) >= {"N1", "N2", "N3", "N4"}
    report = json.loads((tmp_path / "deep_tier.json").read_text())          # the deep rows carry trajectories
    n1 = next(c for c in report["claims"] if c["id"] == "N1")
    assert n1["traces"] and "‖s‖" in n1["traces"][0]["series"] and n1["traces"][0]["spectra"]
    assert (tmp_path / "deep_tier_training.png").stat().st_size > 0
    assert doc["figures"]["directpred_eig_fraction_of_step"] > 0
