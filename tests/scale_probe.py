"""Scale-convention probes: the reference with a constant factor in its loss, as `module:attr` adapters.

A pure rescale (×2: no ½; ÷M: a mean over the embedding features instead of a sum; ×0.03: a loss
weight) is a learning-rate convention and must pass every claim, reported with its factor. The
data term scaled without the weight decay, or a negative factor, is a different objective and
must fail, with a message naming it.

    ncspec check --adapter tests.scale_probe:times_two
"""
from __future__ import annotations

from ncspec.conformance.adapters.reference import ReferenceAdapter


class _Scaled:
    """A reference learner whose loss is ``factor(M) ×`` the reference's (everything else as is)."""

    def __init__(self, learner, factor):
        self._learner, self._factor = learner, factor

    def __getattr__(self, name):                 # W_P, W_p, target_encoder, corr_used, ...
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._learner, name)

    def parameters(self):
        return self._learner.parameters()

    def loss(self, view1, view2):
        return self._factor * self._learner.loss(view1, view2)

    def after_step(self):
        self._learner.after_step()


class _DataOnly(_Scaled):
    """``factor ×`` the data term, the weight decay ``(η/2)‖W‖²`` of the encoder left unscaled."""

    def __init__(self, learner, factor, encoder, weight_decay):
        super().__init__(learner, factor)
        self._encoder, self._eta = encoder, weight_decay

    def loss(self, view1, view2):
        decay = 0.5 * self._eta * sum(p.pow(2).sum() for p in self._encoder.parameters())
        return self._factor * self._learner.loss(view1, view2) + decay


class ScaleProbe(ReferenceAdapter):
    def __init__(self, name: str, factor=None, per_feature: bool = False, data_only: bool = False):
        self.name = f"scale-probe:{name}"
        self._factor, self._per_feature, self._data_only = factor, per_feature, data_only

    def build(self, method, encoder, embed_dim, **options):
        factor = 1.0 / embed_dim if self._per_feature else self._factor
        if self._data_only and options.get("weight_decay") and method in ("directset", "directcopy", "simsiam"):
            eta = options.pop("weight_decay")
            return _DataOnly(super().build(method, encoder, embed_dim, **options), factor, encoder, eta)
        return _Scaled(super().build(method, encoder, embed_dim, **options), factor)


times_two = ScaleProbe("x2", 2.0)
per_feature_mean = ScaleProbe("mean-over-M", per_feature=True)
times_003 = ScaleProbe("x0.03", 0.03)
data_term_only = ScaleProbe("data-x2-decay-x1", 2.0, data_only=True)
negative = ScaleProbe("x-1", -1.0)
