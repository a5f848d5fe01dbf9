"""The claim registry. Claims are declared next to the tests that check them.

In a ``spec_tests`` module::

    H1 = register("H1", title=..., source=[cite("halvagal2022", "eq. 5")], statement=...,
                  measures=..., prediction=..., tolerance=..., derivation=...)

    @H1.check
    def test_simsiam_eigenvalues_converge_to_the_fixed_point(impl, record, ...): ...

``register`` fills :data:`CLAIMS`; ``Claim.check`` marks the test with
``pytest.mark.claim(id)`` and lists it under the claim, so the registry and
the tests cannot drift apart. :func:`load_all` imports every spec module
(lazily: spec modules import this one, never the other way round at import time).

A claim's ``source`` is a list of :class:`~ncspec.reference.papers.Citation`
(``cite(paper_key, where)``); a claim letter lives in one spec module
(:data:`MODULES`).
"""
from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import pkgutil
from dataclasses import dataclass, field

import pytest
from ncspec.reference.papers import Citation, cite, format_citations

__all__ = ["CLAIMS", "MODULES", "Claim", "cite", "load_all", "register", "sort_key", "tier_of"]

#: claim letter → the spec module that holds its claims (one module per letter)
MODULES = {
    "H": "test_eigenspace", "T": "test_learned_predictor", "W": "test_weight_decay", "J": "test_center_vector",
    "P": "test_dual", "C": "test_conformance", "D": "test_distributed", "R": "test_relu_network", "N": "test_deep",
    "S": "test_stepwise", "M": "test_jepa",
}


@dataclass
class Claim:
    id: str
    title: str
    source: list[Citation]  # papers and where in them: [cite("tian2021", "§4, eq. 9"), ...]
    statement: str       # one line, the paper's claim
    measures: str        # the quantity a test measures
    prediction: str      # the predicted value or ordering (from theory)
    tolerance: str       # the tolerance and its justification
    derivation: str = ""  # what the papers do not state: how a constant was derived or an open form chosen
    tests: list[str] = field(default_factory=list)        # "spec_tests.test_x::test_name", one per test
    locations: list[tuple[str, int]] = field(default_factory=list)  # (source file, line), parallel to tests

    def check(self, fn):
        """Decorator: this test checks this claim."""
        name = f"{_short(fn.__module__)}::{fn.__name__}"
        if name not in self.tests:
            self.tests.append(name)
            code = inspect.unwrap(fn).__code__
            self.locations.append((os.path.abspath(code.co_filename), code.co_firstlineno))
        return pytest.mark.claim(self.id)(fn)

    def node_ids(self, start: str | None = None) -> list[str]:
        """Each test as a pytest node id (``path/test_x.py::test_name``) that ``pytest`` runs as it is:
        the path relative to ``start`` (default: the working directory) when the file lies below it."""
        start = os.path.abspath(start or os.getcwd())
        out = []
        for test, (path, _line) in zip(self.tests, self.locations):
            shown = os.path.relpath(path, start) if path.startswith(start + os.sep) else path
            out.append(f"{shown}::{test.split('::')[-1]}")
        return out

    def __post_init__(self):
        source = [self.source] if isinstance(self.source, Citation) else list(self.source or [])
        if not source or not all(isinstance(c, Citation) for c in source):
            raise TypeError(f"claim {self.id!r}: source must be a non-empty list of citations, e.g. "
                            f"[cite('tian2021', '§4, eq. 9')] (ncspec.reference.papers), got {self.source!r}.")
        self.source = source

    @property
    def source_text(self) -> str:
        """The citations as one resolvable line (author, year, where, arXiv id or DOI)."""
        return format_citations(self.source)

    def to_dict(self) -> dict:
        """JSON-friendly: ``source`` is the resolved line, ``citations`` the structured list."""
        return dict(id=self.id, title=self.title, source=self.source_text,
                    citations=[c.to_dict() for c in self.source], statement=self.statement,
                    measures=self.measures, prediction=self.prediction, tolerance=self.tolerance,
                    derivation=self.derivation, tests=list(self.tests),
                    locations=[dict(file=f, line=n) for f, n in self.locations])


CLAIMS: dict[str, Claim] = {}


def _short(module: str) -> str:
    """``ncspec.spec_tests.test_x`` and ``spec_tests.test_x`` (a checkout collected by path) → ``spec_tests.test_x``."""
    return module.removeprefix("ncspec.")


def register(id: str, **meta) -> Claim:
    """Declare a claim. The same module imported under its installed and its checkout
    name declares it twice with identical metadata: that returns the first one."""
    claim = Claim(id=id, **meta)
    old = CLAIMS.get(id)
    if old is not None:
        if old.to_dict() | {"tests": [], "locations": []} == claim.to_dict():
            return old
        raise ValueError(f"claim {id!r} is registered twice with different metadata ({old.title!r}, "
                         f"{claim.title!r}); claim IDs are unique.")
    CLAIMS[id] = claim
    return claim


#: the package of the spec modules: imported by name at run time (:func:`load_all`), never by an import statement
#: of this layer (the spec modules import conformance, so the reverse would be a loop)
SPEC_PACKAGE = "ncspec.spec_tests"


def spec_dir() -> str:
    """The folder of the spec modules, found without importing them."""
    return os.path.abspath(importlib.util.find_spec(SPEC_PACKAGE).submodule_search_locations[0])


def load_all(package: str = SPEC_PACKAGE) -> dict[str, Claim]:
    """Import every ``test_*`` module of the spec package; return the filled registry."""
    pkg = importlib.import_module(package)
    for info in pkgutil.iter_modules(pkg.__path__):
        if info.name.startswith("test_"):
            importlib.import_module(f"{package}.{info.name}")
    return CLAIMS


#: the spec module of the deep tier (convolutional networks on images); every other module is the linear tier's
DEEP_MODULE = "test_deep"


def tier_of(claim_id: str) -> str:
    """``"deep"`` for a claim of the deep tier (its letter's module is :data:`DEEP_MODULE`), else ``"linear"``."""
    return "deep" if MODULES.get(claim_id[:1]) == DEEP_MODULE else "linear"


def sort_key(claim_id: str):
    head = claim_id.rstrip("0123456789")
    tail = claim_id[len(head):]
    return (head, int(tail) if tail else 0)
