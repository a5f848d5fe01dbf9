"""Former name of :mod:`ncspec.reference.data_parallel`, kept while ``reference/vision/siamese.py`` still imports it
from here; import ``data_parallel``."""
from .data_parallel import gather  # noqa: F401
