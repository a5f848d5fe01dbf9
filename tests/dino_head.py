"""A DINO adapter with DINO's own head, written from Caron et al. (ICCV 2021, §3.1 and Appendix) and the adapter
contract alone: the head is a 3-layer MLP (hidden width, GELU) ending in a 256-d bottleneck, l2-normalised, then a
weight-normalised last layer of K prototypes (``norm_last_layer``: the weight's norm fixed at 1). The teacher is an
EMA of the student (encoder and head); its outputs are centred by ``c ← m_c c + (1 − m_c) mean(teacher logits)`` and
sharpened by τ_t. The learner declares its head up to the bottleneck as ``projector`` (the adapter contract's optional
member): the embedding the prototypes score.

Used by ``tests/test_survivors.py`` (issue 25: J6 measured ‖s‖ before this head, where centering does not act).
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class Head(nn.Module):
    """DINO's projection head without its last layer: Linear → GELU → Linear → GELU → Linear(bottleneck)."""

    def __init__(self, M: int, hidden: int, bottleneck: int):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(M, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(),
                                 nn.Linear(hidden, bottleneck))

    def forward(self, z: Tensor) -> Tensor:
        return self.mlp(z)


class PerReplica(nn.ModuleList):
    """One module per replica of the harness's encoder: ``(S, B, ·) -> (S, B, ·)``."""

    def forward(self, z: Tensor) -> Tensor:
        if z.dim() == 2:
            return self[0](z)
        return torch.stack([m(z[s]) for s, m in enumerate(self)])


class DINO:
    def __init__(self, encoder: nn.Module, embed_dim: int, *, hidden: int = 64, bottleneck: int = 256,
                 n_prototypes: int = 64, student_temp: float = 0.1, teacher_temp: float = 0.04,
                 center_momentum: float = 0.9, teacher_momentum: float = 0.996, centering: bool = True):
        S = int(getattr(encoder, "replicas", 1))
        dtype = getattr(encoder, "dtype", torch.float32)
        self.encoder = encoder
        self.projector = PerReplica(Head(embed_dim, hidden, bottleneck) for _ in range(S)).to(dtype)
        # the last layer's direction v; weight = v/‖v‖ (weight norm with g fixed at 1, DINO's norm_last_layer)
        self.prototypes = nn.Parameter(torch.randn(S, n_prototypes, bottleneck, dtype=dtype) * 0.02)
        self.teacher = copy.deepcopy(encoder)
        self.teacher_projector = copy.deepcopy(self.projector)
        self.teacher_prototypes = self.prototypes.detach().clone()
        for p in [*self.teacher.parameters(), *self.teacher_projector.parameters()]:
            p.requires_grad_(False)
        self.tau_s, self.tau_t, self.m, self.m_c = student_temp, teacher_temp, teacher_momentum, center_momentum
        self.centering = centering
        self.center = torch.zeros(S, 1, n_prototypes, dtype=dtype)
        self._batch_center = None

    def parameters(self):
        yield from self.encoder.parameters()
        yield from self.projector.parameters()
        yield self.prototypes

    @staticmethod
    def logits(h: Tensor, prototypes: Tensor) -> Tensor:
        """The weight-normalised last layer on the l2-normalised bottleneck: (S, B, K)."""
        return F.normalize(h, dim=-1) @ F.normalize(prototypes, dim=-1).transpose(-1, -2)

    def loss(self, view1: Tensor, view2: Tensor) -> Tensor:
        student = [self.logits(self.projector(self.encoder(v)), self.prototypes) / self.tau_s for v in (view1, view2)]
        with torch.no_grad():
            t = [self.logits(self.teacher_projector(self.teacher(v)), self.teacher_prototypes) for v in (view1, view2)]
            self._batch_center = 0.5 * (t[0].mean(-2, keepdim=True) + t[1].mean(-2, keepdim=True))
            c = self.center if self.centering else 0.0
            P_t = [torch.softmax((ti - c) / self.tau_t, -1) for ti in t]
        H = lambda p, s: -(p * torch.log_softmax(s, -1)).sum(-1).mean(-1)
        return (0.5 * (H(P_t[0], student[1]) + H(P_t[1], student[0]))).sum()

    @torch.no_grad()
    def after_step(self) -> None:
        for pt, ps in zip([*self.teacher.parameters(), *self.teacher_projector.parameters()],
                          [*self.encoder.parameters(), *self.projector.parameters()]):
            pt.mul_(self.m).add_(ps.detach(), alpha=1 - self.m)
        self.teacher_prototypes.mul_(self.m).add_(self.prototypes.detach(), alpha=1 - self.m)
        if self._batch_center is not None:
            self.center = self.m_c * self.center + (1 - self.m_c) * self._batch_center
            self._batch_center = None


class DINOHeadAdapter:
    name = "dino_own_head"
    capabilities = frozenset({"dino", "ablation:no_centering"})

    def build(self, method: str, encoder: nn.Module, embed_dim: int, **options):
        if method != "dino":
            raise NotImplementedError(f"dino_own_head provides dino only, not {method!r}")
        return DINO(encoder, embed_dim, **options)


adapter = DINOHeadAdapter()
