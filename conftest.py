# The ncspec pytest plugin is loaded through its `pytest11` entry point
# (pyproject.toml), so `pytest` here and `pytest --pyargs ncspec.spec_tests`
# anywhere else both get `--adapter`, the Hypothesis profiles and the report.
import pytest


@pytest.hookimpl(optionalhook=True)   # a hook of pytest-xdist, which `ncspec check -k …` does not load
def pytest_xdist_auto_num_workers(config):
    """``pytest -n auto`` (the README's test command): one worker per usable CPU, at most 4, since several
    tests start ``ncspec check`` subprocesses that run workers of their own."""
    from ncspec.conformance.run.session import usable_cpus
    return max(1, min(4, usable_cpus()))
