"""Malformed adapters fail fast with an AdapterError naming the adapter, the call and the fix.

Each case is a small hand-written broken adapter or learner around a tiny linear
encoder; the well-formed ones must go through untouched (same values, same
objects, no per-step wrapper once the first loss call is checked).
"""
from __future__ import annotations

import copy
import re

import pytest
import torch
from ncspec.conformance.contract.registry import load_adapter
from ncspec.conformance.contract.validate import (
    AdapterError,
    CheckedAdapter,
    CheckedLearner,
    ImplementationFailure,
    checked,
    unwrap,
)
from ncspec.reference.encoders import Identity
from ncspec.reference.linear import LinearEncoder, population_views, simulate

N, M = 5, 3


def _enc() -> LinearEncoder:
    return LinearEncoder(torch.randn((1, M, N), generator=torch.Generator().manual_seed(0), dtype=torch.float64))


def _views():
    return population_views(N, 0.3)


class Good:
    """A well-formed learner: SimSiam without predictor, target detached."""

    def __init__(self, encoder, embed_dim, **options):
        self.encoder, self.M, self.options = encoder, embed_dim, options

    def parameters(self):
        return self.encoder.parameters()

    def loss(self, v1, v2):
        z1, z2 = self.encoder(v1), self.encoder(v2)
        return 0.5 * (z1 - z2.detach()).pow(2).sum(-1).mean(-1).sum()

    def after_step(self):
        pass


class Adapter:
    """An adapter whose build returns ``learner(encoder, embed_dim, **options)``."""

    def __init__(self, learner=Good, name="broken", capabilities=frozenset({"simsiam"})):
        self.learner, self.name, self.capabilities = learner, name, capabilities

    def build(self, method, encoder, embed_dim, **options):
        return self.learner(encoder, embed_dim, **options)


def _learner(cls=Good, method="simsiam", encoder=None, **options):
    return checked(Adapter(cls)).build(method, encoder if encoder is not None else _enc(), M, **options)


def _first_loss(cls, **kw):
    return _learner(cls, **kw).loss(*_views())


# --- 1. the adapter object -------------------------------------------------------------

class _NoBuild:
    name, capabilities = "nobuild", frozenset()


NO_BUILD = _NoBuild()
GOOD = Adapter(name="good")


def good_factory():
    return Adapter(name="from-factory")


@pytest.mark.parametrize("missing", ["name", "capabilities", "build"])
def test_adapter_missing_attribute(missing):
    obj = Adapter()
    attrs = {"name": "x", "capabilities": frozenset(), "build": obj.build}
    del attrs[missing]
    bare = type("Bare", (), {})()
    for k, v in attrs.items():
        setattr(bare, k, v)
    with pytest.raises(AdapterError, match=rf"adapter 'pkg:bare' \(Bare\) lacks {missing}: an adapter needs a "
                                           r"'name' \(str\), a 'capabilities' frozenset of str tags"):
        checked(bare, "pkg:bare")


def test_module_attr_missing_build_goes_through_the_same_check():
    with pytest.raises(AdapterError, match=r"lacks build") as e:
        load_adapter(f"{__name__}:NO_BUILD")
    assert isinstance(e.value, TypeError)     # ncspec check catches TypeError: exit 2 with this message


def test_capabilities_as_a_list():
    with pytest.raises(AdapterError, match=re.escape(
            "adapter 'broken': capabilities must be a set or frozenset of str tags, got list ['simsiam']; "
            "write capabilities = frozenset({'simsiam', 'loss:euclidean', ...})")):
        checked(Adapter(capabilities=["simsiam"]))


def test_capabilities_with_non_str_tags():
    with pytest.raises(AdapterError, match=re.escape("adapter 'broken': capabilities holds non-str tags 1 (int); "
                                                     "every tag is a string such as 'simsiam'")):
        checked(Adapter(capabilities={"simsiam", 1}))


def test_name_must_be_a_non_empty_str():
    with pytest.raises(AdapterError, match=r"adapter 'spec': name must be a non-empty str .* got int 3"):
        checked(Adapter(name=3), "spec")


def test_build_must_be_callable():
    bad = Adapter()
    bad.build = "simsiam"
    with pytest.raises(AdapterError, match=r"adapter 'broken': build is a str, not callable; define build\(self, "):
        checked(bad)


@pytest.mark.parametrize("spec", ["reference", "mutant:no_stopgrad", f"{__name__}:GOOD", f"{__name__}:good_factory",
                                  f"{__name__}:Adapter"])
def test_every_loaded_adapter_is_checked(spec):
    impl = load_adapter(spec)
    assert type(impl) is CheckedAdapter and type(unwrap(impl)) is not CheckedAdapter
    assert checked(impl) is impl                                   # idempotent
    assert impl.name == unwrap(impl).name and impl.capabilities is unwrap(impl).capabilities


def test_failing_factory_names_the_spec():
    def factory():
        raise RuntimeError("no GPU")
    globals()["_failing_factory"] = factory
    with pytest.raises(AdapterError, match=rf"adapter '{__name__}:_failing_factory': calling .* raised RuntimeError: "
                                           r"no GPU\. Make it callable without arguments"):
        load_adapter(f"{__name__}:_failing_factory")


def test_adapter_proxy_delegates_reads_and_isinstance():
    inner = Adapter(name="x")
    inner.extra = 7
    impl = checked(inner)
    assert impl.extra == 7 and isinstance(impl, Adapter) and impl.learner is Good


# --- 2. build raises ---------------------------------------------------------------------

def test_build_raising_names_the_call_and_chains_the_cause():
    def learner(encoder, embed_dim, **options):
        raise ValueError("unknown option 'alpha'")
    with pytest.raises(AdapterError) as e:
        checked(Adapter(learner)).build("simsiam", _enc(), 4, alpha=1.0)
    assert str(e.value) == ("adapter 'broken': build('simsiam', encoder, 4, alpha=1.0) raised ValueError: unknown "
                            "option 'alpha'. Fix the adapter's build, or remove 'simsiam' from its capabilities if "
                            "it does not support that method.")
    assert isinstance(e.value.__cause__, ValueError)


def test_build_not_implemented_suggests_dropping_the_capability():
    def learner(encoder, embed_dim, **options):
        raise NotImplementedError("cosine form")
    with pytest.raises(AdapterError) as e:
        checked(Adapter(learner)).build("isoloss", _enc(), M, form="cosine", predictor_init=torch.eye(M))
    assert str(e.value) == (f"adapter 'broken': build('isoloss', encoder, {M}, form='cosine', predictor_init=<tensor "
                            f"({M}, {M}) float32>) raised NotImplementedError: cosine form. The adapter declares "
                            f"'isoloss' but does not implement it (or this option): implement it, or remove 'isoloss' "
                            f"from its capabilities if it does not support that method.")


def test_build_skipping_is_not_an_adapter_error():
    def learner(encoder, embed_dim, **options):
        pytest.skip("needs a GPU")
    with pytest.raises(pytest.skip.Exception):
        checked(Adapter(learner)).build("simsiam", _enc(), M)


# --- 3. the learner protocol ---------------------------------------------------------------

class NoLoss:
    def __init__(self, encoder, embed_dim):
        self.encoder = encoder
        self.after_step = None

    def parameters(self):
        return self.encoder.parameters()


def test_learner_missing_methods():
    with pytest.raises(AdapterError, match=re.escape(
            f"adapter 'broken': build('byol', encoder, {M}) returned a NoLoss without loss and with non-callable "
            f"after_step: a learner needs parameters() -> iterable of tensors, loss(view1, view2) -> scalar tensor "
            f"and after_step()")):
        _learner(NoLoss, method="byol")


# --- 4. parameters() -------------------------------------------------------------------------

class NoParams(Good):
    def parameters(self):
        return iter(())


class NonTensorParams(Good):
    def parameters(self):
        return ["W"]


class FrozenParams(Good):
    def parameters(self):
        return [p.detach() for p in self.encoder.parameters()]


class ParamsRaise(Good):
    def parameters(self):
        raise AttributeError("'Good' object has no attribute 'net'")


@pytest.mark.parametrize(
    "cls,match",
    [
        (
            NoParams,
            r"learner.parameters\(\) of method 'simsiam' yields nothing, but the encoder it was built around has "
            r"trainable weights: yield them",
        ),
        (NonTensorParams, r"learner.parameters\(\) of method 'simsiam' yields a str at position 0, not a torch.Tensor"),
        (
            FrozenParams,
            r"learner.parameters\(\) of method 'simsiam' yields 1 tensor\(s\), none of which requires grad, "
            r"but the encoder .* without detaching or "
            r"freezing them",
        ),
        (
            ParamsRaise,
            r"learner.parameters\(\) of method 'simsiam' raised AttributeError: .* it must return an iterable "
            r"of tensors",
        ),
    ],
)
def test_parameters_must_yield_trainable_tensors(cls, match):
    with pytest.raises(AdapterError, match=r"adapter 'broken': " + match):
        _learner(cls)


def test_an_encoder_without_weights_needs_no_parameters():
    """Loss values on given embeddings (Identity encoder, J1/J4): nothing to train, nothing to check."""
    learner = _learner(NoParams, encoder=Identity(N))
    z = torch.randn(8, N, dtype=torch.float64)
    assert learner.loss(z, z + 1).item() > 0


# --- 5. the first loss call --------------------------------------------------------------------

class FloatLoss(Good):
    def loss(self, v1, v2):
        return super().loss(v1, v2).item()


class PerSample(Good):
    def loss(self, v1, v2):
        z1, z2 = self.encoder(v1), self.encoder(v2)
        return 0.5 * (z1 - z2.detach()).pow(2).sum(-1)[0]                # (B,)


class OneElement(Good):
    def loss(self, v1, v2):
        return super().loss(v1, v2).reshape(1)


class Matrix(Good):
    def loss(self, v1, v2):
        z1, z2 = self.encoder(v1), self.encoder(v2)
        return (z1 - z2.detach()).pow(2).sum(-1)                          # (S, B)


class NaNLoss(Good):
    def loss(self, v1, v2):
        z1 = self.encoder(v1)
        return (z1 / z1.sum(-1, keepdim=True).mul(0)).sum() * 0          # 0/0


class InfLoss(Good):
    def loss(self, v1, v2):
        return super().loss(v1, v2) / 0.0


class UnderNoGrad(Good):
    def loss(self, v1, v2):
        with torch.no_grad():
            return super().loss(v1, v2)


class BothDetached(Good):
    def loss(self, v1, v2):
        return super().loss(v1, v2).detach()


class OtherWeights(Good):
    """Differentiable, but through a tensor that parameters() does not yield."""

    def __init__(self, encoder, embed_dim, **options):
        super().__init__(encoder, embed_dim, **options)
        self.other = LinearEncoder(encoder.W.detach().clone())

    def loss(self, v1, v2):
        z1, z2 = self.other(v1), self.other(v2)
        return 0.5 * (z1 - z2.detach()).pow(2).sum(-1).mean(-1).sum()


_LOSS = "adapter 'broken': learner.loss(view1, view2) of method 'simsiam'"


@pytest.mark.parametrize("cls,message", [
    (FloatLoss, " returned a float, not a torch.Tensor: return the loss as a scalar tensor"),
    (PerSample, " returned shape (20,): a per-sample loss: reduce it with .mean() (or .sum() over replicas) to a "
                "scalar tensor (dim() == 0)."),
    (OneElement, " returned shape (1,): a 1-element tensor, not a scalar: return loss.squeeze() (or loss.mean())"),
    (Matrix, " returned shape (1, 20): not a scalar: reduce it to a 0-dim tensor"),
    (NaNLoss, " is NaN on its first call, before any training step: check the eps terms and normalisations"),
    (InfLoss, " is inf on its first call, before any training step"),
    (OtherWeights, ": no gradient path from the loss to the parameters (the loss requires grad, but none of the 1 "
                   "tensor(s) from parameters() is in its graph): make loss() use the encoder passed to build, and "
                   "parameters() yield that encoder's weights (not a copy's)."),
])
def test_first_loss_call(cls, message):
    with pytest.raises(AdapterError, match=re.escape(_LOSS + message)):
        _first_loss(cls)


@pytest.mark.parametrize("cls", [UnderNoGrad, BothDetached])
def test_a_loss_with_no_gradient_at_all_is_an_implementation_failure(cls):
    """Both branches detached, or the whole loss under no_grad: a bug in the implementation (exit 1), named exactly —
    not a usage error (issue 25)."""
    with pytest.raises(ImplementationFailure, match=re.escape(
            _LOSS + ": no gradient path from the loss to the parameters (the loss does not require grad): no gradient "
            "reaches the parameters — the stop-gradient sits on both branches")):
        _first_loss(cls)


def test_gradient_path_checked_on_the_first_call_with_grad():
    """A first call under no_grad (an evaluation) defers the gradient-path check, not skips it."""
    learner = _learner(BothDetached)
    with torch.no_grad():
        learner.loss(*_views())
    with pytest.raises(ImplementationFailure, match="no gradient path"):
        learner.loss(*_views())


def test_later_non_finite_losses_are_dynamics_not_adapter_errors():
    class LaterNaN(Good):
        calls = 0

        def loss(self, v1, v2):
            LaterNaN.calls += 1
            return super().loss(v1, v2) * (1.0 if LaterNaN.calls == 1 else float("nan"))
    learner = _learner(LaterNaN)
    learner.loss(*_views())
    assert learner.loss(*_views()).isnan()


def test_after_the_first_call_loss_is_the_inner_bound_method():
    learner = _learner()
    first = learner.loss
    assert first.__func__ is CheckedLearner._first_loss
    learner.loss(*_views())
    assert learner.loss.__func__ is Good.loss and learner.loss.__self__ is unwrap(learner)
    learner.loss = lambda v1, v2: torch.zeros(())                        # written through, still fast
    assert unwrap(learner).loss is learner.loss and learner.loss(None, None).item() == 0


# --- 6. exposed matrices and the target network ----------------------------------------------------

class WrongWp(Good):
    def __init__(self, encoder, embed_dim, **options):
        super().__init__(encoder, embed_dim, **options)
        self.W_p = torch.nn.Parameter(torch.eye(embed_dim + 1, dtype=torch.float64))

    def parameters(self):
        yield from self.encoder.parameters()
        yield self.W_p


class ListWP(Good):
    def loss(self, v1, v2):
        self.W_P = [[1.0]]
        return super().loss(v1, v2)


class CorrectWP(Good):
    def loss(self, v1, v2):
        self.W_P = torch.eye(self.M, dtype=torch.float64).expand(1, self.M, self.M)
        return super().loss(v1, v2)


class WrongTarget(Good):
    def __init__(self, encoder, embed_dim, **options):
        super().__init__(encoder, embed_dim, **options)
        self.target_encoder = torch.nn.Linear(N, embed_dim, bias=False).double()   # (M, N), not (1, M, N)


class TargetNotModule(Good):
    target_encoder = "ema"


@pytest.mark.parametrize("cls,message", [
    (WrongWp, f"learner.W_p of method 'simsiam' has shape ({M + 1}, {M + 1}); expected (..., {M}, {M}): the "
              f"learned linear predictor maps embeddings"),
    (ListWP, f"learner.W_P of method 'simsiam' is a list; the spec reads it as the closed-form predictor, a "
             f"torch.Tensor of shape (..., {M}, {M})"),
    (WrongTarget, f"learner.target_encoder of method 'simsiam' does not match the encoder (parameter 0 has shape "
                  f"({M}, {N}) where the encoder's has (1, {M}, {N})): the target must be a copy of the encoder"),
    (TargetNotModule, "learner.target_encoder of method 'simsiam' is a str, not a torch.nn.Module"),
])
def test_exposed_shapes(cls, message):
    with pytest.raises(AdapterError, match=re.escape("adapter 'broken': " + message)):
        _first_loss(cls)


def test_correct_exposed_shapes_pass():
    _first_loss(CorrectWP)
    learner = load_adapter("reference").build("byol", _enc(), M)         # W_p (1, M, M) and an EMA target
    learner.loss(*_views())
    assert learner.W_p.shape == (1, M, M)


# --- the wrapper is transparent --------------------------------------------------------------------

def test_learner_proxy_reads_writes_and_identity():
    impl = load_adapter("reference")
    enc = _enc()
    learner = impl.build("learned_predictor", enc, M, weight_decay=0.1)
    inner = unwrap(learner)
    assert type(learner) is CheckedLearner and isinstance(learner, type(inner))
    assert learner.encoder is enc and learner.W_p is inner.W_p
    assert [id(p) for p in learner.parameters()] == [id(p) for p in inner.parameters()]
    learner.tau = 0.5
    assert inner.tau == 0.5 and vars(learner) is vars(inner)
    del learner.tau_schedule
    assert not hasattr(inner, "tau_schedule")
    twin = copy.deepcopy(learner)
    assert type(twin) is CheckedLearner and twin.encoder is not enc and unwrap(twin).tau == 0.5


def test_checked_learner_runs_exactly_like_the_unwrapped_one():
    impl = load_adapter("reference")
    runs = []
    for wrap in (True, False):
        enc = _enc()
        learner = impl.build("simsiam", enc, M, alpha=0.5)
        x = _views()
        runs.append(
            simulate(learner if wrap else unwrap(learner), enc, lambda k, x=x: x, lr=0.05, steps=5, sigma=0.3).W
        )
    assert torch.equal(*runs)
