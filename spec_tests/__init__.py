"""The executable claims. One module per paper; each claim registered next to its tests."""
