"""The bibliography: every claim cites papers a reader can resolve, and the product names no file the user lacks."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from ncspec.conformance.claims import CLAIMS, Claim, load_all
from ncspec.reference.papers import PAPERS, Citation, cite

ROOT = Path(__file__).resolve().parents[1]
PRODUCT = ("reference", "conformance", "spec_tests", "docs", "ncspec")
# names of the project's private context documents, which no user of the package has
FORBIDDEN = re.compile(r"[0-9]{3}_[0-9a-f]{16}\.txt|\b[Ss]eed 00[0-9]\b|\bTHEORY\.md|\bANCHORS\.md")


def test_every_claim_cites_papers_of_the_bibliography():
    claims = load_all()
    assert len(claims) >= 30
    for cid, claim in claims.items():
        assert claim.source and all(isinstance(c, Citation) for c in claim.source), cid
        for c in claim.source:
            paper = PAPERS[c.key]                       # resolves
            assert paper.title and paper.authors and paper.venue and paper.year, c.key
            assert paper.link.startswith("https://"), f"{cid}: {c.key} has no arXiv id, DOI or URL"
            assert paper.short in c.text and paper.identifier in c.text


def test_bibliography_entries_are_complete_and_identifiers_well_formed():
    for key, p in PAPERS.items():
        assert p.key == key
        assert p.arxiv or p.doi or p.url, key
        if p.arxiv:
            assert re.fullmatch(r"\d{4}\.\d{4,5}", p.arxiv), (key, p.arxiv)
        assert 1990 < p.year < 2100, key


def test_every_bibliography_entry_is_cited_somewhere():
    """No dead entries: each paper is cited by a claim, a docstring or docs/theory.md."""
    load_all()
    text = "\n".join(p.read_text(encoding="utf-8") for d in PRODUCT for p in (ROOT / d).rglob("*")
                     if p.suffix in (".py", ".md") and p.name != "papers.py")
    cited = {c.key for claim in CLAIMS.values() for c in claim.source}
    for key in PAPERS:
        assert key in cited or re.search(rf"\b{key}\b", text), f"{key} is never cited"


def test_unknown_key_and_bad_source_fail_with_the_fix():
    with pytest.raises(KeyError, match="unknown paper key 'tian2012'.*tian2021"):
        cite("tian2012", "eq. 1")
    with pytest.raises(TypeError, match="list of citations.*cite"):
        Claim(id="X1", title="t", source="Tian et al. 2021", statement="s", measures="m", prediction="p",
              tolerance="t")


def test_claim_dict_is_json_and_carries_the_resolved_citation():
    c = Claim(id="X1", title="t", source=[cite("tian2021", "§4, eq. 9"), cite("halvagal2022", "eq. 5")],
              statement="s", measures="m", prediction="p", tolerance="t")
    d = json.loads(json.dumps(c.to_dict()))
    assert d["source"] == ("Tian, Chen & Ganguli 2021, §4, eq. 9 (arXiv:2102.06810); "
                           "Halvagal, Laborieux & Zenke 2022, eq. 5 (https://mshalvagal.github.io/publication/2022-isoloss)")
    assert d["citations"][0]["url"] == "https://arxiv.org/abs/2102.06810"


def test_product_names_no_private_context_file():
    """Claims, docs, comments and docstrings cite papers, never the project's working notes or seed files."""
    hits = []
    for d in PRODUCT:
        for p in sorted((ROOT / d).rglob("*")):
            if p.is_file() and p.suffix in (".py", ".md", ".txt", ".toml", ".cfg", ".html"):
                for i, line in enumerate(p.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
                    if FORBIDDEN.search(line):
                        hits.append(f"{p.relative_to(ROOT)}:{i}: {line.strip()[:100]}")
    assert not hits, "the product names files its users do not have:\n" + "\n".join(hits)


def test_forbidden_pattern_catches_what_it_is_for():
    """The grep above can fail: it matches each kind of name it forbids."""
    for s in ("see 003_41d94d9186454b71.txt", "seed 004 abstract", "THEORY.md H1", "ANCHORS.md"):
        assert FORBIDDEN.search(s), s
    for s in ("Tian, Chen & Ganguli 2021, eq. 9 (arXiv:2102.06810)", "derivations in docs/theory.md"):
        assert not FORBIDDEN.search(s), s
