"""The EMA target as a whole, and the momentum each update used (claims C2, C9, N6).

A lab's BYOL keeps a target *network*: ``target_encoder`` and ``target_projector``, each the EMA of its online
counterpart (``encoder``, ``projector``), tensor by tensor. The recursion ``ξ_k = m_k ξ_{k−1} + (1 − m_k) θ_k``
(Grill et al. 2020, §3.1) is checked on every one of those tensors, with ``m_k``

* **declared** — ``conventions["momentum_schedule"]`` (``"cosine"``: BYOL's §3.2 schedule, ``"linear"``,
  ``"constant"``): the harness passes the run length ``total_steps`` to ``build`` and predicts ``m_k`` with
  :func:`ncspec.reference.methods.learned.scheduled_momentum`;
* **exposed** — the learner's ``momentum`` after ``after_step()``;
* **fitted** — otherwise, from the update itself: ``1 − m_k = ⟨ξ_k − ξ_{k−1}, θ_k − ξ_{k−1}⟩ / ‖θ_k − ξ_{k−1}‖²``
  (least squares over every tensor of the target), so a schedule the harness was not told about is measured,
  not mistaken for a wrong momentum.
"""
from __future__ import annotations

import torch
from ncspec.conformance.contract import conventions
from ncspec.reference.methods.learned import scheduled_momentum
from torch import Tensor

#: (target attribute, online attribute): the parts of an EMA target a learner may expose
PARTS = (("target_encoder", "encoder"), ("target_projector", "projector"))


def schedule_of(impl, method: str = "byol") -> str | None:
    """The declared momentum schedule of ``method`` (None when the adapter declares none)."""
    return conventions.for_method(impl, method).get("momentum_schedule")


def build_options(impl, momentum: float, total_steps: int) -> dict:
    """BYOL's options: the momentum, and the run length where a schedule is declared (it needs it)."""
    return dict(momentum=momentum, **({"total_steps": total_steps} if schedule_of(impl) else {}))


def target_pairs(learner) -> list[tuple[str, Tensor, Tensor]]:
    """``(name, target tensor, online tensor)`` for every parameter of every exposed target part."""
    out = []
    for t_name, o_name in PARTS:
        target, online = getattr(learner, t_name, None), getattr(learner, o_name, None)
        if target is None:
            continue
        assert online is not None, (f"the learner exposes `{t_name}` but not its online counterpart `{o_name}`: "
                                    f"expose both, so the EMA can be checked tensor by tensor")
        tp, op = list(target.named_parameters()), list(online.named_parameters())
        assert [(n, p.shape) for n, p in tp] == [(n, p.shape) for n, p in op], (
            f"`{t_name}` and `{o_name}` do not hold the same tensors ({[n for n, _ in tp]} vs {[n for n, _ in op]}): "
            f"the target must be a copy of the online part")
        out += [(f"{t_name}.{n}", t, o) for (n, t), (_, o) in zip(tp, op)]
    return out


def buffer_pairs(learner) -> list[tuple[Tensor, Tensor]]:
    """(target, online) floating-point buffers (BatchNorm's running statistics) of every exposed target part."""
    out = []
    for t_name, o_name in PARTS:
        target, online = getattr(learner, t_name, None), getattr(learner, o_name, None)
        if target is None or online is None:
            continue
        out += [(t, o) for t, o in zip(target.buffers(), online.buffers()) if t.is_floating_point()]
    return out


def snapshot(tensors) -> list[Tensor]:
    return [t.detach().to(torch.float64).clone() for t in tensors]


def fitted_momentum(previous: list[Tensor], now: list[Tensor], online: list[Tensor]) -> tuple[float, float]:
    """(m, its rounding bound): the least-squares ``m`` of ``now = m·previous + (1 − m)·online`` over all tensors.

    The bound: each element of ``now`` carries up to one rounding ``eps·|ξ|`` of its dtype, so the fitted
    ``1 − m`` moves by at most ``eps‖ξ‖/‖θ − ξ‖`` (the error projected on the direction ``θ − ξ``); ×4 for the
    update's two products and sum (``eps`` is the caller's, see :func:`rounding_bound`)."""
    d = torch.cat([(o - p).reshape(-1) for p, o in zip(previous, online)])
    u = torch.cat([(n - p).reshape(-1) for p, n in zip(previous, now)])
    dd = float(d @ d)
    if dd == 0.0:
        return float("nan"), float("inf")
    xi = float(torch.cat([n.reshape(-1) for n in now]).norm())
    return 1.0 - float(u @ d) / dd, xi / dd ** 0.5


def one_step_error(previous: list[Tensor], now: list[Tensor], online: list[Tensor], m: float) -> float:
    """max relative error of ``now`` against ``m·previous + (1 − m)·online`` (all float64)."""
    return max(_rel(n, m * p + (1 - m) * o) for p, n, o in zip(previous, now, online))


def one_step_ratio(previous: list[Tensor], now: list[Tensor], online: list[Tensor], m: float, eps: float,
                   m_tol: float) -> tuple[float, float]:
    """(max relative error, max error/bound) of ``now`` against one step with a *fitted* ``m``, tensor by tensor.

    The bound of tensor t: 4·eps (the update's rounding in the target's dtype) plus what the fitted m's own
    uncertainty ``m_tol`` moves it, ``m_tol·‖θ_t − ξ_t‖/‖ξ_t‖`` — one global m is fitted over every tensor, so a tensor
    whose update is small against its size (a slowly moving bias) is judged at its own scale."""
    worst, ratio = 0.0, 0.0
    for p, n, o in zip(previous, now, online):
        pred = m * p + (1 - m) * o
        err = _rel(n, pred)
        bound = 4 * eps + m_tol * float((o - p).norm() / pred.norm().clamp_min(1e-300))
        worst, ratio = max(worst, err), max(ratio, err / bound)
    return worst, ratio


def predicted_momentum(schedule: str, m: float, k: int, K: int) -> float:
    return scheduled_momentum(schedule, m, k, K)


def lowest_precision(tensors) -> torch.dtype:
    return min((t.dtype for t in tensors), key=lambda d: torch.finfo(d).bits, default=torch.float64)


def moved_during(before: list[Tensor], tensors) -> bool:
    return any(not torch.equal(b, t.detach().to(torch.float64)) for b, t in zip(before, tensors))


def _rel(a: Tensor, b: Tensor) -> float:
    return float((a - b).norm() / b.norm().clamp_min(1e-300))


def momentum_trouble(used: list[float], momentum: float, m_tol: float) -> str:
    """What is wrong with a fitted momentum sequence ('' if nothing): it must start at the declared ``momentum``
    (within ``m_tol`` and the first update of a schedule with a run of ≥ 10 steps: 10 % of ``1 − momentum``) and
    never decrease (beyond twice its rounding bound)."""
    if not used:
        return ""
    first = used[0]
    if abs(first - momentum) > m_tol + 0.1 * (1 - momentum):
        return f"the first update used m = {first:.6g}, not the declared momentum {momentum}: " + cause(first, momentum)
    for k, (a, b) in enumerate(zip(used, used[1:])):
        if b < a - 2 * m_tol:
            return (f"the momentum decreased from {a:.6g} to {b:.6g} at update {k + 2}: a momentum schedule must be "
                    f"non-decreasing (BYOL's rises from m to 1, Grill et al. 2020, §3.2)")
    return ""


def cause(m: float, momentum: float) -> str:
    """The likely bug behind an update that used ``m`` instead of ``momentum``."""
    if abs(m) < 1e-3:
        return "the target is a copy of the online weights (m = 0: the update copies θ instead of averaging)."
    if abs(m - (1 - momentum)) < 1e-3:
        return "m and 1 − m are swapped."
    if abs(1 - m) < 1e-9:
        return "the target did not move (m = 1: the update is skipped, or a schedule that starts at 1)."
    return ("a momentum schedule? declare conventions = {'momentum_schedule': 'cosine' | 'linear'} and accept "
            "total_steps, or expose the momentum used as `learner.momentum`.")
