"""Choosing the implementation under test.

``load_adapter(spec)`` accepts, in order:

* ``"reference"`` — the built-in reference;
* ``"mutant:NAME"`` — a broken adapter from :mod:`ncspec.conformance.mutants.catalogue`;
* a name registered by a third-party package in the ``ncspec.adapters``
  entry-point group;
* ``"package.module:attr"`` — an adapter object (or a zero-argument factory), imported from the
  installed packages or, failing those, the current directory (as ``python -m`` would);
* ``"path/to/file.py:attr"`` — the same, from a Python file (relative to the current directory or absolute).

Every adapter comes back wrapped by :func:`ncspec.conformance.contract.validate.checked`.

The pytest option ``--adapter`` and the environment variable ``NCSPEC_ADAPTER``
both feed this function (the option wins).
"""
from __future__ import annotations

import difflib
import hashlib
import importlib
import importlib.util
import os
import sys
from importlib import metadata

from .adapter import Adapter
from .validate import AdapterError, checked

ENV_VAR = "NCSPEC_ADAPTER"
GROUP = "ncspec.adapters"
#: adapters shipped with ncspec for third-party libraries: name → module (``pip install ncspec[lightly]``…)
BUILTIN = {"lightly": "ncspec.conformance.adapters.lightly", "byol_pytorch": "ncspec.conformance.adapters.byol_pytorch",
           "stable_pretraining": "ncspec.conformance.adapters.stable_pretraining"}


def _entry_points() -> dict:
    return {ep.name: ep for ep in metadata.entry_points(group=GROUP)}


def available() -> list[str]:
    from ..mutants.catalogue import MUTANTS
    return ["reference", *BUILTIN, *sorted(_entry_points()), *(f"mutant:{m}" for m in sorted(MUTANTS))]


def load_adapter(spec: str | None) -> Adapter:
    """The adapter named by ``spec``, wrapped by :func:`ncspec.conformance.contract.validate.checked`: a malformed
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


def _did_you_mean(name: str, known) -> str:
    """`` (did you mean 'lightly'?)`` for the closest known name, '' when none is close."""
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    if not close:   # a case or separator slip: 'BYOL-pytorch'
        norm = {k.lower().replace("-", "_"): k for k in known}
        close = [norm[n] for n in difflib.get_close_matches(name.lower().replace("-", "_"), list(norm), n=1,
                                                             cutoff=0.6)]
    return f" (did you mean {close[0]!r}?)" if close else ""


def _is_file_spec(spec: str) -> bool:
    """``path/to/file.py:attr`` (or ``./file.py:attr``): a file, not a module path."""
    path, sep, attr = spec.rpartition(":")
    return bool(sep and attr) and (path.endswith(".py") or "/" in path or os.sep in path)


def _import_file(path: str):
    """The module defined by the Python file ``path``, imported once per file (registered in ``sys.modules``
    under a name derived from its absolute path, so dataclasses and pickling find it). The file's folder is put
    first on ``sys.path``, as pytest's default (prepend) import mode does for a test file: a lab's adapter imports
    its own code beside it (``from lab_byol import BYOL``)."""
    full = os.path.abspath(os.path.expanduser(path))
    if not os.path.isfile(full):
        raise LookupError(f"cannot load adapter from {path!r}: no such file ({full}). Give the path of the Python "
                          f"file that defines the adapter, e.g. './my_adapter.py:adapter'.")
    name = "ncspec_adapter_file_" + hashlib.blake2b(full.encode(), digest_size=6).hexdigest()
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, full)
    if spec is None or spec.loader is None:
        raise LookupError(f"cannot load adapter from {path!r}: not a Python source file; name a .py file.")
    module = importlib.util.module_from_spec(spec)
    folder = os.path.dirname(full)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def _resolve(spec: str):
    if spec == "reference":
        from ..adapters.reference import adapter
        return adapter
    if spec in BUILTIN:               # shipped third-party adapters (their package via an extra)
        try:
            return importlib.import_module(BUILTIN[spec]).adapter
        except ImportError as e:
            extra = {"byol_pytorch": "byol"}.get(spec, spec)
            hint = "" if "ncspec[" in str(e) else f"; install it with python3 -m pip install 'ncspec[{extra}]'"
            raise LookupError(f"adapter {spec!r} cannot be loaded: {e}{hint}") from e
    if spec.startswith("mutant:"):
        from ..mutants.catalogue import MUTANTS
        name = spec.split(":", 1)[1]
        if name not in MUTANTS:
            raise LookupError(f"unknown mutant {name!r}{_did_you_mean(name, MUTANTS)}; known mutants: "
                              f"{', '.join(sorted(MUTANTS))}.")
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
    elif _is_file_spec(spec):
        path, attr = spec.rsplit(":", 1)
        origin = f"{spec!r}"
        try:
            module = _import_file(path)
        except LookupError:
            raise
        except Exception as e:
            raise LookupError(f"cannot load adapter {spec!r}: running {path} raised {type(e).__name__}: {e}. Fix the "
                              f"file (it is imported as a module).") from e
        if not hasattr(module, attr):
            names = [n for n in vars(module) if not n.startswith("_")]
            raise LookupError(f"cannot load adapter {spec!r}: {path} defines no {attr!r}"
                              f"{_did_you_mean(attr, names)}. Name the adapter object it defines, as "
                              f"'{path}:adapter'.")
        obj = getattr(module, attr)
    elif ":" in spec:
        module, attr = spec.split(":", 1)
        origin = f"{spec!r}"
        try:
            obj = getattr(_import(module), attr)
        except (ImportError, AttributeError) as e:
            raise LookupError(f"cannot load adapter {spec!r}: {e}. Use 'package.module:attr' "
                              f"naming an importable adapter object.") from e
    else:
        raise LookupError(f"unknown adapter {spec!r}{_did_you_mean(spec, available())}. Available: "
                          f"{', '.join(available())}; or pass 'package.module:attr' or 'path/to/file.py:attr', or "
                          f"register one in the {GROUP!r} entry-point group.")
    if isinstance(obj, type) or (callable(obj) and not hasattr(obj, "build")):   # a class or a factory
        try:
            obj = obj()
        except Exception as e:
            raise AdapterError(f"adapter {spec!r}: calling {getattr(obj, '__qualname__', obj)!r} (from {origin}) "
                               f"to create the adapter raised {type(e).__name__}: {e}. Make it callable without "
                               f"arguments, or point at an adapter instance instead.") from e
    return obj
