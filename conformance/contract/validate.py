# long module: one wrapper per object (adapter, learner) whose first-call checks share the context they report
"""Fail fast on malformed adapters, with an error that names the adapter, the call and the fix.

A broken adapter otherwise surfaces deep inside a claim: a per-sample loss as a
shape error in the simulator, a detached loss as "no collapse", a ``build`` that
does not support an option as a bare ``ValueError`` from the middle of a test.
:func:`checked` wraps an adapter so that these show up as an :class:`AdapterError`
at the first place they can be seen:

* the adapter itself (``name``, ``capabilities``, ``build``) when it is wrapped;
* ``build(...)``: exceptions, the learner protocol and ``parameters()`` on return;
* the learner's *first* ``loss`` call: a finite scalar tensor with a gradient path
  to ``parameters()``, and the shapes of what the learner exposes (``W_p``, ``W_P``,
  ``target_encoder``).

After that first call ``learner.loss`` *is* the wrapped learner's bound method:
the checks cost nothing per training step. Non-finite losses after the first
call are dynamics (divergence), which the claims judge, not malformations.

:func:`ncspec.conformance.contract.registry.load_adapter` returns every adapter through
:func:`checked`; :func:`unwrap` gives back the object that was wrapped.
"""
from __future__ import annotations

import copy
import hashlib
import math

import torch
from torch import Tensor, nn

from ..run import coverage
from ..run.failures import dtype_mismatch
from .adapter import unknown_tags
from .conventions import validate as validate_conventions

_ADAPTER_FIX = ("an adapter needs a 'name' (str), a 'capabilities' frozenset of str tags and a "
                "'build(method, encoder, embed_dim, **options)' method (see conformance/contract/adapter.py)")
_LEARNER_PROTOCOL = ("a learner needs parameters() -> iterable of tensors, loss(view1, view2) -> scalar "
                     "tensor and after_step() (see conformance/contract/adapter.py)")


class AdapterError(TypeError):
    """An adapter or one of its learners breaks the adapter protocol.

    A ``TypeError`` so that callers that already treat a bad adapter object as a
    ``TypeError`` (e.g. ``ncspec check``) report these the same way.
    """


class ImplementationFailure(AssertionError):
    """The implementation under test is wrong (not the adapter's protocol): a claim's failure, exit 1 — e.g. no
    gradient reaches the parameters because both branches are detached."""


def _short(value) -> str:
    """A compact repr for error messages (tensors by shape, long reprs cut)."""
    if isinstance(value, Tensor):
        return f"<tensor {tuple(value.shape)} {str(value.dtype).replace('torch.', '')}>"
    if callable(value) and hasattr(value, "__qualname__"):
        return value.__qualname__
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _shape(t: Tensor) -> str:
    return str(tuple(t.shape))


# --- the adapter object --------------------------------------------------------------


def check_adapter(obj, spec: str | None = None) -> str:
    """Check ``name``, ``capabilities`` and ``build``; return the name to report errors under."""
    label = spec or getattr(obj, "name", None) or type(obj).__name__
    missing = [a for a in ("name", "capabilities", "build") if not hasattr(obj, a)]
    if missing:
        raise AdapterError(f"adapter {label!r} ({type(obj).__name__}) lacks {', '.join(missing)}: {_ADAPTER_FIX}.")
    name = obj.name
    if not isinstance(name, str) or not name:
        raise AdapterError(f"adapter {label!r}: name must be a non-empty str (it labels the report), got "
                           f"{type(name).__name__} {_short(name)}; set name = 'my-ssl-lib'.")
    caps = obj.capabilities
    if not isinstance(caps, (set, frozenset)):
        raise AdapterError(f"adapter {name!r}: capabilities must be a set or frozenset of str tags, got "
                           f"{type(caps).__name__} {_short(caps)}; write capabilities = frozenset({{'simsiam', "
                           f"'loss:euclidean', ...}}) (tags listed in conformance/contract/adapter.py).")
    bad = sorted(_short(t) + f" ({type(t).__name__})" for t in caps if not isinstance(t, str))
    if bad:
        raise AdapterError(f"adapter {name!r}: capabilities holds non-str tags {', '.join(bad)}; every tag is a "
                           f"string such as 'simsiam' or 'loss:euclidean' (see conformance/contract/adapter.py).")
    unknown = unknown_tags(caps)
    if unknown:
        said = "; ".join(f"{t!r}" + (f" (did you mean {s!r}?)" if s else "") for t, s in unknown)
        raise AdapterError(f"adapter {name!r}: unknown capability tag(s) {said}. A tag no claim knows would silently "
                           f"skip the claims that need the right one; the tags are the methods and the parts listed "
                           f"in docs/conformance.md (Capability tags), e.g. 'simsiam', 'target:ema', "
                           f"'ablation:no_stopgrad'.")
    if getattr(obj, "conventions", None) is not None:   # optional: declared conventions (contract/conventions.py)
        try:
            validate_conventions(obj.conventions, name)
        except ValueError as e:
            raise AdapterError(str(e)) from None
    if not callable(obj.build):
        raise AdapterError(f"adapter {name!r}: build is a {type(obj.build).__name__}, not callable; define "
                           f"build(self, method, encoder, embed_dim, **options) returning a learner.")
    return name


def checked(adapter, spec: str | None = None) -> CheckedAdapter:
    """``adapter`` validated now and wrapped so that its learners are validated too (idempotent)."""
    if type(adapter) is CheckedAdapter:
        return adapter
    return CheckedAdapter(adapter, spec)


def unwrap(obj):
    """The adapter or learner inside a :func:`checked` wrapper (``obj`` itself if not wrapped)."""
    while type(obj) in (CheckedAdapter, CheckedLearner):
        obj = object.__getattribute__(obj, "_inner")
    return obj


class _Proxy:
    """Reads, writes and deletes of unknown attributes go to the wrapped object.

    ``__class__`` reports the wrapped object's class, so ``isinstance(proxy, Inner)``
    holds as it did before wrapping (code that dispatches on the learner's class,
    e.g. checkpointing, keeps working); ``type(proxy)`` still names the proxy.
    """

    __slots__ = ("_inner",)
    _own: tuple = ("_inner",)

    def __getattr__(self, name):
        if name in type(self)._own or (name.startswith("__") and name.endswith("__")):
            raise AttributeError(name)
        return getattr(object.__getattribute__(self, "_inner"), name)

    def __setattr__(self, name, value):
        setattr(self._inner, name, value)

    def __delattr__(self, name):
        delattr(self._inner, name)

    @property
    def __class__(self):
        return type(self._inner)

    @property
    def __dict__(self):
        return vars(self._inner)

    def __dir__(self):
        return sorted(set(dir(self._inner)) | set(dir(type(self))))

    def __repr__(self):
        return f"checked({self._inner!r})"


class CheckedAdapter(_Proxy):
    """An adapter whose ``build`` validates what it returns (see the module docstring)."""

    __slots__ = ("_label", "spec")
    _own = ("_inner", "_label", "spec")

    def __init__(self, adapter, spec: str | None = None):
        object.__setattr__(self, "_label", check_adapter(adapter, spec))
        object.__setattr__(self, "_inner", adapter)
        object.__setattr__(self, "spec", spec)   # what loads it again, e.g. in a spawned process (D1)

    def __reduce_ex__(self, protocol):
        return CheckedAdapter, (self._inner, self.spec)

    def build(self, method, encoder, embed_dim, **options):
        args = ", ".join(
            [repr(method), "encoder", _short(embed_dim), *(f"{k}={_short(v)}" for k, v in options.items())]
        )
        call = f"build({args})"
        try:
            with torch.random.fork_rng(devices=[]):   # heads drawn from torch's global RNG: seeded by the encoder
                # the CPU generator only: torch.manual_seed would also queue a lazy CUDA/XPU/MTIA seeding call,
                # each holding a formatted stack trace (4 ms a build under pytest, and a growing queue)
                torch.default_generator.manual_seed(_seed_of(encoder))
                learner = self._inner.build(method, encoder, embed_dim, **options)
        except AdapterError:
            raise                       # from a checked adapter inside this one: already says it all
        except Exception as e:          # pytest.skip & co. are BaseExceptions: they pass through
            fix = (f"The adapter declares {method!r} but does not implement it (or this option): implement it"
                   if isinstance(e, NotImplementedError) else "Fix the adapter's build")
            raise AdapterError(f"adapter {self._label!r}: {call} raised {type(e).__name__}: {e}. {fix}, or remove "
                               f"{method!r} from its capabilities if it does not support that method.") from e
        if type(learner) is CheckedLearner:
            return learner
        ctx = _Context(self._label, method, embed_dim, encoder, call)
        _check_learner(learner, ctx)
        coverage.built(method)           # the reports' per-claim builds, per method (conformance/run/coverage.py)
        return CheckedLearner(learner, ctx)


def _seed_of(encoder) -> int:
    """A seed determined by the encoder's initial weights (their first 256 values per tensor): an adapter that
    initialises its own heads from torch's global RNG (lightly's, for one) then builds the same learner for the
    same drawn encoder, so a failing draw reproduces (a CI run saw C1 fail once and pass on Hypothesis' replay)."""
    h = hashlib.blake2b(digest_size=8)
    for p in encoder.parameters():
        h.update(p.detach().reshape(-1)[:256].cpu().double().numpy().tobytes())
    return int.from_bytes(h.digest(), "little") % 2 ** 63


# --- learners ------------------------------------------------------------------------


class _Context:
    """What a learner's errors must name: adapter, method, the build call; and what it was built around."""

    __slots__ = ("adapter", "method", "embed_dim", "encoder", "call", "value_checked")

    def __init__(self, adapter, method, embed_dim, encoder, call):
        self.adapter, self.method, self.embed_dim, self.encoder, self.call = adapter, method, embed_dim, encoder, call
        self.value_checked = False

    def where(self, what: str) -> str:
        return f"adapter {self.adapter!r}: {what} of method {self.method!r}"


def _trainable(tensors) -> list[Tensor]:
    return [p for p in tensors if isinstance(p, Tensor) and p.requires_grad]


def _encoder_trainable(encoder) -> bool | None:
    """Whether the harness's encoder has trainable weights (None: it does not say)."""
    params = getattr(encoder, "parameters", None)
    if not callable(params):
        return None
    try:
        return bool(_trainable(params()))
    except Exception:
        return None


def _check_learner(learner, ctx: _Context) -> None:
    """The protocol methods exist and ``parameters()`` yields trainable tensors."""
    absent = [m for m in ("parameters", "loss", "after_step") if not hasattr(learner, m)]
    uncallable = [
        m for m in ("parameters", "loss", "after_step") if m not in absent and not callable(getattr(learner, m))
    ]
    if absent or uncallable:
        what = " and ".join(x for x in (f"without {', '.join(absent)}" if absent else "",
                                          f"with non-callable {', '.join(uncallable)}" if uncallable else "") if x)
        raise AdapterError(f"adapter {ctx.adapter!r}: {ctx.call} returned a {type(learner).__name__} {what}: "
                           f"{_LEARNER_PROTOCOL}.")
    try:
        params = list(learner.parameters())
    except Exception as e:
        raise AdapterError(f"{ctx.where('learner.parameters()')} raised {type(e).__name__}: {e}; it must return "
                           f"an iterable of tensors, e.g. self.encoder.parameters().") from e
    bad = [(i, p) for i, p in enumerate(params) if not isinstance(p, Tensor)]
    if bad:
        i, p = bad[0]
        raise AdapterError(f"{ctx.where('learner.parameters()')} yields a {type(p).__name__} at position {i}, not a "
                           f"torch.Tensor; yield the trainable tensors themselves (e.g. `yield from "
                           f"self.encoder.parameters()`, then the learner's own such as a predictor).")
    if _trainable(params) or _encoder_trainable(ctx.encoder) is False:
        return                 # an encoder without weights (e.g. Identity): the loss is evaluated, not trained
    got = "nothing" if not params else f"{len(params)} tensor(s), none of which requires grad"
    raise AdapterError(f"{ctx.where('learner.parameters()')} yields {got}, but the encoder it was built around has "
                       f"trainable weights: yield them (e.g. `yield from self.encoder.parameters()`), plus the "
                       f"learner's own (a learned predictor), without detaching or freezing them.")


def _reaches(loss: Tensor, params: list[Tensor]) -> bool:
    """Whether the autograd graph of ``loss`` reaches one of ``params``.

    A walk over ``grad_fn.next_functions`` rather than ``torch.autograd.grad``: no
    numerical work, and no gradient hooks fire (tensor hooks, DDP's reducer), so the
    check cannot change what the first training step does.
    """
    leaves = {id(p) for p in params if p.grad_fn is None}
    inner = {p.grad_fn for p in params if p.grad_fn is not None}
    if loss.grad_fn is None:
        return id(loss) in leaves
    seen, stack = {loss.grad_fn}, [loss.grad_fn]
    while stack:
        node = stack.pop()
        if node in inner or id(getattr(node, "variable", None)) in leaves:
            return True
        for nxt, _ in node.next_functions:
            if nxt is not None and nxt not in seen:
                seen.add(nxt)
                stack.append(nxt)
    return False


def _check_no_lazy_parameters(before: set, learner, ctx: _Context) -> None:
    """Parameters created by the first ``loss`` call (heads built lazily) would never be stepped: the harness reads
    ``parameters()`` once, after ``build``, for its optimiser."""
    new = [p for p in _trainable(learner.parameters()) if id(p) not in before]
    if new:
        raise AdapterError(
            f"{ctx.where('learner.loss(view1, view2)')} created {len(new)} trainable tensor(s) "
            f"({sum(p.numel() for p in new)} values) on its first call — heads built lazily. The harness reads "
            f"learner.parameters() once, after build(), for its optimiser, so they would never be trained. Build the "
            f"heads in build(): their input width is embed_dim, one head per replica (S = encoder.replicas, or "
            f"encoder.W.shape[0] for the linear tier's LinearEncoder; a single head at the deep tier), in "
            f"ncspec.reference.encoders.encoder_dtype(encoder) (docs/conformance.md, the adapter contract).")


def _check_loss_value(loss, ctx: _Context) -> None:
    where = ctx.where("learner.loss(view1, view2)")
    if not isinstance(loss, Tensor):
        raise AdapterError(f"{where} returned a {type(loss).__name__}, not a torch.Tensor: return the loss as a "
                           f"scalar tensor computed with torch operations (a Python number carries no gradient).")
    if loss.dim() != 0:
        if loss.shape == (1,):
            fix = "a 1-element tensor, not a scalar: return loss.squeeze() (or loss.mean()), whose dim() is 0"
        elif loss.dim() == 1:
            fix = ("a per-sample loss: reduce it with .mean() (or .sum() over replicas) to a scalar tensor "
                   "(dim() == 0)")
        else:
            fix = ("not a scalar: reduce it to a 0-dim tensor (e.g. .mean(-1).sum(): mean over the batch, "
                   "sum over replicas)")
        raise AdapterError(f"{where} returned shape {_shape(loss)}: {fix}.")
    if not loss.is_floating_point():
        raise AdapterError(f"{where} returned a {str(loss.dtype).replace('torch.', '')} tensor: a loss is "
                           f"differentiable only as a real floating-point tensor; compute it in the encoder's dtype.")
    value = loss.detach().item()
    if not math.isfinite(value):
        kind = "NaN" if value != value else "inf"
        raise AdapterError(f"{where} is {kind} on its first call, before any training step: check the eps terms "
                           f"and normalisations (division by a zero norm or count, log of 0, sqrt of a "
                           f"negative) and the dtype.")


def _check_gradient_path(loss: Tensor, params: list[Tensor], ctx: _Context) -> None:
    if loss.requires_grad and _reaches(loss, params):
        return
    where = ctx.where("learner.loss(view1, view2)") + ": no gradient path from the loss to the parameters"
    if not loss.requires_grad:                 # the implementation's bug, not a malformed adapter: a failure
        raise ImplementationFailure(
            f"{where} (the loss does not require grad): no gradient reaches the parameters — the stop-gradient sits "
            f"on both branches (online and target detached), or the whole loss is computed under torch.no_grad(). "
            f"Keep the online branch differentiable; only the target may be stop-gradded.")
    raise AdapterError(f"{where} (the loss requires grad, but none of the {len(params)} tensor(s) from parameters() "
                       f"is in its graph): make loss() use the encoder passed to build, and parameters() yield "
                       f"that encoder's weights (not a copy's).")


def _check_exposed(learner, ctx: _Context) -> None:
    """Shapes of the matrices and networks a learner exposes to the spec (``W_p``, ``W_P``, ``target_encoder``)."""
    M = ctx.embed_dim
    for attr, what in (("W_p", "the learned linear predictor"), ("W_P", "the closed-form predictor")):
        value = getattr(learner, attr, None)
        if value is None:
            continue
        if not isinstance(value, Tensor):
            raise AdapterError(f"{ctx.where('learner.' + attr)} is a {type(value).__name__}; the spec reads it as "
                               f"{what}, a torch.Tensor of shape (..., {M}, {M}) (embed_dim × embed_dim, leading "
                               f"dimensions for replicas).")
        if value.dim() < 2 or tuple(value.shape[-2:]) != (M, M):
            raise AdapterError(f"{ctx.where('learner.' + attr)} has shape {_shape(value)}; expected (..., {M}, {M}): "
                               f"{what} maps embeddings (embed_dim = {M}) to embeddings, with leading dimensions "
                               f"only for replicas.")
    target = getattr(learner, "target_encoder", None)
    if target is None:
        return
    if not isinstance(target, nn.Module):
        raise AdapterError(f"{ctx.where('learner.target_encoder')} is a {type(target).__name__}, not a "
                           f"torch.nn.Module; make it a copy of the encoder (copy.deepcopy(encoder)) updated by "
                           f"after_step().")
    enc_params = getattr(ctx.encoder, "parameters", None)
    if not callable(enc_params):
        return
    want = [tuple(p.shape) for p in enc_params()]
    got = [tuple(p.shape) for p in target.parameters()]
    if got != want:
        i = next((i for i, (g, w) in enumerate(zip(got, want)) if g != w), min(len(got), len(want)))
        diff = (f"parameter {i} has shape {got[i]} where the encoder's has {want[i]}" if i < min(len(got), len(want))
                else f"it has {len(got)} parameter tensors, the encoder {len(want)}")
        raise AdapterError(f"{ctx.where('learner.target_encoder')} does not match the encoder ({diff}): the target "
                           f"must be a copy of the encoder it was built around (copy.deepcopy(encoder)), so the EMA "
                           f"pairs their parameters one to one.")


def _tier_layout(view, ctx: _Context) -> str:
    """What ``encoder(view)`` is in the tier that made this call, what it is in the other, and the fix.

    The two tiers hand a learner different layouts: the linear tier ``(S, B, M)`` (S replicas of a float64 linear
    or MLP encoder), the deep tier ``(B, M)`` (one convolutional network on image batches ``(B, C, H, W)``)."""
    M = ctx.embed_dim
    fix = ("A learner must accept both layouts: treat every dimension before the last two (B, M) as replicas, "
           "e.g. z.reshape(-1, *z.shape[-2:]) with one head per leading index (see 'The adapter contract' in "
           "docs/conformance.md).")
    if isinstance(view, Tensor) and view.dim() == 4:
        return (f"The views are image batches {_shape(view)}: this is the deep tier, where encoder(view) is (B, M) = "
                f"({view.shape[0]}, {M}), one network without a replica dimension; the linear tier's encoder(view) is "
                f"(S, B, M), S replicas first, so code that indexes or loops over z's first dimension as replicas "
                f"sees single embeddings of shape ({M},) here. {fix}")
    S = getattr(ctx.encoder, "replicas", None)
    W = getattr(ctx.encoder, "W", None)
    S = S if isinstance(S, int) else (W.shape[0] if isinstance(W, Tensor) and W.dim() == 3 else "S")
    B = view.shape[-2] if isinstance(view, Tensor) and view.dim() >= 2 else "B"
    return (f"The views are {_shape(view) if isinstance(view, Tensor) else type(view).__name__}: this is the linear "
            f"tier, where encoder(view) is (S, B, M) = ({S}, {B}, {M}), S independent replicas first; the deep tier's "
            f"encoder(view) is (B, M), so code written for (B, M) (e.g. BatchNorm1d(M) on z, or a loss reduced over "
            f"dim 0) sees an extra leading dimension here. {fix}")


class CheckedLearner(_Proxy):
    """A learner whose first ``loss`` call is validated; then ``loss`` is the inner bound method.

    ``loss`` is a slot: until the checks are done it holds :meth:`_first_loss`, then
    the wrapped learner's own ``loss``, so later calls go straight through.
    """

    __slots__ = ("_ctx", "loss")
    _own = ("_inner", "_ctx", "loss")

    def __init__(self, learner, ctx: _Context):
        object.__setattr__(self, "_inner", learner)
        object.__setattr__(self, "_ctx", ctx)
        object.__setattr__(self, "loss", self._first_loss)

    def __setattr__(self, name, value):
        setattr(self._inner, name, value)
        if name == "loss" and getattr(self.loss, "__func__", None) is not CheckedLearner._first_loss:
            object.__setattr__(self, "loss", self._inner.loss)   # validated already: the fast path, on the new loss

    def __reduce_ex__(self, protocol):
        return CheckedLearner, (self._inner, self._ctx)

    def after_step(self):
        coverage.TALLY.steps += 1        # one optimisation step of a learner under test (conformance/run/coverage.py)
        return self._inner.after_step()

    def __deepcopy__(self, memo):
        inner = copy.deepcopy(self._inner, memo)
        ctx = copy.copy(self._ctx)
        ctx.encoder = copy.deepcopy(ctx.encoder, memo)
        ctx.value_checked = False
        return CheckedLearner(inner, ctx)

    def _first_loss(self, view1, view2):
        inner, ctx = self._inner, self._ctx
        before = {id(p) for p in _trainable(inner.parameters())} if not ctx.value_checked else None
        try:
            loss = inner.loss(view1, view2)
        except (ValueError, RuntimeError, IndexError) as e:   # shape errors: most often the other tier's layout
            if ctx.value_checked:
                raise
            mixed = dtype_mismatch(e, view1, inner, ctx.encoder)
            if mixed:
                raise AdapterError(f"{ctx.where('learner.loss(view1, view2)')} raised {type(e).__name__}: {e} on its "
                                   f"first call. {mixed}") from e
            raise AdapterError(f"{ctx.where('learner.loss(view1, view2)')} raised {type(e).__name__}: {e} on its "
                               f"first call. {_tier_layout(view1, ctx)}") from e
        if before is not None:
            _check_no_lazy_parameters(before, inner, ctx)
        if not ctx.value_checked:
            _check_loss_value(loss, ctx)
            _check_exposed(inner, ctx)
            ctx.value_checked = True
        elif not isinstance(loss, Tensor):
            object.__setattr__(self, "loss", inner.loss)   # only the first call's value is judged
            return loss
        if not torch.is_grad_enabled():
            return loss                # under no_grad the gradient path is checked on the next call with grad
        params = _trainable(inner.parameters())
        if params:
            _check_gradient_path(loss, params, ctx)
        object.__setattr__(self, "loss", inner.loss)
        return loss
