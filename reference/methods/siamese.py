"""Former name of :mod:`ncspec.reference.methods.closed_form`, kept while ``reference/vision/siamese.py`` still imports
it from here; import ``closed_form``."""
from .closed_form import METHODS, ClosedFormSiamese  # noqa: F401
