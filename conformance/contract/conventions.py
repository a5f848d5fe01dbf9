"""Declared conventions: known, legitimate ways an implementation may differ from the definition.

An adapter may carry an optional ``conventions`` mapping (see ``conformance/contract/adapter.py``). The
claims check the *declared* convention exactly and show it in their report rows; an undeclared
deviation still fails, and the failure names the convention that would explain it.

==========================  ===========================================  ==========================
key                         values                                       default (the reference)
==========================  ===========================================  ==========================
``vicreg_variance``         ``"paper_eq6"``: v(Z) + v(Z′) (Bardes, Ponce  ``"authors_code"``
                            & LeCun, ICLR 2022, eq. 6);
                            ``"authors_code"``: ½[v(Z) + v(Z′)] (the
                            authors' released code)
``loss_value``              ``"definition"``; ``"surrogate"``: the loss   ``"definition"``
                            is defined only through its gradient (its
                            value is not the method's; value identities
                            are not applicable)
``directpred_boost``        ``"after"``: ω = (λ₊/λ_max)^α + ε (Tian,     ``"after"``
                            Chen & Ganguli, ICML 2021, §5);
                            ``"before"``: ω = (λ₊/λ_max + ε)^α (ε inside
                            the power: another predictor, with its own
                            fixed points)
``batch_std``               ``"biased"``: Barlow Twins standardises with  ``"biased"``
                            the biased batch std (BatchNorm1d's);
                            ``"unbiased"``: with Bessel's correction
                            (B − 1), c is (B − 1)/B × the definition's
``predictor_estimate``      ``{"rho": ρ}`` (0 ≤ ρ < 1), optionally        none (W_P from the batch,
                            ``"views": "online" | "both"``: W_P is built  or from what the learner
                            from a running estimate F ← ρF + (1 − ρ)Ĉ     exposes as ``corr_used``)
                            of the online view's (or both views')
                            correlation
``momentum_schedule``       ``"constant"``; ``"cosine"``: BYOL's          ``"constant"``
                            m_k = 1 − (1 − m)(cos(πk/K) + 1)/2 (Grill et
                            al., NeurIPS 2020, §3.2); ``"linear"``:
                            m_k = m + (1 − m)·k/K. Declared, ``build``
                            receives ``total_steps=K`` (claims C2, C9, N6)
``ema_buffers``             ``"own"`` (the target's BatchNorm running     none (any of the three,
                            statistics come from its own train-mode       never frozen: claim N6)
                            forwards), ``"copied"`` from the online
                            network, ``"averaged"`` with the EMA
==========================  ===========================================  ==========================

A constant factor in the loss is *not* declared: it is measured (:mod:`ncspec.conformance.contract.loss_scale`).

Scope. A key above applies to every method the adapter builds. A method's name as a key holds a dict of
conventions for that method only (issue 25: a DirectPred's running estimate must not switch off what the same
adapter's SimSiam and IsoLoss are judged by)::

    conventions = {"vicreg_variance": "paper_eq6",
                   "directpred": {"predictor_estimate": {"rho": 0.998, "views": "online"}}}

:func:`for_method` merges the two (the method's entries override); every reader that judges one method uses it.
"""
from __future__ import annotations

import math

from ncspec.reference.methods import METHODS

VALUES = {
    "vicreg_variance": ("authors_code", "paper_eq6"),
    "loss_value": ("definition", "surrogate"),
    "directpred_boost": ("after", "before"),
    "batch_std": ("biased", "unbiased"),
    "ema_buffers": ("own", "copied", "averaged"),
    "momentum_schedule": ("constant", "cosine", "linear"),
}
DEFAULTS = {"vicreg_variance": "authors_code", "loss_value": "definition", "directpred_boost": "after",
            "batch_std": "biased", "predictor_estimate": None, "ema_buffers": None,
            "momentum_schedule": "constant"}
#: the conventions that change a method's definition: key → (method, the reference's option for it)
OPTION = {"vicreg_variance": ("vicreg", "variance"), "directpred_boost": ("directpred", "boost"),
          "batch_std": ("barlow_twins", "bn_std")}
KNOWN = tuple(DEFAULTS)
#: what each declared value means, for reports and messages
MEANING = {
    ("vicreg_variance", "paper_eq6"): "VICReg variance term v(Z) + v(Z′) (Bardes, Ponce & LeCun, ICLR 2022, eq. 6)",
    ("vicreg_variance", "authors_code"): "VICReg variance term ½[v(Z) + v(Z′)] (the authors' released code)",
    ("loss_value", "surrogate"): "the loss is defined only through its gradient (value identities not applicable)",
    ("loss_value", "definition"): "the loss value is the method's",
    ("directpred_boost", "after"): "DirectPred's ω = (λ₊/λ_max)^α + ε, ε after the power (Tian, Chen & Ganguli, "
                                   "ICML 2021, §5)",
    ("directpred_boost", "before"): "DirectPred with ε inside the power, ω = (λ₊/λ_max + ε)^α: a variant with its "
                                    "own fixed points, not Tian et al.'s ω = (λ₊/λ_max)^α + ε",
    ("momentum_schedule", "constant"): "the EMA momentum is the `momentum` option at every step",
    ("momentum_schedule", "cosine"): "BYOL's cosine momentum schedule m_k = 1 − (1 − m)(cos(πk/K) + 1)/2 over the "
                                     "run's K = `total_steps` (Grill et al., NeurIPS 2020, §3.2)",
    ("momentum_schedule", "linear"): "a linear momentum warm-up m_k = m + (1 − m)·k/K over the run's K = "
                                     "`total_steps`",
    ("ema_buffers", "own"): "the EMA target's BatchNorm statistics are its own (its train-mode forwards update them; "
                            "BYOL's official code, byol-pytorch)",
    ("ema_buffers", "copied"): "the EMA target's BatchNorm statistics are copied from the online network each step",
    ("ema_buffers", "averaged"): "the EMA target's BatchNorm statistics are averaged with the parameters' momentum",
    ("batch_std", "biased"): "Barlow Twins' batch standardisation with the biased std (BatchNorm1d's, ÷B)",
    ("batch_std", "unbiased"): "BN with the unbiased std (Bessel's correction, ÷(B − 1)): the diagonal's target is "
                               "(B−1)/B of the definition's, c = (B − 1)/B × the definition's c",
}


def _method_names() -> frozenset[str]:
    return frozenset(METHODS)


def validate(conventions, label: str, *, scoped: bool = True) -> dict:
    """The adapter's ``conventions`` checked; raises ``ValueError`` naming the key and the fix. With ``scoped``,
    a method's name may key a dict of that method's own conventions (checked the same way, one level deep)."""
    if conventions is None:
        return {}
    if not isinstance(conventions, dict):
        raise ValueError(f"adapter {label!r}: conventions must be a dict such as {{'vicreg_variance': "
                         f"'paper_eq6'}}, got {type(conventions).__name__}.")
    for key, value in conventions.items():
        if scoped and key in _method_names():
            if not isinstance(value, dict):
                raise ValueError(f"adapter {label!r}: conventions[{key!r}] = {value!r}; a method's name keys a dict "
                                 f"of that method's own conventions, e.g. {{{key!r}: {{'predictor_estimate': "
                                 f"{{'rho': 0.3}}}}}}.")
            validate(value, f"{label}, method {key}", scoped=False)
            continue
        if key not in DEFAULTS:
            scope = " (or a method's name keying that method's own conventions)" if scoped else ""
            raise ValueError(f"adapter {label!r}: unknown convention {key!r}; known conventions: "
                             f"{', '.join(KNOWN)}{scope} (see docs/conformance.md, 'Declared conventions').")
        if key in VALUES and value not in VALUES[key]:
            raise ValueError(f"adapter {label!r}: conventions[{key!r}] = {value!r}; use one of "
                             f"{', '.join(map(repr, VALUES[key]))}.")
        if key == "predictor_estimate":
            _validate_estimate(value, label)
    return dict(conventions)


def _validate_estimate(value, label: str) -> None:
    fix = "write e.g. {'predictor_estimate': {'rho': 0.3}} (ρ of F ← ρF + (1 − ρ)Ĉ, in [0, 1))"
    if not isinstance(value, dict) or "rho" not in value:
        raise ValueError(f"adapter {label!r}: conventions['predictor_estimate'] = {value!r}; {fix}.")
    unknown = set(value) - {"rho", "views"}
    if unknown:
        raise ValueError(f"adapter {label!r}: conventions['predictor_estimate'] has unknown key(s) "
                         f"{sorted(unknown)}; it takes 'rho' and optionally 'views' ('online' or 'both').")
    rho = value["rho"]
    if isinstance(rho, bool) or not isinstance(rho, (int, float)) or not (0.0 <= rho < 1.0) or math.isnan(rho):
        raise ValueError(f"adapter {label!r}: conventions['predictor_estimate']['rho'] = {rho!r}; {fix}.")
    if value.get("views", "online") not in ("online", "both"):
        raise ValueError(f"adapter {label!r}: conventions['predictor_estimate']['views'] = {value['views']!r}; "
                         f"use 'online' (Ĉ = z1ᵀz1/B) or 'both' (½[z1ᵀz1 + z2ᵀz2]/B).")


def of(adapter) -> dict:
    """The adapter's declared conventions (validated; ``{}`` when it declares none)."""
    return validate(getattr(adapter, "conventions", None), getattr(adapter, "name", type(adapter).__name__))


def for_method(adapter_or_conventions, method: str) -> dict:
    """The conventions in force for ``method``: the adapter-wide keys, overridden by those under the method's
    name (an adapter, or its ``conventions`` dict). Method-scoped dicts of other methods are left out."""
    if isinstance(adapter_or_conventions, dict) or adapter_or_conventions is None:
        conventions = validate(adapter_or_conventions, "conventions")
    else:
        conventions = of(adapter_or_conventions)
    names = _method_names()
    merged = {k: v for k, v in conventions.items() if k not in names}
    merged.update(conventions.get(method, {}))
    return merged


def get(adapter, key: str, method: str | None = None):
    """The value in force for ``key`` (for ``method`` when given: :func:`for_method`): the declared one, else the
    default."""
    return _in_force(adapter, method).get(key, DEFAULTS[key])


def declared(adapter, key: str, method: str | None = None) -> bool:
    return key in _in_force(adapter, method)


def _in_force(adapter, method: str | None) -> dict:
    if method is not None:
        return for_method(adapter, method)
    names = _method_names()
    return {k: v for k, v in of(adapter).items() if k not in names}


def reference_options(method: str, conventions: dict) -> dict:
    """Options that make the reference follow ``conventions`` for ``method`` (the definition it is
    measured against)."""
    return {option: conventions[key] for key, (m, option) in OPTION.items() if m == method and key in conventions}


def alternatives(method: str, conventions: dict) -> list[dict]:
    """Other values of the conventions that apply to ``method`` — what an undeclared deviation may be."""
    return [{key: v} for key, (m, _) in OPTION.items() if m == method
            for v in VALUES[key] if v != conventions.get(key, DEFAULTS[key])]


def label(key: str, value, *, declared: bool) -> str:
    """``"vicreg_variance = paper_eq6 (declared): …"`` for report rows."""
    if key == "predictor_estimate" and isinstance(value, dict):
        text = (f"W_P from a running estimate F ← ρF + (1 − ρ)Ĉ, ρ = {value['rho']:g}, Ĉ of the "
                f"{'online view' if value.get('views', 'online') == 'online' else 'two views'}")
    else:
        text = MEANING.get((key, value), repr(value))
    return f"convention {key} = {value!r} ({'declared' if declared else 'default'}): {text}"
