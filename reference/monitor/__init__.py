"""A collapse monitor for any training loop, with verdicts that name the claim explaining them.

Feed it both views' batch embeddings every k steps::

    from ncspec.reference.monitor import CollapseMonitor
    monitor = CollapseMonitor(mode="warn")             # "record" | "warn" | "raise"
    for step, (x1, x2) in enumerate(loader):
        z1, z2 = projector(backbone(x1)), projector(backbone(x2))
        ...
        monitor.observe(z1, z2, step=step)             # on the embeddings' device, no host sync
        if step % 100 == 0:
            print(monitor.report())                    # the one host sync: statistics, verdict, reasons

**What is measured** (per observation; ``ẑ = z/‖z‖``, both views pooled, notation of Jha et al.,
"The common stability mechanism behind most self-supervised learning approaches", 2024, §3):

* the center vector ``s = mean ẑ`` and J1's exact decomposition of the invariance term on the batch
  (U-statistics, distinct views): ``mean_i ‖ẑ_i1 − ẑ_i2‖² = 2 − 2‖s‖²_U − 2R_U``
  (:func:`ncspec.reference.theory.centervector.unbiased_moments`);
* the std of the l2-normalised embeddings (Chen & He, CVPR 2021, §4.1; lightly's
  ``std_of_l2_normalized``), averaged over both views;
* the eigenvalues of the *centred* covariance of ``ẑ`` (pooled views). Its trace is ``1 − ‖s‖²``
  exactly, so complete collapse (‖s‖ → 1) empties the whole spectrum, while dimensional collapse
  empties all but a few directions. The *uncentred* correlation is dominated by ``s s ᵀ`` whenever
  ‖s‖ is not small, which is why its participation ratio raises false alarms on healthy runs;
* RankMe (Garrido et al., ICML 2023, eq. 1) as published (raw, uncentred embeddings of view 1), the
  *centred* effective rank (RankMe's entropy formula on the centred ``ẑ``) and the participation
  ratio of the centred covariance;
* optionally: a linear / closed-form predictor ``W_p``'s alignment with the embedding correlation
  ``F = mean z zᵀ`` (relative commutator ``‖FW_p − W_pF‖/(‖F‖‖W_p‖)``; Tian, Chen & Ganguli, ICML 2021,
  §5 and eq. 19) and its eigenvalues against the isotropic fixed point ω = 1 (Halvagal, Laborieux &
  Zenke, NeurIPS 2023, eq. 5); an EMA target's lag ``‖θ − ξ‖/‖θ‖`` (Grill et al., NeurIPS 2020, §3.1).

``observe`` only queues device tensors (the Gram matrices are ``min(n, M)``-square); ``report``
moves them to the host in one transfer, computes the spectra in float64 and updates the verdict.
More than ``max_pending`` queued observations trigger a report on their own (a bounded memory).

**Verdicts** (see docs/monitor.md for the measured false-alarm rates behind the thresholds):

* ``diverging`` — non-finite embeddings or loss, or explosive growth (the mean ‖z‖ or the loss multiplied at every
  one of the last observations, ``explode_growth`` × in all at ≥ ``explode_rate`` × each: before the first NaN), both
  at once; or their mean norm grown ``diverge_growth`` × over the first observation;
* for the VICReg family, ``complete collapse`` when the mean std of the raw features, which VICReg's variance term
  holds at γ = 1, falls below ``vicreg_std``; for Barlow Twins, ``dimensional collapse`` when the features' mean
  squared off-diagonal correlation, which its redundancy-reduction term drives to 0, exceeds ``barlow_redundancy``
  (the causes name the missing term);
* ``complete collapse`` — ``1 − ‖s‖² < complete_total_var`` (the trace of the covariance of ``ẑ``):
  every sample maps to (almost) one point; explained by J1/J2 (invariance rewards ‖s‖ → 1) and,
  per method, H2 (no stop-grad), C2 (EMA), J5 (Barlow Twins' BatchNorm), J6 (DINO's centering). For
  batch-standardised outputs (a BatchNorm without affine parameters at the projector output) one point is
  impossible and the collapse puts every sample on one line through the origin: complete collapse also when
  ``1 − λ_max(E ẑẑᵀ) < complete_line_var``, the mean squared distance of ẑ from that line;
* ``dimensional collapse`` — at most ``dimensional_fraction`` of the possible directions carry any variance
  (eigenvalues of the centred Cov(ẑ) ≥ ``live_eigenvalue`` λ_max): the embeddings fill a low-dimensional subspace
  although ‖s‖ is not 1. Smooth ranks (effective rank, RankMe, participation ratio) are recorded but not judged:
  healthy short runs read as low as 2 of 32 on them;
* ``healthy`` otherwise.

A state other than healthy becomes the verdict after ``patience`` consecutive observations, or when
``window_hits`` of the last ``window`` read it at thresholds relaxed ×``near_band`` (a collapse hovering at its
threshold), after ``warmup`` observations: transient excursions early in training raise no alarm. An EMA target that
never moved (or is the online network) is a WARNING of the verdict, not a state.

The package: :mod:`~ncspec.reference.monitor.collapse_monitor` (the monitor, :func:`judge_series`),
:mod:`~ncspec.reference.monitor.observations` (the statistics of one observation, on the device, then on the host)
and :mod:`~ncspec.reference.monitor.verdicts` (thresholds, the claims and causes behind each verdict). Training loops
of the reference (``ncspec train``) and of any lab import it from here; ``ncspec.conformance.monitor`` re-exports it.
"""
from __future__ import annotations

from .collapse_monitor import CollapseMonitor, judge_series
from .observations import ema_lag, observation, standardized, standardized_floor
from .verdicts import (
    CLAIMS,
    COMPLETE,
    DIMENSIONAL,
    DIVERGING,
    HEALTHY,
    MODES,
    VERDICTS,
    CollapseError,
    CollapseWarning,
    Thresholds,
    Verdict,
    explain,
)

__all__ = ["CLAIMS", "COMPLETE", "DIMENSIONAL", "DIVERGING", "HEALTHY", "MODES", "VERDICTS", "CollapseError",
           "CollapseMonitor", "CollapseWarning", "Thresholds", "Verdict", "ema_lag", "explain", "judge_series",
           "observation", "standardized", "standardized_floor"]
