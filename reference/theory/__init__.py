"""Closed-form predictions, one module per paper. Never imports the simulators."""
