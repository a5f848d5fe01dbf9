"""The two tiers hand a learner different layouts, and an adapter written for one is told so at the other.

The linear tier's ``encoder(view)`` is ``(S, B, M)`` (S replicas of a float64 linear encoder), the deep tier's
``(B, M)`` (one convolutional network on image batches). Each case is a small adapter written for one tier only,
run where it does not fit: its first ``loss`` call fails with an :class:`AdapterError` that names the tier, both
layouts and the fix (docs/conformance.md, "The adapter contract"), not with a bare shape error from inside it.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from ncspec.conformance.contract.validate import AdapterError, checked
from ncspec.reference.linear import LinearEncoder, population_views
from ncspec.reference.vision.data import ImageDataset
from torch import nn


def _negcos(p, z):
    return -F.cosine_similarity(p, z.detach(), dim=-1).mean()


class _PerReplicaHeads:
    """Written for the linear tier: one BatchNorm-Linear head per replica, z[s] taken as replica s's (B, M)."""

    def __init__(self, encoder, M):
        self.encoder, self.M, self.heads = encoder, M, None

    def parameters(self):
        yield from self.encoder.parameters()
        if self.heads is not None:
            yield from self.heads.parameters()

    def loss(self, v1, v2):
        z1, z2 = self.encoder(v1), self.encoder(v2)
        if self.heads is None:
            self.heads = nn.ModuleList(nn.Sequential(nn.BatchNorm1d(self.M), nn.Linear(self.M, self.M))
                                       for _ in range(z1.shape[0])).to(z1.dtype)
        return sum(_negcos(self.heads[s](z1[s]), z2[s]) for s in range(z1.shape[0]))

    def after_step(self):
        pass


class _OneHead(_PerReplicaHeads):
    """Written for the deep tier: one BatchNorm-Linear head applied to z as (B, M)."""

    def loss(self, v1, v2):
        z1, z2 = self.encoder(v1), self.encoder(v2)
        if self.heads is None:
            self.heads = nn.Sequential(nn.BatchNorm1d(self.M), nn.Linear(self.M, self.M)).to(z1.dtype)
        return _negcos(self.heads(z1), z2)


class _Adapter:
    capabilities = frozenset({"simsiam_mlp"})

    def __init__(self, name, learner):
        self.name, self._learner = name, learner

    def build(self, method, encoder, embed_dim, **options):
        return self._learner(encoder, embed_dim)


def test_a_linear_tier_adapter_at_the_deep_tier_is_told_the_deep_layout():
    """Through the deep tier's own training run (the ``dry`` scale on 64 random 32 px images)."""
    from ncspec.conformance.run.deep_tier import SCALES
    from ncspec.spec_tests.deep_harness import Run, run_options, train_run
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8, generator=g)
    y = torch.randint(0, 10, (64,), generator=g)
    ds = ImageDataset("random32", x, y, x[:16], y[:16], 10)
    impl = checked(_Adapter("linear-tier-only", _PerReplicaHeads))
    sc = SCALES["dry"]
    with pytest.raises(AdapterError) as e:
        train_run(impl, Run("simsiam_mlp", run_options("simsiam_mlp", sc)), sc, ds)
    msg = str(e.value)
    assert "expected 2D or 3D input (got 1D input)" in msg            # the learner's own error, kept
    assert "this is the deep tier, where encoder(view) is (B, M) = (32, 32)" in msg
    assert "the linear tier's encoder(view) is (S, B, M)" in msg
    assert "treat every dimension before the last two (B, M) as replicas" in msg and "docs/conformance.md" in msg


def test_a_deep_tier_adapter_at_the_linear_tier_is_told_the_linear_layout():
    N, M, S = 5, 3, 2
    enc = LinearEncoder(torch.randn((S, M, N), generator=torch.Generator().manual_seed(0), dtype=torch.float64))
    x1, x2 = population_views(N, 0.3)
    learner = checked(_Adapter("deep-tier-only", _OneHead)).build("simsiam_mlp", enc, M)
    with pytest.raises(AdapterError) as e:
        learner.loss(x1, x2)
    msg = str(e.value)
    assert f"this is the linear tier, where encoder(view) is (S, B, M) = ({S}, {x1.shape[-2]}, {M})" in msg
    assert "the deep tier's encoder(view) is (B, M)" in msg and "BatchNorm1d(M)" in msg


def test_a_learner_that_takes_both_layouts_runs_in_both():
    """The fix the message names: leading dimensions as replicas, one head each."""

    class Both(_PerReplicaHeads):
        def __init__(self, encoder, M):
            super().__init__(encoder, M)         # heads in build: one per replica, as docs/conformance.md says
            W = getattr(encoder, "W", None)
            S = W.shape[0] if W is not None and W.dim() == 3 else int(getattr(encoder, "replicas", 0) or 0)
            dtype = next(encoder.parameters()).dtype
            self.heads = nn.ModuleList(nn.Sequential(nn.BatchNorm1d(M), nn.Linear(M, M))
                                       for _ in range(max(S, 1))).to(dtype)

        def loss(self, v1, v2):
            z1, z2 = self.encoder(v1), self.encoder(v2)
            lead = z1.shape[:-2]
            z1, z2 = z1.reshape(-1, *z1.shape[-2:]), z2.reshape(-1, *z2.shape[-2:])
            assert len(self.heads) == max(1, lead.numel())
            return sum(_negcos(self.heads[s](z1[s]), z2[s]) for s in range(z1.shape[0]))

    N, M = 5, 3
    enc = LinearEncoder(torch.randn((2, M, N), generator=torch.Generator().manual_seed(0), dtype=torch.float64))
    x1, x2 = population_views(N, 0.3)
    assert checked(_Adapter("both", Both)).build("simsiam_mlp", enc, M).loss(x1, x2).dim() == 0
    deep = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, M))
    v = torch.randn(16, 3, 8, 8)
    assert checked(_Adapter("both", Both)).build("simsiam_mlp", deep, M).loss(v, v + 0.1).dim() == 0
