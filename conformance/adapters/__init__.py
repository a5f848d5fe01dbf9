"""Shipped adapters."""
