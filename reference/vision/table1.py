"""Halvagal et al. 2022, Table 1: SimSiam loss / IsoLoss × EMA / no EMA × CIFAR-10 / STL-10 (N4: its no-EMA gap).

Every cell is an independent :func:`ncspec.reference.vision.train.train` run; ``run_grid`` runs them in
this process (one device) or spreads them over several devices (one worker process per device,
a shared queue). Finished cells (``metrics.json`` with status "done") are not run again, and an
interrupted cell resumes from its checkpoint.
"""
from __future__ import annotations

import json
import os
import queue
import statistics
import subprocess
import sys
import threading
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:                      # torch is imported only when a cell is built or run
    from .train import TrainConfig

#: Halvagal et al. 2022, Table 1: linear readout accuracy (%) ± std over four seeds.
PAPER = {
    ("cifar10", "simsiam", True): (74.0, 0.6), ("cifar10", "simsiam", False): (59.9, 2.1),
    ("stl10", "simsiam", True): (63.8, 1.2), ("stl10", "simsiam", False): (33.0, 1.9),
    ("cifar10", "isoloss", True): (72.5, 0.4), ("cifar10", "isoloss", False): (73.5, 0.5),
    ("stl10", "isoloss", True): (67.1, 0.4), ("stl10", "isoloss", False): (65.7, 0.8),
}
EPOCHS = {"cifar10": 800, "stl10": 100}
LOSSES = ("simsiam", "isoloss")

# Wall-clock model (an ESTIMATE from speed figures measured on one H100, not a measurement of this
# grid): the GPU-resident VGG11 pipeline ran 0.55–0.78 s per 50k-image CIFAR epoch at batch 512
# (no BN); we take 1.0 s for batch 256 with BN, +1/3 for the EMA target's extra forward per view
# (a training step costs ≈ 3 forwards), STL-10 at 96 px costs 2.75/0.306 ≈ 9× per image on 105k images per epoch.
SEC_PER_CIFAR_EPOCH = 1.0
EMA_FACTOR = 4.0 / 3.0
STL_FACTOR = (2.75 / 0.306) * (105_000 / 50_000)


def wallclock_estimate(seeds: int = 4) -> dict:
    """Hours on one H100 for the full grid (estimate; see the constants above)."""
    per = {}
    for ds, ep in EPOCHS.items():
        for ema in (False, True):
            s = ep * SEC_PER_CIFAR_EPOCH * (STL_FACTOR if ds == "stl10" else 1.0) * (EMA_FACTOR if ema else 1.0)
            per[(ds, ema)] = s
    total = sum(per.values()) * len(LOSSES) * seeds
    return dict(per_run_min={f"{d} {'EMA' if e else 'no EMA'}": round(s / 60, 1) for (d, e), s in per.items()},
                total_h=total / 3600)


def cell_config(dataset: str, loss: str, ema: bool, seed: int, *, data_root: str | None, out: str,
                **overrides) -> TrainConfig:
    """The full-data protocol of one cell (see ``ncspec reproduce table1 --help``)."""
    from .train import TrainConfig, default_method_options
    if ema:   # the IsoLoss authors' EMA configuration: LARS lr 1.0, target EMA 0.99 → 1
        opt = dict(optimizer="lars", lr=1.0, ema=True, ema_momentum=0.99)
    else:     # without EMA: SGD lr 0.1, momentum 0.9, the target is the online network
        opt = dict(optimizer="sgd", lr=0.1, ema=False)
    cfg = TrainConfig(dataset=dataset, data_root=data_root, method=loss,
                      method_options=default_method_options(loss, ema), backbone="vgg11", width="full",
                      proj_hidden=4096, proj_out=256, epochs=EPOCHS[dataset], batch_size=256,
                      momentum=0.9, weight_decay=1e-4, warmup_epochs=10, eval_every=50 if dataset == "cifar10" else 10,
                      seed=seed, out=str(Path(out) / cell_name(dataset, loss, ema, seed)), checkpoint_every=10,
                      resume=True, progress=False, **opt)
    return replace(cfg, **{k: v for k, v in overrides.items() if v is not None})


def cell_name(dataset: str, loss: str, ema: bool, seed: int) -> str:
    return f"{dataset}-{loss}-{'ema' if ema else 'noema'}-s{seed}"


def grid(datasets, seeds: int):
    return [(d, l, e, s) for d in datasets for l in LOSSES for e in (True, False) for s in range(seeds)]


def _done(cfg: TrainConfig) -> dict | None:
    p = Path(cfg.out) / "metrics.json"
    if p.is_file():
        doc = json.loads(p.read_text())
        if doc.get("status") == "done" and doc.get("final"):
            return doc
    return None


def run_cell(cfg: TrainConfig) -> dict:
    from .train import train
    return _done(cfg) or train(cfg)


def run_grid(cells: list[TrainConfig], devices: list[str], log=print) -> list[dict]:
    """Run every cell; with several devices, one worker process per device pulls from a queue."""
    if len(devices) <= 1:
        out = []
        for i, c in enumerate(cells):
            log(f"[{i + 1}/{len(cells)}] {Path(c.out).name} on {c.device}")
            out.append(run_cell(c))
        return out
    q: queue.Queue = queue.Queue()
    for i, c in enumerate(cells):
        q.put((i, c))
    errors = []

    root = str(Path(__file__).resolve().parents[2])

    def worker(dev: str):
        env = dict(os.environ)
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        device = dev
        if dev.startswith("cuda"):
            env["CUDA_VISIBLE_DEVICES"] = dev.split(":")[1] if ":" in dev else "0"
            device = "cuda"
        else:                                   # CPU workers share the cores
            env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // len(devices)))
        while True:
            try:
                i, c = q.get_nowait()
            except queue.Empty:
                return
            c = replace(c, device=device)
            log(f"[{i + 1}/{len(cells)}] {Path(c.out).name} on {dev}")
            r = subprocess.run(
                [sys.executable, "-m", "ncspec.reference.vision.table1", "--cell", json.dumps(c.to_dict())],
                env=env,
                capture_output=True,
                text=True,
            )
            if r.returncode:
                errors.append(f"{Path(c.out).name} on {dev} failed (exit {r.returncode}):\n{r.stderr[-3000:]}")

    threads = [threading.Thread(target=worker, args=(d,)) for d in devices]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError("\n\n".join(errors))
    return [json.loads((Path(c.out) / "metrics.json").read_text()) for c in cells]


def summarize(docs: list[dict]) -> dict:
    """Mean ± std (over seeds) of the final online readout, kNN and linear-probe accuracies (%)."""
    rows: dict = {}
    for d in docs:
        c = d["config"]
        key = (c["dataset"], c["method"], bool(c["ema"]))
        rows.setdefault(key, []).append(d["final"])
    out = {}
    for key, finals in rows.items():
        cell = {}
        for m in ("readout_acc", "knn_acc", "probe_acc"):
            v = [100 * f[m] for f in finals if f.get(m) is not None]
            if v:
                cell[m] = (statistics.fmean(v), statistics.stdev(v) if len(v) > 1 else 0.0, len(v))
        cell["paper"] = PAPER.get(key)
        out[key] = cell
    return out


def format_table(summary: dict) -> str:
    """Plain-text table: ours (online readout, as the paper) beside the paper, per column."""
    cols = [(d, e) for d in ("cifar10", "stl10") for e in (True, False)]
    head = ["", *[f"{'CIFAR-10' if d == 'cifar10' else 'STL-10'} {'EMA' if e else 'no EMA'}" for d, e in cols]]
    lines = []
    for loss in LOSSES:
        for metric, label in (("readout_acc", "readout"), ("knn_acc", "kNN"), ("probe_acc", "probe")):
            row = [f"{'SimSiam loss' if loss == 'simsiam' else 'IsoLoss'} ({label})"]
            for d, e in cols:
                c = summary.get((d, loss, e), {})
                row.append(f"{c[metric][0]:.1f} ± {c[metric][1]:.1f} (n={c[metric][2]})" if metric in c else "—")
            lines.append(row)
        row = [f"{'SimSiam loss' if loss == 'simsiam' else 'IsoLoss'} (paper)"]
        for d, e in cols:
            p = PAPER[(d, loss, e)]
            row.append(f"{p[0]:.1f} ± {p[1]:.1f}")
        lines.append(row)
    widths = [max(len(str(r[i])) for r in [head, *lines]) for i in range(len(head))]
    fmt = lambda r: " | ".join(str(x).ljust(w) for x, w in zip(r, widths))
    return "\n".join([fmt(head), "-+-".join("-" * w for w in widths), *map(fmt, lines)])


def _main(argv=None) -> int:
    import argparse
    ap = argparse.ArgumentParser(description="run one Table 1 cell (used by run_grid's worker processes)")
    ap.add_argument("--cell", required=True, help="TrainConfig as JSON")
    a = ap.parse_args(argv)
    from .train import TrainConfig
    run_cell(TrainConfig(**json.loads(a.cell)))
    return 0


if __name__ == "__main__":
    sys.exit(_main())
