"""The ``record`` fixture's rows: measured against predicted values per test, the worst example per quantity."""
from __future__ import annotations


class Recorder:
    """Measured-vs-predicted rows of one test; the worst example is kept per quantity."""

    def __init__(self):
        self.rows: dict[str, dict] = {}
        self.traces: list[dict] = []

    def trace(self, label: str, steps, series: dict, spectra=None) -> None:
        """A training trajectory for the report's plots (deep claims): ``series`` maps a quantity
        (e.g. ``"‖s‖"``) to its values at ``steps``; ``spectra`` is ``[(step, eigenvalues)]``."""
        self.traces.append(dict(label=label, steps=[int(s) for s in steps],
                                series={k: [float(v) for v in vs] for k, vs in series.items()},
                                spectra=[dict(step=int(st), eigenvalues=[float(x) for x in ev])
                                         for st, ev in (spectra or [])]))

    def __call__(self, quantity: str, measured: float, predicted: float | str, *, error: float | None = None,
                 tolerance: float | None = None, convention: bool = False) -> None:
        """Record one comparison. ``error`` and ``tolerance`` are in the same units
        (e.g. relative error and its bound); the row with the largest error/tolerance
        across Hypothesis examples is the one reported. ``convention``: the row states a convention in
        force (a measured loss scale other than ×1, a declared or default convention), which every
        report lists with the claims that saw it."""
        row = dict(quantity=quantity, measured=float(measured),
                   predicted=predicted if isinstance(predicted, str) else float(predicted),
                   error=None if error is None else float(error),
                   tolerance=None if tolerance is None else float(tolerance))
        if convention:
            row["convention"] = True
        old = self.rows.get(quantity)
        if old is None or _severity(row) >= _severity(old):
            self.rows[quantity] = row

    def within(self, quantity: str, measured: float, predicted: float | str, *, error: float, tolerance: float,
               message: str, strict: bool = False) -> None:
        """Record one comparison and assert ``error ≤ tolerance`` (``error < tolerance`` if ``strict``) in one
        call, so the tolerance the report shows is the one the test applies. ``message`` says what failed (the
        error and tolerance are added); a NaN error fails."""
        __tracebackhide__ = True
        self(quantity, measured, predicted, error=error, tolerance=tolerance)
        err, tol = float(error), float(tolerance)
        if not (err < tol if strict else err <= tol):
            beyond = "≥" if strict else ">"
            raise AssertionError(f"{message} ({quantity}: error {err:.4g} {beyond} tolerance {tol:.4g})")


def _severity(row) -> float:
    if row["error"] is None or not row["tolerance"]:
        return 0.0
    return row["error"] / row["tolerance"]
