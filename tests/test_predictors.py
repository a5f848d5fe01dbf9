"""Semantics of the closed-form predictors (reference/predictors.py)."""
from __future__ import annotations

import torch
from ncspec.reference.linear import LinearEncoder, gaussian_views
from ncspec.reference.methods import build
from ncspec.reference.predictors import EMACorrelation, correlation, eigen_predictor


def _C(seed=0, M=5):
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(M, M, generator=g, dtype=torch.float64)
    return A @ A.T / M


def test_predictor_shares_the_eigenbasis_and_raises_eigenvalues_to_alpha():
    C = _C()
    for alpha in (0.5, 1.0, 2.0):
        W_P = eigen_predictor(C, alpha)
        assert torch.allclose(W_P, W_P.T, atol=1e-12)
        assert torch.allclose(W_P @ C, C @ W_P, atol=1e-10)          # same eigenvectors
        assert torch.allclose(torch.linalg.eigvalsh(W_P), torch.linalg.eigvalsh(C) ** alpha, atol=1e-10)


def test_normalize_and_boost():
    C = _C(1)
    lam = torch.linalg.eigvalsh(C)
    ev = torch.linalg.eigvalsh(eigen_predictor(C, 0.5, normalize=True))
    assert abs(ev[-1].item() - 1.0) < 1e-12
    ev = torch.linalg.eigvalsh(eigen_predictor(C, 0.5, eps=0.1, boost="before"))
    assert torch.allclose(ev, (lam + 0.1) ** 0.5, atol=1e-10)
    ev = torch.linalg.eigvalsh(eigen_predictor(C, 0.5, eps=0.1, boost="after"))
    assert torch.allclose(ev, lam ** 0.5 + 0.1, atol=1e-10)


def test_predictor_is_detached_and_keeps_dtype():
    z = torch.randn(64, 4, requires_grad=True)
    W_P = eigen_predictor(correlation(z), 1.0)
    assert not W_P.requires_grad and W_P.dtype == torch.float32
    assert torch.allclose(W_P.double(), correlation(z.double()), atol=1e-5)   # α = 1: W_P = C


def test_ema_correlation_recursion():
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(32, 3, generator=g), torch.randn(32, 3, generator=g)
    ema = EMACorrelation(0.3)
    assert torch.equal(ema.update(z1), correlation(z1))
    assert torch.allclose(ema.update(z2), 0.3 * correlation(z1) + 0.7 * correlation(z2))


def test_learner_uses_the_ema_estimate():
    W = torch.randn(1, 3, 5, dtype=torch.float64)
    enc = LinearEncoder(W)
    learner = build("simsiam", enc, 3, corr_ema=0.5)
    x1, x2 = gaussian_views(16, 5, 0.1, generator=torch.Generator().manual_seed(1))
    y1, _ = gaussian_views(16, 5, 0.1, generator=torch.Generator().manual_seed(2))
    learner.loss(x1, x2)
    W_P = learner.predictor(enc(y1).detach())
    expected = eigen_predictor(0.5 * correlation(enc(x1)) + 0.5 * correlation(enc(y1)), 1.0)
    assert torch.allclose(W_P, expected, atol=1e-12)
