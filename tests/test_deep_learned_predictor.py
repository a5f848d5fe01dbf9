"""N9 on the CIFAR-10 fragment: a predictor that never trains fails its alignment assertion.

The reference's own BYOL run passes N9 in the deep tier's CI run (``ncspec check --tier deep``); here the mutant
``learned_predictor_frozen`` (the learned linear predictor left out of ``parameters()``) must fail by N9's assertion
at the cpu scale, not by a crash. Skips without the fragment (``$NCSPEC_SHARED/data`` or ``../shared/data``).
"""
from __future__ import annotations

from pathlib import Path

import pytest
from fragment import require_fragment

ROOT = Path(__file__).resolve().parents[1]


def test_n9_catches_a_learned_predictor_that_never_trains(monkeypatch):
    frag = require_fragment()
    monkeypatch.setenv("NCSPEC_DATA", str(frag))
    monkeypatch.setenv("NCSPEC_SCALE", "cpu")
    from ncspec.conformance.contract.registry import load_adapter
    from ncspec.conformance.run.recorder import Recorder
    from ncspec.spec_tests.test_deep import test_learned_linear_predictor_aligns_with_the_embedding_correlation as n9
    with pytest.raises(AssertionError, match="did not align with the embedding correlation"):
        n9(impl=load_adapter("mutant:learned_predictor_frozen"), record=Recorder())
