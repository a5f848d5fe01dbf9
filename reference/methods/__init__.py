"""Reference methods, one file per family; :func:`build` is the adapter entry point.

* ``siamese.py`` — closed-form predictors: SimSiam loss with W_P = f_α(C) (DirectPred,
  DirectSet(α)), DirectCopy, IsoLoss;
* ``learned.py`` — a learned linear predictor: BYOL (EMA target) and the Tian et al. model.
"""
from torch import nn

from .. import _checks
from .learned import LEARNED_METHODS, LearnedPredictorSiamese
from .siamese import METHODS as CLOSED_FORM_METHODS
from .siamese import ClosedFormSiamese
from .siamese import build as _build_closed_form

METHODS = {**CLOSED_FORM_METHODS, **LEARNED_METHODS}


def build(method: str, encoder: nn.Module, embed_dim: int, **options):
    """A learner for ``method`` around ``encoder`` (the adapter protocol's ``build``)."""
    _checks.choice("method", method, set(METHODS))
    if method in LEARNED_METHODS:
        return LearnedPredictorSiamese(encoder, embed_dim, **{**LEARNED_METHODS[method], **options})
    return _build_closed_form(method, encoder, embed_dim, **options)


__all__ = ["ClosedFormSiamese", "LearnedPredictorSiamese", "build", "METHODS"]
