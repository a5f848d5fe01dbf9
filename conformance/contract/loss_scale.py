# long module: one measurement; the fit, its explanation and the wrappers that run it share the probe's state
"""Scale-aware claims: a constant factor in the loss is a convention, measured and reported, never a failure.

Implementations differ from the method's definition by a constant factor in the loss: no ½ in
front of ‖p − z‖², a loss weight, a mean over the M embedding features instead of a sum. A factor
``c > 0`` multiplies every gradient, so it is a learning-rate change: fixed points, orderings and
identities are unchanged and time runs ``c`` times faster (``η_eff = c·η``). The spec therefore
measures ``c`` once per learner, on the learner's first ``loss`` call, and runs that learner in
the definition's time units (its loss divided by ``c``, i.e. ``lr/c`` per step — the same
trajectory: EMA targets and running estimates advance per step, not per unit of time).

The measurement. On the first call's views, the autograd gradient of the implementation's loss
``g_impl`` and of the definition's ``g_def`` (the reference method built with the same options
and declared conventions, on a copy of the same encoder at the same state) are taken with
respect to the encoder's weights, the learner's aligned parameters (a learned ``W_p``) and both
views. The least-squares factor is ``c = ⟨g_impl, g_def⟩/‖g_def‖²``, its relative residual
``r = ‖g_impl − c·g_def‖/‖g_impl‖``.

* ``r ≤ RESIDUAL_TOL`` (float64; 100 ulp of a lower-precision loss) and ``c > 0``: a pure rescale —
  reported ("loss scale ×2 (no ½): time rescaled; a convention, not a failure") and the claims
  judge the rest at their own precision.
* ``c < 0`` (and ``r`` small): the sign-flip bug (gradient ascent) — fails.
* ``r > RESIDUAL_TOL``: not a constant factor — the terms are weighted differently from the
  definition (a data term scaled but not the weight decay, one of two loss terms scaled, a term
  dropped or added): a different objective, which fails with that message; when a declarable
  convention (:mod:`ncspec.conformance.contract.conventions`) explains it, the message names it.

The factor cannot be measured (and is taken as 1, said so in the report) when the learner has
parameters of its own that the definition cannot be aligned with (an MLP head with its own
initialisation), when it cannot be copied, or when the reference does not build the method with
these options. The reference adapter is the definition: it is not measured.
"""
from __future__ import annotations

import contextlib
import copy
import math
from dataclasses import dataclass

import torch
from torch import Tensor

from . import conventions as conv
from . import loss_scale_heads
from .validate import ImplementationFailure, _Proxy, unwrap

#: Largest relative residual of a pure rescale: 1e-8, the tightest precision of any claim (the exact
#: Euler map), so a smaller residual is invisible to every claim. A pure rescale leaves float64
#: rounding only: measured ≤ 4e-16 for the reference ×2, ÷M, ×0.03 and ≤ 6e-16 for lightly 1.6's
#: Barlow Twins, VICReg and NT-Xent against the definition (C-claim encoders, seeds 0–2). A term
#: weighted differently leaves its share of the gradient times its misweighting (data term ×2,
#: weight decay η = 0.05 ×1, on the population batch: 1.2e-4).
RESIDUAL_TOL = 1e-8
#: In lower precision a pure rescale leaves a few units of rounding (float32: measured 1.6e-7–2.2e-7 for
#: ×0.03 on the center-vector claims' MLPs): the bound is 100 ulp of the lowest precision involved when that is
#: larger. "Involved" is every floating tensor the implementation's loss is computed from — the loss itself, the
#: encoder's and heads' parameters, the EMA target's parameters and buffers — not only the loss's dtype: a float32
#: target under a float64 loss enters the gradient rounded to float32 (relative u = 6e-8 per entry), which the
#: float64 definition does not share, so the fit leaves ≈ κ·u (measured 2.3e-8–7.6e-8 for a float32 BYOL target,
#: ≤ 1.3 u; κ the gradient's condition in its inputs). 100 ulp (1.2e-5 in float32) bounds κ·u with room; a
#: misweighted term leaves ≥ 1e-4 (the data term ×2 against decay ×1: 1.2e-4; a dropped ½ on one of two terms: ~0.3).
ULPS = 100


#: Methods whose claims read the factor at a coarser precision than :data:`RESIDUAL_TOL`: Barlow Twins' value claim
#: (C4) judges at 1e-4 because implementations differ in where BatchNorm's ε (0 to 1e-5) enters — on the variance
#: or on the std, which moves the gradient by ~ε/σ relative (measured 7.5e-6 for (z − z̄)/(std + 1e-5) on C4's
#: encoders, after the unbiased-std convention); its other claims (C5, J5) are scale-free. A term weighted
#: differently leaves far more (the unbiased std undeclared: 0.01-0.04 on the same batches).
METHOD_RESIDUAL_TOL = {"barlow_twins": 1e-4}


def residual_tol(dtype, method: str = "") -> float:
    """:data:`RESIDUAL_TOL` (or the method's, :data:`METHOD_RESIDUAL_TOL`), or ``ULPS`` units of the rounding of
    ``dtype`` (one dtype, or several: the lowest precision among them) if larger (float32: 1.2e-5)."""
    base = METHOD_RESIDUAL_TOL.get(method, RESIDUAL_TOL)
    dtypes = [d for d in (dtype if isinstance(dtype, (set, frozenset, list, tuple)) else (dtype,))
              if d.is_floating_point]
    return max([base, *(ULPS * torch.finfo(d).eps for d in dtypes)])


def involved_dtypes(learner, loss: Tensor) -> set:
    """The floating dtypes the implementation's loss is computed from: the loss's, the learner's parameters', and
    the tensors of its target network and heads (parameters and buffers: a float32 EMA target or BatchNorm buffer
    under a float64 loss rounds what enters the gradient)."""
    out = {loss.dtype}
    for p in _params(learner):
        out.add(p.dtype)
    for name in ("target_encoder", "target_projector", "projector", "predictor"):
        part = getattr(learner, name, None)
        if isinstance(part, torch.nn.Module):
            out.update(t.dtype for t in (*part.parameters(), *part.buffers()))
    return {d for d in out if d.is_floating_point}


#: With weight decay, a data term and decay scaled by ratios differing by more than this are named.
DECAY_RATIO_TOL = 1e-6

#: methods whose W_P is built from a correlation estimate (a declared running estimate changes it)
CLOSED_FORM = ("simsiam", "directpred", "directset", "directcopy", "isoloss")
_NAMED = ((2.0, "no ½"), (0.5, "an extra ½"))


#: broken variants of a closed-form predictor's loss whose signature a misfit is checked against: name → message
CLOSED_FORM_SIGNATURES = {
    "target_attached": "the target branch is not detached (no stop-gradient on the target: SG(z2) in Halvagal et "
                       "al. 2022, eq. 2, SG(z2 + z1 − W_P z1) in IsoLoss's eq. 8), so the gradient also flows through "
                       "it; W_P itself is the definition's",
    "predictor_both": "the predictor is applied on both branches (the target is W_P z2; W_P belongs to the online "
                      "branch only, p = W_P z1 against SG(z2))",
}


def _broken(ref, variant: str) -> None:
    """Patch the reference learner ``ref`` (a closed-form predictor) into the bug ``variant``."""
    from ncspec.reference import losses
    if variant == "target_attached":
        loss = "isoloss" if ref.criterion in losses.ISOLOSS.values() else "simsiam"
        cosine = ref.criterion in (losses.cosine_isoloss, *(f for (form, _), f in losses.SIMSIAM.items()
                                                           if form == "cosine"))
        if loss == "simsiam":
            ref.criterion = losses.SIMSIAM[("cosine" if cosine else "euclidean", "none")]
        else:                                             # eq. 8 with its SG removed: the value's gradient
            ref.criterion = ((lambda z1, z2, W: losses.neg_cosine(losses.predict(z1, W), z2)) if cosine else
                             (lambda z1, z2, W: losses.half_sq(z1, z2 + z1 - losses.predict(z1, W))))
    elif variant == "predictor_both":
        base = ref.criterion
        ref.criterion = lambda z1, z2, W: base(z1, losses.predict(z2, W), W)


class ScaleMismatch(ImplementationFailure):
    """The implementation's gradient is not a positive constant times the definition's."""


@dataclass
class ScaleFit:
    method: str
    c: float                 # least-squares factor g_impl ≈ c·g_def (1.0 when not measured)
    residual: float          # ‖g_impl − c g_def‖/‖g_impl‖ (nan when not measured)
    measured: bool = True
    note: str = ""           # why not measured
    tolerance: float = RESIDUAL_TOL   # the residual bound it was judged by (dtype-dependent)
    failed: bool = False     # a fit that found no constant factor (reported; only a scale-free claim goes on)
    declared: bool = False   # not measured, and the adapter declares the factor (loss_factor): the note says how used

    def near(self, value: float) -> bool:
        """``c`` equals ``value`` up to the fit's precision (1e-9, or the residual bound of a lower precision: the
        factor of a float32 target's fit is off by its rounding, ~1e-8)."""
        return abs(self.c / value - 1.0) <= max(1e-9, self.tolerance)

    @property
    def is_convention(self) -> bool:
        """A factor other than ×1, or no factor measured: a row every report lists under its conventions."""
        return not self.measured or not self.near(1.0)

    def describe(self, embed_dim: int | None = None) -> str:
        if not self.measured and self.declared:
            return f"loss scale not measured here: {self.note}"
        if not self.measured:
            return (f"loss scale not measured ({self.note}): taken as 1, time in the implementation's units as given "
                    f"(a loss that is a constant multiple of the definition's, e.g. a BYOL loss 2 − 2cos summed over "
                    f"both orders, runs that many times faster here; the deep tier reads the factor from the "
                    f"adapter's loss_factor = {{{self.method!r}: c}})")
        c = self.c
        if self.near(1.0):
            return "loss scale ×1: the definition's units"
        names = []
        if embed_dim and self.near(1.0 / embed_dim):
            names.append(f"mean over the M = {embed_dim} embedding features, not a sum")
        names += [n for v, n in _NAMED if self.near(v)]
        what = f" ({names[0]})" if names else ""
        return f"loss scale ×{c:.6g}{what}: time rescaled; a convention, not a failure"


def _flat(grads, like) -> Tensor:
    return torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1).to(torch.float64)
                      for g, p in zip(grads, like)]) if like else torch.zeros(0, dtype=torch.float64)


def _views_with_grad(view1: Tensor, view2: Tensor) -> tuple[Tensor, Tensor]:
    return tuple(v.detach().clone().requires_grad_(v.is_floating_point()) for v in (view1, view2))


def _gradient_of(loss: Tensor, tensors: list[Tensor], *, retain: bool = False) -> Tensor:
    """Flattened ∂loss/∂tensors (zeros where a tensor is not reached)."""
    wrt = [t for t in tensors if t.requires_grad]
    grads = (torch.autograd.grad(loss, wrt, allow_unused=True, retain_graph=retain) if loss.requires_grad and wrt
             else [None] * len(wrt))
    return _flat(grads, wrt)


def fit(g_impl: Tensor, g_def: Tensor) -> tuple[float, float]:
    """Least-squares ``c`` of ``g_impl ≈ c·g_def`` and the relative residual."""
    dd = float(g_def @ g_def)
    ni = float(g_impl.norm())
    if dd == 0.0:
        return (1.0, 0.0) if ni == 0.0 else (1.0, 1.0)
    c = float(g_impl @ g_def) / dd
    return c, (float((g_impl - c * g_def).norm()) / ni if ni else 0.0)


def matching_signature(probe, signatures: dict, view1, view2, rng, current, g_i: Tensor, tol: float) -> str:
    """The first known bug of ``signatures`` (name → what the message says) whose gradient, as ``probe`` computes it
    (``definition_gradient(..., variant=name)``), ``g_i`` is a positive multiple of: the sentence naming it, or ''."""
    for name, text in signatures.items():
        try:
            g = probe.definition_gradient(view1, view2, rng, current, variant=name)
        except Exception:
            continue
        c, r = fit(g_i, g)
        if c > 0 and r <= tol:
            return f" Its gradient is ×{c:.6g} that of the definition with this bug: {text}."
    return ""


def _vanishes(g: Tensor, value: float) -> bool:
    """A gradient at rounding level (float64: ‖g‖ ≤ 1e-12·max(1, |L|)): a stationary point, no direction to fit."""
    return float(g.norm()) <= 1e-12 * max(1.0, abs(value))


def _params(learner) -> list[Tensor]:
    return [p for p in learner.parameters() if isinstance(p, Tensor) and p.requires_grad]


class _Probe:
    """The definition built beside the implementation: the reference method with the same options and
    conventions, on a copy of the encoder as it was at ``build`` and from the same RNG state (so it draws the
    same initialisation and its EMA target starts where the implementation's did)."""

    def __init__(self, method, options, conventions, encoder, embed_dim, rng, snapshot):
        self.method, self.options, self.conventions = method, options, conventions
        self.encoder, self._M, self.rng, self.snapshot = encoder, embed_dim, rng, snapshot
        self.grad_views = (True, True)        # which views the fit differentiates (both, unless measured in place)
        #: a declared running estimate (``predictor_estimate``): the definition uses the implementation's own W_P
        self.own_W_P = bool(conventions.get("predictor_estimate")) and method in CLOSED_FORM
        self.W_P = None

    def bind(self, learner) -> None:
        """Read what the definition takes from the implementation's last call: its own ``W_P`` (a declared running
        estimate: the definition's loss around the W_P the implementation built, Tian et al.'s code refreshing it
        from its estimate)."""
        if self.own_W_P:
            W = getattr(learner, "W_P", None)
            self.W_P = W.detach() if isinstance(W, Tensor) else None

    def definition(self, variant: str = "", **override):
        """A fresh reference learner on a copy of the build-time encoder: (learner, its encoder's trainable
        weights, its own trainable parameters); with a known bug's ``variant`` (:data:`CLOSED_FORM_SIGNATURES`)."""
        from ncspec.reference import methods
        after = torch.get_rng_state()
        torch.set_rng_state(self.rng)
        try:
            enc = copy.deepcopy(self.snapshot)
            ref = methods.build(self.method, enc, self._M, **{**self.options, **override})
        finally:
            torch.set_rng_state(after)
        own = [p for p in enc.parameters() if p.requires_grad]
        if self.W_P is not None:                          # W_P from the implementation's own running estimate
            ref.predictor = lambda z1, W=self.W_P: W.to(z1.dtype)
        if variant:
            _broken(ref, variant)
        return ref, own, [p for p in _params(ref) if all(p is not q for q in enc.parameters())]

    def signature(self, view1, view2, rng, current, g_i: Tensor, tol: float) -> str:
        """The known bug (:data:`CLOSED_FORM_SIGNATURES`) whose gradient ``g_i`` is a positive multiple of ('' if
        none)."""
        if self.method not in CLOSED_FORM:
            return ""
        return matching_signature(self, CLOSED_FORM_SIGNATURES, view1, view2, rng, current, g_i, tol)

    def synced(self, current: list[Tensor], **override):
        """:meth:`definition` with its trainable tensors set to the implementation's current values (the
        harness may set the encoder's weights after ``build``; the EMA target keeps its build-time copy)."""
        ref, own, extra = self.definition(**override)
        with torch.no_grad():
            for p, q in zip([*own, *extra], current):
                p.copy_(q)
        return ref, [*own, *extra]

    def definition_gradient(self, view1, view2, rng, current, *, value: bool = False, **override):
        """∂L_def/∂(tensors, views) on the implementation's current state (and L_def when ``value``)."""
        ref, tensors = self.synced(current, **override)
        v1, v2 = _views_with_grad(view1, view2)
        after = torch.get_rng_state()
        torch.set_rng_state(rng)                          # the same draws as the implementation's call
        try:
            loss = ref.loss(v1, v2)
            g = _gradient_of(loss, [*tensors, *(v for v, w in zip((v1, v2), self.grad_views) if w)])
            return (g, float(loss.detach())) if value else g
        finally:
            torch.set_rng_state(after)

    def explain(self, view1, view2, rng, current, g_i: Tensor, g_d: Tensor, tol: float = RESIDUAL_TOL) -> str:
        """What a non-uniform residual is: a declarable convention, or weight decay left unscaled; else the likely
        cause — the convention whose form leaves at most half the definition's residual."""
        named = self.signature(view1, view2, rng, current, g_i, tol)
        if named:
            return named
        _, r_def = fit(g_i, g_d)
        closest = None
        for alt in conv.alternatives(self.method, self.conventions):
            g_alt = self.definition_gradient(view1, view2, rng, current, **conv.reference_options(self.method, alt))
            c, r = fit(g_i, g_alt)
            (key, value), = alt.items()
            meaning = conv.MEANING.get((key, value), value)
            if r <= tol and c > 0:
                return (f" It matches the definition under the convention {key} = {value!r} ({meaning}) with factor "
                        f"×{c:.6g}: if that is intended, declare conventions = {{{key!r}: {value!r}}} on the adapter.")
            if c > 0 and r <= 0.5 * r_def and (closest is None or r < closest[0]):
                closest = (r, key, value, meaning, c)
        wd = self.options.get("weight_decay")
        if wd:
            g_data = self.definition_gradient(view1, view2, rng, current, weight_decay=0.0)
            A = torch.stack([g_data, g_d - g_data], 1)
            ab = torch.linalg.lstsq(A, g_i.unsqueeze(1)).solution.squeeze(1)
            a, b = ab.tolist()
            r = float((A @ ab - g_i).norm() / g_i.norm())
            if r <= tol and abs(a - b) > DECAY_RATIO_TOL * max(abs(a), abs(b)):
                return (f" Exactly: the data term is scaled ×{a:.6g} but the weight decay (η = {wd:g}) ×{b:.6g} "
                        f"— weight decay must be scaled with the loss (or both left unscaled); as written the "
                        f"effective decay is η·{b / a:.6g}.")
        if closest is not None:
            r, key, value, meaning, c = closest
            return (f" Likely cause: the convention {key} = {value!r} ({meaning}) — under it the residual falls from "
                    f"{r_def:.3g} to {r:.3g} (factor ×{c:.6g}); what remains is another, smaller difference (e.g. "
                    f"where a small ε enters a normalisation). If that convention is intended, declare conventions = "
                    f"{{{key!r}: {value!r}}} on the adapter; the claims that judge values then say how far the rest "
                    f"is from the definition.")
        if self.method in CLOSED_FORM:
            return (f" Its W_P is not the definition's (the batch correlation z1ᵀz1/B, or the preset's running "
                    f"estimate): if it is built from another running estimate, declare it for this method, "
                    f"conventions = {{{self.method!r}: {{'predictor_estimate': {{'rho': ρ, 'views': 'online' | "
                    f"'both'}}}}}} (the loss scale is then measured through the learner's own `W_P`); otherwise the "
                    f"terms are weighted differently from the definition: a different objective, not a convention.")
        decay = "a data term scaled but not the weight decay, " if wd else ""
        return (f" The loss's terms are weighted differently from the definition (e.g. {decay}only one of its terms "
                f"scaled, or a term dropped or added): a different objective, not a convention.")


#: the misfits without a known cause met during the current claim's test (None outside :func:`claim_scope`)
PENDING: list | None = None


def _generic(failure: str) -> bool:
    """A misfit whose message names no cause (no bug's signature, convention or unscaled decay)."""
    return (failure.rstrip().endswith("a different objective, not a convention.")
            and not any(k in failure for k in ("Likely cause", "Exactly", "with this bug", "It matches")))


@contextlib.contextmanager
def claim_scope():
    """Run one claim's test so that a loss-scale misfit with no known cause does not pre-empt the claim (issue 25):
    the learner runs at the least-squares factor, the claim's own assertion speaks first (the misfit is added to
    its message), a claim that passes or crashes fails on the misfit after all."""
    global PENDING
    outer, PENDING = PENDING, []
    try:
        yield
    except Exception as e:
        pending, PENDING = PENDING, outer
        if pending and _asserts(e):
            if hasattr(e, "add_note"):
                e.add_note(f"(also: {pending[0]})")
            raise
        if pending:
            raise pending[0] from e
        raise
    else:
        pending, PENDING = PENDING, outer
        if pending:
            raise pending[0]
    finally:
        PENDING = outer


def _asserts(exc: BaseException) -> bool:
    """An assertion among ``exc`` and its grouped leaves (Hypothesis' several failures)."""
    group = getattr(exc, "exceptions", None)            # an ExceptionGroup (Python ≥ 3.11, or its backport)
    if isinstance(group, (list, tuple)):
        return any(_asserts(e) for e in group)
    return isinstance(exc, AssertionError)


#: a callable(quantity, measured, predicted, error=..., tolerance=..., convention=...) receiving the factor rows; the
#: pytest plugin's ``record`` fixture installs the current test's recorder here.
SINK = None


def _report(fit_: ScaleFit, embed_dim, failure: str = "", scale_free: str = "") -> None:
    if SINK is None:
        return
    if failure:
        verdict = (f"not used: {scale_free}, so the claim runs in the implementation's units" if scale_free else
                   "the claim fails on it")
        SINK(f"{fit_.method}: loss scale is not a constant factor ({verdict}). {failure}", fit_.residual,
             f"c > 0, residual ≤ {fit_.tolerance:g} (a pure rescale)", error=fit_.residual, tolerance=fit_.tolerance,
             convention=False)
        return
    text = fit_.describe(embed_dim)
    if fit_.measured:
        SINK(f"{fit_.method}: {text}", fit_.c, f"c > 0, residual ≤ {fit_.tolerance:g} (a pure rescale)",
             error=fit_.residual, tolerance=fit_.tolerance, convention=fit_.is_convention)
    else:
        SINK(f"{fit_.method}: {text}", 1.0, "not measured", convention=True)


class ScaledLearner(_Proxy):
    """A learner whose loss is divided by its measured scale ``c`` (see the module docstring)."""

    __slots__ = ("_probe", "_M", "scale", "loss", "_free")
    _own = ("_inner", "_probe", "_M", "scale", "loss", "_free")

    def __init__(self, learner, probe, embed_dim, scale=None, scale_free: str = ""):
        object.__setattr__(self, "_inner", learner)
        object.__setattr__(self, "_probe", probe)
        object.__setattr__(self, "_M", embed_dim)
        object.__setattr__(self, "scale", scale)
        object.__setattr__(self, "_free", scale_free)
        object.__setattr__(self, "loss", self._scaled_loss if scale is not None else self._first_loss)

    def __setattr__(self, name, value):
        setattr(self._inner, name, value)

    def __deepcopy__(self, memo):
        return ScaledLearner(copy.deepcopy(self._inner, memo), self._probe, self._M, self.scale, self._free)

    def _first_loss(self, view1, view2):
        """The learner's own first call, on the caller's views, measured against the definition's.

        What is returned is exactly the learner's loss (its graph untouched, so its gradient is the learner's to
        the bit): the fit differentiates it with respect to the trainable tensors and to those views that already
        require a gradient. The gradient with respect to the other views (it tells a different objective whose
        weight gradient happens to be a multiple of the definition's, e.g. a correlation estimate not detached)
        is taken on a deep copy of the learner made before the call, from the same RNG state; a copy drops tensor
        hooks (a learner's ``W_p.register_hook``), which change parameter gradients, not the views'. A learner
        with nothing trainable, or a first call under ``no_grad``, is measured on the copy alone. Views made to
        require a gradient change the graph (the rounding of a gradient that cancels, a bias before BatchNorm,
        and the caller's own view gradients), so the call returned never runs on them.
        """
        probe, inner = self._probe, self._inner
        object.__setattr__(self, "_probe", None)
        rng = torch.get_rng_state()
        encoder = [p for p in probe.encoder.parameters() if p.requires_grad]
        in_place = torch.is_grad_enabled() and (
            bool(encoder) or bool(_params(inner)) or any(isinstance(v, Tensor) and v.requires_grad
                                                         for v in (view1, view2)))
        if in_place:
            twin_grads = None
            if not all(isinstance(v, Tensor) and v.requires_grad for v in (view1, view2)):
                twin_grads = _view_gradients_on_a_copy(inner, view1, view2, rng)
            loss = inner.loss(view1, view2)
            fit_, failure = self._measure(probe, loss, inner, encoder, (view1, view2), rng, twin_grads)
        else:
            memo: dict = {}
            try:
                twin = copy.deepcopy(inner, memo)
            except Exception:
                twin = None
            if twin is None:
                fit_, failure = ScaleFit(probe.method, 1.0, math.nan, measured=False,
                                         note="nothing trainable to differentiate and the learner cannot be "
                                              "copied"), ""
            else:
                v1, v2 = _views_with_grad(view1, view2)
                with torch.enable_grad():                  # a first call under no_grad is measured all the same
                    measured = twin.loss(v1, v2)
                    twin_encoder = [memo.get(id(p), p) for p in encoder]
                    fit_, failure = self._measure(probe, measured, twin, twin_encoder, (v1, v2), rng)
                del twin, measured
                torch.set_rng_state(rng)                   # the learner's call draws what it would have drawn
            loss = inner.loss(view1, view2)
        if failure and self._free:             # a scale-free claim: the fit is reported, the loss left as it is
            _report(fit_, self._M, failure, self._free)
            fit_ = ScaleFit(fit_.method, 1.0, math.nan, measured=False, note="not a constant factor", failed=True)
            failure = ""
        elif failure:
            _report(fit_, self._M, failure)
        else:
            _report(fit_, self._M)
        if failure and PENDING is not None and _generic(failure) and fit_.c > 0:
            # no known cause: the claim's own assertion speaks first (claim_scope), the misfit after it
            PENDING.append(ScaleMismatch(failure))
            fit_ = ScaleFit(fit_.method, fit_.c, fit_.residual, tolerance=fit_.tolerance, failed=True)
            failure = ""
        object.__setattr__(self, "scale", fit_)
        object.__setattr__(self, "loss", self._scaled_loss)
        if failure:
            raise ScaleMismatch(failure)
        return loss if fit_.c == 1.0 else loss / fit_.c

    def _measure(self, probe, loss, learner, encoder, views, rng, twin_grads=None) -> tuple[ScaleFit, str]:
        """Fit ``loss``'s gradient (``learner``'s, whose encoder's trainable tensors are ``encoder``) with respect
        to those tensors, ``learner``'s own parameters and ``views`` (those that require a gradient; the others'
        from ``twin_grads``, measured on a copy, where given) against the definition's."""
        method = probe.method
        extra_i = [p for p in _params(learner) if all(p is not q for q in encoder)]
        if not isinstance(loss, Tensor) or loss.dim() != 0:
            return ScaleFit(method, 1.0, math.nan, measured=False, note="the loss is not a scalar tensor"), ""
        current = [*encoder, *extra_i]
        v1, v2 = views
        parts, mask = [_gradient_of(loss, current, retain=True)], []
        for k, v in enumerate(views):
            if isinstance(v, Tensor) and v.requires_grad:
                parts.append(_gradient_of(loss, [v], retain=True))
            elif twin_grads is not None:
                parts.append(twin_grads[k])
            else:
                mask.append(False)
                continue
            mask.append(True)
        probe.grad_views = tuple(mask)
        probe.bind(learner)
        g_i = torch.cat(parts)
        g_d, value_d = probe.definition_gradient(v1, v2, rng, current, value=True)
        value_i = float(loss.detach())
        if _vanishes(g_i, value_i) and _vanishes(g_d, value_d):
            # a stationary point (e.g. collapsed unit embeddings): only the values carry the factor
            c = value_i / value_d if value_d and math.isfinite(value_i / value_d) else 0.0
            if c > 0:
                return ScaleFit(method, c, 0.0, note="from the loss values: the gradient vanishes here"), ""
            return ScaleFit(method, 1.0, math.nan, measured=False, note="the gradient vanishes here"), ""
        c, r = fit(g_i, g_d)
        tol = residual_tol(involved_dtypes(learner, loss), method)
        fit_ = ScaleFit(method, c, r, tolerance=tol)
        if r > tol:
            return fit_, (f"{method}: the implementation's gradient is not a constant multiple of the definition's "
                          f"(least-squares factor c = {c:.4g}, relative residual {r:.3g} > {tol:g}, the most "
                          f"a pure loss-scale convention leaves)." + probe.explain(v1, v2, rng, current, g_i, g_d, tol))
        if c == 0:
            return fit_, (f"{method}: the implementation's gradient is zero where the definition's is not: no "
                          f"gradient reaches the parameters (everything detached?), not a convention.")
        if c < 0:
            return fit_, (f"{method}: the implementation's gradient is c = {c:.4g} × the definition's: a negative loss "
                          f"scale is the sign-flip bug (the update ascends the loss), not a convention.")
        return fit_, ""

    def _scaled_loss(self, view1, view2):
        loss = self._inner.loss(view1, view2)
        c = self.scale.c
        return loss if c == 1.0 else loss / c


def _declared_factor(adapter, method: str) -> str:
    """What the deep tier does with the adapter's declared ``loss_factor`` of ``method`` ('' when none is declared)."""
    factor = (getattr(adapter, "loss_factor", None) or {}).get(method)
    if factor is None:
        return ""
    return (f"the adapter declares loss_factor = {{{method!r}: {factor:g}}}, which the deep tier divides an SGD "
            f"learning rate by; with LARS (BYOL's recipe), whose update is invariant to the loss's scale, the factor "
            f"is unused")


def _serves_only_its_views(encoder) -> str:
    """Why the definition cannot be computed through a learner's heads on ``encoder`` ('' when it can): the deep
    tier's encoder (:class:`ncspec.reference.vision.served.Served`) hands out the embeddings of each training step's
    own two views only, and the fit differentiates with respect to copies of them; the deep tier reads the factor
    from the adapter's ``loss_factor`` instead."""
    from ncspec.reference.vision.served import Served
    if isinstance(encoder, Served) and not encoder.direct:
        return ("the deep tier's encoder embeds only each step's own views, so the definition is not recomputed "
                "through the learner's heads here; taken as 1 (the deep tier reads the adapter's loss_factor)")
    return ""


class ScaleAwareAdapter(_Proxy):
    """An adapter whose learners run in the definition's time units (see the module docstring)."""

    __slots__ = ("_free",)
    _own = ("_inner", "_free")

    def __reduce_ex__(self, protocol):
        return ScaleAwareAdapter, (self._inner, self._free)

    def __init__(self, adapter, scale_free: str = ""):
        object.__setattr__(self, "_inner", adapter)
        object.__setattr__(self, "_free", scale_free)
        conv.of(adapter)                                  # a malformed declaration fails here

    def build(self, method, encoder, embed_dim, **options):
        from ncspec.reference import methods

        from ..adapters.reference import ReferenceAdapter
        inner = self._inner
        if type(unwrap(inner)) is ReferenceAdapter:       # the definition itself
            return inner.build(method, encoder, embed_dim, **options)
        rng = torch.get_rng_state()
        try:
            snapshot = copy.deepcopy(encoder)
        except Exception:
            snapshot = None
        learner = inner.build(method, encoder, embed_dim, **options)
        conventions = conv.for_method(inner, method)
        if method not in methods.METHODS or options.get("distributed"):
            return learner                                # nothing to compare with
        # projector=False (ablation:no_projector) switches off the implementation's own head; the definition has none
        options = {k: v for k, v in options.items() if k != "projector"}
        if loss_scale_heads.exposes_heads(learner, method):   # the definition through the implementation's own heads
            note = loss_scale_heads.missing_part(learner, method) or _serves_only_its_views(encoder)
            declared = _declared_factor(inner, method) if note and note == _serves_only_its_views(encoder) else ""
            if note:
                fit_ = ScaleFit(method, 1.0, math.nan, measured=False, note=declared or note, declared=bool(declared))
                _report(fit_, embed_dim)
                return ScaledLearner(learner, None, embed_dim, fit_)
            probe = loss_scale_heads.HeadProbe(method, {**options, **conv.reference_options(method, conventions)},
                                               conventions, encoder, embed_dim,
                                               "symmetrized" in getattr(inner, "capabilities", ()))
            return ScaledLearner(learner, probe, embed_dim, scale_free=self._free)
        probe = _Probe(method, {**options, **conv.reference_options(method, conventions)}, conventions, encoder,
                       embed_dim, rng, snapshot)
        note = _unaligned(probe, learner, encoder) if snapshot is not None else "the encoder cannot be copied"
        if not note and probe.own_W_P and not isinstance(getattr(learner, "W_P", None), (Tensor, type(None))):
            note = "W_P from a declared running estimate, and the learner exposes no `W_P` to measure through"
        if note:
            declared = _declared_factor(inner, method) if _serves_only_its_views(encoder) else ""
            fit_ = ScaleFit(method, 1.0, math.nan, measured=False, note=declared or note, declared=bool(declared))
            _report(fit_, embed_dim)
            return ScaledLearner(learner, None, embed_dim, fit_)
        return ScaledLearner(learner, probe, embed_dim, scale_free=self._free)


def _view_gradients_on_a_copy(learner, view1, view2, rng) -> tuple[Tensor, Tensor] | None:
    """∂L/∂view1, ∂L/∂view2 (flattened) of a deep copy of ``learner`` from RNG state ``rng`` (restored after);
    None when the learner cannot be copied or its loss is not a differentiable scalar."""
    after = torch.get_rng_state()
    try:
        twin = copy.deepcopy(learner)
        v1, v2 = _views_with_grad(view1, view2)
        torch.set_rng_state(rng)
        with torch.enable_grad():
            loss = twin.loss(v1, v2)
            if not (isinstance(loss, Tensor) and loss.dim() == 0 and loss.requires_grad):
                return None
            grads = torch.autograd.grad(loss, [v1, v2], allow_unused=True)
        return tuple(_flat([g], [v]) for g, v in zip(grads, (v1, v2)))
    except Exception:
        return None
    finally:
        torch.set_rng_state(after)


def _unaligned(probe: _Probe, learner, encoder) -> str:
    """Why the learner cannot be compared with the definition ('' if it can): the definition does not build,
    or the learner's own parameters (e.g. an MLP head) differ from the definition's at initialisation."""
    try:
        _, _, extra_d = probe.definition()
    except Exception as e:
        return f"the definition does not build with these options ({type(e).__name__})"
    extra_i = [p for p in _params(learner) if all(p is not q for q in encoder.parameters())]
    same = len(extra_i) == len(extra_d) and all(
        a.shape == b.shape and a.dtype == b.dtype and torch.equal(a.detach(), b.detach())
        for a, b in zip(extra_i, extra_d))
    return "" if same else "the learner's own parameters (e.g. an MLP head) cannot be aligned with the definition's"


def scale_aware(adapter) -> ScaleAwareAdapter:
    """``adapter`` whose learners are measured and run in the definition's time units (idempotent)."""
    return adapter if type(adapter) is ScaleAwareAdapter else ScaleAwareAdapter(adapter)


def scale_free(impl, why: str):
    """``impl`` for a claim whose statement holds whatever the loss's scale (a shift invariance, a minimiser): a
    loss that is not a constant multiple of the definition's is reported (why, and the likely cause), not raised,
    and its learners run in the implementation's units. ``impl`` unchanged when it is not scale-aware."""
    if type(impl) is not ScaleAwareAdapter:
        return impl
    return ScaleAwareAdapter(object.__getattribute__(impl, "_inner"), why)


def unscaled(adapter):
    """The adapter inside :func:`scale_aware` (for claims that compare an implementation with itself)."""
    while type(adapter) is ScaleAwareAdapter:
        adapter = object.__getattribute__(adapter, "_inner")
    return adapter


def scale_of(learner) -> ScaleFit | None:
    """The measured :class:`ScaleFit` of a learner built by a scale-aware adapter (None otherwise)."""
    return object.__getattribute__(learner, "scale") if type(learner) is ScaledLearner else None
