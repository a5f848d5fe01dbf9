"""Siamese learners with a *learned* linear predictor: BYOL and the Tian et al. model.

Tian, Chen & Ganguli (2021) and Wang et al. (2021) analyse::

    J = ½ E‖W_p W x1 − SG(W_a x2)‖²
    Ẇ   = −∇_W J − η W
    Ẇ_p = −α_p ∇_{W_p} J − η W_p          (predictor learning-rate ratio α_p)
    Ẇ_a = β (W − W_a)                     (EMA target; or W_a = τ W)

A plain gradient step ``θ ← θ − lr ∇θ loss`` on this learner reproduces that
flow: ``loss = J + (η/2)‖W‖² + (η/2α_p)‖W_p‖²`` and a gradient hook multiplies
the predictor's gradient by ``α_p`` (so ``∇_{W_p} = α_p ∇J + η W_p``). Weight
decay η acts on both W and W_p — the convention under which claim T1 holds.
"""
from __future__ import annotations

import copy
import math
from collections.abc import Iterable

import torch
from torch import Tensor, nn

from .. import _checks
from ..losses import SG

#: the EMA momentum schedules: m_k at update k = 0 … K − 1 of a K-step run, from m (the ``momentum`` option) to 1
SCHEDULES = ("constant", "cosine", "linear")


def scheduled_momentum(schedule: str, m: float, k: int, K: int | None, m_final: float = 1.0) -> float:
    """The EMA momentum of update ``k`` (0-based) of a ``K``-update run.

    ``"cosine"``: BYOL's ``m_k = 1 − (1 − m)(cos(πk/K) + 1)/2`` (Grill et al., NeurIPS 2020, §3.2; written
    with ``m_final`` in place of 1); ``"linear"``: a linear warm-up ``m_k = m + (m_final − m)·k/K``; both
    start at ``m`` and reach ``m_final`` at ``k = K``. ``"constant"``: ``m``.
    """
    _checks.choice("momentum_schedule", schedule, set(SCHEDULES))
    if schedule == "constant":
        return m
    if not (isinstance(K, int) and K >= 1):
        raise ValueError(f"momentum_schedule={schedule!r} needs the run length: total_steps must be an integer ≥ 1, "
                         f"got {K!r}.")
    t = min(k, K) / K
    if schedule == "cosine":
        return m_final - (m_final - m) * (math.cos(math.pi * t) + 1) / 2
    return m + (m_final - m) * t


class LearnedPredictorSiamese:
    """``loss(x1, x2)`` = J (+ weight decay) with a learned ``W_p`` (…, M, M).

    Args:
        encoder: maps views (..., B, N) to embeddings (..., B, M).
        embed_dim: M.
        target: ``"online"`` (``W_a = τW``, SimSiam-style) or ``"ema"`` (a copy of the
            encoder updated as ``θ_a ← m θ_a + (1−m) θ`` in ``after_step``; BYOL).
        stop_grad: ``"target"`` (correct) or ``"none"`` (gradient also flows through the
            target branch; only with ``target="online"``, claim T5).
        alpha_p: predictor learning-rate ratio.
        weight_decay: η on W and W_p.
        symmetric: parametrise ``W_p = ½(V + Vᵀ)`` (Tian et al.'s symmetric predictor).
        predictor_init: initial ``W_p``; default ``½ I`` (one per encoder replica).
        tau: target scale for ``target="online"``.
        momentum: m of the EMA target (its first update's, under a schedule).
        momentum_schedule: ``"constant"``, ``"cosine"`` (BYOL) or ``"linear"``: see :func:`scheduled_momentum`.
        total_steps: K, the run's number of updates (needed by a schedule).
        target_init: the EMA target starts at ``target_init · θ``.
        tau_schedule: ``step → τ`` for ``target="online"`` (T6: a target scale that starts
            small and grows is a curriculum); overrides ``tau``.
        predictor: ``False`` removes the predictor (``p = z``, ``W_p = I`` fixed, not a parameter): the
            ablation of Grill et al. 2020, §5 (Table 5), under which BYOL collapses.
    """

    def __init__(self, encoder: nn.Module, embed_dim: int, *, target: str = "online",
                 stop_grad: str = "target", alpha_p: float = 1.0, weight_decay: float = 0.0,
                 symmetric: bool = False, predictor_init: Tensor | None = None, tau: float = 1.0,
                 momentum: float = 0.996, target_init: float = 1.0, tau_schedule=None, predictor: bool = True,
                 momentum_schedule: str = "constant", total_steps: int | None = None):
        _checks.choice("target", target, {"online", "ema"})
        _checks.choice("stop_grad", stop_grad, {"target", "none"})
        _checks.positive("alpha_p", alpha_p, hint="the predictor's learning rate is α_p times the encoder's.")
        _checks.non_negative("weight_decay", weight_decay, hint="0 disables weight decay.")
        _checks.positive("tau", tau, hint="the target is τ·SG(W x2); SimSiam uses 1.")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must lie in [0, 1), got {momentum!r}; BYOL uses 0.996.")
        if stop_grad == "none" and target == "ema":
            raise ValueError("stop_grad='none' needs target='online': an EMA target has no gradient path.")
        self.encoder, self.M = encoder, embed_dim
        self.target, self.stop_grad = target, stop_grad
        self.alpha_p, self.weight_decay, self.symmetric = float(alpha_p), float(weight_decay), symmetric
        self.tau, self.base_momentum, self.momentum = float(tau), float(momentum), float(momentum)
        scheduled_momentum(momentum_schedule, self.momentum, 0, total_steps)      # a bad schedule fails here
        self.momentum_schedule, self.total_steps = momentum_schedule, total_steps
        if tau_schedule is not None and not callable(tau_schedule):
            raise TypeError(f"tau_schedule must be a callable step -> tau, got {type(tau_schedule).__name__}.")
        self.tau_schedule, self.step = tau_schedule, 0
        if predictor_init is None:
            W = getattr(encoder, "W", None)
            lead = tuple(W.shape[:-2]) if isinstance(W, Tensor) else ()
            predictor_init = 0.5 * torch.eye(embed_dim, dtype=W.dtype if W is not None else torch.float32
                                             ).expand(*lead, embed_dim, embed_dim)
        _checks.square("predictor_init", predictor_init)
        if predictor_init.shape[-1] != embed_dim:
            raise ValueError(f"predictor_init must be (..., {embed_dim}, {embed_dim}), got "
                             f"{tuple(predictor_init.shape)}.")
        if not isinstance(predictor, bool):
            raise TypeError(f"predictor must be True or False, got {predictor!r}.")
        self.predictor = predictor
        if predictor:
            self.V = nn.Parameter(predictor_init.detach().clone())
            self.V.register_hook(lambda g: self.alpha_p * g)
        else:                                # p = z: W_p is the identity, fixed
            self.V = torch.eye(embed_dim, dtype=predictor_init.dtype).expand_as(predictor_init).clone()
        self.target_encoder = None
        if target == "ema":
            self.target_encoder = copy.deepcopy(encoder)
            for p in self.target_encoder.parameters():
                p.requires_grad_(False)
                p.mul_(target_init)

    @property
    def W_p(self) -> Tensor:
        return 0.5 * (self.V + self.V.transpose(-1, -2)) if self.symmetric else self.V

    def parameters(self) -> Iterable[Tensor]:
        yield from self.encoder.parameters()
        if self.predictor:
            yield self.V

    def loss(self, view1: Tensor, view2: Tensor) -> Tensor:
        _checks.same_shape("view1", view1, "view2", view2)
        z1 = self.encoder(view1)
        if self.target == "ema":
            with torch.no_grad():
                za = self.target_encoder(view2)
        else:
            tau = self.tau if self.tau_schedule is None else float(self.tau_schedule(self.step))
            za = tau * self.encoder(view2)
            if self.stop_grad == "target":
                za = SG(za)
        W_p = self.W_p.to(z1.device)
        p = z1 @ W_p.transpose(-1, -2) if self.predictor else z1
        J = 0.5 * (p - za).pow(2).sum(-1).mean(-1).sum()
        if self.weight_decay:
            enc_sq = sum(q.pow(2).sum() for q in self.encoder.parameters())
            J = J + 0.5 * self.weight_decay * (enc_sq + (W_p.pow(2).sum() / self.alpha_p if self.predictor else 0))
        return J

    def after_step(self) -> None:
        """EMA target: ``θ_a ← m θ_a + (1 − m) θ`` (m = 1 − β·lr for the flow ``Ẇ_a = β(W − W_a)``); ``m`` is
        the scheduled momentum of this update (:func:`scheduled_momentum`), kept as ``self.momentum``."""
        k, self.step = self.step, self.step + 1
        if self.target_encoder is None:
            return
        self.momentum = scheduled_momentum(self.momentum_schedule, self.base_momentum, k, self.total_steps)
        with torch.no_grad():
            for pa, po in zip(self.target_encoder.parameters(), self.encoder.parameters()):
                pa.mul_(self.momentum).add_(po, alpha=1.0 - self.momentum)


LEARNED_METHODS = {
    "byol": dict(target="ema"),
    "learned_predictor": dict(target="online"),
}
