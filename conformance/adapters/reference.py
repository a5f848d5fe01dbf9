"""The reference adapter: ncspec's own implementations (:mod:`reference.methods`)."""
from __future__ import annotations

from reference import methods


class ReferenceAdapter:
    name = "reference"
    capabilities = frozenset({
        "simsiam", "directpred", "directset", "directcopy", "isoloss", "byol", "learned_predictor",
        "loss:euclidean", "loss:cosine",
        "ablation:no_stopgrad", "ablation:wrong_side",
        "predictor:closed_form", "predictor:normalize", "predictor:learned",
        "target:ema", "weight_decay",
    })

    def build(self, method, encoder, embed_dim, **options):
        return methods.build(method, encoder, embed_dim, **options)


adapter = ReferenceAdapter()
