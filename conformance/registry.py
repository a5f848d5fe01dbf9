"""Choosing the implementation under test.

``load_adapter(spec)`` accepts, in order:

* ``"reference"`` — the built-in reference;
* ``"mutant:NAME"`` — a broken adapter from :mod:`ncspec.conformance.mutants`;
* a name registered by a third-party package in the ``ncspec.adapters``
  entry-point group;
* ``"package.module:attr"`` — an adapter object (or a zero-argument factory), imported from the
  installed packages or, failing those, the current directory (as ``python -m`` would).

Every adapter comes back wrapped by :func:`ncspec.conformance.validate.checked`.

The pytest option ``--adapter`` and the environment variable ``NCSPEC_ADAPTER``
both feed this function (the option wins).
"""
from __future__ import annotations

import importlib
import os
import sys
from importlib import metadata

from .adapter import Adapter
from .validate import AdapterError, checked

ENV_VAR = "NCSPEC_ADAPTER"
GROUP = "ncspec.adapters"
#: adapters shipped with ncspec for third-party libraries: name → module (``pip install ncspec[lightly]``…)
BUILTIN = {"lightly": "ncspec.conformance.adapters.lightly", "byol_pytorch": "ncspec.conformance.adapters.byol_pytorch"}


def _entry_points() -> dict:
    return {ep.name: ep for ep in metadata.entry_points(group=GROUP)}


def available() -> list[str]:
    from .mutants import MUTANTS
    return ["reference", *BUILTIN, *sorted(_entry_points()), *(f"mutant:{m}" for m in sorted(MUTANTS))]


def load_adapter(spec: str | None) -> Adapter:
    """The adapter named by ``spec``, wrapped by :func:`ncspec.conformance.validate.checked`: a malformed
    adapter fails here, and its learners on their first use, with an error naming the fix."""
    spec = spec or "reference"
    return checked(_resolve(spec), spec)


def _import(module: str):
    """Import ``module``; as under ``python -m``, a package in the current directory is found too (a lab's
    ``ncspec check --adapter mylab.adapter:adapter`` from its repository root), after the installed ones."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        cwd = os.getcwd()
        if e.name != module.split(".")[0] or any(p in ("", cwd) for p in sys.path):
            raise
        sys.path.append(cwd)
        return importlib.import_module(module)


def _resolve(spec: str):
    if spec == "reference":
        from .adapters.reference import adapter
        return adapter
    if spec in BUILTIN:               # shipped third-party adapters (their package via an extra)
        try:
            return importlib.import_module(BUILTIN[spec]).adapter
        except ImportError as e:
            extra = {"byol_pytorch": "byol"}.get(spec, spec)
            hint = "" if "ncspec[" in str(e) else f"; install it with python3 -m pip install 'ncspec[{extra}]'"
            raise LookupError(f"adapter {spec!r} cannot be loaded: {e}{hint}") from e
    if spec.startswith("mutant:"):
        from .mutants import MUTANTS
        name = spec.split(":", 1)[1]
        if name not in MUTANTS:
            raise LookupError(f"unknown mutant {name!r}; known mutants: {', '.join(sorted(MUTANTS))}.")
        return MUTANTS[name].adapter
    eps = _entry_points()
    if spec in eps:
        ep = eps[spec]
        dist = getattr(getattr(ep, "dist", None), "name", None)
        origin = f"entry point {ep.name} = {ep.value!r} in group {GROUP!r}" + (f" (package {dist})" if dist else "")
        try:
            obj = ep.load()
        except Exception as e:
            raise LookupError(f"cannot load adapter {spec!r}: {origin} failed with {type(e).__name__}: {e}. Fix the "
                              f"entry point in that package's [project.entry-points.\"{GROUP}\"] table (it must name "
                              f"'module:attr' of an adapter object) and reinstall it, or uninstall the package.") from e
    elif ":" in spec:
        module, attr = spec.split(":", 1)
        origin = f"{spec!r}"
        try:
            obj = getattr(_import(module), attr)
        except (ImportError, AttributeError) as e:
            raise LookupError(f"cannot load adapter {spec!r}: {e}. Use 'package.module:attr' "
                              f"naming an importable adapter object.") from e
    else:
        raise LookupError(f"unknown adapter {spec!r}. Available: {', '.join(available())}; or pass "
                          f"'package.module:attr', or register one in the {GROUP!r} entry-point group.")
    if isinstance(obj, type) or (callable(obj) and not hasattr(obj, "build")):   # a class or a factory
        try:
            obj = obj()
        except Exception as e:
            raise AdapterError(f"adapter {spec!r}: calling {getattr(obj, '__qualname__', obj)!r} (from {origin}) "
                               f"to create the adapter raised {type(e).__name__}: {e}. Make it callable without "
                               f"arguments, or point at an adapter instance instead.") from e
    return obj
