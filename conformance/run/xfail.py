"""The expected-failures file.

An implementation that knowingly deviates from a claim lists it, so CI stays green
while the deviation is documented — and turns red the day it is fixed. One entry
per line::

    # CLAIM_ID[::TEST_NAME_SUBSTRING]  reason text...
    D1::barlow_twins  lightly normalises each rank's shard with local batch statistics
    H6  our cosine loss adds eps to the norm

``#`` at the start of a line or after whitespace starts a comment; blank lines are
ignored. The reason is required. Without ``::SUBSTRING`` every test of the claim is
meant, with it only the tests whose node id contains it (parametrised ids count:
``H6::[cosine]`` for a test parametrised by ``cosine``). The matched tests get
``xfail(strict=True)``: a failure is reported as ``xfailed``, a pass fails the run
("expected failure passed (strict): remove '…' from the expected-failures file"), so
stale entries cannot pile up. An unknown claim ID, or a substring that matches none
of the claim's collected tests, is a usage error naming the line.

``ncspec check --xfail PATH`` and ``pytest --ncspec-xfail PATH`` (default ``$NCSPEC_XFAIL``) read the file; the
plugin (:mod:`ncspec.conformance.plugin`) marks the matched tests before ``-k`` selects.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass

import pytest

from ..claims import load_all, sort_key

XFAIL_ENV_VAR = "NCSPEC_XFAIL"
_ID = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


@dataclass
class ExpectedFailure:
    """One line of the expected-failures file."""
    claim: str
    test_filter: str   # "" = every test of the claim
    reason: str
    line: int
    text: str          # the line without its comment, quoted back when the entry is stale
    path: str = ""

    def to_dict(self) -> dict:
        return dict(claim=self.claim, test_filter=self.test_filter, reason=self.reason, line=self.line)


def parse_expected_failures(path: str, option: str = "--ncspec-xfail") -> list[ExpectedFailure]:
    """Parse the expected-failures file (format in the module docstring). Claim IDs are
    checked separately (:func:`check_claim_ids`) because that needs the spec modules. ``option``: where the path
    came from, named in the error (``--xfail`` for ``ncspec check``, ``$NCSPEC_XFAIL``)."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise pytest.UsageError(f"cannot read the expected-failures file {path!r} given by {option}: {e.strerror}. "
                                f"Pass an existing file to {option} (one 'CLAIM_ID[::TEST_SUBSTRING]  reason' per "
                                f"line), or drop the option.") from e
    entries = []
    for n, raw in enumerate(lines, 1):
        text = re.sub(r"(^|\s)#.*$", "", raw).strip()
        if not text:
            continue
        head, _, reason = text.replace("\t", " ").partition(" ")
        reason = reason.strip()
        claim, _, test_filter = head.partition("::")
        if not _ID.match(claim) or ("::" in head and not test_filter):
            raise pytest.UsageError(f"{path}, line {n}: {head!r} is not CLAIM_ID or CLAIM_ID::TEST_SUBSTRING "
                                    f"(e.g. 'H4::isoloss_gradient  reason'); fix or comment out the line.")
        if not reason:
            raise pytest.UsageError(f"{path}, line {n}: {head!r} has no reason; write why the failure is "
                                    f"expected after the ID, e.g. '{head}  our loss adds eps to the norm'.")
        entries.append(ExpectedFailure(claim, test_filter, reason, n, text, path))
    return entries


def check_claim_ids(entries: list[ExpectedFailure], claims) -> None:
    """An unknown ID would silently mark nothing: refuse it, naming the line and the known IDs."""
    for e in entries:
        if e.claim not in claims:
            raise pytest.UsageError(f"{e.path}, line {e.line}: unknown claim ID {e.claim!r}; known IDs: "
                                    f"{', '.join(sorted(claims, key=sort_key))}. Fix the ID or remove the line.")


def from_config(config) -> list[ExpectedFailure]:
    """The entries of the file given by ``--ncspec-xfail`` or ``$NCSPEC_XFAIL`` (none without either)."""
    path = config.getoption("ncspec_xfail", default=None)
    option = "--ncspec-xfail" if path else f"${XFAIL_ENV_VAR}"
    path = path or os.environ.get(XFAIL_ENV_VAR)
    return parse_expected_failures(path, option) if path else []


def mark(config, items) -> None:
    """Mark every collected test an entry names ``xfail(strict=True)``; an unknown claim ID, or a substring matching
    none of its claim's tests, is a usage error naming the line."""
    entries = getattr(config, "_ncspec_xfail", [])
    if not entries:
        return
    check_claim_ids(entries, load_all())
    by_claim: dict[str, list] = {}
    for item in items:
        marker = item.get_closest_marker("claim")
        if marker is not None:
            by_claim.setdefault(marker.args[0], []).append(item)
    for e in entries:
        mine = by_claim.get(e.claim, [])
        matched = [it for it in mine if e.test_filter in it.nodeid]
        if mine and not matched:
            raise pytest.UsageError(
                f"{e.path}, line {e.line}: {e.test_filter!r} matches no test of claim {e.claim} "
                f"({', '.join(it.nodeid.split('::')[-1] for it in mine)}); fix the substring or remove the line.")
        for it in matched:
            if getattr(it, "_ncspec_xfail", None) is None:  # the first matching line wins
                it._ncspec_xfail = e
                it.add_marker(pytest.mark.xfail(strict=True, reason=f"{e.claim}: {e.reason}"))
