"""Clustering learners: DINO (centering + sharpening, EMA teacher) and SwAV (prototypes, Sinkhorn-Knopp).

Adapter protocol as in :mod:`ncspec.reference.methods.center`; embeddings (S, B, M) from a
replica-batched encoder, per-replica losses summed; every parameter the learner
owns (prototypes, head) carries the replica dimension S of the encoder.

Both score an l2-normalised embedding against K unit prototypes,
``ℓ = ẑ Cᵀ`` (..., B, K), as DINO's weight-normalised last layer and SwAV's
prototypes do. Center-vector reading (Jha et al. 2024, §3): DINO's centering subtracts
the running mean ``c`` of the teacher's scores — the center vector in score
space — so no prototype can win for every sample; SwAV's Sinkhorn-Knopp forces
the codes of a batch to use all prototypes equally (equipartition), which again
removes the batch mean. Without them (``centering=False``, ``sinkhorn=False``)
nothing stops every sample from choosing the same prototype: collapse.
"""
from __future__ import annotations

import copy
from collections.abc import Iterable

import torch
from torch import Tensor, nn

from .. import _checks
from ..encoders import embed_pair, encoder_dtype, make_build, replica_shape, unit


def _prototypes(encoder, K: int, M: int, seed: int) -> nn.Parameter:
    C = torch.randn((*replica_shape(encoder), K, M), generator=torch.Generator().manual_seed(seed),
                    dtype=encoder_dtype(encoder))
    return nn.Parameter(unit(C))


def _momentum(name: str, m) -> float:
    if not (isinstance(m, (int, float)) and not isinstance(m, bool) and 0.0 <= m < 1.0):
        raise ValueError(f"{name} must be a number in [0, 1), got {m!r}.")
    return float(m)


class DINO:
    """DINO (Caron et al. 2021, Alg. 1) with two global views and no multi-crop.

    Student ``g_s`` = the encoder followed by a weight-normalised last layer ``C`` (K × M,
    unit rows): scores ``ℓ = ẑ Cᵀ``. The teacher (encoder copy and ``C`` copy) is an EMA of
    the student. With ``P_s = softmax(ℓ_s/τ_s)`` and ``P_t = softmax((ℓ_t − c)/τ_t)``::

        L = ½ [ H(P_t(x1), P_s(x2)) + H(P_t(x2), P_s(x1)) ],   H(a, b) = −Σ_k a_k log b_k

    ``after_step``: teacher ``θ_t ← m θ_t + (1 − m) θ_s`` and center
    ``c ← m_c c + (1 − m_c) mean_{batch, views} ℓ_t`` (from the last ``loss`` call).

    Args:
        n_prototypes: K, the width of the last layer (DINO's ``out_dim``; default 64).
        student_temp, teacher_temp: τ_s (0.1), τ_t (0.04, DINO's final value: sharpening).
        center_momentum: m_c (0.9).
        teacher_momentum: m (DINO starts at 0.996; the 300-step toy claims use 0.9).
        centering: ``False`` never subtracts ``c`` (the ablation).
        seed: initialisation of ``C``.
    """

    def __init__(self, encoder: nn.Module, embed_dim: int, *, n_prototypes: int = 64, student_temp: float = 0.1,
                 teacher_temp: float = 0.04, center_momentum: float = 0.9, teacher_momentum: float = 0.996,
                 centering: bool = True, seed: int = 0):
        K = _checks.positive_int("n_prototypes", n_prototypes, hint="the width K of the last layer, e.g. 64.")
        self.student_temp = _checks.positive("student_temp", student_temp, hint="DINO uses 0.1.")
        self.teacher_temp = _checks.positive("teacher_temp", teacher_temp, hint="DINO uses 0.04–0.07.")
        self.center_momentum = _momentum("center_momentum", center_momentum)
        self.teacher_momentum = _momentum("teacher_momentum", teacher_momentum)
        if not isinstance(centering, bool):
            raise TypeError(f"centering must be True or False, got {centering!r}.")
        self.centering, self.encoder, self.M = centering, encoder, embed_dim
        self.C = _prototypes(encoder, K, embed_dim, seed)
        self.teacher = copy.deepcopy(encoder)
        self.teacher_C = self.C.detach().clone()
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        self.center = torch.zeros((*replica_shape(encoder), 1, K), dtype=self.C.dtype)
        self._batch_center = None

    def parameters(self) -> Iterable[Tensor]:
        yield from self.encoder.parameters()
        yield self.C

    def scores(self, z: Tensor, C: Tensor) -> Tensor:
        """``ℓ = ẑ Ĉᵀ`` (..., B, K) with unit prototypes (weight-normalised last layer)."""
        return unit(z) @ unit(C).transpose(-1, -2)

    def loss(self, view1: Tensor, view2: Tensor) -> Tensor:
        z1, z2 = embed_pair(self.encoder, view1, view2, self.M)
        with torch.no_grad():
            t = [self.scores(self.teacher(v), self.teacher_C) for v in (view1, view2)]
            self._batch_center = 0.5 * (t[0].mean(-2, keepdim=True) + t[1].mean(-2, keepdim=True))
            c = self.center if self.centering else 0.0
            P_t = [torch.softmax((ti - c) / self.teacher_temp, -1) for ti in t]
        logP_s = [torch.log_softmax(self.scores(z, self.C) / self.student_temp, -1) for z in (z1, z2)]
        H = lambda a, b: -(a * b).sum(-1).mean(-1)
        return (0.5 * (H(P_t[0], logP_s[1]) + H(P_t[1], logP_s[0]))).sum()

    @torch.no_grad()
    def after_step(self) -> None:
        m = self.teacher_momentum
        for pt, ps in zip(self.teacher.parameters(), self.encoder.parameters()):
            pt.mul_(m).add_(ps.detach(), alpha=1 - m)
        self.teacher_C.mul_(m).add_(self.C.detach(), alpha=1 - m)
        if self._batch_center is not None:
            mc = self.center_momentum
            self.center = mc * self.center + (1 - mc) * self._batch_center
            self._batch_center = None


def sinkhorn(scores: Tensor, *, eps: float = 0.05, iters: int = 3) -> Tensor:
    """Sinkhorn-Knopp codes (SwAV, Caron et al. 2020, eq. 3 and ``distributed_sinkhorn``).

    ``Q = exp(scores/eps)`` (..., B, K) is rescaled alternately so that every prototype
    receives total mass 1/K and every sample 1/B (``iters`` rounds, rows last), then
    multiplied by B so that each sample's code sums to 1. Computed in log space (the
    official code subtracts nothing and overflows for small eps in float32).
    """
    _checks.positive("eps", eps, hint="SwAV uses 0.05.")
    _checks.positive_int("iters", iters, hint="SwAV uses 3.")
    B, K = scores.shape[-2], scores.shape[-1]
    logQ = scores / eps
    logQ = logQ - torch.logsumexp(logQ, (-2, -1), keepdim=True)
    for _ in range(iters):
        logQ = logQ - torch.logsumexp(logQ, -2, keepdim=True) - torch.log(torch.tensor(float(K)))
        logQ = logQ - torch.logsumexp(logQ, -1, keepdim=True) - torch.log(torch.tensor(float(B)))
    return torch.exp(logQ) * B


class SwAV:
    """SwAV (Caron et al. 2020, eq. 1–3) with two views, no multi-crop, no queue.

    Scores ``ℓ = ẑ Cᵀ`` against K unit prototypes; codes ``q = sinkhorn(ℓ)`` (no gradient);
    predictions ``p = softmax(ℓ/τ)``; swapped prediction
    ``L = −½ mean_B [ Σ_k q1_k log p2_k + q2_k log p1_k ]``. ``after_step`` renormalises
    the prototypes to unit norm (as the official code does before every step).

    Args:
        n_prototypes: K (default 32).
        temperature: τ (0.1).
        eps, iters: Sinkhorn-Knopp (0.05, 3).
        sinkhorn: ``False`` replaces the codes by ``softmax(ℓ/eps)`` — no equipartition
            (the ablation).
        seed: initialisation of the prototypes.
    """

    def __init__(self, encoder: nn.Module, embed_dim: int, *, n_prototypes: int = 32, temperature: float = 0.1,
                 eps: float = 0.05, iters: int = 3, sinkhorn: bool = True, seed: int = 0):
        K = _checks.positive_int("n_prototypes", n_prototypes, hint="e.g. 32 prototypes.")
        self.temperature = _checks.positive("temperature", temperature, hint="SwAV uses 0.1.")
        self.eps = _checks.positive("eps", eps, hint="SwAV uses 0.05.")
        self.iters = _checks.positive_int("iters", iters, hint="SwAV uses 3.")
        if not isinstance(sinkhorn, bool):
            raise TypeError(f"sinkhorn must be True or False, got {sinkhorn!r}.")
        self.use_sinkhorn, self.encoder, self.M = sinkhorn, encoder, embed_dim
        self.C = _prototypes(encoder, K, embed_dim, seed)

    def parameters(self) -> Iterable[Tensor]:
        yield from self.encoder.parameters()
        yield self.C

    def codes(self, scores: Tensor) -> Tensor:
        if self.use_sinkhorn:
            return sinkhorn(scores, eps=self.eps, iters=self.iters)
        return torch.softmax(scores / self.eps, -1)

    def loss(self, view1: Tensor, view2: Tensor) -> Tensor:
        z1, z2 = embed_pair(self.encoder, view1, view2, self.M)
        s1, s2 = (unit(z) @ self.C.transpose(-1, -2) for z in (z1, z2))
        with torch.no_grad():
            q1, q2 = self.codes(s1), self.codes(s2)
        lp1, lp2 = torch.log_softmax(s1 / self.temperature, -1), torch.log_softmax(s2 / self.temperature, -1)
        return (-0.5 * ((q1 * lp2).sum(-1) + (q2 * lp1).sum(-1)).mean(-1)).sum()

    @torch.no_grad()
    def after_step(self) -> None:
        self.C.copy_(unit(self.C))


METHODS = {
    "dino": (DINO, {}),
    "swav": (SwAV, {}),
}
OPTIONS = {"DINO": {"n_prototypes", "student_temp", "teacher_temp", "center_momentum", "teacher_momentum",
                    "centering", "seed"},
           "SwAV": {"n_prototypes", "temperature", "eps", "iters", "sinkhorn", "seed"}}
build = make_build(METHODS, OPTIONS)
