"""The collapse monitor: queues observations of a training run, judges them in order, acts on its mode (package
docstring: :mod:`ncspec.reference.monitor`)."""
from __future__ import annotations

import math
import warnings
from dataclasses import asdict
from pathlib import Path

import torch
from torch import Tensor

from .observations import (
    _summary,
    _to_host,
    ema_lag,
    observation,
    one_thread,
    standardized,
    standardized_floor,
)
from .verdicts import (
    COMPLETE,
    DIMENSIONAL,
    DIVERGING,
    HEALTHY,
    MODES,
    CollapseError,
    CollapseWarning,
    Thresholds,
    Verdict,
    _family,
    explain,
)

#: divergence rules that decide at once, without patience: a non-finite value, a multiplying norm or loss
_IMMEDIATE = ("nonfinite", "explosive")


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
        self._rule, self._reason = "healthy", ""
        self._streaks: dict[str, tuple] = {}
        self._z0: float | None = None
        self._warned: str = HEALTHY
        self._target_warned = False
        self._last_fingerprint: float | None = None
        self._first_ema: tuple[float, float] | None = None
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
        if v.warnings and not self._target_warned and self.mode != "record":
            self._target_warned = True
            warnings.warn("; ".join(v.warnings), CollapseWarning, stacklevel=2)
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

    def first_warning(self) -> Verdict | None:
        """The first verdict that carries a WARNING (an EMA target that never moved), or None."""
        return next((v for v in self.verdicts if v.warnings), None)

    def _judge(self, step, st: dict) -> None:
        th = self.thresholds
        if self._z0 is None and math.isfinite(st["z_norm"]):
            self._z0 = st["z_norm"]
        st["step"] = step
        eig = st["eig_cov"]
        st["live_dims"] = sum(1 for e in eig if e >= th.live_eigenvalue * eig[0]) if eig and eig[0] > 0 else 0
        self._growth(st, "z", st["z_norm"])
        if "loss" in st:
            self._growth(st, "loss", abs(st["loss"]))
        notes, warns = self._ema_notes(st)
        self.history.append(st)
        raw, reason, rule = self._classify(st)
        near, near_reason, near_rule = self._classify(st, th.near_band) if raw == HEALTHY else (raw, reason, rule)
        judged = len(self.history) > th.warmup
        if not judged:
            raw = near = HEALTHY
        st["near"] = near
        self._run = self._run + 1 if raw == self._candidate else 1
        self._candidate = raw
        hits, seen = self._hits(near), min(th.window, len(self.history))
        if raw == DIVERGING and rule in _IMMEDIATE or self._run >= th.patience and raw != HEALTHY:
            self._set(raw, rule, reason)
        elif hits >= th.window_hits:
            self._set(near, near_rule, f"{near} hovering at its threshold: {hits} of the last {seen} observations "
                                       f"read it with the thresholds relaxed ×{th.near_band:g} (the verdict needs "
                                       f"{th.window_hits} of {th.window}); this one: {near_reason}")
        elif (raw == HEALTHY and (self._state == HEALTHY or self._run >= th.patience)
              and self._hits(self._state) < th.window_hits):
            self._set(HEALTHY, rule, reason if judged else
                      f"warm-up ({len(self.history)}/{th.warmup} observations, not judged)")
        else:
            self._reason = (f"{self._state} persists while this observation reads {raw} "
                            f"({self._run}/{th.patience}): {reason}")
        if raw != HEALTHY and self._state != raw:
            notes = (*notes, f"{raw} for {self._run} consecutive observation(s); the verdict needs {th.patience}")
        if self._state == HEALTHY and near != HEALTHY:
            notes = (*notes, f"near threshold: this observation reads {near} with the thresholds relaxed "
                             f"×{th.near_band:g} ({hits} of the last {seen}; {th.window_hits} make a verdict): "
                             f"{near_reason}")
        claims, causes = explain(self._state, self.method, concentrated=self._rule == "concentrated", rule=self._rule)
        self.verdicts.append(Verdict(self._state, step, self._reason, claims, causes, notes, _summary(st), warns))

    def _set(self, state: str, rule: str, reason: str) -> None:
        self._state, self._rule, self._reason = state, rule, reason

    def _hits(self, state: str) -> int:
        """Observations among the last ``window`` that read ``state`` at the relaxed thresholds (0 for healthy and
        diverging, which the window rule never decides)."""
        if state in (HEALTHY, DIVERGING):
            return 0
        return sum(1 for h in self.history[-self.thresholds.window:] if h.get("near") == state)

    def _growth(self, st: dict, name: str, x: float) -> None:
        """``growth_<name>``: the factor by which ``x`` has grown over its current run of consecutive increases
        (1 when it did not increase), and ``growth_<name>_k`` that run's length in observations."""
        prev, start, k = self._streaks.get(name, (None, x, 0))
        if prev is not None and math.isfinite(x) and x > prev:
            k += 1
        else:
            start, k = x, 0
        self._streaks[name] = (x, start, k)
        st[f"growth_{name}"] = x / start if k and start > 0 else 1.0
        st[f"growth_{name}_k"] = k

    def _explosive(self, st: dict) -> str | None:
        """The reason when the mean ‖z‖ or the loss multiplies at every observation (before the first NaN)."""
        th = self.thresholds
        for name, what, value in (("z", "mean ‖z‖", st["z_norm"]), ("loss", "the loss", st.get("loss"))):
            g, k = st.get(f"growth_{name}", 1.0), st.get(f"growth_{name}_k", 0)
            if name == "loss" and (value is None or abs(value) <= th.explode_loss_floor):
                continue
            if k and g >= th.explode_growth and g ** (1 / k) >= th.explode_rate:
                return (f"{what} = {value:.3g} has grown ×{g:.3g} over the last {k} observation(s) "
                        f"(×{g ** (1 / k):.3g} per observation; explosive growth is ≥ ×{th.explode_growth:g} at "
                        f"≥ ×{th.explode_rate:g} per observation): the run diverges before its first non-finite value")
        return None

    def _classify(self, st: dict, relax: float = 1.0) -> tuple[str, str, str]:
        """``(state, reason, rule)`` of one observation; ``relax`` > 1 loosens every collapse threshold by that
        factor (the window rule and the near-threshold note) and skips the divergence rules."""
        th = self.thresholds
        if relax == 1.0:
            diverging = self._diverging(st)
            if diverging is not None:
                return diverging
        family = _family(self.method)
        if family == "vicreg" and st.get("feature_std", math.inf) < th.vicreg_std * relax:
            return COMPLETE, (f"VICReg's variance term reads the std of each raw feature, which it holds at γ = 1; "
                              f"the mean std √(Var z_j + 10⁻⁴) = {st['feature_std']:.3g} < "
                              f"{th.vicreg_std * relax:.3g} (every feature has shrunk towards a constant; ‖s‖ = "
                              f"{st['center_norm']:.3f}, 1 − ‖s‖² = {st['total_var']:.3g})"), "vicreg_variance"
        bound = 1 - (1 - th.barlow_redundancy) * relax          # relaxed on the decorrelation left, 1 − redundancy
        if family == "barlow_twins" and st.get("redundancy", 0.0) > bound:
            return DIMENSIONAL, (f"Barlow Twins' redundancy-reduction term reads the features' correlations, which "
                                 f"it drives to 0; their mean square off the diagonal is {st['redundancy']:.3g} > "
                                 f"{bound:.3g} (the features copy one another; ~1/B = "
                                 f"{1 / st['batch']:.3g} when independent; {st['live_dims']} of {st['max_rank']} "
                                 f"live directions, centred effective rank {st['effective_rank']:.2f})"), \
                "barlow_redundancy"
        tv, floor = st["total_var"], standardized_floor(st)
        if tv < th.complete_total_var * relax + floor:
            bound = (f" + {floor:.3f}, the floor that batch-standardised outputs allow at B = {st['batch']}"
                     if floor else "")
            return COMPLETE, (f"‖s‖ = {st['center_norm']:.4f}: the total variance of the l2-normalised embeddings "
                              f"1 − ‖s‖² = {tv:.3g} < {th.complete_total_var * relax:.3g}{bound} (nearly every "
                              f"sample maps to one point; std of ẑ {st['normalized_std']:.2e})"), "point"
        if standardized(st) and st["line_var"] < th.complete_line_var * relax:
            return COMPLETE, (f"the outputs are batch-standardised (every feature has mean 0 and variance 1 over the "
                              f"batch, a BatchNorm without affine parameters), so the embeddings cannot meet in one "
                              f"point; instead they lie on one line through the origin, z_i ≈ c_i w: the mean squared "
                              f"distance of ẑ from that line 1 − λ_max(E ẑẑᵀ) = {st['line_var']:.3g} < "
                              f"{th.complete_line_var * relax:.3g} (‖s‖ = {st['center_norm']:.3f}, 1 − ‖s‖² = "
                              f"{tv:.3g}: the samples split between the rays ±w). A rank-1 z = c wᵀ with mean c = 0 is "
                              f"the most collapsed batch the standardisation allows, the J1 collapse under it"), "line"
        start = self._rank_start()
        if start:
            st["rank_ratio"] = st["effective_rank"] / start
        if st["live_dims"] <= th.dimensional_fraction * relax * st["max_rank"]:
            return DIMENSIONAL, (f"only {st['live_dims']} of {st['max_rank']} possible directions carry variance "
                                 f"(eigenvalues of the centred Cov(ẑ) ≥ {th.live_eigenvalue:g} λ_max), at most "
                                 f"{th.dimensional_fraction * relax:.3g} of them, although ‖s‖ = "
                                 f"{st['center_norm']:.3f} is not 1 (centred effective rank "
                                 f"{st['effective_rank']:.2f}, RankMe {st['rankme']:.1f})"), "live"
        if (standardized(st) and start and len(self.history) > th.rank_baseline
                and st["rank_ratio"] < th.rank_concentration * relax):
            return DIMENSIONAL, (f"the outputs are batch-standardised (a BatchNorm without affine parameters: every "
                                 f"feature keeps variance 1, so ‖s‖ = {st['center_norm']:.3f} and {st['live_dims']} of "
                                 f"{st['max_rank']} live directions cannot show a collapse), but the spectrum has "
                                 f"concentrated: centred effective rank {st['effective_rank']:.2f}, "
                                 f"{st['rank_ratio']:.2f} of the run's own start {start:.1f} (< "
                                 f"{th.rank_concentration * relax:.3g}; RankMe {st['rankme']:.1f})"
                                 + self._loss_note(st)), "concentrated"
        return HEALTHY, (f"‖s‖ = {st['center_norm']:.3f}, {st['live_dims']} of {st['max_rank']} directions carry "
                         f"variance, centred effective rank {st['effective_rank']:.1f}, RankMe {st['rankme']:.1f}, "
                         f"std of ẑ {st['normalized_std']:.4f}"), "healthy"

    def _diverging(self, st: dict) -> tuple[str, str, str] | None:
        th = self.thresholds
        loss = st.get("loss", 0.0)
        if st["nonfinite"] or not math.isfinite(loss):
            what = (f"{st['nonfinite']} non-finite value(s) in the embeddings" if st["nonfinite"] else
                    f"the loss is {loss}")
            return DIVERGING, what, "nonfinite"
        explosive = self._explosive(st)
        if explosive is not None:
            return DIVERGING, explosive, "explosive"
        if self._z0 and st["z_norm"] > th.diverge_growth * self._z0:
            return DIVERGING, (f"mean ‖z‖ = {st['z_norm']:.3g} grew over {th.diverge_growth:g}× its first value "
                               f"{self._z0:.3g}"), "norm_growth"
        return None

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

    def _ema_notes(self, st: dict) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """``(notes, warnings)`` about the EMA target (C2): a target that is the online network itself, or that has
        not moved since the first observation while the online network did (momentum stuck at 1 from the start), is
        a WARNING; one that stopped moving after it had moved (m reaching 1 at the end of BYOL's cosine schedule,
        Grill et al. 2020, §3.2) a note."""
        if "ema_lag" not in st:
            return (), ()
        notes, warns, th = [], [], self.thresholds
        if st["ema_same_object"]:
            warns.append("the EMA target shares its parameters with the online network (lag 0): it is the same "
                         "object, not a copy (C2); deep-copy it")
        fp, lag = st["ema_fingerprint"], st["ema_lag"]
        if self._first_ema is None:
            self._first_ema = (fp, lag, st["step"])
        fp0, lag0, step0 = self._first_ema
        self._frozen = self._frozen + 1 if fp == self._last_fingerprint and not st["ema_same_object"] else 0
        self._last_fingerprint = fp
        if fp == fp0 and lag != lag0 and self._frozen + 1 >= th.frozen_target and not st["ema_same_object"]:
            warns.append(f"the EMA target has not moved in {self._frozen + 1} observations since the first"
                         + (f" (step {step0})" if step0 is not None else "") + f", while the online network did "
                         f"(lag ‖θ − ξ‖/‖θ‖ {lag0:.3g} → {lag:.3g}): momentum stuck at 1 (C2: ξ ← mξ + (1 − m)θ "
                         f"needs m < 1); the target stays at its initialisation — check the momentum schedule and "
                         f"that the EMA update runs after every optimiser step")
        elif self._frozen >= th.patience:
            notes.append(f"the EMA target has not moved over {self._frozen + 1} observations: momentum at 1 "
                         f"(C2; by design only at the very end of a schedule m → 1)")
        return tuple(notes), tuple(warns)

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


def judge_series(z1: Tensor, z2: Tensor | None = None, *, steps=None, method: str | None = None,
                 thresholds: Thresholds | None = None) -> CollapseMonitor:
    """Replay saved observations ``z1, z2`` (T, B, M) through a record-mode monitor (``ncspec diagnose``)."""
    mon = CollapseMonitor(mode="record", method=method, thresholds=thresholds, max_pending=max(1, len(z1)))
    with one_thread():
        for t in range(z1.shape[0]):
            mon.observe(z1[t], None if z2 is None else z2[t], step=None if steps is None else int(steps[t]))
        mon.report()
    return mon
