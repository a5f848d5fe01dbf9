"""Former name of :mod:`ncspec.reference.global_batch`, kept while ``conformance/mutants.py`` still imports it from
here; import ``global_batch``."""
from .global_batch import GatheredEncoder, gather_batch  # noqa: F401
