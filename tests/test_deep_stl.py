"""STL-10 roots in the deep tier, on small files generated here in the official binary format.

``--data-root`` takes a folder holding ``stl10_binary/`` (or that folder itself): 96 px images, pre-training on
``train`` + ``unlabeled``, the spectra and evaluations on the labelled splits. A missing or partial root names the
files and the fix before anything trains; the files are read as raw uint8 (no pickle: nothing in them executes).
"""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from ncspec.conformance.run.deep_tier import SCALES, dataset_spec
from ncspec.reference.vision.data import STL10_IMAGE_BYTES, write_fake_stl10
from ncspec.spec_tests.deep_harness import Run, image_data, run_options, train_run


def test_a_folder_holding_stl10_binary_or_the_folder_itself_is_an_stl10_root(tmp_path):
    root = write_fake_stl10(tmp_path / "s", n_train=4, n_test=2, n_unlabeled=3)
    assert dataset_spec(str(root)) == ("stl10", str(root))
    assert dataset_spec(str(root / "stl10_binary")) == ("stl10", str(root))


@pytest.mark.parametrize("missing", ["unlabeled_X.bin", "train_y.bin", "test_X.bin"])
def test_a_partial_stl10_root_names_the_missing_file_and_the_fix(tmp_path, missing):
    root = write_fake_stl10(tmp_path / "s", n_train=4, n_test=2, n_unlabeled=3)
    (root / "stl10_binary" / missing).unlink()
    with pytest.raises(FileNotFoundError) as e:
        dataset_spec(str(root))
    msg = str(e.value)
    assert f"missing {missing}" in msg and "stl10_binary.tar.gz" in msg and "creates stl10_binary/" in msg
    assert "--download" not in msg          # ncspec check downloads nothing: the fix is the archive
    assert all(f in msg for f in ("train_X.bin", "train_y.bin", "test_X.bin", "test_y.bin", "unlabeled_X.bin"))


def test_a_truncated_stl10_file_is_named_with_its_size(tmp_path):
    root = write_fake_stl10(tmp_path / "s", n_train=4, n_test=2, n_unlabeled=3)
    (root / "stl10_binary" / "unlabeled_X.bin").write_bytes(b"\0" * (STL10_IMAGE_BYTES + 5))
    with pytest.raises(FileNotFoundError, match=rf"unlabeled_X.bin has {STL10_IMAGE_BYTES + 5} bytes, not a positive "
                                                rf"multiple of {STL10_IMAGE_BYTES}"):
        dataset_spec(str(root))
    root = write_fake_stl10(tmp_path / "t", n_train=4, n_test=2, n_unlabeled=3)
    (root / "stl10_binary" / "train_y.bin").write_bytes(b"\1" * 3)
    with pytest.raises(FileNotFoundError, match="train_y.bin has 3 labels for 4 images in train_X.bin"):
        dataset_spec(str(root))


def test_ncspec_check_on_a_partial_stl10_root_stops_before_training(tmp_path):
    root = write_fake_stl10(tmp_path / "s", n_train=4, n_test=2, n_unlabeled=3)
    (root / "stl10_binary" / "unlabeled_X.bin").unlink()
    env = {k: v for k, v in os.environ.items() if k not in ("NCSPEC_DATA", "NCSPEC_TIER")}
    p = subprocess.run([sys.executable, "-m", "ncspec.conformance.cli", "check", "--tier", "deep", "--data-root",
                        str(root)], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert p.returncode == 2, p.stderr
    assert "missing unlabeled_X.bin" in p.stderr and "stl10_binary.tar.gz" in p.stderr


def test_a_deep_run_pretrains_on_train_plus_unlabeled_at_96_px(tmp_path, monkeypatch):
    """End to end through the deep tier's data and run (the ``dry`` scale: the plumbing, not the claims)."""
    root = write_fake_stl10(tmp_path / "s", n_train=40, n_test=8, n_unlabeled=24, seed=1)
    monkeypatch.setenv("NCSPEC_DATA", str(root))
    ds = image_data()
    assert ds.name == "stl10" and ds.x_train.shape == (40, 3, 96, 96) and ds.x_ssl.shape == (64, 3, 96, 96)
    raw = np.fromfile(root / "stl10_binary" / "unlabeled_X.bin", dtype=np.uint8).reshape(-1, 3, 96, 96)
    assert torch.equal(ds.x_unlabeled[3], torch.from_numpy(raw[3].transpose(0, 2, 1).copy()))  # column-major
    from ncspec.conformance.contract.registry import load_adapter
    sc = SCALES["dry"]
    doc = train_run(load_adapter("reference"), Run("simsiam", run_options("simsiam", sc)), sc, ds)
    assert doc["config"]["dataset"] == "stl10"
    assert doc["history"][-1]["step"] == sc.steps          # 64 SSL images / batch 32: two steps an epoch
    assert len(doc["spectra"][-1]["eig_corr"]) == sc.proj_out
