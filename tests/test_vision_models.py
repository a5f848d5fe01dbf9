"""Backbones, encoder, and the learner plumbing for deep encoders (served embeddings, EMA, fast path)."""
from __future__ import annotations

import pytest
import torch
from ncspec.reference.methods import build
from ncspec.reference.vision.models import forward_flops, make_backbone, make_encoder
from ncspec.reference.vision.served import EMA, Served, build_fast, learner_state, load_learner_state


@pytest.mark.parametrize("backbone", ["vgg11", "vgg11_nobn", "resnet18"])
@pytest.mark.parametrize("size", [32, 96])
def test_encoder_shapes(backbone, size):
    enc = make_encoder(backbone, proj_hidden=32, proj_out=16, width="tiny")
    x = torch.randn(4, 3, size, size)
    h, z = enc.forward_with_features(x)
    assert h.shape == (4, enc.feature_dim) and z.shape == (4, 16) and z.dtype == torch.float32
    assert torch.equal(enc.features(x), h)


def test_full_size_flops_match_the_anchors():
    """Measured: VGG11 0.306 / 2.75 GFLOP at 32 / 96 px, CIFAR ResNet-18 1.111 GFLOP (3×3 stem, no max-pool)."""
    assert abs(forward_flops(make_backbone("vgg11"), 32) / 1e9 - 0.306) < 0.002
    assert abs(forward_flops(make_backbone("vgg11"), 96) / 1e9 - 2.75) < 0.01
    assert abs(forward_flops(make_backbone("resnet18"), 32) / 1e9 - 1.111) < 0.002
    r = make_backbone("resnet18")
    assert r.stem[0].kernel_size == (3, 3) and r.stem[0].stride == (1, 1)
    assert not any(isinstance(m, torch.nn.MaxPool2d) for m in r.modules())


def _z(seed, B=64, M=8):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, M, generator=g, dtype=torch.float64) + 0.5


@pytest.mark.parametrize("method", ["simsiam", "isoloss"])
@pytest.mark.parametrize("form", ["euclidean", "cosine"])
def test_fast_learner_equals_the_reference(method, form):
    """Loss values and gradients of FastClosedForm equal ClosedFormSiamese over 3 calls (EMA correlation)."""
    opts = dict(form=form, alpha=0.5, normalize=True, eps=0.1, corr_ema=0.5)
    v1, v2 = torch.zeros(64, 1), torch.zeros(64, 1)
    lin = torch.nn.Linear(1, 1)
    ref_srv, fast_srv = Served(lin, 8), Served(lin, 8)
    ref, fast = build(method, ref_srv, 8, **opts), build_fast(method, fast_srv, 8, **opts)
    assert fast is not None
    for k in range(3):
        za, zb = _z(2 * k).requires_grad_(), _z(2 * k + 1)
        zc = za.detach().clone().requires_grad_()
        ref_srv.serve([(v1, za, None), (v2, zb, None)])
        fast_srv.serve([(v1, zc, None), (v2, zb, None)])
        lr, lf = ref.loss(v1, v2), fast.loss(v1, v2)
        lr.backward()
        lf.backward()
        assert torch.allclose(lr, lf, atol=1e-12) and torch.allclose(za.grad, zc.grad, atol=1e-12)


def test_served_routes_the_target_view_to_the_ema_network():
    v1, v2 = torch.zeros(4, 2), torch.zeros(4, 2)
    z1, z2, t1, t2 = (torch.full((4, 3), float(i)) for i in range(4))
    s = Served(torch.nn.Linear(2, 3), 3)
    s.serve([(v1, z1, t1), (v2, z2, t2)], target_view=v2)
    assert torch.equal(s(v1), z1) and torch.equal(s(v2), t2)
    s.serve([(v1, z1, t1), (v2, z2, t2)], target_view=v1)
    assert torch.equal(s(v1), t1) and torch.equal(s(v2), z2)
    with pytest.raises(RuntimeError, match="not one of this step's views"):
        s(torch.zeros(4, 2))


def test_ema_follows_the_cosine_momentum_schedule():
    net = torch.nn.Linear(2, 2)
    ema = EMA(net, 0.9)
    assert ema.momentum(0, 100) == pytest.approx(0.9) and ema.momentum(100, 100) == pytest.approx(1.0)
    before = ema.net.weight.detach().clone()
    with torch.no_grad():
        net.weight.add_(1.0)
    ema.update(net, 0.9)
    assert torch.allclose(ema.net.weight, 0.9 * before + 0.1 * net.weight)


def test_learner_state_round_trip_restores_the_correlation_estimate():
    v1, v2 = torch.zeros(64, 1), torch.zeros(64, 1)
    s = Served(torch.nn.Linear(1, 1), 8)
    a = build("isoloss", s, 8, corr_ema=0.9)
    s.serve([(v1, _z(0), None), (v2, _z(1), None)])
    a.loss(v1, v2)
    st = learner_state(a)
    b = build("isoloss", s, 8, corr_ema=0.9)
    load_learner_state(b, st)
    s.serve([(v1, _z(2), None), (v2, _z(3), None)])
    assert torch.equal(a.loss(v1, v2), b.loss(v1, v2))
    learned = build("learned_predictor", s, 8)
    st = learner_state(learned)
    with torch.no_grad():
        learned.V.add_(1.0)
    V = learned.V
    load_learner_state(learned, st)
    assert learned.V is V and torch.allclose(V, 0.5 * torch.eye(8))      # restored in place (the optimiser's tensor)
