"""A collapse monitor for any training loop, with verdicts that name the claim explaining them.

Feed it both views' batch embeddings every k steps::

    from ncspec.conformance.monitor import CollapseMonitor
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

* ``diverging`` — non-finite embeddings, or their mean norm grown ``diverge_growth`` × over the first
  observation;
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

A state other than healthy becomes the verdict only after ``patience`` consecutive observations
(after ``warmup`` observations): transient excursions early in training raise no alarm.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from ..reference.metrics import (
    center_decomposition,
    normalized_std,
    participation_ratio_of_eigenvalues,
    rankme_of_singular_values,
)
from ..reference.theory.centervector import invariance, unbiased_moments
from ..reference.vectors import unit

HEALTHY, DIMENSIONAL, COMPLETE, DIVERGING = "healthy", "dimensional collapse", "complete collapse", "diverging"
VERDICTS = (HEALTHY, DIMENSIONAL, COMPLETE, DIVERGING)
MODES = ("record", "warn", "raise")


class CollapseWarning(UserWarning):
    """Issued by a monitor in ``mode="warn"`` when its verdict turns to a collapse or divergence."""


class CollapseError(RuntimeError):
    """Raised by a monitor in ``mode="raise"`` (CI gating) when its verdict is not healthy."""

    def __init__(self, verdict: Verdict):
        super().__init__(str(verdict))
        self.verdict = verdict


@dataclass(frozen=True)
class Thresholds:
    """Decision thresholds; the defaults and their measured origin are documented in docs/monitor.md.

    complete_total_var: complete collapse when ``1 − ‖s‖² = tr Cov(ẑ)`` falls below it (‖s‖ > 0.975 for 0.05),
        plus :func:`standardized_floor` for batch-standardised outputs. Healthy SimSiam, BYOL, Barlow Twins and
        VICReg runs on the CIFAR-10 fragment (5 seeds each) stayed ≥ 0.37; runs without stop-grad cross it.
    complete_line_var: for batch-standardised outputs (:func:`standardized`), complete collapse also when the mean
        squared distance of ẑ from the nearest line through the origin, ``1 − λ_max(E ẑẑᵀ)``, falls below it: such
        outputs cannot meet in one point, and their collapse puts them on one line ±w (rank-1 z). Healthy
        batch-standardised runs (lightly's SimSiam module, 5 seeds × 300–400 steps; ``ncspec train``'s SimSiam with
        output BatchNorm, 5 seeds × 48 steps) stayed ≥ 0.33; lightly's SimSiam without stop-grad falls below it by
        step 17–71 and stays at a median of 0.003–0.017 (docs/monitor.md).
    live_eigenvalue: an eigenvalue of the centred Cov(ẑ) counts as a live direction when ≥ this fraction of the
        largest (float32 round-off of a dead direction is ~1e-7).
    dimensional_fraction: dimensional collapse when at most this fraction of the ``min(M, 2B − 1)`` possible
        directions is live. Healthy fragment runs kept ≥ 9 of 32 live (threshold 4); a rank-2 projector has 2.
    rank_concentration: for batch-standardised outputs (:func:`standardized`), dimensional collapse also when the
        centred effective rank falls below this fraction of the run's own start (the largest of its first
        ``rank_baseline`` observations). A BatchNorm at the output keeps every feature at unit variance, so neither
        ‖s‖ nor the count of live directions can show the collapse; the concentration of the spectrum it cannot
        hide. Measured spread (docs/monitor.md, 5 seeds each): healthy batch-standardised runs stayed ≥ 0.269 of
        their start (the hand-written SimSiam loop of :mod:`ncspec.conformance.monitor_bench`, 300 steps: min
        0.269–0.367 per seed; lightly's SimSiam module, 300 steps: ≥ 0.332; ``ncspec train``'s SimSiam with output
        BN, 48 steps: ≥ 0.608); the hand-written loop without stop-grad stayed ≤ 0.185 from step 50 on (minimum
        0.104–0.114). 0.22 is the geometric midpoint of 0.185 and 0.269.
    rank_baseline: observations at the start whose largest centred effective rank is the run's own start.
    diverge_growth: diverging when the mean ‖z‖ exceeds this multiple of its first observed value.
    patience: consecutive observations in a non-healthy state before it becomes the verdict.
    warmup: observations at the start that are recorded but never judged.
    """

    complete_total_var: float = 0.05
    complete_line_var: float = 0.05
    live_eigenvalue: float = 1e-5
    dimensional_fraction: float = 0.125
    rank_concentration: float = 0.22
    rank_baseline: int = 5
    diverge_growth: float = 1e4
    patience: int = 3
    warmup: int = 0

    def __post_init__(self):
        for name in ("complete_total_var", "complete_line_var", "live_eigenvalue", "dimensional_fraction",
                     "rank_concentration", "diverge_growth"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"Thresholds.{name} must be a finite number > 0, got {v!r}.")
        for name in ("patience", "warmup", "rank_baseline"):
            v = getattr(self, name)
            if not (isinstance(v, int) and not isinstance(v, bool) and v >= (0 if name == "warmup" else 1)):
                raise ValueError(f"Thresholds.{name} must be an int >= {0 if name == 'warmup' else 1}, got {v!r}.")


# --- explanations: the claim behind each verdict and the usual causes ------------------------------

CLAIMS = {
    "J1": "J1 (Jha et al. 2024, §3): E‖ẑ − ẑ′‖² = 2 − 2‖s‖² − 2E‖r_x‖², so an invariance-only objective is "
          "minimised by ‖s‖ → 1, i.e. complete collapse",
    "J2": "J2 (Jha et al. 2024, Fig. 4): SimSiam without its predictor or without stop-grad collapses with ‖s‖ → 1",
    "H2": "H2 (Halvagal et al. 2023, eq. 6): without stop-grad every eigenmode of the representation decays",
    "C2": "C2 (Grill et al. 2020, §3.1): the target must be a lagging EMA ξ ← mξ + (1 − m)θ of the online network",
    "J5": "J5 (Jha et al. 2024, Fig. 5; Zbontar et al. 2021): Barlow Twins' BatchNorm removes the center vector; "
          "without it a constant embedding has zero loss",
    "J6": "J6 (Jha et al. 2024, §3; Caron et al. 2021): DINO's centering is its center-vector penalty; "
          "without it ‖s‖ → 1",
    "T2": "T2 (Tian, Chen & Ganguli 2021, §5): a linear predictor aligns with the embedding correlation; "
          "modes it does not amplify can die out (dimensional collapse)",
    "W1": "W1 (Wang et al. 2021, DirectCopy): weight decay removes directions with large augmentation variance",
}

#: method family → (claims, usual causes) for complete collapse
_COMPLETE_CAUSES = {
    "simsiam": (("J1", "J2", "H2"), ("stop-grad missing on the target branch (z.detach())",
                                     "predictor bypassed (p = z)")),
    "byol": (("J1", "C2", "H2"), ("the target is the online network itself (no EMA copy, gradient flows into it)",
                                  "predictor bypassed (p = z)", "stop-grad missing on the target branch")),
    "barlow_twins": (("J1", "J5"), ("BatchNorm removed before the cross-correlation (c = z1ᵀz2/B on raw z)",)),
    "dino": (("J1", "J6"), ("centering of the teacher's outputs turned off (center = 0 or momentum 1)",)),
    "vicreg": (("J1",), ("variance term turned off (std_coeff = 0)",)),
}
_FAMILY = {"simsiam": "simsiam", "simsiam_mlp": "simsiam", "directpred": "simsiam", "directset": "simsiam",
           "directcopy": "simsiam", "isoloss": "simsiam", "learned_predictor": "simsiam", "byol": "byol",
           "barlow_twins": "barlow_twins", "barlowtwins": "barlow_twins", "dino": "dino", "vicreg": "vicreg"}


def _family(method: str | None) -> str | None:
    """The method family of a method name or a module's class name (``SimSiamNoStopGrad`` → ``simsiam``)."""
    if method is None:
        return None
    name = method.lower().replace("-", "_")
    if name in _FAMILY:
        return _FAMILY[name]
    return next((fam for key, fam in (("simsiam", "simsiam"), ("byol", "byol"), ("barlow", "barlow_twins"),
                                      ("dino", "dino"), ("vicreg", "vicreg")) if key in name), None)


#: the invariance-driven collapse a BatchNorm at the projector's output turns from a point into a few directions
_CONCENTRATED_NOTE = ("with a BatchNorm at the projector's output the collapse J1 predicts cannot reach one point (or "
                      "not at once a line), so it ends in a few directions")


def explain(state: str, method: str | None = None, *, concentrated: bool = False
            ) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``(claims, causes)`` for a verdict ``state``; ``method`` narrows the causes to its family. ``concentrated``:
    a dimensional collapse of batch-standardised outputs read from the spectrum's concentration, whose usual causes
    are those of complete collapse (the BatchNorm stops it short of a point) before the dimensional ones."""
    if state == DIMENSIONAL and concentrated:
        claims, causes = explain(COMPLETE, method)
        d_claims, d_causes = explain(DIMENSIONAL, method)
        return (*claims, *d_claims), (*(f"{c} ({_CONCENTRATED_NOTE})" if i == 0 else c
                                        for i, c in enumerate(causes)), *d_causes)
    if state == COMPLETE:
        fam = _family(method)
        if fam is not None:
            return _COMPLETE_CAUSES[fam]
        claims = ("J1", "J2", "H2", "C2", "J5", "J6")
        causes = tuple(dict.fromkeys(c for _, cs in _COMPLETE_CAUSES.values() for c in cs))
        return claims, causes
    if state == DIMENSIONAL:
        return (("T2", "W1"), ("a rank bottleneck in the projector (a hidden layer narrower than the output)",
                               "weight decay too strong for the predictor (directions below the W1 threshold die)",
                               "too small a learning rate for the predictor, which then never aligns (T2)"))
    if state == DIVERGING:
        return ((), ("learning rate too high", "no weight decay with a learned predictor (norms grow freely)",
                     "mixed precision overflow; check the loss scaling"))
    return (), ()


@dataclass
class Verdict:
    """The monitor's verdict: ``state`` (one of :data:`VERDICTS`), the statistics it rests on, the claims that
    explain it and the usual causes. ``str(verdict)`` is the one-paragraph explanation."""

    state: str
    step: int | None
    reason: str
    claims: tuple[str, ...] = ()
    causes: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    stats: dict = field(default_factory=dict)

    @property
    def healthy(self) -> bool:
        return self.state == HEALTHY

    def __str__(self) -> str:
        at = f" at step {self.step}" if self.step is not None else ""
        lines = [f"{self.state}{at}: {self.reason}"]
        lines += [f"  explained by {CLAIMS[c]}" for c in self.claims]
        if self.causes:
            lines.append("  usual causes: " + "; ".join(self.causes))
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["claims"], d["causes"], d["notes"] = list(self.claims), list(self.causes), list(self.notes)
        return d


# --- statistics of one observation --------------------------------------------------------------

def _gram(x: Tensor) -> Tensor:
    """The smaller of ``xᵀx`` and ``xxᵀ`` (same non-zero eigenvalues), in float32 or wider."""
    return x.transpose(-1, -2) @ x if x.shape[-2] >= x.shape[-1] else x @ x.transpose(-1, -2)


def _check_embeddings(z1, z2) -> tuple[Tensor, Tensor | None]:
    for name, z in (("z1", z1), ("z2", z2)):
        if z is None:
            continue
        if not isinstance(z, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor of embeddings (B, M), got {type(z).__name__}; "
                            f"pass the projector's output, e.g. monitor.observe(z1, z2).")
        if z.dim() != 2:
            raise ValueError(f"{name} must be a batch of embeddings (B, M), got shape {tuple(z.shape)}; "
                             + ("flatten the feature map first, z.flatten(1)." if z.dim() > 2 else
                                "pass a batch of several samples, not one vector."))
        if z.shape[0] < 2:
            raise ValueError(f"{name} holds {z.shape[0]} sample(s); the monitor needs a batch of B >= 2 "
                             f"(statistics over the batch); observe whole batches.")
        if not z.is_floating_point():
            raise TypeError(f"{name} must be floating point, got {z.dtype}; pass the embeddings, not labels.")
    if z2 is not None and z1.shape != z2.shape:
        raise ValueError(f"z1 and z2 must be the two views of the same batch, shapes (B, M), got "
                         f"{tuple(z1.shape)} and {tuple(z2.shape)}.")
    if z2 is not None and z1.device != z2.device:
        raise ValueError(f"z1 and z2 live on different devices ({z1.device}, {z2.device}); move one.")
    return z1, z2


@torch.no_grad()
def observation(z1: Tensor, z2: Tensor | None = None, *, predictor: Tensor | None = None) -> dict:
    """Device tensors of one observation (no host sync): the queue entry :class:`CollapseMonitor` keeps."""
    z1, z2 = _check_embeddings(z1, z2)
    dt = torch.promote_types(z1.dtype, torch.float32)
    z1 = z1.detach().to(dt)
    views = z1.unsqueeze(0) if z2 is None else torch.stack([z1, z2.detach().to(dt)])     # (V, B, M)
    V, B, M = views.shape
    s, _ = center_decomposition(views)                                                     # s (M,)
    u = unit(views).reshape(V * B, M)                                                     # ẑ pooled
    u_mean = u.mean(0)
    uc = u - u_mean
    obs = dict(
        center_norm=s.norm(),
        normalized_std=normalized_std(views).mean(),
        z_norm=views.norm(dim=-1).mean(),
        nonfinite=(~torch.isfinite(views)).sum(),
        gram_raw=_gram(z1),                                          # RankMe as published: raw z of view 1
        gram_centred=_gram(uc) / (V * B),                            # eigenvalues of the centred Cov(ẑ)
        u_mean=u_mean,                                               # E ẑ: E ẑẑᵀ from Cov(ẑ) and E ẑ on the host
        n_samples=V * B, batch=B, dim=M,
        # how far view 1 is from batch-standardised features (mean 0, variance 1: a BatchNorm without affine
        # parameters at the output, as SimSiam's and lightly's projectors have)
        standardized_dev=torch.maximum(z1.mean(0).abs().max(), (z1.var(0, unbiased=False) - 1).abs().max()),
    )
    if V * B < M:   # the Gram is taken over samples: E ẑẑᵀ's spectrum needs (ẑ − E ẑ)·E ẑ as well
        obs["uc_dot_mean"] = uc @ u_mean
    if V == 2:
        s_sq_u, r_u = unbiased_moments(views)
        obs.update(center_sq_u=s_sq_u, residual_sq_u=r_u, invariance=(u[:B] - u[B:]).pow(2).sum(-1).mean(),
                   invariance_j1=invariance(s_sq_u, r_u))
    if predictor is not None:
        W = predictor.detach().to(dt)
        if W.shape != (M, M):
            raise ValueError(f"predictor must be the (M, M) = ({M}, {M}) matrix W_p of a linear or closed-form "
                             f"predictor, got shape {tuple(W.shape)}; leave it out for an MLP predictor.")
        F = z1.transpose(0, 1) @ z1 / B
        comm = F @ W - W @ F
        obs.update(predictor=0.5 * (W + W.transpose(0, 1)),
                   predictor_alignment=comm.norm() / (F.norm() * W.norm()).clamp_min(1e-30))
    return obs


def standardized(st: dict, tol: float = 0.05) -> bool:
    """Whether every feature of view 1's ``z`` has batch mean within ``tol`` of 0 and variance within ``tol`` of 1:
    the output of a BatchNorm without affine parameters (SimSiam's and lightly's projection heads)."""
    return st.get("standardized_dev", float("inf")) < tol


def standardized_floor(st: dict, tol: float = 0.05) -> float:
    """The smallest ``1 − ‖s‖²`` embeddings with batch-standardised features can reach: ``4(B − 1)/B²``, else 0.

    Each feature of ``z`` having mean 0 over the batch forbids one common point; the most collapsed batch puts
    B − 1 samples on one ray and one on the opposite ray (rank-1 ``z = u wᵀ`` with ``mean u = 0``), so
    ``‖s‖ ≤ 1 − 2/B``. Applied when every feature's batch mean is within ``tol`` of 0 and variance within ``tol``
    of 1 (a BatchNorm without affine parameters at the output: SimSiam's and lightly's projection heads).
    """
    if not standardized(st, tol):
        return 0.0
    B = st["batch"]
    return 4 * (B - 1) / B**2


def _params(x) -> list[Tensor]:
    if isinstance(x, torch.nn.Module):
        return [p.detach() for p in x.parameters()]
    return [p.detach() for p in x]


@torch.no_grad()
def ema_lag(online, target) -> tuple[Tensor, Tensor, bool]:
    """``(‖θ − ξ‖/‖θ‖, Σξ, same)``: the EMA target's relative lag (C2), a fingerprint of ξ that changes whenever
    ξ does, and whether the target shares its parameters' storage with the online network."""
    on, tg = _params(online), _params(target)
    if len(on) != len(tg) or any(a.shape != b.shape for a, b in zip(on, tg)):
        raise ValueError("online and target must hold the same parameters in the same order (the EMA target is a "
                         "copy of the online network); pass e.g. online=model.backbone, "
                         "target=model.backbone_momentum.")
    same = all(a.data_ptr() == b.data_ptr() for a, b in zip(on, tg))
    diff = torch.stack([(a.double() - b.double()).pow(2).sum() for a, b in zip(on, tg)]).sum()
    norm = torch.stack([a.double().pow(2).sum() for a in on]).sum()
    fingerprint = torch.stack([b.double().sum() for b in tg]).sum()
    return (diff / norm.clamp_min(1e-300)).sqrt(), fingerprint, same


# --- the monitor ----------------------------------------------------------------------------------

class CollapseMonitor:
    """Track collapse statistics of a training run and judge it (module docstring).

    Args:
        mode: ``"record"`` (verdicts only stored), ``"warn"`` (a :class:`CollapseWarning` when the verdict
            turns non-healthy), ``"raise"`` (a :class:`CollapseError` from :meth:`report`; CI gating).
        every: observe every k-th call of :meth:`observe` (the others return at once).
        method: the method's name (``simsiam``, ``byol``, ``barlow_twins``, ``dino``, ``vicreg``, …), which
            narrows the usual causes named by a verdict.
        thresholds: :class:`Thresholds`.
        max_pending: queued observations that trigger a report on their own.
        keep_embeddings: keep every observed batch on the host (``embeddings()``, :meth:`save`) so that
            ``ncspec diagnose`` can replay the run.
    """

    def __init__(self, *, mode: str = "warn", every: int = 1, method: str | None = None,
                 thresholds: Thresholds | None = None, max_pending: int = 32, keep_embeddings: bool = False):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}; 'raise' gates CI, 'warn' is the default.")
        if not (isinstance(every, int) and every >= 1):
            raise ValueError(f"every must be an int >= 1 (observe every k-th call), got {every!r}.")
        if not (isinstance(max_pending, int) and max_pending >= 1):
            raise ValueError(f"max_pending must be an int >= 1, got {max_pending!r}.")
        self.mode, self.every, self.method = mode, every, method
        self.thresholds = thresholds or Thresholds()
        self.max_pending, self.keep_embeddings = max_pending, keep_embeddings
        self.calls = 0
        self.history: list[dict] = []           # one host dict per observation
        self.verdicts: list[Verdict] = []        # one per observation
        self._pending: list[tuple[int | None, dict]] = []
        self._kept: list[tuple[int | None, Tensor, Tensor | None]] = []
        self._state, self._run, self._candidate = HEALTHY, 0, HEALTHY
        self._concentrated = False
        self._z0: float | None = None
        self._warned: str = HEALTHY
        self._last_fingerprint: float | None = None
        self._frozen = 0

    # -- feeding
    def observe(self, z1: Tensor, z2: Tensor | None = None, *, step: int | None = None,
                predictor: Tensor | None = None, online=None, target=None, loss=None) -> None:
        """Queue the statistics of one batch: ``z1, z2`` (B, M) the embeddings of the two views (``z2`` may be
        omitted: the invariance decomposition then stays empty), ``predictor`` a linear predictor's ``W_p``
        (M, M), ``online``/``target`` the online network and its EMA target (modules or parameter lists),
        ``loss`` the step's loss (a float or a 0-dim tensor; recorded, and for the cosine-loss families compared
        with its collapsed value −1)."""
        self.calls += 1
        if (self.calls - 1) % self.every:
            return
        obs = observation(z1, z2, predictor=predictor)
        if loss is not None:
            obs["loss"] = loss.detach().reshape(()) if isinstance(loss, Tensor) else torch.tensor(float(loss))
        if (online is None) != (target is None):
            raise ValueError("pass both online= and target= (the online network and its EMA target), or neither.")
        if online is not None:
            lag, fp, same = ema_lag(online, target)
            obs.update(ema_lag=lag, ema_fingerprint=fp, ema_same_object=same)
        self._pending.append((step, obs))
        if self.keep_embeddings:
            self._kept.append((step, z1.detach().float().cpu(), None if z2 is None else z2.detach().float().cpu()))
        if len(self._pending) >= self.max_pending:
            self.report()

    # -- judging
    def report(self) -> Verdict:
        """Move the queued statistics to the host (one transfer), judge them in order, act on the mode."""
        if self._pending:
            pending, self._pending = self._pending, []
            host = _to_host([obs for _, obs in pending])
            for (step, _), obs in zip(pending, host):
                self._judge(step, obs)
        v = self.verdict
        if not v.healthy and self._warned != v.state:
            self._warned = v.state
            if self.mode == "warn":
                warnings.warn(str(v), CollapseWarning, stacklevel=2)
        if self.mode == "raise" and not v.healthy:
            raise CollapseError(v)
        return v

    @property
    def verdict(self) -> Verdict:
        """The latest verdict (without reporting queued observations)."""
        if not self.verdicts:
            return Verdict(HEALTHY, None, "nothing observed yet")
        return self.verdicts[-1]

    @property
    def ever_flagged(self) -> bool:
        return any(not v.healthy for v in self.verdicts)

    def first_flag(self) -> Verdict | None:
        """The first non-healthy verdict, or None."""
        return next((v for v in self.verdicts if not v.healthy), None)

    def _judge(self, step, st: dict) -> None:
        th = self.thresholds
        if self._z0 is None and math.isfinite(st["z_norm"]):
            self._z0 = st["z_norm"]
        st["step"] = step
        eig = st["eig_cov"]
        st["live_dims"] = sum(1 for e in eig if e >= th.live_eigenvalue * eig[0]) if eig and eig[0] > 0 else 0
        notes = self._ema_notes(st)
        self.history.append(st)
        raw, reason = self._classify(st)
        judged = len(self.history) > th.warmup
        if not judged:
            raw = HEALTHY
        self._run = self._run + 1 if raw == self._candidate else 1
        self._candidate = raw
        if raw == DIVERGING and st["nonfinite"]:
            self._state = DIVERGING                          # NaN/inf are final: no persistence needed
        elif self._run >= th.patience or raw == HEALTHY and self._state == HEALTHY:
            self._state = raw
        if self._state == raw:
            self._concentrated = bool(st.get("concentrated"))
            claims, causes = explain(raw, self.method, concentrated=self._concentrated)
            if raw == HEALTHY:
                reason = reason if judged else f"warm-up ({len(self.history)}/{th.warmup} observations, not judged)"
        else:
            reason = (f"{self._state} persists while this observation reads {raw} "
                      f"({self._run}/{th.patience}): {reason}")
            claims, causes = explain(self._state, self.method, concentrated=self._concentrated)
        if raw != HEALTHY and self._state != raw:
            notes = (*notes, f"{raw} for {self._run} consecutive observation(s); the verdict needs {th.patience}")
        self.verdicts.append(Verdict(self._state, step, reason, claims, causes, notes, _summary(st)))

    def _classify(self, st: dict) -> tuple[str, str]:
        th = self.thresholds
        if st["nonfinite"]:
            return DIVERGING, f"{st['nonfinite']} non-finite value(s) in the embeddings"
        if self._z0 and st["z_norm"] > th.diverge_growth * self._z0:
            return DIVERGING, (f"mean ‖z‖ = {st['z_norm']:.3g} grew over {th.diverge_growth:g}× its first value "
                               f"{self._z0:.3g}")
        tv, floor = st["total_var"], standardized_floor(st)
        if tv < th.complete_total_var + floor:
            bound = (f" + {floor:.3f}, the floor that batch-standardised outputs allow at B = {st['batch']}"
                     if floor else "")
            return COMPLETE, (f"‖s‖ = {st['center_norm']:.4f}: the total variance of the l2-normalised embeddings "
                              f"1 − ‖s‖² = {tv:.3g} < {th.complete_total_var:g}{bound} (nearly every sample maps to "
                              f"one point; std of ẑ {st['normalized_std']:.2e})")
        if standardized(st) and st["line_var"] < th.complete_line_var:
            return COMPLETE, (f"the outputs are batch-standardised (every feature has mean 0 and variance 1 over the "
                              f"batch, a BatchNorm without affine parameters), so the embeddings cannot meet in one "
                              f"point; instead they lie on one line through the origin, z_i ≈ c_i w: the mean squared "
                              f"distance of ẑ from that line 1 − λ_max(E ẑẑᵀ) = {st['line_var']:.3g} < "
                              f"{th.complete_line_var:g} (‖s‖ = {st['center_norm']:.3f}, 1 − ‖s‖² = {tv:.3g}: "
                              f"the samples split between the rays ±w). A rank-1 z = c wᵀ with mean c = 0 is the "
                              f"most collapsed batch the standardisation allows, the J1 collapse under it")
        start = self._rank_start()
        if start:
            st["rank_ratio"] = st["effective_rank"] / start
        if st["live_dims"] <= th.dimensional_fraction * st["max_rank"]:
            return DIMENSIONAL, (f"only {st['live_dims']} of {st['max_rank']} possible directions carry variance "
                                 f"(eigenvalues of the centred Cov(ẑ) ≥ {th.live_eigenvalue:g} λ_max), at most "
                                 f"{th.dimensional_fraction:g} of them, although ‖s‖ = {st['center_norm']:.3f} "
                                 f"is not 1 "
                                 f"(centred effective rank {st['effective_rank']:.2f}, RankMe {st['rankme']:.1f})")
        if (standardized(st) and start and len(self.history) > th.rank_baseline
                and st["rank_ratio"] < th.rank_concentration):
            st["concentrated"] = True
            return DIMENSIONAL, (f"the outputs are batch-standardised (a BatchNorm without affine parameters: every "
                                 f"feature keeps variance 1, so ‖s‖ = {st['center_norm']:.3f} and {st['live_dims']} of "
                                 f"{st['max_rank']} live directions cannot show a collapse), but the spectrum has "
                                 f"concentrated: centred effective rank {st['effective_rank']:.2f}, "
                                 f"{st['rank_ratio']:.2f} of the run's own start {start:.1f} (< "
                                 f"{th.rank_concentration:g}; RankMe {st['rankme']:.1f})" + self._loss_note(st))
        return HEALTHY, (f"‖s‖ = {st['center_norm']:.3f}, {st['live_dims']} of {st['max_rank']} directions carry "
                         f"variance, centred effective rank {st['effective_rank']:.1f}, RankMe {st['rankme']:.1f}, "
                         f"std of ẑ {st['normalized_std']:.4f}")

    def _rank_start(self) -> float | None:
        """The run's own start: the largest centred effective rank of its first ``rank_baseline`` observations."""
        first = [h["effective_rank"] for h in self.history[:self.thresholds.rank_baseline]
                 if math.isfinite(h.get("effective_rank", math.nan))]
        return max(first) if len(first) == self.thresholds.rank_baseline and max(first) > 0 else None

    def _loss_note(self, st: dict) -> str:
        """The negative-cosine loss against its collapsed value −1 (SimSiam, BYOL), when the loop passed it."""
        if "loss" not in st or _family(self.method) not in ("simsiam", "byol"):
            return ""
        return (f"; the loss {st['loss']:.3f} is {st['loss'] + 1:.3f} above −1, its value when the predictor output "
                f"matches an unstopped target exactly")

    def _ema_notes(self, st: dict) -> tuple[str, ...]:
        if "ema_lag" not in st:
            return ()
        notes = []
        if st["ema_same_object"]:
            notes.append("the EMA target shares its parameters with the online network (lag 0): it is the same "
                         "object, not a copy (C2); deep-copy it")
        fp = st["ema_fingerprint"]
        self._frozen = self._frozen + 1 if fp == self._last_fingerprint and not st["ema_same_object"] else 0
        self._last_fingerprint = fp
        if self._frozen >= self.thresholds.patience:
            notes.append(f"the EMA target has not moved over {self._frozen + 1} observations: momentum stuck at 1 "
                         f"(C2); the target stays at its initialisation")
        return tuple(notes)

    # -- output
    def embeddings(self) -> dict:
        """The kept observations as ``{"z1": (T, B, M), "z2": (T, B, M), "step": (T,)}`` (``keep_embeddings``)."""
        if not self.keep_embeddings:
            raise RuntimeError("this monitor keeps no embeddings; create it with keep_embeddings=True.")
        self.report()
        out = {"z1": torch.stack([z for _, z, _ in self._kept]) if self._kept else torch.empty(0),
               "step": torch.tensor([-1 if s is None else s for s, _, _ in self._kept], dtype=torch.int64)}
        if self._kept and self._kept[0][2] is not None:
            out["z2"] = torch.stack([z for _, _, z in self._kept])
        return out

    def save(self, path) -> Path:
        """Write the kept observations as a ``.pt`` (tensors only) that ``ncspec diagnose`` reads."""
        path = Path(path)
        torch.save(self.embeddings(), path)
        return path

    def summary(self) -> dict:
        """JSON-ready: verdict, per-observation statistics and verdicts."""
        self.report() if self.mode != "raise" else None
        return dict(verdict=self.verdict.to_dict(), ever_flagged=self.ever_flagged,
                    thresholds=asdict(self.thresholds),
                    history=[{**_summary(h), "verdict": v.state} for h, v in zip(self.history, self.verdicts)])


def _to_host(pending: list[dict]) -> list[dict]:
    """One device→host transfer of the queued tensors, then the spectra in float64 on the host."""
    flat, index = [], []
    for i, obs in enumerate(pending):
        for k, v in obs.items():
            if isinstance(v, Tensor):
                flat.append(v.reshape(-1).double())
                index.append((i, k, tuple(v.shape)))
    host = torch.cat(flat).cpu() if flat else torch.empty(0)
    out = [{k: v for k, v in obs.items() if not isinstance(v, Tensor)} for obs in pending]
    at = 0
    for i, k, shape in index:
        n = math.prod(shape)
        out[i][k] = host[at:at + n].reshape(shape)
        at += n
    return [_host_stats(o) for o in out]


def _host_stats(o: dict) -> dict:
    st = {k: float(v) for k, v in o.items() if isinstance(v, Tensor) and v.dim() == 0}
    st.update({k: v for k, v in o.items() if not isinstance(v, Tensor)})
    st["nonfinite"] = int(st["nonfinite"])
    if st["nonfinite"] or not torch.isfinite(o["gram_raw"]).all() or not torch.isfinite(o["gram_centred"]).all():
        st["nonfinite"] = max(st["nonfinite"], 1)
        st.update(total_var=float("nan"), line_var=float("nan"), effective_rank=float("nan"),
                  participation_ratio=float("nan"), rankme=float("nan"), eig_cov=[], max_rank=0)
        return st
    eig_raw = torch.linalg.eigvalsh(o["gram_raw"]).flip(0).clamp_min(0)
    eig_cov = torch.linalg.eigvalsh(o["gram_centred"]).flip(0).clamp_min(0)
    st["rankme"] = float(rankme_of_singular_values(eig_raw.sqrt()))
    st["effective_rank"] = float(rankme_of_singular_values(eig_cov.sqrt())) if eig_cov.sum() > 0 else 0.0
    st["participation_ratio"] = float(participation_ratio_of_eigenvalues(eig_cov))
    st["total_var"] = float(eig_cov.sum())                         # = 1 − ‖s‖² (trace of Cov(ẑ), pooled)
    # mean squared distance of ẑ from the nearest line through the origin, 1 − λ_max(E ẑẑᵀ) ≤ 1 − ‖s‖²
    st["line_var"] = max(0.0, 1.0 - float(torch.linalg.eigvalsh(_second_moment(o))[-1]))
    st["max_rank"] = min(st["dim"], int(o["n_samples"]) - 1)     # rank bound of the centred pooled batch
    st["eig_cov"] = eig_cov.tolist()
    if "predictor" in o:
        omega = torch.linalg.eigvalsh(o["predictor"]).flip(0)
        st["predictor_eig"] = omega.tolist()
        st["predictor_fixed_point_gap"] = float((omega - 1).abs().max())   # H1: ω_m → 1 at the fixed point
    return st


def _second_moment(o: dict) -> Tensor:
    """E ẑẑᵀ (uncentred), or the sample Gram with the same non-zero spectrum, from the centred Gram and E ẑ = μ:
    (M, M): Cov(ẑ) + μμᵀ; (n, n) with ẑ_i = c_i + μ: [CCᵀ + a1ᵀ + 1aᵀ + ‖μ‖² 11ᵀ]/n, a = Cμ."""
    G, mu = o["gram_centred"], o["u_mean"]
    if "uc_dot_mean" not in o:
        return G + torch.outer(mu, mu)
    n = G.shape[-1]
    a, one = o["uc_dot_mean"], torch.ones(n, dtype=G.dtype)
    return G + (torch.outer(a, one) + torch.outer(one, a) + mu.dot(mu) * torch.outer(one, one)) / n


_SCALARS = ("step", "center_norm", "total_var", "line_var", "normalized_std", "live_dims", "max_rank", "effective_rank",
            "participation_ratio", "rankme",
            "z_norm", "center_sq_u", "residual_sq_u", "invariance", "invariance_j1", "predictor_alignment",
            "predictor_fixed_point_gap", "ema_lag", "nonfinite", "dim", "batch", "standardized_dev", "loss",
            "rank_ratio")


def _summary(st: dict) -> dict:
    return {k: st[k] for k in _SCALARS if k in st} | ({"eig_cov": st["eig_cov"]} if "eig_cov" in st else {})


def judge_series(z1: Tensor, z2: Tensor | None = None, *, steps=None, method: str | None = None,
                 thresholds: Thresholds | None = None) -> CollapseMonitor:
    """Replay saved observations ``z1, z2`` (T, B, M) through a record-mode monitor (``ncspec diagnose``)."""
    mon = CollapseMonitor(mode="record", method=method, thresholds=thresholds, max_pending=max(1, len(z1)))
    for t in range(z1.shape[0]):
        mon.observe(z1[t], None if z2 is None else z2[t], step=None if steps is None else int(steps[t]))
    mon.report()
    return mon
