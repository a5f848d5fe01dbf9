"""The mutant zoo: deliberate bugs and the kill matrix that shows every claim can fail.

:mod:`.catalogue` (the mutants, each with the claims expected to catch it), :mod:`.patches` (one bug per mutant),
:mod:`.killmatrix` (runs the claims against each mutant). The catalogue is importable from here."""
from .catalogue import MUTANTS, MutantSpec

__all__ = ["MUTANTS", "MutantSpec"]
