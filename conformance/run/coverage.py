"""What a claim test exercised of the adapter under test: learners built, optimisation steps taken.

A claim whose tests pass without ever building the adapter's learner (an identity of the theory or of
the harness, checked on the reference's own formulas) says nothing about the adapter: the reports call
it *not applicable* to it, not passed. The counts:

* **builds** — learners returned by the adapter's ``build`` through :func:`ncspec.conformance.contract.validate.checked`
  (every adapter under test is wrapped by it; the definition a loss scale is measured against is built
  directly, and is not counted), in all and per method (``methods``: the report lists, per method the adapter
  declares, the claims that built it);
* **steps** — calls of such a learner's ``after_step()``, which every training loop (the linear simulator,
  the toy runs, ``ncspec train``) makes once per optimisation step. A claim that only evaluates a loss or
  its gradient builds learners and takes 0 steps.

:data:`TALLY` counts in the current process; the pytest plugin resets it before each test and sends the
test's counts with its report (so they reach the controller from pytest-xdist workers). Runs cached across
tests (:func:`cache`, :func:`credit`) credit every test that reads them with what computing them took: a
claim reading a run another claim's test computed exercised the adapter as much as if it had run it.
"""
from __future__ import annotations

import contextlib
import functools


class Usage:
    """Learners built (in all, and per method) and optimisation steps taken."""

    __slots__ = ("builds", "steps", "methods")

    def __init__(self, builds: int = 0, steps: int = 0, methods: dict | None = None):
        self.builds, self.steps = builds, steps
        self.methods = dict(methods or {})      # method → learners of it built

    def __repr__(self):
        return f"Usage(builds={self.builds}, steps={self.steps}, methods={self.methods})"


#: the counts of the running test (this process)
TALLY = Usage()


def reset() -> None:
    TALLY.builds = TALLY.steps = 0
    TALLY.methods = {}


def built(method: str) -> None:
    """Count one learner of ``method`` built through the adapter under test."""
    TALLY.builds += 1
    TALLY.methods[method] = TALLY.methods.get(method, 0) + 1


def credit(usage: Usage) -> None:
    """Add ``usage`` (what a cached run took) to the running test's counts."""
    TALLY.builds += usage.builds
    TALLY.steps += usage.steps
    for method, n in usage.methods.items():
        TALLY.methods[method] = TALLY.methods.get(method, 0) + n


@contextlib.contextmanager
def counted():
    """``with counted() as used:`` — afterwards ``used`` holds the builds and steps taken inside the block."""
    used = Usage()
    b0, s0, m0 = TALLY.builds, TALLY.steps, dict(TALLY.methods)
    try:
        yield used
    finally:
        used.builds, used.steps = TALLY.builds - b0, TALLY.steps - s0
        used.methods = {m: n - m0.get(m, 0) for m, n in TALLY.methods.items() if n > m0.get(m, 0)}


@contextlib.contextmanager
def uncounted():
    """Builds inside the block are a probe of what the adapter's learners expose, not the claim exercising them: the
    tally is restored afterwards (a claim that then skips has built nothing)."""
    b0, s0, m0 = TALLY.builds, TALLY.steps, dict(TALLY.methods)
    try:
        yield
    finally:
        TALLY.builds, TALLY.steps, TALLY.methods = b0, s0, m0


def cache(fn=None, *, maxsize: int | None = None):
    """``functools.cache`` (``functools.lru_cache(maxsize)`` with ``maxsize``) whose hits credit the caller with the
    builds and steps of the call that computed the value (exceptions are not cached, as there)."""
    if fn is None:
        return functools.partial(cache, maxsize=maxsize)
    store: dict = {}

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        key = (args, tuple(sorted(kwargs.items())))
        if key in store:
            value, used = store.pop(key)
            store[key] = (value, used)            # most recently used last
            credit(used)
            return value
        with counted() as used:
            value = fn(*args, **kwargs)
        store[key] = (value, used)
        if maxsize is not None and len(store) > maxsize:
            del store[next(iter(store))]
        return value

    wrapper.cache_clear = store.clear
    return wrapper
