"""A claim letter maps to one spec module (conformance.claims.MODULES): find a claim's tests by its ID."""
from __future__ import annotations

import importlib

from ncspec.conformance.claims import CLAIMS, MODULES, load_all


def test_each_claims_tests_live_in_its_letters_module():
    load_all()
    wrong = {}
    for cid, claim in CLAIMS.items():
        letter = cid.rstrip("0123456789")
        assert letter in MODULES, f"claim {cid}: letter {letter!r} has no module in MODULES; add one (one per letter)"
        want = f"spec_tests.{MODULES[letter]}::"
        assert claim.tests, f"claim {cid} has no test"
        off = [t for t in claim.tests if not t.startswith(want)]
        if off:
            wrong[cid] = off
    assert not wrong, f"tests outside their letter's module ({MODULES}): {wrong}"


def test_every_module_of_the_table_exists_and_holds_only_its_letter():
    load_all()
    for letter, name in MODULES.items():
        module = importlib.import_module(f"ncspec.spec_tests.{name}")
        ids = {cid for cid, c in CLAIMS.items() if any(t.startswith(f"spec_tests.{name}::") for t in c.tests)}
        assert ids, f"{name} declares no claim"
        assert {cid.rstrip("0123456789") for cid in ids} == {letter}, (name, sorted(ids))
        assert module.__doc__, name
