"""The linear encoder ``z = W x``, batched over replicas."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from .. import _checks


class LinearEncoder(nn.Module):
    """``z = W x`` with ``W`` of shape (S, M, N): S independent replicas.

    ``forward`` takes views (B, N) shared by all replicas or (S, B, N), and
    returns (S, B, M).
    """

    def __init__(self, W: Tensor):
        super().__init__()
        _checks.tensor("W", W)
        if W.dim() != 3:
            raise ValueError(f"W must have shape (S, M, N) (replicas, outputs, inputs), got shape "
                             f"{tuple(W.shape)}; for a single replica pass W.unsqueeze(0).")
        if not W.is_floating_point():
            raise TypeError(f"W must be a floating-point tensor, got dtype {W.dtype}; "
                            f"convert it with W.double() or W.float().")
        _checks.finite("W", W, hint="the initial weights must be finite.")
        self.W = nn.Parameter(W.clone())

    @property
    def dtype(self) -> torch.dtype:
        """``W``'s dtype: a learner builds its heads in it."""
        return self.W.dtype

    @property
    def device(self) -> torch.device:
        return self.W.device

    def forward(self, x: Tensor) -> Tensor:
        _checks.tensor("x", x, min_dim=1, layout="(B, N) or (S, B, N)")
        if x.shape[-1] != self.W.shape[-1]:
            raise ValueError(f"input dimension {x.shape[-1]} does not match the encoder's "
                             f"N = {self.W.shape[-1]} (W has shape {tuple(self.W.shape)}); "
                             f"x must be (B, N) or (S, B, N), got shape {tuple(x.shape)}.")
        if x.dim() >= 3 and x.shape[-3] not in (1, self.W.shape[0]):
            raise ValueError(f"x has {x.shape[-3]} replicas (shape {tuple(x.shape)}) but the encoder "
                             f"has S = {self.W.shape[0]} (W has shape {tuple(self.W.shape)}); pass "
                             f"views (B, N) shared by all replicas or (S, B, N), one per replica.")
        if x.dtype != self.W.dtype:
            raise ValueError(f"x has dtype {x.dtype} but the encoder's W has dtype {self.W.dtype}; "
                             f"convert the views with x.to({self.W.dtype}).")
        return x @ self.W.transpose(-1, -2)


def random_orthogonal(S: int, n: int, *, generator=None, dtype=torch.float64) -> Tensor:
    """Haar-distributed orthogonal matrices (S, n, n) (QR with sign fix)."""
    _checks.positive_int("S", S)
    _checks.positive_int("n", n)
    Q, R = torch.linalg.qr(torch.randn((S, n, n), generator=generator, dtype=dtype))
    return Q * torch.sign(torch.diagonal(R, dim1=-2, dim2=-1)).unsqueeze(-2)


def weights_with_spectrum(lam: Tensor, N: int, *, generator=None) -> Tensor:
    """Random ``W`` (S, M, N) with ``eig(W Wᵀ) = lam`` (S, M) and random eigenvectors.

    ``W = U diag(√λ) Vᵀ`` with ``U`` Haar on O(M) and ``V`` the first M columns of
    a Haar matrix on O(N). Requires ``M ≤ N`` (otherwise ``W Wᵀ`` is singular).
    """
    _checks.tensor("lam", lam)
    if lam.dim() != 2:
        raise ValueError(f"lam must have shape (S, M) (replicas, modes), got shape "
                         f"{tuple(lam.shape)}; for a single replica pass lam.unsqueeze(0).")
    if not lam.is_floating_point():
        raise TypeError(f"lam must be a floating-point tensor, got dtype {lam.dtype}; "
                        f"convert it with lam.double().")
    _checks.positive_int("N", N, hint="N is the input dimension of W (S, M, N).")
    _checks.finite("lam", lam, hint="the target eigenvalues of W Wᵀ must be finite.")
    S, M = lam.shape
    if M > N:
        raise ValueError(f"M = {M} outputs exceed N = {N} inputs: W Wᵀ would have rank ≤ N; "
                         f"choose M ≤ N (lam has shape {tuple(lam.shape)}, i.e. M = {M}).")
    if (lam <= 0).any():
        bad = lam[lam <= 0]
        raise ValueError(f"lam must be > 0 (the eigenvalues of W Wᵀ at initialisation), got "
                         f"{bad.numel()} value(s) <= 0 (smallest {bad.min().item()!r}); use a "
                         f"small positive value such as 1e-3 for a nearly collapsed mode.")
    U = random_orthogonal(S, M, generator=generator, dtype=lam.dtype)
    V = random_orthogonal(S, N, generator=generator, dtype=lam.dtype)[..., :M]
    return (U * lam.sqrt().unsqueeze(-2)) @ V.transpose(-1, -2)
