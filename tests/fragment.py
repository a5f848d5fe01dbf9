"""The CIFAR-10 fragment the image tests train on: ``$NCSPEC_SHARED/data/cifar10_fragment.npz``, else
``../shared/data/`` beside the checkout. Tests that need it skip, naming it, when it is absent."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MISSING = "the CIFAR-10 fragment is not available (set NCSPEC_SHARED or provide ../shared/data/)"


def fragment_path() -> Path | None:
    base = Path(os.environ["NCSPEC_SHARED"]) if os.environ.get("NCSPEC_SHARED") else ROOT.parent / "shared"
    p = base / "data" / "cifar10_fragment.npz"
    return p if p.is_file() else None


def require_fragment() -> Path:
    """The fragment's path, or ``pytest.skip`` saying where it is looked for."""
    p = fragment_path()
    if p is None:
        pytest.skip(MISSING)
    return p
