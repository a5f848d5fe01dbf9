"""Redundancy-reduction learners: Barlow Twins and VICReg.

Adapter protocol as in :mod:`ncspec.reference.methods.center`; embeddings (..., B, M), the
per-replica losses are summed. Both losses use batch statistics, so B ≥ 2.

Center-vector reading (Jha et al. 2024, §3 and Fig. 5; claim J5): Barlow Twins
standardises every feature over the batch before correlating the views — the
``BatchNorm1d(affine=False)`` of the official code. That subtracts the batch
mean, i.e. removes the center vector of ``z``; the invariance term alone then
cannot be minimised by a constant embedding. Without it (``batchnorm=False``,
``c = z1ᵀz2/B`` on raw embeddings) a constant ``z`` with ``z_k² = 1`` gives
``c_kk = 1`` and zero invariance loss: complete collapse, ‖s‖ = 1.
"""
from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn

from .. import _checks
from ..encoders import BN_EPS, batch_norm, embed_pair, make_build


def off_diagonal(c: Tensor) -> Tensor:
    """The off-diagonal entries of (..., M, M) as (..., M(M−1))."""
    M = c.shape[-1]
    mask = ~torch.eye(M, dtype=torch.bool, device=c.device)
    return c[..., mask]


class BarlowTwins:
    """Barlow Twins (Zbontar et al. 2021, eq. 1–2; facebookresearch/barlowtwins ``main.py``).

    ``c = BN(z1)ᵀ BN(z2) / B`` (M × M), ``L = Σ_k (1 − c_kk)² + λ Σ_{k≠l} c_kl²`` with BN the
    batch standardisation without affine parameters (biased variance, eps = 1e-5, as
    ``nn.BatchNorm1d(affine=False)`` in training mode).

    Args:
        lambda_offdiag: λ (official 0.0051).
        decorrelation: ``False`` drops the off-diagonal term (Jha et al. 2024, Fig. 5's ablation).
        batchnorm: ``False`` correlates the raw embeddings, ``c = z1ᵀz2/B`` (claim J5's
            "remove the BN").
        bn_center: ``False`` keeps BN's scaling but drops its mean subtraction,
            ``z_k / √(mean_B z_k² + eps)`` — the part of BN that removes the center vector.
        bn_std: ``"biased"`` (÷B, the definition's) or ``"unbiased"`` (÷(B − 1), Bessel's correction:
            ``c`` is then (B − 1)/B × the definition's; the convention ``batch_std``).
    """

    def __init__(self, encoder: nn.Module, embed_dim: int, *, lambda_offdiag: float = 0.0051,
                 decorrelation: bool = True, batchnorm: bool = True, bn_center: bool = True,
                 bn_std: str = "biased"):
        self.lambda_offdiag = _checks.non_negative("lambda_offdiag", lambda_offdiag,
                                                   hint="Barlow Twins uses 0.0051.")
        for name, v in (("decorrelation", decorrelation), ("batchnorm", batchnorm), ("bn_center", bn_center)):
            if not isinstance(v, bool):
                raise TypeError(f"{name} must be True or False, got {v!r}.")
        self.decorrelation, self.batchnorm, self.bn_center = decorrelation, batchnorm, bn_center
        _checks.choice("bn_std", bn_std, {"biased", "unbiased"})
        self.bn_std = bn_std
        self.encoder, self.M = encoder, embed_dim

    def parameters(self) -> Iterable[Tensor]:
        return self.encoder.parameters()

    def cross_correlation(self, z1: Tensor, z2: Tensor) -> Tensor:
        """``c`` (..., M, M) of the (standardised) embeddings."""
        if self.batchnorm:
            unbiased = self.bn_std == "unbiased"
            z1, z2 = (batch_norm(z, BN_EPS, center=self.bn_center, unbiased=unbiased) for z in (z1, z2))
        return z1.transpose(-1, -2) @ z2 / z1.shape[-2]

    def loss(self, view1: Tensor, view2: Tensor) -> Tensor:
        z1, z2 = embed_pair(self.encoder, view1, view2, self.M, min_batch=2)
        c = self.cross_correlation(z1, z2)
        on_diag = (torch.diagonal(c, dim1=-2, dim2=-1) - 1).pow(2).sum(-1)
        loss = on_diag
        if self.decorrelation:
            loss = loss + self.lambda_offdiag * off_diagonal(c).pow(2).sum(-1)
        return loss.sum()

    def after_step(self) -> None:
        """Nothing to refresh."""


class VICReg:
    """VICReg (Bardes et al. 2022, eq. 1–6; facebookresearch/vicreg ``main_vicreg.py``), exactly::

        repr = mean over B·M of (z1 − z2)²                     (F.mse_loss)
        std_v = √(Var_B(z_v) + 1e-4)   (unbiased variance, B − 1)
        std  = ½ mean_k relu(1 − std_1k) + ½ mean_k relu(1 − std_2k)
        cov_v = (z_v − z̄_v)ᵀ(z_v − z̄_v)/(B − 1);  cov = Σ_{k≠l} cov_1kl²/M + Σ_{k≠l} cov_2kl²/M
        L = 25·repr + 25·std + 1·cov

    The variance hinge is on the *standard deviation* with ε = 1e-4 inside the square
    root (official ``torch.sqrt(x.var(dim=0) + 0.0001)``), target γ = 1.

    Args:
        sim_coeff, std_coeff, cov_coeff: λ, μ, ν (official 25, 25, 1).
        eps: ε of the std (official 1e-4).
        variance: ``"authors_code"`` (the ½ above, the released code) or ``"paper_eq6"``
            (``v(Z) + v(Z′)`` as printed in eq. 6 of Bardes, Ponce & LeCun, ICLR 2022).
    """

    def __init__(self, encoder: nn.Module, embed_dim: int, *, sim_coeff: float = 25.0,
                 std_coeff: float = 25.0, cov_coeff: float = 1.0, eps: float = 1e-4,
                 variance: str = "authors_code"):
        self.sim_coeff = _checks.non_negative("sim_coeff", sim_coeff, hint="VICReg uses 25.")
        self.std_coeff = _checks.non_negative("std_coeff", std_coeff, hint="VICReg uses 25.")
        self.cov_coeff = _checks.non_negative("cov_coeff", cov_coeff, hint="VICReg uses 1.")
        self.eps = _checks.positive("eps", eps, hint="VICReg uses 1e-4.")
        _checks.choice("variance", variance, {"authors_code", "paper_eq6"})
        self.variance = variance
        self.encoder, self.M = encoder, embed_dim

    def parameters(self) -> Iterable[Tensor]:
        return self.encoder.parameters()

    def loss(self, view1: Tensor, view2: Tensor) -> Tensor:
        z1, z2 = embed_pair(self.encoder, view1, view2, self.M, min_batch=2)
        B, M = z1.shape[-2], z1.shape[-1]
        repr_loss = (z1 - z2).pow(2).mean((-2, -1))
        x = z1 - z1.mean(-2, keepdim=True)
        y = z2 - z2.mean(-2, keepdim=True)
        std_x = torch.sqrt(x.var(dim=-2) + self.eps)
        std_y = torch.sqrt(y.var(dim=-2) + self.eps)
        half = 0.5 if self.variance == "authors_code" else 1.0
        std_loss = torch.relu(1 - std_x).mean(-1) * half + torch.relu(1 - std_y).mean(-1) * half
        cov_x = x.transpose(-1, -2) @ x / (B - 1)
        cov_y = y.transpose(-1, -2) @ y / (B - 1)
        cov_loss = off_diagonal(cov_x).pow(2).sum(-1) / M + off_diagonal(cov_y).pow(2).sum(-1) / M
        return (self.sim_coeff * repr_loss + self.std_coeff * std_loss + self.cov_coeff * cov_loss).sum()

    def after_step(self) -> None:
        """Nothing to refresh."""


METHODS = {
    "barlow_twins": (BarlowTwins, {}),
    "vicreg": (VICReg, {}),
}
OPTIONS = {"BarlowTwins": {"lambda_offdiag", "decorrelation", "batchnorm", "bn_center", "bn_std"},
           "VICReg": {"sim_coeff", "std_coeff", "cov_coeff", "eps", "variance"}}
build = make_build(METHODS, OPTIONS)
