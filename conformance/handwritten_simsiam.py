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

from ..reference.methods.center import neg_cos
from ..reference.monitor import CollapseMonitor, Thresholds
from ..reference.vision.augment import AugmentConfig, adjust_brightness, crop_flip, sample_params


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
