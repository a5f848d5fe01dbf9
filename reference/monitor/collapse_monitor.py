"""The collapse monitor: queues observations of a training run, judges them in order, acts on its mode (package
docstring: :mod:`ncspec.reference.monitor`)."""
from __future__ import annotations

import math
import warnings
from dataclasses import asdict
from pathlib import Path

import torch
from torch import Tensor

from .observations import _summary, _to_host, ema_lag, observation, standardized, standardized_floor
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


def judge_series(z1: Tensor, z2: Tensor | None = None, *, steps=None, method: str | None = None,
                 thresholds: Thresholds | None = None) -> CollapseMonitor:
    """Replay saved observations ``z1, z2`` (T, B, M) through a record-mode monitor (``ncspec diagnose``)."""
    mon = CollapseMonitor(mode="record", method=method, thresholds=thresholds, max_pending=max(1, len(z1)))
    for t in range(z1.shape[0]):
        mon.observe(z1[t], None if z2 is None else z2[t], step=None if steps is None else int(steps[t]))
    mon.report()
    return mon
