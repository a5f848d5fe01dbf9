"""Capability tags are one declared set (conformance.adapter.known_tags): a misspelt tag in an adapter is rejected
by validation with the close one named, and so is one in a claim's requirement — either would silently skip claims."""
from __future__ import annotations

import pytest
from ncspec.conformance.contract.adapter import known_tags, unknown_tags
from ncspec.conformance.contract.validate import AdapterError, checked
from ncspec.spec_tests.harness import require


class _Misspelt:
    name = "misspelt"
    capabilities = frozenset({"simsiam", "ablation:no_stopgrd"})

    def build(self, method, encoder, embed_dim, **options):
        raise AssertionError("never built")


def test_a_misspelt_adapter_tag_is_rejected_with_a_suggestion():
    with pytest.raises(AdapterError, match=r"'ablation:no_stopgrd' \(did you mean 'ablation:no_stopgrad'\?\)"):
        checked(_Misspelt())


class _Simsiam:
    name = "ok"
    capabilities = frozenset({"simsiam"})

    def build(self, method, encoder, embed_dim, **options):
        raise AssertionError("never built")


def test_a_misspelt_claim_requirement_is_an_error_not_a_skip():
    with pytest.raises(ValueError, match=r"'barlow_twin' \(did you mean 'barlow_twins'\?\)"):
        require(checked(_Simsiam()), "barlow_twin")


def test_every_shipped_adapter_declares_known_tags_only():
    from ncspec.conformance.adapters.reference import ReferenceAdapter
    assert not unknown_tags(ReferenceAdapter.capabilities)
    assert {"simsiam", "target:ema", "ablation:no_sinkhorn"} <= known_tags()
