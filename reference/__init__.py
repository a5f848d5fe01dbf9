"""ncspec reference: compact implementations of non-contrastive SSL and their theory.

Layout: ``losses`` (where the stop-grad sits), ``predictors`` (closed-form W_P),
``methods/`` (learners), ``linear/`` (the models the theory is stated on and the
simulator), ``theory/`` (closed-form predictions), ``metrics`` (NTK, spectra).
"""
