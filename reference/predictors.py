"""Closed-form predictors (DirectPred, Tian et al. 2021; Halvagal et al. 2022, eq. 1).

``W_P = f_α(C) = U diag(ω) Uᵀ`` with ``C = E[z zᵀ] = U diag(λ) Uᵀ`` the
uncentred correlation of the online embeddings and ``ω_m = λ_m^α`` (Halvagal et al.
2022, eq. 1). The authors' code adds two options, both here:

* ``normalize``: divide by ``λ_max`` first (claim H8) —
  ``ω = ((λ/λ_max)₊ + ε)^α``;
* ``eps``: a boost of the small eigenvalues, added ``"before"`` the power (the
  IsoLoss authors) or ``"after"`` it (Tian et al.: ``ω = λ^α + ε``).

The eigendecomposition is symmetric (``eigh``) and runs in float64 on a
detached, symmetrised copy: the predictor never carries gradient.
"""
from __future__ import annotations

import torch
from torch import Tensor

from . import _checks


def correlation(z: Tensor) -> Tensor:
    """Uncentred batch correlation ``Ĉ = (1/B) Σ_b z_b z_bᵀ``: (..., B, M) → (..., M, M).

    Detached: it is an estimate the predictor is built from, never a path for
    gradients (a non-detached estimate is a mutant the suite must catch).
    """
    _checks.tensor("z", z, min_dim=2, layout="(..., B, M)")
    _checks.nonempty_batch("z", z)
    z = z.detach()
    return z.transpose(-1, -2) @ z / z.shape[-2]


class EMACorrelation:
    """Running estimate ``F̂ ← ρ F̂ + (1 − ρ) Ĉ`` (Tian et al.; ρ = 0.3 in their code)."""

    def __init__(self, rho: float):
        try:
            in_range = bool(0.0 <= rho < 1.0)
        except (TypeError, ValueError, RuntimeError):
            raise TypeError(f"rho must be a number in [0, 1), got {type(rho).__name__} {rho!r}; "
                            f"pass a float such as 0.3 (Tian et al.).") from None
        if not in_range:
            raise ValueError(f"rho must lie in [0, 1), got {rho!r}; rho = 0 uses the batch estimate alone.")
        self.rho = float(rho)
        self.F: Tensor | None = None

    def update(self, z: Tensor) -> Tensor:
        C = correlation(z)
        if self.F is None or self.F.shape != C.shape:
            self.F = C
        else:
            self.F = self.rho * self.F + (1.0 - self.rho) * C
        return self.F


def eigen_predictor(C: Tensor, alpha: float = 1.0, *, eps: float = 0.0,
                    normalize: bool = False, boost: str = "before") -> Tensor:
    """``W_P = U diag(ω) Uᵀ`` from a correlation estimate ``C`` (..., M, M).

    ``ω = (λ̃ + ε)^α`` (boost "before") or ``λ̃^α + ε`` ("after"), with
    ``λ̃ = λ₊`` or ``λ₊/λ_max`` when ``normalize``. Returns ``C``'s dtype.
    """
    _checks.square("C", C)
    _checks.positive("alpha", alpha, hint="alpha is the exponent of ω = λ^α; use alpha > 0 "
                     "(DirectPred uses 0.5, the theory 1.0).")
    _checks.non_negative("eps", eps, hint="eps boosts the small eigenvalues; use eps >= 0 "
                         "(0 disables the boost).")
    _checks.choice("boost", boost, {"before", "after"})
    _checks.finite("C", C, hint="the correlation estimate must be finite; the embeddings it "
                   "was built from hold NaN/inf (a diverged run: lower the learning rate).")
    return eigen_predictor_kernel(C, alpha, eps, normalize, boost)


def eigen_predictor_kernel(C: Tensor, alpha: float, eps: float, normalize: bool, boost: str) -> Tensor:
    """:func:`eigen_predictor` without input checks (no host synchronisation): (..., M, M) → (..., M, M)."""
    C64 = C.detach().to(torch.float64)
    lam, U = torch.linalg.eigh(0.5 * (C64 + C64.transpose(-1, -2)))
    lam = lam.clamp_min(0.0)
    if normalize:
        lam = lam / lam.amax(-1, keepdim=True).clamp_min(torch.finfo(torch.float64).tiny)
    omega = (lam + eps) ** alpha if boost == "before" else lam ** alpha + eps
    return ((U * omega.unsqueeze(-2)) @ U.transpose(-1, -2)).to(C.dtype)


def identity_predictor(M: int, *, dtype=torch.float32, device=None) -> Tensor:
    """``W_P = I_M``: SimSiam without a predictor."""
    if not (isinstance(M, int) and M > 0):
        raise ValueError(f"M must be a positive int, got {M!r}; pass the embedding dimension, "
                         f"e.g. identity_predictor(10).")
    return torch.eye(M, dtype=dtype, device=device)


def copy_predictor(C: Tensor, *, eps: float = 0.0, norm: str = "fro") -> Tensor:
    """DirectCopy (Wang, Chen, Du & Tian 2021): ``W_P = C/‖C‖ + εI`` — no eigendecomposition.

    The paper leaves the norm open. Default ``"fro"`` (Frobenius): one pass over
    the matrix, O(M²), and it bounds the spectral norm from above, so
    ``‖W_P − εI‖₂ ≤ 1``. ``"spectral"`` divides by ``λ_max`` (then ``W_P − εI`` is the
    α = 1 normalised DirectPred predictor, at the cost of an eigenvalue solve).
    """
    _checks.square("C", C)
    _checks.non_negative("eps", eps)
    _checks.choice("norm", norm, {"fro", "spectral"})
    _checks.finite("C", C)
    C = C.detach()
    C = 0.5 * (C + C.transpose(-1, -2))
    if norm == "fro":
        scale = torch.linalg.matrix_norm(C, ord="fro", keepdim=True)
    else:
        scale = torch.linalg.eigvalsh(C.to(torch.float64)).amax(-1)[..., None, None].to(C.dtype)
    eye = torch.eye(C.shape[-1], dtype=C.dtype, device=C.device)
    return C / scale.clamp_min(torch.finfo(C.dtype).tiny) + eps * eye
