"""The collapse monitor, kept importable here: it lives in :mod:`ncspec.reference.monitor`, where the reference's
training loop and the conformance layer both import it."""
from __future__ import annotations

from ...reference.monitor import *  # noqa: F403
from ...reference.monitor import __all__  # noqa: F401
