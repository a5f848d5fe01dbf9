"""Choosing the implementation under test.

``load_adapter(spec)`` accepts, in order:

* ``"reference"`` — the built-in reference;
* ``"mutant:NAME"`` — a broken adapter from :mod:`conformance.mutants`;
* a name registered by a third-party package in the ``ncspec.adapters``
  entry-point group;
* ``"package.module:attr"`` — an adapter object (or a zero-argument factory).

The pytest option ``--adapter`` and the environment variable ``NCSPEC_ADAPTER``
both feed this function (the option wins).
"""
from __future__ import annotations

import importlib
from importlib import metadata

from .adapter import Adapter

ENV_VAR = "NCSPEC_ADAPTER"
GROUP = "ncspec.adapters"


def _entry_points() -> dict:
    return {ep.name: ep for ep in metadata.entry_points(group=GROUP)}


def available() -> list[str]:
    from .mutants import MUTANTS
    return ["reference", *sorted(_entry_points()), *(f"mutant:{m}" for m in sorted(MUTANTS))]


def load_adapter(spec: str | None) -> Adapter:
    spec = spec or "reference"
    if spec == "reference":
        from .adapters.reference import adapter
        return adapter
    if spec.startswith("mutant:"):
        from .mutants import MUTANTS
        name = spec.split(":", 1)[1]
        if name not in MUTANTS:
            raise LookupError(f"unknown mutant {name!r}; known mutants: {', '.join(sorted(MUTANTS))}.")
        return MUTANTS[name].adapter
    eps = _entry_points()
    if spec in eps:
        obj = eps[spec].load()
    elif ":" in spec:
        module, attr = spec.split(":", 1)
        try:
            obj = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as e:
            raise LookupError(f"cannot load adapter {spec!r}: {e}. Use 'package.module:attr' "
                              f"naming an importable adapter object.") from e
    else:
        raise LookupError(f"unknown adapter {spec!r}. Available: {', '.join(available())}; or pass "
                          f"'package.module:attr', or register one in the {GROUP!r} entry-point group.")
    if callable(obj) and not hasattr(obj, "build"):
        obj = obj()
    missing = [a for a in ("name", "capabilities", "build") if not hasattr(obj, a)]
    if missing:
        raise TypeError(f"adapter {spec!r} lacks {', '.join(missing)}: an adapter needs a 'name', a "
                        f"'capabilities' set of tags and a 'build(method, encoder, embed_dim, **options)' "
                        f"method (see conformance/adapter.py).")
    return obj
