"""Metrics of representations: center vector, collapse, effective rank, kNN accuracy.

Shapes: embeddings are ``(..., B, M)`` (leading dimensions are replicas, e.g.
seeds); several views of the same samples are stacked as ``(..., V, B, M)``.
Every metric returns one value per replica, shape ``(...)``, unless stated.

Center vector (Jha et al. 2024, §3; claims J): with unit-norm embeddings
``ẑ = z/‖z‖``, ``s = E_x E_ω ẑ`` and the residual ``r_x = E_ω ẑ(ω(x)) − s``.
On a finite batch the expectations are those of the empirical measure: ``x``
uniform over the B samples, ``ω`` uniform over the V views. Under that measure
claims J1 and J4 are exact identities (see :mod:`ncspec.reference.theory.centervector`).
"""
from __future__ import annotations

import torch
from torch import Tensor

from . import _checks
from .encoders import unit


def _emb(name: str, z: Tensor, min_dim: int = 2, layout: str = "(..., B, M)") -> Tensor:
    _checks.tensor(name, z, min_dim=min_dim, layout=layout)
    if not z.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {z.dtype}; convert it "
                        f"with .float() or .double().")
    if z.shape[-2] == 0 or z.shape[-1] == 0:
        raise ValueError(f"{name} must hold at least one sample and one feature, got shape "
                         f"{tuple(z.shape)} (layout {layout}).")
    return z


def center_vector(z: Tensor) -> Tensor:
    """``s = mean_B ẑ`` (..., M): the batch mean of the l2-normalised embeddings."""
    return unit(_emb("z", z)).mean(-2)


def center_norm(z: Tensor) -> Tensor:
    """``‖s‖`` (...): 0 for embeddings spread evenly on the sphere, 1 for complete collapse."""
    return center_vector(z).norm(dim=-1)


def center_decomposition(views: Tensor) -> tuple[Tensor, Tensor]:
    """``(s, r)`` from views (..., V, B, M): ``μ_x = mean_V ẑ`` (..., B, M), ``s = mean_B μ_x``
    (..., M) and ``r_x = μ_x − s`` (..., B, M)."""
    _emb("views", views, min_dim=3, layout="(..., V, B, M)")
    mu = unit(views).mean(-3)
    s = mu.mean(-2)
    return s, mu - s.unsqueeze(-2)


def residual_sq(views: Tensor) -> Tensor:
    """``E_x ‖r_x‖²`` (...) under the empirical measure (views (..., V, B, M))."""
    return center_decomposition(views)[1].pow(2).sum(-1).mean(-1)


def normalized_std(z: Tensor) -> Tensor:
    """Std over the batch of ``ẑ``, averaged over features (SimSiam §4.1's collapse monitor).

    ``unit(z).std(dim=-2).mean(-1)`` with torch's default (unbiased, B − 1) std, as in
    SimSiam's code; ≈ ``1/√M`` for embeddings spread isotropically, 0 at collapse.
    """
    z = _emb("z", z)
    if z.shape[-2] < 2:
        raise ValueError(f"normalized_std needs B >= 2 samples for a standard deviation, got shape "
                         f"{tuple(z.shape)}.")
    return unit(z).std(dim=-2).mean(-1)


def rankme(z: Tensor, *, eps: float = 1e-7, center: bool = False) -> Tensor:
    """RankMe (Garrido et al., ICML 2023, eq. 1): ``exp(−Σ_k p_k log p_k)``,
    ``p_k = σ_k / Σ_j σ_j + eps`` with ``σ`` the singular values of the embedding matrix.

    As published, the matrix is the raw ``(B, M)`` embeddings — *not* centred and not
    normalised (``center=False``); ``center=True`` subtracts the batch mean first. A
    collapsed (constant) matrix has rank 1 uncentred (its mean is its one direction)
    and ≈ 1 centred only up to ``eps``; ranges over ``[1, min(B, M)]`` up to ``eps``.
    """
    z = _emb("z", z)
    _checks.positive("eps", eps, hint="RankMe uses eps = 1e-7.")
    if center:
        z = z - z.mean(-2, keepdim=True)
    return rankme_of_singular_values(torch.linalg.svdvals(z), eps=eps)


def rankme_of_singular_values(sigma: Tensor, *, eps: float = 1e-7) -> Tensor:
    """RankMe from the singular values ``σ`` (..., K) of an embedding matrix (see :func:`rankme`).

    The singular values of ``z`` are the square roots of the eigenvalues of ``zᵀz`` (or ``zzᵀ``), so a
    monitor that keeps only the Gram matrix gets the same RankMe.
    """
    sigma = sigma.clamp_min(0)
    p = sigma / sigma.sum(-1, keepdim=True).clamp_min(torch.finfo(sigma.dtype).tiny) + eps
    return torch.exp(-(p * torch.log(p)).sum(-1))


def participation_ratio(z: Tensor, *, center: bool = True) -> Tensor:
    """``(Σλ)² / Σλ²`` of the eigenvalues λ of the (centred) covariance of ``z`` (..., B, M).

    Equals M for isotropic embeddings and 1 when one direction carries all variance;
    ``center=False`` uses the uncentred second moment ``zᵀz/B`` instead. A batch with
    zero variance (complete collapse, centred) returns 0.
    """
    z = _emb("z", z)
    if center:
        z = z - z.mean(-2, keepdim=True)
    return participation_ratio_of_eigenvalues(torch.linalg.eigvalsh(z.transpose(-1, -2) @ z / z.shape[-2]))


def participation_ratio_of_eigenvalues(lam: Tensor) -> Tensor:
    """``(Σλ)² / Σλ²`` (...) of covariance eigenvalues ``λ`` (..., K) (negative round-off clamped to 0);
    0 when every eigenvalue is 0 (see :func:`participation_ratio`)."""
    lam = lam.clamp_min(0)
    num, den = lam.sum(-1).pow(2), lam.pow(2).sum(-1)
    return torch.where(den > 0, num / den.clamp_min(torch.finfo(lam.dtype).tiny), torch.zeros_like(num))


def knn_accuracy(train_z: Tensor, train_y: Tensor, test_z: Tensor, test_y: Tensor, *, k: int = 200,
                 temperature: float = 0.1, num_classes: int | None = None) -> Tensor:
    """Weighted kNN accuracy (Wu et al. 2018, InstDisc; lightly's ``knn_predict``), in [0, 1].

    Cosine similarity between l2-normalised test and train embeddings; the ``k`` most
    similar train samples vote for their class with weight ``exp(sim / temperature)``;
    the prediction is the class with the largest total weight (ties → smallest label).
    Defaults ``k = 200``, ``temperature = 0.1`` as in lightly; ``k`` is capped at the
    number of train samples.

    Shapes: ``train_z`` (..., N, M), ``train_y`` (..., N) integer labels in
    ``[0, num_classes)``, ``test_z`` (..., T, M), ``test_y`` (..., T); returns (...).
    """
    _emb("train_z", train_z, layout="(..., N, M)")
    _emb("test_z", test_z, layout="(..., T, M)")
    _checks.positive_int("k", k, hint="lightly uses k = 200.")
    _checks.positive("temperature", temperature, hint="lightly uses temperature = 0.1.")
    for name, y, z in (("train_y", train_y, train_z), ("test_y", test_y, test_z)):
        _checks.tensor(name, y, min_dim=1, layout="(..., N)")
        if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
            raise TypeError(f"{name} must hold integer class labels, got dtype {y.dtype}; use .long().")
        if tuple(y.shape) != tuple(z.shape[:-1]) and tuple(y.shape) != tuple(z.shape[-2:-1]):
            raise ValueError(f"{name} of shape {tuple(y.shape)} does not match its embeddings of shape "
                             f"{tuple(z.shape)}; pass one label per sample, (..., N).")
    if train_z.shape[-1] != test_z.shape[-1]:
        raise ValueError(f"train_z and test_z must have the same feature dimension, got "
                         f"{train_z.shape[-1]} and {test_z.shape[-1]}; embed both with the same encoder.")
    if num_classes is None:
        num_classes = int(max(train_y.max().item(), test_y.max().item())) + 1
    if train_y.min().item() < 0 or train_y.max().item() >= num_classes:
        raise ValueError(f"train_y must lie in [0, num_classes = {num_classes}), got labels in "
                         f"[{train_y.min().item()}, {train_y.max().item()}].")
    sim = unit(test_z) @ unit(train_z).transpose(-1, -2)                  # (..., T, N)
    kk = min(k, train_z.shape[-2])
    top, idx = sim.topk(kk, dim=-1)                                       # (..., T, k)
    lead = sim.shape[:-2]
    labels = train_y.expand(*lead, train_y.shape[-1]) if train_y.dim() < sim.dim() - 1 else train_y
    votes_y = torch.gather(labels.unsqueeze(-2).expand(*sim.shape[:-1], labels.shape[-1]), -1, idx)
    scores = torch.zeros(*sim.shape[:-1], num_classes, dtype=sim.dtype, device=sim.device)
    scores.scatter_add_(-1, votes_y, torch.exp(top / temperature))
    pred = scores.argmax(-1)
    return (pred == test_y).to(sim.dtype).mean(-1)
