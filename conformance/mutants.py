"""Deliberately broken adapters: realistic bugs the spec suite must catch.

Each mutant is the reference adapter with one thing changed, as it shows up in
real SSL code. ``MUTANTS[name].caught_by`` lists the claims expected to catch
it; the meta-test (``tests/test_meta_mutants.py``) checks that each of those
claims' tests fails on the mutant, and that the reference passes them.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from ncspec.reference import losses
from ncspec.reference.encoders import embed_pair, unit
from ncspec.reference.losses import SG, half_sq, predict
from ncspec.reference.methods import center as _center
from ncspec.reference.methods import clustering as _clustering
from ncspec.reference.methods import contrastive as _contrastive
from ncspec.reference.methods import redundancy as _redundancy

from .adapters.reference import ReferenceAdapter


def _iso_rearrangement_dropped(z1, z2, W_P):
    # IsoLoss written as its value, ½‖W_P z1 − SG(z2)‖²: the W_P factor stays in the gradient.
    return half_sq(predict(z1, W_P), SG(z2))


def _cosine_unnormalised_prediction(z1, z2, W_P):
    # −⟨p, ẑ2⟩ without dividing by ‖p‖: no longer scale invariant.
    p = predict(z1, W_P)
    return -(p * SG(unit(z2))).sum(-1).mean(-1)


class _Mutant(ReferenceAdapter):
    def __init__(self, name, loss_patch=None, learner_patch=None, option_patch=None, conventions=None):
        self.name = f"mutant:{name}"
        if conventions is not None:
            self.conventions = conventions   # what the mutant declares (conformance/conventions.py)
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


def _weight_decay_doubled(method, options):
    # Weight decay applied twice: once as the loss's (η/2)‖θ‖² and again by the optimiser (2η in all).
    if options.get("weight_decay"):
        options["weight_decay"] = 2.0 * options["weight_decay"]
    return options


def _tau_ignored(method, options):
    options.pop("tau", None)  # the target scale (W_a = τW) silently fixed to 1
    return options


def _copy_unnormalised(learner):
    # DirectCopy without the 1/‖Ĉ‖: W_P = Ĉ + εI (the normalisation dropped).
    if getattr(learner, "kind", None) != "copy":
        return
    from ncspec.reference.predictors import correlation

    def predictor(z1):
        C = learner.corr.update(z1) if learner.corr is not None else correlation(z1)
        C = 0.5 * (C + C.transpose(-1, -2))
        return C + learner.eps * torch.eye(C.shape[-1], dtype=C.dtype, device=C.device)
    learner.predictor = predictor


def _learned_weight_decay_ignored(method, options):
    if method in ("learned_predictor", "byol"):
        options.pop("weight_decay", None)   # accepted, never applied
    return options


def _alpha_p_ignored(method, options):
    options.pop("alpha_p", None)            # the predictor always trains at the encoder's rate
    return options


def _learned_predictor_frozen(learner):
    """The learned linear predictor left out of parameters(): the optimiser never steps it (it keeps its init)."""
    V = getattr(learner, "V", None)
    if V is None or not hasattr(learner, "W_p"):
        return
    own = learner.parameters
    learner.parameters = lambda: (p for p in own() if p is not V)


def _predictor_weight_decay_missing(learner):
    """Weight decay applied to the encoder only (a predictor param group with weight_decay=0)."""
    if not hasattr(learner, "W_p") or not getattr(learner, "weight_decay", 0):
        return
    original = learner.loss
    learner.loss = lambda v1, v2: (original(v1, v2)
                                   - 0.5 * learner.weight_decay * learner.W_p.pow(2).sum() / learner.alpha_p)


def _learned_target_not_detached(method, options):
    if method == "learned_predictor" and options.get("stop_grad", "target") == "target":
        options["stop_grad"] = "none"
    return options


def _ema_target_frozen(learner):
    """BYOL's target never follows the online encoder (EMA update skipped: momentum stuck at 1)."""
    if getattr(learner, "target_encoder", None) is None:
        return

    def after_step():
        learner.step += 1
    learner.after_step = after_step


# --- the center-vector family (Jha et al. 2024) --------------------------------



def _dino_centering_ignored(learner):
    if isinstance(learner, _clustering.DINO):
        learner.centering = False            # center tracked, never subtracted


def _dino_center_never_updated(learner):
    if isinstance(learner, _clustering.DINO):
        learner.center_momentum = 1.0        # EMA update forgotten: c stays 0


def _lsimple_penalty_sign_flipped(learner):
    if isinstance(learner, _center.LSimple):
        learner.lam = -learner.lam


def _barlow_twins_bn_dropped(learner):
    if isinstance(learner, _redundancy.BarlowTwins):
        learner.batchnorm = False


def _barlow_twins_bn_not_centred(learner):
    if isinstance(learner, _redundancy.BarlowTwins):
        learner.bn_center = False            # z / rms, no mean subtraction


def _triplet_negative_from_same_sample(learner):
    if isinstance(learner, _contrastive.Triplet):
        def loss(view1, view2):              # identity "shuffle": the negative is the anchor's own other view
            z1, z2 = embed_pair(learner.encoder, view1, view2, learner.M, min_batch=2)
            u1, u2 = unit(z1), unit(z2)
            positive = (u1 - u2).pow(2).sum(-1)
            negative = (u1 - u2[..., torch.arange(u2.shape[-2]), :]).pow(2).sum(-1)
            return (positive - negative).mean(-1).sum()
        learner.loss = loss


def _swav_sinkhorn_ignored(learner):
    if isinstance(learner, _clustering.SwAV):
        learner.use_sinkhorn = False


def _simsiam_mlp_predictor_bypassed(learner):
    if isinstance(learner, _center.SimSiamMLP):
        learner.h = None


def _simsiam_mlp_target_not_detached(learner):
    if isinstance(learner, _center.SimSiamMLP):
        learner.stop_grad = "none"


def _no_predictor_option_ignored(method, options):
    if method == "simsiam_mlp":
        options.pop("predictor", None)
    return options


# --- conformance-claim mutants (C1–C7, D1) ----------------------------------------------------

def _ema_bn_buffers_frozen(learner):
    """An EMA helper that puts the target in eval mode when it updates it (as some EMA utilities do): the
    parameters follow the EMA, but from the first update on the target's BatchNorm running statistics never
    change again (its forwards use, and no longer update, the statistics it had then)."""
    target = getattr(learner, "target_encoder", None)
    if target is None:
        return
    update = learner.after_step

    def after_step():
        update()
        target.eval()
    learner.after_step = after_step


def _ema_momentum_swapped(learner):
    """BYOL's EMA written ξ ← (1 − m)ξ + mθ: the target nearly copies the online net every step."""
    if getattr(learner, "target_encoder", None) is None:
        return

    @torch.no_grad()
    def after_step():
        learner.step += 1
        m = learner.momentum
        for pa, po in zip(learner.target_encoder.parameters(), learner.encoder.parameters()):
            pa.mul_(1.0 - m).add_(po, alpha=m)
    learner.after_step = after_step


def _nonsymmetric_eig(learner):
    """DirectPred's correlation taken across the two views, ``Ĉ = z1ᵀz2/B`` (not symmetric), and
    decomposed with the general ``torch.linalg.eig``: ``W_P = Re(V diag(ω) V⁻¹)`` is neither symmetric
    nor on the online correlation's eigenbasis."""
    if getattr(learner, "kind", None) != "eigen":
        return

    def loss(view1, view2):
        z1, z2 = learner.encoder(view1), learner.encoder(view2)
        C = (z1.transpose(-1, -2) @ z2 / z1.shape[-2]).detach()
        lam, V = torch.linalg.eig(C)
        omega = lam.real.clamp_min(0) ** learner.alpha
        omega = omega / omega.max(-1, keepdim=True).values.clamp_min(1e-12) + learner.eps
        W_P = (V @ torch.diag_embed(omega.to(V.dtype)) @ torch.linalg.inv(V)).real
        learner._W_P = W_P
        return learner.criterion(z1, z2, W_P).sum()
    learner.loss = loss


def _directpred_eps_dropped(learner):
    """DirectPred's boost ε never added: ``ω = (λ₊/λ_max)^α`` (the ``+ eps`` forgotten)."""
    if getattr(learner, "kind", None) == "eigen":
        learner.eps = 0.0


def _directpred_no_clamp(learner):
    """DirectPred's eigenvalues used without clamping at 0: the rounding-negative eigenvalues of a
    rank-deficient correlation estimate go into ``λ^α`` (NaN for α = ½)."""
    if getattr(learner, "kind", None) != "eigen":
        return
    from ncspec.reference.predictors import correlation

    def predictor(z1):
        C = (learner.corr.update(z1) if learner.corr is not None else correlation(z1)).to(torch.float64)
        lam, U = torch.linalg.eigh(0.5 * (C + C.transpose(-1, -2)))
        if learner.normalize:
            lam = lam / lam.amax(-1, keepdim=True)
        omega = (lam + learner.eps) ** learner.alpha if learner.boost == "before" else lam**learner.alpha + learner.eps
        learner._W_P = ((U * omega.unsqueeze(-2)) @ U.transpose(-1, -2)).to(z1.dtype)
        return learner._W_P
    learner.predictor = predictor


def _bt_offdiag_ignored(learner):
    if isinstance(learner, _redundancy.BarlowTwins):
        learner.lambda_offdiag = 0.0         # λ accepted, the off-diagonal term never added


def _vicreg_variance_doubled(learner):
    if isinstance(learner, _redundancy.VICReg):
        learner.std_coeff = 2.0 * learner.std_coeff   # v(Z) + v(Z′) while declaring ½[v(Z) + v(Z′)]


def _symmetric_terms_overwritten(learner):
    """``loss = D(p1, SG z2)/2`` then ``loss = D(p2, SG z1)/2``: the second term replaces the first."""
    if not isinstance(learner, _center.SimSiamMLP) or learner.h is None:
        return
    from ncspec.reference.methods.center import neg_cos

    def loss(view1, view2):
        z1, z2 = embed_pair(learner.encoder, view1, view2, learner.M, min_batch=2)
        p1, p2 = learner.h(z1), learner.h(z2)
        out = 0.5 * neg_cos(p1, z2.detach())
        out = 0.5 * neg_cos(p2, z1.detach())
        return out.sum()
    learner.loss = loss


def _gather_without_autograd(learner):
    """The global batch gathered with ``dist.all_gather`` (no autograd), the local slice re-inserted
    with its gradient: every rank's gradient only sees its own samples — off by 1/world_size."""
    from ncspec.reference.distributed import GatheredEncoder
    enc = getattr(learner, "encoder", None)
    if not isinstance(enc, GatheredEncoder):
        return

    def gather(z):
        import torch.distributed as dist
        if not dist.is_initialized() or dist.get_world_size() == 1:
            return z
        parts = [torch.empty_like(z) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, z.detach().contiguous())
        parts[dist.get_rank()] = z
        return torch.cat(parts, dim=-2)
    enc.gather = gather


MUTANTS = {m.name: m for m in [
    _spec("no_stopgrad", "target branch not detached (SG forgotten)",
          ["H1", "H4", "H5", "H6", "H8", "R1", "R3", "N1", "N5", "N8", "N10"],
          loss_patch=_target_not_detached),
    _spec("stopgrad_on_prediction", "SG placed on the online prediction instead of the target",
          ["H1", "H4", "H5", "H6", "H8", "R1", "R2", "R3", "R4"], loss_patch=_sg_on_prediction),
    _spec("isoloss_rearrangement_dropped", "IsoLoss computed as ½‖W_P z1 − SG(z2)‖² (keeps the W_P factor)",
          ["H4", "H5", "R4"], loss_patch=_iso_dropped),
    _spec("loss_sign_flipped", "loss returned with the wrong sign (gradient ascent)",
          ["H1", "H2", "H3", "H4", "H5", "H6", "H8", "R1", "R2", "R3", "R4"], loss_patch=_flip),
    _spec("predictor_bypassed", "predictor never applied (W_P = I)",
          ["H1", "H2", "H3", "H4", "H5", "H6", "H8", "R1", "R2", "R3", "R4", "N1"], learner_patch=_predictor_bypassed),
    _spec("correlation_not_detached", "DirectPred's correlation estimate not detached",
          ["H1", "H2", "H4", "H5", "H8", "R1", "R4"], learner_patch=_correlation_not_detached),
    _spec("cosine_missing_normalisation", "cosine loss without 1/‖p‖", ["H4", "H6"], loss_patch=_cos_unnorm),
    _spec("normalize_ignored", "the λ_max normalisation option silently ignored", ["H8"],
          option_patch=_normalize_ignored),
    _spec("alpha_ignored", "the predictor exponent α silently fixed to 1",
          ["H1", "H2", "H3", "H4", "H5", "H8"], option_patch=_alpha_ignored),
    _spec("stop_grad_option_ignored", "the stop-grad ablation switch accepted but ignored (SG stays on the "
          "target)", ["H2", "H3", "T5", "P1", "P2", "P3", "R1", "R2", "J2", "N1", "N5", "N8", "N10"],
          option_patch=_stop_grad_ignored),
    _spec("weight_decay_doubled", "weight decay applied twice (in the loss and again by the optimiser): "
          "the variance threshold moves to τ²/(8η) − 1",
          ["W1", "W2", "W3", "T1", "T3", "T4", "P1", "P3", "P4", "P5", "P6"], option_patch=_weight_decay_doubled),
    _spec("tau_ignored", "the target-scale option τ silently ignored (W_a = W)", ["W1"], option_patch=_tau_ignored),
    _spec("learned_weight_decay_ignored", "the learned-predictor model's weight_decay option accepted but "
          "never applied", ["T1", "T3", "T4", "P1", "P2", "P3", "P4", "P5", "P6"],
          option_patch=_learned_weight_decay_ignored),
    _spec("alpha_p_ignored", "the predictor learning-rate ratio α_p ignored (predictor trains at the encoder's "
          "rate)", ["T1", "T3", "T4"], option_patch=_alpha_p_ignored),
    _spec("learned_predictor_frozen", "the learned linear predictor left out of the optimised parameters (it never "
          "trains)", ["T1", "T2", "T3", "N9"], learner_patch=_learned_predictor_frozen),
    _spec("predictor_weight_decay_missing", "weight decay on the encoder only (predictor param group without "
          "it)", ["T1", "T3", "T4", "T5", "P1", "P2", "P3", "P4", "P5", "P6"],
          learner_patch=_predictor_weight_decay_missing),
    _spec("learned_target_not_detached", "the learned-predictor model's target not detached",
          ["T1", "T2", "T3", "T4", "T6", "P1", "P3", "P4", "P5", "P6", "C1"],
          option_patch=_learned_target_not_detached),
    _spec("directcopy_unnormalised", "DirectCopy's predictor built as Ĉ + εI, without dividing by ‖Ĉ‖_F",
          ["W2"], learner_patch=_copy_unnormalised),
    _spec("ema_target_frozen", "the EMA target is never updated (momentum stuck at 1)", ["P6", "C2", "N6"],
          learner_patch=_ema_target_frozen),
    _spec("dino_centering_ignored", "DINO's center tracked but never subtracted", ["J6"],
          learner_patch=_dino_centering_ignored),
    _spec("dino_center_never_updated", "DINO's center EMA never updated (stays 0)", ["J6"],
          learner_patch=_dino_center_never_updated),
    _spec("lsimple_penalty_sign_flipped", "L_Simple's center penalty with the wrong sign", ["J1", "J3"],
          learner_patch=_lsimple_penalty_sign_flipped),
    _spec("barlow_twins_bn_dropped", "Barlow Twins' cross-correlation on raw embeddings", ["J5"],
          learner_patch=_barlow_twins_bn_dropped),
    _spec("barlow_twins_bn_not_centred", "Barlow Twins' BN without the mean subtraction", ["J5"],
          learner_patch=_barlow_twins_bn_not_centred),
    _spec("triplet_negative_from_same_sample", "triplet negative taken from the anchor's own sample", ["J4"],
          learner_patch=_triplet_negative_from_same_sample),
    _spec("swav_sinkhorn_ignored", "SwAV codes without Sinkhorn-Knopp equipartition", ["J7"],
          learner_patch=_swav_sinkhorn_ignored),
    _spec("simsiam_mlp_predictor_bypassed", "SimSiam's MLP predictor never applied", ["J2", "N1"],
          learner_patch=_simsiam_mlp_predictor_bypassed),
    _spec("simsiam_mlp_target_not_detached", "SimSiam (MLP) target not detached", ["J2", "C1", "N1", "N5", "N8",
                                                                                    "N10"],
          learner_patch=_simsiam_mlp_target_not_detached),
    # J1 is not listed: on its float64 unit vectors the predictor the mutant keeps raises a dtype error — a
    # crash, not J1's assertion (the kill matrix reports it as errored); J2's collapse check asserts it.
    _spec("no_predictor_option_ignored", "the no-predictor ablation switch accepted but ignored", ["J2", "N1", "N8"],
          option_patch=_no_predictor_option_ignored),
    _spec("ema_momentum_swapped", "EMA update with m and 1 − m swapped", ["C2", "N6"],
          learner_patch=_ema_momentum_swapped),
    _spec("ema_bn_buffers_frozen", "the EMA target switched to eval mode by its update: its BatchNorm statistics "
          "never change again", ["N6"],
          learner_patch=_ema_bn_buffers_frozen),
    _spec("nonsymmetric_eig", "DirectPred's W_P from the general eig of the cross-view correlation z1ᵀz2/B "
          "(non-symmetric)", ["C3"], learner_patch=_nonsymmetric_eig),
    _spec("directpred_eps_dropped", "DirectPred's boost ε dropped: ω = (λ₊/λ_max)^α instead of (λ₊/λ_max)^α + ε",
          ["C8"], learner_patch=_directpred_eps_dropped),
    _spec("directpred_no_clamp", "DirectPred's eigenvalues not clamped at 0 before the power (NaN for α = ½ on a "
          "rank-deficient estimate)", ["C8"], learner_patch=_directpred_no_clamp),
    _spec("barlow_twins_offdiag_ignored", "Barlow Twins' off-diagonal weight λ ignored (term dropped)",
          ["C4", "C5"], learner_patch=_bt_offdiag_ignored),
    _spec("vicreg_variance_doubled", "VICReg's variance term v(Z) + v(Z′) (the paper's eq. 6) while the adapter "
          "declares the authors' code's ½[v(Z) + v(Z′)] (conventions vicreg_variance = 'authors_code')", ["C6"],
          learner_patch=_vicreg_variance_doubled, conventions={"vicreg_variance": "authors_code"}),
    _spec("symmetric_terms_overwritten", "SimSiam's symmetrised terms overwritten instead of summed", ["C7"],
          learner_patch=_symmetric_terms_overwritten),
    _spec("gather_without_autograd", "global batch gathered without autograd (gradients off by the world "
          "size)", ["D1"], learner_patch=_gather_without_autograd),
]}
