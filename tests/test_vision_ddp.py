"""Data parallelism on CPU: torchrun, 2 processes, gloo — the same run as one process on the global batch."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from ncspec.reference.data_parallel import free_port
from ncspec.reference.vision.data import write_fake_cifar10
from ncspec.reference.vision.models import make_encoder
from ncspec.reference.vision.train import TrainConfig, train

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
                                reason="torch.distributed with the gloo backend is not available")
ARGS = ["--dataset", "cifar10", "--backbone", "vgg11", "--width", "tiny", "--proj-hidden", "32", "--proj-out", "16",
        "--batch-size", "20", "--device", "cpu", "--no-progress", "--seed", "3"]
TINY = dict(dataset="cifar10", backbone="vgg11", width="tiny", proj_hidden=32, proj_out=16, batch_size=20,
            device="cpu", progress=False, seed=3)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return write_fake_cifar10(tmp_path_factory.mktemp("cifar"), n_train=100, n_test=40)


def torchrun(args, out: Path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(free_port()), "-m", "ncspec.conformance.cli", "train", *args, "--out", str(out)]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-4000:]
    return json.loads((out / "metrics.json").read_text())


def test_one_step_update_equals_the_single_process_global_batch_update(root, tmp_path):
    """Plain SGD (no momentum, no weight decay), one step: θ1 − θ0 = −lr ∇L(global batch) in both runs.
    A gradient off by 1/world_size, per-rank predictors or per-rank BatchNorm statistics would all fail."""
    step = ["--data-root", str(root), "--max-steps", "1", "--epochs", "1", "--lr", "25.6", "--momentum", "0",
            "--weight-decay", "0", "--no-probe", "--method", "isoloss"]
    ddp = torchrun([*ARGS, *step], tmp_path / "ddp")
    assert ddp["world_size"] == 2 and ddp["final"]["ddp_max_param_diff"] == 0.0
    single = train(TrainConfig(data_root=str(root), max_steps=1, epochs=1, lr=25.6, momentum=0.0, weight_decay=0.0,
                               probe=False, method="isoloss", out=str(tmp_path / "one"), **TINY), return_model=True)
    torch.manual_seed(3)
    theta0 = make_encoder("vgg11", 32, 16, "tiny").state_dict()
    th_ddp = torch.load(tmp_path / "ddp" / "ckpt.pt", weights_only=False)["encoder"]
    th_one = single["model"].state_dict()
    names = [n for n, _ in single["model"].named_parameters()]
    d_one = torch.cat([(th_one[n] - theta0[n]).flatten() for n in names])
    d_ddp = torch.cat([(th_ddp[n] - theta0[n]).flatten() for n in names])
    # Measured: relative L2 error 1.9e-4 (float32 rounding of a different batch split, amplified where
    # ReLU / max-pool routing sits near ties in this tiny VGG; 1 vs 2 threads alone: 1.4e-6). The bugs this
    # guards against are far away: per-rank BatchNorm statistics (--no-sync-bn) 1.24, a gradient off by
    # 1/world_size 0.5.
    assert d_one.norm() > 1.0
    assert (d_ddp - d_one).norm() <= 2e-3 * d_one.norm()
    # running statistics of the synchronised BatchNorm are those of the global batch too
    bn = [k for k in th_one if k.endswith("running_var")]
    assert all(torch.allclose(th_ddp[k], th_one[k], rtol=1e-4, atol=1e-6) for k in bn)


def test_ranks_end_identical_and_follow_the_single_process_run(root, tmp_path):
    """Two epochs with an EMA target and the closed-form predictor: both ranks hold identical weights at the end
    (max |θ_rank − θ_rank0| = 0, measured by the trainer), and the loss curve follows the single-process one."""
    args = [*ARGS, "--data-root", str(root), "--epochs", "2", "--method", "isoloss", "--ema", "--probe-iters", "10"]
    ddp = torchrun(args, tmp_path / "ddp")
    assert ddp["final"]["ddp_max_param_diff"] == 0.0
    one = train(TrainConfig(data_root=str(root), epochs=2, method="isoloss", ema=True, probe_iters=10,
                            out=str(tmp_path / "one"), **TINY))
    # This tiny run is chaotic: scaling the single-process initial weights by (1 + 1e-7) moves the per-step
    # losses by ~1e-6 at step 2, ~1e-3 at step 3 and several % by step 10 — the same divergence the
    # data-parallel run shows (measured). So only epoch 1 (steps 1–5) is compared, at 1 %; the one-step test
    # above is the precise check.
    assert abs(ddp["history"][0]["loss"] - one["history"][0]["loss"]) <= 1e-2 * abs(one["history"][0]["loss"])
    assert ddp["steps_per_epoch"] == one["steps_per_epoch"] == 5
