"""Data loading: format-faithful tiny CIFAR-10 / STL-10 files, .npz, and the errors for bad roots."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from ncspec.reference.vision.data import DataRootError, load_dataset, write_fake_cifar10, write_fake_stl10


def test_fake_cifar10_loads_through_torchvision_as_uint8_chw(tmp_path):
    write_fake_cifar10(tmp_path, n_train=50, n_test=20)
    ds = load_dataset("cifar10", tmp_path)
    assert ds.name == "cifar10" and ds.num_classes == 10
    assert ds.x_train.shape == (50, 3, 32, 32) and ds.x_train.dtype == torch.uint8
    assert ds.x_test.shape == (20, 3, 32, 32) and ds.y_train.dtype == torch.int64
    import pickle
    with open(tmp_path / "cifar-10-batches-py" / "data_batch_1", "rb") as f:
        raw = pickle.load(f, encoding="latin1")
    first = np.asarray(raw["data"][0]).reshape(3, 32, 32)      # CIFAR rows are R plane, G plane, B plane
    assert torch.equal(ds.x_train[0], torch.from_numpy(first)) and ds.y_train[0] == raw["labels"][0]
    assert ds.limit(7).x_train.shape[0] == 7 and ds.x_ssl is ds.x_train


def test_fake_stl10_binary_layout_and_unlabeled_split(tmp_path):
    write_fake_stl10(tmp_path, n_train=6, n_test=4, n_unlabeled=5)
    ds = load_dataset("stl10", tmp_path, unlabeled=True)
    assert ds.x_train.shape == (6, 3, 96, 96) and ds.x_test.shape == (4, 3, 96, 96)
    assert ds.x_unlabeled.shape == (5, 3, 96, 96) and ds.x_ssl.shape[0] == 11
    raw = np.fromfile(tmp_path / "stl10_binary" / "train_X.bin", dtype=np.uint8).reshape(-1, 3, 96, 96)
    assert torch.equal(ds.x_train[0], torch.from_numpy(raw[0].transpose(0, 2, 1).copy()))   # column-major on disk
    labels = np.fromfile(tmp_path / "stl10_binary" / "train_y.bin", dtype=np.uint8)
    assert ds.y_train.tolist() == (labels - 1).tolist() and ds.y_train.min() >= 0
    assert load_dataset("stl10", tmp_path, unlabeled=False).x_unlabeled is None


def test_npz_hwc_is_transposed_to_chw(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (5, 8, 8, 3), dtype=np.uint8)
    np.savez(tmp_path / "d.npz", x_train=x, y_train=np.arange(5), x_test=x[:2], y_test=np.arange(2))
    ds = load_dataset(f"npz:{tmp_path / 'd.npz'}")
    assert ds.x_train.shape == (5, 3, 8, 8) and torch.equal(ds.x_train[1, 2], torch.from_numpy(x[1, :, :, 2]))
    assert ds.name == "d" and ds.num_classes == 5


def test_missing_cifar_root_names_the_expected_files_and_how_to_get_them(tmp_path):
    with pytest.raises(DataRootError) as e:
        load_dataset("cifar10", tmp_path / "nowhere")
    msg = str(e.value)
    assert "cifar-10-batches-py" in msg and "data_batch_1" in msg and "test_batch" in msg
    assert "--download" in msg and "cifar-10-python.tar.gz" in msg
    (tmp_path / "cifar-10-batches-py").mkdir()
    with pytest.raises(DataRootError, match="missing data_batch_1"):
        load_dataset("cifar10", tmp_path)


def test_corrupt_cifar_batch_is_reported_as_corrupt(tmp_path):
    write_fake_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(DataRootError, match="corrupt.*data_batch_1"):
        load_dataset("cifar10", tmp_path)


def test_missing_or_corrupt_stl_root_names_the_binary_files(tmp_path):
    with pytest.raises(DataRootError) as e:
        load_dataset("stl10", tmp_path, unlabeled=True)
    msg = str(e.value)
    assert "stl10_binary" in msg and "train_X.bin" in msg and "unlabeled_X.bin" in msg and "stl10_binary.tar.gz" in msg
    write_fake_stl10(tmp_path)
    (tmp_path / "stl10_binary" / "test_X.bin").write_bytes(b"\x00" * 1000)   # not a whole image
    with pytest.raises(DataRootError, match="corrupt"):
        load_dataset("stl10", tmp_path)


def test_bad_npz_and_unknown_names(tmp_path):
    with pytest.raises(DataRootError, match="does not exist"):
        load_dataset(f"npz:{tmp_path / 'x.npz'}")
    np.savez(tmp_path / "bad.npz", x_train=np.zeros((2, 4, 4, 3), np.uint8))
    with pytest.raises(DataRootError, match="lacks array"):
        load_dataset(f"npz:{tmp_path / 'bad.npz'}")
    with pytest.raises(ValueError, match="unknown dataset"):
        load_dataset("imagenet", tmp_path)
    with pytest.raises(DataRootError, match="needs a data root"):
        load_dataset("cifar10", None)
