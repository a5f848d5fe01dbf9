"""Siamese learners with a closed-form predictor: SimSiam-loss (DirectPred) and IsoLoss.

A learner wraps an encoder that the caller owns and exposes the three calls of
the adapter protocol (``conformance/contract/adapter.py``): ``parameters()``,
``loss(view1, view2)`` → scalar, and ``after_step()``.

The predictor is rebuilt at every call from the online embeddings of
``view1``: ``W_P = f_α(Ĉ)`` (Halvagal et al. 2022, eq. 1), with ``Ĉ`` the batch correlation
or its EMA. Leading dimensions of the embeddings are independent replicas; the
per-replica losses are *summed* so that each replica receives exactly its own
gradient (a batch of seeds trains as if each ran alone).
"""
from __future__ import annotations

from collections.abc import Iterable

from torch import Tensor, nn

from .. import _checks, losses
from ..linear.model import LinearEncoder
from ..predictors import EMACorrelation, copy_predictor, correlation, eigen_predictor

FORMS = {"euclidean", "cosine"}
_ENCODER_NONFINITE = ("the encoder output must be finite; the encoder weights or the views hold "
                      "NaN/inf (a diverged run: lower the learning rate, or check the views).")
STOP_GRAD = {"target", "none", "online"}


class ClosedFormSiamese:
    """``loss(x1, x2) = Σ_replicas L(z1, z2, W_P)`` with ``z = encoder(x)``.

    Args:
        encoder: maps a view (..., B, N) to embeddings (..., B, M).
        loss: ``"simsiam"`` (eq. 2 and its ablations) or ``"isoloss"`` (eq. 8).
        form: ``"euclidean"`` or ``"cosine"``.
        stop_grad: where SG(·) sits for the SimSiam loss: ``"target"`` (correct),
            ``"none"`` (eq. 6) or ``"online"`` (eq. 7, the wrong side).
        alpha, eps, normalize, boost: the predictor, see
            :func:`ncspec.reference.predictors.eigen_predictor`.
        corr_ema: ρ of the EMA correlation estimate; ``None`` uses the batch.
        predictor: ``"eigen"`` (DirectPred/DirectSet, ``U diag(ω) Uᵀ``) or ``"copy"``
            (DirectCopy, ``Ĉ/‖Ĉ‖ + εI``, see :func:`ncspec.reference.predictors.copy_predictor`).
        copy_norm: the norm DirectCopy divides by, ``"fro"`` or ``"spectral"``.
        update_every: recompute ``W_P`` every k calls (Tian et al.'s update frequency);
            the correlation estimate is still updated at every call.
        tau: the target is ``τ·SG(z2)`` (Tian et al. 2021: ``W_a = τW``); 1 for SimSiam.
        weight_decay: η, added as ``(η/2)‖θ‖²`` over the encoder's parameters.
    """

    def __init__(self, encoder: nn.Module, *, loss: str = "simsiam", form: str = "euclidean",
                 stop_grad: str = "target", alpha: float = 1.0, eps: float = 0.0,
                 normalize: bool = False, boost: str = "before", corr_ema: float | None = None,
                 predictor: str = "eigen", copy_norm: str = "fro", update_every: int = 1,
                 tau: float = 1.0, weight_decay: float = 0.0):
        if not callable(encoder):
            raise TypeError(f"encoder must be a callable module mapping views (..., B, N) to "
                            f"embeddings (..., B, M), got {type(encoder).__name__}; pass e.g. "
                            f"ncspec.reference.linear.LinearEncoder(W).")
        _checks.choice("loss", loss, {"simsiam", "isoloss"})
        _checks.choice("form", form, FORMS)
        _checks.choice("stop_grad", stop_grad, STOP_GRAD)
        _checks.positive("alpha", alpha, hint="alpha is the exponent of the predictor "
                         "ω = λ^α; use alpha > 0 (DirectPred uses 0.5, the theory 1.0).")
        _checks.non_negative("eps", eps, hint="eps boosts the small eigenvalues; use eps >= 0 "
                             "(0 disables the boost).")
        _checks.choice("boost", boost, {"before", "after"})
        if corr_ema is not None:
            try:
                ok = bool(0.0 <= corr_ema < 1.0)
            except (TypeError, ValueError, RuntimeError):
                ok = False
            if not ok:
                raise ValueError(f"corr_ema must be None or a number in [0, 1), got {corr_ema!r}; "
                                 f"it is ρ of the EMA correlation (Tian et al. use 0.3), None "
                                 f"uses the batch estimate.")
        _checks.choice("predictor", predictor, {"eigen", "copy"})
        _checks.choice("copy_norm", copy_norm, {"fro", "spectral"})
        _checks.positive_int("update_every", update_every, hint="1 recomputes W_P at every step.")
        _checks.positive("tau", tau, hint="tau scales the target, W_a = τW; SimSiam uses 1.")
        _checks.non_negative("weight_decay", weight_decay, hint="0 disables weight decay.")
        if loss == "isoloss" and stop_grad != "target":
            raise ValueError("IsoLoss fixes its own stop-gradient (eq. 8); stop_grad applies "
                             "to loss='simsiam' only.")
        self.encoder = encoder
        self.criterion = losses.ISOLOSS[form] if loss == "isoloss" else losses.SIMSIAM[(form, stop_grad)]
        self.alpha, self.eps, self.normalize, self.boost = alpha, eps, normalize, boost
        self.corr = EMACorrelation(corr_ema) if corr_ema is not None else None
        self.kind, self.copy_norm, self.update_every = predictor, copy_norm, update_every
        self.tau, self.weight_decay = float(tau), float(weight_decay)
        self._calls, self._W_P = 0, None
        self.corr_used: Tensor | None = None   # the estimate Ĉ the last W_P was built from (C3)

    def parameters(self) -> Iterable[Tensor]:
        return self.encoder.parameters()

    @property
    def W_P(self) -> Tensor | None:
        """The predictor matrix used by the last :meth:`loss` call (..., M, M)."""
        return self._W_P

    def predictor(self, z1: Tensor) -> Tensor:
        """``W_P = f_α(Ĉ)`` (or DirectCopy's ``Ĉ/‖Ĉ‖ + εI``) from the online embeddings (detached)."""
        C = self.corr.update(z1) if self.corr is not None else correlation(z1)
        stale = self._W_P is None or self._W_P.shape != C.shape
        if stale or self._calls % self.update_every == 0:
            if self.kind == "copy":
                self._W_P = copy_predictor(C, eps=self.eps, norm=self.copy_norm)
            else:
                self._W_P = eigen_predictor(C, self.alpha, eps=self.eps, normalize=self.normalize,
                                            boost=self.boost)
            self.corr_used = C
        self._calls += 1
        return self._W_P

    def loss(self, view1: Tensor, view2: Tensor) -> Tensor:
        _checks.tensor("view1", view1)
        _checks.tensor("view2", view2)
        _checks.same_shape("view1", view1, "view2", view2)
        z1, z2 = self.encoder(view1), self.encoder(view2)
        _checks.tensor("z1 = encoder(view1)", z1)
        _checks.tensor("z2 = encoder(view2)", z2)
        _checks.all_finite((("z1 = encoder(view1)", z1), ("z2 = encoder(view2)", z2)),
                           hint=_ENCODER_NONFINITE)
        loss = self.criterion(z1, z2 if self.tau == 1.0 else self.tau * z2, self.predictor(z1)).sum()
        if self.weight_decay:
            loss = loss + 0.5 * self.weight_decay * sum(p.pow(2).sum() for p in self.encoder.parameters())
        return loss

    def after_step(self) -> None:
        """Nothing to refresh: the target is the online network itself (SimSiam)."""


#: method name → fixed options; ``build(method, ...)`` merges user options on top.
METHODS = {
    "simsiam": dict(loss="simsiam"),
    # Tian et al. 2021 as published: EMA correlation ρ = 0.3, ω = √(λ/λ_max) + ε, ε = 0.1
    "directpred": dict(loss="simsiam", alpha=0.5, normalize=True, eps=0.1, boost="after", corr_ema=0.3),
    # DirectSet(α): W_P = F^α, no normalisation or boost (Tian et al. 2021)
    "directset": dict(loss="simsiam"),
    # DirectCopy (Wang et al. 2021): W_P = F/‖F‖ + εI; ε = 0.25 as in the IsoLoss authors' runs
    "directcopy": dict(loss="simsiam", predictor="copy", eps=0.25),
    "isoloss": dict(loss="isoloss"),
}


_OPTIONS = {"loss", "form", "stop_grad", "alpha", "eps", "normalize", "boost", "corr_ema",
            "predictor", "copy_norm", "update_every", "tau", "weight_decay"}


def build(method: str, encoder: nn.Module, embed_dim: int, **options) -> ClosedFormSiamese:
    """Adapter-protocol constructor: a learner for ``method`` around ``encoder``."""
    _checks.choice("method", method, set(METHODS))
    if not (isinstance(embed_dim, int) and embed_dim > 0):
        raise ValueError(f"embed_dim must be a positive int, got {embed_dim!r}; pass the encoder's "
                         f"output dimension M.")
    W = getattr(encoder, "W", None)
    if isinstance(encoder, LinearEncoder) and W.shape[-2] != embed_dim:
        raise ValueError(f"embed_dim = {embed_dim} does not match the encoder's output dimension "
                         f"M = {W.shape[-2]} (W has shape {tuple(W.shape)}); pass "
                         f"embed_dim={W.shape[-2]}.")
    unknown = sorted(set(options) - _OPTIONS)
    if unknown:
        raise TypeError(f"unknown option(s) {unknown} for build({method!r}, ...); valid options "
                        f"are {sorted(_OPTIONS)}.")
    return ClosedFormSiamese(encoder, **{**METHODS[method], **options})
