"""Issue 25's false alarms and survivors, each checked on the case that showed it: a running estimate with ρ and
1 − ρ swapped fails C3 by its own assertion, naming the swap."""
from __future__ import annotations

from ncspec.conformance.killmatrix import run_claim_detail
from ncspec.conformance.mutants import MUTANTS


def test_c3_rebuilds_the_running_estimate_and_names_a_swapped_rho():
    outcome, details = run_claim_detail("C3", MUTANTS["correlation_ema_swapped"].adapter)
    assert outcome == "failed", details
    message = details[0][2]
    assert "call 2" in message and "ρ and 1 − ρ are swapped" in message, message
