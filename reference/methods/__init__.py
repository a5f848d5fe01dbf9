"""Reference methods, one file per family. ``build`` is the adapter entry point."""
from .siamese import ClosedFormSiamese, build, METHODS

__all__ = ["ClosedFormSiamese", "build", "METHODS"]
