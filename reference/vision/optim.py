"""The optimiser and learning-rate schedule of a training run: LARS and warmup + cosine decay."""
from __future__ import annotations

import math

import torch


class LARS(torch.optim.Optimizer):
    """SGD with momentum and a layer-wise trust ratio ``η‖w‖/(‖g‖ + wd‖w‖)`` on weights of ≥ 2
    dimensions; biases and norm parameters get plain SGD without weight decay."""

    def __init__(self, params, lr: float, momentum: float = 0.9, weight_decay: float = 0.0, eta: float = 0.02):
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay, eta=eta))

    @torch.no_grad()
    def step(self, closure=None):
        for g in self.param_groups:
            for p in g["params"]:
                if p.grad is None:
                    continue
                d = p.grad
                if p.ndim > 1:
                    pn, gn = p.norm(), d.norm()
                    trust = torch.where((pn > 0) & (gn > 0), g["eta"] * pn / (gn + g["weight_decay"] * pn), 1.0)
                    d = (d + g["weight_decay"] * p) * trust
                buf = self.state[p].get("momentum_buffer")
                if buf is None:
                    buf = self.state[p]["momentum_buffer"] = d.clone()
                else:
                    buf.mul_(g["momentum"]).add_(d)
                p.add_(buf, alpha=-g["lr"])


def lr_at(step: int, total: int, warmup: int, base: float) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return base * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))
