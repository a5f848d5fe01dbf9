"""The loss-scale definition through the implementation's own heads (issue 24, "What to build" 1).

A learner that exposes its heads (``projector``: the online head after the encoder, VICReg's and Barlow Twins'
expander; ``predictor``: BYOL's and SimSiam's online predictor; ``target_projector``: the EMA copy of
``projector``) is compared with the method's definition computed on the *same* head outputs::

    z_v = projector(encoder(v)),   p_v = predictor(z_v)
    byol:         t_v = SG(target_projector(target_encoder(v)))
    simsiam_mlp:  t_v = SG(z_v)
    L_def = ½[D(p1, t2) + D(p2, t1)]   (D = −cos; D(p1, t2) alone for a BYOL that is not ``symmetrized``)
    vicreg, barlow_twins: the reference's loss on z_v (:mod:`ncspec.reference.methods.redundancy`)

(Chen & He 2021, eq. 2; Grill et al. 2020, eq. 2: ‖p̂ − ẑ‖² = 2 − 2cos, a constant and a factor 2 from −cos.)
Both gradients are taken with respect to the same tensors (the encoder's weights, the heads' parameters, the
views), so the factor is measured for MLP heads instead of taken as 1. The definition is evaluated on the live
modules: their BatchNorm buffers (and the RNG) are restored after each evaluation, so the learner's state is
exactly what its own call left (and its own graph can still backward).

Where a misfit has a known bug's signature (the gradient is a constant multiple of a broken variant's), the
message names the bug: the l2-normalisation missing (‖p − z‖²), the predictor on both branches, the target not
detached, the predictor's BatchNorm in eval mode.
"""
from __future__ import annotations

import contextlib

import torch
from ncspec.reference import losses
from torch import Tensor, nn

#: methods whose definition is computed through the implementation's heads when it exposes them
HEAD_METHODS = ("byol", "simsiam_mlp", "vicreg", "barlow_twins")
_SIAMESE = ("byol", "simsiam_mlp")

#: broken variants of a predictive (BYOL/SimSiam) loss: name → what the message says
SIGNATURES = {
    "unnormalised": "the l2-normalisation is missing: the gradient is that of ‖p − z‖² on the raw prediction and "
                    "target, while the definition normalises both (Grill et al. 2020, eq. 2: ‖p̂ − ẑ‖² = 2 − 2cos; "
                    "Chen & He 2021, eq. 1: D = −cos); normalise p and z (F.normalize(·, dim=-1)) before the "
                    "squared distance",
    "predictor_both": "the predictor is applied on both branches: the target passes through it too, while it belongs "
                      "to the online branch only (p = h(z1) against SG(z2), Chen & He 2021, Alg. 1)",
    "target_attached": "the target branch is not detached: no stop-gradient on the target (SG(z2) in Chen & He "
                       "2021, eq. 2), so the gradient also flows through it",
    "bn_eval": "the predictor's BatchNorm runs in eval mode (running statistics) during the loss, not in train "
               "mode (batch statistics): call .train() on the predictor",
}


def _callable(obj):
    return obj if callable(obj) and not isinstance(obj, bool) else None


def heads_of(learner) -> dict:
    """The learner's exposed heads (``projector``, ``predictor``, ``target_projector``), callables or None."""
    return {k: _callable(getattr(learner, k, None)) for k in ("projector", "predictor", "target_projector")}


def exposes_heads(learner, method: str) -> bool:
    """Whether the definition of ``method`` is computed through ``learner``'s own heads."""
    h = heads_of(learner)
    return method in HEAD_METHODS and (h["projector"] is not None or
                                       (method in _SIAMESE and h["predictor"] is not None))


def missing_part(learner, method: str) -> str:
    """Why the heads cannot define the loss ('' if they can)."""
    h = heads_of(learner)
    if method == "byol" and h["projector"] is not None and h["target_projector"] is None:
        return "the learner exposes `projector` but not `target_projector` (its EMA copy): the target is undefined"
    if method == "byol" and getattr(learner, "target_encoder", None) is None:
        return "the learner exposes its heads but no `target_encoder`"
    return ""


def _modules(*parts) -> list[nn.Module]:
    return [m for p in parts if isinstance(p, nn.Module) for m in p.modules()]


@contextlib.contextmanager
def _state_kept(modules: list[nn.Module], rng: Tensor):
    """Run from RNG state ``rng`` and put back every buffer (BatchNorm's running statistics), the modules'
    train/eval modes and the RNG afterwards: the learner's state is what its own call left."""
    # the definition runs on copies of the buffers: the originals are not written to at all (an in-place restore
    # would bump their autograd version, and the implementation's own graph, which saved them, could not backward)
    saved = [(m, name, b) for m in modules for name, b in m._buffers.items() if b is not None]
    modes = [(m, m.training) for m in modules]
    after = torch.get_rng_state()
    for m, name, b in saved:
        m._buffers[name] = b.detach().clone()
    torch.set_rng_state(rng)
    try:
        yield
    finally:
        torch.set_rng_state(after)
        for m, name, b in saved:
            m._buffers[name] = b
        for m, mode in modes:
            m.train(mode)


def _identity(z: Tensor) -> Tensor:
    return z


class _Given(nn.Module):
    """An "encoder" returning the embeddings already computed for each view (``projector(encoder(view))``), so the
    reference's redundancy losses act on the embedding the implementation's loss acts on."""

    def __init__(self, pairs):
        super().__init__()
        self.pairs = pairs

    def forward(self, view: Tensor) -> Tensor:
        return next(z for v, z in self.pairs if v is view)


class HeadProbe:
    """The definition on the implementation's own heads (module docstring); the interface of
    :class:`ncspec.conformance.contract.loss_scale._Probe` (``definition_gradient``, ``explain``, ``grad_views``)."""

    def __init__(self, method: str, options: dict, conventions: dict, encoder, embed_dim: int,
                 symmetrized: bool):
        self.method, self.options, self.conventions = method, options, conventions
        self.encoder, self._M, self.symmetrized = encoder, embed_dim, symmetrized
        self.grad_views = (True, True)
        self.learner = None

    def bind(self, learner) -> None:
        """The learner (or its copy) whose heads the next definition is computed through."""
        self.learner = learner

    def _parts(self):
        L = self.learner
        h = heads_of(L)
        encoder = getattr(L, "encoder", None) or self.encoder
        return encoder, h["projector"] or _identity, h["predictor"] or _identity, h, L

    def definition_value(self, v1: Tensor, v2: Tensor, variant: str = "", **override) -> Tensor:
        """L_def (or a broken ``variant``'s, :data:`SIGNATURES`) on ``learner``'s heads; scalar, replicas summed."""
        encoder, proj, pred, h, L = self._parts()
        if self.method in _SIAMESE:
            return self._predictive(encoder, proj, pred, h, L, v1, v2, variant)
        from ncspec.reference import methods
        for m in _modules(proj):
            m.train()
        z1, z2 = proj(encoder(v1)), proj(encoder(v2))
        ref = methods.build(self.method, _Given(((v1, z1), (v2, z2))), z1.shape[-1], **{**self.options, **override})
        return ref.loss(v1, v2)

    def _predictive(self, encoder, proj, pred, h, L, v1, v2, variant: str) -> Tensor:
        for m in _modules(pred, proj):              # the definition's heads run in train mode (batch statistics)
            m.train()
        for m in _modules(pred) if variant == "bn_eval" else ():
            m.eval()
        z1, z2 = proj(encoder(v1)), proj(encoder(v2))
        if self.method == "byol":
            tproj = h["target_projector"] or _identity
            dt = next((t.dtype for t in L.target_encoder.parameters()), v1.dtype)
            with torch.no_grad():                   # a target held in another dtype (float32) sees its own views
                t1, t2 = (tproj(L.target_encoder(v.to(dt))).to(z1.dtype) for v in (v1, v2))
        else:
            t1, t2 = z1, z2
        if variant != "target_attached" and self.options.get("stop_grad", "target") == "target":
            t1, t2 = t1.detach(), t2.detach()
        if variant == "predictor_both":            # h(SG(z)): the predictor's parameters get the target's gradient
            t1, t2 = pred(t1), pred(t2)
        use_pred = self.options.get("predictor", True) is not False
        p1, p2 = (pred(z1), pred(z2)) if use_pred else (z1, z2)
        D = (lambda a, b: losses.half_sq(a, b)) if variant == "unnormalised" else losses.neg_cosine_kernel
        if self.method == "byol" and not self.symmetrized:
            return D(p1, t2).sum()
        return losses.symmetrised(D, p1, p2, t1, t2).sum()

    def _modules(self) -> list[nn.Module]:
        encoder, proj, pred, h, L = self._parts()
        return _modules(encoder, proj, pred, h["target_projector"], getattr(L, "target_encoder", None))

    def definition_gradient(self, view1, view2, rng, current, *, value: bool = False, variant: str = "",
                            **override):
        """∂L_def/∂(``current``, views) on the bound learner's heads (and L_def when ``value``)."""
        from .loss_scale import _gradient_of, _views_with_grad
        v1, v2 = _views_with_grad(view1, view2)
        with _state_kept(self._modules(), rng), torch.enable_grad():
            loss = self.definition_value(v1, v2, variant, **override)
            g = _gradient_of(loss, [*current, *(v for v, w in zip((v1, v2), self.grad_views) if w)])
        return (g, float(loss.detach())) if value else g

    def signature(self, view1, view2, rng, current, g_i: Tensor, tol: float) -> str:
        """The known bug whose gradient ``g_i`` is a positive multiple of ('' if none)."""
        from .loss_scale import matching_signature
        if self.method not in _SIAMESE:
            return ""
        known = {name: text for name, text in SIGNATURES.items()      # an EMA target has no gradient path either way
                 if not (name == "target_attached" and self.method == "byol")}
        return matching_signature(self, known, view1, view2, rng, current, g_i, tol)

    def explain(self, view1, view2, rng, current, g_i: Tensor, g_d: Tensor, tol: float) -> str:
        """A known bug's name when the misfit has its signature; else the declarable conventions; else generic."""
        named = self.signature(view1, view2, rng, current, g_i, tol)
        if named:
            return named
        from . import conventions as conv
        from .loss_scale import fit
        for alt in conv.alternatives(self.method, self.conventions):
            g_alt = self.definition_gradient(view1, view2, rng, current, **conv.reference_options(self.method, alt))
            c, r = fit(g_i, g_alt)
            (key, value), = alt.items()
            if r <= tol and c > 0:
                return (f" It matches the definition under the convention {key} = {value!r} "
                        f"({conv.MEANING.get((key, value), value)}) with factor ×{c:.6g}: if that is intended, declare "
                        f"conventions = {{{key!r}: {value!r}}} on the adapter.")
        return (" The loss's terms, computed on the learner's own heads (projector, predictor, target projector), are "
                "weighted differently from the definition's: a different objective, not a convention.")
