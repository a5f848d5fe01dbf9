"""A labelled benchmark of collapse detectors (``ncspec diagnose --benchmark``): ncspec's monitor, MONAI's effective
rank, stable-pretraining's RankMe and LiDAR, lightly's std of l2-normalised embeddings, on hand-written SimSiam, BYOL,
Barlow Twins and VICReg runs with and without output BatchNorm (healthy, complete, dimensional, diverging). The
network, views and data are those of :mod:`ncspec.conformance.monitor.handwritten_simsiam`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from ...reference.methods.center import neg_cos
from ...reference.monitor import CollapseMonitor
from .handwritten_simsiam import conv_net, load_images, simple_views, simsiam_predictor, simsiam_projector

# --- the labelled benchmark of collapse detectors ---------------------------------------------------------------

HEALTHY_LABEL, COMPLETE_LABEL, DIMENSIONAL_LABEL, DIVERGING_LABEL = ("healthy", "complete collapse",
                                                                     "dimensional collapse", "diverging")
#: a fault that is not (yet) a collapse: BYOL's target frozen at its initialisation (m = 1); only a detector that
#: sees the target can name it (ncspec's monitor: a WARNING of its verdict)
FROZEN_LABEL = "frozen target"
LABELS = (COMPLETE_LABEL, DIMENSIONAL_LABEL, DIVERGING_LABEL, FROZEN_LABEL)


@dataclass(frozen=True)
class RunSpec:
    """One labelled configuration of the benchmark: ``method`` (simsiam, byol, barlow_twins, vicreg), ``fault``
    (None, ``no_stop_grad``, ``predictor_bypassed``, ``no_variance``, ``no_offdiag``, ``frozen_target``), the output
    BatchNorm, the learning rate."""

    name: str
    label: str
    method: str
    out_bn: bool
    fault: str | None = None
    lr: float = 0.1


#: the labelled runs (label = what the configuration is known to do: J1/J2/H2 for the faults, the step size for
#: divergence; a run whose label is a collapse counts as detected when a detector fires at all)
BENCH_RUNS = (
    RunSpec("SimSiam, output BN", HEALTHY_LABEL, "simsiam", True),
    RunSpec("SimSiam, no output BN", HEALTHY_LABEL, "simsiam", False),
    RunSpec("BYOL, output BN", HEALTHY_LABEL, "byol", True),
    RunSpec("BYOL, no output BN", HEALTHY_LABEL, "byol", False),
    RunSpec("Barlow Twins (lightly loss)", HEALTHY_LABEL, "barlow_twins", False, lr=0.02),
    RunSpec("VICReg (lightly loss)", HEALTHY_LABEL, "vicreg", False, lr=0.02),
    RunSpec("SimSiam no stop-grad, no output BN", COMPLETE_LABEL, "simsiam", False, "no_stop_grad"),
    RunSpec("SimSiam predictor bypassed, no output BN", COMPLETE_LABEL, "simsiam", False, "predictor_bypassed"),
    RunSpec("VICReg without variance term", COMPLETE_LABEL, "vicreg", False, "no_variance", lr=0.02),
    RunSpec("SimSiam no stop-grad, output BN", DIMENSIONAL_LABEL, "simsiam", True, "no_stop_grad"),
    RunSpec("BYOL target = online (no EMA, no stop-grad), output BN", DIMENSIONAL_LABEL, "byol", True,
            "no_stop_grad"),
    RunSpec("VICReg lr 1.0 (lightly loss)", DIVERGING_LABEL, "vicreg", False, lr=1.0),
    RunSpec("Barlow Twins without off-diagonal term (λ = 0)", DIMENSIONAL_LABEL, "barlow_twins", False, "no_offdiag",
            lr=0.02),
    RunSpec("BYOL with a frozen target (m = 1), no output BN", FROZEN_LABEL, "byol", False, "frozen_target"),
    RunSpec("VICReg lr 2.0 (lightly loss)", DIVERGING_LABEL, "vicreg", False, lr=2.0),
)


def _loss_fn(spec: RunSpec):
    if spec.method == "barlow_twins":
        from lightly.loss import BarlowTwinsLoss
        return BarlowTwinsLoss(lambda_param=0.0 if spec.fault == "no_offdiag" else 1 / 64)
    if spec.method == "vicreg":
        from lightly.loss import VICRegLoss
        return VICRegLoss(mu_param=0.0 if spec.fault == "no_variance" else 25.0)
    return None


def train_run(spec: RunSpec, *, seed: int, steps: int, images: Tensor, on_step, dim: int = 64, batch: int = 64,
              ema: float = 0.99):
    """Train one labelled configuration for ``steps`` steps and call ``on_step(step, z1, z2, loss, f, target)`` after
    each (``f`` the online encoder, for detectors that embed extra views; ``target`` BYOL's EMA target or None).
    Stops at the first non-finite loss."""
    import copy
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    f = nn.Sequential(conv_net(), simsiam_projector(64, dim, spec.out_bn))
    h = simsiam_predictor(dim, 16) if spec.method in ("simsiam", "byol") else None
    target = copy.deepcopy(f) if spec.method == "byol" and spec.fault in (None, "frozen_target") else None
    ema = 1.0 if spec.fault == "frozen_target" else ema
    params = list(f.parameters()) + ([] if h is None else list(h.parameters()))
    opt = torch.optim.SGD(params, lr=spec.lr, momentum=0.9, weight_decay=5e-4)
    crit = _loss_fn(spec)
    for step in range(steps):
        xb = images[torch.randint(0, images.shape[0], (batch,), generator=g)]
        x1, x2 = simple_views(xb, g), simple_views(xb, g)
        z1, z2 = f(x1), f(x2)
        if crit is not None:
            loss = crit(z1, z2)
        else:
            p1, p2 = (z1, z2) if spec.fault == "predictor_bypassed" else (h(z1), h(z2))
            if target is not None:
                with torch.no_grad():
                    t1, t2 = target(x1), target(x2)
            elif spec.fault == "no_stop_grad":
                t1, t2 = z1, z2
            else:
                t1, t2 = z1.detach(), z2.detach()
            loss = neg_cos(p1, t2) / 2 + neg_cos(p2, t1) / 2
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if target is not None:
            with torch.no_grad():
                for pt, po in zip(target.parameters(), f.parameters()):
                    pt.mul_(ema).add_(po, alpha=1 - ema)
        on_step(step, z1.detach(), z2.detach(), loss.detach(), f, target)
        if not torch.isfinite(loss):
            break


class Detector:
    """A collapse detector: ``update(step, z1, z2, loss, f)`` per step; ``first`` the step it first fired (or None)
    and ``kind`` what it said then. Every threshold detector fires after ``patience`` consecutive readings past its
    threshold (the monitor's own patience, 3), so latencies compare like with like."""

    name = ""
    rule = ""
    patience = 3

    def __init__(self):
        self.first, self.kind, self._run, self.values = None, None, 0, []

    def _reading(self, step, value, collapsed: bool, kind: str = "collapse"):
        self.values.append((step, value))
        self._run = self._run + 1 if collapsed else 0
        if self._run >= self.patience and self.first is None:
            self.first, self.kind = step, kind


class NcspecMonitor(Detector):
    name, rule = "ncspec CollapseMonitor", "its verdict (default Thresholds)"

    def __init__(self, method):
        super().__init__()
        self.monitor = CollapseMonitor(mode="record", method=method)

    def update(self, step, z1, z2, loss, f, target=None):
        ema = {} if target is None else dict(online=f, target=target)
        self.monitor.observe(z1, z2, step=step, loss=loss, **ema)

    def finish(self):
        self.monitor.report()
        v = self.monitor.first_flag()
        w = self.monitor.first_warning()
        if v is not None:
            self.first, self.kind = v.step, v.state
        elif w is not None:                                  # a WARNING (frozen target) without a collapse
            self.first, self.kind = w.step, FROZEN_LABEL
        self.values = [(h["step"], h["effective_rank"]) for h in self.monitor.history]


class MonaiEffectiveRank(Detector):
    name, rule = "MONAI EmbeddingCollapseMetric", "effective_rank_score > 0.9 (eff. rank < 10 % of min(N − 1, D))"

    def __init__(self):
        super().__init__()
        from monai.metrics import EmbeddingCollapseMetric
        self.metric = EmbeddingCollapseMetric(reduction="max", include_indicators=["effective_rank"])

    def update(self, step, z1, z2, loss, f, target=None):
        if not torch.isfinite(z1).all():
            return self._reading(step, math.nan, False)
        score = float(self.metric(embeddings=z1)["effective_rank_score"])
        self._reading(step, score, score > 0.9)


class _Logged:
    """The ``pl_module`` stand-in a stable-pretraining callback logs into (``pl_module.log(name, value)``)."""

    def __init__(self):
        self.logged = {}

    def log(self, name, value, **kw):
        self.logged[name] = value


class SptRankMe(Detector):
    name, rule = "stable-pretraining RankMe", "RankMe < 0.1 · M"

    def __init__(self, dim):
        super().__init__()
        from types import SimpleNamespace

        from stable_pretraining.callbacks import RankMe
        self.cb = RankMe(name="rankme", target="z", queue_length=64, target_shape=dim, verbose=False)
        self.dim, self._ns = dim, SimpleNamespace

    def update(self, step, z1, z2, loss, f, target=None):
        if not torch.isfinite(z1).all():
            return self._reading(step, math.nan, False)
        self.cb._target_queue = self._ns(data=z1.float())          # the queue the callback reads at validation
        mod = _Logged()
        self.cb.on_validation_batch_end(self._ns(global_rank=0), mod, {}, {}, 0)
        r = float(mod.logged["rankme"])
        self._reading(step, r, r < 0.1 * self.dim)


class SptLiDAR(Detector):
    name, rule = "stable-pretraining LiDAR", "LiDAR < 0.1 · min(M, n_classes − 1), every 10 steps"
    patience = 3

    def __init__(self, dim, images, n_classes=16, per_class=4, every=10):
        super().__init__()
        from stable_pretraining.callbacks import LiDAR
        self.cb = LiDAR(name="lidar", target="z", queue_length=n_classes * per_class, target_shape=dim,
                        n_classes=n_classes, samples_per_class=per_class)
        g = torch.Generator().manual_seed(1234)
        self.x = images[torch.randint(0, images.shape[0], (n_classes,), generator=g)].repeat_interleave(per_class, 0)
        self.g, self.every, self.bound = g, every, 0.1 * min(dim, n_classes - 1)

    def update(self, step, z1, z2, loss, f, target=None):
        if step % self.every:
            return
        with torch.no_grad():
            z = f(simple_views(self.x, self.g))                        # contiguous groups: per_class views per image
        if not torch.isfinite(z).all():
            return self._reading(step, math.nan, False)
        out = self.cb._compute_lidar(z.float())
        v = math.nan if out is None else float(out["lidar"])
        self._reading(step, v, v < self.bound)


class LightlyStd(Detector):
    name, rule = "lightly std_of_l2_normalized", "collapse level 1 − √M · std ≥ 0.5 (docs: 0 collapsed, 1/√M healthy)"

    def __init__(self, dim):
        super().__init__()
        from lightly.utils.debug import std_of_l2_normalized
        self.fn, self.dim = std_of_l2_normalized, dim

    def update(self, step, z1, z2, loss, f, target=None):
        std = float(self.fn(z1))
        level = max(0.0, 1 - math.sqrt(self.dim) * std) if math.isfinite(std) else math.nan
        self._reading(step, level, level >= 0.5)


#: the packages whose detectors the benchmark runs beside ncspec's monitor (the extra ``monitor-bench``)
DETECTOR_PACKAGES = {"monai": "monai", "stable_pretraining": "stable-pretraining", "lightly": "lightly"}


def missing_detector_packages() -> list[str]:
    """The benchmark's detector packages that are not installed (their PyPI names)."""
    import importlib.util
    return [pypi for module, pypi in DETECTOR_PACKAGES.items() if importlib.util.find_spec(module) is None]


def detectors(spec: RunSpec, dim: int, images: Tensor) -> list[Detector]:
    return [NcspecMonitor(spec.method), MonaiEffectiveRank(), SptRankMe(dim), SptLiDAR(dim, images),
            LightlyStd(dim)]


def _one(args):
    spec, seed, steps, limit = args
    torch.set_num_threads(1)
    from loguru import logger
    logger.disable("stable_pretraining")                    # its callbacks log every call at INFO
    images = load_images(limit=limit)
    dets = detectors(spec, 64, images)
    losses = []

    def on_step(step, z1, z2, loss, f, target):
        losses.append(float(loss))
        for d in dets:
            d.update(step, z1, z2, loss, f, target)

    train_run(spec, seed=seed, steps=steps, images=images, on_step=on_step)
    for d in dets:
        if hasattr(d, "finish"):
            d.finish()
    return dict(run=spec.name, label=spec.label, seed=seed, steps=len(losses), loss_end=losses[-1],
                detectors={d.name: dict(first=d.first, kind=d.kind, values=d.values) for d in dets})


def run_benchmark(*, seeds: int = 3, steps: int = 120, workers: int = 2, limit: int | None = 2048,
                  progress=print) -> dict:
    """Every :data:`BENCH_RUNS` configuration × ``seeds``, ``workers`` processes of one thread each."""
    import multiprocessing as mp
    import time
    jobs = [(spec, seed, steps, limit) for spec in BENCH_RUNS for seed in range(seeds)]
    t0, rows = time.perf_counter(), []
    with mp.get_context("spawn").Pool(workers) as pool:
        for i, row in enumerate(pool.imap_unordered(_one, jobs)):
            rows.append(row)
            progress(f"[{i + 1}/{len(jobs)}] {row['run']} seed {row['seed']} ({time.perf_counter() - t0:.0f} s)")
    return dict(seeds=seeds, steps=steps, limit=limit, rows=rows, seconds=time.perf_counter() - t0)


def score(result: dict) -> list[dict]:
    """Per detector: detection rate on the collapsed / diverging runs, false alarms on the healthy ones, median
    latency (first-fire step) and, for ncspec, whether the verdict named the right kind."""
    names = list(result["rows"][0]["detectors"])
    table = []
    for n in names:
        bad = [r for r in result["rows"] if r["label"] != HEALTHY_LABEL]
        good = [r for r in result["rows"] if r["label"] == HEALTHY_LABEL]
        hits = [r["detectors"][n]["first"] for r in bad if r["detectors"][n]["first"] is not None]
        row = dict(detector=n, detected=len(hits), of=len(bad),
                   false_alarms=sum(r["detectors"][n]["first"] is not None for r in good), healthy=len(good),
                   median_latency=float(np.median(hits)) if hits else None)
        for label in LABELS:
            sub = [r for r in bad if r["label"] == label]
            row[label] = sum(r["detectors"][n]["first"] is not None for r in sub), len(sub)
        row["right_kind"] = sum(r["detectors"][n]["kind"] == r["label"] for r in bad)
        table.append(row)
    return table


def markdown_table(table: list[dict]) -> str:
    lines = ["| detector | detected | complete | dimensional | diverging | frozen target | false alarms (healthy) | "
             "median latency (steps) | named the kind |", "|---|---|---|---|---|---|---|---|---|"]
    for r in table:
        lat = "—" if r["median_latency"] is None else f"{r['median_latency']:.0f}"
        kind = f"{r['right_kind']}/{r['of']}" if r["detector"].startswith("ncspec") else "—"
        lines.append(f"| {r['detector']} | {r['detected']}/{r['of']} | {'/'.join(map(str, r[COMPLETE_LABEL]))} | "
                     f"{'/'.join(map(str, r[DIMENSIONAL_LABEL]))} | {'/'.join(map(str, r[DIVERGING_LABEL]))} | "
                     f"{'/'.join(map(str, r[FROZEN_LABEL]))} | "
                     f"{r['false_alarms']}/{r['healthy']} | {lat} | {kind} |")
    return "\n".join(lines)


def plot(result: dict, path) -> Path:
    """Per run (rows) and detector (columns): the first-fire step (number) or none (·), coloured by label."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    runs = [s.name for s in BENCH_RUNS]
    names = list(result["rows"][0]["detectors"])
    fig, ax = plt.subplots(figsize=(9.5, 0.42 * len(runs) + 1.6), dpi=100)
    colour = {HEALTHY_LABEL: "#2a9d8f", COMPLETE_LABEL: "#e76f51", DIMENSIONAL_LABEL: "#f4a261",
              DIVERGING_LABEL: "#6d597a", FROZEN_LABEL: "#8d99ae"}
    for i, run in enumerate(runs):
        rows = [r for r in result["rows"] if r["run"] == run]
        label = rows[0]["label"] if rows else HEALTHY_LABEL
        ax.axhspan(i - 0.5, i + 0.5, color=colour[label], alpha=0.18, lw=0)
        for j, n in enumerate(names):
            firsts = [r["detectors"][n]["first"] for r in rows]
            fired = [f for f in firsts if f is not None]
            txt = f"{len(fired)}/{len(firsts)}" + (f" @{int(np.median(fired))}" if fired else "")
            bad = (label == HEALTHY_LABEL) == bool(fired)
            ax.text(j, i, txt, ha="center", va="center", fontsize=8, color="#b00020" if bad else "black",
                    fontweight="bold" if bad else "normal")
    ax.set_xticks(range(len(names)), [n.replace(" ", "\n", 1) for n in names], fontsize=8)
    ax.set_yticks(range(len(runs)), [f"{r}" for r in runs], fontsize=8)
    ax.set_xlim(-0.5, len(names) - 0.5)
    ax.set_ylim(len(runs) - 0.5, -0.5)
    ax.set_title(f"runs fired / seeds @ median first step ({result['steps']} steps, {result['seeds']} seeds); "
                 f"red = missed or false alarm", fontsize=9)
    handles = [plt.Rectangle((0, 0), 1, 1, color=c, alpha=0.35) for c in colour.values()]
    ax.legend(handles, list(colour), fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=5,
              frameon=False)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
