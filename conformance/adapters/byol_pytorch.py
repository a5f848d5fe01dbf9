"""The ``byol_pytorch`` adapter: lucidrains' byol-pytorch (``pip install ncspec[byol]``).

byol-pytorch's ``BYOL`` module owns its augmentations and hooks a hidden layer of a
torchvision-style network, so the adapter assembles the method from the package's own parts,
exactly as ``BYOL.forward`` combines them: the predictor ``MLP`` (Linear–BN–ReLU–Linear),
``cosine_loss_fn`` (``2 − 2 cos``) summed over the two symmetric terms and averaged over the
batch, the target as a deep copy with ``set_requires_grad(·, False)``, and ``EMA`` +
``update_moving_average`` after each step. ``simsiam_mlp`` is the package's
``use_momentum=False`` mode: the target is the online encoder under ``torch.no_grad()``.

Capabilities: ``byol``, ``simsiam_mlp``, ``loss:cosine``, ``target:ema``, ``symmetrized``.
"""
from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

try:
    import byol_pytorch.byol_pytorch as bp
except ImportError as e:  # pragma: no cover - exercised only without the extra
    raise ImportError(f"the 'byol_pytorch' adapter needs byol-pytorch ({e}); install it with "
                      f"python3 -m pip install 'ncspec[byol]'.") from e

from ._replicas import apply_heads, heads, per_replica

_loss_fn = getattr(bp, "cosine_loss_fn", None) or bp.loss_fn   # renamed in 0.8


class _BYOL:
    def __init__(self, encoder: nn.Module, embed_dim: int, *, momentum: float | None, hidden: int):
        self.encoder = encoder
        self.predictors = heads(lambda: bp.MLP(embed_dim, embed_dim, hidden, sync_batchnorm=False), encoder)
        self.target_encoder, self.ema = None, None
        if momentum is not None:
            self.target_encoder = copy.deepcopy(encoder)
            bp.set_requires_grad(self.target_encoder, False)
            self.ema = bp.EMA(momentum)

    def parameters(self):
        yield from self.encoder.parameters()
        yield from self.predictors.parameters()

    def loss(self, view1: Tensor, view2: Tensor) -> Tensor:
        z1, z2 = per_replica(self.encoder(view1)), per_replica(self.encoder(view2))
        with torch.no_grad():
            target = self.target_encoder or self.encoder
            t1, t2 = per_replica(target(view1)).detach(), per_replica(target(view2)).detach()
        total = 0
        for s, pred in enumerate(self.predictors):
            total = total + (_loss_fn(pred(z1[s]), t2[s]) + _loss_fn(pred(z2[s]), t1[s])).mean()
        return total

    def predictor(self, z: Tensor) -> Tensor:
        """The online predictor, per replica (the spec computes the definition through it)."""
        return apply_heads(self.predictors, z)

    def after_step(self) -> None:
        if self.target_encoder is not None:
            bp.update_moving_average(self.ema, self.target_encoder, self.encoder)


class BYOLPytorchAdapter:
    name = "byol_pytorch"
    capabilities = frozenset({"byol", "simsiam_mlp", "loss:cosine", "target:ema", "symmetrized"})
    #: the constant factor of this loss over the definition's ½[−cos(p1, t2) − cos(p2, t1)]: 2 from 2 − 2cos, 2
    #: from summing the two view orders instead of averaging them (checked in tests/test_thirdparty_adapters.py).
    #: The linear tier measures it through the learner's own predictor (exposed as `predictor`: ×4, as stated); the
    #: deep tier, whose encoder embeds only each step's own views, reads it here (its SGD runs go at lr / 4).
    loss_factor = {"simsiam_mlp": 4.0, "byol": 4.0}

    def build(self, method: str, encoder: nn.Module, embed_dim: int, **options):
        allowed = {"byol": {"momentum", "pred_hidden"}, "simsiam_mlp": {"pred_hidden"}}
        if method not in allowed:
            raise NotImplementedError(f"the byol_pytorch adapter provides byol and simsiam_mlp, not {method!r}.")
        unknown = set(options) - allowed[method]
        if unknown:
            raise TypeError(f"byol_pytorch adapter: {method!r} does not take option(s) {sorted(unknown)}; "
                            f"it takes {sorted(allowed[method])}.")
        momentum = options.get("momentum", 0.99) if method == "byol" else None
        return _BYOL(encoder, embed_dim, momentum=momentum, hidden=options.get("pred_hidden", 16))


adapter = BYOLPytorchAdapter()
