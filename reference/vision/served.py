"""How the adapter-protocol learners meet a deep encoder.

A learner is built as ``builder(method, encoder, embed_dim, **options)`` (``ncspec.reference.methods.build``
or any adapter's ``build``) around :class:`Served` instead of the network itself. The training step
runs the network once per view (one DDP forward, bf16 autocast, maybe compiled), gathers the
embeddings over ranks, and *serves* them: when the learner calls ``encoder(view)``, it gets the
embedding computed for that very tensor. With an EMA target, the call on the learner's second
argument (the target view) returns the EMA network's embedding instead — so any learner written
for ``z2 = SG(encoder(view2))`` gets a BYOL-style target without knowing it.

:class:`FastClosedForm` is the same maths as ``ncspec.reference.methods.closed_form.ClosedFormSiamese`` for the
SimSiam-loss / IsoLoss eigen-predictor methods without the validation that forces host–device
synchronisation (``ncspec bench`` and GPU runs); the tests check it against the reference.
"""
from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from .. import losses
from ..methods.learned import scheduled_momentum
from ..predictors import eigen_predictor_kernel


class Served(nn.Module):
    """The encoder a learner sees: embeddings computed by the training step, looked up by view.

    A learner that deep-copies its encoder for a target of its own (BYOL's EMA target, DINO's
    teacher) gets a *direct* twin: a copy of the online network that embeds what it is given
    (bf16 autocast as the step, gathered over ranks); the learner updates its weights itself.
    """

    def __init__(self, online: nn.Module, embed_dim: int, *, bf16: bool = False):
        super().__init__()
        self.online = online
        self.embed_dim, self.bf16, self.direct = embed_dim, bf16, False
        self._cache: list[tuple[Tensor, Tensor, Tensor | None]] = []
        self._target_view: Tensor | None = None

    def __deepcopy__(self, memo):
        twin = Served(copy.deepcopy(self.online, memo), self.embed_dim, bf16=self.bf16)
        twin.direct = True
        return twin

    def serve(self, entries, target_view: Tensor | None = None) -> None:
        """``entries``: ``(view, online_z, target_z_or_None)`` for the views of this step."""
        self._cache = list(entries)
        self._target_view = target_view

    def forward(self, x: Tensor) -> Tensor:
        if self.direct:
            from ..data_parallel import gather
            with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=self.bf16):
                z = self.online(x)
            return gather(z.float())
        for view, z, zt in self._cache:
            if view is x:
                return zt if (zt is not None and x is self._target_view) else z
        raise RuntimeError("the learner called its encoder on a tensor that is not one of this step's "
                           "views; a learner must embed exactly the view1/view2 it is given.")


class EMA:
    """Target network ``θ_t ← m θ_t + (1 − m) θ`` with ``m`` cosine-scheduled ``m0 → 1``
    (BYOL; the IsoLoss authors' 0.99 → 1). Buffers (BN statistics) are copied."""

    def __init__(self, online: nn.Module, m0: float = 0.99, m1: float = 1.0):
        self.net = copy.deepcopy(online)
        for p in self.net.parameters():
            p.requires_grad_(False)
        self.m0, self.m1 = m0, m1

    def momentum(self, step: int, total: int) -> float:
        return scheduled_momentum("cosine", self.m0, step, max(1, total), self.m1)

    @torch.no_grad()
    def update(self, online: nn.Module, m: float) -> None:
        t_params = list(self.net.parameters())
        o_params = list(online.parameters())
        torch._foreach_lerp_(t_params, o_params, 1.0 - m)
        for bt, bo in zip(self.net.buffers(), online.buffers()):
            bt.copy_(bo)


# --- the closed-form learners without host syncs ------------------------------------------------

#: the loss kernels (unchecked: no host syncs) the fast learner calls, by (form, loss)
_KERNELS = {
    ("euclidean", "simsiam"): losses.simsiam_kernel, ("euclidean", "isoloss"): losses.isoloss_kernel,
    ("cosine", "simsiam"): losses.cosine_simsiam_kernel, ("cosine", "isoloss"): losses.cosine_isoloss_kernel,
}


class FastClosedForm:
    """SimSiam loss / IsoLoss with ``W_P = f_α(Ĉ)`` (batch or EMA correlation); see module doc."""

    SUPPORTED = {"loss", "form", "alpha", "eps", "normalize", "boost", "corr_ema"}

    def __init__(self, encoder: nn.Module, *, loss="simsiam", form="euclidean", alpha=1.0, eps=0.0,
                 normalize=False, boost="before", corr_ema=None):
        self.encoder, self.kind, self.form = encoder, loss, form
        self.alpha, self.eps, self.normalize, self.boost, self.rho = alpha, eps, normalize, boost, corr_ema
        self.F: Tensor | None = None

    def parameters(self):
        return self.encoder.parameters()

    def predictor(self, z1: Tensor) -> Tensor:
        z = z1.detach()
        C = z.T @ z / z.shape[0]
        self.F = C if (self.rho is None or self.F is None) else self.rho * self.F + (1 - self.rho) * C
        return eigen_predictor_kernel(self.F, self.alpha, self.eps, self.normalize, self.boost)

    def loss(self, view1: Tensor, view2: Tensor) -> Tensor:
        z1, z2 = self.encoder(view1), self.encoder(view2)
        return _KERNELS[(self.form, self.kind)](z1, z2, self.predictor(z1))

    def after_step(self) -> None:
        pass


def build_fast(method: str, encoder: nn.Module, embed_dim: int, **options):
    """``FastClosedForm`` for simsiam / isoloss / directset / directpred, else ``None``."""
    from ..methods.closed_form import METHODS
    if method not in ("simsiam", "isoloss", "directset", "directpred"):
        return None
    opts = {**METHODS[method], **options}
    if set(opts) - FastClosedForm.SUPPORTED or opts.get("form", "euclidean") not in ("euclidean", "cosine"):
        return None
    return FastClosedForm(encoder, **opts)


# --- learner state for checkpoints ------------------------------------------------------------


_PLAIN = (bool, int, float, str, type(None))


def _plain(v, enc, seen: set):
    """``v`` as tensors and plain containers (what ``torch.load(weights_only=True)`` reads back), or
    ``_SKIP``: modules as ``("__module__", state_dict)``, generators as ``("__generator__", state)``,
    other objects as ``("__object__", {attribute: value})``; callables are code, not state."""
    if isinstance(v, Tensor):
        return v.detach().clone()
    if isinstance(v, _PLAIN):
        return v
    if isinstance(v, nn.Module):
        return _SKIP if v is enc else ("__module__", v.state_dict())
    if isinstance(v, torch.Generator):
        return ("__generator__", v.get_state())
    if callable(v) or id(v) in seen:
        return _SKIP
    seen.add(id(v))
    if isinstance(v, (list, tuple)):
        items = [_plain(x, enc, seen) for x in v]
        if type(v) not in (list, tuple) or any(x is _SKIP for x in items):
            return _SKIP                      # a namedtuple or an unrepresentable item
        return type(v)(items)
    if isinstance(v, dict):
        items = {k: _plain(x, enc, seen) for k, x in v.items()}
        ok = all(isinstance(k, _PLAIN) for k in items) and not any(x is _SKIP for x in items.values())
        return items if ok else _SKIP
    if hasattr(v, "__dict__"):
        return ("__object__", _attributes(v, enc, seen))
    return _SKIP


_SKIP = object()


def _attributes(obj, enc, seen: set) -> dict:
    out = {}
    for k, v in vars(obj).items():
        p = _plain(v, enc, seen)
        if p is not _SKIP:
            out[k] = p
    return out


def learner_state(learner) -> dict:
    """Everything a learner carries besides its encoder: predictor, correlation EMA, counters, and the
    weights of networks it owns (a BYOL target, a DINO teacher) — as tensors and plain containers only,
    so that a checkpoint loads with ``torch.load(..., weights_only=True)``."""
    if hasattr(learner, "state_dict") and not isinstance(learner, nn.Module):
        return {"__state_dict__": learner.state_dict()}
    return _attributes(learner, getattr(learner, "encoder", None), {id(learner)})


def _restore(obj, k: str, v) -> None:
    cur = getattr(obj, k, None)
    tag = v[0] if isinstance(v, tuple) and len(v) == 2 and isinstance(v[0], str) else None
    if tag == "__module__":
        cur.load_state_dict(v[1])
    elif tag == "__generator__":
        cur.set_state(v[1])
    elif tag == "__object__":
        for kk, vv in v[1].items():
            _restore(cur, kk, vv)
    elif isinstance(cur, Tensor) and isinstance(v, Tensor) and cur.shape == v.shape:
        with torch.no_grad():
            cur.copy_(v)
    else:
        setattr(obj, k, v)


def load_learner_state(learner, state: dict) -> None:
    if "__state_dict__" in state:
        learner.load_state_dict(state["__state_dict__"])
        return
    for k, v in state.items():
        _restore(learner, k, v)
