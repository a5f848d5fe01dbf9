"""Smoke tests for the figures of the claims beyond the founding papers: ``ncspec figure stepwise`` (S) and
``ncspec figure jepa`` (M)."""
from __future__ import annotations

import importlib

import pytest


@pytest.mark.parametrize("name", ["stepwise", "jepa"])
def test_beyond_figures_write_a_png(tmp_path, name):
    make = getattr(importlib.import_module(f"ncspec.reference.figures.{name}"), f"{name}_figure")
    paths = make(tmp_path / "figs", fmt=("png",))
    assert [p.name for p in paths] == [f"{name}.png"]
    # three panels with ~20 curves: > 100 kB; an empty or failed canvas is a few kB
    assert paths[0].stat().st_size > 50_000, paths[0].stat().st_size
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
