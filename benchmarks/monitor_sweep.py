"""False alarms and detection budgets of the collapse monitor, measured over seeds (a script, not a test).

    NCSPEC_THREADS=1 python benchmarks/monitor_sweep.py --seeds 5 --json sweep.json

Every run is `ncspec train`'s loop (tiny VGG11 on the CIFAR-10 fragment, CPU, the configuration of
tests/test_monitor_training.py) with the monitor observing every step. Healthy runs (SimSiam, BYOL, Barlow Twins,
VICReg) count as false alarms when any observation is flagged; broken runs (no stop-grad, predictor bypassed,
Barlow Twins without BatchNorm) report the step of the first flag. docs/monitor.md quotes the output.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_monitor_training import HEALTHY_RUNS, run

BROKEN_RUNS = {
    "simsiam without stop-grad": ("simsiam_mlp", {"stop_grad": "none"}, False, 0.06),
    "simsiam, predictor bypassed": ("simsiam_mlp", {"predictor": False}, False, 0.06),
    "barlow twins without BatchNorm": ("barlow_twins", {"lambda_offdiag": 1 / 32, "batchnorm": False}, False, 0.02),
}


def one(spec, seed, steps):
    t = time.perf_counter()
    doc = run(*spec, steps=steps, seed=seed)
    h = doc["monitor"]["history"]
    first = next((r for r in h if r["verdict"] != "healthy"), None)
    return dict(seed=seed, seconds=round(time.perf_counter() - t, 1), verdict=doc["monitor"]["verdict"]["state"],
                first_flag_step=None if first is None else first["step"],
                first_flag=None if first is None else first["verdict"],
                min_total_var=min(r["total_var"] for r in h), min_live_dims=min(r["live_dims"] for r in h),
                min_effective_rank=min(r["effective_rank"] for r in h), knn=doc["final"]["knn_acc"])


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--healthy-steps", type=int, default=64)
    ap.add_argument("--broken-steps", type=int, default=64)
    ap.add_argument("--only", nargs="*", default=None)
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("NCSPEC_THREADS", "1")))
    out = {}
    for group, runs, steps in (("healthy", HEALTHY_RUNS, a.healthy_steps), ("broken", BROKEN_RUNS, a.broken_steps)):
        for name, spec in runs.items():
            if a.only and name not in a.only:
                continue
            rows = [one(spec, s, steps) for s in range(a.seeds)]
            out[name] = dict(group=group, steps=steps, runs=rows)
            flagged = sum(r["first_flag"] is not None for r in rows)
            print(f"{group:8s} {name:32s} flagged {flagged}/{len(rows)}  first flag at "
                  f"{[r['first_flag_step'] for r in rows]}  verdicts {[r['verdict'] for r in rows]}  "
                  f"min 1-|s|^2 {min(r['min_total_var'] for r in rows):.3g}  "
                  f"min live {min(r['min_live_dims'] for r in rows)}  "
                  f"s/run {sum(r['seconds'] for r in rows) / len(rows):.0f}", flush=True)
            if a.json:
                Path(a.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
