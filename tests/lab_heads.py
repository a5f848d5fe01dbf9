"""Lab-style learners with heads of their own, written from docs/conformance.md (the adapter contract), as
``module:attr`` adapters: a BYOL with projector and predictor (Linear–BN–ReLU–Linear), an EMA target holding a
copy of both, symmetric 2 − 2cos; a VICReg with an expander (Linear–BN–ReLU ×2 + Linear, Bardes et al. 2022);
and their planted bugs (issue 24/25): a BYOL loss without its l2-normalisation, the predictor on both branches,
the predictor's BatchNorm in eval mode, a float32 target; VICReg's std over the feature dimension; a SimSiam
with both branches detached.

    ncspec check --adapter tests.lab_heads:byol -k "C1 or C7"
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _mlp(dims, dtype, *, out_bn: bool = False) -> nn.Sequential:
    layers = []
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(dims) - 2:
            layers += [nn.BatchNorm1d(b), nn.ReLU()]
    return nn.Sequential(*layers).to(dtype)


def _dtype(encoder) -> torch.dtype:
    return getattr(encoder, "dtype", None) or next(encoder.parameters()).dtype


def _rows(head, z: Tensor) -> Tensor:
    """One head for every leading (replica) index: (..., B, M) → (..., B, M′) (the heads' BN sees (B, M))."""
    flat = z.reshape(-1, *z.shape[-2:])
    return torch.stack([head(x) for x in flat]).reshape(*z.shape[:-1], -1)


class _Head(nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, z: Tensor) -> Tensor:
        return _rows(self.net, z)


class LabBYOL:
    """BYOL as labs write it (Grill et al. 2020): z = g(f(v)), p = q(z), t = SG(g′(f′(v))), L = Σ 2 − 2cos(p, t)
    over both orders, averaged over the batch."""

    def __init__(self, encoder, M, momentum, *, bug: str = "", target_dtype=None, hidden: int = 8):
        dt = _dtype(encoder)
        self.encoder, self.momentum, self.bug = encoder, momentum, bug
        self.projector = _Head(_mlp((M, hidden, M), dt))
        self.predictor = _Head(_mlp((M, hidden, M), dt))
        self.target_encoder = copy.deepcopy(encoder)
        self.target_projector = copy.deepcopy(self.projector)
        self.target_dtype = target_dtype or dt
        for part in (self.target_encoder, self.target_projector):
            part.to(self.target_dtype)
            for p in part.parameters():
                p.requires_grad_(False)

    def parameters(self):
        yield from self.encoder.parameters()
        yield from self.projector.parameters()
        yield from self.predictor.parameters()

    def _target(self, v: Tensor) -> Tensor:
        with torch.no_grad():
            t = self.target_projector(self.target_encoder(v.to(self.target_dtype)))
        t = t.to(v.dtype)
        return self.predictor(t) if self.bug == "predictor_both" else t

    def loss(self, view1: Tensor, view2: Tensor) -> Tensor:
        if self.bug == "bn_eval":
            self.predictor.eval()
        p1, p2 = (self.predictor(self.projector(self.encoder(v))) for v in (view1, view2))
        t1, t2 = self._target(view1), self._target(view2)
        if self.bug == "unnormalised":
            d = lambda p, t: (p - t).pow(2).sum(-1)          # the planted bug: no l2-normalisation
        else:
            d = lambda p, t: 2 - 2 * (F.normalize(p, dim=-1) * F.normalize(t, dim=-1)).sum(-1)
        return (d(p1, t2) + d(p2, t1)).mean(-1).sum()

    def after_step(self) -> None:
        m = self.momentum
        with torch.no_grad():
            for online, target in ((self.encoder, self.target_encoder), (self.projector, self.target_projector)):
                for a, b in zip(target.parameters(), online.parameters()):
                    a.mul_(m).add_(b.to(a.dtype), alpha=1 - m)


class LabVICReg:
    """VICReg with an expander h (Linear–BN–ReLU ×2 + Linear; Bardes et al. 2022, §4.2) on the encoder's
    output; the loss as the authors' code writes it, on z = h(f(v))."""

    def __init__(self, encoder, M, *, sim_coeff=25.0, std_coeff=25.0, cov_coeff=1.0, eps=1e-4, bug: str = "",
                 expand: int = 8):
        self.encoder, self.bug, self.eps = encoder, bug, eps
        self.w = (sim_coeff, std_coeff, cov_coeff)
        self.projector = _Head(_mlp((M, expand, expand, expand), _dtype(encoder)))

    def parameters(self):
        yield from self.encoder.parameters()
        yield from self.projector.parameters()

    def _one(self, x: Tensor, y: Tensor) -> Tensor:
        B, D = x.shape
        repr_loss = F.mse_loss(x, y)
        x, y = x - x.mean(0), y - y.mean(0)
        dim = 1 if self.bug == "std_over_features" else 0       # the planted bug: std across the features
        std_x, std_y = torch.sqrt(x.var(dim=dim) + self.eps), torch.sqrt(y.var(dim=dim) + self.eps)
        std_loss = torch.mean(F.relu(1 - std_x)) / 2 + torch.mean(F.relu(1 - std_y)) / 2
        cov_x, cov_y = x.T @ x / (B - 1), y.T @ y / (B - 1)
        off = ~torch.eye(D, dtype=torch.bool)
        cov_loss = cov_x[off].pow(2).sum() / D + cov_y[off].pow(2).sum() / D
        return self.w[0] * repr_loss + self.w[1] * std_loss + self.w[2] * cov_loss

    def loss(self, view1: Tensor, view2: Tensor) -> Tensor:
        z1, z2 = self.projector(self.encoder(view1)), self.projector(self.encoder(view2))
        z1, z2 = z1.reshape(-1, *z1.shape[-2:]), z2.reshape(-1, *z2.shape[-2:])
        return sum(self._one(a, b) for a, b in zip(z1, z2))

    def after_step(self) -> None:
        pass


class LabSimSiamDetached:
    """SimSiam with the stop-gradient on both branches: no gradient reaches anything (a failure, exit 1)."""

    def __init__(self, encoder, M):
        self.encoder = encoder
        self.predictor = _Head(_mlp((M, 8, M), _dtype(encoder)))

    def parameters(self):
        yield from self.encoder.parameters()
        yield from self.predictor.parameters()

    def loss(self, view1, view2):
        z1, z2 = self.encoder(view1).detach(), self.encoder(view2).detach()
        p1, p2 = self.predictor(z1).detach(), self.predictor(z2).detach()
        return -0.5 * (F.cosine_similarity(p1, z2, dim=-1).mean(-1) + F.cosine_similarity(p2, z1, dim=-1).mean(-1)
                       ).sum()

    def after_step(self):
        pass


class LabAdapter:
    capabilities = frozenset({"byol", "vicreg", "loss:cosine", "target:ema", "symmetrized"})

    def __init__(self, name: str, bug: str = "", target_dtype=None):
        self.name, self.bug, self.target_dtype = f"lab:{name}", bug, target_dtype

    def build(self, method, encoder, embed_dim, **options):
        if method == "byol":
            unknown = set(options) - {"momentum"}
            if unknown:
                raise TypeError(f"lab byol takes momentum only, not {sorted(unknown)}")
            return LabBYOL(encoder, embed_dim, options.get("momentum", 0.99), bug=self.bug,
                           target_dtype=self.target_dtype)
        if method == "vicreg":
            return LabVICReg(encoder, embed_dim, bug=self.bug, **options)
        if method == "simsiam_mlp" and self.bug == "both_detached":
            return LabSimSiamDetached(encoder, embed_dim)
        raise NotImplementedError(f"the lab adapter provides byol and vicreg, not {method!r}")


byol = LabAdapter("byol")
byol_float32_target = LabAdapter("byol-f32-target", target_dtype=torch.float32)
byol_unnormalised = LabAdapter("byol-unnormalised", "unnormalised")
byol_predictor_both = LabAdapter("byol-predictor-both", "predictor_both")
byol_bn_eval = LabAdapter("byol-bn-eval", "bn_eval")
vicreg = LabAdapter("vicreg")
vicreg_std_over_features = LabAdapter("vicreg-std-over-features", "std_over_features")
both_detached = LabAdapter("simsiam-both-detached", "both_detached")
both_detached.capabilities = frozenset({"simsiam_mlp", "loss:cosine"})


class _VICRegAsymmetric(LabVICReg):
    """VICReg plus 0.1·mean ‖z1‖² on the first view only: a different objective that no known bug explains."""

    def loss(self, view1, view2):
        z1 = self.projector(self.encoder(view1))
        return super().loss(view1, view2) + 0.1 * z1.pow(2).sum(-1).mean(-1).sum()


class _AsymmetricAdapter(LabAdapter):
    def build(self, method, encoder, embed_dim, **options):
        if method == "vicreg":
            return _VICRegAsymmetric(encoder, embed_dim, **options)
        return super().build(method, encoder, embed_dim, **options)


vicreg_asymmetric = _AsymmetricAdapter("vicreg-asymmetric")
vicreg_asymmetric.capabilities = frozenset({"vicreg"})
