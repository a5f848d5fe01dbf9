"""Deep linear encoders ``W̄ = W_L ⋯ W_1`` and the linear MAE (Littwin et al. 2024, §3).

The deep encoder is a replica-batched module (every weight (S, d, d), replicas first), so the one
simulator (:func:`ncspec.reference.linear.simulate` with ``eval_views``) trains it layer by layer:
each ``W_l`` takes the step ``W_l ← W_l − η ∇_{W_l}``, the discretisation of layer-wise gradient flow.
A JEPA around it is any learner with a learned linear predictor and a stop-gradient target
(``½E‖V W̄ x − SG(W̄ y)‖²``: the ``learned_predictor`` method); :class:`LinearMAE` is the
reconstruction counterpart ``½E‖V W̄ x − y‖²``, with which the paper contrasts it.
"""
from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn

from .. import _checks


class DeepLinearEncoder(nn.Module):
    """``z = W_L ⋯ W_1 x``: ``layers`` (S, L, d, d) — S replicas, L layers of width d.

    ``forward`` takes views (B, d) shared by the replicas or (S, B, d), returns (S, B, d).
    """

    def __init__(self, layers: Tensor):
        super().__init__()
        _checks.tensor("layers", layers)
        if layers.dim() != 4 or layers.shape[-1] != layers.shape[-2]:
            raise ValueError(f"layers must have shape (S, L, d, d) (replicas, depth, width, width), got shape "
                             f"{tuple(layers.shape)}; for one layer pass W.unsqueeze(1).")
        _checks.finite("layers", layers, hint="the initial weights must be finite.")
        self.replicas, self.depth = layers.shape[0], layers.shape[1]
        self.layers = nn.ParameterList(nn.Parameter(layers[:, i].clone()) for i in range(self.depth))

    @property
    def dtype(self) -> torch.dtype:
        return self.layers[0].dtype

    @property
    def device(self) -> torch.device:
        return self.layers[0].device

    def product(self) -> Tensor:
        """The end-to-end map ``W̄ = W_L ⋯ W_1`` (S, d, d)."""
        W = self.layers[0]
        for layer in self.layers[1:]:
            W = layer @ W
        return W

    def forward(self, x: Tensor) -> Tensor:
        _checks.tensor("x", x, min_dim=2, layout="(B, d) or (S, B, d)")
        if x.dtype != self.dtype:
            raise ValueError(f"x has dtype {x.dtype} but the encoder's weights have dtype {self.dtype}; "
                             f"convert the views with x.to({self.dtype}).")
        for layer in self.layers:
            x = x @ layer.transpose(-1, -2)
        return x


def balanced_diagonal_layers(eps: Tensor, depth: int) -> Tensor:
    """Layers (S, L, d, d) with ``W_l = diag(ε^{1/L})``: ``W̄(0) = diag(ε)``, balanced (Littwin et al.'s init).

    ``eps`` (S, d) > 0: the initial end-to-end weight of every feature.
    """
    _checks.positive_int("depth", depth, hint="depth is the number of layers L.")
    _checks.tensor("eps", eps)
    if eps.dim() != 2 or (eps <= 0).any():
        raise ValueError(f"eps must be (S, d) with entries > 0 (the initial end-to-end weights), got shape "
                         f"{tuple(eps.shape)}.")
    a = torch.diag_embed(eps ** (1.0 / depth))
    return a.unsqueeze(1).expand(-1, depth, -1, -1).clone()


class LinearMAE:
    """``loss(x, y) = ½ Σ_s mean_B ‖V W̄ x − y‖²``: the linear MAE of Littwin et al. (the decoder V (S, d, d)).

    Adapter protocol (``parameters()``, ``loss``, ``after_step``); the encoder is any replica-batched
    linear module (:class:`DeepLinearEncoder`).
    """

    def __init__(self, encoder: nn.Module, embed_dim: int, *, decoder_init: Tensor):
        _checks.tensor("decoder_init", decoder_init)
        if decoder_init.shape[-2:] != (embed_dim, embed_dim):
            raise ValueError(f"decoder_init must be (S, {embed_dim}, {embed_dim}), got {tuple(decoder_init.shape)}.")
        self.encoder, self.M = encoder, embed_dim
        self.V = nn.Parameter(decoder_init.detach().clone())

    def parameters(self) -> Iterable[Tensor]:
        yield from self.encoder.parameters()
        yield self.V

    def loss(self, view1: Tensor, view2: Tensor) -> Tensor:
        _checks.same_shape("view1", view1, "view2", view2)
        p = self.encoder(view1) @ self.V.transpose(-1, -2)
        return 0.5 * (p - view2).pow(2).sum(-1).mean(-1).sum()

    def after_step(self) -> None:
        """Nothing to refresh."""
