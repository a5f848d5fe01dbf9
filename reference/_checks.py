"""Input validation shared by the public functions of :mod:`reference`.

Every check raises a ``ValueError`` (or ``TypeError``) whose message names the
argument, what was expected, what was received, and how to fix it.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor


def tensor(name: str, x, *, min_dim: int = 0) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}; "
                        f"wrap it with torch.as_tensor(...).")
    if x.dim() < min_dim:
        raise ValueError(f"{name} must have at least {min_dim} dimensions, got shape "
                         f"{tuple(x.shape)}.")
    return x


def finite(name: str, x: Tensor) -> Tensor:
    if not torch.isfinite(x).all():
        bad = (~torch.isfinite(x)).sum().item()
        raise ValueError(f"{name} contains {bad} non-finite value(s) (NaN or inf); "
                         f"check the learning rate and the inputs that produced it.")
    return x


def positive(name: str, v: float) -> float:
    if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {v!r}.")
    return float(v)


def non_negative(name: str, v: float) -> float:
    if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
        raise ValueError(f"{name} must be a finite number >= 0, got {v!r}.")
    return float(v)


def square(name: str, x: Tensor) -> Tensor:
    tensor(name, x, min_dim=2)
    if x.shape[-1] != x.shape[-2]:
        raise ValueError(f"{name} must be square in its last two dimensions (..., M, M), "
                         f"got shape {tuple(x.shape)}.")
    return x


def same_shape(name_a: str, a: Tensor, name_b: str, b: Tensor) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{name_a} and {name_b} must have the same shape, got "
                         f"{tuple(a.shape)} and {tuple(b.shape)}; both views must come "
                         f"from the same encoder and batch.")


def embeddings_match_predictor(z: Tensor, W_P: Tensor) -> None:
    if z.shape[-1] != W_P.shape[-1]:
        raise ValueError(f"embedding dimension M = {z.shape[-1]} does not match the "
                         f"predictor W_P of shape {tuple(W_P.shape)}; W_P must be (..., M, M).")


def choice(name: str, v, options) -> None:
    if v not in options:
        raise ValueError(f"{name} must be one of {sorted(options)}, got {v!r}.")
