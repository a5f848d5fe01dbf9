"""The ``lightly`` adapter: methods assembled from the real lightly package (``pip install ncspec[lightly]``).

Each learner is built the way lightly's own examples build the method — lightly's loss
modules (``BarlowTwinsLoss``, ``VICRegLoss``, ``NTXentLoss``, ``NegativeCosineSimilarity``),
its heads (``BYOLPredictionHead``, ``SimSiamPredictionHead``) and ``update_momentum`` /
``deactivate_requires_grad`` for the EMA target — around the encoder the harness owns.
Nothing of ncspec's reference is used.

Capabilities: ``byol`` (EMA target, symmetrised cosine loss), ``simsiam_mlp`` (SimSiam with
lightly's prediction head), ``barlow_twins``, ``vicreg``, ``simclr``; ``distributed`` (the
losses' ``gather_distributed=True``). lightly has no closed-form predictor (DirectPred,
IsoLoss), no learned *linear* predictor with Euclidean loss and none of the ablation switches,
so the H, T, W and P claims do not apply and are skipped with that reason.

Encoders carry independent replicas on leading dimensions, (S, B, M); lightly's modules take
(B, M), so the learner evaluates them per replica (one head per replica) and sums the losses.
"""
from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from ._replicas import PairLoss, apply_heads, heads, per_replica

try:
    import lightly
    from lightly.loss import BarlowTwinsLoss, NegativeCosineSimilarity, NTXentLoss, VICRegLoss
    from lightly.models.modules.heads import BYOLPredictionHead, SimSiamPredictionHead
    from lightly.models.utils import deactivate_requires_grad, update_momentum
except ImportError as e:  # pragma: no cover - exercised only without the extra
    raise ImportError(f"the 'lightly' adapter needs the lightly package ({e}); install it with "
                      f"python3 -m pip install 'ncspec[lightly]'.") from e


def _options(method: str, options: dict, allowed: dict) -> dict:
    unknown = set(options) - set(allowed)
    if unknown:
        raise TypeError(f"lightly adapter: {method!r} does not take option(s) {sorted(unknown)}; "
                        f"it takes {sorted(allowed)}.")
    return {**allowed, **options}


class _Predictive:
    """SimSiam / BYOL as in lightly's examples: ``½[D(p1, SG(t2)) + D(p2, SG(t1))]``, ``D = −cos``.

    ``target_encoder`` is ``None`` for SimSiam (the target is the online encoder, detached)
    and an EMA copy for BYOL, updated by ``update_momentum(online, target, m)`` after a step.
    """

    def __init__(self, encoder: nn.Module, heads: nn.ModuleList, momentum: float | None):
        self.encoder, self.heads, self.momentum = encoder, heads, momentum
        self.criterion = NegativeCosineSimilarity()
        self.target_encoder = None
        if momentum is not None:
            self.target_encoder = copy.deepcopy(encoder)
            deactivate_requires_grad(self.target_encoder)

    def parameters(self):
        yield from self.encoder.parameters()
        yield from self.heads.parameters()

    def loss(self, view1: Tensor, view2: Tensor) -> Tensor:
        z1, z2 = per_replica(self.encoder(view1)), per_replica(self.encoder(view2))
        if self.target_encoder is None:
            t1, t2 = z1.detach(), z2.detach()
        else:
            with torch.no_grad():
                t1, t2 = per_replica(self.target_encoder(view1)), per_replica(self.target_encoder(view2))
        total = 0
        for s, head in enumerate(self.heads):
            p1, p2 = head(z1[s]), head(z2[s])
            total = total + 0.5 * (self.criterion(p1, t2[s]) + self.criterion(p2, t1[s]))
        return total

    def predictor(self, z: Tensor) -> Tensor:
        """The online predictor, per replica (the spec computes the definition through it)."""
        return apply_heads(self.heads, z)

    def after_step(self) -> None:
        if self.target_encoder is not None:
            update_momentum(self.encoder, self.target_encoder, m=self.momentum)


class LightlyAdapter:
    name = "lightly"
    capabilities = frozenset({"byol", "simsiam_mlp", "barlow_twins", "vicreg", "simclr",
                              "loss:cosine", "target:ema", "symmetrized", "distributed"})

    def build(self, method: str, encoder: nn.Module, embed_dim: int, **options):
        if method == "barlow_twins":
            o = _options(method, options, dict(lambda_offdiag=0.0051, decorrelation=True, distributed=False))
            if o["decorrelation"] is not True:
                raise ValueError("lightly's BarlowTwinsLoss has no switch to drop the off-diagonal term "
                                 "(decorrelation=False); pass lambda_offdiag=0.0 instead.")
            return PairLoss(encoder, BarlowTwinsLoss(lambda_param=o["lambda_offdiag"],
                                                      gather_distributed=o["distributed"]))
        if method == "vicreg":
            o = _options(method, options, dict(sim_coeff=25.0, std_coeff=25.0, cov_coeff=1.0, eps=1e-4,
                                               distributed=False))
            return PairLoss(encoder, VICRegLoss(lambda_param=o["sim_coeff"], mu_param=o["std_coeff"],
                                                 nu_param=o["cov_coeff"], eps=o["eps"],
                                                 gather_distributed=o["distributed"]))
        if method == "simclr":
            o = _options(method, options, dict(temperature=0.5, distributed=False))
            return PairLoss(encoder, NTXentLoss(temperature=o["temperature"], gather_distributed=o["distributed"]))
        if method == "byol":
            o = _options(method, options, dict(momentum=0.99, pred_hidden=16))
            return _Predictive(
                encoder,
                heads(lambda: BYOLPredictionHead(embed_dim, o["pred_hidden"], embed_dim), encoder),
                o["momentum"],
            )
        if method == "simsiam_mlp":
            o = _options(method, options, dict(pred_hidden=16))
            return _Predictive(
                encoder, heads(lambda: SimSiamPredictionHead(embed_dim, o["pred_hidden"], embed_dim), encoder), None
            )
        raise NotImplementedError(f"the lightly adapter does not provide {method!r}; it provides "
                                  f"{sorted(m for m in self.capabilities if ':' not in m)}.")


adapter = LightlyAdapter()
version = lightly.__version__
