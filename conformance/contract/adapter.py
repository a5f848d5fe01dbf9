"""The adapter protocol: how an SSL implementation plugs into the spec suite.

An adapter is any object with

* ``name: str`` — shown in reports;
* ``capabilities: frozenset[str]`` — tags deciding which claims apply, e.g.
  ``"simsiam"``, ``"isoloss"``, ``"directpred"``, ``"loss:euclidean"``,
  ``"loss:cosine"``, ``"ablation:no_stopgrad"``, ``"ablation:wrong_side"``,
  ``"predictor:closed_form"``, ``"predictor:normalize"``, ``"predictor:learned"``
  (the learner then exposes its linear predictor as ``W_p``), ``"target:ema"``,
  ``"weight_decay"``; the center-vector family ``"simclr"``, ``"triplet"``,
  ``"barlow_twins"``, ``"vicreg"``, ``"dino"``, ``"swav"``, ``"simsiam_mlp"``,
  ``"lsimple"`` with ablations ``"ablation:no_predictor"``, ``"ablation:no_decorrelation"``,
  ``"ablation:no_batchnorm"``, ``"ablation:bn_no_center"``, ``"ablation:no_centering"``,
  ``"ablation:no_sinkhorn"``; and ``"ablation:no_projector"`` (a learner with its own ``projector``
  accepts ``projector=False`` and then applies none: its loss acts on the encoder's output, where the
  claims stated for a linear embedding — C5, S1–S3 — read it);
* ``build(method, encoder, embed_dim, **options) -> learner`` — a learner around
  an ``encoder`` that the harness owns (a linear map for the theory claims).

A learner exposes ``parameters()``, ``loss(view1, view2) -> scalar tensor`` and
``after_step()`` (target / EMA / predictor refresh, called after each update).

Three additions to that minimum, each needed by a claim that cannot be checked from outside:

* learners of ``target:ema`` methods expose the EMA copy as ``target_encoder`` (C1: no
  gradient reaches it; C2: it lags by the declared ``momentum``);
* closed-form predictors expose the matrix of the last ``loss`` call as ``W_P``, learned
  linear predictors theirs as ``W_p`` (C3; T1–T6);
* adapters tagged ``"distributed"`` accept ``distributed=True``: batch statistics over the
  ``torch.distributed`` process group (lightly's ``gather_distributed=True``; D1).

Optional parts a lab's learner owns: ``projector`` (its online head or expander: the definitions are evaluated on
``projector(encoder(view))``), ``predictor``, ``target_projector`` (the EMA copy of ``projector``; C2, C10, N6
check every tensor of the target) and ``momentum`` (the m the last ``after_step`` used; else it is fitted). An
adapter declaring ``conventions["momentum_schedule"]`` receives ``total_steps`` (the run length) in ``build``.

Optional: closed-form learners may expose ``corr_used``, the correlation estimate the last ``W_P``
was built from (C3 checks ``W_P`` against it on every call); adapters may declare ``conventions``,
a dict of known conventions (``vicreg_variance``, ``loss_value``, ``predictor_estimate``; see
:mod:`ncspec.conformance.contract.conventions`). A constant factor in the loss needs no declaration: it is
measured (:mod:`ncspec.conformance.contract.loss_scale`) — except where the suite cannot measure it, a method with
the library's own MLP heads in the deep tier: there an adapter may state ``loss_factor``, a dict
``{method: c > 0}`` (the loss is c × the definition's), and the deep tier divides the SGD learning
rate by it. byol-pytorch's adapter states 4 (2 − 2cos, both view orders summed), and a test checks it
exactly against the library's own outputs.

Further tags: ``"symmetrized"`` (BYOL's loss sums both view orders, C7), and
``"distributed"``. Full documentation: ``docs/conformance.md``.

Options the harness passes for the eigenspace claims: ``form`` ("euclidean" |
"cosine"), ``stop_grad`` ("target" | "none" | "online", with the ablation
capabilities), ``alpha``, ``eps``, ``normalize``. Leading dimensions of the
encoder's output are independent replicas; the learner sums their losses.
"""
from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Protocol, runtime_checkable

from ncspec.reference.methods import METHODS
from torch import Tensor, nn


@runtime_checkable
class Learner(Protocol):
    def parameters(self) -> Iterable[Tensor]: ...
    def loss(self, view1: Tensor, view2: Tensor) -> Tensor: ...
    def after_step(self) -> None: ...


@runtime_checkable
class Adapter(Protocol):
    name: str
    capabilities: frozenset

    def build(self, method: str, encoder: nn.Module, embed_dim: int, **options) -> Learner: ...


#: the forms, parts and switches an adapter may declare beside its methods (docs/conformance.md, "Capability tags")
PART_TAGS = frozenset({
    "loss:euclidean", "loss:cosine", "predictor:closed_form", "predictor:normalize", "predictor:learned",
    "target:ema", "weight_decay", "symmetrized", "distributed", "distributed:batchnorm",
    "ablation:no_stopgrad", "ablation:wrong_side", "ablation:no_predictor", "ablation:no_decorrelation",
    "ablation:no_batchnorm", "ablation:bn_no_center", "ablation:no_centering", "ablation:no_sinkhorn",
    "ablation:no_projector",
})


def known_tags() -> frozenset[str]:
    """Every capability tag a claim can require: the reference's methods and :data:`PART_TAGS`."""
    return frozenset(METHODS) | PART_TAGS


def unknown_tags(tags) -> list[tuple[str, str]]:
    """``(tag, suggestion)`` for each tag no claim knows (a misspelt tag would silently skip the claims needing the
    right one); the suggestion is the closest known tag, or ''."""
    known = known_tags()
    return [(t, next(iter(difflib.get_close_matches(t, sorted(known), n=1, cutoff=0.6)), ""))
            for t in sorted(tags) if isinstance(t, str) and t not in known]


def supports(adapter: Adapter, *tags: str) -> bool:
    return all(t in adapter.capabilities for t in tags)
