"""An official-style SimSiam adapter, written from Chen & He (CVPR 2021) and the adapter contract alone.

What most labs write: the 2-layer predictor MLP ``Linear(M, h, bias=False) → BatchNorm1d(h) → ReLU →
Linear(h, M)`` (the paper's §3: "the prediction MLP h has BN applied to its hidden fc layer; its output fc
does not have BN or ReLU"), the symmetric negative cosine ``L = ½ D(p1, SG(z2)) + ½ D(p2, SG(z1))``
(Algorithm 1), and the no-stop-grad ablation of §4.1 declared (``stop_grad="none"``). The projector
ending in ``BatchNorm1d(affine=False)`` is part of the encoder the harness owns (the deep tier's default).
Data-parallel as the authors train it: each rank's loss on its own slice (DDP averages the gradients) and the
predictor's BatchNorm synchronised (``convert_sync_batchnorm``; ``nn.SyncBatchNorm`` needs CUDA, so on CPU ranks
the same arithmetic with ``torch.distributed.nn``'s autograd-aware ``all_gather``).

Used by ``tests/test_official_simsiam.py`` to check what ncspec reaches on such code:
``ncspec check --adapter tests/official_simsiam.py:adapter`` (linear tier) and ``--tier deep``.
"""
from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn


def D(p: Tensor, z: Tensor) -> Tensor:
    """Negative cosine similarity, averaged over the batch (Chen & He 2021, eq. 1)."""
    return -F.cosine_similarity(p, z, dim=-1).mean(-1)


class SyncBatchNorm1d(nn.BatchNorm1d):
    """BatchNorm over the global batch of all ranks (what ``nn.SyncBatchNorm`` computes), for CPU process groups."""

    def forward(self, x: Tensor) -> Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        from torch.distributed.nn.functional import all_gather
        g = torch.cat(all_gather(x), 0)
        mean, var = g.mean(0), g.var(0, unbiased=False)
        with torch.no_grad():
            n = g.shape[0]
            self.running_mean.mul_(1 - self.momentum).add_(self.momentum * mean)
            self.running_var.mul_(1 - self.momentum).add_(self.momentum * var * n / max(n - 1, 1))
        return (x - mean) / torch.sqrt(var + self.eps) * self.weight + self.bias


class PerReplica(nn.ModuleList):
    """One head per replica of the harness's encoder: ``(S, B, M) -> (S, B, D)``, or ``(B, M) -> (B, D)`` for one."""

    def forward(self, z: Tensor) -> Tensor:
        if z.dim() == 2:
            return self[0](z)
        return torch.stack([h(z[s]) for s, h in enumerate(self)])


def projection_mlp(M: int, hidden: int, D: int) -> nn.Sequential:
    """SimSiam's projector (Chen & He 2021, §3: "The projection MLP has BN applied to each fully-connected layer,
    including its output fc. Its output fc has no ReLU"), 3 layers, the output BN without affine parameters as the
    authors' code builds it."""
    return nn.Sequential(nn.Linear(M, hidden, bias=False), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
                         nn.Linear(hidden, hidden, bias=False), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
                         nn.Linear(hidden, D, bias=False), nn.BatchNorm1d(D, affine=False))


class SimSiam:
    def __init__(self, encoder: nn.Module, embed_dim: int, *, pred_hidden: int = 16, stop_grad: str = "target",
                 distributed: bool = False, own_projector: bool = False):
        if stop_grad not in ("target", "none"):
            raise ValueError(f"stop_grad must be 'target' or 'none', got {stop_grad!r}")
        self.encoder, self.stop_grad = encoder, stop_grad
        dtype = getattr(encoder, "dtype", torch.float32)
        # one predictor per replica of the harness's encoder (the leading dimension S of (S, B, M))
        self.replicas = int(getattr(encoder, "replicas", 1))
        W = getattr(encoder, "W", None)
        if isinstance(W, Tensor) and W.dim() == 3:
            self.replicas = W.shape[0]
        self.predictors = nn.ModuleList(
            nn.Sequential(nn.Linear(embed_dim, pred_hidden, bias=False),
                          (SyncBatchNorm1d if distributed else nn.BatchNorm1d)(pred_hidden),
                          nn.ReLU(inplace=True), nn.Linear(pred_hidden, embed_dim))
            for _ in range(self.replicas)).to(dtype)
        # the learner's own projector (the adapter contract's optional `projector`), when the lab's code has one
        self.projector = (PerReplica(projection_mlp(embed_dim, 2 * embed_dim, embed_dim)
                                     for _ in range(self.replicas)).to(dtype) if own_projector else None)
        if own_projector:                     # the contract's `predictor` beside it: the same modules, per replica
            self.predictor = PerReplica(list(self.predictors))

    def parameters(self):
        yield from self.encoder.parameters()
        if self.projector is not None:
            yield from self.projector.parameters()
        yield from self.predictors.parameters()

    def embed(self, view: Tensor) -> Tensor:
        z = self.encoder(view)
        return z if self.projector is None else self.projector(z)

    def loss(self, view1: Tensor, view2: Tensor) -> Tensor:
        z1, z2 = self.embed(view1), self.embed(view2)
        z1, z2 = z1.reshape(-1, *z1.shape[-2:]), z2.reshape(-1, *z2.shape[-2:])
        total = 0
        for s, h in enumerate(self.predictors):
            p1, p2 = h(z1[s]), h(z2[s])
            t1, t2 = (z1[s].detach(), z2[s].detach()) if self.stop_grad == "target" else (z1[s], z2[s])
            total = total + 0.5 * D(p1, t2) + 0.5 * D(p2, t1)
        return total

    def after_step(self) -> None:
        pass


class OfficialSimSiamAdapter:
    name = "official_simsiam"
    capabilities = frozenset({"simsiam_mlp", "loss:cosine", "symmetrized", "ablation:no_stopgrad", "distributed",
                              "distributed:batchnorm"})
    own_projector = False

    def build(self, method: str, encoder: nn.Module, embed_dim: int, **options):
        if method != "simsiam_mlp":
            raise NotImplementedError(f"official_simsiam provides simsiam_mlp only, not {method!r}")
        unknown = set(options) - {"pred_hidden", "stop_grad", "distributed"}
        if unknown:
            raise TypeError(f"official_simsiam: unknown option(s) {sorted(unknown)}")
        return SimSiam(encoder, embed_dim, own_projector=self.own_projector, **options)


class OwnProjectorSimSiamAdapter(OfficialSimSiamAdapter):
    """The same SimSiam with its own projector in the learner (ending in ``BatchNorm1d(affine=False)``), as the
    authors' code builds it: the representation the loss acts on is batch-standardised (issue 25's false alarm)."""
    name = "official_simsiam_own_projector"
    own_projector = True


adapter = OfficialSimSiamAdapter()
own_projector_adapter = OwnProjectorSimSiamAdapter()
