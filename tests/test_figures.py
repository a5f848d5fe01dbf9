"""Smoke tests for the figure scripts in :mod:`ncspec.reference.figures`."""
from __future__ import annotations

import pytest
from ncspec.reference.figures.eigenspace import eigenspace_figure


def test_eigenspace_figure_writes_png_and_pdf(tmp_path):
    out = tmp_path / "figs"                     # created by the function
    paths = eigenspace_figure(out)
    assert [p.name for p in paths] == ["eigenspace.png", "eigenspace.pdf"]
    for p in paths:
        assert p.parent == out and p.is_file()
        # a 2×4 panel figure with streamlines and ~60 curves is far above these sizes;
        # an empty or failed canvas is a few kB.
        assert p.stat().st_size > 50_000, (p, p.stat().st_size)
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert paths[1].read_bytes()[:5] == b"%PDF-"


def test_eigenspace_figure_rejects_a_file_as_out_dir(tmp_path):
    f = tmp_path / "not_a_dir"
    f.write_text("x")
    with pytest.raises(ValueError, match="not a directory"):
        eigenspace_figure(f)


def test_directpred_figure_writes_png_and_pdf(tmp_path):
    from ncspec.reference.figures.directpred import directpred_figure

    out = tmp_path / "figs"
    paths = directpred_figure(out)
    assert [p.name for p in paths] == ["directpred.png", "directpred.pdf"]
    for p in paths:
        assert p.parent == out and p.is_file()
        # five panels with streamlines, a shaded basin and ~30 curves: hundreds of kB
        # (png) and > 100 kB (pdf); an empty or failed canvas is a few kB.
        assert p.stat().st_size > 50_000, (p, p.stat().st_size)
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert paths[1].read_bytes()[:5] == b"%PDF-"


@pytest.mark.parametrize("name", ["centervector", "dual"])
def test_family_figures_write_png_and_pdf(tmp_path, name):
    import importlib

    make = getattr(importlib.import_module(f"ncspec.reference.figures.{name}"), f"{name}_figure")
    paths = make(tmp_path / "figs")
    assert [p.name for p in paths] == [f"{name}.png", f"{name}.pdf"]
    for p in paths:
        assert p.is_file() and p.stat().st_size > 50_000, (p, p.stat().st_size)   # multi-panel plots
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert paths[1].read_bytes()[:5] == b"%PDF-"
