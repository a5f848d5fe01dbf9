"""Meta-test: every claim test fails on the broken variant it is about.

For each mutant in :data:`ncspec.conformance.mutants.catalogue.MUTANTS`, each claim listed in its
``caught_by`` must *fail* (at least one of the claim's tests fails) when the
suite runs against the mutant, and the same tests must pass on the reference
(the default ``pytest spec_tests`` run shows that; here we re-check the
pairing so a claim cannot "catch" a mutant by failing for everyone).
"""
from __future__ import annotations

import pytest
from ncspec.conformance.mutants.catalogue import MUTANTS
from ncspec.conformance.mutants.killmatrix import run_claim
from ncspec.conformance.run.recorder import Recorder


def _deep_tier(claim: str) -> bool:
    """A deep-tier claim (its tests in spec_tests/test_deep.py) needs images: its kills are asserted on the CIFAR-10
    fragment by tests/test_deep_tier.py and tests/test_deep_learned_predictor.py, not here."""
    from ncspec.conformance.claims import load_all
    return all(t.startswith("spec_tests.test_deep::") for t in load_all()[claim].tests)


CASES = [(m, c) for m, spec in MUTANTS.items() for c in spec.caught_by if not _deep_tier(c)]


@pytest.mark.parametrize("mutant,claim", CASES, ids=[f"{m}-{c}" for m, c in CASES])
def test_claim_catches_mutant(mutant, claim):
    assert run_claim(claim, MUTANTS[mutant].adapter) == "failed", (
        f"claim {claim} does not catch mutant {mutant!r} ({MUTANTS[mutant].bug})")


def test_every_mutant_is_caught_by_some_claim():
    assert all(spec.caught_by for spec in MUTANTS.values())


def test_h7_catches_a_nonlinear_network():
    """H7's NTK identity is about linear nets: a tanh layer breaks it."""
    import torch
    from ncspec.spec_tests.harness import LinearSetup
    from ncspec.spec_tests.test_eigenspace import check_linear_ntk

    def tanh_net(N, M, W):
        lin = torch.nn.Linear(N, M, bias=False).double()
        lin.weight.data.copy_(W)
        return torch.nn.Sequential(lin, torch.nn.Tanh())

    with pytest.raises(AssertionError, match="not"):
        check_linear_ntk(Recorder(), LinearSetup(N=6, M=3, alpha=1.0, sigma=0.0, seed=0), make_net=tanh_net)


def test_h7_catches_an_update_against_the_kernel():
    """Eq. 4 fails for an update that uses −Θ (gradient ascent in function space)."""
    from ncspec.spec_tests.test_eigenspace import check_ntk_descent
    with pytest.raises(AssertionError, match="eq. 4"):
        check_ntk_descent(Recorder(), 0, update=lambda theta, gZ: theta @ gZ)


@pytest.mark.parametrize("seed", [0, 320404824])
def test_c5_dynamics_catch_the_dropped_offdiagonal_term_by_their_own_assertion(seed):
    """C5 is scale-free (its loss-scale fit is reported, not raised), so it catches ``barlow_twins_offdiag_ignored``
    by its dynamics assertion (the error at least shrinks at the algebraic rate): the error stays put."""
    from ncspec.conformance.contract.registry import load_adapter
    from ncspec.spec_tests.test_conformance import test_barlow_twins_cross_correlation_goes_to_identity as c5
    with pytest.raises(AssertionError, match="does not approach I"):
        c5.hypothesis.inner_test(load_adapter("mutant:barlow_twins_offdiag_ignored"), Recorder(), seed)
    c5.hypothesis.inner_test(load_adapter("reference"), Recorder(), seed)     # the thorough draw that failed 0.02


def test_r4_dynamics_catch_an_isoloss_that_keeps_w_p_by_their_own_assertion():
    """R4 catches ``isoloss_rearrangement_dropped`` first by its loss-scale fit; its dynamics assertion (the median
    over networks of IsoLoss/SimSiam ≥ 2) fails as well when the fit is bypassed: the ratio stays near 1."""
    from ncspec.conformance.contract.registry import load_adapter
    from ncspec.spec_tests.test_relu_network import test_relu_isoloss_lifts_small_modes_faster as r4
    with pytest.raises(AssertionError, match="the W_P factor is still in its gradient"):
        r4.hypothesis.inner_test(load_adapter("mutant:isoloss_rearrangement_dropped"), Recorder(), 0)
    r4.hypothesis.inner_test(load_adapter("reference"), Recorder(), 35006752)   # the draw with a mixed λ1 network
