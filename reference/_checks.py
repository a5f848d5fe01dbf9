"""Input validation shared by the public functions of :mod:`reference`.

Every check raises a ``ValueError`` (or ``TypeError``) whose message names the
argument, what was expected, what was received, and how to fix it.

The checks sit on hot paths (the simulator calls the losses at every step), so
they only look at shapes, dtypes and Python scalars, except :func:`finite`,
which costs one reduction and one host sync on the happy path.
"""
from __future__ import annotations

import math
import numbers

import torch
from torch import Tensor


def _fix(hint: str | None) -> str:
    return f" {hint}" if hint else ""


def tensor(name: str, x, *, min_dim: int = 0, layout: str | None = None,
           hint: str | None = None) -> Tensor:
    """``x`` is a tensor with at least ``min_dim`` dimensions (``layout`` documents them)."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}; "
                        f"wrap it with torch.as_tensor(...).")
    if x.dim() < min_dim:
        expected = f" {layout}" if layout else ""
        raise ValueError(f"{name} must have at least {min_dim} dimensions{expected}, got shape "
                         f"{tuple(x.shape)}."
                         + _fix(hint or "Add the missing leading dimension(s), e.g. with .unsqueeze(0)."))
    return x


def finite(name: str, x: Tensor, *, hint: str | None = None) -> Tensor:
    """Every entry of ``x`` is finite (no NaN, no ±inf).

    Fast path: NaN and inf propagate through a sum, so a finite sum proves a
    finite tensor with one reduction. A non-finite sum may also be an overflow
    of finite entries; only then is the exact (slower) check run.
    """
    if not (x.is_floating_point() or x.is_complex()):
        return x                                    # integer and bool tensors are finite
    if not x.is_complex() and math.isfinite(x.detach().sum().item()):
        return x
    bad = int((~torch.isfinite(x)).sum().item())
    if bad == 0:
        return x
    raise ValueError(f"{name} must be finite, but it contains {bad} non-finite value(s) "
                     f"(NaN or inf) out of {x.numel()} (shape {tuple(x.shape)}); "
                     + (hint or "check the learning rate and the inputs that produced it."))


def all_finite(named: tuple[tuple[str, Tensor], ...], *, hint: str | None = None) -> None:
    """:func:`finite` for several real tensors with one host sync on the happy path.

    The sum of the sums is finite iff every entry is (up to overflow, which
    falls back to the exact per-tensor check and so never raises wrongly).
    """
    total = None
    for _, x in named:
        if x.is_complex():
            total = None
            break
        if x.is_floating_point():
            part = x.detach().sum()                 # no autograd node for a check
            total = part if total is None else total + part
    else:
        if total is None or math.isfinite(total.item()):
            return
    for name, x in named:
        finite(name, x, hint=hint)


def positive(name: str, v: float, *, hint: str | None = None) -> float:
    if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {v!r}."
                         + _fix(hint or f"Pass a positive float, e.g. {name}=1.0."))
    return float(v)


def non_negative(name: str, v: float, *, hint: str | None = None) -> float:
    if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
        raise ValueError(f"{name} must be a finite number >= 0, got {v!r}."
                         + _fix(hint or f"Pass a non-negative float, e.g. {name}=0.0."))
    return float(v)


def positive_int(name: str, v, *, hint: str | None = None) -> int:
    if not (isinstance(v, numbers.Integral) and not isinstance(v, bool) and v > 0):
        raise ValueError(f"{name} must be a positive int, got {v!r}."
                         + _fix(hint or "Pass an int >= 1."))
    return int(v)


def square(name: str, x: Tensor) -> Tensor:
    tensor(name, x, min_dim=2, layout="(..., M, M)")
    if x.shape[-1] != x.shape[-2]:
        raise ValueError(f"{name} must be square in its last two dimensions (..., M, M), "
                         f"got shape {tuple(x.shape)}; build it from a correlation (..., M, M), "
                         f"e.g. with ncspec.reference.predictors.eigen_predictor.")
    return x


def same_shape(name_a: str, a: Tensor, name_b: str, b: Tensor) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{name_a} and {name_b} must have the same shape, got "
                         f"{tuple(a.shape)} and {tuple(b.shape)}; both views must come "
                         f"from the same encoder and batch.")


def nonempty_batch(name: str, x: Tensor, *, layout: str = "(..., B, M)") -> None:
    """The batch dimension (second to last) holds at least one sample."""
    if x.shape[-2] == 0:
        raise ValueError(f"{name} must hold at least one sample (B >= 1 in {layout}), got shape "
                         f"{tuple(x.shape)}; an empty batch has no mean. Pass a non-empty batch.")


def _broadcastable(a: tuple, b: tuple) -> bool:
    return all(p == q or p == 1 or q == 1 for p, q in zip(reversed(a), reversed(b)))


def embeddings_match_predictor(z: Tensor, W_P: Tensor) -> None:
    if z.shape[-1] != W_P.shape[-1]:
        raise ValueError(f"embedding dimension M = {z.shape[-1]} does not match the "
                         f"predictor W_P of shape {tuple(W_P.shape)}; W_P must be (..., M, M).")
    if z.dtype != W_P.dtype:
        raise ValueError(f"the embeddings (dtype {z.dtype}) and the predictor W_P (dtype "
                         f"{W_P.dtype}) must have the same dtype; convert W_P with "
                         f"W_P.to(z.dtype).")
    if not _broadcastable(tuple(z.shape[:-2]), tuple(W_P.shape[:-2])):
        raise ValueError(f"the replica dimensions of the embeddings {tuple(z.shape[:-2])} (shape "
                         f"{tuple(z.shape)}) and of the predictor W_P {tuple(W_P.shape[:-2])} "
                         f"(shape {tuple(W_P.shape)}) do not broadcast; build one W_P per "
                         f"replica, (S, M, M), or a shared one, (M, M).")


def choice(name: str, v, options) -> None:
    try:
        ok = v in options
    except TypeError:                               # unhashable v: certainly not an option
        ok = False
    if not ok:
        raise ValueError(f"{name} must be one of {sorted(options)}, got {v!r}.")
