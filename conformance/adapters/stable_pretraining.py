"""The ``stable_pretraining`` adapter: the real stable-pretraining package (``pip install ncspec[stable_pretraining]``).

Each learner is assembled from the package's own parts the way its methods
(``stable_pretraining.methods.simsiam`` / ``byol``) combine them in ``forward``, around the encoder the
harness owns: the loss modules ``BarlowTwinsLoss``, ``VICRegLoss`` and ``BYOLLoss``
(``stable_pretraining.losses``), SimSiam's negative cosine with its stop-gradient and its predictor MLP,
BYOL's predictor MLP, and ``TeacherStudentWrapper`` (``update_teacher`` after each step) for the EMA
target. Nothing of ncspec's reference is used.

Capabilities: ``simsiam_mlp`` (½[D(p1, SG(z2)) + D(p2, SG(z1))], D = −cos), ``byol`` (the same with the EMA
target and D = 2 − 2cos, so the loss is 2 × the definition's plus a constant: ``loss_factor``),
``barlow_twins``, ``vicreg``; ``distributed``: the package's losses gather over the process group whenever one
is initialised (autograd-aware ``all_reduce`` / ``all_gather``), so ``distributed=True`` is what they do there.

Conventions, not bugs (declared below, see docs/conformance.md "Findings"): VICReg's variance term is
½[v(Z) + v(Z′)] (the authors' code); Barlow Twins standardises with the unbiased std (B − 1) plus 1e-5 on the
std, so the diagonal of its cross-correlation is (B − 1)/B at best.

Importing the package loads its whole ``utils`` tree (transformers, lightning, wandb …; ≈ 12 s of CPU on the
development machine), so it is imported on the first ``build``, not with this module.

Encoders carry independent replicas on leading dimensions, (S, B, M); the package's modules take (B, M), so the
learner evaluates them per replica (one head per replica) and sums the losses.
"""
from __future__ import annotations

import functools
import importlib.util
from importlib import metadata
from types import SimpleNamespace

import torch
from torch import Tensor, nn

from ._replicas import PairLoss, apply_heads, heads, per_replica

if importlib.util.find_spec("stable_pretraining") is None:  # pragma: no cover - exercised only without the extra
    raise ImportError("the 'stable_pretraining' adapter needs the stable-pretraining package (no module named "
                      "'stable_pretraining'); install it with python3 -m pip install 'ncspec[stable_pretraining]'.")

version = metadata.version("stable-pretraining")


@functools.cache
def _spt() -> SimpleNamespace:
    """The package's parts, imported once (its import-time log line silenced)."""
    from loguru import logger
    logger.disable("stable_pretraining")
    try:
        from stable_pretraining.backbone.utils import TeacherStudentWrapper
        from stable_pretraining.losses.joint_embedding import BarlowTwinsLoss, BYOLLoss, VICRegLoss
        from stable_pretraining.methods import byol, simsiam
    finally:
        logger.enable("stable_pretraining")
    return SimpleNamespace(BarlowTwinsLoss=BarlowTwinsLoss, VICRegLoss=VICRegLoss, BYOLLoss=BYOLLoss,
                           TeacherStudentWrapper=TeacherStudentWrapper, simsiam=simsiam, byol=byol)


def _options(method: str, options: dict, allowed: dict) -> dict:
    unknown = set(options) - set(allowed)
    if unknown:
        raise TypeError(f"stable_pretraining adapter: {method!r} does not take option(s) {sorted(unknown)}; "
                        f"it takes {sorted(allowed)}.")
    o = {**allowed, **options}
    dist = torch.distributed
    if "distributed" in o and not o["distributed"] and dist.is_available() and dist.is_initialized() \
            and dist.get_world_size() > 1:
        raise ValueError("stable-pretraining's losses always reduce over an initialised process group; "
                         "distributed=False cannot be honoured inside one (pass distributed=True).")
    return o


class _SimSiam:
    """``SimSiam.forward``: ``(_neg_cos_sim(p1, z2) + _neg_cos_sim(p2, z1)) / 2``, the target detached inside."""

    def __init__(self, encoder: nn.Module, embed_dim: int, hidden: int):
        spt = _spt()
        self.encoder, self.neg_cos = encoder, spt.simsiam._neg_cos_sim
        self.heads = heads(lambda: spt.simsiam._predictor(embed_dim, hidden), encoder)

    def parameters(self):
        yield from self.encoder.parameters()
        yield from self.heads.parameters()

    def loss(self, view1: Tensor, view2: Tensor) -> Tensor:
        z1, z2 = per_replica(self.encoder(view1)), per_replica(self.encoder(view2))
        return sum((self.neg_cos(head(z1[s]), z2[s]) + self.neg_cos(head(z2[s]), z1[s])) / 2
                   for s, head in enumerate(self.heads))

    def predictor(self, z: Tensor) -> Tensor:
        """The online predictor, per replica (the spec computes the definition through it)."""
        return apply_heads(self.heads, z)

    def after_step(self) -> None:
        pass


class _BYOL:
    """``BYOL.forward``: ``(BYOLLoss(p1, t2) + BYOLLoss(p2, t1)) / 2`` with the teacher of a
    ``TeacherStudentWrapper`` around the encoder (EMA coefficient held at ``momentum``; the package's cosine
    schedule is driven by a training callback the harness does not run)."""

    def __init__(self, encoder: nn.Module, embed_dim: int, momentum: float, hidden: int):
        spt = _spt()
        self.encoder = encoder
        self.wrapper = spt.TeacherStudentWrapper(encoder, warm_init=True, base_ema_coefficient=momentum,
                                                 final_ema_coefficient=momentum)
        self.target_encoder = self.wrapper.teacher
        self.heads = heads(lambda: spt.byol._byol_mlp(embed_dim, hidden, embed_dim), encoder)
        self.criterion = spt.BYOLLoss()

    def parameters(self):
        yield from self.encoder.parameters()
        yield from self.heads.parameters()

    def loss(self, view1: Tensor, view2: Tensor) -> Tensor:
        z1 = per_replica(self.wrapper.forward_student(view1))
        z2 = per_replica(self.wrapper.forward_student(view2))
        t1 = per_replica(self.wrapper.forward_teacher(view1))
        t2 = per_replica(self.wrapper.forward_teacher(view2))
        return sum((self.criterion(head(z1[s]), t2[s]) + self.criterion(head(z2[s]), t1[s])) / 2
                   for s, head in enumerate(self.heads))

    def predictor(self, z: Tensor) -> Tensor:
        """The online predictor, per replica (the spec computes the definition through it)."""
        return apply_heads(self.heads, z)

    def after_step(self) -> None:
        self.wrapper.update_teacher()


class StablePretrainingAdapter:
    name = "stable_pretraining"
    capabilities = frozenset({"simsiam_mlp", "byol", "barlow_twins", "vicreg",
                              "loss:cosine", "target:ema", "symmetrized", "distributed"})
    conventions = {"vicreg_variance": "authors_code", "batch_std": "unbiased"}
    #: BYOL's loss over the definition's ½[−cos(p1, t2) − cos(p2, t1)]: 2 from BYOLLoss's 2 − 2cos (the two view
    #: orders are averaged, as in the definition); SimSiam's is the definition's. The suite cannot measure it with
    #: the package's own MLP head, so the deep tier reads it here (checked in tests/test_thirdparty_adapters.py).
    loss_factor = {"byol": 2.0, "simsiam_mlp": 1.0}

    def build(self, method: str, encoder: nn.Module, embed_dim: int, **options):
        if method == "barlow_twins":
            o = _options(method, options, dict(lambda_offdiag=0.0051, decorrelation=True, distributed=False))
            if o["decorrelation"] is not True:
                raise ValueError("stable-pretraining's BarlowTwinsLoss has no switch to drop the off-diagonal "
                                 "term (decorrelation=False); pass lambda_offdiag=0.0 instead.")
            return PairLoss(encoder, _spt().BarlowTwinsLoss(lambd=o["lambda_offdiag"]))
        if method == "vicreg":
            o = _options(method, options, dict(sim_coeff=25.0, std_coeff=25.0, cov_coeff=1.0, eps=1e-4,
                                               distributed=False))
            return PairLoss(encoder, _spt().VICRegLoss(sim_coeff=o["sim_coeff"], std_coeff=o["std_coeff"],
                                                        cov_coeff=o["cov_coeff"], epsilon=o["eps"]))
        if method == "byol":
            o = _options(method, options, dict(momentum=0.99, pred_hidden=16))
            return _BYOL(encoder, embed_dim, o["momentum"], o["pred_hidden"])
        if method == "simsiam_mlp":
            o = _options(method, options, dict(pred_hidden=16))
            return _SimSiam(encoder, embed_dim, o["pred_hidden"])
        raise NotImplementedError(f"the stable_pretraining adapter does not provide {method!r}; it provides "
                                  f"{sorted(m for m in self.capabilities if ':' not in m)}.")


adapter = StablePretrainingAdapter()
