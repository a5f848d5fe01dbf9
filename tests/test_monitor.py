"""The collapse monitor on embeddings whose state is known by construction: its statistics are the claims'
quantities (J1's decomposition is exact on the batch; the trace of Cov(ẑ) is 1 − ‖s‖²), its verdicts need
persistence, name the claim that explains them, and it never syncs with the host while observing."""
from __future__ import annotations

import math
import warnings

import pytest
import torch
from ncspec.reference import metrics
from ncspec.reference.monitor import (
    COMPLETE,
    DIMENSIONAL,
    DIVERGING,
    HEALTHY,
    CollapseError,
    CollapseMonitor,
    CollapseWarning,
    Thresholds,
    observation,
)

B, M = 128, 32


def views(kind: str, seed: int = 0, b: int = B, m: int = M):
    """Two views of b samples: 'healthy' isotropic with view noise, 'complete' one point plus tiny noise,
    'rank2' spread in a 2-dim subspace (dimensional collapse), 'offset' healthy spread around a large common
    mean (the center vector dominates the *uncentred* correlation)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, m, generator=g)
    if kind == "complete":
        x = torch.ones(b, m) + 1e-3 * x
    elif kind == "rank2":
        x = x[:, :2] @ torch.randn(2, m, generator=g)
    elif kind == "offset":
        x = x + math.sqrt(160 / m) * torch.ones(b, m)           # ‖mean‖² = 160 against a spread of M = 32
    n1, n2 = (0.1 * torch.randn(b, m, generator=g) for _ in range(2))
    if kind == "rank2":
        P = torch.linalg.qr(x.T)[0][:, :2]
        n1, n2 = n1 @ P @ P.T, n2 @ P @ P.T                  # the view noise stays in the subspace
    if kind == "complete":
        n1, n2 = 1e-3 * n1, 1e-3 * n2
    return x + n1, x + n2


def run(kind_per_step, **kw) -> CollapseMonitor:
    mon = CollapseMonitor(mode="record", **kw)
    for t, kind in enumerate(kind_per_step):
        mon.observe(*views(kind, seed=t), step=t)
    mon.report()
    return mon


def test_statistics_are_the_claims_quantities():
    """J1 (Jha et al. 2024, §3) holds exactly on the batch in its U-statistic form; tr Cov(ẑ) = 1 − ‖s‖²; RankMe
    and the participation ratio equal ncspec.reference.metrics' on the same embeddings."""
    z1, z2 = views("healthy")
    mon = CollapseMonitor(mode="record")
    mon.observe(z1.double(), z2.double())
    mon.report()
    st = mon.history[0]
    assert st["invariance"] == pytest.approx(st["invariance_j1"], abs=1e-12)
    assert st["total_var"] == pytest.approx(1 - st["center_norm"] ** 2, abs=1e-12)
    assert st["rankme"] == pytest.approx(float(metrics.rankme(z1.double())), rel=1e-9)
    u = torch.nn.functional.normalize(torch.cat([z1, z2]).double(), dim=1)
    assert st["participation_ratio"] == pytest.approx(float(metrics.participation_ratio(u)), rel=1e-9)
    assert st["normalized_std"] == pytest.approx(0.5 * float(metrics.normalized_std(z1) + metrics.normalized_std(z2)),
                                                 rel=1e-6)
    assert st["live_dims"] == st["max_rank"] == M


@pytest.mark.parametrize("kind, state, claim", [("complete", COMPLETE, "J1"), ("rank2", DIMENSIONAL, "T2")])
def test_collapse_is_flagged_after_patience_observations_with_its_claim(kind, state, claim):
    mon = run([kind] * 5, thresholds=Thresholds(patience=3))
    assert [v.state for v in mon.verdicts] == [HEALTHY, HEALTHY, state, state, state]
    v = mon.verdict
    assert claim in v.claims and v.causes and claim in str(v)


def test_healthy_and_offset_embeddings_are_healthy_where_the_uncentred_ratio_false_alarms():
    """A false alarm once seen: a common component makes the uncentred correlation's participation ratio
    ≈ 1 (< 1.5, the old warning's threshold) although the spread around it is isotropic."""
    z1, _ = views("offset")
    assert float(metrics.participation_ratio(z1, center=False)) < 1.5
    mon = run(["offset"] * 4 + ["healthy"] * 4)
    assert not mon.ever_flagged, mon.first_flag()


def test_a_transient_excursion_raises_no_alarm():
    mon = run(["healthy", "complete", "complete", "healthy", "rank2", "healthy"], thresholds=Thresholds(patience=3))
    assert not mon.ever_flagged


def test_warmup_observations_are_never_judged():
    mon = run(["complete"] * 4, thresholds=Thresholds(patience=1, warmup=3))
    assert [v.state for v in mon.verdicts] == [HEALTHY, HEALTHY, HEALTHY, COMPLETE]


def test_nonfinite_embeddings_are_diverging_at_once():
    mon = CollapseMonitor(mode="record")
    z1, z2 = views("healthy")
    mon.observe(z1, z2)
    z1 = z1.clone()
    z1[3, 4] = float("nan")
    mon.observe(z1, z2)
    assert mon.report().state == DIVERGING


def test_modes_warn_once_and_raise():
    mon = CollapseMonitor(mode="warn", thresholds=Thresholds(patience=1))
    with pytest.warns(CollapseWarning, match="complete collapse"):
        mon.observe(*views("complete"))
        mon.report()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mon.observe(*views("complete"))
        mon.report()                                  # same state: no second warning
    gate = CollapseMonitor(mode="raise", thresholds=Thresholds(patience=1), method="barlow_twins")
    gate.observe(*views("complete"))
    with pytest.raises(CollapseError, match="J5") as e:
        gate.report()
    assert e.value.verdict.state == COMPLETE and "BatchNorm" in str(e.value)


def test_observe_never_syncs_with_the_host(monkeypatch):
    """Only report() moves numbers to the host: observe() with item/tolist/bool/float forbidden still works."""
    mon = CollapseMonitor(mode="record", max_pending=100)
    online = torch.nn.Linear(4, 4)
    target = torch.nn.Linear(4, 4)
    data = [views("healthy", seed=s) for s in range(3)]

    def forbidden(*a, **k):
        raise AssertionError("host sync inside observe()")
    for name in ("item", "tolist", "__bool__", "__float__", "__int__", "cpu", "numpy"):
        monkeypatch.setattr(torch.Tensor, name, forbidden)
    for z1, z2 in data:
        mon.observe(z1, z2, predictor=torch.eye(M), online=online, target=target)
    monkeypatch.undo()
    assert mon.report().healthy and len(mon.history) == 3


def test_every_k_th_call_is_observed_and_max_pending_bounds_the_queue():
    mon = CollapseMonitor(mode="record", every=3, max_pending=2)
    for t in range(7):
        mon.observe(*views("healthy", seed=t), step=t)
    assert [h["step"] for h in mon.history] == [0, 3]          # a report of its own after two observations
    mon.report()
    assert [h["step"] for h in mon.history] == [0, 3, 6]


def test_predictor_alignment_and_fixed_point():
    """T2/C3: W_p = F^½ commutes with the correlation F (alignment 0); a random W_p does not. H1: the eigenvalues
    of W_p = I sit at the fixed point ω = 1."""
    z1, z2 = (z.double() for z in views("healthy"))
    F = z1.T @ z1 / B
    lam, U = torch.linalg.eigh(F)
    aligned = observation(z1, z2, predictor=(U * lam.sqrt()) @ U.T)["predictor_alignment"]
    rand = observation(z1, z2, predictor=torch.randn(M, M, dtype=torch.float64,
                                                     generator=torch.Generator().manual_seed(1)))
    assert float(aligned) < 1e-10 and float(rand["predictor_alignment"]) > 0.1
    mon = CollapseMonitor(mode="record")
    mon.observe(z1, z2, predictor=torch.eye(M))
    mon.report()
    assert mon.history[0]["predictor_fixed_point_gap"] == pytest.approx(0, abs=1e-12)


def test_ema_lag_and_the_usual_ema_faults():
    """C2: the lag ‖θ − ξ‖/‖θ‖; a target that is the online network itself, and one that never moves
    (momentum stuck at 1), are WARNINGs of the verdict (a CollapseWarning in warn mode), not notes."""
    online = torch.nn.Linear(8, 8)
    target = torch.nn.Linear(8, 8)
    with torch.no_grad():
        for p, q in zip(target.parameters(), online.parameters()):
            p.copy_(q)
        online.weight.add_(1.0)
    mon = CollapseMonitor(mode="warn", thresholds=Thresholds(frozen_target=3))
    for t in range(3):
        with torch.no_grad():
            online.weight.add_(0.1)                 # the online network moves, the target does not
        mon.observe(*views("healthy", seed=t), online=online, target=target)
    with pytest.warns(CollapseWarning, match="has not moved in 3 observations since the first"):
        v = mon.report()
    with torch.no_grad():
        theta = torch.cat([online.weight.flatten(), online.bias])
        expected = float((online.weight - target.weight).norm() / theta.norm())
    assert mon.history[-1]["ema_lag"] == pytest.approx(expected, rel=1e-6)
    assert v.healthy and any("momentum stuck at 1" in w for w in v.warnings)
    assert str(v).splitlines()[1].startswith("  WARNING: the EMA target has not moved")
    assert mon.verdicts[1].warnings == ()                         # 2 observations are not yet 3
    same = CollapseMonitor(mode="record")
    same.observe(*views("healthy"), online=online, target=online)
    assert any("same object" in w for w in same.report().warnings)


def test_a_target_that_moved_and_then_stopped_is_a_note_not_a_warning():
    """m reaching 1 at the end of BYOL's cosine schedule (Grill et al. 2020, §3.2) stops a target that had moved:
    a note; the warning is for a target that never moved."""
    online, target = torch.nn.Linear(8, 8), torch.nn.Linear(8, 8)
    mon = CollapseMonitor(mode="record")
    for t in range(8):
        with torch.no_grad():
            online.weight.add_(0.1)
            if t < 3:
                target.weight.add_(0.01)
        mon.observe(*views("healthy", seed=t), online=online, target=target)
    v = mon.report()
    assert mon.first_warning() is None and any("momentum at 1" in n for n in v.notes)


@pytest.mark.parametrize("bad, match", [
    (lambda: (torch.randn(8),), "batch of embeddings"),
    (lambda: (torch.randn(1, 8),), "B >= 2"),
    (lambda: (torch.randn(8, 4), torch.randn(8, 5)), "two views of the same batch"),
    (lambda: (torch.randint(0, 3, (8, 4)),), "floating point"),
    (lambda: (torch.randn(8, 2, 2),), "flatten"),
])
def test_bad_input_names_the_fix(bad, match):
    with pytest.raises((ValueError, TypeError), match=match):
        CollapseMonitor().observe(*bad())


def test_bad_options_name_the_fix():
    with pytest.raises(ValueError, match="mode must be one of"):
        CollapseMonitor(mode="loud")
    with pytest.raises(ValueError, match="patience"):
        Thresholds(patience=0)
    with pytest.raises(ValueError, match="both online= and target="):
        CollapseMonitor().observe(*views("healthy"), online=torch.nn.Linear(2, 2))


def test_batch_standardised_outputs_are_judged_against_the_floor_they_allow():
    """A BatchNorm without affine parameters at the output (SimSiam's and lightly's projectors) keeps every feature
    at mean 0, so the most collapsed batch is B − 1 samples on one ray and one opposite: 1 − ‖s‖² = 4(B − 1)/B²
    (0.0615 at B = 64, above the 0.05 of unstandardised outputs). That batch is complete collapse; standardised
    isotropic embeddings are healthy."""
    b = 64
    u = torch.full((b,), -1.0)
    u[0] = b - 1.0                                                     # mean 0
    w = torch.sign(torch.randn(M, generator=torch.Generator().manual_seed(0)))
    z = torch.outer(u, w)
    z = (z - z.mean(0)) / z.std(0, unbiased=False)                     # batch-standardised features
    g = torch.Generator().manual_seed(1)
    z1, z2 = z + 1e-4 * torch.randn(b, M, generator=g), z + 1e-4 * torch.randn(b, M, generator=g)
    mon = CollapseMonitor(mode="record", thresholds=Thresholds(patience=1))
    mon.observe(z1, z2)
    v = mon.report()
    assert mon.history[0]["total_var"] == pytest.approx(4 * (b - 1) / b**2, rel=1e-3)
    assert v.state == COMPLETE and "batch-standardised" in v.reason
    x = torch.randn(b, M, generator=g)
    x = (x - x.mean(0)) / x.std(0, unbiased=False)
    healthy = CollapseMonitor(mode="record", thresholds=Thresholds(patience=1))
    healthy.observe(x, x + 0.1 * torch.randn(b, M, generator=g))
    assert healthy.report().healthy


def _standardise(z):
    return (z - z.mean(0)) / z.std(0, unbiased=False)


def test_batch_standardised_outputs_on_one_line_are_complete_collapse():
    """Standardised outputs cannot meet in one point; their collapse puts them on one line through the origin,
    z_i ≈ c_i w with mean c = 0 (rank 1). lightly's SimSiam without stop-grad drifts there with ~90 % of the samples
    on one ray and ~10 % on the other, so 1 − ‖s‖² ≈ 0.36 stays far above the point rule's threshold while the mean
    squared distance of ẑ from the line, 1 − λ_max(E ẑẑᵀ), falls to ~0.01 (docs/monitor.md). That batch is complete
    collapse, explained by J1 and, for SimSiam, a missing stop-grad. The same ẑ from unstandardised outputs (z scaled
    by 2: same directions, variance 4) is not judged by the line rule; a standardised batch with one dominant but
    not exclusive direction is healthy."""
    b = 64
    g = torch.Generator().manual_seed(0)
    c = torch.full((b,), 1.0)
    c[: b // 10] = -9.0                                                 # ~10 % on the opposite ray
    w = torch.randn(M, generator=g)
    line = _standardise(torch.outer(c - c.mean(), w) + 0.05 * torch.randn(b, M, generator=g))
    z1, z2 = line, _standardise(line + 0.02 * torch.randn(b, M, generator=g))
    mon = CollapseMonitor(mode="record", method="SimSiamNoStopGrad", thresholds=Thresholds(patience=1))
    mon.observe(z1, z2)
    v = mon.report()
    st = mon.history[0]
    assert st["total_var"] > 0.3 and st["line_var"] < 0.05 and st["line_var"] <= st["total_var"]
    assert v.state == COMPLETE and "one line through the origin" in v.reason
    assert {"J1", "H2"} <= set(v.claims) and "stop-grad missing" in str(v)

    scaled = CollapseMonitor(mode="record", thresholds=Thresholds(patience=1))
    scaled.observe(2 * z1, 2 * z2)
    assert scaled.report().state != COMPLETE and scaled.history[0]["line_var"] == pytest.approx(st["line_var"])

    x = _standardise(torch.outer(torch.randn(b, generator=g), w) + 0.8 * torch.randn(b, M, generator=g))
    anisotropic = CollapseMonitor(mode="record", thresholds=Thresholds(patience=1))
    anisotropic.observe(x, _standardise(x + 0.1 * torch.randn(b, M, generator=g)))
    assert anisotropic.report().healthy
    assert 0.05 < anisotropic.history[0]["line_var"] < 0.8          # one direction dominates, not exclusively


@pytest.mark.parametrize("batch,dim", [(64, 8), (16, 256), (3, 8)])
def test_line_statistic_is_the_same_whichever_side_the_gram_is_taken(batch, dim):
    """1 − λ_max(E ẑẑᵀ) and the dimension reported equal their definitions whether the pooled batch is taller
    than wide (Gram over features) or not (Gram over samples: a CI run with B = 16, M = 256 crashed on it)."""
    g = torch.Generator().manual_seed(batch)
    z1, z2 = torch.randn(batch, dim, generator=g) + 1.0, torch.randn(batch, dim, generator=g)
    mon = CollapseMonitor(mode="record", thresholds=Thresholds(patience=1))
    mon.observe(z1, z2)
    mon.report()
    u = torch.nn.functional.normalize(torch.cat([z1, z2]).double(), dim=-1)
    expected = 1 - torch.linalg.eigvalsh(u.T @ u / u.shape[0])[-1].item()
    assert mon.history[0]["line_var"] == pytest.approx(expected, abs=1e-6)
    assert mon.history[0]["dim"] == dim and mon.history[0]["max_rank"] == min(dim, 2 * batch - 1)


def _standardised_subspace(k: int, seed: int, b: int = 64, m: int = 64, floor: float = 0.02):
    """Two views of batch-standardised embeddings whose variance sits in k directions (plus an isotropic floor
    small enough to leave every direction live): what a BN-ended projector's collapse looks like."""
    g = torch.Generator().manual_seed(seed)
    basis = torch.linalg.qr(torch.randn(m, m, generator=g))[0][:, :k]
    x = torch.randn(b, k, generator=g) @ basis.T + floor * torch.randn(b, m, generator=g)
    return _standardise(x), _standardise(x + 0.05 * torch.randn(b, m, generator=g) @ basis @ basis.T)


def test_batch_standardised_outputs_that_concentrate_are_dimensional_collapse_naming_the_stop_grad():
    """A BatchNorm at the output keeps every feature at variance 1: ‖s‖ stays small and every direction stays live,
    so neither the point rule nor the live-direction count sees the collapse. The spectrum's concentration relative
    to the run's own start does: 5 observations spread over 40 directions, then 3 mostly in 4 directions
    (effective rank 0.18 of the start, < 0.22) are dimensional collapse whose first cause, for SimSiam, is the
    missing stop-grad; the loss passed to observe is quoted against its collapsed value −1. A run that stays spread
    is healthy, and the same concentration of outputs that are not batch-standardised is not judged by this rule."""
    mon = CollapseMonitor(mode="record", method="simsiam")
    for t in range(5):
        mon.observe(*_standardised_subspace(40, t), step=t, loss=-0.5)
    for t in range(5, 8):
        mon.observe(*_standardised_subspace(4, t, floor=0.005), step=t, loss=torch.tensor(-0.97))
    v = mon.report()
    st = mon.history[-1]
    assert st["live_dims"] > 32 and st["center_norm"] < 0.5 and st["rank_ratio"] < 0.22     # 42 of 64 live
    assert v.state == DIMENSIONAL and v.step == 7 and "concentrated" in v.reason and "−1" in v.reason
    assert "stop-grad missing" in v.causes[0] and {"J1", "J2", "H2"} <= set(v.claims)
    assert [w.state for w in mon.verdicts[:7]] == [HEALTHY] * 7       # patience 3: flagged at the third

    spread = CollapseMonitor(mode="record", method="simsiam")
    for t in range(10):
        spread.observe(*_standardised_subspace(40, t), step=t)
    assert spread.report().healthy and not spread.ever_flagged
    assert min(h["rank_ratio"] for h in spread.history[5:]) > 0.5

    raw = CollapseMonitor(mode="record", method="simsiam")
    for t in range(8):
        z1, z2 = _standardised_subspace(40, t) if t < 5 else _standardised_subspace(4, t, floor=0.005)
        raw.observe(3 * z1, 3 * z2, step=t)                       # same ẑ, features of variance 9
    assert not any(v.state == DIMENSIONAL and "concentrated" in v.reason for v in raw.verdicts)
