"""ncspec — an executable specification of non-contrastive self-supervised learning.

Installed, the repository's three top-level folders are this package's subpackages:
``ncspec.reference`` (methods, linear models, closed-form theory, vision stack),
``ncspec.spec_tests`` (the claims as pytest tests) and ``ncspec.conformance``
(adapters, the pytest plugin, reports, the ``ncspec`` command line).
"""
import importlib.abc as _abc
import importlib.util as _util
import os as _os
import sys as _sys

__version__ = "0.2.0"

#: the repository's top-level folders that are subpackages of ``ncspec`` (pyproject's package-dir)
SUBPACKAGES = ("reference", "spec_tests", "conformance")


class _CheckoutFinder(_abc.MetaPathFinder):
    """In a source checkout the three folders sit beside this one, not inside it: map exactly
    ``ncspec.<folder>`` to ``<root>/<folder>``, so ``ncspec.tests`` or ``ncspec.benchmarks`` do not import."""

    def __init__(self, root: str):
        self.root = root

    def find_spec(self, fullname, path=None, target=None):
        parent, _, name = fullname.rpartition(".")
        if parent != __name__ or name not in SUBPACKAGES:
            return None
        folder = _os.path.join(self.root, name)
        return _util.spec_from_file_location(fullname, _os.path.join(folder, "__init__.py"),
                                             submodule_search_locations=[folder])


_root = _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__)))
if _os.path.isfile(_os.path.join(_root, "pyproject.toml")) and _os.path.isdir(_os.path.join(_root, "spec_tests")):
    if not any(isinstance(f, _CheckoutFinder) for f in _sys.meta_path):
        _sys.meta_path.insert(0, _CheckoutFinder(_root))
