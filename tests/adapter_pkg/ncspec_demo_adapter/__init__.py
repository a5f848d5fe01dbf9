"""The reference implementation, declaring only the SimSiam/IsoLoss closed-form subset.

A library that implements part of what ncspec can check lists only those tags:
the claims needing the others are skipped, with the missing tag as the reason.
"""
from ncspec.conformance.adapters.reference import ReferenceAdapter


class DemoAdapter(ReferenceAdapter):
    name = "demo"
    capabilities = frozenset({"simsiam", "isoloss", "loss:euclidean", "loss:cosine", "predictor:closed_form"})


adapter = DemoAdapter()
