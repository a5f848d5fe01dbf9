"""Fixed-step integration and Jacobians of vector fields on states that are tuples of arrays.

A *state* is a tuple of tensors (e.g. ``(A, B)`` of the dual model, :mod:`ncspec.reference.dual`), replicas on
leading dimensions; a *field* maps a state to a velocity tuple of the same shapes. :func:`integrate` runs RK4
(:func:`rk4_step`, also used by the figures) or Euler; :func:`fd_jacobian` differentiates an opaque field by
Richardson-extrapolated central differences and :func:`refine_equilibrium` polishes its equilibria.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from . import _checks


@dataclass
class Path:
    """A recorded solution: ``t`` (K,), ``states`` a tuple of (K, ...) tensors."""

    t: Tensor
    states: tuple

    @property
    def final(self) -> tuple:
        return tuple(s[-1] for s in self.states)


def _axpy(state, a, vel):
    return tuple(s + a * v for s, v in zip(state, vel))


def rk4_step(f, s: tuple, dt: float) -> tuple:
    """One classical Runge–Kutta step of ``ṡ = f(s)`` on a tuple of arrays (tensors or numpy)."""
    k1 = f(s)
    k2 = f(_axpy(s, 0.5 * dt, k1))
    k3 = f(_axpy(s, 0.5 * dt, k2))
    k4 = f(_axpy(s, dt, k3))
    return tuple(x + dt / 6.0 * (a + 2 * b + 2 * c + d) for x, a, b, c, d in zip(s, k1, k2, k3, k4))


def _euler_step(f, s, dt):
    return _axpy(s, dt, f(s))


INTEGRATORS = {"euler": _euler_step, "rk4": rk4_step}


def integrate(f: Callable[[tuple], tuple], state: tuple, *, dt: float, steps: int, method: str = "rk4",
              record_every: int | None = None) -> Path:
    """Integrate ``ṡ = f(s)`` from ``state`` with ``steps`` fixed steps of size ``dt``.

    ``f`` maps a state tuple to a velocity tuple of the same shapes (e.g. :func:`ncspec.reference.dual.field`, or
    an adapter's learner wrapped as a field); replicas on leading dimensions are integrated together.
    Records every ``record_every`` steps (default: only the start and the end) and the last step.
    Raises ``FloatingPointError`` if the solution stops being finite.
    """
    _checks.choice("method", method, set(INTEGRATORS))
    _checks.positive("dt", dt, hint="dt is the time step; e.g. dt=0.05.")
    if not (isinstance(steps, int) and not isinstance(steps, bool) and steps >= 0):
        raise ValueError(f"steps must be an int >= 0, got {steps!r}.")
    if record_every is None:
        record_every = max(steps, 1)
    _checks.positive_int("record_every", record_every)
    if not (isinstance(state, (tuple, list)) and state and all(isinstance(s, Tensor) for s in state)):
        raise TypeError(f"state must be a non-empty tuple of tensors, e.g. (A, B), got {type(state).__name__}.")
    step = INTEGRATORS[method]
    s = tuple(x.detach() for x in state)
    rec_t, rec = [0.0], [s]
    check_every = max(1, min(record_every, 200))
    for k in range(1, steps + 1):
        s = step(f, s, dt)
        if (k % check_every == 0 or k == steps) and not all(math.isfinite(x.sum().item()) for x in s):
            raise FloatingPointError(f"the solution became non-finite between steps {k - check_every} and {k} "
                                     f"(t ≈ {k * dt:.4g}): it diverged or dt = {dt} is too large for this "
                                     f"stiffness; lower dt or the initial scale.")
        if k % record_every == 0 or k == steps:
            rec_t.append(k * dt)
            rec.append(s)
    t = torch.tensor(rec_t, dtype=torch.float64)
    return Path(t=t, states=tuple(torch.stack([r[i] for r in rec]) for i in range(len(s))))


# ----------------------------------------------------------------------------- flattening and Jacobians
def flatten(state: tuple, batch_dims: int = 0) -> Tensor:
    """Concatenate the state's matrices into one vector per replica: (*batch, D)."""
    lead = tuple(state[0].shape[:batch_dims])
    return torch.cat([s.reshape(*lead, -1) for s in state], -1)


def unflatten(v: Tensor, shapes: list[tuple]) -> tuple:
    """Inverse of :func:`flatten` for per-replica matrix shapes ``shapes`` (e.g. [(M, N), (M, M)])."""
    out, i = [], 0
    lead = tuple(v.shape[:-1])
    for shp in shapes:
        n = math.prod(shp)
        out.append(v[..., i:i + n].reshape(*lead, *shp))
        i += n
    if i != v.shape[-1]:
        raise ValueError(f"v has {v.shape[-1]} entries per replica but the shapes {shapes} need {i}.")
    return tuple(out)


def fd_jacobian(f: Callable[[tuple], tuple], state: tuple, *, h: float = 1e-3) -> Tensor:
    """Jacobian (S, D, D) of an opaque batched field ``f`` at ``state`` (each tensor (S, ...)).

    Central differences at steps ``h`` and ``h/2`` combined by Richardson extrapolation,
    ``(4 D(h/2) − D(h))/3``: the error terms are ``h⁴ f⁽⁵⁾`` and rounding, so for the
    cubic fields of this model the result is exact up to ~``ε·‖f‖/h``. The ``4D`` perturbed
    copies of the state are evaluated in one call, stacked on a new leading dimension: ``f``
    must broadcast over leading batch dimensions, mapping tensors (4D, S, ...) to (4D, S, ...)
    (the closed-form :func:`ncspec.reference.dual.field` does; replicas must be independent).
    """
    _checks.positive("h", h)
    if not (isinstance(state, (tuple, list)) and state and all(isinstance(s, Tensor) and s.dim() >= 1
                                                               for s in state)):
        raise TypeError("state must be a non-empty tuple of batched tensors (S, ...), e.g. (A, B).")
    S = state[0].shape[0]
    shapes = [tuple(s.shape[1:]) for s in state]
    v = flatten(tuple(s.detach() for s in state), batch_dims=1)                   # (S, D)
    D = v.shape[-1]
    E = torch.eye(D, dtype=v.dtype)
    steps = torch.stack([h * E, -h * E, 0.5 * h * E, -0.5 * h * E]).reshape(4 * D, 1, D)  # ±h e_j, ±h/2 e_j
    g = flatten(tuple(f(unflatten(v + steps, shapes))), batch_dims=2)              # (4D, S, D_out)
    if g.shape[:2] != (4 * D, S):
        raise ValueError(f"the field returned a batch of shape {tuple(g.shape[:2])} for states of batch shape "
                         f"({4 * D}, {S}); it must broadcast over leading batch dimensions (fd_jacobian "
                         f"evaluates its {4 * D} perturbed copies of the state in one call).")
    g = g.reshape(4, D, S, -1)
    d1 = (g[0] - g[1]) / (2 * h)
    d2 = (g[2] - g[3]) / h
    return ((4 * d2 - d1) / 3).permute(1, 2, 0)                                    # (S, D_out, D)


def refine_equilibrium(f: Callable[[tuple], tuple], state: tuple, *, iters: int = 8, tol: float = 1e-13,
                       h: float = 1e-3) -> tuple[tuple, Tensor]:
    """Gauss–Newton polish of approximate equilibria of an opaque batched field ``f``.

    Each step solves ``J δ = −F`` in the least-squares, minimal-norm sense (SVD of the
    :func:`fd_jacobian`, singular values below 1e-8·σ_max dropped: the Jacobian is singular
    along a set of equilibria, e.g. the O(M) orbits of this model, and the minimal-norm step
    does not move along them). Converges quadratically near a set of equilibria; meant for
    the end of a run that has settled (say ‖F‖ ≤ 1e-4). A replica whose step would make the
    state non-finite keeps its point. Stops when every replica's ‖F‖ ≤ ``tol`` or after
    ``iters`` steps. Returns the state and the final ‖F‖ per replica (S,).
    """
    _checks.positive_int("iters", iters)
    _checks.positive("tol", tol)
    shapes = [tuple(s.shape[1:]) for s in state]
    v = flatten(tuple(s.detach() for s in state), batch_dims=1)
    g = lambda u: flatten(tuple(f(unflatten(u, shapes))), batch_dims=1)
    F = g(v)
    for _ in range(iters):
        if F.norm(dim=-1).max() <= tol:
            break
        J = fd_jacobian(f, unflatten(v, shapes), h=h)
        U, sv, Vh = torch.linalg.svd(J)
        keep = sv > sv[..., :1] * 1e-8
        inv = torch.where(keep, 1.0 / sv.clamp_min(1e-300), torch.zeros_like(sv))
        delta = -(Vh.transpose(-1, -2) @ (inv.unsqueeze(-1) * (U.transpose(-1, -2) @ F.unsqueeze(-1))))[..., 0]
        cand = v + delta
        F_new = g(cand)
        ok = (torch.isfinite(cand).all(-1) & torch.isfinite(F_new).all(-1)).unsqueeze(-1)
        v, F = torch.where(ok, cand, v), torch.where(ok, F_new, F)
    return unflatten(v, shapes), F.norm(dim=-1)
