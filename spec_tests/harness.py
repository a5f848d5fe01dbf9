"""Shared set-up for the spec tests: Hypothesis draws of the linear model, runs, errors.

The harness owns the encoder (a :class:`LinearEncoder`) and the data; the
method under test comes from the adapter (``impl``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import pytest
import torch
from hypothesis import strategies as st
from ncspec.reference.linear import LinearEncoder, gaussian_views, population_views, simulate, weights_with_spectrum


def require(impl, *tags: str) -> None:
    """Skip (with the reason) when the adapter lacks a capability the claim needs; a tag no adapter can declare (a
    misspelt one would skip the claim on every adapter) is an error naming the close one."""
    from ncspec.conformance.contract.adapter import unknown_tags
    unknown = unknown_tags(tags)
    if unknown:
        raise ValueError("a claim requires unknown capability tag(s) " + "; ".join(
            f"{t!r}" + (f" (did you mean {s!r}?)" if s else "") for t, s in unknown))
    missing = [t for t in tags if t not in impl.capabilities]
    if missing:
        pytest.skip(f"adapter {impl.name!r} does not declare {', '.join(missing)}")


NO_PROJECTOR = "ablation:no_projector"


def on_the_linear_embedding(impl, method: str, claim: str, M: int = 3) -> dict:
    """The build options that put ``method``'s loss on the linear embedding z = Wx a claim is stated for: none when
    its learner has no head of its own; ``projector=False`` when it has one and the adapter declares
    ``ablation:no_projector``; otherwise a skip saying what to declare. The probe builds do not count as exercising
    the adapter."""
    from ncspec.conformance.contract.loss_scale import unscaled
    from ncspec.conformance.run import coverage
    encoder = LinearEncoder(torch.eye(M, dtype=torch.float64).unsqueeze(0))
    with coverage.uncounted():
        if getattr(unscaled(impl).build(method, encoder, M), "projector", None) is None:
            return {}
        if NO_PROJECTOR not in impl.capabilities:
            pytest.skip(f"adapter {impl.name!r}: its {method} acts after its own projector (learner.projector), while "
                        f"{claim} is stated for the loss on the linear embedding z = Wx (a nonlinear head of another "
                        f"width is another model); declare {NO_PROJECTOR!r} if build(..., projector=False) gives the "
                        f"same loss without the head")
        head = getattr(unscaled(impl).build(method, encoder, M, projector=False), "projector", None)
    assert head is None, (f"adapter {impl.name!r} declares {NO_PROJECTOR!r}, but its {method} built with "
                          f"projector=False still exposes learner.projector: the option is accepted but ignored")
    return {"projector": False}


@dataclass(frozen=True)
class LinearSetup:
    """One draw of the linear-Gaussian model of Halvagal et al. 2022 §2."""

    N: int
    M: int
    alpha: float
    sigma: float
    seed: int
    replicas: int = 4

    @property
    def kappa(self) -> float:
        return 1.0 + self.sigma ** 2

    def generator(self, offset: int = 0) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed + offset)

    def spectrum(self, lo: float, hi: float) -> torch.Tensor:
        """Initial eigenvalues of C, log-uniform in [lo, hi], shape (replicas, M)."""
        u = torch.rand((self.replicas, self.M), generator=self.generator(1), dtype=torch.float64)
        return torch.exp(math.log(lo) + u * (math.log(hi) - math.log(lo)))

    def encoder(self, lam_C: torch.Tensor) -> LinearEncoder:
        """``W`` with ``eig((1+σ²) W Wᵀ) = lam_C`` and random eigenvectors."""
        return LinearEncoder(weights_with_spectrum(lam_C / self.kappa, self.N, generator=self.generator(2)))


@st.composite
def linear_setups(draw, *, M=(2, 16), sigma=(0.0, 0.3), alpha=(0.5, 1.0), replicas=4):
    m = draw(st.integers(*M))
    n = m + draw(st.integers(0, 8))
    return LinearSetup(N=n, M=m, alpha=draw(st.sampled_from(alpha)),
                       sigma=draw(st.floats(*sigma, allow_nan=False)),
                       seed=draw(st.integers(0, 2 ** 31 - 1)), replicas=replicas)


def population_run(impl, method: str, setup: LinearSetup, lam0: torch.Tensor, *, lr: float, steps: int,
                   record_every: int = 1, **options):
    """Expected-gradient flow (Euler steps on W) on the moment-matched population batch."""
    enc = setup.encoder(lam0)
    learner = impl.build(method, enc, setup.M, alpha=setup.alpha, **options)
    x1, x2 = population_views(setup.N, setup.sigma)
    return simulate(learner, enc, lambda k: (x1, x2), lr=lr, steps=steps, sigma=setup.sigma,
                    record_every=record_every)


def sgd_run(impl, method: str, setup: LinearSetup, lam0: torch.Tensor, *, lr: float, steps: int,
            batch: int, record_every: int = 1, **options):
    """Minibatch SGD on freshly sampled Gaussian views, one stream per replica."""
    enc = setup.encoder(lam0)
    learner = impl.build(method, enc, setup.M, alpha=setup.alpha, **options)
    g = setup.generator(3)
    return simulate(learner, enc,
                    lambda k: gaussian_views(batch, setup.N, setup.sigma, replicas=setup.replicas, generator=g),
                    lr=lr, steps=steps, sigma=setup.sigma, record_every=record_every)


def max_rel_err(measured: torch.Tensor, predicted: torch.Tensor) -> float:
    return ((measured - predicted).abs() / predicted.abs()).max().item()


@dataclass(frozen=True)
class ReluSetup:
    """A one-hidden-layer ReLU encoder ``z = W₂ᵀ relu(W₁ᵀx + b₁) + b₂`` on the linear-Gaussian data
    (Halvagal et al. 2022, appendix Fig. 2), S replicas (seeds) trained together, float64."""

    sigma: float
    alpha: float = 1.0
    N: int = 8
    hidden: int = 32
    M: int = 4
    replicas: int = 8
    batch: int = 128
    eval_batch: int = 2048
    seed: int = 0

    @property
    def kappa(self) -> float:
        return 1.0 + self.sigma ** 2

    def generator(self, offset: int = 0) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed + offset)

    def eval_views(self) -> torch.Tensor:
        """The fixed views (eval_batch, N) on which C = E[zzᵀ] is measured."""
        return gaussian_views(self.eval_batch, self.N, self.sigma, generator=self.generator(1))[0]

    def encoder(self, lam0: tuple[float, ...]):
        from ncspec.reference.encoders import MLPEncoder, set_output_spectrum
        enc = MLPEncoder(self.N, (self.hidden,), self.M, batchnorm=False, replicas=self.replicas,
                         generator=self.generator(2), dtype=torch.float64)
        lam = torch.tensor(lam0, dtype=torch.float64).expand(self.replicas, self.M)
        return set_output_spectrum(enc, lam, self.eval_views())


def relu_run(impl, method: str, setup: ReluSetup, lam0: tuple[float, ...], *, lr: float, steps: int,
             record_every: int, **options):
    """Minibatch SGD of ``impl.build(method, ...)`` around a ReLU encoder whose C starts at ``lam0``."""
    enc = setup.encoder(lam0)
    learner = impl.build(method, enc, setup.M, alpha=setup.alpha, **options)
    g = setup.generator(3)
    return simulate(learner, enc,
                    lambda k: gaussian_views(setup.batch, setup.N, setup.sigma, replicas=setup.replicas, generator=g),
                    lr=lr, steps=steps, sigma=setup.sigma, record_every=record_every, eval_views=setup.eval_views())


def separate_copy_of_the_encoder(learner, encoder) -> str | None:
    """The attribute of ``learner`` holding tensors shaped like the encoder's parameters that are not them (a module
    with the same parameter shapes, or a tensor with the shape of an encoder parameter): a copy of the online network.
    δ ≈ 0 has two causes — the target depends on the encoder and is not detached, or it does not depend on the encoder
    at all (a separate copy) — and this tells them apart."""
    own = list(encoder.parameters())
    shapes = [p.shape for p in own]
    for name, value in vars(learner).items():
        if value is encoder:
            continue
        if isinstance(value, torch.nn.Module):
            tensors = list(value.parameters())
            if tensors and [t.shape for t in tensors] == shapes and all(t is not p for t in tensors for p in own):
                return name
        elif isinstance(value, torch.Tensor) and value.dim() >= 2 and any(value.shape == sh for sh in shapes) \
                and all(value is not p for p in own):
            return name
    return None
