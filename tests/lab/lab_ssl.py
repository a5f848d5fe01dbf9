"""A lab's own SSL code, written the way labs write it (not ncspec's): BYOL with its own projector and predictor
(Linear–BN–ReLU–Linear), an EMA target over encoder + projector with BYOL's cosine momentum schedule held in
float32; VICReg with an expander (Linear–BN–ReLU ×2 + Linear, Bardes et al.); Barlow Twins with a projector and
BatchNorm standardisation. VICReg and Barlow Twins train data-parallel as their authors' code does (``distributed``:
global batch statistics, the heads' BatchNorm over all ranks). Each takes the backbone it is given, its output width
and how many independent copies ("replicas") of it are stacked on the leading dimension (0: none); heads are built
in the constructor, in the backbone's dtype. ``bug=`` plants one realistic bug, for the tests that check ncspec
names it."""
from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _distributed() -> bool:
    import torch.distributed as dist
    return dist.is_available() and dist.is_initialized()


def gather(z: Tensor) -> Tensor:
    """The global batch, with gradient (the authors' FullGatherLayer): each rank's gradient flows back to it."""
    if not _distributed():
        return z
    from torch.distributed.nn.functional import all_gather
    return torch.cat(all_gather(z.contiguous()), 0)


def world_size() -> int:
    import torch.distributed as dist
    return dist.get_world_size() if _distributed() else 1


def all_reduce(c: Tensor) -> Tensor:
    """Σ over ranks, with gradient (torch.distributed.nn's all_reduce — the fix the Barlow Twins authors planned in
    facebookresearch/barlowtwins#8 for their plain ``dist.all_reduce(c)``, which autograd does not see)."""
    if not _distributed():
        return c
    from torch.distributed.nn.functional import all_reduce as reduce_with_grad
    return reduce_with_grad(c)


class SyncBatchNorm1d(nn.BatchNorm1d):
    """BatchNorm over the global batch of all ranks — nn.SyncBatchNorm's arithmetic, which needs CUDA; this runs on
    CPU process groups too."""

    def forward(self, x: Tensor) -> Tensor:
        if not (self.training and _distributed()):
            return super().forward(x)
        g = gather(x)
        mean, var = g.mean(0), g.var(0, unbiased=False)
        with torch.no_grad():
            self.running_mean.lerp_(mean.detach(), self.momentum)
            self.running_var.lerp_(g.var(0, unbiased=True).detach(), self.momentum)
        return (x - mean) / torch.sqrt(var + self.eps) * self.weight + self.bias


def mlp(dims: list[int], last_bn: bool = False, sync: bool = False) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(dims, dims[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(dims) - 2:
            layers += [(SyncBatchNorm1d if sync else nn.BatchNorm1d)(b), nn.ReLU()]
    if last_bn:
        layers.append(nn.BatchNorm1d(dims[-1], affine=False))
    return nn.Sequential(*layers)


class Replicated(nn.Module):
    """One head per leading index of a (S, B, D) input (none for (B, D))."""

    def __init__(self, make, S: int):
        super().__init__()
        self.heads = nn.ModuleList(make() for _ in range(max(S, 1)))

    def forward(self, z: Tensor) -> Tensor:
        if z.dim() == 2:
            return self.heads[0](z)
        lead = z.shape[:-2]
        zs = z.reshape(-1, *z.shape[-2:])
        return torch.stack([h(x) for h, x in zip(self.heads, zs)]).reshape(*lead, z.shape[-2], -1)


class BYOL:
    def __init__(self, backbone: nn.Module, dim: int, *, replicas: int = 0, dtype=torch.float32, hidden: int = 0,
                 base_momentum: float = 0.99, total_steps: int = 1000, target_dtype=torch.float32, bug: str = ""):
        hidden = hidden or 4 * dim
        self.encoder = backbone
        self.base_momentum, self.momentum, self.total_steps, self.step = base_momentum, base_momentum, total_steps, 0
        self.target_dtype, self.bug = target_dtype, bug
        self.projector = Replicated(lambda: mlp([dim, hidden, dim]), replicas).to(dtype)
        self.predictor = Replicated(lambda: mlp([dim, hidden, dim]), replicas).to(dtype)
        self.target_encoder = copy.deepcopy(backbone).to(target_dtype)
        self.target_projector = copy.deepcopy(self.projector).to(target_dtype)
        for p in (*self.target_encoder.parameters(), *self.target_projector.parameters()):
            p.requires_grad_(False)

    def parameters(self):
        yield from self.encoder.parameters()
        yield from self.projector.parameters()
        yield from self.predictor.parameters()

    def _target(self, x: Tensor, like: Tensor) -> Tensor:
        with torch.no_grad():
            return self.target_projector(self.target_encoder(x.to(self.target_dtype))).to(like.dtype)

    def _regress(self, p: Tensor, z: Tensor) -> Tensor:
        if self.bug == "no_l2_normalisation":
            return (p - z).pow(2).sum(-1)
        return 2 - 2 * F.cosine_similarity(p, z, dim=-1)

    def loss(self, x1: Tensor, x2: Tensor) -> Tensor:
        h1, h2 = self.encoder(x1), self.encoder(x2)
        p1, p2 = self.predictor(self.projector(h1)), self.predictor(self.projector(h2))
        t1, t2 = self._target(x1, p1), self._target(x2, p2)
        if self.bug == "ema_per_micro_batch":
            self._update()
        return (self._regress(p1, t2) + self._regress(p2, t1)).mean(-1).sum()

    def _momentum(self) -> float:
        if self.bug == "schedule_decreasing":
            return 1 - (1 - self.base_momentum) * (1 + self.step / self.total_steps)
        K = self.total_steps // 20 if self.bug == "schedule_reaches_one_early" else self.total_steps
        return 1 - (1 - self.base_momentum) * (math.cos(math.pi * min(self.step, K) / K) + 1) / 2

    @torch.no_grad()
    def _update(self) -> None:
        m = self.momentum = self._momentum()
        if self.bug == "ema_copies_online":
            m = 0.0
        pairs = [(self.target_encoder, self.encoder)]
        if self.bug != "target_projector_frozen":
            pairs.append((self.target_projector, self.projector))
        for target, online in pairs:
            for t, o in zip(target.parameters(), online.parameters()):
                t.mul_(m).add_(o.detach().to(t.dtype), alpha=1 - m)

    def after_step(self) -> None:
        if self.bug != "ema_per_micro_batch":
            self._update()
        self.step += 1


def vicreg_loss(z1: Tensor, z2: Tensor, sim: float, std: float, cov: float, eps: float, bug: str = "") -> Tensor:
    """The authors' code: MSE invariance; ½ of each branch's hinge on the std; off-diagonal covariance / D."""
    B, D = z1.shape
    inv = F.mse_loss(z1, z2)
    raw1, raw2 = z1, z2
    z1, z2 = z1 - z1.mean(0), z2 - z2.mean(0)
    dim = 1 if bug == "std_over_features" else 0
    s1, s2 = torch.sqrt(z1.var(dim=dim) + eps), torch.sqrt(z2.var(dim=dim) + eps)
    var = F.relu(1 - s1).mean() / 2 + F.relu(1 - s2).mean() / 2
    if bug == "covariance_not_centred":
        z1, z2 = raw1, raw2
    c1, c2 = z1.T @ z1 / (B - 1), z2.T @ z2 / (B - 1)
    off = ~torch.eye(D, dtype=torch.bool, device=z1.device)
    covl = c1[off].pow(2).sum() / D + c2[off].pow(2).sum() / D
    return sim * inv + std * var + cov * covl


class VICReg:
    def __init__(self, backbone: nn.Module, dim: int, *, replicas: int = 0, dtype=torch.float32,
                 expander: int | None = 0, sim: float = 25.0, std: float = 25.0, cov: float = 1.0, eps: float = 1e-4,
                 distributed: bool = False, bug: str = ""):
        w = expander or 4 * dim                      # expander=None: no head, the loss on the backbone's output
        self.encoder, self.distributed = backbone, distributed
        self.coeffs, self.bug = (sim, std, cov, eps), bug
        sync = distributed and bug != "per_rank_batchnorm"
        self.projector = None if expander is None else \
            Replicated(lambda: mlp([dim, w, w, w], sync=sync), replicas).to(dtype)

    def parameters(self):
        yield from self.encoder.parameters()
        if self.projector is not None:
            yield from self.projector.parameters()

    def loss(self, x1: Tensor, x2: Tensor) -> Tensor:
        z1, z2 = self.encoder(x1), self.encoder(x2)
        if self.projector is not None:
            z1, z2 = self.projector(z1), self.projector(z2)
        z1, z2 = z1.reshape(-1, *z1.shape[-2:]), z2.reshape(-1, *z2.shape[-2:])
        if self.distributed:                      # the loss on the global batch, as the authors' FullGatherLayer
            z1 = torch.stack([gather(a) for a in z1])
            z2 = torch.stack([gather(b) for b in z2])
        return sum(vicreg_loss(a, b, *self.coeffs, bug=self.bug) for a, b in zip(z1, z2))

    def after_step(self) -> None:
        pass


def standardise(z: Tensor, sync: bool) -> Tensor:
    """BatchNorm1d(affine=False) in training mode, ε = 1e-5: each feature over the batch — the global batch of all
    ranks when ``sync`` (the authors convert the model to SyncBatchNorm), else this rank's shard alone."""
    g = gather(z) if sync else z
    return (z - g.mean(0)) / torch.sqrt(g.var(0, unbiased=False) + 1e-5)


class BarlowTwins:
    def __init__(self, backbone: nn.Module, dim: int, *, replicas: int = 0, dtype=torch.float32,
                 projector: int | None = 0, lambd: float = 0.0051, standardise: bool = True, distributed: bool = False,
                 bug: str = ""):
        w = projector or 4 * dim                     # projector=None: no head, the loss on the backbone's output
        self.encoder, self.lambd, self.standardise, self.bug = backbone, lambd, standardise, bug
        self.distributed = distributed
        if bug == "projector_option_ignored":
            projector = projector or 0
        self.projector = None if projector is None else \
            Replicated(lambda: mlp([dim, w, w], sync=distributed), replicas).to(dtype)

    def parameters(self):
        yield from self.encoder.parameters()
        if self.projector is not None:
            yield from self.projector.parameters()

    def loss(self, x1: Tensor, x2: Tensor) -> Tensor:
        z1, z2 = self.encoder(x1), self.encoder(x2)
        if self.projector is not None:
            z1, z2 = self.projector(z1), self.projector(z2)
        z1, z2 = z1.reshape(-1, *z1.shape[-2:]), z2.reshape(-1, *z2.shape[-2:])
        sync = self.distributed and self.bug != "per_rank_statistics"
        total = 0
        for a, b in zip(z1, z2):
            B = a.shape[0] * (world_size() if self.distributed else 1)       # the global batch
            if self.standardise and self.bug == "pooled_statistics":     # one BatchNorm call on both views
                a, b = standardise(torch.cat([a, b]), sync).split(a.shape[0])
            elif self.standardise:
                a, b = standardise(a, sync), standardise(b, sync)
            c = a.T @ b / B
            if self.distributed:                          # the authors' c summed over ranks, here with gradient
                c = all_reduce(c)
            on = (torch.diagonal(c) - 1).pow(2).sum()
            off = c.pow(2).sum() - torch.diagonal(c).pow(2).sum()
            total = total + on + self.lambd * off
        return total

    def after_step(self) -> None:
        pass
