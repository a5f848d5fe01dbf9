"""`ncspec reproduce table1`, `ncspec bench` and `ncspec train`'s errors, on CPU with synthetic files."""
from __future__ import annotations

import json
import re

import pytest
from ncspec.conformance.cli import main as vision_main
from ncspec.reference.vision.data import write_fake_cifar10, write_fake_stl10
from ncspec.reference.vision.table1 import PAPER, wallclock_estimate


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    write_fake_cifar10(root, n_train=50, n_test=20)
    write_fake_stl10(root, n_train=16, n_test=8, n_unlabeled=16)
    return root


SMOKE = [
    "--epochs",
    "1",
    "--width",
    "tiny",
    "--seeds",
    "1",
    "--limit",
    "32",
    "--proj-hidden",
    "32",
    "--batch-size",
    "16",
]


def test_reproduce_table1_runs_end_to_end_on_synthetic_files(data_root, tmp_path, capsys):
    out = tmp_path / "t1"
    assert vision_main(["reproduce", "table1", "--data-root", str(data_root), "--out", str(out), "--devices", "cpu",
                        *SMOKE]) == 0
    text = capsys.readouterr().out
    assert "CIFAR-10 EMA" in text and "STL-10 no EMA" in text and "IsoLoss (paper)" in text
    assert "74.0 ± 0.6" in text and "65.7 ± 0.8" in text and "not comparable" in text
    doc = json.loads((out / "table1.json").read_text())
    assert len(doc["cells"]) == 8 and len(doc["runs"]) == 8
    for c in doc["cells"]:
        assert 0 <= c["readout_acc"][0] <= 100 and c["readout_acc"][2] == 1
        assert tuple(c["paper"]) == PAPER[(c["dataset"], c["loss"], c["ema"])]
    cell = json.loads((out / "stl10-isoloss-ema-s0" / "metrics.json").read_text())
    cfg = cell["config"]
    assert (cfg["backbone"], cfg["optimizer"], cfg["ema"], cfg["proj_out"]) == ("vgg11", "lars", True, 256)
    assert cfg["method_options"]["corr_ema"] == 0.998 and cell["status"] == "done"
    noema = json.loads((out / "cifar10-simsiam-noema-s0" / "metrics.json").read_text())["config"]
    assert (noema["optimizer"], noema["lr"], noema["method_options"]["corr_ema"]) == ("sgd", 0.1, 0.5)
    # finished cells are not run again
    mtime = (out / "stl10-isoloss-ema-s0" / "metrics.json").stat().st_mtime_ns
    assert vision_main(["reproduce", "table1", "--data-root", str(data_root), "--out", str(out), "--devices", "cpu",
                        *SMOKE]) == 0
    assert (out / "stl10-isoloss-ema-s0" / "metrics.json").stat().st_mtime_ns == mtime


def test_reproduce_table1_spreads_cells_over_devices(data_root, tmp_path, capsys):
    out = tmp_path / "t1"
    assert vision_main(["reproduce", "table1", "--data-root", str(data_root), "--out", str(out), "--devices", "cpu,cpu",
                        "--datasets", "cifar10", "--only", "isoloss", *SMOKE]) == 0
    err = capsys.readouterr().err
    assert "2 runs on cpu, cpu" in err and len(re.findall(r"\[\d/2\] cifar10-isoloss-\w+-s0 on cpu", err)) == 2
    doc = json.loads((out / "table1.json").read_text())
    assert sorted(c["ema"] for c in doc["cells"]) == [False, True]          # worker processes wrote both cells


def test_reproduce_table1_small_scale_runs_end_to_end_and_resumes(data_root, tmp_path, capsys):
    """--scale dry: --scale cpu's code path (the reduced no-EMA grid, its table beside the paper's) in seconds."""
    out = tmp_path / "small"
    args = ["reproduce", "table1", "--scale", "dry", "--data-root", str(data_root), "--out", str(out), "--devices",
            "cpu"]
    assert vision_main(args) == 0
    text = capsys.readouterr().out
    assert "Table 1 in miniature (dry scale" in text and "no EMA (paper)" in text
    assert "59.9 ± 2.1" in text and "73.5 ± 0.5" in text and "IsoLoss − SimSiam loss, no EMA, kNN: per seed" in text
    doc = json.loads((out / "table1.json").read_text())
    assert doc["schema"] == "ncspec.table1-small/1" and len(doc["runs"]) == 4 and doc["user_cpu_s"] > 0
    assert {(c["loss"], c["ema"], c["readout_acc"][2]) for c in doc["cells"]} == {("simsiam", False, 2),
                                                                                  ("isoloss", False, 2)}
    assert len(doc["gaps"]["noema/knn_acc"]["diffs"]) == 2
    cell = json.loads((out / "cifar10-isoloss-noema-s1" / "metrics.json").read_text())
    cfg = cell["config"]
    assert (cfg["width"], cfg["optimizer"], cfg["ema"], cfg["limit"], cfg["seed"]) == ("tiny", "sgd", False, 32, 1)
    mtime = (out / "cifar10-isoloss-noema-s1" / "metrics.json").stat().st_mtime_ns
    assert vision_main(args) == 0                                            # finished cells are not run again
    assert (out / "cifar10-isoloss-noema-s1" / "metrics.json").stat().st_mtime_ns == mtime


def test_reproduce_table1_help_documents_protocol_and_wall_clock(capsys):
    with pytest.raises(SystemExit):
        vision_main(["reproduce", "table1", "--help"])
    text = capsys.readouterr().out
    for phrase in (
        "800 epochs",
        "100 epochs",
        "VGG11",
        "4096 → 256",
        "LARS",
        "solarize",
        "Expected wall-clock on one H100",
        "ESTIMATE",
        "measured on one H100",
    ):
        assert phrase in text, phrase
    hours = float(re.search(r"≈ (\d+) h for the whole grid", text).group(1))
    assert hours == round(wallclock_estimate(4)["total_h"])


def test_reproduce_and_train_report_a_missing_data_root(tmp_path, capsys):
    assert vision_main(["reproduce", "table1", "--data-root", str(tmp_path / "none"), "--devices", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "cifar-10-batches-py" in err and "--download" in err
    assert vision_main(["train", "--dataset", "stl10", "--data-root", str(tmp_path), "--out", str(tmp_path / "o"),
                        "--device", "cpu"]) == 2
    assert "stl10_binary" in capsys.readouterr().err


def test_bench_on_cpu_says_so(tmp_path, capsys):
    js = tmp_path / "b.json"
    assert vision_main(["bench", "--device", "cpu", "--images", "256", "--batch-size", "64", "--epochs", "1",
                        "--json", str(js)]) == 0
    cap = capsys.readouterr()
    assert "CPU" in cap.err and "s per 50k epoch" in cap.out and "% of the" in cap.out
    r = json.loads(js.read_text())
    assert r["device"] == "cpu" and r["images_per_s"] > 0 and r["gflop_per_view_image"] > 0
    assert r["target_s_per_epoch"] is None and 0 < r["eig_fraction_of_step"] < 1
