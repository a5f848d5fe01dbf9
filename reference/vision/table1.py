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
import time
from dataclasses import dataclass, replace
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
    clock = _Progress(len(cells), len(devices), log)
    if len(devices) <= 1:
        out = []
        for i, c in enumerate(cells):
            log(f"[{i + 1}/{len(cells)}] {Path(c.out).name} on {c.device}")
            t0, ran = time.perf_counter(), _done(c) is None
            out.append(_timed_cell(c))
            clock.done(Path(c.out).name, time.perf_counter() - t0, ran)
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
            t0, ran = time.perf_counter(), _done(c) is None
            r = subprocess.run(
                [sys.executable, "-m", "ncspec.reference.vision.table1", "--cell", json.dumps(c.to_dict())],
                env=env,
                capture_output=True,
                text=True,
            )
            if r.returncode:
                errors.append(f"{Path(c.out).name} on {dev} failed (exit {r.returncode}):\n{r.stderr[-3000:]}")
            else:
                clock.done(Path(c.out).name, time.perf_counter() - t0, ran)

    threads = [threading.Thread(target=worker, args=(d,)) for d in devices]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError("\n\n".join(errors))
    return [json.loads((Path(c.out) / "metrics.json").read_text()) for c in cells]


class _Progress:
    """Logs each finished cell with its wall time and the grid's remaining wall time (the cells run so far: their
    mean wall time × the cells left ÷ the workers)."""

    def __init__(self, n: int, workers: int, log):
        self.n, self.workers, self.log, self.finished, self.t0 = n, max(1, workers), log, 0, time.perf_counter()
        self.walls: list[float] = []
        self.lock = threading.Lock()

    def done(self, name: str, wall: float, ran: bool = True) -> None:
        with self.lock:
            self.finished += 1
            if ran:
                self.walls.append(wall)
            mean = statistics.fmean(self.walls) if self.walls else 0.0
            left = mean * (self.n - self.finished) / self.workers
            self.log(f"  done {name} in {wall / 60:.1f} min ({self.finished}/{self.n}; "
                     f"{(time.perf_counter() - self.t0) / 60:.1f} min so far, ≈ {left / 60:.0f} min left)")


def _timed_cell(cfg: TrainConfig) -> dict:
    """:func:`run_cell`, adding this process's user CPU and wall seconds to the cell's ``cpu_time.json``."""
    import resource
    u0, w0 = resource.getrusage(resource.RUSAGE_SELF).ru_utime, time.perf_counter()
    done = _done(cfg)
    if done:
        return done
    doc = run_cell(cfg)
    if cfg.out:
        _record_cpu(cfg.out, resource.getrusage(resource.RUSAGE_SELF).ru_utime - u0, time.perf_counter() - w0)
    return doc


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


# --- Table 1 in miniature: ``ncspec reproduce table1 --scale cpu`` (and ``dry``, its plumbing check) ---------------

@dataclass(frozen=True)
class SmallScale:
    """A reduced Table 1 grid: the no-EMA comparison (N4's) first, the EMA arm only when asked (``ema_arm``)."""
    name: str
    width: str                 # backbone width (models.WIDTHS)
    proj_hidden: int
    proj_out: int
    epochs: int
    batch_size: int
    warmup_epochs: float
    eval_every: int
    checkpoint_every: int
    seeds: int
    train_images: int | None   # a CIFAR-10 root: its first N images of every split (an .npz: all of it)
    probe_iters: int
    ema_arm: bool = False


#: ``cpu``: sized for a 2-core CPU (≤ 45 min for the grid; README "Table 1 in miniature" has the measured figures).
#: * images 32 px, as the paper's: VGG11's five max-pools halve 32 px to 1 px, so smaller images would vanish;
#: * width 1/8 (64 features) and a 512 → 128 projector: a 1/4-width VGG11 costs ≈ 3× the CPU per step, and the
#:   grid must fit the budget with ≥ 3 seeds;
#: * the CIFAR-10 fragment's 5,170 training images (or a CIFAR-10 root's first 5,170), batch 256 (Table 1's):
#:   20 steps per epoch; measured user CPU of a 40-epoch cell on one thread (2-core machine, shared, evaluations and
#:   the final probe included): 213–218 s without EMA, 275–276 s with the EMA target and LARS;
#: * 40 epochs (800 steps): in a 40-epoch pilot (seed 0) the no-EMA gap had opened by epoch 5 (kNN 31 vs 22 %) and
#:   held to epoch 25 (kNN 37 vs 22 %, readout 36 vs 10 %; the SimSiam loss's RankMe 3, IsoLoss's 30);
#: * 3 seeds (a mean ± std needs ≥ 3) × 2 losses × with and without EMA = 12 cells ≈ 22 + 28 min of CPU, two cells
#:   at a time on the two cores: ≈ 25 min on an idle machine; the no-EMA cells run first (--no-ema: only them);
#: * the paper's optimisers (no EMA: SGD lr 0.1, momentum 0.9; EMA: LARS lr 1.0, target EMA 0.99 → 1; weight decay
#:   1e-4), warm-up scaled from 10 of 800 epochs to 2 of 40.
SMALL_SCALES = {
    "cpu": SmallScale(name="cpu", width="tiny", proj_hidden=512, proj_out=128, epochs=40, batch_size=256,
                      warmup_epochs=2, eval_every=10, checkpoint_every=5, seeds=3, train_images=5170,
                      probe_iters=100, ema_arm=True),
    # plumbing only (CI): a few images, one epoch; the numbers mean nothing
    "dry": SmallScale(name="dry", width="tiny", proj_hidden=32, proj_out=16, epochs=1, batch_size=16,
                      warmup_epochs=0, eval_every=1, checkpoint_every=1, seeds=2, train_images=32, probe_iters=5),
}


def small_dataset(data_root: str) -> tuple[str, str | None]:
    """``(dataset, data_root)`` of a reduced grid: ``npz:PATH`` for an ``.npz`` (e.g. the CIFAR-10 fragment), else
    ``cifar10`` in the folder holding ``cifar-10-batches-py/``."""
    p = Path(data_root).expanduser()
    return (f"npz:{p}", None) if p.suffix == ".npz" else ("cifar10", str(p))


def small_grid(sc: SmallScale, seeds: int | None = None, ema: bool | None = None) -> list[tuple]:
    """``(loss, ema, seed)`` of the reduced grid, the no-EMA cells first (N4's comparison lands first)."""
    arms = (False, True) if (sc.ema_arm if ema is None else ema) else (False,)
    return [(loss, e, s) for e in arms for s in range(sc.seeds if seeds is None else seeds) for loss in LOSSES]


def small_cell_config(sc: SmallScale, loss: str, ema: bool, seed: int, *, data_root: str, out: str,
                      device: str = "cpu") -> TrainConfig:
    """One cell of the reduced grid: Table 1's CIFAR-10 protocol (:func:`cell_config`) at ``sc``'s size."""
    dataset, root = small_dataset(data_root)
    cfg = cell_config("cifar10", loss, ema, seed, data_root=root, out=out, width=sc.width,
                      proj_hidden=sc.proj_hidden, proj_out=sc.proj_out, epochs=sc.epochs, batch_size=sc.batch_size,
                      eval_every=sc.eval_every, checkpoint_every=sc.checkpoint_every, probe_iters=sc.probe_iters,
                      channels_last=True, device=device)
    limit = sc.train_images if (dataset == "cifar10" or sc.name == "dry") else None   # an .npz: all of it
    return replace(cfg, dataset=dataset, limit=limit, warmup_epochs=sc.warmup_epochs)


def run_small(sc: SmallScale, data_root: str, out: str, devices: list[str], *, seeds: int | None = None,
              ema: bool | None = None, log=print) -> tuple[list[dict], dict]:
    """Run (or resume) the reduced grid; ``(cell documents, small_summary)``."""
    cells = [small_cell_config(sc, loss, e, s, data_root=data_root, out=out, device="cpu")
             for loss, e, s in small_grid(sc, seeds, ema)]
    docs = run_grid(cells, devices, log=log)
    return docs, small_summary(docs)


def cpu_seconds(out: str | Path) -> dict | None:
    """The user CPU and wall seconds a cell's worker processes recorded (summed over resumes), or ``None``."""
    p = Path(out) / "cpu_time.json"
    return json.loads(p.read_text()) if p.is_file() else None


def _record_cpu(out: str | Path, user_s: float, wall_s: float) -> None:
    prev = cpu_seconds(out) or {"user_s": 0.0, "wall_s": 0.0}
    Path(out).mkdir(parents=True, exist_ok=True)
    (Path(out) / "cpu_time.json").write_text(json.dumps({"user_s": prev["user_s"] + user_s,
                                                         "wall_s": prev["wall_s"] + wall_s}))


def small_summary(docs: list[dict]) -> dict:
    """Per arm (EMA or not) and loss: mean ± std over seeds, the per-seed values, the paper's CIFAR-10 figure."""
    out: dict = {}
    for d in docs:
        c = d["config"]
        cell = out.setdefault((c["method"], bool(c["ema"])), {"seeds": [], "paper": PAPER[("cifar10", c["method"],
                                                                                               bool(c["ema"]))]})
        cell["seeds"].append(c["seed"])
        for m in ("readout_acc", "knn_acc", "probe_acc"):
            if d["final"].get(m) is not None:
                cell.setdefault("per_seed_" + m, []).append(100 * d["final"][m])
    for cell in out.values():
        for m in ("readout_acc", "knn_acc", "probe_acc"):
            v = cell.get("per_seed_" + m, [])
            if v:
                cell[m] = (statistics.fmean(v), statistics.stdev(v) if len(v) > 1 else 0.0, len(v))
    return out


def small_gap(summary: dict, ema: bool, metric: str) -> dict | None:
    """IsoLoss − SimSiam loss (points): the per-seed differences (same seed, same initialisation), their mean, and
    the larger of the two losses' standard deviations over seeds (the spread the gap is judged against)."""
    a, b = summary.get(("isoloss", ema), {}), summary.get(("simsiam", ema), {})
    if metric not in a or metric not in b:
        return None
    by_seed = lambda c: dict(zip(c["seeds"], c["per_seed_" + metric]))
    ia, ib = by_seed(a), by_seed(b)
    diffs = [ia[s] - ib[s] for s in sorted(set(ia) & set(ib))]
    return dict(diffs=diffs, mean=statistics.fmean(diffs) if diffs else float("nan"),
                spread=max(a[metric][1], b[metric][1]))


def format_small_table(summary: dict, sc: SmallScale, data: str) -> str:
    """Ours (readout, kNN, probe; mean ± std over seeds) beside the paper's CIFAR-10 readout, per arm."""
    arms = sorted({e for _, e in summary}, key=bool)
    head = ["", *[f"{'EMA' if e else 'no EMA'} (ours)" for e in arms], *[f"{'EMA' if e else 'no EMA'} (paper)"
                                                                        for e in arms]]
    lines = []
    for loss in LOSSES:
        name = "SimSiam loss" if loss == "simsiam" else "IsoLoss"
        for metric, label in (("readout_acc", "readout"), ("knn_acc", "kNN"), ("probe_acc", "probe")):
            row = [f"{name} ({label})"]
            for e in arms:
                c = summary.get((loss, e), {})
                row.append(f"{c[metric][0]:.1f} ± {c[metric][1]:.1f} (n={c[metric][2]})" if metric in c else "—")
            for e in arms:
                p = PAPER[("cifar10", loss, e)]
                row.append(f"{p[0]:.1f} ± {p[1]:.1f}" if metric == "readout_acc" else "")
            lines.append(row)
    widths = [max(len(str(r[i])) for r in [head, *lines]) for i in range(len(head))]
    fmt = lambda r: " | ".join(str(x).ljust(w) for x, w in zip(r, widths))
    text = [f"Table 1 in miniature ({sc.name} scale: VGG11 at width {sc.width}, projector {sc.proj_hidden} → "
            f"{sc.proj_out}, {sc.epochs} epochs, batch {sc.batch_size}; {data}); accuracy %, mean ± std over seeds",
            fmt(head), "-+-".join("-" * w for w in widths), *map(fmt, lines)]
    for e in arms:
        for metric, label in (("readout_acc", "readout"), ("knn_acc", "kNN"), ("probe_acc", "probe")):
            g = small_gap(summary, e, metric)
            if g:
                text.append(f"IsoLoss − SimSiam loss, {'EMA' if e else 'no EMA'}, {label}: per seed "
                            f"{', '.join(f'{d:+.1f}' for d in g['diffs'])} (mean {g['mean']:+.1f}; the larger "
                            f"std over seeds {g['spread']:.1f}); paper "
                            + (f"{PAPER[('cifar10', 'isoloss', e)][0] - PAPER[('cifar10', 'simsiam', e)][0]:+.1f}"
                               if metric == "readout_acc" else "—"))
    return "\n".join(text)


def _main(argv=None) -> int:
    import argparse
    ap = argparse.ArgumentParser(description="run one Table 1 cell (used by run_grid's worker processes)")
    ap.add_argument("--cell", required=True, help="TrainConfig as JSON")
    a = ap.parse_args(argv)
    from .train import TrainConfig
    _timed_cell(TrainConfig(**json.loads(a.cell)))
    return 0


if __name__ == "__main__":
    sys.exit(_main())
