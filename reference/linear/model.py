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
        _checks.tensor("W", W, min_dim=3)
        _checks.finite("W", W)
        self.W = nn.Parameter(W.clone())

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-1] != self.W.shape[-1]:
            raise ValueError(f"input dimension {x.shape[-1]} does not match the encoder's "
                             f"N = {self.W.shape[-1]} (W has shape {tuple(self.W.shape)}).")
        return x @ self.W.transpose(-1, -2)


def random_orthogonal(S: int, n: int, *, generator=None, dtype=torch.float64) -> Tensor:
    """Haar-distributed orthogonal matrices (S, n, n) (QR with sign fix)."""
    Q, R = torch.linalg.qr(torch.randn((S, n, n), generator=generator, dtype=dtype))
    return Q * torch.sign(torch.diagonal(R, dim1=-2, dim2=-1)).unsqueeze(-2)


def weights_with_spectrum(lam: Tensor, N: int, *, generator=None) -> Tensor:
    """Random ``W`` (S, M, N) with ``eig(W Wᵀ) = lam`` (S, M) and random eigenvectors.

    ``W = U diag(√λ) Vᵀ`` with ``U`` Haar on O(M) and ``V`` the first M columns of
    a Haar matrix on O(N). Requires ``M ≤ N`` (otherwise ``W Wᵀ`` is singular).
    """
    _checks.tensor("lam", lam, min_dim=2)
    _checks.finite("lam", lam)
    S, M = lam.shape
    if M > N:
        raise ValueError(f"M = {M} outputs exceed N = {N} inputs: W Wᵀ would have rank ≤ N; "
                         f"choose M ≤ N.")
    if (lam <= 0).any():
        raise ValueError("lam must be > 0 (the eigenvalues of W Wᵀ at initialisation).")
    U = random_orthogonal(S, M, generator=generator, dtype=lam.dtype)
    V = random_orthogonal(S, N, generator=generator, dtype=lam.dtype)[..., :M]
    return (U * lam.sqrt().unsqueeze(-2)) @ V.transpose(-1, -2)
