"""The monitor's rules of issue 26 on constructed embeddings: a collapse that hovers at its threshold (a window rule,
k of the last n observations at the relaxed threshold), explosive growth of the loss or ‖z‖ flagged before the
first non-finite value, VICReg judged on the std its variance term holds at γ = 1, Barlow Twins on the correlations
its redundancy-reduction term drives to 0 — each with a control that the rule must leave alone."""
from __future__ import annotations

import math

import pytest
import torch
from ncspec.reference.monitor import COMPLETE, DIMENSIONAL, DIVERGING, HEALTHY, CollapseMonitor, Thresholds
from ncspec.reference.monitor.observations import observation

B, M = 128, 32


def spread(tv: float, seed: int, b: int = B, m: int = M):
    """Two views whose l2-normalised embeddings have total variance 1 − ‖s‖² ≈ ``tv``: z = e₁ + a g with g standard
    normal, so ‖s‖² ≈ 1/(1 + a²M) (view noise 1 % of the spread)."""
    g = torch.Generator().manual_seed(seed)
    a = math.sqrt(tv / ((1 - tv) * m))
    x = torch.zeros(b, m)
    x[:, 0] = 1.0
    x = x + a * torch.randn(b, m, generator=g)
    return (x + 0.01 * a * torch.randn(b, m, generator=g), x + 0.01 * a * torch.randn(b, m, generator=g))


def feed(mon, pairs, losses=None):
    for t, (z1, z2) in enumerate(pairs):
        mon.observe(z1, z2, step=t, **({} if losses is None else dict(loss=losses[t])))
    mon.report()
    return mon


def test_a_collapse_hovering_at_its_threshold_is_flagged_by_the_window_rule():
    """1 − ‖s‖² at 0.04, 0.04, 0.06, … (below 0.05 twice, then within the ×1.5 band, never 3 times in a row): the
    consecutive rule never fires, the window rule (15 of the last 20 within the band) does, naming the hovering."""
    pattern = [0.04, 0.04, 0.06] * 10
    mon = feed(CollapseMonitor(mode="record"), [spread(tv, t) for t, tv in enumerate(pattern)])
    tvs = [h["total_var"] for h in mon.history]
    assert max(tvs[i] for i in range(0, 30, 3)) < 0.05 < min(tvs[i] for i in range(2, 30, 3)) < 0.075
    first = mon.first_flag()
    assert first is not None and first.state == COMPLETE and first.step == 14       # the 15th observation in the band
    assert "hovering at its threshold: 15 of the last 15" in first.reason
    assert mon.verdict.state == COMPLETE                                            # stays while it hovers


def test_readings_outside_the_band_break_the_window_and_near_misses_are_noted():
    """Control: 0.04, 0.04, 0.11 (the third outside the ×1.5 band) gives 2 of every 3 — at most 14 of 20 — and no
    verdict; a healthy verdict whose observation lies in the band carries a near-threshold note."""
    mon = feed(CollapseMonitor(mode="record"), [spread(tv, t) for t, tv in enumerate([0.04, 0.04, 0.11] * 10)])
    assert not mon.ever_flagged
    near = feed(CollapseMonitor(mode="record"), [spread(0.3, 0), spread(0.06, 1)])
    assert near.verdict.healthy and any(n.startswith("near threshold: this observation reads complete collapse")
                                        for n in near.verdict.notes)
    assert not any("near threshold" in n for n in near.verdicts[0].notes)


def test_an_exploding_loss_is_diverging_before_the_first_nan():
    """The issue's VICReg at lr 2.0 (loss 1.3e4 at step 3, 4e23 at step 4, NaN at step 5) on finite embeddings: the
    loss's ×100 growth is diverging at once, at step 3; the same series stopped at step 2 is healthy."""
    losses = [37.0, 35.0, 33.0, 1.3e4, 4e23]
    mon = feed(CollapseMonitor(mode="record", method="vicreg"), [spread(0.5, t) for t in range(5)], losses)
    first = mon.first_flag()
    assert first.state == DIVERGING and first.step == 3 and "grown ×394" in first.reason
    assert "learning rate too high" in first.causes[0]
    assert not feed(CollapseMonitor(mode="record"), [spread(0.5, t) for t in range(3)], losses[:3]).ever_flagged


@pytest.mark.parametrize("factor, steps, flagged", [(3.0, 5, True), (1.5, 12, False), (20.0, 1, False)])
def test_embeddings_multiplying_at_every_observation_are_diverging(factor, steps, flagged):
    """‖z‖ ×3 per observation over 5 observations (×243) is explosive; ×1.5 over 12 (×130, slower than ×2 per
    observation) is not, nor is one ×20 jump (below ×100 in all)."""
    pairs = [tuple(factor ** min(t, steps) * z for z in spread(0.5, t)) for t in range(steps + 2)]
    mon = feed(CollapseMonitor(mode="record"), pairs)
    assert mon.ever_flagged == flagged
    if flagged:
        assert mon.first_flag().state == DIVERGING and "mean ‖z‖" in mon.first_flag().reason


def test_a_bounded_loss_never_explodes():
    """A negative cosine from −0.001 to −0.9 grows ×900 in magnitude, but stays below the floor of 4."""
    losses = [-0.001 * 2.0 ** t for t in range(10)]
    assert not feed(CollapseMonitor(mode="record", method="byol"), [spread(0.5, t) for t in range(10)],
                    losses).ever_flagged


def test_vicreg_is_judged_on_the_std_its_variance_term_holds_at_one():
    """Features shrunk to std 0.05 (the spread kept, the scale gone) are complete collapse for VICReg, with the missing
    variance term as the first cause; the same embeddings are healthy for BYOL (its rules are scale-free), and at
    std ≈ 1 they are healthy for VICReg."""
    small = [tuple(0.05 * z / z.std(0).mean() for z in spread(0.5, t)) for t in range(4)]
    mon = feed(CollapseMonitor(mode="record", method="vicreg"), small)
    v = mon.verdict
    assert v.state == COMPLETE and mon.history[-1]["feature_std"] == pytest.approx(0.05, rel=0.05)
    assert "variance term is missing" in v.causes[0] and "V1" in v.claims
    assert not feed(CollapseMonitor(mode="record", method="byol"), small).ever_flagged
    unit = [tuple(z / z.std(0).mean() for z in spread(0.5, t)) for t in range(4)]
    assert not feed(CollapseMonitor(mode="record", method="vicreg"), unit).ever_flagged


def test_barlow_twins_is_judged_on_the_redundancy_of_its_features():
    """Every feature a copy of one (weights 1 ± 10 %, plus 10 % noise): the mean squared off-diagonal correlation is
    0.98, dimensional collapse for Barlow Twins naming the off-diagonal term; independent features read ≈ 1/B and are
    healthy."""
    g = torch.Generator().manual_seed(0)
    c, w = torch.randn(B, 1, generator=g), 1 + 0.1 * torch.randn(1, M, generator=g)
    copies = [(c @ w + 0.1 * torch.randn(B, M, generator=g), c @ w + 0.1 * torch.randn(B, M, generator=g))
              for _ in range(4)]
    mon = feed(CollapseMonitor(mode="record", method="barlow_twins"), copies)
    assert mon.verdict.state == DIMENSIONAL and mon.history[-1]["redundancy"] > 0.95
    assert "off-diagonal (redundancy-reduction) term is missing" in mon.verdict.causes[0]
    assert not feed(CollapseMonitor(mode="record", method="byol"), copies).ever_flagged
    indep = feed(CollapseMonitor(mode="record", method="barlow_twins"), [spread(0.5, t) for t in range(4)])
    assert indep.verdict.state == HEALTHY and indep.history[-1]["redundancy"] < 3 / B


@pytest.mark.parametrize("b, m", [(64, 16), (16, 64)])
def test_redundancy_is_the_correlation_matrix_off_its_diagonal_whichever_side_the_gram_is_taken(b, m):
    z1, z2 = torch.randn(b, m, dtype=torch.float64), torch.randn(b, m, dtype=torch.float64)
    z1[:, 1] = 2 * z1[:, 0] + 0.5 * z1[:, 1]
    expected = []
    for z in (z1, z2):
        R = torch.corrcoef(z.T)
        expected.append(float((R.pow(2).sum() - R.diagonal().pow(2).sum()) / (m * (m - 1))))
    obs = observation(z1, z2)
    assert float(obs["redundancy"]) == pytest.approx(sum(expected) / 2, rel=1e-9)   # float64: round-off only
    std = (z1.var(0) + 1e-4).sqrt().mean() / 2 + (z2.var(0) + 1e-4).sqrt().mean() / 2
    assert float(obs["feature_std"]) == pytest.approx(float(std), rel=1e-12)


def test_new_options_are_checked():
    with pytest.raises(ValueError, match="window_hits"):
        Thresholds(window=5, window_hits=6)
    with pytest.raises(ValueError, match="near_band must be >= 1"):
        Thresholds(near_band=0.5)


def test_the_report_says_how_near_a_never_flagged_run_came(tmp_path):
    """The variance-0 page of the issue said "never flagged" while its curve hugged the threshold: the report now
    counts the observations within the near-threshold band and names the first."""
    from ncspec.conformance.monitor.report import near_line, write_report
    mon = feed(CollapseMonitor(mode="record"), [spread(tv, t) for t, tv in enumerate([0.3, 0.06, 0.3, 0.06])])
    assert not mon.ever_flagged
    assert near_line(mon).startswith("near threshold: 2 of 4 observation(s) read complete collapse within ×1.5")
    page = write_report(mon, tmp_path / "r.html").read_text()
    assert "never flagged in 4 observation(s)" in page and "near threshold: 2 of 4" in page
    far = feed(CollapseMonitor(mode="record"), [spread(0.3, t) for t in range(2)])
    assert near_line(far) == "no observation within ×1.5 of a collapse threshold"
