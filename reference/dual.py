"""The linear encoder/predictor model of Ponce, Terver, Hebert & Arbel (2025), claims P1–P6.

Encoder ``A`` (M×N), predictor ``B`` (M×M), two views ``x, y`` of one input with
second moments ``Σxx = E[xxᵀ]``, ``Σxy = E[xyᵀ] = Σyxᵀ``, ``Σyy = E[yyᵀ]``::

    Ē(A, B) = ½ E‖B A x − A y‖² + λ(‖A‖² + ‖B‖²)/2
            = ½ tr(BAΣxxAᵀBᵀ) − tr(BAΣxyAᵀ) + ½ tr(AΣyyAᵀ) + λ(‖A‖² + ‖B‖²)/2.

Three dynamics on the parameters, written as vector fields (``r = BAx − A_t y`` is
the residual against a *target* encoder ``A_t``)::

    SG   (A_t = A, not differentiated)  Ȧ = −Bᵀ(BAΣxx − AΣyx) − λA
                                        Ḃ = −(BAΣxx − AΣyx)Aᵀ − λB
    EMA  (state (A, B, A_t))            Ȧ = −Bᵀ(BAΣxx − A_tΣyx) − λA
                                        Ḃ = −(BAΣxx − A_tΣyx)Aᵀ − λB
                                        Ȧ_t = β(A − A_t)
    GD   (gradient flow on Ē)           Ȧ = −∇_A Ē = SG's Ȧ + (BAΣxy − AΣyy)
                                        Ḃ = −∇_B Ē = SG's Ḃ

The SG field is the gradient of ``½E‖BAx − A_t y‖²`` at fixed ``A_t``, evaluated at
``A_t = A``; GD adds the target branch's term ``E[r yᵀ] = BAΣxy − AΣyy``. All fields
are closed forms in the moments (no sampling) and differentiable, so their Jacobians
come from :mod:`torch.func` (:func:`jacobian`); :func:`fd_jacobian` differentiates an
opaque field (e.g. an adapter's learner) by Richardson-extrapolated central
differences, which is exact up to rounding for these cubic fields.

Shapes: leading dimensions are independent replicas (seeds) and broadcast between the
state and the moments: ``A`` (..., M, N), ``B`` (..., M, M), moments (..., N, N).
Float64 throughout (every constructor here returns float64).

A *state* is a tuple of tensors: ``(A, B)`` for SG and GD, ``(A, B, A_t)`` for EMA.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from . import _checks
from .ode import (  # the integration tools are the dual model's too: dual.integrate(dual.field(...), ...)
    INTEGRATORS,  # noqa: F401
    Path,  # noqa: F401
    fd_jacobian,  # noqa: F401
    flatten,
    integrate,  # noqa: F401
    refine_equilibrium,  # noqa: F401
    rk4_step,  # noqa: F401
    unflatten,
)

KINDS = ("sg", "ema", "gd")
DTYPE = torch.float64


# ----------------------------------------------------------------------------- moments
@dataclass(frozen=True)
class Moments:
    """Second moments of the two views, (..., N, N) each: ``xx = E[xxᵀ]``, ``xy = E[xyᵀ]``,
    ``yy = E[yyᵀ]``. Build with :func:`moments` (validated), :func:`gaussian_moments` or
    :func:`random_moments`."""

    xx: Tensor
    xy: Tensor
    yy: Tensor

    @property
    def yx(self) -> Tensor:
        """``Σyx = E[yxᵀ] = Σxyᵀ``."""
        return self.xy.transpose(-1, -2)

    @property
    def N(self) -> int:
        return self.xx.shape[-1]

    @property
    def batch_shape(self) -> tuple:
        return tuple(torch.broadcast_shapes(self.xx.shape, self.xy.shape, self.yy.shape)[:-2])

    def joint(self) -> Tensor:
        """The joint second moment of ``(x, y)``, (..., 2N, 2N)."""
        xx, xy, yy = torch.broadcast_tensors(self.xx, self.xy, self.yy)
        return torch.cat([torch.cat([xx, xy], -1), torch.cat([xy.transpose(-1, -2), yy], -1)], -2)

    def views(self) -> tuple[Tensor, Tensor]:
        """A deterministic batch ``(x, y)``, each (..., 2N, N), whose empirical second moments
        (``mean_k x_k x_kᵀ`` etc.) equal these moments exactly (to rounding).

        ``J = L Lᵀ`` (symmetric square root of the joint moment); the samples are
        ``√(2N)`` times the columns of ``L``. Only second moments enter the objective and
        the fields, so a learner fed this batch follows the population (expected) flow.
        """
        J = self.joint()
        lam, U = torch.linalg.eigh(0.5 * (J + J.transpose(-1, -2)))
        L = U * lam.clamp_min(0).sqrt().unsqueeze(-2)
        z = math.sqrt(2 * self.N) * L.transpose(-1, -2)             # (..., 2N samples, 2N)
        return z[..., :self.N].contiguous(), z[..., self.N:].contiguous()

    def index(self, i) -> Moments:
        """The moments of replica ``i`` (for batched moments)."""
        return Moments(self.xx[i], self.xy[i], self.yy[i])


def _square(name: str, m, what: str) -> Tensor:
    _checks.tensor(name, m, min_dim=2, layout="(..., N, N)")
    if m.shape[-1] != m.shape[-2]:
        raise ValueError(f"{name} must be square in its last two dimensions (..., N, N) — {what} — got shape "
                         f"{tuple(m.shape)}.")
    return m


def moments(xx: Tensor, xy: Tensor, yy: Tensor, *, check_psd: bool = True) -> Moments:
    """Validated :class:`Moments`: square (..., N, N) float tensors of one dtype, ``xx`` and
    ``yy`` symmetric, and (``check_psd``) a positive semi-definite joint second moment."""
    for name, m in (("xx", xx), ("xy", xy), ("yy", yy)):
        _square(name, m, f"the second moment E[{name[0]}{name[1]}ᵀ]")
        if not m.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor, got dtype {m.dtype}; "
                            f"convert it with .double().")
        _checks.finite(name, m, hint="second moments must be finite.")
    if not (xx.shape[-1] == xy.shape[-1] == yy.shape[-1]):
        raise ValueError(f"xx, xy and yy must all be (..., N, N) with one N, got shapes {tuple(xx.shape)}, "
                         f"{tuple(xy.shape)} and {tuple(yy.shape)}.")
    if not (xx.dtype == xy.dtype == yy.dtype):
        raise ValueError(f"xx, xy and yy must share a dtype, got {xx.dtype}, {xy.dtype} and {yy.dtype}; "
                         f"convert them with .double().")
    try:
        torch.broadcast_shapes(xx.shape, xy.shape, yy.shape)
    except RuntimeError:
        raise ValueError(f"the replica dimensions of xx {tuple(xx.shape)}, xy {tuple(xy.shape)} and yy "
                         f"{tuple(yy.shape)} do not broadcast.") from None
    for name, m in (("xx", xx), ("yy", yy)):
        asym = (m - m.transpose(-1, -2)).abs().max().item()
        if asym > 1e-10 * max(1.0, m.abs().max().item()):
            raise ValueError(f"{name} = E[{name[0]}{name[1]}ᵀ] must be symmetric, got max |{name} − {name}ᵀ| = "
                             f"{asym:.3g}; symmetrise it with 0.5 * (m + m.mT).")
    mom = Moments(xx, xy, yy)
    if check_psd:
        J = mom.joint()
        low = torch.linalg.eigvalsh(J)[..., 0].min().item()
        scale = J.abs().amax().item()
        if low < -1e-10 * max(scale, 1.0):
            raise ValueError(f"the joint second moment [[xx, xy], [xyᵀ, yy]] must be positive semi-definite "
                             f"(it is E[(x, y)(x, y)ᵀ]), but its smallest eigenvalue is {low:.3g}; "
                             f"build the moments from a covariance, e.g. with random_moments(...).")
    return mom


def _shape(S) -> tuple:
    if S is None:
        return ()
    _checks.positive_int("S", S, hint="S is the number of replicas (a leading dimension); pass None for one.")
    return (int(S),)


def gaussian_moments(N: int, *, sigma_x: float = 0.5, sigma_y: float | None = None,
                     signal: Tensor | None = None, mix: float = 0.0, S: int | None = None,
                     generator: torch.Generator | None = None) -> Moments:
    """Views ``x = P u + σ_x ε``, ``y = Q u + σ_y ε′`` of a signal ``u ~ N(0, Σu)``::

        Σxx = PΣuPᵀ + σ_x² I,   Σxy = PΣuQᵀ,   Σyy = QΣuQᵀ + σ_y² I.

    ``P = Q = I`` when ``mix = 0`` (then ``Σxy = Σu`` is symmetric); otherwise
    ``P = I + mix·G₁/√N`` and ``Q = I + mix·G₂/√N`` with standard normal ``G₁, G₂``
    (different distortions of the two views: a general, non-symmetric ``Σxy``).
    ``signal`` is ``Σu`` (…, N, N); by default a random Wishart matrix ``GGᵀ/N`` with
    ``G`` (…, N, N) standard normal (one per replica when ``S`` is given); pass
    ``torch.eye(N)`` for the isotropic model of the linear-Gaussian claims.
    """
    _checks.positive_int("N", N, hint="N is the input dimension.")
    _checks.non_negative("sigma_x", sigma_x)
    sigma_y = sigma_x if sigma_y is None else _checks.non_negative("sigma_y", sigma_y)
    _checks.non_negative("mix", mix, hint="mix scales the random distortions P, Q of the two views; 0 for none.")
    if signal is None:
        G = torch.randn((*_shape(S), N, N), generator=generator, dtype=DTYPE)
        signal = G @ G.transpose(-1, -2) / N
    else:
        _square("signal", signal, "the covariance of the signal u")
        if signal.shape[-1] != N:
            raise ValueError(f"signal must be (..., {N}, {N}) (the covariance of u), got shape {tuple(signal.shape)}.")
        signal = signal.to(DTYPE)
    eye = torch.eye(N, dtype=DTYPE)
    if mix:
        lead = tuple(torch.broadcast_shapes(signal.shape[:-2], _shape(S)))
        P = eye + mix * torch.randn((*lead, N, N), generator=generator, dtype=DTYPE) / math.sqrt(N)
        Q = eye + mix * torch.randn((*lead, N, N), generator=generator, dtype=DTYPE) / math.sqrt(N)
    else:
        P = Q = eye
    return moments(P @ signal @ _T(P) + sigma_x ** 2 * eye, P @ signal @ _T(Q), Q @ signal @ _T(Q) + sigma_y ** 2 * eye)


def random_moments(N: int, *, S: int | None = None, generator: torch.Generator | None = None,
                   correlation: float = 1.0) -> Moments:
    """A general joint second moment of ``(x, y)``: a random Wishart matrix ``GGᵀ/(2N)`` with
    ``G`` (…, 2N, 2N) standard normal, whose cross block ``E[xyᵀ]`` is scaled by
    ``correlation`` (0 gives uncorrelated views, ``Σxy = 0``; any |c| ≤ 1 keeps it PSD:
    ``[[X, cC],[cCᵀ, Y]] = c·J + (1−c)·diag(X, Y)`` for c ∈ [0, 1], and c → −c flips y).
    ``Σxy`` is not symmetric."""
    _checks.positive_int("N", N, hint="N is the input dimension.")
    if not (isinstance(correlation, (int, float)) and -1.0 <= correlation <= 1.0):
        raise ValueError(f"correlation must be a number in [-1, 1], got {correlation!r}; it scales E[xyᵀ].")
    G = torch.randn((*_shape(S), 2 * N, 2 * N), generator=generator, dtype=DTYPE)
    J = G @ G.transpose(-1, -2) / (2 * N)
    xx, xy, yy = J[..., :N, :N], J[..., :N, N:], J[..., N:, N:]
    return Moments(xx.contiguous(), (correlation * xy).contiguous(), yy.contiguous())


# ----------------------------------------------------------------------------- validation
def _check_state(A: Tensor, B: Tensor, mom: Moments, lam, A_t: Tensor | None = None) -> None:
    if not isinstance(mom, Moments):
        raise TypeError(f"mom must be a ncspec.reference.dual.Moments, got {type(mom).__name__}; build it with "
                        f"ncspec.reference.dual.moments(xx, xy, yy) or gaussian_moments(N).")
    _checks.tensor("A", A, min_dim=2, layout="(..., M, N)")
    _square("B", B, "the predictor is M×M")
    if A.shape[-1] != mom.N:
        raise ValueError(f"A must be (..., M, N) with N = {mom.N} (the moments' dimension), got shape "
                         f"{tuple(A.shape)}.")
    if B.shape[-1] != A.shape[-2]:
        raise ValueError(f"B must be (..., M, M) with M = {A.shape[-2]} (A's output dimension, A has shape "
                         f"{tuple(A.shape)}), got shape {tuple(B.shape)}.")
    if A_t is not None:
        _checks.tensor("A_t", A_t, min_dim=2, layout="(..., M, N)")
        if A_t.shape[-2:] != A.shape[-2:]:
            raise ValueError(f"the EMA target A_t must have A's shape (..., {A.shape[-2]}, {A.shape[-1]}), got "
                             f"{tuple(A_t.shape)}.")
    dts = {A.dtype, B.dtype, mom.xx.dtype} | ({A_t.dtype} if A_t is not None else set())
    if len(dts) != 1:
        raise ValueError(f"A, B{', A_t' if A_t is not None else ''} and the moments must share a dtype, got "
                         f"{sorted(map(str, dts))}; use float64 throughout (.double()).")
    try:
        torch.broadcast_shapes(A.shape[:-2], B.shape[:-2], mom.batch_shape,
                               *(() if A_t is None else (A_t.shape[:-2],)))
    except RuntimeError:
        raise ValueError(f"the replica dimensions of A {tuple(A.shape)}, B {tuple(B.shape)} and the moments "
                         f"{mom.batch_shape} do not broadcast.") from None
    if not isinstance(lam, Tensor):
        _checks.non_negative("lam", lam, hint="lam is the weight decay λ of Ē; 0 disables it.")


def _T(X: Tensor) -> Tensor:
    return X.transpose(-1, -2)


def _lam(lam, like: Tensor):
    """λ as a number or as a per-replica tensor (...) broadcast against matrices."""
    if isinstance(lam, Tensor):
        return lam.to(like.dtype)[..., None, None]
    return lam


# ----------------------------------------------------------------------------- objective and fields
def objective(A: Tensor, B: Tensor, mom: Moments, lam) -> Tensor:
    """``Ē(A, B)`` in closed form, one value per replica (...)."""
    _check_state(A, B, mom, lam)
    BA = B @ A
    quad = 0.5 * (BA @ mom.xx * BA).sum((-1, -2)) - (BA @ mom.xy * A).sum((-1, -2)) \
        + 0.5 * (A @ mom.yy * A).sum((-1, -2))
    l = lam if not isinstance(lam, Tensor) else lam.to(A.dtype)
    return quad + 0.5 * l * (A.pow(2).sum((-1, -2)) + B.pow(2).sum((-1, -2)))


def _target_grads(A, B, A_t, mom, lam):
    """Gradient of ``½E‖BAx − A_t y‖² + λ(‖A‖²+‖B‖²)/2`` w.r.t. (A, B) at fixed ``A_t``."""
    R = B @ A @ mom.xx - A_t @ mom.yx                   # E[r xᵀ], r = BAx − A_t y
    l = _lam(lam, A)
    return _T(B) @ R + l * A, R @ _T(A) + l * B


def grad_objective(A: Tensor, B: Tensor, mom: Moments, lam) -> tuple[Tensor, Tensor]:
    """``(∇_A Ē, ∇_B Ē)``: the SG gradients plus the target branch's ``−E[r yᵀ] = −(BAΣxy − AΣyy)``."""
    _check_state(A, B, mom, lam)
    gA, gB = _target_grads(A, B, A, mom, lam)
    return gA - (B @ A @ mom.xy - A @ mom.yy), gB


def sg_field(A: Tensor, B: Tensor, mom: Moments, lam) -> tuple[Tensor, Tensor]:
    """The stop-gradient field ``(Ȧ, Ḃ)``: the target is ``A`` itself, not differentiated."""
    _check_state(A, B, mom, lam)
    gA, gB = _target_grads(A, B, A, mom, lam)
    return -gA, -gB


def ema_field(A: Tensor, B: Tensor, A_t: Tensor, mom: Moments, lam, beta) -> tuple[Tensor, Tensor, Tensor]:
    """The EMA field ``(Ȧ, Ḃ, Ȧ_t)``: target ``A_t`` with ``Ȧ_t = β(A − A_t)``.

    A discrete EMA ``A_t ← m A_t + (1 − m) A`` after a gradient step of size ``lr`` is the
    Euler step of this field with ``β = (1 − m)/lr``.
    """
    _check_state(A, B, mom, lam, A_t)
    if not isinstance(beta, Tensor):
        _checks.positive("beta", beta, hint="beta is the rate of the EMA target, Ȧ_t = β(A − A_t).")
    gA, gB = _target_grads(A, B, A_t, mom, lam)
    return -gA, -gB, _lam(beta, A) * (A - A_t)


def gd_field(A: Tensor, B: Tensor, mom: Moments, lam) -> tuple[Tensor, Tensor]:
    """Plain gradient flow on Ē: ``(−∇_A Ē, −∇_B Ē)``."""
    gA, gB = grad_objective(A, B, mom, lam)
    return -gA, -gB


def field(kind: str, mom: Moments, lam, *, beta=None) -> Callable[[tuple], tuple]:
    """``state ↦ state velocity`` for ``kind`` in ``("sg", "ema", "gd")``; EMA needs ``beta``."""
    _checks.choice("kind", kind, set(KINDS))
    if kind == "ema":
        if beta is None:
            raise ValueError("kind='ema' needs beta, the rate of the target: Ȧ_t = β(A − A_t); e.g. beta=1.0.")
        return lambda s: ema_field(*_unpack(s, 3), mom, lam, beta)
    f = sg_field if kind == "sg" else gd_field
    return lambda s: f(*_unpack(s, 2), mom, lam)


def _unpack(state, n: int):
    if not (isinstance(state, (tuple, list)) and len(state) == n):
        what = f"a {type(state).__name__} of length {len(state)}" if isinstance(state, (tuple, list)) \
            else type(state).__name__
        raise ValueError(f"the state must be a tuple of {n} tensors ({'(A, B)' if n == 2 else '(A, B, A_t)'}), "
                         f"got {what}.")
    return state


def balancedness(A: Tensor, B: Tensor) -> Tensor:
    """``BᵀB − AAᵀ`` (..., M, M); decays as ``e^{−2λt}`` under SG and EMA (claim P3)."""
    _checks.tensor("A", A, min_dim=2, layout="(..., M, N)")
    _square("B", B, "the predictor is M×M")
    if B.shape[-1] != A.shape[-2]:
        raise ValueError(f"B must be (..., M, M) with M = {A.shape[-2]} (A has shape {tuple(A.shape)}), got "
                         f"shape {tuple(B.shape)}.")
    return _T(B) @ B - A @ _T(A)


def balancedness_rate(state: tuple, velocity: tuple) -> Tensor:
    """``d/dt (BᵀB − AAᵀ) = ḂᵀB + BᵀḂ − ȦAᵀ − AȦᵀ`` from a state and its velocity."""
    A, B = state[0], state[1]
    dA, dB = velocity[0], velocity[1]
    X = _T(dB) @ B - dA @ _T(A)
    return X + _T(X)


# ----------------------------------------------------------------------------- initial states
def random_state(M: int, N: int, *, S: int | None = None, scale: float = 1.0, ema: bool = False,
                 generator: torch.Generator | None = None) -> tuple:
    """Gaussian ``A`` (…, M, N) with entries of variance ``scale²/N`` and ``B`` (…, M, M) of variance
    ``scale²/M``; for EMA the target starts at ``A_t = A``."""
    _checks.positive_int("M", M, hint="M is the output (embedding) dimension.")
    _checks.positive_int("N", N, hint="N is the input dimension.")
    _checks.positive("scale", scale)
    lead = _shape(S)
    A = scale * torch.randn((*lead, M, N), generator=generator, dtype=DTYPE) / math.sqrt(N)
    B = scale * torch.randn((*lead, M, M), generator=generator, dtype=DTYPE) / math.sqrt(M)
    return (A, B, A.clone()) if ema else (A, B)


# ----------------------------------------------------------------------------- Jacobians
def jacobian(kind: str, state: tuple, mom: Moments, lam: float, *, beta: float | None = None) -> Tensor:
    """The Jacobian (…, D, D) of ``kind``'s field at ``state`` w.r.t. the flattened state
    (``flatten``'s order: A then B then A_t, row-major), by ``torch.func.jacfwd`` (exact)."""
    _checks.choice("kind", kind, set(KINDS))
    n = 3 if kind == "ema" else 2
    state = _unpack(state, n)
    _check_state(state[0], state[1], mom, lam, state[2] if n == 3 else None)
    batch = torch.broadcast_shapes(*(s.shape[:-2] for s in state), mom.batch_shape)
    shapes = [tuple(s.shape[-2:]) for s in state]
    st = [s.expand(*batch, *s.shape[-2:]).reshape(-1, *s.shape[-2:]) for s in state]
    ms = [m.expand(*batch, *m.shape[-2:]).reshape(-1, *m.shape[-2:]) for m in (mom.xx, mom.xy, mom.yy)]
    v = torch.cat([s.reshape(s.shape[0], -1) for s in st], -1)

    def flat(vec, xx, xy, yy):
        f = field(kind, Moments(xx, xy, yy), lam, beta=beta)
        return flatten(f(unflatten(vec, shapes)))

    J = torch.func.vmap(torch.func.jacfwd(flat))(v, *ms)
    return J.reshape(*batch, *J.shape[-2:])


def asymmetry(J: Tensor) -> Tensor:
    """``‖J − Jᵀ‖_F / ‖J‖_F`` per replica: 0 iff J is symmetric (a gradient field's Jacobian)."""
    _square("J", J, "a Jacobian (..., D, D)")
    return (J - _T(J)).norm(dim=(-1, -2)) / J.norm(dim=(-1, -2))
