"""The collapse monitor's verdicts: states, thresholds, and the claims and usual causes that explain each."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

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
        their start (the hand-written SimSiam loop of :mod:`ncspec.conformance.monitor.handwritten_simsiam`, 300
        steps: min 0.269–0.367 per seed; lightly's SimSiam module, 300 steps: ≥ 0.332; ``ncspec train``'s
        SimSiam with output
        BN, 48 steps: ≥ 0.608); the hand-written loop without stop-grad stayed ≤ 0.185 from step 50 on (minimum
        0.104–0.114). 0.22 is the geometric midpoint of 0.185 and 0.269.
    rank_baseline: observations at the start whose largest centred effective rank is the run's own start.
    diverge_growth: diverging when the mean ‖z‖ exceeds this multiple of its first observed value.
    explode_growth, explode_rate: diverging at once (before the first non-finite value) when the mean ‖z‖ or the
        loss's magnitude has grown at every one of the last k ≥ 1 observations, by ``explode_growth`` × in all and by
        at least ``explode_rate`` × per observation on average (geometric mean). The loss counts only above
        ``explode_loss_floor`` (a negative cosine is ≥ −1, 2 − 2 cos ≤ 4: bounded losses never explode).
    vicreg_std: for the VICReg family, complete collapse when the mean std of the raw features
        √(Var z_j + 10⁻⁴), which VICReg's variance term holds at γ = 1, falls below it (docs/monitor.md).
    barlow_redundancy: for the Barlow Twins family, dimensional collapse when the mean squared off-diagonal
        correlation of the features, which its redundancy-reduction term drives to 0, exceeds it; relaxed (window
        rule) on the decorrelation left, ``1 − redundancy < (1 − t)·near_band``. Healthy runs read up to 0.88 early
        (``ncspec train``'s Barlow Twins, λ = 1/32, 48 steps), λ = 0 reads 0.937–0.96 from step 200 (docs/monitor.md).
    patience: consecutive observations in a non-healthy state before it becomes the verdict.
    window, window_hits, near_band: a state also becomes the verdict when at least ``window_hits`` of the last
        ``window`` observations read it with every threshold relaxed by ``near_band`` (a collapse that hovers at a
        threshold, crossing it now and then but never ``patience`` times in a row); a healthy verdict whose
        observation reads a state at the relaxed thresholds carries a near-threshold note.
    frozen_target: observations of an EMA target that has not moved since the first one, while the online
        network moved, before the verdict carries a WARNING (momentum stuck at 1 from the start).
    warmup: observations at the start that are recorded but never judged.
    """

    complete_total_var: float = 0.05
    complete_line_var: float = 0.05
    live_eigenvalue: float = 1e-5
    dimensional_fraction: float = 0.125
    rank_concentration: float = 0.22
    rank_baseline: int = 5
    diverge_growth: float = 1e4
    explode_growth: float = 100.0
    explode_rate: float = 2.0
    explode_loss_floor: float = 4.0
    vicreg_std: float = 0.1
    barlow_redundancy: float = 0.93
    patience: int = 3
    window: int = 20
    window_hits: int = 15
    near_band: float = 1.5
    frozen_target: int = 3
    warmup: int = 0

    def __post_init__(self):
        for name in ("complete_total_var", "complete_line_var", "live_eigenvalue", "dimensional_fraction",
                     "rank_concentration", "diverge_growth", "explode_growth", "explode_rate",
                     "explode_loss_floor", "vicreg_std", "barlow_redundancy", "near_band"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"Thresholds.{name} must be a finite number > 0, got {v!r}.")
        for name in ("patience", "warmup", "rank_baseline", "window", "window_hits", "frozen_target"):
            v = getattr(self, name)
            if not (isinstance(v, int) and not isinstance(v, bool) and v >= (0 if name == "warmup" else 1)):
                raise ValueError(f"Thresholds.{name} must be an int >= {0 if name == 'warmup' else 1}, got {v!r}.")
        if self.window_hits > self.window:
            raise ValueError(f"Thresholds.window_hits ({self.window_hits}) must be <= window ({self.window}): "
                             f"hits are counted among the last `window` observations.")
        if self.near_band < 1:
            raise ValueError(f"Thresholds.near_band must be >= 1 (the factor that relaxes each threshold for the "
                             f"window rule and the near-threshold note), got {self.near_band!r}.")


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
    "V1": "VICReg (Bardes et al. 2022, eqs. 1–6): the variance term μ·mean_j relu(γ − std z_j) is what keeps the "
          "invariance term λ‖z − z′‖² from shrinking every feature to a constant; without it the embeddings collapse",
    "B1": "Barlow Twins (Zbontar et al. 2021, eq. 1): the redundancy-reduction term λ Σ_{i≠j} C_ij² decorrelates "
          "the features; the invariance term Σ_i (1 − C_ii)² alone is met by every feature copying one",
}

_NO_VARIANCE = ("the variance term is missing: VICReg's variance coefficient μ (std_coeff) is 0 or the term is "
                "dropped from the loss (Bardes et al. 2022, Table 4's ablation)")

#: rule → (claims, usual causes) for the rules that read a family's own loss quantities: they name the term
_RULE_CAUSES = {
    "vicreg_variance": (("V1", "J1"), (_NO_VARIANCE, "the variance hinge applied to the l2-normalised embeddings "
                                       "(their std is ~1/√M, below γ = 1 whatever the spread)")),
    "barlow_redundancy": (("B1", "T2"), ("the off-diagonal (redundancy-reduction) term is missing: Barlow Twins' λ "
                                         "is 0 or the term is dropped from the loss", "λ far too small for the "
                                         "embedding dimension (the paper's 0.0051 is for M = 8192; ~1/M otherwise)")),
}

#: method family → (claims, usual causes) for complete collapse
_COMPLETE_CAUSES = {
    "simsiam": (("J1", "J2", "H2"), ("stop-grad missing on the target branch (z.detach())",
                                     "predictor bypassed (p = z)")),
    "byol": (("J1", "C2", "H2"), ("the target is the online network itself (no EMA copy, gradient flows into it)",
                                  "predictor bypassed (p = z)", "stop-grad missing on the target branch")),
    "barlow_twins": (("J1", "J5"), ("BatchNorm removed before the cross-correlation (c = z1ᵀz2/B on raw z)",)),
    "dino": (("J1", "J6"), ("centering of the teacher's outputs turned off (center = 0 or momentum 1)",)),
    "vicreg": (("J1", "V1"), (_NO_VARIANCE,)),
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


def explain(state: str, method: str | None = None, *, concentrated: bool = False, rule: str | None = None
            ) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``(claims, causes)`` for a verdict ``state``; ``method`` narrows the causes to its family. ``concentrated``:
    a dimensional collapse of batch-standardised outputs read from the spectrum's concentration, whose usual causes
    are those of complete collapse (the BatchNorm stops it short of a point) before the dimensional ones. ``rule``:
    the rule that read the state; a family's own loss quantity (``vicreg_variance``, ``barlow_redundancy``) names
    the missing term first."""
    if rule in _RULE_CAUSES and state != HEALTHY:
        claims, causes = _RULE_CAUSES[rule]
        rest = explain(state, method, concentrated=concentrated)
        return (tuple(dict.fromkeys((*claims, *rest[0]))), tuple(dict.fromkeys((*causes, *rest[1]))))
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
        return ((), ("learning rate too high (the loss or the embeddings' norm multiplies at every step before the "
                     "first NaN)", "no weight decay with a learned predictor (norms grow freely)",
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
    #: problems that are not a collapse but need attention now (an EMA target that never moved): printed as WARNING
    warnings: tuple[str, ...] = ()

    @property
    def healthy(self) -> bool:
        return self.state == HEALTHY

    def __str__(self) -> str:
        at = f" at step {self.step}" if self.step is not None else ""
        lines = [f"{self.state}{at}: {self.reason}"]
        lines += [f"  WARNING: {w}" for w in self.warnings]
        lines += [f"  explained by {CLAIMS[c]}" for c in self.claims]
        if self.causes:
            lines.append("  usual causes: " + "; ".join(self.causes))
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["claims"], d["causes"], d["notes"] = list(self.claims), list(self.causes), list(self.notes)
        d["warnings"] = list(self.warnings)
        return d
