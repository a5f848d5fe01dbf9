"""A VICReg as a lab writes it from docs/conformance.md: an expander (Linear–BN–ReLU ×2 + Linear, Bardes et al.
2022 §4.1, 4× the embedding's width here) after the encoder the harness hands over, exposed as
``learner.projector``; the loss of Bardes et al.'s eqs. 1–6 on the expander's output (variance hinge on the std with
ε = 1e-4 and the authors' ½ per branch, covariance over d, coefficients 25 / 25 / 1)."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class LabVICReg:
    def __init__(self, encoder: nn.Module, embed_dim: int, sim_coeff: float = 25.0, std_coeff: float = 25.0,
                 cov_coeff: float = 1.0, eps: float = 1e-4):
        self.encoder, self.coeffs, self.eps = encoder, (sim_coeff, std_coeff, cov_coeff), eps
        d = 4 * embed_dim
        self.projector = nn.Sequential(nn.Linear(embed_dim, d), nn.BatchNorm1d(d), nn.ReLU(),
                                       nn.Linear(d, d), nn.BatchNorm1d(d), nn.ReLU(), nn.Linear(d, d))

    def parameters(self):
        yield from self.encoder.parameters()
        yield from self.projector.parameters()

    def _off_diagonal_squares(self, cov: torch.Tensor) -> torch.Tensor:
        return cov.pow(2).sum() - torch.diagonal(cov).pow(2).sum()

    def loss(self, view1: torch.Tensor, view2: torch.Tensor) -> torch.Tensor:
        x, y = self.projector(self.encoder(view1)), self.projector(self.encoder(view2))   # (B, d) each
        n, d = x.shape
        invariance = F.mse_loss(x, y)
        x, y = x - x.mean(0), y - y.mean(0)
        std_x, std_y = torch.sqrt(x.var(0) + self.eps), torch.sqrt(y.var(0) + self.eps)
        variance = F.relu(1 - std_x).mean() / 2 + F.relu(1 - std_y).mean() / 2
        covariance = (self._off_diagonal_squares(x.T @ x / (n - 1))
                      + self._off_diagonal_squares(y.T @ y / (n - 1))) / d
        lam, mu, nu = self.coeffs
        return lam * invariance + mu * variance + nu * covariance

    def after_step(self) -> None:
        pass


class LabVICRegAdapter:
    name = "lab_vicreg"
    capabilities = frozenset({"vicreg"})
    conventions = {"vicreg_variance": "authors_code"}

    def build(self, method, encoder, embed_dim, **options):
        if method != "vicreg":
            raise NotImplementedError(method)
        return LabVICReg(encoder, embed_dim, **options)


adapter = LabVICRegAdapter()
