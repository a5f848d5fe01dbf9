"""The center-vector family (Jha et al. 2024): SimSiam with an MLP predictor and L_Simple.

Both learners wrap a replica-batched encoder (``ncspec.reference.encoders.MLPEncoder``:
views (..., B, N) → embeddings (S, B, M)) and follow the adapter protocol:
``parameters()``, ``loss(view1, view2)`` → scalar (per-replica losses summed, so
each replica gets exactly its own gradient), ``after_step()``.

Notation (Jha et al. 2024): ``ẑ = z/‖z‖``; center ``s = E_x E_ω ẑ``; residual
``r_x = E_ω ẑ(ω(x)) − s``. J1 (exact): ``E‖ẑ − ẑ′‖² = 2 − 2‖s‖² − 2E‖r_x‖²``, so
an invariance-only loss rewards ``‖s‖ → 1`` (complete collapse).

* :class:`SimSiamMLP` — SimSiam (Chen & He 2021, Alg. 1): ``½D(p1, SG(z2)) +
  ½D(p2, SG(z1))``, ``D = −cos``, predictor ``h`` = Linear–BN–ReLU–Linear. The
  ablations of the paper's Fig. 4: ``predictor=False`` (``p = z``) and
  ``stop_grad="none"``.
* :class:`LSimple` — invariance plus a center-vector penalty (Jha et al. 2024, Fig. 3).
  The paper's formula ``L_Simple(f) = 0.5 (L(f) − λ_L s)`` does not say which norm of
  ``s`` it penalises, nor its sign (an open form, docs/theory.md). Chosen form::

      L_Simple = ½ E_x ‖ẑ1 − ẑ2‖² + λ ‖s‖²,    s = mean over the batch and both views of ẑ

  By J1 (population) ``½E‖ẑ − ẑ′‖² = 1 − ‖s‖² − E‖r_x‖²``, so
  ``L_Simple = 1 + (λ − 1)‖s‖² − E‖r_x‖²``: λ = 1 leaves exactly "maximise the
  residual" (= ½ the J4 triplet loss + const), λ > 1 adds a net push of ``s``
  towards 0, λ < 1 (or a flipped sign) rewards ``‖s‖ → 1``. ``penalty="norm"``
  uses ``λ‖s‖`` instead (the paper's ``s`` read as a norm); the default λ = 2
  makes the net center term positive for both readings.
"""
from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn

from .. import _checks
from ..encoders import MLP, embed_pair, encoder_dtype, make_build, replica_shape, unit
from ..losses import SG, symmetrised


def neg_cos(p: Tensor, z: Tensor) -> Tensor:
    """``D(p, z) = −cos(p, z)`` averaged over the batch: (..., B, M) → (...)."""
    return -(unit(p) * unit(z)).sum(-1).mean(-1)


class SimSiamMLP:
    """SimSiam with a learned MLP predictor (Chen & He 2021, eq. 1–2 and Alg. 1).

    ``L = ½ D(p1, SG(z2)) + ½ D(p2, SG(z1))``, ``p = h(z)``, ``D = −cos``.

    Args:
        encoder: replica-batched encoder, views → (S, B, M).
        embed_dim: M.
        predictor: ``True`` for ``h`` = Linear(M, H)–BN–ReLU–Linear(H, M); ``False`` for the
            "no predictor" ablation (``p = z``; Jha et al. 2024, Fig. 4, red).
        stop_grad: ``"target"`` (SimSiam) or ``"none"`` (ablation; Fig. 4, pink).
        pred_hidden: H (SimSiam uses a bottleneck, M/4 of 2048; default ``max(M // 2, 8)``).
        seed: initialisation of the predictor.
    """

    def __init__(self, encoder: nn.Module, embed_dim: int, *, predictor: bool = True,
                 stop_grad: str = "target", pred_hidden: int | None = None, seed: int = 0):
        if not isinstance(predictor, bool):
            raise TypeError(f"predictor must be True or False, got {predictor!r}.")
        _checks.choice("stop_grad", stop_grad, {"target", "none"})
        H = max(embed_dim // 2, 8) if pred_hidden is None else _checks.positive_int(
            "pred_hidden", pred_hidden, hint="the predictor's hidden width, e.g. 8.")
        self.encoder, self.M, self.stop_grad = encoder, embed_dim, stop_grad
        S = replica_shape(encoder)
        self.h = (MLP((embed_dim, H, embed_dim), replicas=S[0] if S else 1, batchnorm=True,
                      generator=torch.Generator().manual_seed(seed), dtype=encoder_dtype(encoder))
                  if predictor else None)

    @property
    def predictor(self) -> nn.Module | None:
        """The predictor ``h`` (None in the no-predictor ablation): the head the adapter contract names."""
        return self.h

    def parameters(self) -> Iterable[Tensor]:
        yield from self.encoder.parameters()
        if self.h is not None:
            yield from self.h.parameters()

    def loss(self, view1: Tensor, view2: Tensor) -> Tensor:
        z1, z2 = embed_pair(self.encoder, view1, view2, self.M, min_batch=2 if self.h is not None else 1)
        p1, p2 = (z1, z2) if self.h is None else (self.h(z1), self.h(z2))
        t1, t2 = (SG(z1), SG(z2)) if self.stop_grad == "target" else (z1, z2)
        return symmetrised(neg_cos, p1, p2, t1, t2).sum()

    def after_step(self) -> None:
        """Nothing to refresh: the target is the online network itself."""


class LSimple:
    """``L_Simple = ½ mean_B ‖ẑ1 − ẑ2‖² + λ ‖s‖²`` (module docstring; claim J3, an open form).

    Args:
        encoder, embed_dim: as for :class:`SimSiamMLP`.
        lam: λ ≥ 0, weight of the center penalty (default 2; see the module docstring).
        penalty: ``"squared"`` (``λ‖s‖²``) or ``"norm"`` (``λ‖s‖``).

    ``s`` is the batch estimate ``mean over B and both views of ẑ``, with gradient.
    """

    def __init__(self, encoder: nn.Module, embed_dim: int, *, lam: float = 2.0, penalty: str = "squared"):
        self.lam = _checks.non_negative("lam", lam, hint="λ > 1 gives a net penalty on ‖s‖ (J1); "
                                        "the default is 2.")
        _checks.choice("penalty", penalty, {"squared", "norm"})
        self.encoder, self.M, self.penalty = encoder, embed_dim, penalty

    def parameters(self) -> Iterable[Tensor]:
        return self.encoder.parameters()

    def center(self, z1: Tensor, z2: Tensor) -> Tensor:
        """``s`` (..., M): mean over the batch and both views of the unit embeddings."""
        return 0.5 * (unit(z1).mean(-2) + unit(z2).mean(-2))

    def loss(self, view1: Tensor, view2: Tensor) -> Tensor:
        z1, z2 = embed_pair(self.encoder, view1, view2, self.M)
        invariance = 0.5 * (unit(z1) - unit(z2)).pow(2).sum(-1).mean(-1)
        s = self.center(z1, z2)
        pen = s.pow(2).sum(-1) if self.penalty == "squared" else s.norm(dim=-1)
        return (invariance + self.lam * pen).sum()

    def after_step(self) -> None:
        """Nothing to refresh."""


#: method name → (learner class, fixed options); ``build`` merges user options on top.
METHODS = {
    "simsiam_mlp": (SimSiamMLP, {}),
    "lsimple": (LSimple, {}),
}
OPTIONS = {"SimSiamMLP": {"predictor", "stop_grad", "pred_hidden", "seed"},
           "LSimple": {"lam", "penalty"}}
build = make_build(METHODS, OPTIONS)
