"""Unit tests for the center-vector toolkit: encoders, metrics, toy data, the learners of
``reference/methods/{center,contrastive,redundancy,clustering}.py`` and the closed forms."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from ncspec.reference import metrics, toy
from ncspec.reference.encoders import MLP, Identity, MLPEncoder, batch_norm
from ncspec.reference.methods import center, clustering, contrastive, redundancy
from ncspec.reference.methods.clustering import sinkhorn
from ncspec.reference.theory import centervector as th

FAMILIES = (center, contrastive, redundancy, clustering)
ALL_METHODS = sorted(m for f in FAMILIES for m in f.METHODS)


def build(method, encoder, embed_dim, **options):
    for f in FAMILIES:
        if method in f.METHODS:
            return f.build(method, encoder, embed_dim, **options)
    raise KeyError(method)


def unit_rows(*shape, seed=0):
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return x / x.norm(dim=-1, keepdim=True)


# ----------------------------------------------------------------------------- encoders
def test_mlp_shapes_and_replica_independence():
    enc = MLPEncoder(3, (8, 8), 4, projector=(8, 5), replicas=3, generator=torch.Generator().manual_seed(0))
    x = torch.randn(3, 10, 3)
    assert enc(x).shape == (3, 10, 5) and enc.represent(x).shape == (3, 10, 4)
    assert enc(x[0]).shape == (3, 10, 5)                    # (B, N) is shared by all replicas
    # replica 0's output does not depend on replica 1's inputs
    x2 = x.clone()
    x2[1] += 5.0
    assert torch.equal(enc(x)[0], enc(x2)[0])


def test_batch_norm_matches_torch_training_mode():
    h = torch.randn(2, 16, 5, dtype=torch.float64) * 3 + 1
    ref = torch.stack([torch.nn.functional.batch_norm(h[s], None, None, training=True, eps=1e-5) for s in range(2)])
    assert torch.allclose(batch_norm(h), ref, atol=1e-12)
    scaled = batch_norm(h, center=False)
    assert torch.allclose(scaled, h / torch.sqrt(h.pow(2).mean(-2, keepdim=True) + 1e-5))


@pytest.mark.parametrize("bad, match", [
    (torch.randn(10, 4), "input dimension 4"),
    (torch.randn(4, 10, 3), "S = 2"),
    (torch.randn(10, 3, dtype=torch.float64), "dtype"),
])
def test_mlp_rejects_bad_inputs(bad, match):
    with pytest.raises(ValueError, match=match):
        MLP((3, 8, 2), replicas=2)(bad)


def test_mlp_rejects_bad_dims():
    with pytest.raises(ValueError, match="at least two positive ints"):
        MLP((3,))


# ----------------------------------------------------------------------------- metrics
def test_center_vector_extremes():
    v = unit_rows(1, 5)
    assert torch.allclose(metrics.center_norm(v.expand(7, 5) * 3), torch.tensor(1.0, dtype=torch.float64))
    assert metrics.center_norm(torch.cat([v, -v])).item() == pytest.approx(0.0, abs=1e-12)


def test_center_decomposition_matches_theory():
    views = unit_rows(2, 3, 9, 4)
    s, r = metrics.center_decomposition(views)
    s_sq, R = th.empirical_moments(views)
    assert torch.allclose(s.pow(2).sum(-1), s_sq) and torch.allclose(r.pow(2).sum(-1).mean(-1), R)
    assert torch.allclose(metrics.residual_sq(views), R)


def test_rankme_definition_and_bounds():
    z = torch.randn(50, 6, dtype=torch.float64)
    sig = torch.linalg.svdvals(z)
    p = sig / sig.sum() + 1e-7
    assert metrics.rankme(z).item() == pytest.approx(math.exp(-(p * p.log()).sum().item()))
    assert metrics.rankme(torch.eye(6, dtype=torch.float64)).item() == pytest.approx(6.0, rel=1e-5)
    collapsed = torch.ones(20, 6, dtype=torch.float64)
    assert metrics.rankme(collapsed).item() == pytest.approx(1.0, rel=1e-5)


def test_participation_ratio():
    z = torch.cat([torch.eye(4), -torch.eye(4)]).double()
    assert metrics.participation_ratio(z).item() == pytest.approx(4.0)
    line = torch.randn(30, 1, dtype=torch.float64) * torch.tensor([[1.0, 2.0, 0.0]], dtype=torch.float64)
    assert metrics.participation_ratio(line).item() == pytest.approx(1.0)
    assert metrics.participation_ratio(torch.ones(5, 3)).item() == 0.0


def test_normalized_std():
    assert metrics.normalized_std(torch.ones(8, 4)).item() == pytest.approx(0.0, abs=1e-7)
    with pytest.raises(ValueError, match="B >= 2"):
        metrics.normalized_std(torch.ones(1, 4))


def _knn_brute(train_z, train_y, test_z, k, t, C):
    tz, qz = F.normalize(train_z, dim=-1), F.normalize(test_z, dim=-1)
    correct = []
    for q in qz:
        sim = tz @ q
        top = sim.topk(min(k, len(sim)))
        score = torch.zeros(C, dtype=sim.dtype)
        for w, i in zip(top.values, top.indices):
            score[train_y[i]] += torch.exp(w / t)
        correct.append(score.argmax())
    return torch.stack(correct)


def test_knn_accuracy_matches_brute_force():
    g = torch.Generator().manual_seed(1)
    train_z, test_z = torch.randn(2, 40, 3, generator=g), torch.randn(2, 15, 3, generator=g)
    train_y, test_y = torch.randint(0, 3, (2, 40), generator=g), torch.randint(0, 3, (2, 15), generator=g)
    acc = metrics.knn_accuracy(train_z, train_y, test_z, test_y, k=7, temperature=0.2, num_classes=3)
    for s in range(2):
        pred = _knn_brute(train_z[s], train_y[s], test_z[s], 7, 0.2, 3)
        assert acc[s].item() == pytest.approx((pred == test_y[s]).float().mean().item())


def test_knn_accuracy_validates():
    z, y = torch.randn(10, 3), torch.zeros(10, dtype=torch.long)
    with pytest.raises(TypeError, match="integer class labels"):
        metrics.knn_accuracy(z, y.float(), z, y)
    with pytest.raises(ValueError, match="does not match"):
        metrics.knn_accuracy(z, y[:5], z, y)
    with pytest.raises(ValueError, match="feature dimension"):
        metrics.knn_accuracy(z, y, torch.randn(10, 4), y)


# ----------------------------------------------------------------------------- toy data
def test_toy_sets():
    x, y = toy.blobs(100, centers=4, generator=torch.Generator().manual_seed(0))
    assert x.shape == (100, 2) and set(y.tolist()) == {0, 1, 2, 3}
    x, y = toy.moons(100, generator=torch.Generator().manual_seed(0))
    assert x.shape == (100, 2) and set(y.tolist()) == {0, 1}
    d = toy.make("moons", replicas=2, n_train=64, n_test=32, nuisance=3)
    assert d.x_train.shape == (2, 64, 5) and d.y_test.shape == (2, 32) and d.nuisance == 3
    sig = d.x_train[..., :2]
    assert sig.mean(1).abs().max() < 1e-5 and (sig.std(1) - 1).abs().max() < 1e-5
    both = toy.concat(d, toy.make("blob", replicas=1, n_train=64, n_test=32, nuisance=3))
    assert both.replicas == 3 and both.names == ("moons", "moons", "blob")
    with pytest.raises(ValueError, match="split sizes"):
        toy.concat(d, toy.make("blob", replicas=1, n_train=32, n_test=32, nuisance=3))
    with pytest.raises(ValueError, match="must be one of"):
        toy.make("spirals")


def test_augment_redraws_the_nuisance_and_jitters_the_signal():
    x = torch.zeros(4, 50, 6)
    x[..., :2] = 1.0
    a = toy.augment(x, sigma=0.0, scale=0.2, nuisance=4, generator=torch.Generator().manual_seed(0))
    ratio = a[..., 0]
    assert ((ratio >= 0.8) & (ratio <= 1.2)).all() and torch.equal(a[..., 0], a[..., 1])
    assert a[..., 2:].std() > 0.5                                       # fresh N(0, 1) nuisance
    with pytest.raises(ValueError, match="scale must be"):
        toy.augment(x, scale=1.5)
    with pytest.raises(ValueError, match="nuisance must be"):
        toy.augment(x, nuisance=6)


def test_train_records_and_validates():
    d = toy.make("blob", replicas=2, n_train=64, n_test=32, nuisance=2)
    run = toy.run(build, "lsimple", d, steps=6, batch=16, record_every=3)
    assert run.steps.tolist() == [0, 3, 6] and run.center_norm.shape == (3, 2) and run.knn.shape == (3, 2)
    assert run.final("knn", "blob").shape == (2,)
    enc = MLPEncoder(4, (8,), 4, replicas=3)
    with pytest.raises(ValueError, match="replicas"):
        toy.train(build("lsimple", enc, 4), enc, d, steps=1)
    with pytest.raises(TypeError, match="adapter protocol"):
        toy.train(object(), enc, d)


# ----------------------------------------------------------------------------- learners
@pytest.mark.parametrize("method", ALL_METHODS)
def test_every_learner_trains_each_replica_independently(method):
    """loss() sums per-replica losses: replica 0's gradient is the same whether or not replica 1 exists."""
    torch.manual_seed(0)
    enc = MLPEncoder(3, (8,), 6, replicas=2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    learner = build(method, enc, 6)
    x1, x2 = torch.randn(2, 12, 3, dtype=torch.float64), torch.randn(2, 12, 3, dtype=torch.float64)
    loss = learner.loss(x1, x2)
    assert loss.dim() == 0 and torch.isfinite(loss)
    loss.backward()
    g_both = enc.backbone.weights[0].grad[0].clone()
    enc.zero_grad()
    x1b, x2b = x1.clone(), x2.clone()
    x1b[1], x2b[1] = torch.randn(12, 3, dtype=torch.float64), torch.randn(12, 3, dtype=torch.float64)
    learner2 = build(method, enc, 6)
    learner2.loss(x1b, x2b).backward()
    assert torch.allclose(enc.backbone.weights[0].grad[0], g_both, atol=1e-12)
    learner.after_step()


@pytest.mark.parametrize("method", ALL_METHODS)
def test_build_rejects_unknown_options_and_wrong_embed_dim(method):
    enc = MLPEncoder(3, (8,), 6)
    with pytest.raises(TypeError, match="unknown option"):
        build(method, enc, 6, not_an_option=1)
    with pytest.raises(ValueError, match="embed_dim"):
        build(method, enc, 5)


def test_barlow_twins_matches_the_official_loss():
    z1, z2 = torch.randn(32, 6, dtype=torch.float64), torch.randn(32, 6, dtype=torch.float64)
    bn = torch.nn.BatchNorm1d(6, affine=False).double()
    c = bn(z1).T @ bn(z2) / 32
    off = c.flatten()[:-1].view(5, 7)[:, 1:].flatten()
    want = (torch.diagonal(c) - 1).pow(2).sum() + 0.0051 * off.pow(2).sum()
    got = build("barlow_twins", Identity(6), 6).loss(z1, z2)
    assert got.item() == pytest.approx(want.item(), rel=1e-12)
    no_decor = build("barlow_twins", Identity(6), 6, decorrelation=False).loss(z1, z2)
    assert no_decor.item() == pytest.approx((torch.diagonal(c) - 1).pow(2).sum().item(), rel=1e-12)
    raw = build("barlow_twins", Identity(6), 6, batchnorm=False, decorrelation=False).loss(z1, z2)
    assert raw.item() == pytest.approx((torch.diagonal(z1.T @ z2 / 32) - 1).pow(2).sum().item(), rel=1e-12)


def test_vicreg_matches_the_official_loss():
    x, y = torch.randn(32, 6, dtype=torch.float64), torch.randn(32, 6, dtype=torch.float64) * 0.5
    repr_loss = F.mse_loss(x, y)
    xc, yc = x - x.mean(0), y - y.mean(0)
    std_x, std_y = torch.sqrt(xc.var(dim=0) + 0.0001), torch.sqrt(yc.var(dim=0) + 0.0001)
    std_loss = torch.mean(F.relu(1 - std_x)) / 2 + torch.mean(F.relu(1 - std_y)) / 2
    cov_x, cov_y = xc.T @ xc / 31, yc.T @ yc / 31
    off = lambda m: m.flatten()[:-1].view(5, 7)[:, 1:].flatten()
    cov_loss = off(cov_x).pow(2).sum() / 6 + off(cov_y).pow(2).sum() / 6
    want = 25 * repr_loss + 25 * std_loss + cov_loss
    assert build("vicreg", Identity(6), 6).loss(x, y).item() == pytest.approx(want.item(), rel=1e-12)


def test_simclr_matches_cross_entropy_form():
    z1, z2 = torch.randn(8, 5, dtype=torch.float64), torch.randn(8, 5, dtype=torch.float64)
    z = F.normalize(torch.cat([z1, z2]), dim=-1)
    logits = z @ z.T / 0.5
    logits.fill_diagonal_(float("-inf"))
    target = torch.cat([torch.arange(8, 16), torch.arange(0, 8)])
    want = F.cross_entropy(logits, target)
    assert build("simclr", Identity(5), 5).loss(z1, z2).item() == pytest.approx(want.item(), rel=1e-12)


def test_triplet_literal_definition():
    z1, z2 = unit_rows(6, 4, seed=1), unit_rows(6, 4, seed=2)
    total = 0.0
    for i in range(6):
        for a, p in ((z1[i], z2[i]), (z2[i], z1[i])):
            negs = [(a - z).pow(2).sum() for j in range(6) if j != i for z in (z1[j], z2[j])]
            total += (a - p).pow(2).sum() - torch.stack(negs).mean()
    got = build("triplet", Identity(4), 4).loss(z1, z2)
    assert got.item() == pytest.approx(total.item() / 12, abs=1e-12)


def _official_sinkhorn(out, eps, iters):
    Q = torch.exp(out / eps).t()
    B, K = Q.shape[1], Q.shape[0]
    Q /= Q.sum()
    for _ in range(iters):
        Q /= Q.sum(dim=1, keepdim=True)
        Q /= K
        Q /= Q.sum(dim=0, keepdim=True)
        Q /= B
    Q *= B
    return Q.t()


def test_sinkhorn_matches_official_and_equipartitions():
    scores = unit_rows(20, 8) @ unit_rows(5, 8, seed=3).T               # (B, K)
    assert torch.allclose(sinkhorn(scores, eps=0.5, iters=3), _official_sinkhorn(scores, 0.5, 3), atol=1e-12)
    Q = sinkhorn(scores, eps=0.05, iters=200)
    assert torch.allclose(Q.sum(-1), torch.ones(20, dtype=torch.float64))
    assert torch.allclose(Q.sum(-2), torch.full((5,), 20 / 5, dtype=torch.float64), atol=1e-6)


def test_dino_center_and_teacher_updates():
    enc = MLPEncoder(3, (8,), 6, replicas=2, dtype=torch.float64)
    dino = build("dino", enc, 6, n_prototypes=5, center_momentum=0.9, teacher_momentum=0.5)
    x1, x2 = torch.randn(2, 10, 3, dtype=torch.float64), torch.randn(2, 10, 3, dtype=torch.float64)
    dino.loss(x1, x2)
    batch_center = dino._batch_center.clone()
    assert batch_center.shape == (2, 1, 5)
    with torch.no_grad():
        for p in enc.parameters():
            p.add_(1.0)
    before = [p.clone() for p in dino.teacher.parameters()]
    dino.after_step()
    assert torch.allclose(dino.center, 0.1 * batch_center)
    for pt, p0, ps in zip(dino.teacher.parameters(), before, enc.parameters()):
        assert torch.allclose(pt, 0.5 * p0 + 0.5 * ps)
    # the student's prototypes are trained, the teacher's are not
    assert dino.C.requires_grad and not dino.teacher_C.requires_grad


def test_dino_centering_off_ignores_the_center():
    enc = MLPEncoder(3, (8,), 6, dtype=torch.float64)
    x1, x2 = torch.randn(10, 3, dtype=torch.float64), torch.randn(10, 3, dtype=torch.float64)
    on = build("dino", enc, 6, n_prototypes=5)
    off = build("dino", enc, 6, n_prototypes=5, centering=False)
    on.center = off.center = torch.randn(1, 1, 5, dtype=torch.float64)
    assert off.loss(x1, x2).item() != pytest.approx(on.loss(x1, x2).item())
    off.center = torch.zeros(1, 1, 5, dtype=torch.float64)
    a = off.loss(x1, x2).item()
    off.center = torch.randn(1, 1, 5, dtype=torch.float64)
    assert off.loss(x1, x2).item() == pytest.approx(a)


def test_swav_prototypes_stay_unit():
    enc = MLPEncoder(3, (8,), 6, replicas=2)
    swav = build("swav", enc, 6, n_prototypes=7)
    assert swav.C.shape == (2, 7, 6)
    with torch.no_grad():
        swav.C.mul_(3.0)
    swav.after_step()
    assert torch.allclose(swav.C.norm(dim=-1), torch.ones(2, 7))


def test_simsiam_stop_gradient():
    enc = Identity(4)
    z1 = unit_rows(6, 4, seed=1).requires_grad_(True)
    z2 = unit_rows(6, 4, seed=2).requires_grad_(True)
    build("simsiam_mlp", enc, 4, predictor=False).loss(z1, z2).backward()
    g_sg = z1.grad.clone()
    z1.grad = None
    build("simsiam_mlp", enc, 4, predictor=False, stop_grad="none").loss(z1, z2).backward()
    assert torch.allclose(z1.grad, 2 * g_sg)                          # both symmetric terms now reach z1
    with pytest.raises(ValueError, match="stop_grad"):
        build("simsiam_mlp", enc, 4, stop_grad="online")


def test_simsiam_predictor_parameters():
    enc = MLPEncoder(3, (8,), 6, replicas=2)
    with_p = list(build("simsiam_mlp", enc, 6).parameters())
    without = list(build("simsiam_mlp", enc, 6, predictor=False).parameters())
    assert len(with_p) > len(without) == len(list(enc.parameters()))


def test_lsimple_penalty_forms():
    z1, z2 = unit_rows(9, 5, seed=1), unit_rows(9, 5, seed=2)
    views = torch.stack([z1, z2])
    s_sq, R = th.empirical_moments(views)
    for pen in ("squared", "norm"):
        got = build("lsimple", Identity(5), 5, lam=1.5, penalty=pen).loss(z1, z2)
        assert got.item() == pytest.approx(th.lsimple(s_sq, R, 1.5, pen).item(), abs=1e-12)
    with pytest.raises(ValueError, match="lam"):
        build("lsimple", Identity(5), 5, lam=-1.0)


# ----------------------------------------------------------------------------- theory
def test_unbiased_moments_are_unbiased_in_expectation():
    """E[‖s‖²_U] = ‖s‖² for i.i.d. samples: average over many batches drawn from a fixed population."""
    g = torch.Generator().manual_seed(0)
    pop = unit_rows(400, 2, 3, seed=5) + 0.8                             # (P, V=2, M)
    pop = pop / pop.norm(dim=-1, keepdim=True)
    s_true = pop.mean((0, 1)).pow(2).sum()
    idx = torch.randint(0, 400, (4000, 5), generator=g)
    views = pop[idx].transpose(-2, -3)                                  # (T, V, B=5, M)
    s_U, _ = th.unbiased_moments(views)
    s_plug, _ = th.empirical_moments(views)
    assert abs(s_U.mean() - s_true) < 0.01 < abs(s_plug.mean() - s_true)


def test_theory_validates():
    with pytest.raises(ValueError, match="V >= 2"):
        th.unbiased_moments(unit_rows(1, 4, 3))
    with pytest.raises(ValueError, match="penalty"):
        th.lsimple(0.1, 0.2, 1.0, "cube")


def test_figure_rejects_a_file_as_out_dir(tmp_path):
    from ncspec.reference.figures.centervector import centervector_figure
    f = tmp_path / "not_a_dir"
    f.write_text("x")
    with pytest.raises(ValueError, match="not a directory"):
        centervector_figure(f)
