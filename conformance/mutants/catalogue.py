"""Deliberately broken adapters: realistic bugs the spec suite must catch.

Each mutant is the reference adapter with one thing changed, as it shows up in
real SSL code. ``MUTANTS[name].caught_by`` lists the claims expected to catch
it; the meta-test (``tests/test_meta_mutants.py``) checks that each of those
claims' tests fails on the mutant, and that the reference passes them. The bugs themselves, one patch per
mutant named for it, are in :mod:`ncspec.conformance.mutants.patches`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..adapters.reference import ReferenceAdapter
from . import patches


class _Mutant(ReferenceAdapter):
    def __init__(self, name, loss_patch=None, learner_patch=None, option_patch=None, conventions=None):
        self.name = f"mutant:{name}"
        if conventions is not None:
            self.conventions = conventions   # what the mutant declares (conformance/contract/conventions.py)
        self._loss_patch, self._learner_patch, self._option_patch = loss_patch, learner_patch, option_patch

    def build(self, method, encoder, embed_dim, **options):
        if self._option_patch:
            options = self._option_patch(method, dict(options))
        learner = super().build(method, encoder, embed_dim, **options)
        if self._loss_patch and hasattr(learner, "criterion"):
            patched = self._loss_patch(method, options, learner.criterion)
            if patched is not None:
                learner.criterion = patched
        if self._learner_patch:
            self._learner_patch(learner)
        return learner


@dataclass
class MutantSpec:
    name: str
    bug: str
    adapter: _Mutant
    caught_by: list[str] = field(default_factory=list)


def _spec(name, bug, caught_by, **patches):
    return MutantSpec(name, bug, _Mutant(name, **patches), caught_by)


MUTANTS = {m.name: m for m in [
    _spec("no_stopgrad", "target branch not detached (SG forgotten)",
          ["H1", "H4", "H5", "H6", "H8", "R1", "R3", "N1", "N5", "N8", "N10"],
          loss_patch=patches.no_stopgrad),
    _spec("stopgrad_on_prediction", "SG placed on the online prediction instead of the target",
          ["H1", "H4", "H5", "H6", "H8", "R1", "R2", "R3", "R4"], loss_patch=patches.stopgrad_on_prediction),
    _spec("isoloss_rearrangement_dropped", "IsoLoss computed as ½‖W_P z1 − SG(z2)‖² (keeps the W_P factor)",
          ["H4", "H5", "R4"], loss_patch=patches.isoloss_rearrangement_dropped),
    _spec("loss_sign_flipped", "loss returned with the wrong sign (gradient ascent)",
          ["H1", "H2", "H3", "H4", "H5", "H6", "H8", "R1", "R2", "R3", "R4"], loss_patch=patches.loss_sign_flipped),
    _spec("predictor_bypassed", "predictor never applied (W_P = I)",
          ["H1", "H2", "H3", "H4", "H5", "H6", "H8", "R1", "R2", "R3", "R4", "N1"],
          learner_patch=patches.predictor_bypassed),
    _spec("correlation_not_detached", "DirectPred's correlation estimate not detached",
          ["H1", "H2", "H4", "H5", "H8", "R1", "R4"], learner_patch=patches.correlation_not_detached),
    _spec("cosine_missing_normalisation", "cosine loss without 1/‖p‖", ["H4", "H6"],
          loss_patch=patches.cosine_missing_normalisation),
    _spec("normalize_ignored", "the λ_max normalisation option silently ignored", ["H8"],
          option_patch=patches.normalize_ignored),
    _spec("alpha_ignored", "the predictor exponent α silently fixed to 1",
          ["H1", "H2", "H3", "H4", "H5", "H8"], option_patch=patches.alpha_ignored),
    _spec("stop_grad_option_ignored", "the stop-grad ablation switch accepted but ignored (SG stays on the "
          "target)", ["H2", "H3", "T5", "P1", "P2", "P3", "R1", "R2", "J2", "N1", "N5", "N8", "N10"],
          option_patch=patches.stop_grad_option_ignored),
    _spec("weight_decay_doubled", "weight decay applied twice (in the loss and again by the optimiser): "
          "the variance threshold moves to τ²/(8η) − 1",
          ["W1", "W2", "W3", "T1", "T3", "T4", "P1", "P3", "P4", "P5", "P6"],
          option_patch=patches.weight_decay_doubled),
    _spec("tau_ignored", "the target-scale option τ silently ignored (W_a = W)", ["W1"],
          option_patch=patches.tau_ignored),
    _spec("learned_weight_decay_ignored", "the learned-predictor model's weight_decay option accepted but "
          "never applied", ["T1", "T3", "T4", "P1", "P2", "P3", "P4", "P5", "P6"],
          option_patch=patches.learned_weight_decay_ignored),
    _spec("alpha_p_ignored", "the predictor learning-rate ratio α_p ignored (predictor trains at the encoder's "
          "rate)", ["T1", "T3", "T4"], option_patch=patches.alpha_p_ignored),
    _spec("learned_predictor_frozen", "the learned linear predictor left out of the optimised parameters (it never "
          "trains)", ["T1", "T2", "T3", "N9"], learner_patch=patches.learned_predictor_frozen),
    _spec("predictor_weight_decay_missing", "weight decay on the encoder only (predictor param group without "
          "it)", ["T1", "T3", "T4", "T5", "P1", "P2", "P3", "P4", "P5", "P6"],
          learner_patch=patches.predictor_weight_decay_missing),
    _spec("learned_target_not_detached", "the learned-predictor model's target not detached",
          ["T1", "T2", "T3", "T4", "T6", "P1", "P3", "P4", "P5", "P6", "C1", "M1", "M2", "M3"],
          option_patch=patches.learned_target_not_detached),
    _spec("directcopy_unnormalised", "DirectCopy's predictor built as Ĉ + εI, without dividing by ‖Ĉ‖_F",
          ["W2"], learner_patch=patches.directcopy_unnormalised),
    _spec("ema_target_frozen", "the EMA target is never updated (momentum stuck at 1)", ["P6", "C2", "N6"],
          learner_patch=patches.ema_target_frozen),
    _spec("dino_centering_ignored", "DINO's center tracked but never subtracted", ["J6"],
          learner_patch=patches.dino_centering_ignored),
    _spec("dino_center_never_updated", "DINO's center EMA never updated (stays 0)", ["J6"],
          learner_patch=patches.dino_center_never_updated),
    _spec("lsimple_penalty_sign_flipped", "L_Simple's center penalty with the wrong sign", ["J1", "J3"],
          learner_patch=patches.lsimple_penalty_sign_flipped),
    _spec("barlow_twins_bn_dropped", "Barlow Twins' cross-correlation on raw embeddings", ["J5"],
          learner_patch=patches.barlow_twins_bn_dropped),
    _spec("barlow_twins_bn_not_centred", "Barlow Twins' BN without the mean subtraction", ["J5"],
          learner_patch=patches.barlow_twins_bn_not_centred),
    _spec("triplet_negative_from_same_sample", "triplet negative taken from the anchor's own sample", ["J4"],
          learner_patch=patches.triplet_negative_from_same_sample),
    _spec("swav_sinkhorn_ignored", "SwAV codes without Sinkhorn-Knopp equipartition", ["J7"],
          learner_patch=patches.swav_sinkhorn_ignored),
    _spec("simsiam_mlp_predictor_bypassed", "SimSiam's MLP predictor never applied", ["J2", "N1"],
          learner_patch=patches.simsiam_mlp_predictor_bypassed),
    _spec("simsiam_mlp_target_not_detached", "SimSiam (MLP) target not detached", ["J2", "C1", "N1", "N5", "N8",
                                                                                    "N10"],
          learner_patch=patches.simsiam_mlp_target_not_detached),
    # J1 is not listed: on its float64 unit vectors the predictor the mutant keeps raises a dtype error — a
    # crash, not J1's assertion (the kill matrix reports it as errored); J2's collapse check asserts it.
    _spec("no_predictor_option_ignored", "the no-predictor ablation switch accepted but ignored", ["J2", "N1", "N8"],
          option_patch=patches.no_predictor_option_ignored),
    _spec("ema_momentum_swapped", "EMA update with m and 1 − m swapped", ["C2", "N6"],
          learner_patch=patches.ema_momentum_swapped),
    _spec("ema_bn_buffers_frozen", "the EMA target switched to eval mode by its update: its BatchNorm statistics "
          "never change again", ["N6"],
          learner_patch=patches.ema_bn_buffers_frozen),
    _spec("nonsymmetric_eig", "DirectPred's W_P from the general eig of the cross-view correlation z1ᵀz2/B "
          "(non-symmetric)", ["C3"], learner_patch=patches.nonsymmetric_eig),
    _spec("correlation_ema_swapped", "DirectPred's running correlation estimate with ρ and 1 − ρ swapped "
          "(F ← (1 − ρ)F + ρĈ)", ["C3"], learner_patch=patches.correlation_ema_swapped),
    _spec("directpred_eps_dropped", "DirectPred's boost ε dropped: ω = (λ₊/λ_max)^α instead of (λ₊/λ_max)^α + ε",
          ["C8"], learner_patch=patches.directpred_eps_dropped),
    _spec("directpred_no_clamp", "DirectPred's eigenvalues not clamped at 0 before the power (NaN for α = ½ on a "
          "rank-deficient estimate)", ["C8"], learner_patch=patches.directpred_no_clamp),
    _spec("barlow_twins_offdiag_ignored", "Barlow Twins' off-diagonal weight λ ignored (term dropped)",
          ["C4", "C5", "S1", "S2", "S3", "N12"], learner_patch=patches.barlow_twins_offdiag_ignored),
    _spec("barlow_twins_lambda_on_diagonal", "Barlow Twins' λ on the diagonal term instead of the off-diagonal one "
          "(c = I still the minimiser)", ["C4", "C5"], learner_patch=patches.barlow_twins_lambda_on_diagonal),
    _spec("barlow_twins_same_view", "Barlow Twins' cross-correlation of view 1 with itself (c = z1ᵀz1/B): the "
          "modes grow at the rate of the views' second moment, not of their cross-covariance", ["S1", "S2", "S3"],
          learner_patch=patches.barlow_twins_same_view),
    _spec("barlow_twins_batchnorm_option_ignored", "Barlow Twins' batchnorm=False accepted but ignored (the batch is "
          "still standardised)", ["S1", "S2", "S3"], option_patch=patches.barlow_twins_batchnorm_option_ignored),
    _spec("vicreg_variance_doubled", "VICReg's variance term v(Z) + v(Z′) (the paper's eq. 6) while the adapter "
          "declares the authors' code's ½[v(Z) + v(Z′)] (conventions vicreg_variance = 'authors_code')", ["C6"],
          learner_patch=patches.vicreg_variance_doubled, conventions={"vicreg_variance": "authors_code"}),
    _spec("vicreg_variance_ignored", "VICReg's variance term silently dropped (its weight μ = std_coeff accepted, "
          "never applied)", ["C6", "C14", "N11"], learner_patch=patches.vicreg_variance_ignored),
    _spec("vicreg_std_coeff_option_ignored", "VICReg's std_coeff option ignored (the variance term stays at the "
          "default weight 25: the no-variance ablation trains the intact loss)", ["C6", "N8", "N11"],
          option_patch=patches.vicreg_std_coeff_option_ignored),
    _spec("barlow_twins_pooled_statistics", "Barlow Twins' views standardised with the statistics of both batches "
          "together (lightly issue #1806)", ["C4", "C13"], learner_patch=patches.barlow_twins_pooled_statistics),
    _spec("vicreg_pooled_statistics", "VICReg's variance and covariance over both branches' batches together",
          ["C6", "C13"], learner_patch=patches.vicreg_pooled_statistics),
    _spec("symmetric_terms_overwritten", "SimSiam's symmetrised terms overwritten instead of summed", ["C7"],
          learner_patch=patches.symmetric_terms_overwritten),
    _spec("gather_without_autograd", "global batch gathered without autograd (gradients off by the world "
          "size)", ["D1"], learner_patch=patches.gather_without_autograd),
]}
