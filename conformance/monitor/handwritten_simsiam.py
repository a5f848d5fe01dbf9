"""Hand-written training loops the collapse monitor is judged on, and a labelled benchmark of collapse detectors.

:func:`handwritten_simsiam` is the loop a new user writes from the SimSiam paper (Chen & He, "Exploring Simple
Siamese Representation Learning", CVPR 2021, Algorithm 1 and §3): a small conv net, the official projector
(``Linear → BN → ReLU`` twice, then ``Linear → BatchNorm1d(M, affine=False)``), the official bottleneck predictor
(``Linear → BN → ReLU → Linear``), the symmetric negative cosine loss ``D(p1, sg(z2))/2 + D(p2, sg(z1))/2`` and SGD,
on the CIFAR-10 fragment with crop / flip / brightness views. ``stop_grad=False`` is the textbook mistake; with a
BatchNorm at the projector's output it cannot collapse to a point, so it collapses to a few directions.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from ...reference.methods.center import neg_cos
from ...reference.monitor import CollapseMonitor, Thresholds
from ...reference.vision.augment import AugmentConfig, adjust_brightness, crop_flip, sample_params


def fragment_path() -> Path:
    """The CIFAR-10 fragment (``$NCSPEC_SHARED/data/cifar10_fragment.npz``, else ``../shared`` of the checkout)."""
    base = Path(os.environ["NCSPEC_SHARED"]) if os.environ.get("NCSPEC_SHARED") else \
        Path(__file__).resolve().parents[2] / "shared"
    return base / "data" / "cifar10_fragment.npz"


def load_images(path: Path | str | None = None, limit: int | None = None) -> Tensor:
    """The fragment's training images as uint8 ``(N, 3, 32, 32)``."""
    p = Path(path) if path is not None else fragment_path()
    if not p.is_file():
        raise FileNotFoundError(f"{p}: the CIFAR-10 fragment is not there; set NCSPEC_SHARED to the folder that "
                                f"holds data/cifar10_fragment.npz, or pass its path.")
    with np.load(p, allow_pickle=False) as f:
        x = f["x_train"][:limit]
    return torch.from_numpy(np.ascontiguousarray(x)).permute(0, 3, 1, 2).contiguous()


# --- the network of the hand-written loop -------------------------------------------------------------------

def conv_net(widths=(16, 32, 64)) -> nn.Sequential:
    """``[Conv3×3 → BN → ReLU → MaxPool2]`` per width, then global average pooling: (B, 3, H, W) → (B, widths[-1])."""
    layers, c = [], 3
    for w in widths:
        layers += [nn.Conv2d(c, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True),
                   nn.MaxPool2d(2)]
        c = w
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())


def simsiam_projector(in_dim: int, dim: int, out_bn: bool = True) -> nn.Sequential:
    """SimSiam's projector (Chen & He 2021, §4.1 and the authors' code): ``Linear → BN → ReLU`` twice, then
    ``Linear`` and, with ``out_bn``, ``BatchNorm1d(dim, affine=False)``: (B, in_dim) → (B, dim)."""
    layers = [nn.Linear(in_dim, dim, bias=False), nn.BatchNorm1d(dim), nn.ReLU(inplace=True),
              nn.Linear(dim, dim, bias=False), nn.BatchNorm1d(dim), nn.ReLU(inplace=True),
              nn.Linear(dim, dim, bias=not out_bn)]
    return nn.Sequential(*layers, *([nn.BatchNorm1d(dim, affine=False)] if out_bn else []))


def simsiam_predictor(dim: int, hidden: int) -> nn.Sequential:
    """SimSiam's bottleneck predictor h (Chen & He 2021, §4.1): ``Linear → BN → ReLU → Linear``, (B, dim) → (B, dim)."""
    return nn.Sequential(nn.Linear(dim, hidden, bias=False), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
                         nn.Linear(hidden, dim))


def simple_views(x: Tensor, g: torch.Generator) -> Tensor:
    """Random resized crop (area 0.2–1), horizontal flip and brightness ×U(0.6, 1.4) of uint8 images → float [0, 1]."""
    cfg = AugmentConfig(scale=(0.2, 1.0), brightness=0.4)
    p = sample_params(cfg, x.shape[0], x.shape[-2], x.shape[-1], g)
    v = crop_flip(x.float() / 255.0, p, cfg.size)
    return adjust_brightness(v, p["brightness"])


@dataclass
class LoopResult:
    """Per-step records of a hand-written run and the monitor that watched it."""

    monitor: CollapseMonitor
    loss: list[float]
    records: list[dict]           # per observation: step, loss, rankme, effective_rank, center_norm, live_dims, verdict

    def first_flag(self):
        return self.monitor.first_flag()


def handwritten_simsiam(*, steps: int = 1000, seed: int = 0, stop_grad: bool = True, lr: float = 0.1,
                        dim: int = 64, pred_hidden: int = 16, batch: int = 64, out_bn: bool = True,
                        momentum: float = 0.9, weight_decay: float = 5e-4, limit: int | None = None,
                        images: Tensor | None = None, thresholds: Thresholds | None = None,
                        mode: str = "warn", report_every: int = 100, threads: int | None = None) -> LoopResult:
    """The SimSiam loop a user writes by hand, watched by ``CollapseMonitor(mode=mode, method="simsiam")`` observing
    ``z1, z2`` at every step (reported every ``report_every`` steps). ``stop_grad=False`` drops ``z.detach()``."""
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    x = load_images(limit=limit) if images is None else images
    f = nn.Sequential(conv_net(), simsiam_projector(64, dim, out_bn))
    h = simsiam_predictor(dim, pred_hidden)
    params = list(f.parameters()) + list(h.parameters())
    opt = torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    mon = CollapseMonitor(mode=mode, method="simsiam", thresholds=thresholds)
    losses = []
    sg = (lambda t: t.detach()) if stop_grad else (lambda t: t)
    for step in range(steps):
        idx = torch.randint(0, x.shape[0], (batch,), generator=g)
        xb = x[idx]
        x1, x2 = simple_views(xb, g), simple_views(xb, g)
        z1, z2 = f(x1), f(x2)
        p1, p2 = h(z1), h(z2)
        loss = neg_cos(p1, sg(z2)) / 2 + neg_cos(p2, sg(z1)) / 2
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        mon.observe(z1, z2, step=step, loss=losses[-1])
        if (step + 1) % report_every == 0 or step == steps - 1:
            mon.report()
    records = [dict(step=hh["step"], loss=hh.get("loss", math.nan), rankme=hh["rankme"],
                    effective_rank=hh["effective_rank"], center_norm=hh["center_norm"], live_dims=hh["live_dims"],
                    verdict=v.state) for hh, v in zip(mon.history, mon.verdicts)]
    return LoopResult(mon, losses, records)


# --- the loops of a new user beyond SimSiam: BYOL, VICReg, Barlow Twins (issue 26) ------------------------------

#: the faults of :func:`handwritten_run`: VICReg's variance coefficient 0 (Bardes et al., ICLR 2022, Table 4's
#: ablation), Barlow Twins' redundancy-reduction term dropped (Zbontar et al., ICML 2021, eq. 1 with λ = 0), BYOL's
#: target frozen at its initialisation (m = 1 from step 0; Grill et al. 2020, §3.1)
FAULTS = ("no_variance", "no_offdiag", "frozen_target")


def mlp_head(in_dim: int, hidden: int, out: int) -> nn.Sequential:
    """``Linear → BN → ReLU → Linear``: (B, in_dim) → (B, out) (BYOL's projector and predictor, Grill et al. §3.3)."""
    return nn.Sequential(nn.Linear(in_dim, hidden, bias=False), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
                         nn.Linear(hidden, out))


def vicreg_loss(z1: Tensor, z2: Tensor, sim: float = 25.0, var: float = 25.0, cov: float = 1.0) -> Tensor:
    """VICReg (Bardes et al. 2022, eqs. 1–6): ``λ s + μ [v(z1) + v(z2)] + ν [c(z1) + c(z2)]`` with
    ``v = mean_j relu(1 − √(Var z_j + ε))``, ``c = Σ_{j≠k} Cov(z)_jk² / M``; z (B, M)."""
    B, M = z1.shape
    inv = (z1 - z2).pow(2).mean()
    out = sim * inv
    for z in (z1, z2):
        std = (z.var(0) + 1e-4).sqrt()
        zc = z - z.mean(0)
        c = zc.T @ zc / (B - 1)
        out = out + var * torch.relu(1 - std).mean() + cov * (c.pow(2).sum() - c.diagonal().pow(2).sum()) / M
    return out


def barlow_loss(z1: Tensor, z2: Tensor, lam: float) -> Tensor:
    """Barlow Twins (Zbontar et al. 2021, eq. 1): ``Σ_i (1 − C_ii)² + λ Σ_{i≠j} C_ij²`` with C the cross-correlation
    of the batch-standardised views, ``C = ẑ1ᵀ ẑ2 / B``; z (B, M)."""
    B = z1.shape[0]
    a = (z1 - z1.mean(0)) / z1.std(0, unbiased=False).clamp_min(1e-6)
    b = (z2 - z2.mean(0)) / z2.std(0, unbiased=False).clamp_min(1e-6)
    c = a.T @ b / B
    on = (1 - c.diagonal()).pow(2).sum()
    return on + lam * (c.pow(2).sum() - c.diagonal().pow(2).sum())


def handwritten_run(method: str, fault: str | None = None, *, steps: int = 300, seed: int = 0, lr: float | None = None,
                    batch: int = 128, widths=(16, 32, 64, 128), dim: int = 64, hidden: int = 256,
                    ema: float = 0.99, limit: int | None = None, images: Tensor | None = None,
                    monitor: CollapseMonitor | None = None, report_every: int = 1, threads: int | None = None,
                    on_step=None) -> LoopResult:
    """The loop of issue 26, as a new user writes it: a 4-layer conv net with BN (:func:`conv_net`), an MLP projector
    (:func:`mlp_head`; BYOL adds an MLP predictor and an EMA target), batch ``batch``, SGD momentum 0.9 with
    weight decay 1e-5 and a cosine learning-rate decay over ``steps``; the monitor observes ``z1, z2`` and the loss
    every step (and, for BYOL, the online network and its target) and reports every ``report_every`` steps.
    ``method``: ``byol``, ``vicreg`` or ``barlow_twins``; ``fault``: one of :data:`FAULTS`. Stops after the first
    non-finite loss. ``on_step(step, z1, z2, loss, f)`` is called after each step (the benchmark's detectors)."""
    import copy
    if method not in ("byol", "vicreg", "barlow_twins"):
        raise ValueError(f"method must be byol, vicreg or barlow_twins, got {method!r}.")
    if fault is not None and fault not in FAULTS:
        raise ValueError(f"fault must be one of {FAULTS} or None, got {fault!r}.")
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    x = load_images(limit=limit) if images is None else images
    f = nn.Sequential(conv_net(widths), mlp_head(widths[-1], hidden, dim))
    h = mlp_head(dim, hidden, dim) if method == "byol" else None
    target = copy.deepcopy(f).requires_grad_(False) if method == "byol" else None
    params = list(f.parameters()) + ([] if h is None else list(h.parameters()))
    lr = lr if lr is not None else {"byol": 0.1, "vicreg": 0.02, "barlow_twins": 0.02}[method]   # 0.05: VICReg NaN
    opt = torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=1e-5)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    mon = monitor if monitor is not None else CollapseMonitor(mode="record", method=method)
    m = 1.0 if fault == "frozen_target" else ema
    losses = []
    for step in range(steps):
        xb = x[torch.randint(0, x.shape[0], (batch,), generator=g)]
        x1, x2 = simple_views(xb, g), simple_views(xb, g)
        z1, z2 = f(x1), f(x2)
        if method == "byol":
            with torch.no_grad():
                t1, t2 = target(x1), target(x2)
            loss = neg_cos(h(z1), t2) / 2 + neg_cos(h(z2), t1) / 2
        elif method == "vicreg":
            loss = vicreg_loss(z1, z2, var=0.0 if fault == "no_variance" else 25.0)
        else:
            loss = barlow_loss(z1, z2, lam=0.0 if fault == "no_offdiag" else 1.0 / dim)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if target is not None:
            with torch.no_grad():
                for pt, po in zip(target.parameters(), f.parameters()):
                    pt.mul_(m).add_(po, alpha=1 - m)
        losses.append(loss.item())
        extra = dict(online=f, target=target) if target is not None else {}
        mon.observe(z1, z2, step=step, loss=loss.detach(), **extra)
        if on_step is not None:
            on_step(step, z1.detach(), z2.detach(), loss.detach(), f)
        if (step + 1) % report_every == 0 or step == steps - 1 or not math.isfinite(losses[-1]):
            mon.report()
        if not math.isfinite(losses[-1]):
            break
    records = [dict(step=hh["step"], loss=hh.get("loss", math.nan), rankme=hh["rankme"],
                    effective_rank=hh["effective_rank"], center_norm=hh["center_norm"], live_dims=hh["live_dims"],
                    verdict=v.state) for hh, v in zip(mon.history, mon.verdicts)]
    return LoopResult(mon, losses, records)
