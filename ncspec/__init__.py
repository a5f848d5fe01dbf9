"""ncspec — an executable specification of non-contrastive self-supervised learning.

Installed, the repository's three top-level folders are this package's subpackages:
``ncspec.reference`` (methods, linear models, closed-form theory, vision stack),
``ncspec.spec_tests`` (the claims as pytest tests) and ``ncspec.conformance``
(adapters, the pytest plugin, reports, the ``ncspec`` command line).
"""
import os as _os

__version__ = "0.2.0"

# In a source checkout the subpackages sit beside this folder, not inside it
# (``reference/``, ``spec_tests/``, ``conformance/`` at the top level).
_root = _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__)))
if _os.path.isfile(_os.path.join(_root, "pyproject.toml")) and _os.path.isdir(_os.path.join(_root, "spec_tests")):
    __path__.append(_root)
