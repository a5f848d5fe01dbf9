"""Contrastive learners: SimCLR (InfoNCE / NT-Xent) and the triplet loss of claim J4.

Adapter protocol as in :mod:`ncspec.reference.methods.center`: ``loss(view1, view2)`` sums
per-replica losses of embeddings (..., B, M); ``after_step()`` does nothing.

Jha et al. (2024, §3) reads the negative term of both as a center-vector
penalty. For unit vectors ``‖ẑ − ẑ⁻‖² = 2 − 2ẑᵀẑ⁻``, and an *independent*
negative has ``E[ẑᵀẑ⁻] = ‖s‖²``, so (claim J4, exact)::

    triplet = E‖ẑ − ẑ⁺‖² − E‖ẑ − ẑ⁻‖² = invariance + 2‖s‖² − 2 = −2 E_x‖r_x‖²

The second equality is J1. :class:`Triplet` computes the expectation over the
negative exactly (all other samples of the batch), so the identity holds on
every batch with the unbiased (U-statistic) estimates of ``‖s‖²`` and
``E‖r_x‖²`` (:func:`ncspec.reference.theory.centervector.triplet_unbiased`).
"""
from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn

from .. import _checks
from ..encoders import embed_pair, make_build, unit


class SimCLR:
    """NT-Xent / InfoNCE (Chen et al. 2020, eq. 1), symmetric over the 2B embeddings.

    ``ℓ(i, j) = −log exp(sim(z_i, z_j)/τ) / Σ_{k≠i} exp(sim(z_i, z_k)/τ)``, averaged over
    all 2B anchors (each view's positive is the other view of its sample; the 2B − 2
    other embeddings are negatives). ``sim`` is the cosine similarity.

    Args:
        temperature: τ (lightly's ``NTXentLoss`` default 0.5; SimCLR uses 0.1–0.5).
    """

    def __init__(self, encoder: nn.Module, embed_dim: int, *, temperature: float = 0.5):
        self.temperature = _checks.positive("temperature", temperature, hint="SimCLR uses 0.1–0.5.")
        self.encoder, self.M = encoder, embed_dim

    def parameters(self) -> Iterable[Tensor]:
        return self.encoder.parameters()

    def loss(self, view1: Tensor, view2: Tensor) -> Tensor:
        z1, z2 = embed_pair(self.encoder, view1, view2, self.M, min_batch=2)
        B = z1.shape[-2]
        z = unit(torch.cat([z1, z2], -2))                                     # (..., 2B, M)
        logits = z @ z.transpose(-1, -2) / self.temperature
        eye = torch.eye(2 * B, dtype=torch.bool, device=z.device)
        logits = logits.masked_fill(eye, float("-inf"))
        pos = torch.cat([torch.arange(B, 2 * B), torch.arange(0, B)]).to(z.device)
        lse = torch.logsumexp(logits, -1)                                     # (..., 2B)
        positive = logits.gather(-1, pos.expand(*logits.shape[:-2], 2 * B).unsqueeze(-1)).squeeze(-1)
        return (lse - positive).mean(-1).sum()

    def after_step(self) -> None:
        """Nothing to refresh."""


class Triplet:
    """Triplet loss with squared distances, no margin, independent negatives (claim J4).

    On unit embeddings, anchors are all 2B embeddings ``ẑ_{i,v}``, the positive is the
    other view ``ẑ_{i,v̄}``, and the negative is averaged over the embeddings (both views)
    of the ``B − 1`` *other* samples — the expectation over an independent negative::

        L = mean_{i,v} [ ‖ẑ_{iv} − ẑ_{iv̄}‖² − mean_{j≠i, w} ‖ẑ_{iv} − ẑ_{jw}‖² ]
          = mean_i ‖ẑ_{i1} − ẑ_{i2}‖² + 2‖s‖²_U − 2,   ‖s‖²_U = Σ_{i≠j} μ_iᵀμ_j / (B(B−1))

    with ``μ_i = ½(ẑ_{i1} + ẑ_{i2})``; it equals ``−2 R_U`` (the unbiased estimate of
    ``E‖r_x‖²``), exactly, on every batch. No margin, no hinge: the loss can be negative.
    """

    def __init__(self, encoder: nn.Module, embed_dim: int):
        self.encoder, self.M = encoder, embed_dim

    def parameters(self) -> Iterable[Tensor]:
        return self.encoder.parameters()

    def loss(self, view1: Tensor, view2: Tensor) -> Tensor:
        z1, z2 = embed_pair(self.encoder, view1, view2, self.M, min_batch=2)
        B = z1.shape[-2]
        u = unit(torch.cat([z1, z2], -2))                                     # (..., 2B, M): ẑ_{iv}
        n2 = u.pow(2).sum(-1)
        sq = n2.unsqueeze(-1) + n2.unsqueeze(-2) - 2 * u @ u.transpose(-1, -2)  # ‖ẑ_a − ẑ_b‖², (..., 2B, 2B)
        sample = torch.arange(2 * B, device=u.device) % B
        other = (sample.unsqueeze(-1) != sample.unsqueeze(-2)).to(u.dtype)   # j ≠ i
        partner = torch.cat([torch.arange(B, 2 * B), torch.arange(0, B)]).to(u.device)
        positive = sq.gather(-1, partner.expand(*sq.shape[:-2], 2 * B).unsqueeze(-1)).squeeze(-1)
        negative = (sq * other).sum(-1) / (2 * (B - 1))
        return (positive - negative).mean(-1).sum()

    def after_step(self) -> None:
        """Nothing to refresh."""


METHODS = {
    "simclr": (SimCLR, {}),
    "triplet": (Triplet, {}),
}
OPTIONS = {"SimCLR": {"temperature"}, "Triplet": set()}
build = make_build(METHODS, OPTIONS)
