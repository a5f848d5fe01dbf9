"""Reference methods, one file per family; :func:`build` is the adapter entry point.

* ``closed_form.py`` — closed-form predictors: SimSiam loss with W_P = f_α(C) (DirectPred,
  DirectSet(α)), DirectCopy, IsoLoss;
* ``learned.py`` — a learned linear predictor: BYOL (EMA target) and the Tian et al. model;
* ``contrastive.py`` — SimCLR/InfoNCE, triplet; ``redundancy.py`` — Barlow Twins, VICReg;
  ``clustering.py`` — DINO, SwAV; ``center.py`` — SimSiam with an MLP predictor, L_Simple
  (the center-vector family of Jha et al. 2024).
"""
from torch import nn

from .. import _checks
from . import center, clustering, contrastive, redundancy
from .closed_form import METHODS as CLOSED_FORM_METHODS
from .closed_form import ClosedFormSiamese
from .closed_form import build as _build_closed_form
from .learned import LEARNED_METHODS, LearnedPredictorSiamese

_FAMILIES = (contrastive, redundancy, clustering, center)
METHODS = {**CLOSED_FORM_METHODS, **LEARNED_METHODS, **{m: v for f in _FAMILIES for m, v in f.METHODS.items()}}


def build(method: str, encoder: nn.Module, embed_dim: int, *, distributed: bool = False, **options):
    """A learner for ``method`` around ``encoder`` (the adapter protocol's ``build``).

    ``distributed=True``: under ``torch.distributed`` the learner sees the global batch — its
    encoder's output is gathered over ranks with gradient (:mod:`ncspec.reference.global_batch`).
    """
    if not isinstance(distributed, bool):
        raise TypeError(f"distributed must be True or False, got {distributed!r}.")
    learner = _build(method, encoder, embed_dim, **options)
    if distributed:
        from ..global_batch import GatheredEncoder
        learner.encoder = GatheredEncoder(learner.encoder)
    return learner


def option_names(method: str) -> frozenset[str]:
    """The keyword options ``build(method, ...)`` accepts (``distributed`` aside)."""
    _checks.choice("method", method, set(METHODS))
    for family in _FAMILIES:
        if method in family.METHODS:
            return frozenset(family.OPTIONS[family.METHODS[method][0].__name__])
    if method in LEARNED_METHODS:
        import inspect
        sig = inspect.signature(LearnedPredictorSiamese.__init__).parameters.values()
        return frozenset(p.name for p in sig if p.kind is p.KEYWORD_ONLY)
    from .closed_form import _OPTIONS
    return frozenset(_OPTIONS)


def _build(method: str, encoder: nn.Module, embed_dim: int, **options):
    _checks.choice("method", method, set(METHODS))
    for family in _FAMILIES:
        if method in family.METHODS:
            return family.build(method, encoder, embed_dim, **options)
    if method in LEARNED_METHODS:
        return LearnedPredictorSiamese(encoder, embed_dim, **{**LEARNED_METHODS[method], **options})
    return _build_closed_form(method, encoder, embed_dim, **options)


__all__ = ["ClosedFormSiamese", "LearnedPredictorSiamese", "build", "METHODS"]
