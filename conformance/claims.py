"""The claim registry. Claims are declared next to the tests that check them.

In a ``spec_tests`` module::

    H1 = register("H1", title=..., source=..., statement=..., measures=...,
                  prediction=..., tolerance=...)

    @H1.check
    def test_simsiam_eigenvalues_converge_to_one(impl, record, ...): ...

``register`` fills :data:`CLAIMS`; ``Claim.check`` marks the test with
``pytest.mark.claim(id)`` and lists it under the claim, so the registry and
the tests cannot drift apart. :func:`load_all` imports every spec module.
"""
from __future__ import annotations

import importlib
import pkgutil
from dataclasses import asdict, dataclass, field

import pytest


@dataclass
class Claim:
    id: str
    title: str
    source: str          # seed file and equation / section
    statement: str       # one line, the paper's claim
    measures: str        # the quantity a test measures
    prediction: str      # the predicted value or ordering (from theory)
    tolerance: str       # the tolerance and its justification
    derivation: str = ""  # for [derived]/[open] claims: how the constant was obtained
    tests: list[str] = field(default_factory=list)

    def check(self, fn):
        """Decorator: this test checks this claim."""
        name = f"{_short(fn.__module__)}::{fn.__name__}"
        if name not in self.tests:
            self.tests.append(name)
        return pytest.mark.claim(self.id)(fn)

    def to_dict(self) -> dict:
        return asdict(self)


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
        if old.to_dict() | {"tests": []} == claim.to_dict():
            return old
        raise ValueError(f"claim {id!r} is registered twice with different metadata ({old.title!r}, "
                         f"{claim.title!r}); claim IDs are unique.")
    CLAIMS[id] = claim
    return claim


def load_all(package: str = "ncspec.spec_tests") -> dict[str, Claim]:
    """Import every ``test_*`` module of the spec package; return the filled registry."""
    pkg = importlib.import_module(package)
    for info in pkgutil.iter_modules(pkg.__path__):
        if info.name.startswith("test_"):
            importlib.import_module(f"{package}.{info.name}")
    return CLAIMS


def sort_key(claim_id: str):
    head = claim_id.rstrip("0123456789")
    tail = claim_id[len(head):]
    return (head, int(tail) if tail else 0)
