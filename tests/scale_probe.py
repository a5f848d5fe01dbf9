"""Scale-convention probes: the reference with a constant factor in its loss, as `module:attr` adapters.

A pure rescale (×2: no ½; ÷M: a mean over the embedding features instead of a sum; ×0.03: a loss
weight) is a learning-rate convention and must pass every claim, reported with its factor. The
data term scaled without the weight decay, or a negative factor, is a different objective and
must fail, with a message naming it.

    ncspec check --adapter tests.scale_probe:times_two
"""
from __future__ import annotations

import torch
from ncspec.conformance.adapters.reference import ReferenceAdapter
from ncspec.reference import losses
from ncspec.reference.predictors import correlation, eigen_predictor


class _Scaled:
    """A reference learner whose loss is ``factor(M) ×`` the reference's (everything else as is)."""

    def __init__(self, learner, factor):
        self._learner, self._factor = learner, factor

    def __getattr__(self, name):                 # W_P, W_p, target_encoder, corr_used, ...
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._learner, name)

    def parameters(self):
        return self._learner.parameters()

    def loss(self, view1, view2):
        return self._factor * self._learner.loss(view1, view2)

    def after_step(self):
        self._learner.after_step()


class _DataOnly(_Scaled):
    """``factor ×`` the data term, the weight decay ``(η/2)‖W‖²`` of the encoder left unscaled."""

    def __init__(self, learner, factor, encoder, weight_decay):
        super().__init__(learner, factor)
        self._encoder, self._eta = encoder, weight_decay

    def loss(self, view1, view2):
        decay = 0.5 * self._eta * sum(p.pow(2).sum() for p in self._encoder.parameters())
        return self._factor * self._learner.loss(view1, view2) + decay


class ScaleProbe(ReferenceAdapter):
    def __init__(self, name: str, factor=None, per_feature: bool = False, data_only: bool = False):
        self.name = f"scale-probe:{name}"
        self._factor, self._per_feature, self._data_only = factor, per_feature, data_only

    def build(self, method, encoder, embed_dim, **options):
        factor = 1.0 / embed_dim if self._per_feature else self._factor
        if self._data_only and options.get("weight_decay") and method in ("directset", "directcopy", "simsiam"):
            eta = options.pop("weight_decay")
            return _DataOnly(super().build(method, encoder, embed_dim, **options), factor, encoder, eta)
        return _Scaled(super().build(method, encoder, embed_dim, **options), factor)


class Unchanged(ReferenceAdapter):
    """A subclass of the reference that changes nothing: not the reference itself, so it is measured (×1)."""

    name = "reference-subclass"


reference_subclass = Unchanged()
times_two = ScaleProbe("x2", 2.0)
per_feature_mean = ScaleProbe("mean-over-M", per_feature=True)
times_003 = ScaleProbe("x0.03", 0.03)
data_term_only = ScaleProbe("data-x2-decay-x1", 2.0, data_only=True)
negative = ScaleProbe("x-1", -1.0)


# --- declared conventions (conformance/contract/conventions.py) --------------------------------------------


class VICRegForm(ReferenceAdapter):
    """The reference with VICReg's variance term in ``form``, declaring ``declare`` (None: nothing)."""

    def __init__(self, form: str, declare: str | None):
        self.name = f"vicreg-{form}" + (f"-declares-{declare}" if declare else "-undeclared")
        self._form = form
        if declare:
            self.conventions = {"vicreg_variance": declare}

    def build(self, method, encoder, embed_dim, **options):
        if method == "vicreg":
            options = {**options, "variance": self._form}
        return super().build(method, encoder, embed_dim, **options)


vicreg_paper_declared = VICRegForm("paper_eq6", "paper_eq6")
vicreg_authors_declared = VICRegForm("authors_code", "authors_code")
vicreg_paper_undeclared = VICRegForm("paper_eq6", None)
vicreg_paper_declared_x2 = ScaleProbe("vicreg-paper-x2", 2.0)
vicreg_paper_declared_x2.conventions = {"vicreg_variance": "paper_eq6"}
vicreg_paper_declared_x2.build = lambda method, encoder, embed_dim, **o: _Scaled(
    vicreg_paper_declared.build(method, encoder, embed_dim, **o), 2.0)


class _RunningDirectPred:
    """DirectPred written as in code that refreshes W_P from an EMA of *both* views' correlation,
    ``F ← ρF + (1 − ρ)·½(z1ᵀz1 + z2ᵀz2)/B``, and exposes only ``W_P`` (no ``corr_used``)."""

    def __init__(self, encoder, rho=0.3, alpha=0.5, eps=0.1):
        self.encoder, self.rho, self.alpha, self.eps = encoder, rho, alpha, eps
        self.F, self.W_P = None, None

    def parameters(self):
        return self.encoder.parameters()

    def loss(self, view1, view2):
        z1, z2 = self.encoder(view1), self.encoder(view2)
        with torch.no_grad():
            C = 0.5 * (correlation(z1) + correlation(z2))
            self.F = C if self.F is None else self.rho * self.F + (1.0 - self.rho) * C
            self.W_P = eigen_predictor(self.F, self.alpha, eps=self.eps, normalize=True, boost="after")
        return losses.simsiam(z1, z2, self.W_P).sum()

    def after_step(self):
        pass


class RunningEstimate(ReferenceAdapter):
    def __init__(self, declare: bool):
        self.name = "running-estimate-" + ("declared" if declare else "undeclared")
        if declare:
            self.conventions = {"predictor_estimate": {"rho": 0.3, "views": "both"}}

    def build(self, method, encoder, embed_dim, **options):
        if method == "directpred":
            return _RunningDirectPred(encoder, **options)
        return super().build(method, encoder, embed_dim, **options)


running_estimate_declared = RunningEstimate(True)
running_estimate_undeclared = RunningEstimate(False)


class _SurrogateValue(_Scaled):
    """IsoLoss whose value is shifted by a detached term: the gradient is the definition's, the value not."""

    def loss(self, view1, view2):
        loss = self._learner.loss(view1, view2)
        return loss + loss.detach().abs() + 1.0


class SurrogateIsoLoss(ReferenceAdapter):
    def __init__(self, declare: bool):
        self.name = "isoloss-surrogate-" + ("declared" if declare else "undeclared")
        if declare:
            self.conventions = {"loss_value": "surrogate"}

    def build(self, method, encoder, embed_dim, **options):
        learner = super().build(method, encoder, embed_dim, **options)
        return _SurrogateValue(learner, 1.0) if method == "isoloss" else learner


isoloss_surrogate_declared = SurrogateIsoLoss(True)
isoloss_surrogate_undeclared = SurrogateIsoLoss(False)


class OneTermScaled(ReferenceAdapter):
    """VICReg with only the invariance term doubled: a different objective, not a convention."""

    name = "vicreg-invariance-x2"

    def build(self, method, encoder, embed_dim, **options):
        if method == "vicreg":
            options = {**options, "sim_coeff": 2.0 * options.get("sim_coeff", 25.0)}
        return super().build(method, encoder, embed_dim, **options)


one_term_scaled = OneTermScaled()


class _NoCorrUsed(_Scaled):
    """A learner that does not expose ``corr_used``."""

    def __getattr__(self, name):
        if name == "corr_used":
            raise AttributeError(name)
        return super().__getattr__(name)


class HiddenEstimate(ReferenceAdapter):
    """The reference's ``directpred`` preset (EMA ρ = 0.3 of z1ᵀz1/B) without ``corr_used``."""

    def __init__(self, declare: bool):
        self.name = "directpred-hidden-estimate-" + ("declared" if declare else "undeclared")
        if declare:
            self.conventions = {"predictor_estimate": {"rho": 0.3}}

    def build(self, method, encoder, embed_dim, **options):
        learner = super().build(method, encoder, embed_dim, **options)
        return _NoCorrUsed(learner, 1.0) if method == "directpred" else learner


hidden_estimate_declared = HiddenEstimate(True)
hidden_estimate_undeclared = HiddenEstimate(False)


# --- precision and dtype of the harness (EMA buffers, parameterless encoders) ----------------------


class _Float32Target(_Scaled):
    """BYOL whose EMA target is held in float32 (as mixed-precision code keeps it): ``ξ ← mξ + (1 − m)θ``
    computed in the buffer's precision; ``swap`` uses 1 − m and m instead (the bug C2 exists for). With
    ``coefficient_only`` the target stays float64 and only m is a float32 buffer (stable-pretraining's
    TeacherStudentWrapper)."""

    def __init__(self, learner, momentum, swap, coefficient_only=False):
        super().__init__(learner, 1.0)
        self._m, self._swap = momentum, swap
        if coefficient_only:
            self._m = float(torch.tensor(momentum, dtype=torch.float32))
        else:
            learner.target_encoder.float()

    def loss(self, view1, view2):
        """The reference's ½‖W_p z1 − SG(ξ(x2))‖², the target evaluated in its own float32 and the loss in
        float64 (issue 24: the loss-scale fit then leaves 2e-8–8e-8, the target's float32 rounding)."""
        learner = self._learner
        z1 = learner.encoder(view1)
        with torch.no_grad():
            dtype = next(learner.target_encoder.parameters()).dtype
            za = learner.target_encoder(view2.to(dtype)).to(z1.dtype)
        return losses.half_sq(z1 @ learner.W_p.transpose(-1, -2), za).sum()

    def after_step(self):
        m = 1.0 - self._m if self._swap else self._m
        with torch.no_grad():
            for t, p in zip(self._learner.target_encoder.parameters(), self._learner.encoder.parameters()):
                t.mul_(m).add_(p.detach().to(t.dtype), alpha=1.0 - m)


class Float32Target(ReferenceAdapter):
    def __init__(self, swap: bool, coefficient_only: bool = False):
        self.name = "byol-float32-" + ("coefficient" if coefficient_only else "target") + ("-swapped" if swap else "")
        self._swap, self._coefficient_only = swap, coefficient_only

    def build(self, method, encoder, embed_dim, **options):
        learner = super().build(method, encoder, embed_dim, **options)
        if method == "byol":
            return _Float32Target(learner, options.get("momentum", 0.996), self._swap, self._coefficient_only)
        return learner


float32_target = Float32Target(False)
float32_target_swapped = Float32Target(True)
float32_coefficient = Float32Target(False, coefficient_only=True)
float32_coefficient_swapped = Float32Target(True, coefficient_only=True)


class _OwnHead:
    """Barlow Twins behind a linear projector head of its own, built as the contract says: in ``encoder.dtype``
    on ``encoder.device``, one per replica. (A head is linear, so BN still removes any shift: J5 holds.)"""

    def __init__(self, encoder, embed_dim, options):
        S = getattr(encoder, "replicas", 1)
        g = torch.Generator().manual_seed(0)
        self.encoder = encoder
        self.head = torch.nn.Parameter(torch.randn((S, embed_dim, embed_dim), generator=g).to(
            dtype=encoder.dtype, device=encoder.device))
        from ncspec.reference.encoders import Identity
        self._bt = ReferenceAdapter().build("barlow_twins", Identity(embed_dim, replicas=S, dtype=encoder.dtype),
                                            embed_dim, **options)

    def parameters(self):
        yield from self.encoder.parameters()
        yield self.head

    def loss(self, view1, view2):
        return self._bt.loss(self.encoder(view1) @ self.head, self.encoder(view2) @ self.head)

    def after_step(self):
        pass


class HeadsInEncoderDtype(ReferenceAdapter):
    name = "barlow-twins-own-head"

    def build(self, method, encoder, embed_dim, **options):
        if method == "barlow_twins":
            return _OwnHead(encoder, embed_dim, options)
        return super().build(method, encoder, embed_dim, **options)


heads_in_encoder_dtype = HeadsInEncoderDtype()


# --- declarable variants: DirectPred's ε inside the power, Barlow Twins' unbiased std ---------------


class Variant(ReferenceAdapter):
    """The reference with ``method`` built with ``option = value``, declaring ``convention = value`` or not."""

    def __init__(self, method: str, option: str, value: str, convention: str, declare: bool | str):
        self.name = f"{method}-{option}-{value}-" + (f"declares-{declare}" if isinstance(declare, str) else
                                                     "declared" if declare else "undeclared")
        self._method, self._option, self._value = method, option, value
        if declare:
            self.conventions = {convention: declare if isinstance(declare, str) else value}

    def build(self, method, encoder, embed_dim, **options):
        if method == self._method:
            options = {**options, self._option: self._value}
        return super().build(method, encoder, embed_dim, **options)


boost_before_declared = Variant("directpred", "boost", "before", "directpred_boost", True)
boost_before_undeclared = Variant("directpred", "boost", "before", "directpred_boost", False)
unbiased_std_declared = Variant("barlow_twins", "bn_std", "unbiased", "batch_std", True)
unbiased_std_undeclared = Variant("barlow_twins", "bn_std", "unbiased", "batch_std", False)
# a declaration that does not hold: the definition's form, declared as the variant
boost_after_declares_before = Variant("directpred", "boost", "after", "directpred_boost", "before")
biased_std_declares_unbiased = Variant("barlow_twins", "bn_std", "biased", "batch_std", "unbiased")


class _PostStepDirectPred:
    """DirectPred as Tian et al.'s code runs it: the loss uses the current W_P (at the first call, its initial
    ½I), and after each step W_P is set to ω of a running estimate F ← ρF + (1 − ρ)Ĉ of the online view's
    correlation (from the first batch on)."""

    def __init__(self, encoder, embed_dim, alpha=0.5, eps=0.1, rho=0.3):
        self.encoder, self.alpha, self.eps, self.rho = encoder, alpha, eps, rho
        lead = tuple(encoder.W.shape[:-2])
        self.W_P = 0.5 * torch.eye(embed_dim, dtype=encoder.W.dtype).expand(*lead, embed_dim, embed_dim).clone()
        self.F, self._batch = None, None

    def parameters(self):
        return self.encoder.parameters()

    def loss(self, view1, view2):
        z1, z2 = self.encoder(view1), self.encoder(view2)
        self._batch = correlation(z1.detach())
        return losses.simsiam(z1, z2, self.W_P).sum()

    def after_step(self):
        if self._batch is None:
            return
        self.F = self._batch if self.F is None else self.rho * self.F + (1.0 - self.rho) * self._batch
        self.W_P = eigen_predictor(self.F, self.alpha, eps=self.eps, normalize=True, boost="after")


class PostStepEstimate(ReferenceAdapter):
    def __init__(self, declare: bool):
        self.name = "directpred-post-step-" + ("declared" if declare else "undeclared")
        if declare:
            self.conventions = {"predictor_estimate": {"rho": 0.3}}

    def build(self, method, encoder, embed_dim, **options):
        if method == "directpred":
            return _PostStepDirectPred(encoder, embed_dim, **options)
        return super().build(method, encoder, embed_dim, **options)


post_step_declared = PostStepEstimate(True)
post_step_undeclared = PostStepEstimate(False)


class _EpsOnStd:
    """Barlow Twins standardising as ``(z − mean)/(std + 1e-5)`` with the unbiased std (stable-pretraining's and
    another published implementation's form): the unbiased convention plus ε on the std, not on the variance."""

    def __init__(self, encoder, embed_dim, lambda_offdiag=0.0051, **_):
        self.encoder, self.lam = encoder, lambda_offdiag

    def parameters(self):
        return self.encoder.parameters()

    def loss(self, view1, view2):
        def standardise(z):
            return (z - z.mean(-2, keepdim=True)) / (z.std(-2, keepdim=True) + 1e-5)
        z1, z2 = standardise(self.encoder(view1)), standardise(self.encoder(view2))
        c = z1.transpose(-1, -2) @ z2 / z1.shape[-2]
        on = (torch.diagonal(c, dim1=-2, dim2=-1) - 1).pow(2).sum(-1)
        off = c.pow(2).sum((-2, -1)) - torch.diagonal(c, dim1=-2, dim2=-1).pow(2).sum(-1)
        return (on + self.lam * off).sum()

    def after_step(self):
        pass


class EpsOnStd(ReferenceAdapter):
    name = "barlow-twins-unbiased-eps-on-std"
    capabilities = frozenset(ReferenceAdapter.capabilities) - {"ablation:no_decorrelation", "ablation:no_batchnorm",
                                                                 "ablation:bn_no_center"}

    def build(self, method, encoder, embed_dim, **options):
        if method == "barlow_twins":
            return _EpsOnStd(encoder, embed_dim, **options)
        return super().build(method, encoder, embed_dim, **options)


eps_on_std = EpsOnStd()
eps_on_std_declared = EpsOnStd()
eps_on_std_declared.conventions = {"batch_std": "unbiased"}


# --- issue 25: a convention scoped to its method; known bugs' signatures -------------------------------------


class _OwnEstimate(_Scaled):
    """DirectPred with W_P built from the learner's own running estimate F ← ρF + (1 − ρ)Ĉ of the online view
    (ρ = 0.998), its loss without the ½ (×2), and no ``corr_used`` exposed: only ``W_P``."""

    def __init__(self, learner):
        super().__init__(learner, 2.0)

    def __getattr__(self, name):
        if name == "corr_used":
            raise AttributeError(name)
        return super().__getattr__(name)


class OwnRunningEstimate(ReferenceAdapter):
    """Every closed-form method ×2 (no ½); DirectPred's W_P from its own running estimate, declared for DirectPred
    only (issue 25: the declaration must not switch off the scale measurement of SimSiam and IsoLoss)."""

    name = "closed-form-own-estimate-x2"
    conventions = {"directpred": {"predictor_estimate": {"rho": 0.998, "views": "online"}}}

    def build(self, method, encoder, embed_dim, **options):
        if method == "directpred":
            return _OwnEstimate(super().build(method, encoder, embed_dim, **{**options, "corr_ema": 0.998}))
        return _Scaled(super().build(method, encoder, embed_dim, **options), 2.0)


own_running_estimate = OwnRunningEstimate()


def _target_attached(z1, z2, W_P):
    """IsoLoss with its SG(·) dropped: ½‖z1 − (z2 + z1 − W_P z1)‖², every branch differentiated."""
    return losses.half_sq(z1, z2 + z1 - losses.predict(z1, W_P))


def _predictor_both(z1, z2, W_P):
    """SimSiam's loss with the target passed through W_P as well: ½‖W_P z1 − SG(W_P z2)‖²."""
    return losses.simsiam(z1, losses.predict(z2, W_P), W_P)


class KnownBug(ReferenceAdapter):
    """The reference with one known bug in a closed-form method's criterion (``method`` only)."""

    def __init__(self, name, method, criterion):
        self.name, self._method, self._criterion = f"known-bug:{name}", method, criterion

    def build(self, method, encoder, embed_dim, **options):
        learner = super().build(method, encoder, embed_dim, **options)
        if method == self._method:
            learner.criterion = self._criterion
        return learner


isoloss_target_attached = KnownBug("isoloss-target-attached", "isoloss", _target_attached)
simsiam_predictor_both = KnownBug("simsiam-predictor-both", "simsiam", _predictor_both)
