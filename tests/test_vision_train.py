"""End-to-end training on CPU: synthetic CIFAR-/STL-format files, the real CIFAR-10 fragment, metrics files,
exact kill-and-resume, and the GPU code paths (bf16 autocast, channels_last, torch.compile) exercised on CPU."""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from fragment import fragment_path
from ncspec.conformance.cli import main as vision_main
from ncspec.reference.vision.data import write_fake_cifar10, write_fake_stl10
from ncspec.reference.vision.train import TrainConfig, train

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(backbone="vgg11", width="tiny", proj_hidden=32, proj_out=16, device="cpu", progress=False, probe_iters=20)
TIMING = ("epoch_time_s", "images_per_s")


@pytest.fixture(scope="module")
def cifar_root(tmp_path_factory):
    return write_fake_cifar10(tmp_path_factory.mktemp("cifar"), n_train=100, n_test=40)


@pytest.fixture(scope="module")
def stl_root(tmp_path_factory):
    return write_fake_stl10(tmp_path_factory.mktemp("stl"), n_train=20, n_test=10, n_unlabeled=28)


def _strip(history):
    return [{k: v for k, v in r.items() if k not in TIMING} for r in history]


def test_train_command_on_cifar_format_files_writes_metrics(cifar_root, tmp_path):
    out = tmp_path / "run"
    code = vision_main(["train", "--dataset", "cifar10", "--data-root", str(cifar_root), "--method", "simsiam",
                        "--epochs", "3", "--device", "cpu", "--out", str(out), "--backbone", "vgg11", "--width", "tiny",
                        "--proj-hidden", "32", "--proj-out", "16", "--batch-size", "32", "--eval-every", "2",
                        "--probe-iters", "20"])
    assert code == 0
    doc = json.loads((out / "metrics.json").read_text())
    assert doc["schema"] == "ncspec.vision/1" and doc["status"] == "done" and doc["learner"] == "reference"
    assert [r["epoch"] for r in doc["history"]] == [1, 2, 3] and doc["steps_per_epoch"] == 3
    evals = [r for r in doc["history"] if "knn_acc" in r]
    assert [r["epoch"] for r in evals] == [2, 3]                   # every 2 epochs and at the end
    for key in ("knn_acc", "readout_acc", "probe_acc", "rankme", "participation_ratio", "normalized_std",
                "center_norm", "feature_rankme"):
        assert 0 <= doc["final"][key] < float("inf"), key
    assert all(r["loss"] == r["loss"] and r["train_normalized_std"] > 0 for r in doc["history"])
    assert [len(s["eig_corr"]) for s in doc["spectra"]] == [16, 16]
    assert doc["spectra"][0]["eig_corr"] == sorted(doc["spectra"][0]["eig_corr"], reverse=True)
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    assert len(rows) == 3 and {"loss", "lr", "knn_acc", "readout_train_acc"} <= set(rows[0])
    assert (out / "metrics.png").stat().st_size > 10_000 and (out / "ckpt.pt").is_file()
    assert not list(out.glob("*.tmp"))                             # atomic writes leave no temporaries


def test_train_on_stl_format_files_with_ema_uses_unlabeled_images(stl_root, tmp_path):
    doc = train(TrainConfig(dataset="stl10", data_root=str(stl_root), method="isoloss", ema=True, optimizer="lars",
                            lr=1.0, epochs=2, batch_size=16, out=str(tmp_path), eval_every=1, **TINY))
    assert doc["steps_per_epoch"] == (20 + 28) // 16 and doc["status"] == "done"
    assert doc["config"]["method_options"] is None and doc["history"][-1]["ema_momentum"] == pytest.approx(1.0)
    assert 0 <= doc["final"]["knn_acc"] <= 1 and len(doc["spectra"]) == 2
    assert all(0 <= r["readout_train_acc"] <= 1 for r in doc["history"])


def test_cifar10_fragment_knn_clearly_above_chance(tmp_path):
    """Real images: 3 epochs of IsoLoss (no EMA) with a tiny VGG11 on the 5,170-image fragment.

    Threshold 0.20 = twice chance (10 classes). With 1,017 test images the kNN accuracy of a chance-level
    encoder has standard deviation √(0.1·0.9/1017) ≈ 0.0094, so 0.20 is > 10 σ above chance. Measured on
    this setting: 0.26–0.31 (also with other seeds/losses), so the margin to the threshold is ≥ 6 points.
    NB the weighted kNN of the *untrained* tiny network is already 0.31: this checks that real images, labels,
    augmentation, training and evaluation fit together (a scrambled pipeline lands at chance), not that three
    CPU epochs beat random features.
    """
    frag = fragment_path()
    if frag is None:
        pytest.skip(
            "the CIFAR-10 fragment is not available (set NCSPEC_SHARED or provide ../shared/data/cifar10_fragment.npz)"
        )
    t = time.perf_counter()
    doc = train(TrainConfig(dataset=f"npz:{frag}", method="isoloss", epochs=3, batch_size=256, lr=0.06,
                            eval_every=3, out=str(tmp_path), **{**TINY, "proj_hidden": 128, "proj_out": 64}))
    knn = doc["final"]["knn_acc"]
    print(f"fragment: kNN {knn:.4f} readout {doc['final']['readout_acc']:.4f} probe {doc['final']['probe_acc']:.4f} "
          f"in {time.perf_counter() - t:.1f} s")
    assert knn >= 0.20
    assert doc["steps_per_epoch"] == 5170 // 256


@pytest.mark.parametrize("method, ema", [("isoloss", True), ("dino", False)])
def test_resume_continues_exactly(cifar_root, tmp_path, method, ema):
    """Trainer EMA target (IsoLoss) or a learner-owned teacher (DINO): both restored exactly."""
    kw = dict(dataset="cifar10", data_root=str(cifar_root), method=method, ema=ema, epochs=3, batch_size=32,
              eval_every=1, checkpoint_every=1, **TINY)
    a = train(TrainConfig(out=str(tmp_path / "a"), **kw), return_model=True)
    train(TrainConfig(out=str(tmp_path / "b"), **kw), stop_after_epoch=1)
    b = train(TrainConfig(out=str(tmp_path / "b"), resume=True, **kw), return_model=True)
    sa, sb = a["model"].state_dict(), b["model"].state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert _strip(a["history"]) == _strip(b["history"]) and a["spectra"] == b["spectra"]
    assert {k: v for k, v in a["final"].items() if "time" not in k} == {
        k: v for k, v in b["final"].items() if "time" not in k
    }
    with pytest.raises(ValueError, match="configuration differs"):
        train(TrainConfig(out=str(tmp_path / "b"), resume=True, **{**kw, "lr": 0.5}))


def test_kill_and_resume_reproduces_the_uninterrupted_run(cifar_root, tmp_path):
    """SIGKILL a training process after its first checkpoint; `--resume` finishes the run bit for bit."""
    args = ["train", "--dataset", "cifar10", "--data-root", str(cifar_root), "--method", "simsiam", "--epochs", "8",
            "--batch-size", "20", "--device", "cpu", "--backbone", "vgg11", "--width", "tiny", "--proj-hidden", "32",
            "--proj-out", "16", "--eval-every", "4", "--checkpoint-every", "1", "--probe-iters", "20", "--no-progress"]
    killed = tmp_path / "killed"
    # bit-for-bit needs the same intra-op thread count in both processes (reductions split by thread)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": str(torch.get_num_threads())}
    proc = subprocess.Popen([sys.executable, "-m", "ncspec.conformance.cli", *args, "--out", str(killed)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while not (killed / "ckpt.pt").is_file() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    done = json.loads((killed / "metrics.json").read_text())["history"]
    assert 1 <= len(done) < 8
    ref = train(TrainConfig(dataset="cifar10", data_root=str(cifar_root), method="simsiam", epochs=8, batch_size=20,
                            eval_every=4, checkpoint_every=1, out=str(tmp_path / "ref"), **TINY), return_model=True)
    assert vision_main([*args, "--out", str(killed), "--resume"]) == 0
    resumed = json.loads((killed / "metrics.json").read_text())
    assert _strip(resumed["history"]) == _strip(ref["history"])
    ck = torch.load(killed / "ckpt.pt", weights_only=False)
    sr = ref["model"].state_dict()
    assert all(torch.equal(ck["encoder"][k], sr[k]) for k in sr)


def test_gpu_code_paths_bf16_channels_last_compile_on_cpu(cifar_root, tmp_path):
    """bf16 autocast + channels_last + torch.compile (the 'eager' backend: Dynamo traces the step and the
    augmentation; inductor code generation is left to the GPU run) on a CIFAR ResNet-18, fast learner."""
    doc = train(TrainConfig(dataset="cifar10", data_root=str(cifar_root), method="simsiam", epochs=1, batch_size=32,
                            bf16=True, channels_last=True, compile=True, compile_backend="eager", learner="fast",
                            out=str(tmp_path), **{**TINY, "backbone": "resnet18"}))
    assert doc["learner"] == "fast" and doc["status"] == "done"
    assert doc["history"][0]["loss"] == doc["history"][0]["loss"]     # finite, not NaN
    assert 0 <= doc["final"]["knn_acc"] <= 1


def test_adapters_and_learned_predictors_train_through_the_protocol(cifar_root, tmp_path):
    from ncspec.conformance.contract.registry import load_adapter
    kw = dict(dataset="cifar10", data_root=str(cifar_root), epochs=1, batch_size=32, probe=False, **TINY)
    doc = train(
        TrainConfig(method="directpred", out=str(tmp_path / "a"), **kw), builder=load_adapter("reference").build
    )
    assert doc["learner"] == "adapter" and doc["status"] == "done"
    for method in ("byol", "dino", "barlow_twins"):     # own EMA target / teacher; a family without predictor
        doc = train(TrainConfig(method=method, out=str(tmp_path / method), **kw))
        assert doc["status"] == "done" and doc["history"][0]["loss"] == doc["history"][0]["loss"], method
    with pytest.raises(ValueError, match="keeps its own EMA target"):
        train(TrainConfig(method="byol", ema=True, out=str(tmp_path / "c"), **kw))


# --- untrusted and damaged checkpoints -------------------------------------------------------

class _RunsCode:
    """A pickle payload: unpickling it calls os.system (what a crafted checkpoint would do)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _tiny_run(cifar_root, out, **kw):
    base = dict(dataset="cifar10", data_root=str(cifar_root), method="simsiam", epochs=2, batch_size=32,
                eval_every=1, checkpoint_every=1, probe=False, out=str(out))
    return TrainConfig(**{**base, **TINY, **kw})


def test_resume_refuses_a_checkpoint_that_would_run_code(cifar_root, tmp_path):
    from ncspec.reference.vision.train import CheckpointError
    out, marker = tmp_path / "run", tmp_path / "pwned"
    out.mkdir()
    torch.save({"schema": "ncspec.vision.ckpt/1", "state": _RunsCode(marker)}, out / "ckpt.pt")
    with pytest.raises(CheckpointError, match=r"refusing to load .*ckpt\.pt.*GLOBAL posix\.system.*could run code"):
        train(_tiny_run(cifar_root, out, resume=True))
    assert not marker.exists(), "the crafted checkpoint ran code while it was loaded"


def test_resume_from_a_truncated_checkpoint_names_the_file_and_the_previous_one(cifar_root, tmp_path, capsys):
    out = tmp_path / "run"
    ref = train(_tiny_run(cifar_root, out))
    ckpt, prev = out / "ckpt.pt", out / "ckpt.prev.pt"
    assert prev.is_file(), "the atomic writer keeps the checkpoint before the current one"
    data = ckpt.read_bytes()
    ckpt.write_bytes(data[: len(data) - 10])          # today: OSError [Errno 22] from inside torch
    args = ["train", "--dataset", "cifar10", "--data-root", str(cifar_root), "--method", "simsiam", "--epochs", "2",
            "--batch-size", "32", "--device", "cpu", "--backbone", "vgg11", "--width", "tiny", "--proj-hidden", "32",
            "--proj-out", "16", "--eval-every", "1", "--checkpoint-every", "1", "--probe-iters", "20", "--no-probe",
            "--no-progress", "--out", str(out), "--resume"]
    assert vision_main(args) == 2
    err = capsys.readouterr().err
    assert f"cannot resume from {ckpt}: the file is damaged ({len(data) - 10} bytes" in err
    assert "truncated" in err and f"{prev} exists: move it to ckpt.pt" in err and f"delete {ckpt}" in err
    prev.replace(ckpt)                                 # the fix the message names: resume from the one before
    assert vision_main(args) == 0
    assert _strip(json.loads((out / "metrics.json").read_text())["history"]) == _strip(ref["history"])


def test_checkpoints_load_with_weights_only(cifar_root, tmp_path):
    """RNG states and learner state are tensors and plain containers: torch.load(weights_only=True) reads them."""
    train(_tiny_run(cifar_root, tmp_path, method="isoloss", ema=True, epochs=1))
    ck = torch.load(tmp_path / "ckpt.pt", weights_only=True)
    assert isinstance(ck["rng"]["numpy"]["keys"], torch.Tensor) and ck["learner"]["corr"][0] == "__object__"


# --- -o KEY=VALUE overrides one option --------------------------------------------------------

def test_option_overrides_one_default_and_keeps_the_others(cifar_root, tmp_path, capsys):
    from ncspec.reference import losses
    from ncspec.reference.vision.train import Trainer, default_method_options
    expected = {**default_method_options("simsiam", False), "stop_grad": "target"}
    assert expected["form"] == "cosine" and expected["normalize"] is True
    cfg = _tiny_run(cifar_root, tmp_path, epochs=1, method_options={"stop_grad": "target"}, progress=True)
    tr = Trainer(cfg)
    assert tr.method_options == expected
    assert tr.learner.criterion is losses.SIMSIAM[("cosine", "target")] and tr.learner.normalize is True
    doc = train(cfg)
    assert doc["method_options_used"] == expected
    assert json.loads((tmp_path / "metrics.json").read_text())["method_options_used"] == expected
    printed = " ".join(capsys.readouterr().err.split())      # the console wraps long lines
    assert "options: form='cosine' alpha=0.5 normalize=True eps=0.0 corr_ema=0.5 stop_grad='target'" in printed


def test_unknown_option_key_lists_the_valid_ones(cifar_root, tmp_path, capsys):
    args = ["train", "--dataset", "cifar10", "--data-root", str(cifar_root), "--method", "simsiam", "--epochs", "1",
            "--device", "cpu", "--backbone", "vgg11", "--width", "tiny", "--out", str(tmp_path), "--no-progress",
            "-o", "stop_gard=target"]
    assert vision_main(args) == 2
    err = capsys.readouterr().err
    assert "unknown option(s) ['stop_gard'] for method 'simsiam'; valid options are" in err
    assert "'stop_grad'" in err and "'corr_ema'" in err


def test_fix_pred_lr_keeps_the_predictor_at_the_base_rate(cifar_root):
    """``fix_pred_lr`` (SimSiam §4.1): the learner's own parameters (the MLP predictor) keep the base lr while
    the encoder's follow the cosine schedule; without it, one group follows the schedule."""
    from ncspec.reference.vision.train import Trainer
    kw = dict(dataset="cifar10", data_root=str(cifar_root), method="simsiam_mlp", epochs=2, batch_size=32,
              lr=0.1, probe=False, **TINY)
    tr = Trainer(TrainConfig(fix_pred_lr=True, **kw))
    tr.run_epoch(0)
    encoder, predictor = tr.opt.param_groups
    assert {id(p) for p in predictor["params"]} == {id(p) for p in tr.extra_params} and tr.extra_params
    assert predictor["lr"] == tr.base_lr and encoder["lr"] < tr.base_lr
    plain = Trainer(TrainConfig(fix_pred_lr=False, **kw))
    plain.run_epoch(0)
    assert len(plain.opt.param_groups) == 1 and plain.opt.param_groups[0]["lr"] == encoder["lr"]
