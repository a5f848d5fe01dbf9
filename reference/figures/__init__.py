"""Figures that reproduce the seed papers' plots, theory drawn over simulation."""
