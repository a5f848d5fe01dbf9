"""The reference adapter: ncspec's own implementations (:mod:`ncspec.reference.methods`)."""
from __future__ import annotations

from ncspec.reference import methods


class ReferenceAdapter:
    name = "reference"
    capabilities = frozenset({
        "simsiam", "directpred", "directset", "directcopy", "isoloss", "byol", "learned_predictor",
        "loss:euclidean", "loss:cosine",
        "ablation:no_stopgrad", "ablation:wrong_side",
        "predictor:closed_form", "predictor:normalize", "predictor:learned",
        "target:ema", "weight_decay", "distributed", "distributed:batchnorm",
        # the center-vector family (Jha et al. 2024)
        "simsiam_mlp", "lsimple", "simclr", "triplet", "barlow_twins", "vicreg", "dino", "swav",
        "ablation:no_predictor", "ablation:no_decorrelation", "ablation:no_batchnorm", "ablation:bn_no_center",
        "ablation:no_centering", "ablation:no_sinkhorn",
    })

    def build(self, method, encoder, embed_dim, **options):
        return methods.build(method, encoder, embed_dim, **options)


adapter = ReferenceAdapter()
