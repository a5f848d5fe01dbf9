"""Adapters for published reference code that nobody on the ncspec team wrote (test subjects only).

The code is vendored verbatim beside this file, each file with its repository, path, commit and
licence: the Barlow Twins authors' ``main.py`` (current and as first released), the VICReg
authors' ``main_vicreg.py``, and solo-learn's loss functions (``solo/losses/{barlow,vicreg,simsiam}.py``);
all MIT. Load them as any user would load their own adapter::

    PYTHONPATH=. ncspec check --adapter tests.thirdparty.adapters:vicreg
    PYTHONPATH=. ncspec check --adapter tests.thirdparty.adapters:barlowtwins \\
        --xfail tests/thirdparty/expected_failures/barlowtwins.txt

How the authors' modules are run, and nothing else is changed:

* **Their ``nn.Module`` and its ``forward`` as written.** ``BarlowTwins(args)`` and ``VICReg(args)``
  are constructed by their own ``__init__`` (so Barlow Twins' ``BatchNorm1d(affine=False)`` is
  theirs) with the harness's encoder as the backbone: ``torchvision.models.resnet50`` (Barlow
  Twins) and the ``resnet`` module (VICReg) are supplied by the adapter for the duration of the
  constructor. The projector MLP their ``__init__`` appends is then replaced by the identity: the
  harness owns the encoder, and the claims' definitions are stated on its output.
* **``args`` as their training script would set it**: ``lambd``, ``sim_coeff``/``std_coeff``/
  ``cov_coeff``, ``scale_loss`` (the first release), and ``batch_size`` — which both scripts take
  as the *global* batch (per-GPU batch × world size) — set to the batch the call sees.
* **A process group of one.** Both forwards call ``torch.distributed`` unconditionally (Barlow
  Twins' ``all_reduce(c)``, VICReg's ``FullGatherLayer``); in a process without a process group the
  adapter gives their module a ``torch.distributed`` that acts as a group of size one (``all_reduce``
  leaves the tensor, ``all_gather`` copies it, rank 0 of 1) — what those calls compute under
  ``torchrun --nproc_per_node 1``. With a process group (D1's gloo ranks) every call goes to
  ``torch.distributed`` itself.
* **SyncBatchNorm.** The Barlow Twins script converts the model with
  ``nn.SyncBatchNorm.convert_sync_batchnorm`` before DDP; ``nn.SyncBatchNorm`` refuses to run on
  CPU tensors, so under ``distributed=True`` the adapter replaces ``model.bn`` by
  :class:`SyncBatchNormCPU` — the same arithmetic (global-batch mean and biased variance, gradient
  through both, ``affine=False``) with an autograd-aware gather. This is the only code of the
  adapter's own in a Barlow Twins forward.

Encoders carry independent replicas on the leading dimension, (S, B, M); the authors' modules take
(B, M), so the learner builds one module per replica and sums their losses.

Each adapter declares ``conventions``: how its code departs from the published equations in a way
that is a convention, not a bug (VICReg's variance term is the authors' code's ½[v(Z) + v(Z′)],
not the paper's eq. 6 v(Z) + v(Z′)). ncspec's claims read the mapping where they support it.
"""
from __future__ import annotations

import contextlib
import types

import torch
import torch.distributed as dist
from ncspec.conformance.adapters._replicas import n_replicas, per_replica
from ncspec.reference.data_parallel import gather
from torch import Tensor, nn

from .barlowtwins import main as bt_main
from .barlowtwins import main_release as bt_release
from .solo import barlow as solo_barlow
from .solo import simsiam as solo_simsiam
from .solo import vicreg as solo_vicreg
from .vicreg import main_vicreg


class WorldOfOne:
    """``torch.distributed`` as code written for DDP sees it: a process group of one when none is
    initialised (``all_reduce`` is the identity, ``all_gather`` a copy, rank 0 of 1), else the real one."""

    def __getattr__(self, name):
        return getattr(dist, name)

    @staticmethod
    def _single() -> bool:
        return not (dist.is_available() and dist.is_initialized())

    def get_world_size(self, group=None) -> int:
        return 1 if self._single() else dist.get_world_size(group)

    def get_rank(self, group=None) -> int:
        return 0 if self._single() else dist.get_rank(group)

    def all_reduce(self, tensor, *args, **kwargs):
        return None if self._single() else dist.all_reduce(tensor, *args, **kwargs)

    def all_gather(self, tensor_list, tensor, *args, **kwargs):
        if not self._single():
            return dist.all_gather(tensor_list, tensor, *args, **kwargs)
        tensor_list[0].copy_(tensor)
        return None


WORLD_OF_ONE = WorldOfOne()


class _TorchForDDPCode(types.ModuleType):
    """``torch`` whose ``distributed`` is :data:`WORLD_OF_ONE` (their code calls ``torch.distributed.all_reduce``)."""

    distributed = WORLD_OF_ONE

    def __getattr__(self, name):
        return getattr(torch, name)


# the authors' modules see these names instead of the real ones (their text is unchanged)
bt_main.torch = bt_release.torch = _TorchForDDPCode("torch")
main_vicreg.dist = WORLD_OF_ONE


class Backbone(nn.Module):
    """Replica ``s`` of the harness's encoder: views (B, N) → embeddings (B, M)."""

    def __init__(self, encoder: nn.Module, s: int):
        super().__init__()
        self.__dict__["encoder"] = encoder          # not a submodule: the harness owns and casts it
        self.s = s

    def forward(self, x: Tensor) -> Tensor:
        return per_replica(self.encoder(x))[self.s]


@contextlib.contextmanager
def supplying(module, name: str, value):
    """``module.name = value`` while the authors' constructor runs."""
    missing = object()
    old = getattr(module, name, missing)
    setattr(module, name, value)
    try:
        yield
    finally:
        if old is missing:
            delattr(module, name)
        else:
            setattr(module, name, old)


class SyncBatchNormCPU(nn.Module):
    """``nn.SyncBatchNorm(affine=False)`` in training mode, on CPU: ``(z − μ)/√(σ² + ε)`` with the global
    batch's mean μ and biased variance σ², the gradient flowing through both (autograd gather)."""

    def __init__(self, bn: nn.BatchNorm1d):
        super().__init__()
        if bn.affine:
            raise ValueError("SyncBatchNormCPU stands in for Barlow Twins' BatchNorm1d(affine=False) only")
        self.eps = bn.eps

    def forward(self, z: Tensor) -> Tensor:
        g = gather(z)
        return (z - g.mean(0)) / torch.sqrt(g.var(0, unbiased=False) + self.eps)


def _options(adapter: str, method: str, options: dict, defaults: dict) -> dict:
    unknown = set(options) - set(defaults)
    if unknown:
        raise TypeError(f"{adapter} adapter: {method!r} does not take option(s) {sorted(unknown)}; "
                        f"it takes {sorted(defaults)}.")
    return {**defaults, **options}


def _world() -> int:
    return WORLD_OF_ONE.get_world_size()


class AuthorsModules:
    """One of the authors' modules per replica; ``loss`` sums ``module(view1, view2)`` over replicas."""

    def __init__(self, encoder: nn.Module, modules: list[nn.Module]):
        self.encoder, self.modules = encoder, nn.ModuleList(modules)

    def parameters(self):
        yield from self.encoder.parameters()      # the modules own no trainable parameters (BN affine=False)

    def loss(self, view1: Tensor, view2: Tensor) -> Tensor:
        self.modules.to(view1.dtype)
        total = 0
        for m in self.modules:
            m.args.batch_size = view1.shape[-2] * _world()    # their batch_size is the global batch
            total = total + m(view1, view2)
        return total

    def after_step(self) -> None:
        pass


class BarlowTwinsAuthors:
    """facebookresearch/barlowtwins ``main.py``: ``BarlowTwins.forward`` (current, or as first released)."""

    # ablation:no_batchnorm: ``batchnorm=False`` replaces their ``self.bn`` by the identity (c = z1ᵀz2/B, everything
    # else theirs), the setting of the stepwise claims S1–S3
    capabilities = frozenset({"barlow_twins", "distributed", "ablation:no_batchnorm"})

    def __init__(self, name: str, module, defaults: dict, conventions: dict):
        self.name, self._module, self._defaults, self.conventions = name, module, defaults, conventions

    def build(self, method: str, encoder: nn.Module, embed_dim: int, **options):
        if method != "barlow_twins":
            raise NotImplementedError(f"the {self.name} adapter provides barlow_twins, not {method!r}.")
        o = _options(self.name, method, options, {**self._defaults, "decorrelation": True, "distributed": False,
                                                  "batchnorm": True})
        if o["decorrelation"] is not True:
            raise ValueError("the authors' BarlowTwins has no switch to drop the off-diagonal term "
                             "(decorrelation=False); pass lambda_offdiag=0.0 instead.")
        modules = []
        for s in range(n_replicas(encoder)):
            args = types.SimpleNamespace(projector=str(embed_dim), lambd=o["lambda_offdiag"], batch_size=None,
                                         **{k: o[k] for k in ("scale_loss",) if k in o})
            models = types.SimpleNamespace(resnet50=lambda zero_init_residual, s=s: Backbone(encoder, s))
            with supplying(self._module, "torchvision", types.SimpleNamespace(models=models)):
                m = self._module.BarlowTwins(args)
            m.projector = nn.Identity()
            if not o["batchnorm"]:                # the ablation: their cross-correlation of the raw embeddings
                m.bn = nn.Identity()
            elif o["distributed"]:                # the script's convert_sync_batchnorm, on CPU
                m.bn = SyncBatchNormCPU(m.bn)
            modules.append(m)
        return AuthorsModules(encoder, modules)


class VICRegAuthors:
    """facebookresearch/vicreg ``main_vicreg.py``: ``VICReg.forward`` with ``FullGatherLayer``."""

    name = "vicreg-authors"
    capabilities = frozenset({"vicreg", "distributed"})
    conventions = {"vicreg_variance": "authors_code"}     # ½[v(Z) + v(Z′)]; the paper's eq. 6 has no ½

    def build(self, method: str, encoder: nn.Module, embed_dim: int, **options):
        if method != "vicreg":
            raise NotImplementedError(f"the {self.name} adapter provides vicreg, not {method!r}.")
        o = _options(self.name, method, options, dict(sim_coeff=25.0, std_coeff=25.0, cov_coeff=1.0, eps=1e-4,
                                                       distributed=False))
        if o["eps"] != 1e-4:
            raise ValueError(f"the authors' VICReg hard-codes ε = 1e-4 (torch.sqrt(x.var(dim=0) + 0.0001)); "
                             f"it cannot run with eps={o['eps']!r}.")
        modules = []
        for s in range(n_replicas(encoder)):
            args = types.SimpleNamespace(mlp=str(embed_dim), arch="harness", batch_size=None,
                                         **{k: o[k] for k in ("sim_coeff", "std_coeff", "cov_coeff")})
            resnet = types.SimpleNamespace(harness=lambda zero_init_residual, s=s: (Backbone(encoder, s), embed_dim))
            with supplying(main_vicreg, "resnet", resnet):
                m = main_vicreg.VICReg(args)
            m.projector = nn.Identity()
            modules.append(m)
        return AuthorsModules(encoder, modules)


@contextlib.contextmanager
def default_dtype(dtype: torch.dtype):
    """solo-learn's ``barlow_loss_func`` builds its ``BatchNorm1d`` in the default dtype: the harness's float64."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


class SoloPair:
    """A solo-learn loss function on (z1, z2) per replica, called as solo's method's ``training_step`` calls it."""

    def __init__(self, encoder: nn.Module, fn):
        self.encoder, self.fn = encoder, fn

    def parameters(self):
        return self.encoder.parameters()

    def loss(self, view1: Tensor, view2: Tensor) -> Tensor:
        z1, z2 = per_replica(self.encoder(view1)), per_replica(self.encoder(view2))
        with default_dtype(z1.dtype):
            return sum(self.fn(a, b) for a, b in zip(z1, z2))

    def after_step(self) -> None:
        pass


class SoloSimSiam:
    """solo-learn's ``SimSiam``: the predictor of ``SimSiam.__init__`` (solo/methods/simsiam.py lines 61–66:
    Linear(bias=False)–BatchNorm1d–ReLU–Linear) and its ``training_step``'s loss
    ``simsiam_loss_func(p1, z2) / 2 + simsiam_loss_func(p2, z1) / 2`` (the function detaches z)."""

    def __init__(self, encoder: nn.Module, embed_dim: int, hidden: int):
        self.encoder = encoder
        dtype = next(encoder.parameters()).dtype
        self.heads = nn.ModuleList(nn.Sequential(nn.Linear(embed_dim, hidden, bias=False), nn.BatchNorm1d(hidden),
                                                 nn.ReLU(), nn.Linear(hidden, embed_dim))
                                   for _ in range(n_replicas(encoder))).to(dtype)

    def parameters(self):
        yield from self.encoder.parameters()
        yield from self.heads.parameters()

    def loss(self, view1: Tensor, view2: Tensor) -> Tensor:
        z1, z2 = per_replica(self.encoder(view1)), per_replica(self.encoder(view2))
        total = 0
        for s, predictor in enumerate(self.heads):
            p1, p2 = predictor(z1[s]), predictor(z2[s])
            loss_fn = solo_simsiam.simsiam_loss_func
            total = total + loss_fn(p1, z2[s]) / 2 + loss_fn(p2, z1[s]) / 2
        return total

    def after_step(self) -> None:
        pass


class SoloLearn:
    """vturrisi/solo-learn's loss functions, with the defaults its methods pass them."""

    name = "solo-learn"
    capabilities = frozenset({"barlow_twins", "vicreg", "simsiam_mlp", "loss:cosine", "distributed"})
    conventions = {"vicreg_variance": "paper_eq6"}      # v(Z) + v(Z′): no ½ (the authors' code halves it)

    def build(self, method: str, encoder: nn.Module, embed_dim: int, **options):
        if method == "barlow_twins":
            # solo's BarlowTwins method: lamb 0.0051, scale_loss 0.024 (solo/methods/barlow_twins.py)
            o = _options(self.name, method, options, dict(lambda_offdiag=0.0051, scale_loss=0.024,
                                                           decorrelation=True, distributed=False))
            if o["decorrelation"] is not True:
                raise ValueError("solo-learn's barlow_loss_func has no switch to drop the off-diagonal term "
                                 "(decorrelation=False); pass lambda_offdiag=0.0 instead.")
            return SoloPair(encoder, lambda a, b: solo_barlow.barlow_loss_func(a, b, lamb=o["lambda_offdiag"],
                                                                              scale_loss=o["scale_loss"]))
        if method == "vicreg":
            o = _options(self.name, method, options, dict(sim_coeff=25.0, std_coeff=25.0, cov_coeff=1.0, eps=1e-4,
                                                           distributed=False))
            if o["eps"] != 1e-4:
                raise ValueError(f"solo-learn's variance_loss hard-codes ε = 1e-4; it cannot run with "
                                 f"eps={o['eps']!r}.")
            return SoloPair(encoder, lambda a, b: solo_vicreg.vicreg_loss_func(
                a, b, sim_loss_weight=o["sim_coeff"], var_loss_weight=o["std_coeff"], cov_loss_weight=o["cov_coeff"]))
        if method == "simsiam_mlp":
            o = _options(self.name, method, options, dict(pred_hidden=16))
            return SoloSimSiam(encoder, embed_dim, o["pred_hidden"])
        raise NotImplementedError(f"the {self.name} adapter provides barlow_twins, vicreg and simsiam_mlp, "
                                  f"not {method!r}.")


#: the current main.py (λ = 0.0051, no loss scale)
barlowtwins = BarlowTwinsAuthors("barlowtwins-authors", bt_main, dict(lambda_offdiag=0.0051), {})
#: the code release (λ = 3.9e-3, loss × scale_loss = 1/32): a constant factor in the loss
barlowtwins_release = BarlowTwinsAuthors("barlowtwins-authors-release", bt_release,
                                         dict(lambda_offdiag=3.9e-3, scale_loss=1 / 32), {})
vicreg = VICRegAuthors()
solo_learn = SoloLearn()
