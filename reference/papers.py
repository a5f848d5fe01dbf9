"""The bibliography: every paper (and public bug report) a claim, a derivation or a docstring cites.

A claim's source is a list of :class:`Citation` — a key of :data:`PAPERS` plus where in the paper
(equation, section, figure, "authors' code")::

    from ncspec.reference.papers import cite
    source = [cite("tian2021", "§4, eq. 9"), cite("halvagal2022", "eq. 5")]

``cite`` checks the key at once, so a typo fails when the spec module is imported, not in a report.
Equation numbers follow the version linked here (arXiv identifiers resolve at https://arxiv.org/abs/ID).
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Paper:
    key: str
    authors: tuple[str, ...]   # family names in the paper's order
    title: str
    venue: str
    year: int
    arxiv: str = ""            # arXiv identifier, e.g. "2102.06810"
    doi: str = ""
    url: str = ""              # where neither applies (a workshop page, an issue thread)

    @property
    def short(self) -> str:
        """``Tian, Chen & Ganguli 2021``; ``Grill et al. 2020`` beyond three authors."""
        a = self.authors
        names = a[0] if len(a) == 1 else f"{', '.join(a[:-1])} & {a[-1]}" if len(a) <= 3 else f"{a[0]} et al."
        return f"{names} {self.year}"

    @property
    def link(self) -> str:
        if self.arxiv:
            return f"https://arxiv.org/abs/{self.arxiv}"
        if self.doi:
            return f"https://doi.org/{self.doi}"
        return self.url

    @property
    def identifier(self) -> str:
        return f"arXiv:{self.arxiv}" if self.arxiv else f"doi:{self.doi}" if self.doi else self.url

    def reference(self) -> str:
        """The full entry: ``Authors (year). Title. Venue. arXiv:…``."""
        return f"{', '.join(self.authors)} ({self.year}). {self.title}. {self.venue}. {self.identifier}"


def _p(key, authors, title, venue, year, **ids) -> tuple[str, Paper]:
    return key, Paper(key, tuple(authors), title, venue, year, **ids)


PAPERS: dict[str, Paper] = dict([
    # --- the theory the claims encode
    _p("halvagal2022", ["Halvagal", "Laborieux", "Zenke"],
       "An eigenspace view reveals how predictor networks and stop-grads provide implicit variance regularization",
       "NeurIPS 2022 Workshop on Self-Supervised Learning: Theory and Practice", 2022,
       url="https://mshalvagal.github.io/publication/2022-isoloss"),
    _p("halvagal2023", ["Halvagal", "Laborieux", "Zenke"], "Implicit variance regularization in non-contrastive SSL",
       "Advances in Neural Information Processing Systems 36 (NeurIPS)", 2023, arxiv="2212.04858"),
    _p("tian2021", ["Tian", "Chen", "Ganguli"],
       "Understanding self-supervised learning dynamics without contrastive pairs",
       "International Conference on Machine Learning (ICML), PMLR 139", 2021, arxiv="2102.06810"),
    _p("wang2021", ["Wang", "Chen", "Du", "Tian"],
       "Towards demystifying representation learning with non-contrastive self-supervision",
       "arXiv preprint", 2021, arxiv="2110.04947"),
    _p("jha2024", ["Jha", "Blaschko", "Asano", "Tuytelaars"],
       "The common stability mechanism behind most self-supervised learning approaches",
       "arXiv preprint", 2024, arxiv="2402.14957"),
    _p("ponce2025", ["Ponce", "Terver", "Hebert", "Arbel"],
       "Dual perspectives on non-contrastive self-supervised learning", "arXiv preprint", 2025, arxiv="2507.01028"),
    # --- the methods the reference implements and the conformance claims check
    _p("grill2020", ["Grill", "Strub", "Altché", "Tallec", "Richemond", "Buchatskaya", "Doersch", "Pires", "Guo",
                     "Azar", "Piot", "Kavukcuoglu", "Munos", "Valko"],
       "Bootstrap your own latent: a new approach to self-supervised learning",
       "Advances in Neural Information Processing Systems 33 (NeurIPS)", 2020, arxiv="2006.07733"),
    _p("jing2022", ["Jing", "Vincent", "LeCun", "Tian"],
       "Understanding dimensional collapse in contrastive self-supervised learning",
       "International Conference on Learning Representations (ICLR)", 2022, arxiv="2110.09348"),
    _p("garrido2023", ["Garrido", "Balestriero", "Najman", "LeCun"],
       "RankMe: assessing the downstream performance of pretrained self-supervised representations by their rank",
       "International Conference on Machine Learning (ICML), PMLR 202", 2023, arxiv="2210.02885"),
    _p("chen2021simsiam", ["Chen", "He"], "Exploring simple Siamese representation learning",
       "IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)", 2021, arxiv="2011.10566"),
    _p("chen2020simclr", ["Chen", "Kornblith", "Norouzi", "Hinton"],
       "A simple framework for contrastive learning of visual representations",
       "International Conference on Machine Learning (ICML), PMLR 119", 2020, arxiv="2002.05709"),
    _p("he2020moco", ["He", "Fan", "Wu", "Xie", "Girshick"],
       "Momentum contrast for unsupervised visual representation learning",
       "IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)", 2020, arxiv="1911.05722"),
    _p("zbontar2021", ["Zbontar", "Jing", "Misra", "LeCun", "Deny"],
       "Barlow Twins: self-supervised learning via redundancy reduction",
       "International Conference on Machine Learning (ICML), PMLR 139", 2021, arxiv="2103.03230"),
    _p("bardes2022", ["Bardes", "Ponce", "LeCun"],
       "VICReg: variance-invariance-covariance regularization for self-supervised learning",
       "International Conference on Learning Representations (ICLR)", 2022, arxiv="2105.04906"),
    _p("caron2020swav", ["Caron", "Misra", "Mairal", "Goyal", "Bojanowski", "Joulin"],
       "Unsupervised learning of visual features by contrasting cluster assignments",
       "Advances in Neural Information Processing Systems 33 (NeurIPS)", 2020, arxiv="2006.09882"),
    _p("caron2021dino", ["Caron", "Touvron", "Misra", "Jégou", "Mairal", "Bojanowski", "Joulin"],
       "Emerging properties in self-supervised vision transformers",
       "IEEE/CVF International Conference on Computer Vision (ICCV)", 2021, arxiv="2104.14294"),
    # --- beyond the founding papers: learning dynamics of joint-embedding methods (claims S, M)
    _p("simon2023", ["Simon", "Knutins", "Ziyin", "Geisz", "Fetterman", "Albrecht"],
       "On the stepwise nature of self-supervised learning",
       "International Conference on Machine Learning (ICML), PMLR 202", 2023, arxiv="2303.15438"),
    _p("littwin2024", ["Littwin", "Saremi", "Advani", "Thilak", "Nakkiran", "Huang", "Susskind"],
       "How JEPA avoids noisy features: the implicit bias of deep linear self distillation networks",
       "Advances in Neural Information Processing Systems 37 (NeurIPS)", 2024, arxiv="2407.03475"),
    # --- background the derivations use
    _p("saxe2014", ["Saxe", "McClelland", "Ganguli"],
       "Exact solutions to the nonlinear dynamics of learning in deep linear neural networks",
       "International Conference on Learning Representations (ICLR)", 2014, arxiv="1312.6120"),
    _p("jacot2018", ["Jacot", "Gabriel", "Hongler"],
       "Neural tangent kernel: convergence and generalization in neural networks",
       "Advances in Neural Information Processing Systems 31 (NeurIPS)", 2018, arxiv="1806.07572"),
    _p("krizhevsky2009", ["Krizhevsky"], "Learning multiple layers of features from tiny images",
       "Technical report, University of Toronto", 2009, url="https://www.cs.toronto.edu/~kriz/cifar.html"),
    # --- a public bug report the distributed claim is modelled on
    # (the title is our summary of the thread: an all_reduce invisible to autograd, gradients 1/world_size too small)
    _p("lightly1977", ["lightly-ai"], "Issue #1977: distributed loss gradients off by the world size (fixed in #1980)",
       "GitHub issue tracker of lightly", 2024, url="https://github.com/lightly-ai/lightly/issues/1977"),
])


@dataclass(frozen=True)
class Citation:
    """A paper key and where in the paper (``"eq. 5"``, ``"§4"``, ``"Fig. 3"``, ``"authors' code"``)."""
    key: str
    where: str = ""

    @property
    def paper(self) -> Paper:
        return PAPERS[self.key]

    @property
    def text(self) -> str:
        """``Tian, Chen & Ganguli 2021, §4, eq. 9 (arXiv:2102.06810)``: resolvable without this package."""
        p = self.paper
        return f"{p.short}{', ' + self.where if self.where else ''} ({p.identifier})"

    @property
    def brief(self) -> str:
        """``Tian, Chen & Ganguli 2021, §4, eq. 9``: for narrow tables (the bibliography resolves it)."""
        return f"{self.paper.short}{', ' + self.where if self.where else ''}"

    def __str__(self) -> str:
        return self.text

    def to_dict(self) -> dict:
        p = self.paper
        return {"key": self.key, "where": self.where, "text": self.text, "brief": self.brief, "title": p.title,
                "venue": p.venue,
                "year": p.year, "url": p.link}


def cite(key: str, where: str = "") -> Citation:
    """A citation of ``PAPERS[key]``; an unknown key raises at once, naming the known ones."""
    if key not in PAPERS:
        raise KeyError(f"unknown paper key {key!r}: add it to ncspec.reference.papers.PAPERS "
                       f"(known keys: {', '.join(sorted(PAPERS))}).")
    return Citation(key, where)


def format_citations(citations) -> str:
    """One human line: the citations' texts joined by ``; ``."""
    return "; ".join(c.text for c in citations)
