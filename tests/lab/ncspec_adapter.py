"""The lab's ncspec adapter, written from docs/conformance.md alone: three families of its own code
(lab_ssl.py beside this file, imported as a sibling — `ncspec check --adapter tests/lab/ncspec_adapter.py:byol`)."""
from __future__ import annotations

from lab_ssl import BYOL, BarlowTwins, VICReg


def _layout(encoder) -> dict:
    """One head per replica of the harness's encoder (docs: encoder.replicas, or W.shape[0] for LinearEncoder), in
    its dtype (encoder.dtype, else its first weight's)."""
    W = getattr(encoder, "W", None)
    S = W.shape[0] if W is not None and W.dim() == 3 else int(getattr(encoder, "replicas", 0) or 0)
    dtype = getattr(encoder, "dtype", None)
    if not hasattr(dtype, "is_floating_point"):
        dtype = next(encoder.parameters()).dtype
    return dict(replicas=S, dtype=dtype)


def _only(method: str, options: dict, allowed: set) -> None:
    unknown = set(options) - allowed
    if unknown:
        raise TypeError(f"lab adapter: {method!r} does not take option(s) {sorted(unknown)}")


class LabBYOL:
    name = "lab-byol"
    capabilities = frozenset({"byol", "target:ema", "symmetrized", "loss:cosine"})
    conventions = {"momentum_schedule": "cosine", "ema_buffers": "own"}

    def __init__(self, bug: str = ""):
        self.bug = bug

    def build(self, method, encoder, embed_dim, **options):
        _only(method, options, {"momentum", "total_steps"})
        return BYOL(encoder, embed_dim, **_layout(encoder), base_momentum=options.get("momentum", 0.99),
                    total_steps=options.get("total_steps", 1000), bug=self.bug)


class LabVICReg:
    name = "lab-vicreg"
    capabilities = frozenset({"vicreg", "distributed", "ablation:no_projector"})   # its config's expander: None

    def __init__(self, bug: str = ""):
        self.bug = bug

    def build(self, method, encoder, embed_dim, **options):
        _only(method, options, {"sim_coeff", "std_coeff", "cov_coeff", "eps", "distributed", "projector"})
        return VICReg(encoder, embed_dim, **_layout(encoder), sim=options.get("sim_coeff", 25.0),
                      std=options.get("std_coeff", 25.0), cov=options.get("cov_coeff", 1.0),
                      eps=options.get("eps", 1e-4), distributed=options.get("distributed", False), bug=self.bug,
                      expander=None if options.get("projector", True) is False else 0)


class LabBarlowTwins:
    name = "lab-barlow-twins"
    # its config already switches off the batch standardisation and the projector: the docs' ablation tags
    capabilities = frozenset({"barlow_twins", "distributed", "ablation:no_batchnorm", "ablation:no_projector"})

    def __init__(self, bug: str = ""):
        self.bug = bug

    def build(self, method, encoder, embed_dim, **options):
        _only(method, options, {"lambda_offdiag", "batchnorm", "distributed", "projector"})
        return BarlowTwins(encoder, embed_dim, **_layout(encoder), lambd=options.get("lambda_offdiag", 0.0051),
                           standardise=options.get("batchnorm", True), distributed=options.get("distributed", False),
                           projector=None if options.get("projector", True) is False else 0, bug=self.bug)


byol, vicreg, barlow_twins = LabBYOL(), LabVICReg(), LabBarlowTwins()


vicreg_per_rank_batchnorm = LabVICReg("per_rank_batchnorm")     # a planted bug: the expander's BN statistics per rank
#: a planted bug (lightly's): under data parallelism each rank standardises its shard with its own statistics
barlow_twins_per_rank_statistics = LabBarlowTwins("per_rank_statistics")
