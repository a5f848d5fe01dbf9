"""The bugs of the mutants in :mod:`ncspec.conformance.mutants.catalogue`: one patch per mutant, named for it.

A patch changes the reference adapter in one place, as the bug shows up in real SSL code: a *loss patch*
``(method, options, criterion) → criterion`` replaces a closed-form learner's criterion, a *learner patch*
``(learner) → None`` edits a built learner, an *option patch* ``(method, options) → options`` rewrites the options
``build`` receives. A patch that does not apply to a method returns ``None`` (or leaves the learner as it is).
"""
from __future__ import annotations

import torch
from ncspec.reference import losses
from ncspec.reference import predictors as _predictors
from ncspec.reference.encoders import BN_EPS, embed_pair, unit
from ncspec.reference.losses import SG, half_sq, predict
from ncspec.reference.methods import center as _center
from ncspec.reference.methods import clustering as _clustering
from ncspec.reference.methods import contrastive as _contrastive
from ncspec.reference.methods import redundancy as _redundancy


def _isoloss_as_its_value(z1, z2, W_P):
    # IsoLoss written as its value, ½‖W_P z1 − SG(z2)‖²: the W_P factor stays in the gradient.
    return half_sq(predict(z1, W_P), SG(z2))


def _cosine_without_norm(z1, z2, W_P):
    # −⟨p, ẑ2⟩ without dividing by ‖p‖: no longer scale invariant.
    p = predict(z1, W_P)
    return -(p * SG(unit(z2))).sum(-1).mean(-1)


def no_stopgrad(method, options, criterion):
    if method != "isoloss" and options.get("stop_grad", "target") == "target":
        return losses.SIMSIAM[(options.get("form", "euclidean"), "none")]


def stopgrad_on_prediction(method, options, criterion):
    if method != "isoloss" and options.get("stop_grad", "target") == "target":
        return losses.SIMSIAM[(options.get("form", "euclidean"), "online")]


def isoloss_rearrangement_dropped(method, options, criterion):
    if method == "isoloss":    # the cosine form's value is the cosine SimSiam loss: written as it, W_P stays too
        return _isoloss_as_its_value if options.get("form", "euclidean") == "euclidean" else losses.cosine_simsiam


def loss_sign_flipped(method, options, criterion):
    return lambda z1, z2, W_P: -criterion(z1, z2, W_P)


def cosine_missing_normalisation(method, options, criterion):
    if method != "isoloss" and options.get("form") == "cosine" and options.get("stop_grad", "target") == "target":
        return _cosine_without_norm


def predictor_bypassed(learner):
    learner.predictor = lambda z1: torch.eye(z1.shape[-1], dtype=z1.dtype).expand(*z1.shape[:-2], -1, -1)


def correlation_not_detached(learner):
    def predictor(z1):
        C = z1.transpose(-1, -2) @ z1 / z1.shape[-2]  # no .detach(): gradient flows through eigh
        lam, U = torch.linalg.eigh(C)
        omega = lam.clamp_min(0) ** learner.alpha
        return (U * omega.unsqueeze(-2)) @ U.transpose(-1, -2)
    learner.predictor = predictor


def normalize_ignored(method, options):
    options.pop("normalize", None)
    return options


def stop_grad_option_ignored(method, options):
    options.pop("stop_grad", None)  # the ablation switch is accepted but has no effect
    return options


def alpha_ignored(method, options):
    options.pop("alpha", None)  # the predictor always uses α = 1
    return options


def weight_decay_doubled(method, options):
    # Weight decay applied twice: once as the loss's (η/2)‖θ‖² and again by the optimiser (2η in all).
    if options.get("weight_decay"):
        options["weight_decay"] = 2.0 * options["weight_decay"]
    return options


def tau_ignored(method, options):
    options.pop("tau", None)  # the target scale (W_a = τW) silently fixed to 1
    return options


def directcopy_unnormalised(learner):
    # DirectCopy without the 1/‖Ĉ‖: W_P = Ĉ + εI (the normalisation dropped).
    if getattr(learner, "kind", None) != "copy":
        return
    from ncspec.reference.predictors import correlation

    def predictor(z1):
        C = learner.corr.update(z1) if learner.corr is not None else correlation(z1)
        C = 0.5 * (C + C.transpose(-1, -2))
        return C + learner.eps * torch.eye(C.shape[-1], dtype=C.dtype, device=C.device)
    learner.predictor = predictor


def learned_weight_decay_ignored(method, options):
    if method in ("learned_predictor", "byol"):
        options.pop("weight_decay", None)   # accepted, never applied
    return options


def alpha_p_ignored(method, options):
    options.pop("alpha_p", None)            # the predictor always trains at the encoder's rate
    return options


def learned_predictor_frozen(learner):
    """The learned linear predictor left out of parameters(): the optimiser never steps it (it keeps its init)."""
    V = getattr(learner, "V", None)
    if V is None or not hasattr(learner, "W_p"):
        return
    own = learner.parameters
    learner.parameters = lambda: (p for p in own() if p is not V)


def predictor_weight_decay_missing(learner):
    """Weight decay applied to the encoder only (a predictor param group with weight_decay=0)."""
    if not hasattr(learner, "W_p") or not getattr(learner, "weight_decay", 0):
        return
    original = learner.loss
    learner.loss = lambda v1, v2: (original(v1, v2)
                                   - 0.5 * learner.weight_decay * learner.W_p.pow(2).sum() / learner.alpha_p)


def learned_target_not_detached(method, options):
    if method == "learned_predictor" and options.get("stop_grad", "target") == "target":
        options["stop_grad"] = "none"
    return options


def ema_target_frozen(learner):
    """BYOL's target never follows the online encoder (EMA update skipped: momentum stuck at 1)."""
    if getattr(learner, "target_encoder", None) is None:
        return

    def after_step():
        learner.step += 1
    learner.after_step = after_step


# --- the center-vector family (Jha et al. 2024) --------------------------------



def dino_centering_ignored(learner):
    if isinstance(learner, _clustering.DINO):
        learner.centering = False            # center tracked, never subtracted


def dino_center_never_updated(learner):
    if isinstance(learner, _clustering.DINO):
        learner.center_momentum = 1.0        # EMA update forgotten: c stays 0


def lsimple_penalty_sign_flipped(learner):
    if isinstance(learner, _center.LSimple):
        learner.lam = -learner.lam


def barlow_twins_bn_dropped(learner):
    if isinstance(learner, _redundancy.BarlowTwins):
        learner.batchnorm = False


def barlow_twins_bn_not_centred(learner):
    if isinstance(learner, _redundancy.BarlowTwins):
        learner.bn_center = False            # z / rms, no mean subtraction


def triplet_negative_from_same_sample(learner):
    if isinstance(learner, _contrastive.Triplet):
        def loss(view1, view2):              # identity "shuffle": the negative is the anchor's own other view
            z1, z2 = embed_pair(learner.encoder, view1, view2, learner.M, min_batch=2)
            u1, u2 = unit(z1), unit(z2)
            positive = (u1 - u2).pow(2).sum(-1)
            negative = (u1 - u2[..., torch.arange(u2.shape[-2]), :]).pow(2).sum(-1)
            return (positive - negative).mean(-1).sum()
        learner.loss = loss


def swav_sinkhorn_ignored(learner):
    if isinstance(learner, _clustering.SwAV):
        learner.use_sinkhorn = False


def simsiam_mlp_predictor_bypassed(learner):
    if isinstance(learner, _center.SimSiamMLP):
        learner.h = None


def simsiam_mlp_target_not_detached(learner):
    if isinstance(learner, _center.SimSiamMLP):
        learner.stop_grad = "none"


def no_predictor_option_ignored(method, options):
    if method == "simsiam_mlp":
        options.pop("predictor", None)
    return options


# --- conformance-claim mutants (C1–C7, D1) ----------------------------------------------------

def ema_bn_buffers_frozen(learner):
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


def ema_momentum_swapped(learner):
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


def nonsymmetric_eig(learner):
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


def directpred_eps_dropped(learner):
    """DirectPred's boost ε never added: ``ω = (λ₊/λ_max)^α`` (the ``+ eps`` forgotten)."""
    if getattr(learner, "kind", None) == "eigen":
        learner.eps = 0.0


def correlation_ema_swapped(learner):
    """DirectPred's running correlation estimate with ρ and 1 − ρ swapped: ``F ← (1 − ρ)F + ρĈ`` (ρ = 0.3 keeps 70 %
    of the new batch's estimate where Tian et al. keep 70 % of the running one). The learner's ``corr_used`` is the
    estimate it really used, so W_P agrees with it; only the recursion rebuilt from the batches tells."""
    corr = getattr(learner, "corr", None)
    if corr is not None:
        corr.__class__ = _SwappedEMACorrelation     # a class, not a closure: a deep copy of the learner keeps its own


class _SwappedEMACorrelation(_predictors.EMACorrelation):
    def update(self, z):
        C = _predictors.correlation(z)
        self.F = C if self.F is None or self.F.shape != C.shape else (1.0 - self.rho) * self.F + self.rho * C
        return self.F


def directpred_no_clamp(learner):
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


def barlow_twins_offdiag_ignored(learner):
    if isinstance(learner, _redundancy.BarlowTwins):
        learner.lambda_offdiag = 0.0         # λ accepted, the off-diagonal term never added


def barlow_twins_lambda_on_diagonal(learner):
    """Barlow Twins with λ on the invariance (diagonal) term instead of the redundancy (off-diagonal) one:
    ``λ Σ(1 − c_ii)² + Σ_{i≠j} c_ij²``. c = I still minimises it; the flow gets there at another rate."""
    if not isinstance(learner, _redundancy.BarlowTwins):
        return
    lam = learner.lambda_offdiag

    def loss(view1, view2):
        c = learner.cross_correlation(learner.encoder(view1), learner.encoder(view2))
        on_diag = (torch.diagonal(c, dim1=-2, dim2=-1) - 1).pow(2).sum(-1)
        return (lam * on_diag + _redundancy.off_diagonal(c).pow(2).sum(-1)).sum()
    learner.loss = loss


def barlow_twins_same_view(learner):
    """``c = z1ᵀz1/B``: view 1 correlated with itself (a copy-paste of the first branch), so Barlow Twins learns the
    views' second moment ``|γ| + σ²`` instead of their cross-covariance γ."""
    if isinstance(learner, _redundancy.BarlowTwins):
        original = learner.cross_correlation
        learner.cross_correlation = lambda z1, z2: original(z1, z1)


def barlow_twins_batchnorm_option_ignored(method, options):
    if method == "barlow_twins" and options.get("batchnorm") is False:
        options["batchnorm"] = True          # batchnorm=False accepted, the batch still standardised
    return options


def barlow_twins_pooled_statistics(learner):
    """Both views standardised with the mean and std of the two batches together (lightly issue #1806)."""
    if isinstance(learner, _redundancy.BarlowTwins):
        def cross_correlation(z1, z2):
            both = torch.cat([z1, z2], -2)
            mean, var = both.mean(-2, keepdim=True), both.var(-2, unbiased=False, keepdim=True)
            a, b = ((z - mean) / torch.sqrt(var + BN_EPS) for z in (z1, z2))
            return a.transpose(-1, -2) @ b / z1.shape[-2]
        learner.cross_correlation = cross_correlation


def vicreg_pooled_statistics(learner):
    """VICReg's variance and covariance taken over the two branches' batches together (one term, counted twice)."""
    if isinstance(learner, _redundancy.VICReg):
        def loss(view1, view2):
            z1, z2 = embed_pair(learner.encoder, view1, view2, learner.M, min_batch=2)
            both = torch.cat([z1, z2], -2)
            x = both - both.mean(-2, keepdim=True)
            std = torch.sqrt(x.var(dim=-2) + learner.eps)
            cov = x.transpose(-1, -2) @ x / (x.shape[-2] - 1)
            terms = ((z1 - z2).pow(2).mean((-2, -1)), torch.relu(1 - std).mean(-1),
                     2 * _redundancy.off_diagonal(cov).pow(2).sum(-1) / learner.M)
            return sum(w * t for w, t in zip((learner.sim_coeff, learner.std_coeff, learner.cov_coeff), terms)).sum()
        learner.loss = loss


def vicreg_variance_ignored(learner):
    if isinstance(learner, _redundancy.VICReg):
        learner.std_coeff = 0.0              # μ accepted, the variance hinge never added: nothing holds the std up


def vicreg_std_coeff_option_ignored(method, options):
    if method == "vicreg":
        options.pop("std_coeff", None)       # accepted, the default weight 25 kept
    return options


def vicreg_variance_doubled(learner):
    if isinstance(learner, _redundancy.VICReg):
        learner.std_coeff = 2.0 * learner.std_coeff   # v(Z) + v(Z′) while declaring ½[v(Z) + v(Z′)]


def symmetric_terms_overwritten(learner):
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


def gather_without_autograd(learner):
    """The global batch gathered with ``dist.all_gather`` (no autograd), the local slice re-inserted
    with its gradient: every rank's gradient only sees its own samples — off by 1/world_size."""
    from ncspec.reference.global_batch import GatheredEncoder
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
