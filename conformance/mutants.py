"""Deliberately broken adapters: realistic bugs the spec suite must catch.

Each mutant is the reference adapter with one thing changed, as it shows up in
real SSL code. ``MUTANTS[name].caught_by`` lists the claims expected to catch
it; the meta-test (``tests/test_meta_mutants.py``) checks that each of those
claims' tests fails on the mutant, and that the reference passes them.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from reference import losses
from reference.losses import SG, predict, _half_sq
from reference.methods.siamese import ClosedFormSiamese
from reference.predictors import eigen_predictor

from .adapters.reference import ReferenceAdapter


def _iso_rearrangement_dropped(z1, z2, W_P):
    # IsoLoss written as its value, ½‖W_P z1 − SG(z2)‖²: the W_P factor stays in the gradient.
    return _half_sq(predict(z1, W_P), SG(z2))


def _sign_flipped(z1, z2, W_P):
    return -losses.simsiam(z1, z2, W_P)


def _cosine_unnormalised_prediction(z1, z2, W_P):
    # −⟨p, ẑ2⟩ without dividing by ‖p‖: no longer scale invariant.
    p = predict(z1, W_P)
    return -(p * SG(z2 / z2.norm(dim=-1, keepdim=True))).sum(-1).mean(-1)


class _Mutant(ReferenceAdapter):
    def __init__(self, name, loss_patch=None, learner_patch=None, option_patch=None):
        self.name = f"mutant:{name}"
        self._loss_patch, self._learner_patch, self._option_patch = loss_patch, learner_patch, option_patch

    def build(self, method, encoder, embed_dim, **options):
        if self._option_patch:
            options = self._option_patch(method, dict(options))
        learner = super().build(method, encoder, embed_dim, **options)
        if self._loss_patch:
            patched = self._loss_patch(method, options, learner.criterion)
            if patched is not None:
                learner.criterion = patched
        if self._learner_patch:
            self._learner_patch(learner)
        return learner


def _target_not_detached(method, options, criterion):
    if method != "isoloss" and options.get("stop_grad", "target") == "target":
        return losses.SIMSIAM[(options.get("form", "euclidean"), "none")]


def _sg_on_prediction(method, options, criterion):
    if method != "isoloss" and options.get("stop_grad", "target") == "target":
        return losses.SIMSIAM[(options.get("form", "euclidean"), "online")]


def _iso_dropped(method, options, criterion):
    if method == "isoloss" and options.get("form", "euclidean") == "euclidean":
        return _iso_rearrangement_dropped


def _flip(method, options, criterion):
    return lambda z1, z2, W_P: -criterion(z1, z2, W_P)


def _cos_unnorm(method, options, criterion):
    if method != "isoloss" and options.get("form") == "cosine" and options.get("stop_grad", "target") == "target":
        return _cosine_unnormalised_prediction


def _predictor_bypassed(learner):
    learner.predictor = lambda z1: torch.eye(z1.shape[-1], dtype=z1.dtype).expand(*z1.shape[:-2], -1, -1)


def _correlation_not_detached(learner):
    def predictor(z1):
        C = z1.transpose(-1, -2) @ z1 / z1.shape[-2]  # no .detach(): gradient flows through eigh
        lam, U = torch.linalg.eigh(C)
        omega = lam.clamp_min(0) ** learner.alpha
        return (U * omega.unsqueeze(-2)) @ U.transpose(-1, -2)
    learner.predictor = predictor


def _normalize_ignored(method, options):
    options.pop("normalize", None)
    return options


def _stop_grad_ignored(method, options):
    options.pop("stop_grad", None)  # the ablation switch is accepted but has no effect
    return options


def _alpha_ignored(method, options):
    options.pop("alpha", None)  # the predictor always uses α = 1
    return options


@dataclass
class MutantSpec:
    name: str
    bug: str
    adapter: _Mutant
    caught_by: list[str] = field(default_factory=list)


def _spec(name, bug, caught_by, **patches):
    return MutantSpec(name, bug, _Mutant(name, **patches), caught_by)


MUTANTS = {m.name: m for m in [
    _spec("no_stopgrad", "target branch not detached (SG forgotten)", ["H1", "H4", "H5", "H6", "H8"],
          loss_patch=_target_not_detached),
    _spec("stopgrad_on_prediction", "SG placed on the online prediction instead of the target",
          ["H1", "H4", "H5", "H6", "H8"], loss_patch=_sg_on_prediction),
    _spec("isoloss_rearrangement_dropped", "IsoLoss computed as ½‖W_P z1 − SG(z2)‖² (keeps the W_P factor)",
          ["H4", "H5"], loss_patch=_iso_dropped),
    _spec("loss_sign_flipped", "loss returned with the wrong sign (gradient ascent)",
          ["H1", "H2", "H3", "H4", "H5", "H6", "H8"], loss_patch=_flip),
    _spec("predictor_bypassed", "predictor never applied (W_P = I)",
          ["H1", "H2", "H3", "H4", "H5", "H6", "H8"], learner_patch=_predictor_bypassed),
    _spec("correlation_not_detached", "DirectPred's correlation estimate not detached",
          ["H1", "H2", "H4", "H5", "H8"], learner_patch=_correlation_not_detached),
    _spec("cosine_missing_normalisation", "cosine loss without 1/‖p‖", ["H4", "H6"], loss_patch=_cos_unnorm),
    _spec("normalize_ignored", "the λ_max normalisation option silently ignored", ["H8"],
          option_patch=_normalize_ignored),
    _spec("alpha_ignored", "the predictor exponent α silently fixed to 1",
          ["H1", "H2", "H3", "H4", "H5", "H8"], option_patch=_alpha_ignored),
    _spec("stop_grad_option_ignored", "the stop-grad ablation switch accepted but ignored (SG stays on the "
          "target)", ["H2", "H3"], option_patch=_stop_grad_ignored),
]}
