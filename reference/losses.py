"""Siamese losses, and where their stop-gradient sits.

Notation of Halvagal, Laborieux & Zenke (2022): online embedding ``z1``,
target embedding ``z2``, predictor ``W_P`` (symmetric, M×M), prediction
``p = W_P z1``, stop-gradient ``SG(·)`` = ``.detach()``.

Shapes: ``z1, z2`` are ``(..., B, M)`` (leading dimensions are independent
replicas, e.g. seeds), ``W_P`` is ``(..., M, M)``. Every loss averages over the
batch ``B`` and returns one value per replica, shape ``(...)``.

Each formula is written once, as an unchecked kernel (``*_kernel``: no input
validation, no host synchronisation, for hot loops such as the vision learners);
the public loss of the same name validates its inputs and calls the kernel.
"""
from __future__ import annotations

from torch import Tensor

from . import _checks
from .vectors import unit


def SG(x: Tensor) -> Tensor:
    """Stop-gradient: the value of ``x``, with no gradient flowing back."""
    _checks.tensor("x", x)
    return x.detach()


def predict(z: Tensor, W_P: Tensor) -> Tensor:
    """``p = W_P z`` applied to every row of ``z`` (..., B, M)."""
    _checks.tensor("z", z, min_dim=1, layout="(..., M)")
    _checks.square("W_P", W_P)
    _checks.embeddings_match_predictor(z, W_P)
    return _predict(z, W_P)


def _predict(z: Tensor, W_P: Tensor) -> Tensor:
    return z @ W_P.transpose(-1, -2)


def half_sq(a: Tensor, b: Tensor) -> Tensor:
    """``½‖a − b‖²`` averaged over the batch: (..., B, M) → (...). Unchecked."""
    return 0.5 * (a - b).pow(2).sum(-1).mean(-1)



def simsiam_kernel(z1: Tensor, z2: Tensor, W_P: Tensor) -> Tensor:
    """Eq. 2 without input checks: ``½‖W_P z1 − SG(z2)‖²``."""
    return half_sq(_predict(z1, W_P), z2.detach())


def isoloss_kernel(z1: Tensor, z2: Tensor, W_P: Tensor) -> Tensor:
    """Eq. 8 without input checks: ``½‖z1 − SG(z2 + z1 − W_P z1)‖²``."""
    return half_sq(z1, (z2 + z1 - _predict(z1, W_P)).detach())


def neg_cosine_kernel(a: Tensor, b: Tensor) -> Tensor:
    """``−cos(a, b)`` averaged over the batch, without input checks."""
    return -(unit(a) * unit(b)).sum(-1).mean(-1)


def symmetrised(D, p1: Tensor, p2: Tensor, t1: Tensor, t2: Tensor) -> Tensor:
    """``½[D(p1, t2) + D(p2, t1)]`` (Chen & He 2021, eq. 2; Grill et al. 2020, L + L̃ up to the ½): the
    symmetrised loss of a distance ``D`` (e.g. :func:`neg_cosine_kernel`), (..., B, M) → (...). The caller puts
    SG(·) on the targets ``t``. Unchecked."""
    return 0.5 * D(p1, t2) + 0.5 * D(p2, t1)


def cosine_simsiam_kernel(z1: Tensor, z2: Tensor, W_P: Tensor) -> Tensor:
    """``−cos(W_P z1, SG(z2))`` without input checks."""
    return neg_cosine_kernel(_predict(z1, W_P), z2.detach())


def cosine_isoloss_kernel(z1: Tensor, z2: Tensor, W_P: Tensor) -> Tensor:
    """The cosine-IsoLoss surrogate of :func:`cosine_isoloss`, without input checks."""
    z2n = unit(z2).detach()
    p = _predict(z1, W_P).detach()
    p_norm = p.norm(dim=-1)
    pz = (p * z2n).sum(-1)
    quad = (z1 * _predict(z1, W_P.detach())).sum(-1)
    surrogate = -((z1 * z2n).sum(-1) / p_norm - 0.5 * pz / p_norm ** 3 * quad).mean(-1)
    value = -(unit(p) * z2n).sum(-1).mean(-1)
    return surrogate + (value - surrogate).detach()


_NONFINITE = ("the embeddings and the predictor must be finite for the loss to be defined; "
              "the encoder weights or the views hold NaN/inf (a diverged run: lower the "
              "learning rate), or W_P was not built by ncspec.reference.predictors.eigen_predictor "
              "from a finite correlation.")


def _check(z1: Tensor, z2: Tensor, W_P: Tensor) -> None:
    _checks.tensor("z1", z1, min_dim=2, layout="(..., B, M)")
    _checks.tensor("z2", z2, min_dim=2, layout="(..., B, M)")
    _checks.same_shape("z1", z1, "z2", z2)
    _checks.nonempty_batch("z1", z1)
    _checks.square("W_P", W_P)
    _checks.embeddings_match_predictor(z1, W_P)
    _checks.all_finite((("z1", z1), ("z2", z2), ("W_P", W_P)), hint=_NONFINITE)


# --- Euclidean forms (Halvagal et al. 2022, eqs. 2, 6, 7, 8) ----------------

def simsiam(z1: Tensor, z2: Tensor, W_P: Tensor) -> Tensor:
    """Eq. 2: ``½‖W_P z1 − SG(z2)‖²`` (SimSiam / BYOL / DirectPred)."""
    _check(z1, z2, W_P)
    return simsiam_kernel(z1, z2, W_P)


def no_stopgrad(z1: Tensor, z2: Tensor, W_P: Tensor) -> Tensor:
    """Eq. 6: ``½‖W_P z1 − z2‖²`` — gradients flow through both branches."""
    _check(z1, z2, W_P)
    return half_sq(predict(z1, W_P), z2)


def wrong_side(z1: Tensor, z2: Tensor, W_P: Tensor) -> Tensor:
    """Eq. 7: ``½‖SG(W_P z1) − z2‖²`` — the stop-grad on the online branch."""
    _check(z1, z2, W_P)
    return half_sq(SG(predict(z1, W_P)), z2)


def isoloss(z1: Tensor, z2: Tensor, W_P: Tensor) -> Tensor:
    """Eq. 8: ``½‖z1 − SG(z2 + z1 − W_P z1)‖²`` (IsoLoss).

    Same value as :func:`simsiam`; its gradient w.r.t. ``z1`` is ``W_P z1 − z2``,
    the SimSiam gradient w.r.t. ``p`` — the factor ``W_P`` is gone (claim H4).
    """
    _check(z1, z2, W_P)
    return isoloss_kernel(z1, z2, W_P)


# --- Cosine forms (Halvagal et al. 2023; claim H6) ---------------------------

def neg_cosine(a: Tensor, b: Tensor) -> Tensor:
    """``−cos(a, b)`` averaged over the batch, shape ``(...)``."""
    _checks.tensor("a", a, min_dim=2, layout="(..., B, M)")
    _checks.tensor("b", b, min_dim=2, layout="(..., B, M)")
    if a.shape[-1] != b.shape[-1] or not _checks._broadcastable(tuple(a.shape), tuple(b.shape)):
        raise ValueError(f"a and b must have the same (or broadcastable) shape (..., B, M), got "
                         f"{tuple(a.shape)} and {tuple(b.shape)}; pass a prediction and a target "
                         f"computed from the same batch.")
    return neg_cosine_kernel(a, b)


def cosine_simsiam(z1: Tensor, z2: Tensor, W_P: Tensor) -> Tensor:
    """``−cos(W_P z1, SG(z2))`` — the form SimSiam and BYOL ship."""
    _check(z1, z2, W_P)
    return cosine_simsiam_kernel(z1, z2, W_P)


def cosine_no_stopgrad(z1: Tensor, z2: Tensor, W_P: Tensor) -> Tensor:
    """``−cos(W_P z1, z2)``."""
    _check(z1, z2, W_P)
    return neg_cosine(predict(z1, W_P), z2)


def cosine_wrong_side(z1: Tensor, z2: Tensor, W_P: Tensor) -> Tensor:
    """``−cos(SG(W_P z1), z2)``."""
    _check(z1, z2, W_P)
    return neg_cosine(SG(predict(z1, W_P)), z2)


def cosine_isoloss(z1: Tensor, z2: Tensor, W_P: Tensor) -> Tensor:
    """Cosine IsoLoss: gradient w.r.t. ``z1`` equals ``∇_p −cos(p, SG(z2))``.

    The surrogate is (Halvagal et al. 2023; the authors' code writes it with a factor 2)::

        ℓ = −[ z1ᵀ SG(ẑ2) / SG(‖p‖) − ½ SG(pᵀẑ2 / ‖p‖³) · z1ᵀ SG(W_P) z1 ]

    whose gradient is ``−(ẑ2 − (p̂ᵀẑ2) p̂)/‖p‖`` because ``∇ ½ z1ᵀ W_P z1 = p``.
    We add ``SG(−cos(p, z2) − ℓ)`` so that the *value* is the cosine loss too
    (same reading in a log as :func:`cosine_simsiam`); the gradient is unchanged.
    """
    _check(z1, z2, W_P)
    return cosine_isoloss_kernel(z1, z2, W_P)


#: (form, stop_grad) → loss; ``stop_grad`` is the branch the SG(·) sits on.
SIMSIAM = {
    ("euclidean", "target"): simsiam,
    ("euclidean", "none"): no_stopgrad,
    ("euclidean", "online"): wrong_side,
    ("cosine", "target"): cosine_simsiam,
    ("cosine", "none"): cosine_no_stopgrad,
    ("cosine", "online"): cosine_wrong_side,
}
ISOLOSS = {"euclidean": isoloss, "cosine": cosine_isoloss}
