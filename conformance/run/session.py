"""What a pytest session of the claims runs against: the adapter, the Hypothesis profile and seed, the tier, the
threads and CPUs; read from the options the plugin adds (:mod:`ncspec.conformance.plugin`) or the environment."""
from __future__ import annotations

import os
import secrets

import pytest
from hypothesis import HealthCheck, Phase, settings

from ..contract import registry

TIER_ENV_VAR = "NCSPEC_TIER"
TIERS = ("linear", "deep", "all")

# The profiles every gate runs (``ncspec check``, pytest with the plugin, ``ncspec mutants``): none has a
# wall-clock deadline — a deadline is a timed assertion, and a claim's run on a loaded 2-core machine took
# 288 ms against Hypothesis' default 200 ms (issue 25). Registered and loaded when this module is imported,
# which both the plugin and the kill matrix do before any spec module: the tests' ``@settings`` capture the
# profile loaded when they are decorated.
_COMMON = dict(deadline=None, database=None, print_blob=True,
               suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                      HealthCheck.data_too_large])
# Both profiles derive from Hypothesis' own defaults, not from whatever profile is loaded now: with
# $CI set Hypothesis loads a derandomised profile of its own, which ``thorough`` must not inherit.
_BASE = settings.get_profile("default")
settings.register_profile("ci", _BASE, max_examples=3, derandomize=True,
                          phases=[Phase.explicit, Phase.reuse, Phase.generate], **_COMMON)
settings.register_profile("thorough", _BASE, max_examples=40, derandomize=False, **_COMMON)
settings.load_profile(os.environ.get("NCSPEC_PROFILE", "ci"))


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask where the OS has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def torch_threads() -> int:
    """Intra-op threads for the claims' runs: ``$NCSPEC_THREADS``, default 1."""
    return int(os.environ.get("NCSPEC_THREADS", "1"))


def profile_name(config) -> str:
    """The Hypothesis profile this session runs: ``--hypothesis-profile``, ``$NCSPEC_PROFILE`` or ``ci``."""
    return config.getoption("hypothesis_profile", default=None) or os.environ.get("NCSPEC_PROFILE", "ci")


def session_seed(config) -> int | None:
    """The Hypothesis seed of a randomised session; None for a derandomised profile (``ci``), whose
    draws are fixed per test. A seed not given is drawn and handed to Hypothesis' option."""
    given = config.getoption("hypothesis_seed", default=None)
    if given is not None:
        try:
            return int(given)
        except ValueError:
            return given
    try:
        derandomized = settings.get_profile(profile_name(config)).derandomize
    except Exception:   # an unknown profile: Hypothesis reports it
        return None
    if derandomized or not hasattr(config.option, "hypothesis_seed"):
        return None
    seed = secrets.randbelow(2 ** 32)
    config.option.hypothesis_seed = seed
    return seed


def adapter_spec(config) -> str:
    """The adapter under test: ``--adapter``, ``$NCSPEC_ADAPTER`` or ``reference``."""
    return config.getoption("adapter", default=None) or os.environ.get(registry.ENV_VAR) or "reference"


_LOADED: dict[str, object] = {}


def run_adapter(spec: str | None):
    """The adapter named by ``spec`` (default ``reference``), loaded once per run in this process: ``ncspec check``'s
    early check and the deep tier's budget line, the plugin's configure and the ``impl`` fixture share the one
    object; :func:`end_run` forgets it when the run ends. A spec that fails to load raises each time."""
    spec = spec or "reference"
    if spec not in _LOADED:
        _LOADED[spec] = registry.load_adapter(spec)
    return _LOADED[spec]


def end_run() -> None:
    """Forget the run's adapter (the next run, in this process too, loads its own)."""
    _LOADED.clear()


def tier(config) -> str:
    """The tier whose claims run: ``--ncspec-tier``, ``$NCSPEC_TIER`` or ``linear``."""
    value = config.getoption("ncspec_tier", default=None) or os.environ.get(TIER_ENV_VAR) or "linear"
    if value not in TIERS:
        raise pytest.UsageError(f"${TIER_ENV_VAR}={value!r} is not a tier; use one of {', '.join(TIERS)}.")
    return value


def is_worker(config) -> bool:
    """True in a pytest-xdist worker process (the controller builds the report)."""
    return hasattr(config, "workerinput")
