"""Mechanics of the reference learners that the claims rely on."""
from __future__ import annotations

import torch
from ncspec.reference.linear import LinearEncoder, gaussian_views
from ncspec.reference.methods import build
from ncspec.reference.predictors import copy_predictor, correlation


def _enc(seed=0, S=2, M=3, N=5):
    return LinearEncoder(torch.randn(S, M, N, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))


def test_byol_ema_target_follows_momentum():
    enc = _enc()
    learner = build("byol", enc, 3, momentum=0.9, target_init=0.0)
    target = next(learner.target_encoder.parameters())
    assert torch.count_nonzero(target) == 0
    with torch.no_grad():
        enc.W.add_(1.0)
    learner.after_step()
    assert torch.allclose(target, 0.1 * enc.W.detach())      # θ_a ← m θ_a + (1 − m) θ


def test_learned_predictor_gradients_follow_alpha_p_and_weight_decay():
    enc = _enc(1)
    W_p0 = 0.3 * torch.eye(3, dtype=torch.float64).expand(2, 3, 3)
    x1, x2 = gaussian_views(32, 5, 0.1, generator=torch.Generator().manual_seed(2))
    plain = build("learned_predictor", _enc(1), 3, predictor_init=W_p0)
    gW0, gP0 = torch.autograd.grad(plain.loss(x1, x2), list(plain.parameters()))
    learner = build("learned_predictor", enc, 3, predictor_init=W_p0, alpha_p=0.5, weight_decay=0.1)
    gW, gP = torch.autograd.grad(learner.loss(x1, x2), list(learner.parameters()))
    assert torch.allclose(gW, gW0 + 0.1 * enc.W.detach())                  # ∇J + ηW
    assert torch.allclose(gP, 0.5 * gP0 + 0.1 * W_p0)                       # α_p ∇J + ηW_p


def test_directpred_update_frequency_caches_the_predictor():
    enc = _enc(3)
    learner = build("directpred", enc, 3, update_every=3)
    g = torch.Generator().manual_seed(4)
    preds = [learner.predictor(enc(gaussian_views(16, 5, 0.1, generator=g)[0]).detach()) for _ in range(4)]
    assert preds[0] is preds[1] is preds[2] and preds[3] is not preds[2]


def test_directcopy_predictor_is_normalised_correlation_plus_eps():
    z = torch.randn(64, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    C = correlation(z)
    W_P = copy_predictor(C, eps=0.25)
    assert torch.allclose(W_P, C / torch.linalg.matrix_norm(C) + 0.25 * torch.eye(4, dtype=torch.float64))
    ev = torch.linalg.eigvalsh(copy_predictor(C, norm="spectral"))
    assert abs(ev[-1].item() - 1.0) < 1e-12
