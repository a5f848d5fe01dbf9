"""Replica plumbing shared by the third-party adapters.

The harness's encoders carry S independent replicas on the leading dimension, (S, B, M);
libraries' losses and heads take (B, M). An adapter builds one head per replica and loops.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn


def per_replica(z: Tensor) -> Tensor:
    """(..., B, M) → (S, B, M)."""
    return z.reshape(-1, *z.shape[-2:])


def n_replicas(encoder: nn.Module) -> int:
    """S of a harness encoder: ``LinearEncoder`` weights (S, M, N), or an MLP's ``replicas``."""
    W = getattr(encoder, "W", None)
    if W is not None and W.dim() == 3:
        return W.shape[0]
    return int(getattr(encoder, "replicas", 1))


def heads(make, encoder: nn.Module) -> nn.ModuleList:
    """``make()`` once per replica, in the encoder's dtype."""
    dtype = next(encoder.parameters()).dtype
    return nn.ModuleList(make() for _ in range(n_replicas(encoder))).to(dtype)


def apply_heads(heads: nn.ModuleList, z: Tensor) -> Tensor:
    """``heads[s](z[s])`` for each replica s: (..., B, M) → (..., B, M′) — a learner's ``predictor`` or
    ``projector`` as the spec reads it (docs/conformance.md, the adapter contract)."""
    zs = per_replica(z)
    out = [head(zs[s]) for s, head in enumerate(heads)]
    return (out[0] if len(out) == 1 else torch.stack(out)).reshape(*z.shape[:-1], -1)


class PairLoss:
    """A library's loss module on ``(z1, z2)``, applied per replica and summed; nothing to refresh after a step."""

    def __init__(self, encoder: nn.Module, criterion: nn.Module):
        self.encoder, self.criterion = encoder, criterion

    def parameters(self):
        return self.encoder.parameters()

    def loss(self, view1: Tensor, view2: Tensor) -> Tensor:
        z1, z2 = per_replica(self.encoder(view1)), per_replica(self.encoder(view2))
        return sum(self.criterion(a, b) for a, b in zip(z1, z2))

    def after_step(self) -> None:
        pass
